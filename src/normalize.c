/*-------------------------------------------------------------------------
 *
 * normalize.c
 *	  Text trimming and metadata normalisation shared by the triggers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "catalog/pg_collation.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/jsonb.h"

#include "datastreams.h"

#define MAX_METADATA_BYTES_DEFAULT (64 * 1024)

/* datastreams.max_metadata_bytes */
static int	max_metadata_bytes = MAX_METADATA_BYTES_DEFAULT;

/*
 * Metadata is a handful of labels, yet without a limit one stream or frame
 * could carry megabytes of it into every read and every error message.
 */
void
ds_normalize_init(void)
{
	DefineCustomIntVariable("datastreams.max_metadata_bytes",
							"Sets the largest metadata accepted on a stream or a frame.",
							"Metadata larger than this, as stored (jsonb), is rejected with SQLSTATE 54000.",
							&max_metadata_bytes,
							MAX_METADATA_BYTES_DEFAULT,
							0, INT_MAX,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);
}

/*
 * Only ASCII whitespace is trimmed: those bytes never occur inside a
 * multibyte character of any server encoding, so this is encoding-safe.
 */
static inline bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

char *
ds_trim(const char *s)
{
	const char *end = s + strlen(s);

	while (*s && is_space(*s))
		s++;
	while (end > s && is_space(end[-1]))
		end--;
	return pnstrdup(s, end - s);
}

bool
ds_is_blank(const char *s)
{
	for (; *s; s++)
		if (!is_space(*s))
			return false;
	return true;
}

/*
 * A user value quoted in an error message: at most 64 bytes of it, so that a
 * huge bad value does not make a huge message.
 */
char *
ds_clip_for_message(const char *s)
{
	int			len = strlen(s);
	int			clipped;

	if (len <= 64)
		return pstrdup(s);
	clipped = pg_mbcliplen(s, len, 64);
	return psprintf("%.*s...", clipped, s);
}

/*
 * datastreams.clip_for_message(value): the same, for the SQL functions
 */
PG_FUNCTION_INFO_V1(datastreams_clip_for_message);
Datum
datastreams_clip_for_message(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(ds_clip_for_message(text_to_cstring(PG_GETARG_TEXT_PP(0)))));
}

/*
 * Lower-case a status value, or NULL when it is too long to be a status:
 * then there is no point in converting all of it.
 */
char *
ds_status_word(const char *s)
{
	char	   *trimmed = ds_trim(s);

	if (strlen(trimmed) > 16)
		return NULL;
	return str_tolower(trimmed, strlen(trimmed), DEFAULT_COLLATION_OID);
}

typedef struct MetadataPair
{
	char	   *key;
	char	   *value;
} MetadataPair;

static int
pair_cmp(const void *a, const void *b)
{
	return strcmp(((const MetadataPair *) a)->key, ((const MetadataPair *) b)->key);
}

static char *
jbv_cstring(JsonbValue *v)
{
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Metadata is a flat map of strings: keys trimmed and lower-cased, empty keys
 * dropped, values trimmed.  Two keys that become equal are an error rather
 * than a silent loss of one of the values.
 */
Jsonb *
ds_normalize_metadata(Jsonb *metadata)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken token;
	MetadataPair *pairs;
	int			npairs = 0;
	int			capacity;
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			i;

	if (VARSIZE(metadata) - VARHDRSZ > (Size) max_metadata_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("metadata is too large"),
				 errdetail("The metadata takes %zu bytes; datastreams.max_metadata_bytes is %d.",
						   (Size) (VARSIZE(metadata) - VARHDRSZ), max_metadata_bytes),
				 errhint("Metadata is for a few short labels; put data in the payload.")));
	if (!JB_ROOT_IS_OBJECT(metadata) || JB_ROOT_IS_SCALAR(metadata))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("metadata must be a JSON object"),
				 errdetail("Metadata is a flat map of string keys to string values.")));

	capacity = JB_ROOT_COUNT(metadata);
	if (capacity == 0)
		return metadata;
	pairs = palloc(sizeof(MetadataPair) * capacity);

	it = JsonbIteratorInit(&metadata->root);
	while ((token = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *raw_key;
		char	   *key;

		if (token != WJB_KEY)
			continue;
		raw_key = jbv_cstring(&v);
		token = JsonbIteratorNext(&it, &v, true);
		Assert(token == WJB_VALUE);
		if (v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata value for key \"%s\" must be a string",
							ds_clip_for_message(raw_key)),
					 errdetail("Metadata is a flat map of string keys to string values.")));
		key = ds_trim(raw_key);
		if (key[0] == '\0')
			continue;
		pairs[npairs].key = str_tolower(key, strlen(key), DEFAULT_COLLATION_OID);
		pairs[npairs].value = ds_trim(jbv_cstring(&v));
		npairs++;
	}

	qsort(pairs, npairs, sizeof(MetadataPair), pair_cmp);
	for (i = 1; i < npairs; i++)
		if (strcmp(pairs[i - 1].key, pairs[i].key) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("metadata key \"%s\" is given more than once",
							ds_clip_for_message(pairs[i].key)),
					 errdetail("Keys are trimmed and lower-cased, so keys that differ only in case or surrounding spaces collide.")));

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < npairs; i++)
	{
		JsonbValue	k;
		JsonbValue	val;

		k.type = jbvString;
		k.val.string.val = pairs[i].key;
		k.val.string.len = strlen(pairs[i].key);
		val.type = jbvString;
		val.val.string.val = pairs[i].value;
		val.val.string.len = strlen(pairs[i].value);
		pushJsonbValue(&state, WJB_KEY, &k);
		pushJsonbValue(&state, WJB_VALUE, &val);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}
