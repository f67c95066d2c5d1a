/* json.c - see json.h. */
#include "common/json.h"

#include <stdio.h>

const char *mlt_json_str(char *b, size_t cap, const char *s)
{
    size_t n = 0;
    if (!cap)
        return b;
    for (; s && *s && n + 7 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            b[n++] = '\\';
            b[n++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            n += (size_t)snprintf(b + n, cap - n, "\\u%04x", ch);
        } else {
            b[n++] = (char)ch;
        }
    }
    b[n] = '\0';
    return b;
}
