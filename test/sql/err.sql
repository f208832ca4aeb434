-- The tests' error helper, included with \i by the pg_regress inputs:
-- pg_temp.err(cmd) runs a statement and returns 'no error', or its SQLSTATE,
-- message, DETAIL and HINT with generated UUIDs and nanosecond sequences
-- masked, so that expected outputs do not depend on them.
CREATE FUNCTION pg_temp.err(cmd text) RETURNS text
LANGUAGE plpgsql AS $f$
DECLARE
	st text; msg text; det text; hnt text;
BEGIN
	EXECUTE cmd;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN regexp_replace(regexp_replace(st || ': ' || msg
		|| CASE WHEN det <> '' THEN ' | DETAIL: ' || det ELSE '' END
		|| CASE WHEN hnt <> '' THEN ' | HINT: ' || hnt ELSE '' END,
		'(?!00000000-)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}',
		'<uuid>', 'g'), '[0-9]{16,}', '<ns>', 'g');
END
$f$;
