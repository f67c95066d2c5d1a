/* check_tuner_dlog.c - the tuner suite's decision log read back: every line
 * checked to be one JSON object starting with "t", "event", "branch", and the
 * accessors the tests read it with. Part of check_tuner (see check_tuner.c). */
#include "check_tuner.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"

/* ====================================================== the decision log */

static const char *j_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    return p;
}

/* a JSON string at p (at its quote) into out; returns the end or NULL */
static const char *j_string(const char *p, char *out, size_t cap)
{
    size_t n = 0;
    if (*p++ != '"')
        return NULL;
    for (;;) {
        char c = *p++;
        if (c == '"')
            break;
        if ((unsigned char)c < 0x20)
            return NULL;
        if (c == '\\') {
            c = *p++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++)
                    if (!isxdigit((unsigned char)*p++))
                        return NULL;
                c = '?';
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return NULL;
            }
        }
        if (out && n + 1 < cap)
            out[n++] = c;
    }
    if (out)
        out[n] = 0;
    return p;
}

static const char *j_number(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (isdigit((unsigned char)*p))
            p++;
    else
        return NULL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p;
}

static const char *j_value(const char *p, int depth);

/* an object at p; its top-level members into key/val (may be NULL) */
static const char *j_object(const char *p, int depth, int *nk, char (*key)[40], span_t *val)
{
    if (*p++ != '{' || depth > 16)
        return NULL;
    int n = 0;
    p = j_ws(p);
    if (*p == '}')
        return p + 1;
    for (;;) {
        char k[40];
        p = j_string(j_ws(p), k, sizeof k);
        if (!p)
            return NULL;
        p = j_ws(p);
        if (*p++ != ':')
            return NULL;
        p = j_ws(p);
        const char *v = p;
        p = j_value(p, depth + 1);
        if (!p)
            return NULL;
        if (key && n < MAXK) {
            for (int i = 0; i < n; i++)
                if (strcmp(key[i], k) == 0)
                    return NULL; /* a repeated key */
            memcpy(key[n], k, sizeof k);
            val[n].p = v;
            val[n].n = (size_t)(p - v);
            n++;
        }
        p = j_ws(p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p++ != '}')
            return NULL;
        break;
    }
    if (nk)
        *nk = n;
    return p;
}

static const char *j_value(const char *p, int depth)
{
    p = j_ws(p);
    if (*p == '{')
        return j_object(p, depth, NULL, NULL, NULL);
    if (*p == '[') {
        p = j_ws(p + 1);
        if (*p == ']')
            return p + 1;
        for (;;) {
            p = j_value(p, depth + 1);
            if (!p)
                return NULL;
            p = j_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == ']' ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return j_string(p, NULL, 0);
    if (strncmp(p, "true", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    if (strncmp(p, "null", 4) == 0)
        return p + 4;
    return j_number(p);
}

static const span_t *l_get(const line_t *l, const char *key)
{
    for (int i = 0; i < l->nk; i++)
        if (strcmp(l->key[i], key) == 0)
            return &l->val[i];
    return NULL;
}

static bool span_null(const span_t *v)
{
    return v->n == 4 && strncmp(v->p, "null", 4) == 0;
}

/* a number member (null: NAN); fails the test if missing or not a number */
double ct_l_num(const line_t *l, const char *key)
{
    const span_t *v = l_get(l, key);
    ck_assert_msg(v != NULL, "log line has no \"%s\": %s", key, l->text);
    if (span_null(v))
        return NAN;
    ck_assert_msg(j_number(v->p) == v->p + v->n, "\"%s\" is not a number: %s", key, l->text);
    return strtod(v->p, NULL);
}

/* a string member into out ("" when missing) */
const char *ct_l_str(const line_t *l, const char *key, char *out, size_t cap)
{
    const span_t *v = l_get(l, key);
    out[0] = 0;
    if (v && *v->p == '"')
        j_string(v->p, out, cap);
    return out;
}

bool ct_l_is(const line_t *l, const char *event)
{
    return strcmp(l->event, event) == 0;
}

/* member name of the object member key (e.g. "tunables"."lr") */
double ct_l_sub(const line_t *l, const char *key, const char *name)
{
    const span_t *v = l_get(l, key);
    ck_assert_msg(v != NULL, "log line has no \"%s\": %s", key, l->text);
    int nk = 0;
    char k[MAXK][40];
    span_t sv[MAXK];
    ck_assert(j_object(v->p, 0, &nk, k, sv) != NULL);
    for (int i = 0; i < nk; i++)
        if (strcmp(k[i], name) == 0)
            return strtod(sv[i].p, NULL);
    ck_abort_msg("\"%s\" has no \"%s\": %s", key, name, l->text);
    return NAN;
}

bool ct_l_reason_has(const line_t *l, const char *needle)
{
    char r[256];
    return strstr(ct_l_str(l, "reason", r, sizeof r), needle) != NULL;
}

/* Reads the log back and checks every line's shape. */
void ct_dlog_load(FILE *f, const mlt_job_t *job, dlog_t *d)
{
    memset(d, 0, sizeof *d);
    ck_assert(fflush(f) == 0);
    long size = ftell(f);
    ck_assert(size >= 0);
    rewind(f);
    d->raw = mlt_malloc((size_t)size + 1);
    ck_assert_uint_eq(fread(d->raw, 1, (size_t)size, f), (size_t)size);
    d->raw[size] = 0;
    size_t cap = 0;
    for (char *p = d->raw; *p;) {
        char *nl = strchr(p, '\n');
        ck_assert_msg(nl != NULL, "the log's last line has no newline");
        size_t len = (size_t)(nl - p);
        if (d->n == cap) {
            cap = cap ? 2 * cap : 256;
            d->l = mlt_realloc(d->l, cap * sizeof *d->l);
        }
        line_t *l = &d->l[d->n++];
        memset(l, 0, sizeof *l);
        l->text = mlt_malloc(len + 1);
        memcpy(l->text, p, len);
        l->text[len] = 0;
        p = nl + 1;
        /* one JSON object */
        const char *end = j_object(l->text, 0, &l->nk, l->key, l->val);
        ck_assert_msg(end != NULL && *j_ws(end) == 0, "log line %zu is not one JSON object: %s",
                      d->n, l->text);
        ck_assert_msg(l->nk >= 3 && strcmp(l->key[0], "t") == 0 &&
                          strcmp(l->key[1], "event") == 0 && strcmp(l->key[2], "branch") == 0,
                      "log line does not start with t, event, branch: %s", l->text);
        l->t = ct_l_num(l, "t");
        ck_assert_msg(isfinite(l->t) && l->t >= 0, "bad t: %s", l->text);
        if (d->n > 1)
            ck_assert_msg(l->t >= d->l[d->n - 2].t, "t goes back: %s", l->text);
        ck_assert_msg(*l->val[1].p == '"', "event is not a string: %s", l->text);
        ct_l_str(l, "event", l->event, sizeof l->event);
        double br = ct_l_num(l, "branch");
        ck_assert_msg(br >= 0 && br == floor(br) && br < MAXB, "bad branch: %s", l->text);
        l->branch = (uint32_t)br;
        if (ct_l_is(l, "summary")) {
            char v[32];
            ct_l_str(l, "verdict", v, sizeof v);
            ck_assert_msg(strcmp(v, "converging") == 0 || strcmp(v, "unstable") == 0 ||
                              strcmp(v, "diverged") == 0,
                          "bad verdict: %s", l->text);
            double s = ct_l_num(l, "slope");
            ck_assert_msg(isnan(s) == (strcmp(v, "diverged") == 0),
                          "a summary's slope is null iff it diverged: %s", l->text);
        }
        if (ct_l_is(l, "commit") || ct_l_is(l, "propose"))
            for (uint32_t i = 0; i < job->n_tunables; i++)
                ck_assert(isfinite(ct_l_sub(l, "tunables", job->tunables[i].name)));
        if (ct_l_is(l, "test"))
            (void)ct_l_num(l, "accuracy");
    }
    ck_assert_msg(d->n > 0, "the decision log is empty");
}

void ct_dlog_free(dlog_t *d)
{
    for (size_t i = 0; i < d->n; i++)
        mlt_free(d->l[i].text);
    mlt_free(d->l);
    mlt_free(d->raw);
    memset(d, 0, sizeof *d);
}

/* index of the first line at or after `from` with event ev (and branch br
 * unless br is UINT32_MAX), or d->n */
size_t ct_dlog_find(const dlog_t *d, size_t from, const char *ev, uint32_t br)
{
    for (size_t i = from; i < d->n; i++)
        if (ct_l_is(&d->l[i], ev) && (br == UINT32_MAX || d->l[i].branch == br))
            return i;
    return d->n;
}

size_t ct_dlog_count(const dlog_t *d, size_t from, size_t to, const char *ev)
{
    size_t n = 0;
    for (size_t i = from; i < to && i < d->n; i++)
        n += ct_l_is(&d->l[i], ev);
    return n;
}

/* a fork line of a trial */
bool ct_is_trial_fork(const line_t *l)
{
    char k[16];
    return ct_l_is(l, "fork") && strcmp(ct_l_str(l, "kind", k, sizeof k), "trial") == 0;
}

/* Each search (a "search" line, up to the commit or the next search) says
 * once why its proposals stopped: exactly one search_stop line. */
void ct_assert_one_stop_per_search(const dlog_t *d)
{
    for (size_t from = ct_dlog_find(d, 0, "search", UINT32_MAX); from < d->n;) {
        size_t next = ct_dlog_find(d, from + 1, "search", UINT32_MAX);
        size_t c = ct_dlog_find(d, from, "commit", UINT32_MAX);
        size_t end = c < next ? c : next;
        size_t n = ct_dlog_count(d, from, end, "search_stop");
        ck_assert_msg(n == 1, "the search at log line %zu logged %zu search_stop lines", from + 1,
                      n);
        from = next;
    }
}
