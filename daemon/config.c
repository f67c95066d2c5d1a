/* config.c - the daemon's configuration (see config.h).
 *
 * Everything about a key lives in one row of keys[]: name, type, default,
 * bounds, one-line description, and the field it is stored in (or a setter
 * when the stored form differs from the written one, as for log_level).
 * Defaults, file loading, --set, validation and the text of the shipped
 * conf/mltunerd.conf are all loops over that table: adding a key is adding a
 * field and a row.
 *
 * A value takes the same three steps whatever its source: read (a libconfig
 * setting or --set text becomes a dval_t; the type is checked here), check
 * (bounds and multiples, shared by every source and by validate) and store.
 * mlt_dconf_load works on a copy and commits only when every key was good, so
 * a refused file leaves *c as it was. Not thread-safe; used once at start. */
#include "daemon/config.h"

#include "common/cfgtext.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libconfig.h>

#include "common/alloc.h"
#include "common/log.h"

_Static_assert(sizeof(size_t) >= 8, "memory_limit (up to 1 TiB) needs a 64-bit size_t");

#define KIB 1024LL
#define MIB (1024LL * KIB)
#define GIB (1024LL * MIB)
#define TIB (1024LL * GIB)

/* a config file larger than this is refused (-EFBIG) */
#define MAX_FILE (1024 * 1024)

/* bind when neither bind nor servers is given (see mlt_dconf_finish) */
#define BIND_FALLBACK "tcp://127.0.0.1:7100"

typedef enum {
    DK_INT,     /* int field; a libconfig integer (a float is refused) */
    DK_SIZE,    /* size_t field; an integer, or a string with a K/M/G/T suffix */
    DK_DOUBLE,  /* double field; a float or an integer */
    DK_STRING,  /* char * field, owned; never NULL after mlt_dconf_defaults */
    DK_BOOL,    /* bool field */
    DK_STRLIST, /* char ** field, owned, NULL-terminated; NULL when empty */
} dkey_type_t;

/* One value on its way from a file or --set text into the struct. */
typedef struct {
    long long i;   /* DK_INT, DK_SIZE */
    double d;      /* DK_DOUBLE */
    bool b;        /* DK_BOOL */
    const char *s; /* DK_STRING (borrowed) */
    char **list;   /* DK_STRLIST (owned until stored; NULL = empty) */
} dval_t;

typedef struct {
    const char *name;       /* the key, in files and after --set */
    dkey_type_t type;
    long long def_i;        /* default of DK_INT, DK_SIZE, DK_BOOL (0/1) */
    double def_d;           /* default of DK_DOUBLE */
    const char *def_s;      /* default of DK_STRING (a DK_STRLIST defaults to empty) */
    long long min_i, max_i; /* DK_INT, DK_SIZE: inclusive bounds; DK_STRLIST: max_i entries */
    long long multiple;     /* DK_INT, DK_SIZE: the value must be a multiple (0: any) */
    double min_d, max_d;    /* DK_DOUBLE: inclusive bounds */
    size_t off;             /* offset of the field in mlt_dconf_t (unused with set) */
    /* DK_STRING only: parses and stores the text instead of keeping it at off;
     * returns 0, or -EINVAL with why ("must be ...") and *c untouched */
    int (*set)(mlt_dconf_t *c, const char *s, char *why, size_t whylen);
    const char *desc;       /* one line, printed above the key in the shipped file */
} dkey_t;

static int set_log_level(mlt_dconf_t *c, const char *s, char *why, size_t whylen);

#define OFF(field) offsetof(mlt_dconf_t, field)

/* The keys, in the order the shipped file lists them. */
static const dkey_t keys[] = {
    {.name = "rank", .type = DK_INT, .def_i = 0,
     .min_i = 0, .max_i = MLT_DCONF_MAX_SERVERS - 1, .off = OFF(rank),
     .desc = "this daemon's index in servers; 0 is the coordinator"},
    {.name = "n_servers", .type = DK_INT, .def_i = 1,
     .min_i = 1, .max_i = MLT_DCONF_MAX_SERVERS, .off = OFF(n_servers),
     .desc = "number of shards; when left out, the length of a non-empty servers"},
    {.name = "servers", .type = DK_STRLIST, .max_i = MLT_DCONF_MAX_SERVERS,
     .off = OFF(servers),
     .desc = "endpoints of every shard in rank order, e.g. ( \"tcp://h1:7100\", "
             "\"tcp://h2:7100\" )"},
    {.name = "bind", .type = DK_STRING, .def_s = "", .off = OFF(bind),
     .desc = "endpoint to bind; \"\" means servers[rank], or " BIND_FALLBACK
             " without servers"},
    {.name = "endpoint_file", .type = DK_STRING, .def_s = "", .off = OFF(endpoint_file),
     .desc = "if set, the bound endpoint is written to this file (for a port-0 bind)"},
    {.name = "control_bind", .type = DK_STRING, .def_s = "tcp://127.0.0.1:7099",
     .off = OFF(control_bind),
     .desc = "rank 0 only: endpoint of the coordinator (jobs, workers, mltunerctl); \"\" = off"},
    {.name = "control_endpoint_file", .type = DK_STRING, .def_s = "",
     .off = OFF(control_endpoint_file),
     .desc = "if set, the bound control endpoint is written to this file"},
    {.name = "chunk_size", .type = DK_SIZE, .def_i = 64 * KIB,
     .min_i = 4 * KIB, .max_i = 16 * MIB, .multiple = 4 * KIB, .off = OFF(chunk_size),
     .desc = "bytes per parameter chunk"},
    {.name = "memory_limit", .type = DK_SIZE, .def_i = 8 * GIB,
     .min_i = MIB, .max_i = TIB, .off = OFF(memory_limit),
     .desc = "bytes all live branches may use, counted fully written"},
    {.name = "log_level", .type = DK_STRING, .def_s = "info", .set = set_log_level,
     .desc = "one of error, warn, info, debug"},
    {.name = "state_dir", .type = DK_STRING, .def_s = "/var/lib/mltuner",
     .off = OFF(state_dir),
     .desc = "directory for checkpoints and job outputs"},
    {.name = "pull_timeout_s", .type = DK_DOUBLE, .def_d = 60.0,
     .min_d = 0.01, .max_d = 86400.0, .off = OFF(pull_timeout_s),
     .desc = "seconds after which a parked pull is answered with a timeout"},
    {.name = "worker_timeout_s", .type = DK_DOUBLE, .def_d = 30.0,
     .min_d = 0.1, .max_d = 86400.0, .off = OFF(worker_timeout_s),
     .desc = "seconds of heartbeat silence after which a worker counts as gone"},
    {.name = "allow_insecure", .type = DK_BOOL, .def_i = 0, .off = OFF(allow_insecure),
     .desc = "permit a non-loopback bind without CurveZMQ keys"},
    {.name = "metrics_listen", .type = DK_STRING, .def_s = "", .off = OFF(metrics_listen),
     .desc = "HOST:PORT for Prometheus metrics over HTTP at /metrics, e.g. \"127.0.0.1:9108\"; "
             "\"\" = off"},
    /* CurveZMQ (daemon/auth.c, daemon/zap.c) */
    {.name = "curve_key", .type = DK_STRING, .def_s = "", .off = OFF(curve_key),
     .desc = "the daemon's CurveZMQ secret key file (mltunerctl keygen), e.g. "
             "\"/etc/mltuner/server.key\"; set: shards and control accept only CURVE peers; "
             "\"\" = off"},
    {.name = "curve_authorized_keys", .type = DK_STRING, .def_s = "",
     .off = OFF(curve_authorized_keys),
     .desc = "with curve_key: file of the public keys allowed in, one a line with an optional "
             "name, e.g. \"/etc/mltuner/authorized_keys\""},
};

#define N_KEYS (sizeof keys / sizeof keys[0])

static const char file_header[] =
    "# mltunerd.conf - configuration of the mltuner parameter server daemon.\n"
    "#\n"
    "# Every key is listed with its default; a key left out keeps its default, and\n"
    "# overrides given on the command line win over this file. Sizes are bytes: an\n"
    "# integer, or a string with a binary K/M/G/T suffix (\"64K\" is 65536).\n"
    "# This text is what mlt_dconf_write_defaults() prints (daemon/config.c);\n"
    "# tests/unit/check_config.c checks that the two agree.\n";

/* ---- small helpers ---- */

static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));

/* snprintf into an optional message buffer (NULL or 0 length: dropped) */
static void fmt(char *buf, size_t len, const char *f, ...)
{
    if (!buf || len == 0)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

static const dkey_t *key_find(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (name && strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* true when k is the plain field at offset off (setter rows have no field) */
static bool key_is(const dkey_t *k, size_t off)
{
    return !k->set && k->off == off;
}

static void *field(mlt_dconf_t *c, const dkey_t *k)
{
    assert(!k->set);
    return (char *)c + k->off;
}

static const void *cfield(const mlt_dconf_t *c, const dkey_t *k)
{
    assert(!k->set);
    return (const char *)c + k->off;
}

static size_t list_len(char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

static void list_free(char **l)
{
    for (size_t i = 0; l && l[i]; i++)
        mlt_free(l[i]);
    mlt_free(l);
}

/* caller owns the copy; an empty list copies to NULL */
static char **list_dup(char *const *l)
{
    size_t n = list_len(l);
    if (n == 0)
        return NULL;
    char **d = mlt_calloc(n + 1, sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = mlt_strdup(l[i]);
    return d;
}

static const char *type_noun(const dkey_t *k)
{
    switch (k->type) {
    case DK_INT: return "an integer";
    case DK_SIZE: return "an integer or a size string such as \"8G\"";
    case DK_DOUBLE: return "a number";
    case DK_STRING: return "a string";
    case DK_BOOL: return "true or false";
    case DK_STRLIST: return "a list of strings";
    }
    return "?";
}

/* "8G" for 8 GiB: the largest binary suffix that divides v exactly, else the
 * plain number; quoted when it has a suffix (a libconfig string) */
static void fmt_size(char *buf, size_t len, long long v, bool quoted)
{
    static const struct {
        long long mult;
        char suffix;
    } units[] = {{TIB, 'T'}, {GIB, 'G'}, {MIB, 'M'}, {KIB, 'K'}};
    for (size_t i = 0; v > 0 && i < sizeof units / sizeof units[0]; i++) {
        if (v % units[i].mult == 0) {
            const char *q = quoted ? "\"" : "";
            fmt(buf, len, "%s%lld%c%s", q, v / units[i].mult, units[i].suffix, q);
            return;
        }
    }
    fmt(buf, len, "%lld", v);
}

/* the shortest plain decimal that reads back as d, with a ".0" when it has no
 * point, so that libconfig reads a float ("60.0", "0.01") */
static void fmt_double(char *buf, size_t len, double d)
{
    for (int prec = 0; prec <= 17; prec++) {
        fmt(buf, len, "%.*f", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (!strchr(buf, '.') && strlen(buf) + 3 <= len)
        strcat(buf, ".0");
}

/* ---- reading a value: text or libconfig setting -> dval_t ---- */

/* Decimal integer, the whole text. 0, or -EINVAL with why. */
static int parse_int(const dkey_t *k, const char *s, long long *out, char *why, size_t whylen)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s == '\0' || *s == ' ' || *s == '\t' || *end != '\0') {
        fmt(why, whylen, "must be an integer (got \"%s\")", s);
        return -EINVAL;
    }
    if (errno == ERANGE) {
        fmt(why, whylen, "must be between %lld and %lld (got %s)", k->min_i, k->max_i, s);
        return -EINVAL;
    }
    *out = v;
    return 0;
}

/* Digits with an optional binary suffix K, M, G or T (either case): "512M".
 * 0, or -EINVAL with why. */
static int parse_size(const dkey_t *k, const char *s, long long *out, char *why, size_t whylen)
{
    long long v = 0, mult = 1;
    const char *p = s;
    bool overflow = false;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (LLONG_MAX - (*p - '0')) / 10)
            overflow = true;
        else
            v = v * 10 + (*p - '0');
    }
    switch (*p) {
    case 'k': case 'K': mult = KIB; p++; break;
    case 'm': case 'M': mult = MIB; p++; break;
    case 'g': case 'G': mult = GIB; p++; break;
    case 't': case 'T': mult = TIB; p++; break;
    default: break;
    }
    if (p == s || !(s[0] >= '0' && s[0] <= '9') || *p != '\0') {
        fmt(why, whylen, "must be a size such as \"8G\" or 1048576 (got \"%s\")", s);
        return -EINVAL;
    }
    if (overflow || v > LLONG_MAX / mult) {
        fmt(why, whylen, "must be between %lld and %lld (got %s)", k->min_i, k->max_i, s);
        return -EINVAL;
    }
    *out = v * mult;
    return 0;
}

/* --set text -> value of k's type. 0, or -EINVAL with why ("must be ..."). */
static int value_from_text(const dkey_t *k, const char *s, dval_t *v, char *why, size_t whylen)
{
    switch (k->type) {
    case DK_INT:
        return parse_int(k, s, &v->i, why, whylen);
    case DK_SIZE:
        return parse_size(k, s, &v->i, why, whylen);
    case DK_DOUBLE: {
        char *end;
        v->d = strtod(s, &end);
        if (*s == '\0' || *s == ' ' || *s == '\t' || *end != '\0') {
            fmt(why, whylen, "must be a number (got \"%s\")", s);
            return -EINVAL;
        }
        return 0;
    }
    case DK_STRING:
        v->s = s;
        return 0;
    case DK_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
            if (strcmp(s, yes[i]) == 0) {
                v->b = true;
                return 0;
            }
            if (strcmp(s, no[i]) == 0) {
                v->b = false;
                return 0;
            }
        }
        fmt(why, whylen, "must be true or false (got \"%s\")", s);
        return -EINVAL;
    }
    case DK_STRLIST: {
        /* comma-separated, blanks around entries dropped; "" is the empty list */
        if (*s == '\0') {
            v->list = NULL;
            return 0;
        }
        size_t n = 1;
        for (const char *p = s; *p; p++)
            n += *p == ',';
        char **l = mlt_calloc(n + 1, sizeof *l);
        const char *p = s;
        for (size_t i = 0; i < n; i++) {
            const char *end = strchr(p, ',');
            if (!end)
                end = p + strlen(p);
            const char *b = p, *e = end;
            while (b < e && (*b == ' ' || *b == '\t'))
                b++;
            while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            l[i] = mlt_malloc((size_t)(e - b) + 1);
            memcpy(l[i], b, (size_t)(e - b));
            l[i][e - b] = '\0';
            p = *end ? end + 1 : end;
        }
        v->list = l;
        return 0; /* empty entries are refused by check_value */
    }
    }
    return -EINVAL;
}

typedef enum {
    RD_OK,    /* *v holds the value */
    RD_TYPE,  /* the setting has the wrong type for k */
    RD_VALUE, /* right type, unusable value (why says how) */
} rd_t;

/* libconfig setting -> value of k's type. An int is accepted for a double; a
 * float for an int is not. */
static rd_t value_from_setting(const dkey_t *k, const config_setting_t *s, dval_t *v,
                               char *why, size_t whylen)
{
    int t = config_setting_type(s);
    bool is_int = t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
    switch (k->type) {
    case DK_INT:
        if (!is_int)
            return RD_TYPE;
        v->i = config_setting_get_int64(s);
        return RD_OK;
    case DK_SIZE:
        if (is_int) {
            v->i = config_setting_get_int64(s);
            return RD_OK;
        }
        if (t != CONFIG_TYPE_STRING)
            return RD_TYPE;
        return parse_size(k, config_setting_get_string(s), &v->i, why, whylen) ? RD_VALUE : RD_OK;
    case DK_DOUBLE:
        if (is_int)
            v->d = (double)config_setting_get_int64(s);
        else if (t == CONFIG_TYPE_FLOAT)
            v->d = config_setting_get_float(s);
        else
            return RD_TYPE;
        return RD_OK;
    case DK_STRING:
        if (t != CONFIG_TYPE_STRING)
            return RD_TYPE;
        v->s = config_setting_get_string(s);
        return RD_OK;
    case DK_BOOL:
        if (t != CONFIG_TYPE_BOOL)
            return RD_TYPE;
        v->b = config_setting_get_bool(s) != 0;
        return RD_OK;
    case DK_STRLIST: {
        if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
            return RD_TYPE;
        int n = config_setting_length(s);
        for (int i = 0; i < n; i++)
            if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != CONFIG_TYPE_STRING)
                return RD_TYPE;
        v->list = NULL;
        if (n > 0) {
            v->list = mlt_calloc((size_t)n + 1, sizeof *v->list);
            for (int i = 0; i < n; i++)
                v->list[i] = mlt_strdup(config_setting_get_string_elem(s, i));
        }
        return RD_OK;
    }
    }
    return RD_TYPE;
}

/* ---- checking and storing ---- */

/* Bounds and multiples of a value of k's type. 0, or -EINVAL with why. */
static int check_value(const dkey_t *k, const dval_t *v, char *why, size_t whylen)
{
    switch (k->type) {
    case DK_INT:
    case DK_SIZE:
        if (v->i < k->min_i || v->i > k->max_i) {
            fmt(why, whylen, "must be between %lld and %lld (got %lld)", k->min_i, k->max_i, v->i);
            return -EINVAL;
        }
        if (k->multiple && v->i % k->multiple != 0) {
            fmt(why, whylen, "must be a multiple of %lld (got %lld)", k->multiple, v->i);
            return -EINVAL;
        }
        return 0;
    case DK_DOUBLE:
        if (!(v->d >= k->min_d && v->d <= k->max_d)) { /* NaN fails too */
            fmt(why, whylen, "must be between %g and %g (got %g)", k->min_d, k->max_d, v->d);
            return -EINVAL;
        }
        return 0;
    case DK_STRLIST: {
        size_t n = list_len(v->list);
        if ((long long)n > k->max_i) {
            fmt(why, whylen, "must have at most %lld entries (got %zu)", k->max_i, n);
            return -EINVAL;
        }
        for (size_t i = 0; i < n; i++) {
            if (v->list[i][0] == '\0') {
                fmt(why, whylen, "must not have an empty entry (entry %zu is empty)", i);
                return -EINVAL;
            }
        }
        return 0;
    }
    case DK_STRING:
    case DK_BOOL:
        return 0;
    }
    return -EINVAL;
}

/* Stores a checked value; takes v->list. 0, or -EINVAL from a setter (which
 * leaves *c untouched). */
static int store(mlt_dconf_t *c, const dkey_t *k, dval_t *v, char *why, size_t whylen)
{
    if (k->set)
        return k->set(c, v->s, why, whylen);
    void *f = field(c, k);
    switch (k->type) {
    case DK_INT:
        *(int *)f = (int)v->i;
        break;
    case DK_SIZE:
        *(size_t *)f = (size_t)v->i;
        break;
    case DK_DOUBLE:
        *(double *)f = v->d;
        break;
    case DK_BOOL:
        *(bool *)f = v->b;
        break;
    case DK_STRING: {
        char **p = f;
        mlt_free(*p);
        *p = mlt_strdup(v->s);
        break;
    }
    case DK_STRLIST: {
        char ***p = f;
        list_free(*p);
        *p = v->list;
        v->list = NULL;
        break;
    }
    }
    return 0;
}

/* check, then store; v->list is taken on success and left to the caller on
 * failure */
static int apply(mlt_dconf_t *c, const dkey_t *k, dval_t *v, char *why, size_t whylen)
{
    int rc = check_value(k, v, why, whylen);
    return rc ? rc : store(c, k, v, why, whylen);
}

static int set_log_level(mlt_dconf_t *c, const char *s, char *why, size_t whylen)
{
    int lvl = mlt_log_level_parse(s);
    if (lvl < 0) {
        fmt(why, whylen, "must be one of error, warn, info, debug (got \"%s\")", s);
        return -EINVAL;
    }
    c->log_level = lvl;
    return 0;
}

/* deep copy of src's owned strings; dst needs mlt_dconf_free */
static void dconf_copy(mlt_dconf_t *dst, const mlt_dconf_t *src)
{
    *dst = *src;
    for (size_t i = 0; i < N_KEYS; i++) {
        const dkey_t *k = &keys[i];
        if (k->set)
            continue;
        if (k->type == DK_STRING) {
            const char *s = *(char *const *)cfield(src, k);
            *(char **)field(dst, k) = s ? mlt_strdup(s) : NULL;
        } else if (k->type == DK_STRLIST) {
            *(char ***)field(dst, k) = list_dup(*(char **const *)cfield(src, k));
        }
    }
}

/* ---- the API ---- */

void mlt_dconf_defaults(mlt_dconf_t *c)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < N_KEYS; i++) {
        const dkey_t *k = &keys[i];
        dval_t v = {.i = k->def_i, .d = k->def_d, .b = k->def_i != 0, .s = k->def_s};
        int rc = apply(c, k, &v, NULL, 0);
        assert(rc == 0 && "a default is outside its own bounds");
        (void)rc;
    }
}

/* Applies one top-level setting of a file to *c. */
static int load_setting(mlt_dconf_t *c, const config_setting_t *s, const char *path,
                        const dkey_t **kp, char *err, size_t errlen)
{
    const char *name = config_setting_name(s);
    unsigned line = config_setting_source_line(s);
    const dkey_t *k = key_find(name);
    if (!k) {
        fmt(err, errlen, "%s:%u: unknown key '%s'", path, line, name ? name : "?");
        return -EINVAL;
    }
    char why[256];
    dval_t v = {0};
    switch (value_from_setting(k, s, &v, why, sizeof why)) {
    case RD_OK:
        break;
    case RD_TYPE:
        fmt(err, errlen, "%s:%u: key '%s' must be %s", path, line, k->name, type_noun(k));
        return -EINVAL;
    case RD_VALUE:
        fmt(err, errlen, "%s:%u: %s %s", path, line, k->name, why);
        return -EINVAL;
    }
    if (apply(c, k, &v, why, sizeof why) != 0) {
        list_free(v.list);
        fmt(err, errlen, "%s:%u: %s %s", path, line, k->name, why);
        return -EINVAL;
    }
    *kp = k;
    return 0;
}

/* Applies every top-level setting of cfg to *c, then derives n_servers. */
static int load_settings(mlt_dconf_t *c, const config_t *cfg, const char *path, char *err,
                         size_t errlen)
{
    const config_setting_t *root = config_root_setting(cfg);
    bool servers_given = false, n_servers_given = false;
    int n = config_setting_length(root);
    for (int i = 0; i < n; i++) {
        const dkey_t *k = NULL;
        int rc = load_setting(c, config_setting_get_elem(root, (unsigned)i), path, &k, err, errlen);
        if (rc)
            return rc;
        servers_given |= key_is(k, OFF(servers));
        n_servers_given |= key_is(k, OFF(n_servers));
    }
    if (servers_given && !n_servers_given && c->servers)
        c->n_servers = (int)list_len(c->servers); /* 1..MAX_SERVERS: checked */
    return 0;
}

/* Reads the whole file (at most MAX_FILE bytes) into a new buffer. */
static int read_file(const char *path, char **textp, char *err, size_t errlen)
{
    size_t len;
    int rc = mlt_cfgtext_read(path, MAX_FILE, textp, &len, err, errlen);
    if (rc == -EFBIG)
        fmt(err, errlen, "%s: cannot open: %s", path, strerror(EFBIG));
    return rc;
}

int mlt_dconf_load(mlt_dconf_t *c, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    int rc = read_file(path, &text, err, errlen);
    if (rc)
        return rc;

    config_t cfg;
    config_init(&cfg);
    if (!config_read_string(&cfg, text)) {
        const char *why = config_error_text(&cfg);
        fmt(err, errlen, "%s:%d: %s", path, config_error_line(&cfg), why ? why : "parse error");
        rc = -EINVAL;
        goto fail_parse;
    }
    rc = mlt_cfgtext_check(text, path, true, "a size string such as \"8G\"", err, errlen);
    if (rc)
        goto fail_parse;

    mlt_dconf_t next;
    dconf_copy(&next, c);
    rc = load_settings(&next, &cfg, path, err, errlen);
    if (rc)
        goto fail_settings;
    mlt_dconf_free(c);
    *c = next;
    config_destroy(&cfg);
    mlt_free(text);
    return 0;

fail_settings:
    mlt_dconf_free(&next);
fail_parse:
    config_destroy(&cfg);
    mlt_free(text);
    return rc;
}

int mlt_dconf_set(mlt_dconf_t *c, const char *key, const char *value, char *err, size_t errlen)
{
    const dkey_t *k = key_find(key);
    if (!k) {
        fmt(err, errlen, "--set %s: unknown key", key ? key : "(null)");
        return -EINVAL;
    }
    char why[256];
    dval_t v = {0};
    int rc = value_from_text(k, value ? value : "", &v, why, sizeof why);
    if (rc == 0)
        rc = apply(c, k, &v, why, sizeof why);
    if (rc) {
        list_free(v.list);
        fmt(err, errlen, "--set %s: %s", k->name, why);
        return rc;
    }
    if (key_is(k, OFF(servers)) && c->servers)
        c->n_servers = (int)list_len(c->servers);
    return 0;
}

int mlt_dconf_validate(const mlt_dconf_t *c, char *err, size_t errlen)
{
    char why[256];
    for (size_t i = 0; i < N_KEYS; i++) {
        const dkey_t *k = &keys[i];
        if (k->set || k->type == DK_STRING || k->type == DK_BOOL)
            continue;
        dval_t v = {0};
        const void *f = cfield(c, k);
        switch (k->type) {
        case DK_INT: v.i = *(const int *)f; break;
        case DK_SIZE: {
            size_t z = *(const size_t *)f;
            v.i = z > (size_t)LLONG_MAX ? LLONG_MAX : (long long)z;
            break;
        }
        case DK_DOUBLE: v.d = *(const double *)f; break;
        case DK_STRLIST: v.list = *(char **const *)f; break; /* borrowed */
        case DK_STRING:
        case DK_BOOL: break;
        }
        if (check_value(k, &v, why, sizeof why)) {
            fmt(err, errlen, "%s %s", k->name, why);
            return -EINVAL;
        }
    }
    if (c->log_level < MLT_LOG_ERROR || c->log_level > MLT_LOG_DEBUG) {
        fmt(err, errlen, "log_level must be between %d and %d (got %d)", MLT_LOG_ERROR,
            MLT_LOG_DEBUG, c->log_level);
        return -EINVAL;
    }
    char host[64];
    int port;
    if (c->metrics_listen && c->metrics_listen[0] &&
        mlt_dconf_parse_listen(c->metrics_listen, host, sizeof host, &port)) {
        fmt(err, errlen,
            "metrics_listen \"%s\" is not HOST:PORT (an IPv4 address, localhost or *, and a "
            "port 1..65535)",
            c->metrics_listen);
        return -EINVAL;
    }
    if (c->rank >= c->n_servers) {
        fmt(err, errlen, "rank %d must be less than n_servers (%d)", c->rank, c->n_servers);
        return -EINVAL;
    }
    size_t ns = list_len(c->servers);
    if (ns != 0 && ns != (size_t)c->n_servers) {
        fmt(err, errlen, "servers lists %zu endpoints but n_servers is %d", ns, c->n_servers);
        return -EINVAL;
    }
    if (!c->bind || c->bind[0] == '\0') {
        fmt(err, errlen, "bind is empty: set bind or servers (and call mlt_dconf_finish)");
        return -EINVAL;
    }
    return 0;
}

int mlt_dconf_parse_listen(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon || colon == s || (size_t)(colon - s) >= hostlen)
        return -EINVAL;
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 1 || p > 65535)
        return -EINVAL;
    size_t hl = (size_t)(colon - s);
    char h[64];
    if (hl >= sizeof h)
        return -EINVAL;
    memcpy(h, s, hl);
    h[hl] = 0;
    const char *ip = strcmp(h, "*") == 0 ? "0.0.0.0" : strcmp(h, "localhost") == 0 ? "127.0.0.1" : h;
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1 || strlen(ip) >= hostlen)
        return -EINVAL;
    strcpy(host, ip);
    *port = (int)p;
    return 0;
}

int mlt_dconf_finish(mlt_dconf_t *c, char *err, size_t errlen)
{
    if (!c->bind || c->bind[0] == '\0') {
        size_t ns = list_len(c->servers);
        const char *b = NULL;
        if (ns == 0)
            b = BIND_FALLBACK;
        else if (c->rank >= 0 && (size_t)c->rank < ns)
            b = c->servers[c->rank];
        /* else: rank is outside servers, which validate reports */
        if (b) {
            mlt_free(c->bind);
            c->bind = mlt_strdup(b);
        }
    }
    return mlt_dconf_validate(c, err, errlen);
}

void mlt_dconf_write_defaults(FILE *f)
{
    fputs(file_header, f);
    for (size_t i = 0; i < N_KEYS; i++) {
        const dkey_t *k = &keys[i];
        char a[64], b[64], m[64];
        fprintf(f, "\n# %s", k->desc);
        switch (k->type) {
        case DK_INT:
            fprintf(f, " [%lld..%lld]", k->min_i, k->max_i);
            break;
        case DK_SIZE:
            fmt_size(a, sizeof a, k->min_i, false);
            fmt_size(b, sizeof b, k->max_i, false);
            fprintf(f, " [%s..%s", a, b);
            if (k->multiple) {
                fmt_size(m, sizeof m, k->multiple, false);
                fprintf(f, ", a multiple of %s", m);
            }
            fputc(']', f);
            break;
        case DK_DOUBLE:
            fprintf(f, " [%g..%g]", k->min_d, k->max_d);
            break;
        case DK_STRLIST:
            fprintf(f, " [at most %lld]", k->max_i);
            break;
        case DK_STRING:
        case DK_BOOL:
            break;
        }
        fprintf(f, "\n%s = ", k->name);
        switch (k->type) {
        case DK_INT:
            fprintf(f, "%lld", k->def_i);
            break;
        case DK_SIZE:
            fmt_size(a, sizeof a, k->def_i, true);
            fputs(a, f);
            break;
        case DK_DOUBLE:
            fmt_double(a, sizeof a, k->def_d);
            fputs(a, f);
            break;
        case DK_STRING:
            mlt_cfgtext_write_string(f, k->def_s);
            break;
        case DK_BOOL:
            fputs(k->def_i ? "true" : "false", f);
            break;
        case DK_STRLIST:
            fputs("( )", f);
            break;
        }
        fputs(";\n", f);
    }
}

void mlt_dconf_free(mlt_dconf_t *c)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const dkey_t *k = &keys[i];
        if (k->set)
            continue;
        if (k->type == DK_STRING) {
            char **p = field(c, k);
            mlt_free(*p);
            *p = NULL;
        } else if (k->type == DK_STRLIST) {
            char ***p = field(c, k);
            list_free(*p);
            *p = NULL;
        }
    }
}
