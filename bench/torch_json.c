/* torch_json.c - the JSON reader of torch_json.h: a recursive descent over
 * the file's bytes that records every leaf (number, string, null, true,
 * false) under its dotted path; objects and arrays only add to the path
 * (array elements by index). Nesting deeper than 16 is an error. */
#include "bench/torch_json.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jreader {
    const char *p, *end;
    torch_json_leaf_t *leaves;
    int n;
    int depth;
} jreader_t;

static void jws(jreader_t *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r'))
        r->p++;
}

/* A string at r->p (after the quote is checked), into out (truncated). */
static int jstring(jreader_t *r, char *out, size_t outlen)
{
    if (r->p >= r->end || *r->p != '"')
        return -1;
    r->p++;
    size_t k = 0;
    while (r->p < r->end && *r->p != '"') {
        char ch = *r->p++;
        if (ch == '\\' && r->p < r->end) {
            ch = *r->p++;
            if (ch == 'u') { /* \uXXXX: kept as '?' */
                r->p += r->end - r->p >= 4 ? 4 : r->end - r->p;
                ch = '?';
            }
        }
        if (k + 1 < outlen)
            out[k++] = ch;
    }
    if (r->p >= r->end)
        return -1;
    r->p++;
    if (outlen)
        out[k] = '\0';
    return 0;
}

static void jleaf(jreader_t *r, const char *path, double num, const char *str)
{
    if (r->n >= TORCH_JSON_MAX_LEAVES)
        return;
    torch_json_leaf_t *l = &r->leaves[r->n++];
    snprintf(l->path, sizeof l->path, "%s", path);
    l->num = num;
    snprintf(l->str, sizeof l->str, "%s", str ? str : "");
}

static int jvalue(jreader_t *r, const char *path)
{
    jws(r);
    if (r->p >= r->end || ++r->depth > 16)
        return -1;
    char sub[96];
    if (*r->p == '{' || *r->p == '[') {
        bool obj = *r->p == '{';
        char close = obj ? '}' : ']';
        r->p++;
        jws(r);
        for (int i = 0; r->p < r->end && *r->p != close; i++) {
            char key[64];
            if (obj) {
                if (jstring(r, key, sizeof key))
                    return -1;
                jws(r);
                if (r->p >= r->end || *r->p++ != ':')
                    return -1;
            } else {
                snprintf(key, sizeof key, "%d", i);
            }
            snprintf(sub, sizeof sub, "%s%s%s", path, *path ? "." : "", key);
            if (jvalue(r, sub))
                return -1;
            jws(r);
            if (r->p < r->end && *r->p == ',') {
                r->p++;
                jws(r);
            }
        }
        if (r->p >= r->end)
            return -1;
        r->p++;
    } else if (*r->p == '"') {
        char s[128];
        if (jstring(r, s, sizeof s))
            return -1;
        jleaf(r, path, NAN, s);
    } else { /* number, NaN, Infinity, null, true, false */
        const char *s = r->p;
        while (r->p < r->end && !strchr(",}] \n\t\r", *r->p))
            r->p++;
        if (r->p == s)
            return -1; /* no value where one belongs: stop, never loop */
        char tok[64];
        size_t len = (size_t)(r->p - s) < sizeof tok - 1 ? (size_t)(r->p - s) : sizeof tok - 1;
        memcpy(tok, s, len);
        tok[len] = '\0';
        char *e;
        double v = strtod(tok, &e);
        if (e == tok || *e)
            v = NAN; /* null, true, false */
        jleaf(r, path, v, NULL);
    }
    r->depth--;
    return 0;
}

int torch_json_load(const char *path, torch_json_leaf_t *leaves, char *why, size_t whylen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    jreader_t r = {buf, buf + n, leaves, 0, 0};
    if (jvalue(&r, "") != 0) {
        snprintf(why, whylen, "%s: not the JSON torch_gpu_peer.py writes (near byte %ld)", path,
                 (long)(r.p - buf));
        return -1;
    }
    return r.n;
}

const torch_json_leaf_t *torch_json_get(const torch_json_leaf_t *leaves, int n, const char *path)
{
    for (int i = 0; i < n; i++)
        if (strcmp(leaves[i].path, path) == 0)
            return &leaves[i];
    return NULL;
}

double torch_json_num(const torch_json_leaf_t *leaves, int n, const char *path)
{
    const torch_json_leaf_t *l = torch_json_get(leaves, n, path);
    return l ? l->num : NAN;
}
