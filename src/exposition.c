/*-------------------------------------------------------------------------
 *
 * exposition.c
 *	  Pieces of the Prometheus text exposition format (version 0.0.4),
 *	  shared by the series of metrics() (prometheus.c) and of the
 *	  consumers (consumers.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "datastreams.h"

/* A family's HELP and TYPE lines */
void
ds_prometheus_family(StringInfo buf, const char *name, const char *type, const char *help)
{
	appendStringInfo(buf, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label; in its value backslash, double quote and line feed are escaped */
void
ds_prometheus_label(StringInfo buf, const char *name, const char *value, bool first)
{
	const char *p;

	appendStringInfo(buf, "%s%s=\"", first ? "" : ",", name);
	for (p = value; *p; p++)
	{
		if (*p == '\\')
			appendStringInfoString(buf, "\\\\");
		else if (*p == '"')
			appendStringInfoString(buf, "\\\"");
		else if (*p == '\n')
			appendStringInfoString(buf, "\\n");
		else
			appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}
