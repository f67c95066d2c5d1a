/* json.h - the one JSON string escaper: every JSON line the programs write
 * (the decision log, progress.jsonl, mltunerctl's --json output) passes the
 * strings it did not make itself (paths, messages, names) through it. Pure;
 * thread-safe. */
#ifndef MLT_JSON_H
#define MLT_JSON_H

#include <stddef.h>

/* s as the inside of a JSON string (quotes, backslashes and control bytes
 * escaped) in b[0..cap), cut short to fit; returns b. */
const char *mlt_json_str(char *b, size_t cap, const char *s);

#endif
