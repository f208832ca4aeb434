/*-------------------------------------------------------------------------
 *
 * json.c
 *	  Growable strings, JSON output escaping and the scanner of request
 *	  bodies.
 *
 * The gateway does not interpret JSON beyond the top level of a request
 * body: it checks that the body is well-formed JSON, finds the members of
 * the top-level object and hands each member's raw text to PostgreSQL as a
 * parameter, so that every rule about values stays in the extension.  The
 * scanner is iterative (a body of ten megabytes of '[' must not exhaust a
 * thread's stack) and never reads past the given length.
 *
 * IDENTIFICATION
 *	  src/bin/http/json.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

void *
xmalloc(size_t size)
{
	void	   *p = malloc(size > 0 ? size : 1);

	if (p == NULL)
	{
		log_msg("out of memory");
		abort();
	}
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void	   *p = calloc(n > 0 ? n : 1, size > 0 ? size : 1);

	if (p == NULL)
	{
		log_msg("out of memory");
		abort();
	}
	return p;
}

void *
xrealloc(void *old, size_t size)
{
	void	   *p = realloc(old, size > 0 ? size : 1);

	if (p == NULL)
	{
		log_msg("out of memory");
		abort();
	}
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char	   *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

void
sb_init(StrBuf *sb)
{
	sb->data = NULL;
	sb->len = 0;
	sb->cap = 0;
}

void
sb_free(StrBuf *sb)
{
	free(sb->data);
	sb_init(sb);
}

void
sb_reset(StrBuf *sb)
{
	sb->len = 0;
	if (sb->data)
		sb->data[0] = '\0';
}

static void
sb_reserve(StrBuf *sb, size_t more)
{
	size_t		need = sb->len + more + 1;

	if (need > sb->cap)
	{
		size_t		cap = sb->cap ? sb->cap : 256;

		while (cap < need)
			cap *= 2;
		sb->data = xrealloc(sb->data, cap);
		sb->cap = cap;
	}
}

void
sb_append_len(StrBuf *sb, const char *s, size_t n)
{
	sb_reserve(sb, n);
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

void
sb_append(StrBuf *sb, const char *s)
{
	sb_append_len(sb, s, strlen(s));
}

void
sb_printf(StrBuf *sb, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	sb_reserve(sb, (size_t) n);
	va_start(ap, fmt);
	vsnprintf(sb->data + sb->len, (size_t) n + 1, fmt, ap);
	va_end(ap);
	sb->len += (size_t) n;
}

char *
sb_detach(StrBuf *sb)
{
	char	   *p = sb->data ? sb->data : xstrdup("");

	sb_init(sb);
	return p;
}

/*
 * Length of the valid UTF-8 sequence at s (at most n bytes), 0 if there is
 * none.  Overlong forms, surrogates and values above U+10FFFF are invalid.
 */
static size_t
utf8_sequence_length(const unsigned char *s, size_t n)
{
	unsigned int c = s[0];
	size_t		len;
	unsigned int min;
	unsigned int cp;

	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0)
		len = 2, min = 0x80, cp = c & 0x1F;
	else if ((c & 0xF0) == 0xE0)
		len = 3, min = 0x800, cp = c & 0x0F;
	else if ((c & 0xF8) == 0xF0)
		len = 4, min = 0x10000, cp = c & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

/*
 * Append s as a JSON string literal.  Bytes that are not valid UTF-8 become
 * U+FFFD, so that whatever a client sent (a path, a key) can be quoted back
 * in an error without making the error itself invalid JSON.
 */
void
sb_append_json_string(StrBuf *sb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	sb_append_len(sb, "\"", 1);
	while (i < n)
	{
		unsigned char c = p[i];
		size_t		run = i;

		/* copy the longest stretch that needs no escaping in one go */
		while (run < n && p[run] >= 0x20 && p[run] < 0x80 && p[run] != '"' && p[run] != '\\')
			run++;
		if (run > i)
		{
			sb_append_len(sb, s + i, run - i);
			i = run;
			continue;
		}
		if (c == '"')
			sb_append_len(sb, "\\\"", 2);
		else if (c == '\\')
			sb_append_len(sb, "\\\\", 2);
		else if (c == '\n')
			sb_append_len(sb, "\\n", 2);
		else if (c == '\r')
			sb_append_len(sb, "\\r", 2);
		else if (c == '\t')
			sb_append_len(sb, "\\t", 2);
		else if (c < 0x20)
			sb_printf(sb, "\\u%04x", c);
		else
		{
			size_t		len = utf8_sequence_length(p + i, n - i);

			if (len == 0)
			{
				sb_append(sb, "\\ufffd");
				i++;
				continue;
			}
			sb_append_len(sb, s + i, len);
			i += len;
			continue;
		}
		i++;
	}
	sb_append_len(sb, "\"", 1);
}

/*
 * Append at most max bytes of s, cut at a character boundary, with "..."
 * when something was cut: user values quoted in errors stay short.
 */
void
sb_append_clipped(StrBuf *sb, const char *s, size_t n, size_t max)
{
	size_t		cut = n;

	if (n > max)
	{
		cut = max;
		while (cut > 0 && ((unsigned char) s[cut] & 0xC0) == 0x80)
			cut--;
	}
	sb_append_len(sb, s, cut);
	if (cut < n)
		sb_append(sb, "...");
}

const char *
json_type_name(JsonType type)
{
	switch (type)
	{
		case JSON_OBJECT:
			return "object";
		case JSON_ARRAY:
			return "array";
		case JSON_STRING:
			return "string";
		case JSON_NUMBER:
			return "number";
		case JSON_BOOL:
			return "boolean";
		case JSON_NULL:
			return "null";
	}
	return "?";
}

/* ----------------------------------------------------------------
 * The scanner
 * ----------------------------------------------------------------
 */
typedef struct Scanner
{
	const char *s;
	size_t		len;
	size_t		pos;
	char	   *err;
	size_t		errlen;
} Scanner;

static bool
scan_error(Scanner *sc, const char *what)
{
	if (sc->pos >= sc->len)
		snprintf(sc->err, sc->errlen, "the body ends where %s was expected", what);
	else
		snprintf(sc->err, sc->errlen, "%s expected at byte %zu", what, sc->pos);
	return false;
}

static void
skip_space(Scanner *sc)
{
	while (sc->pos < sc->len)
	{
		char		c = sc->s[sc->pos];

		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			break;
		sc->pos++;
	}
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
scan_hex4(Scanner *sc, unsigned int *out)
{
	unsigned int v = 0;

	if (sc->len - sc->pos < 4)
		return scan_error(sc, "four hexadecimal digits");
	for (int i = 0; i < 4; i++)
	{
		int			h = hex_value(sc->s[sc->pos + i]);

		if (h < 0)
			return scan_error(sc, "four hexadecimal digits");
		v = (v << 4) | (unsigned int) h;
	}
	sc->pos += 4;
	*out = v;
	return true;
}

static void
append_utf8(StrBuf *sb, unsigned int cp)
{
	char		b[4];

	if (cp < 0x80)
		b[0] = (char) cp, sb_append_len(sb, b, 1);
	else if (cp < 0x800)
	{
		b[0] = (char) (0xC0 | (cp >> 6));
		b[1] = (char) (0x80 | (cp & 0x3F));
		sb_append_len(sb, b, 2);
	}
	else if (cp < 0x10000)
	{
		b[0] = (char) (0xE0 | (cp >> 12));
		b[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char) (0x80 | (cp & 0x3F));
		sb_append_len(sb, b, 3);
	}
	else
	{
		b[0] = (char) (0xF0 | (cp >> 18));
		b[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char) (0x80 | (cp & 0x3F));
		sb_append_len(sb, b, 4);
	}
}

/*
 * A string literal starting at the opening quote; decoded into out when out
 * is not NULL.  Escapes are checked as RFC 8259 defines them; a lone
 * surrogate escape is kept as U+FFFD (PostgreSQL decides about the rest).
 */
static bool
scan_string(Scanner *sc, StrBuf *out)
{
	sc->pos++;					/* the opening quote */
	for (;;)
	{
		size_t		start = sc->pos;
		char		c;

		while (sc->pos < sc->len)
		{
			c = sc->s[sc->pos];
			if (c == '"' || c == '\\' || (unsigned char) c < 0x20)
				break;
			sc->pos++;
		}
		if (out && sc->pos > start)
			sb_append_len(out, sc->s + start, sc->pos - start);
		if (sc->pos >= sc->len)
			return scan_error(sc, "the end of a string");
		c = sc->s[sc->pos];
		if (c == '"')
		{
			sc->pos++;
			return true;
		}
		if (c != '\\')
			return scan_error(sc, "an escaped control character");
		sc->pos++;
		if (sc->pos >= sc->len)
			return scan_error(sc, "an escape sequence");
		c = sc->s[sc->pos++];
		switch (c)
		{
			case '"':
			case '\\':
			case '/':
				if (out)
					sb_append_len(out, &c, 1);
				break;
			case 'b':
				if (out)
					sb_append_len(out, "\b", 1);
				break;
			case 'f':
				if (out)
					sb_append_len(out, "\f", 1);
				break;
			case 'n':
				if (out)
					sb_append_len(out, "\n", 1);
				break;
			case 'r':
				if (out)
					sb_append_len(out, "\r", 1);
				break;
			case 't':
				if (out)
					sb_append_len(out, "\t", 1);
				break;
			case 'u':
				{
					unsigned int cp;

					if (!scan_hex4(sc, &cp))
						return false;
					if (cp >= 0xD800 && cp <= 0xDBFF && sc->len - sc->pos >= 6 &&
						sc->s[sc->pos] == '\\' && sc->s[sc->pos + 1] == 'u')
					{
						unsigned int low;

						sc->pos += 2;
						if (!scan_hex4(sc, &low))
							return false;
						if (low >= 0xDC00 && low <= 0xDFFF)
							cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
						else
							cp = 0xFFFD;
					}
					else if (cp >= 0xD800 && cp <= 0xDFFF)
						cp = 0xFFFD;
					if (out)
						append_utf8(out, cp);
					break;
				}
			default:
				sc->pos--;
				return scan_error(sc, "a valid escape sequence");
		}
	}
}

static bool
scan_digits(Scanner *sc)
{
	size_t		start = sc->pos;

	while (sc->pos < sc->len && sc->s[sc->pos] >= '0' && sc->s[sc->pos] <= '9')
		sc->pos++;
	return sc->pos > start;
}

static bool
scan_number(Scanner *sc)
{
	if (sc->s[sc->pos] == '-')
		sc->pos++;
	if (sc->pos < sc->len && sc->s[sc->pos] == '0')
		sc->pos++;
	else if (!scan_digits(sc))
		return scan_error(sc, "a digit");
	if (sc->pos < sc->len && sc->s[sc->pos] == '.')
	{
		sc->pos++;
		if (!scan_digits(sc))
			return scan_error(sc, "a digit");
	}
	if (sc->pos < sc->len && (sc->s[sc->pos] == 'e' || sc->s[sc->pos] == 'E'))
	{
		sc->pos++;
		if (sc->pos < sc->len && (sc->s[sc->pos] == '+' || sc->s[sc->pos] == '-'))
			sc->pos++;
		if (!scan_digits(sc))
			return scan_error(sc, "a digit");
	}
	return true;
}

static bool
scan_literal(Scanner *sc, const char *word)
{
	size_t		n = strlen(word);

	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
		return scan_error(sc, "a JSON value");
	sc->pos += n;
	return true;
}

/*
 * Parse a whole request body.  On success body->type is the type of the
 * document and, for an object, body->fields its members in order; on
 * failure err says what is wrong and where.
 */
bool
json_parse_body(const char *text, size_t len, JsonBody *body, char *err, size_t errlen)
{
	Scanner		sc = {text, len, 0, err, errlen};
	enum
	{
		EXPECT_VALUE, AFTER_VALUE, EXPECT_MEMBER
	}			state = EXPECT_VALUE;
	char	   *stack = NULL;	/* '{' or '[' per open container */
	size_t		depth = 0;
	size_t		stack_cap = 0;
	int			fields_cap = 0;
	bool		have_type = false;
	bool		ok = false;

	memset(body, 0, sizeof(*body));
	for (;;)
	{
		skip_space(&sc);
		if (state == EXPECT_VALUE)
		{
			size_t		start = sc.pos;
			bool		top_member = (depth == 1 && stack[0] == '{');
			JsonType	type;

			if (sc.pos >= sc.len)
			{
				scan_error(&sc, "a JSON value");
				goto done;
			}
			switch (sc.s[sc.pos])
			{
				case '{':
				case '[':
					type = sc.s[sc.pos] == '{' ? JSON_OBJECT : JSON_ARRAY;
					if (depth == stack_cap)
					{
						stack_cap = stack_cap ? stack_cap * 2 : 64;
						stack = xrealloc(stack, stack_cap);
					}
					stack[depth++] = sc.s[sc.pos++];
					break;
				case '"':
					type = JSON_STRING;
					if (!scan_string(&sc, NULL))
						goto done;
					break;
				case 't':
					type = JSON_BOOL;
					if (!scan_literal(&sc, "true"))
						goto done;
					break;
				case 'f':
					type = JSON_BOOL;
					if (!scan_literal(&sc, "false"))
						goto done;
					break;
				case 'n':
					type = JSON_NULL;
					if (!scan_literal(&sc, "null"))
						goto done;
					break;
				default:
					if (sc.s[sc.pos] != '-' && (sc.s[sc.pos] < '0' || sc.s[sc.pos] > '9'))
					{
						scan_error(&sc, "a JSON value");
						goto done;
					}
					type = JSON_NUMBER;
					if (!scan_number(&sc))
						goto done;
					break;
			}
			if (!have_type)
			{
				body->type = type;
				have_type = true;
			}
			if (top_member)
			{
				JsonField  *f = &body->fields[body->nfields - 1];

				f->type = type;
				f->value = sc.s + start;
				/* a container's length is known when it closes */
				f->value_len = sc.pos - start;
			}
			if (type == JSON_OBJECT)
				state = EXPECT_MEMBER;
			else if (type == JSON_ARRAY)
				state = EXPECT_VALUE;
			else
				state = AFTER_VALUE;

			/* an empty container closes at once */
			if (type == JSON_OBJECT || type == JSON_ARRAY)
			{
				skip_space(&sc);
				if (sc.pos < sc.len && sc.s[sc.pos] == (type == JSON_OBJECT ? '}' : ']'))
				{
					sc.pos++;
					depth--;
					if (top_member)
					{
						JsonField  *f = &body->fields[body->nfields - 1];

						f->value_len = (size_t) (sc.s + sc.pos - f->value);
					}
					state = AFTER_VALUE;
				}
			}
		}
		else if (state == AFTER_VALUE)
		{
			char		open;

			if (depth == 0)
				break;
			open = stack[depth - 1];
			if (sc.pos < sc.len && sc.s[sc.pos] == ',')
			{
				sc.pos++;
				state = open == '{' ? EXPECT_MEMBER : EXPECT_VALUE;
			}
			else if (sc.pos < sc.len && sc.s[sc.pos] == (open == '{' ? '}' : ']'))
			{
				sc.pos++;
				depth--;
				/* a container that was the value of a top-level member */
				if (depth == 1 && stack[0] == '{')
				{
					JsonField  *f = &body->fields[body->nfields - 1];

					f->value_len = (size_t) (sc.s + sc.pos - f->value);
				}
			}
			else
			{
				scan_error(&sc, open == '{' ? "',' or '}'" : "',' or ']'");
				goto done;
			}
		}
		else
		{
			/* EXPECT_MEMBER: "name": */
			if (sc.pos >= sc.len || sc.s[sc.pos] != '"')
			{
				scan_error(&sc, "a member name in double quotes");
				goto done;
			}
			if (depth == 1)
			{
				StrBuf		key;
				JsonField  *f;

				sb_init(&key);
				sb_append(&key, "");
				if (!scan_string(&sc, &key))
				{
					sb_free(&key);
					goto done;
				}
				if (body->nfields == fields_cap)
				{
					fields_cap = fields_cap ? fields_cap * 2 : 8;
					body->fields = xrealloc(body->fields, sizeof(JsonField) * fields_cap);
				}
				f = &body->fields[body->nfields++];
				memset(f, 0, sizeof(*f));
				f->key_len = key.len;
				f->key = sb_detach(&key);
			}
			else if (!scan_string(&sc, NULL))
				goto done;
			skip_space(&sc);
			if (sc.pos >= sc.len || sc.s[sc.pos] != ':')
			{
				scan_error(&sc, "':'");
				goto done;
			}
			sc.pos++;
			state = EXPECT_VALUE;
		}
	}
	if (sc.pos != sc.len)
	{
		scan_error(&sc, "the end of the body");
		goto done;
	}
	ok = true;

done:
	free(stack);
	if (!ok)
		json_body_free(body);
	return ok;
}

void
json_body_free(JsonBody *body)
{
	for (int i = 0; i < body->nfields; i++)
		free(body->fields[i].key);
	free(body->fields);
	body->fields = NULL;
	body->nfields = 0;
}

/* The member named key; the last one when a key repeats, as in jsonb. */
const JsonField *
json_body_field(const JsonBody *body, const char *key)
{
	size_t		n = strlen(key);

	for (int i = body->nfields - 1; i >= 0; i--)
		if (body->fields[i].key_len == n && memcmp(body->fields[i].key, key, n) == 0)
			return &body->fields[i];
	return NULL;
}

/* The decoded text of a string member (malloc'd). */
char *
json_string_value(const JsonField *field)
{
	Scanner		sc = {field->value, field->value_len, 0, NULL, 0};
	char		err[8];
	StrBuf		out;

	sc.err = err;
	sc.errlen = sizeof(err);
	sb_init(&out);
	sb_append(&out, "");
	(void) scan_string(&sc, &out);	/* already validated */
	return sb_detach(&out);
}
