/* config.c - the daemon's configuration (see config.h).
 *
 * Everything about a key lives in one row of keys[], a table of the key-table
 * engine (common/keytable.h): name, type, default, bounds, one-line
 * description and the field it is stored in (log_level is a string parsed
 * into an int). Defaults, file loading, --set, the bounds half of validation
 * and the text of the shipped conf/mltunerd.conf are the engine's loops over
 * that table: adding a key is adding a field and a row. What is the daemon's
 * own is here: the checks between keys, the defaults that follow other keys
 * (n_servers, bind), and that a refused file or --set leaves *c as it was
 * (mlt_dconf_load reads into a copy and commits only when every key was good).
 * Not thread-safe; used once at start. */
#include "daemon/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/cfgtext.h"
#include "common/errtext.h"
#include "common/keytable.h"
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

/* log_level: the name -> mlt_log_level_t */
static int parse_log_level(const char *subj, const char *s, long long *out, char *why,
                           size_t whylen)
{
    int lvl = mlt_log_level_parse(s);
    if (lvl < 0)
        return mlt_errf(-EINVAL, why, whylen,
                        "%s must be one of error, warn, info, debug (got \"%s\")", subj, s);
    *out = lvl;
    return 0;
}

#define OFF(field) offsetof(mlt_dconf_t, field)

/* The keys, in the order the shipped file lists them. (Kept out of
 * clang-format, which would put each field on a line.) */
// clang-format off
static const mlt_kt_key_t keys[] = {
    {.path = "rank", .type = MLT_KT_INT, .def_i = 0,
     .min_i = 0, .max_i = MLT_DCONF_MAX_SERVERS - 1, .off = OFF(rank),
     .desc = "this daemon's index in servers; 0 is the coordinator"},
    {.path = "n_servers", .type = MLT_KT_INT, .def_i = 1,
     .min_i = 1, .max_i = MLT_DCONF_MAX_SERVERS, .off = OFF(n_servers),
     .desc = "number of shards; when left out, the length of a non-empty servers"},
    {.path = "servers", .type = MLT_KT_STRLIST, .max_n = MLT_DCONF_MAX_SERVERS,
     .off = OFF(servers),
     .desc = "endpoints of every shard in rank order, e.g. ( \"tcp://h1:7100\", "
             "\"tcp://h2:7100\" )"},
    {.path = "bind", .type = MLT_KT_STRING, .def_s = "", .off = OFF(bind),
     .desc = "endpoint to bind; \"\" means servers[rank], or " BIND_FALLBACK
             " without servers"},
    {.path = "endpoint_file", .type = MLT_KT_STRING, .def_s = "", .off = OFF(endpoint_file),
     .desc = "if set, the bound endpoint is written to this file (for a port-0 bind)"},
    {.path = "control_bind", .type = MLT_KT_STRING, .def_s = "tcp://127.0.0.1:7099",
     .off = OFF(control_bind),
     .desc = "rank 0 only: endpoint of the coordinator (jobs, workers, mltunerctl); \"\" = off"},
    {.path = "control_endpoint_file", .type = MLT_KT_STRING, .def_s = "",
     .off = OFF(control_endpoint_file),
     .desc = "if set, the bound control endpoint is written to this file"},
    {.path = "chunk_size", .type = MLT_KT_SIZE, .def_i = 64 * KIB,
     .min_i = 4 * KIB, .max_i = 16 * MIB, .multiple = 4 * KIB, .off = OFF(chunk_size),
     .desc = "bytes per parameter chunk"},
    {.path = "memory_limit", .type = MLT_KT_SIZE, .def_i = 8 * GIB,
     .min_i = MIB, .max_i = TIB, .off = OFF(memory_limit),
     .desc = "bytes all live branches may use, counted fully written"},
    {.path = "log_level", .type = MLT_KT_PARSED, .def_s = "info", .parse = parse_log_level,
     .min_i = MLT_LOG_ERROR, .max_i = MLT_LOG_DEBUG, .off = OFF(log_level),
     .desc = "one of error, warn, info, debug"},
    {.path = "state_dir", .type = MLT_KT_STRING, .def_s = "/var/lib/mltuner",
     .off = OFF(state_dir),
     .desc = "directory for checkpoints and job outputs"},
    {.path = "pull_timeout_s", .type = MLT_KT_DOUBLE, .def_d = 60.0,
     .min_d = 0.01, .max_d = 86400.0, .off = OFF(pull_timeout_s),
     .desc = "seconds after which a parked pull is answered with a timeout"},
    {.path = "worker_timeout_s", .type = MLT_KT_DOUBLE, .def_d = 30.0,
     .min_d = 0.1, .max_d = 86400.0, .off = OFF(worker_timeout_s),
     .desc = "seconds of heartbeat silence after which a worker counts as gone"},
    {.path = "allow_insecure", .type = MLT_KT_BOOL, .def_i = 0, .off = OFF(allow_insecure),
     .desc = "permit a non-loopback bind without CurveZMQ keys"},
    {.path = "metrics_listen", .type = MLT_KT_STRING, .def_s = "", .off = OFF(metrics_listen),
     .desc = "HOST:PORT for Prometheus metrics over HTTP at /metrics, e.g. \"127.0.0.1:9108\"; "
             "\"\" = off"},
    /* CurveZMQ (daemon/auth.c, daemon/zap.c) */
    {.path = "curve_key", .type = MLT_KT_STRING, .def_s = "", .off = OFF(curve_key),
     .desc = "the daemon's CurveZMQ secret key file (mltunerctl keygen), e.g. "
             "\"/etc/mltuner/server.key\"; set: shards and control accept only CURVE peers; "
             "\"\" = off"},
    {.path = "curve_authorized_keys", .type = MLT_KT_STRING, .def_s = "",
     .off = OFF(curve_authorized_keys),
     .desc = "with curve_key: file of the public keys allowed in, one a line with an optional "
             "name, e.g. \"/etc/mltuner/authorized_keys\""},
};
// clang-format on

static const mlt_kt_table_t table = {
    .keys = keys,
    .n_keys = sizeof keys / sizeof keys[0],
    .quote_type_errors = true, /* "key 'rank' must be an integer" */
};

static const char file_header[] =
    "# mltunerd.conf - configuration of the mltuner parameter server daemon.\n"
    "#\n"
    "# Every key is listed with its default; a key left out keeps its default, and\n"
    "# overrides given on the command line win over this file. Sizes are bytes: an\n"
    "# integer, or a string with a binary K/M/G/T suffix (\"64K\" is 65536).\n"
    "# This text is what mlt_dconf_write_defaults() prints (daemon/config.c);\n"
    "# tests/unit/check_config.c checks that the two agree.\n";

/* ---- the API ---- */

void mlt_dconf_defaults(mlt_dconf_t *c)
{
    memset(c, 0, sizeof *c);
    mlt_kt_defaults(&table, c, false);
}

static size_t list_len(char *const *l)
{
    size_t n = 0;
    while (l && l[n])
        n++;
    return n;
}

int mlt_dconf_load(mlt_dconf_t *c, const char *path, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len;
    int rc = mlt_cfgtext_read(path, MAX_FILE, &text, &len, err, errlen);
    if (rc == -EFBIG)
        mlt_errf(rc, err, errlen, "%s: cannot open: %s", path, strerror(EFBIG));
    if (rc)
        return rc;

    mlt_kt_ctx_t p = {.table = &table, .file = path};
    mlt_dconf_t next;
    mlt_kt_copy(&table, &next, c, sizeof next);
    rc = mlt_kt_read_text(&p, &next, text, true, "a size string such as \"8G\"", err, errlen);
    if (rc)
        goto fail_read;
    /* n_servers, when left out, follows a non-empty servers */
    if (mlt_kt_ctx_line(&p, "servers") && !mlt_kt_ctx_line(&p, "n_servers") && next.servers)
        next.n_servers = (int)list_len(next.servers); /* 1..MAX_SERVERS: checked */
    mlt_dconf_free(c);
    *c = next;
    mlt_kt_ctx_free(&p);
    mlt_free(text);
    return 0;

fail_read:
    mlt_dconf_free(&next);
    mlt_kt_ctx_free(&p);
    mlt_free(text);
    return rc;
}

int mlt_dconf_set(mlt_dconf_t *c, const char *key, const char *value, char *err, size_t errlen)
{
    const mlt_kt_key_t *k = mlt_kt_find(&table, key);
    if (!k)
        return mlt_errf(-EINVAL, err, errlen, "--set %s: unknown key", key ? key : "(null)");
    char subj[96]; /* the messages read "--set rank: must be ..." */
    snprintf(subj, sizeof subj, "--set %s:", k->path);
    int rc = mlt_kt_set_text(&table, c, k, subj, value ? value : "", err, errlen);
    if (rc)
        return rc;
    if (k->off == OFF(servers) && c->servers)
        c->n_servers = (int)list_len(c->servers);
    return 0;
}

int mlt_dconf_validate(const mlt_dconf_t *c, char *err, size_t errlen)
{
    int idx = -1;
    for (size_t i = 0; i < table.n_keys; i++) {
        const mlt_kt_key_t *k = &table.keys[i];
        if (k->type == MLT_KT_STRING || k->type == MLT_KT_BOOL)
            continue;
        mlt_kt_val_t v = mlt_kt_load(c, k);
        int rc = mlt_kt_check(k, k->path, &v, err, errlen, &idx);
        if (rc)
            return rc;
    }
    char host[64];
    int port;
    if (c->metrics_listen && c->metrics_listen[0] &&
        mlt_dconf_parse_listen(c->metrics_listen, host, sizeof host, &port))
        return mlt_errf(-EINVAL, err, errlen,
                        "metrics_listen \"%s\" is not HOST:PORT (an IPv4 address, localhost or *, "
                        "and a port 1..65535)",
                        c->metrics_listen);
    if (c->rank >= c->n_servers)
        return mlt_errf(-EINVAL, err, errlen, "rank %d must be less than n_servers (%d)", c->rank,
                        c->n_servers);
    size_t ns = list_len(c->servers);
    if (ns != 0 && ns != (size_t)c->n_servers)
        return mlt_errf(-EINVAL, err, errlen, "servers lists %zu endpoints but n_servers is %d", ns,
                        c->n_servers);
    if (!c->bind || c->bind[0] == '\0')
        return mlt_errf(-EINVAL, err, errlen,
                        "bind is empty: set bind or servers (and call mlt_dconf_finish)");
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
    const char *ip = strcmp(h, "*") == 0           ? "0.0.0.0"
                     : strcmp(h, "localhost") == 0 ? "127.0.0.1"
                                                   : h;
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
    mlt_kt_write_conf(f, &table, file_header);
}

void mlt_dconf_free(mlt_dconf_t *c)
{
    mlt_kt_free_fields(&table, c, false);
}
