/* config.h - the daemon's configuration: one table of keys (type, default,
 * bounds, one-line description) read from a libconfig file, then overridable
 * from the command line. Errors name the file and line ("mltunerd.conf:12:
 * chunk_size must be a multiple of 4096 (got 5000)"). Not thread-safe; load once
 * at start.
 *
 * Order of use: mlt_dconf_defaults, then any number of mlt_dconf_load and
 * mlt_dconf_set (later ones win), then mlt_dconf_finish once; free with
 * mlt_dconf_free. */
#ifndef MLT_DAEMON_CONFIG_H
#define MLT_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define MLT_DCONF_MAX_SERVERS 256

typedef struct mlt_dconf {
    int rank;               /* this daemon's index in the server list (0 = coordinator) */
    int n_servers;          /* number of shards S; len(servers) when servers is set */
    char **servers;         /* endpoints of every shard, in rank order, NULL-terminated;
                               NULL when no list was given */
    char *bind;             /* endpoint this daemon binds ("" until mlt_dconf_finish
                               resolves it to servers[rank]) */
    char *endpoint_file;    /* if set, the bound endpoint is written here (port 0 use) */
    char *control_bind;     /* rank 0: the coordinator's control endpoint ("" = off) */
    char *control_endpoint_file; /* if set, the bound control endpoint is written here */
    size_t chunk_size;      /* bytes per chunk, multiple of 4096, 4 KiB..16 MiB */
    size_t memory_limit;    /* bytes all live branches may use, fully written */
    int log_level;          /* mlt_log_level_t */
    char *state_dir;        /* where checkpoints and job outputs go */
    double pull_timeout_s;  /* a parked pull is answered with -ETIMEDOUT after this */
    double worker_timeout_s;/* heartbeat silence after which a worker is considered gone */
    bool allow_insecure;    /* permit a non-loopback bind without CurveZMQ keys */
    char *metrics_listen;   /* HOST:PORT of the HTTP metrics endpoint ("" = off) */
    char *curve_key;        /* the daemon's CurveZMQ secret key file ("" = no CURVE) */
    char *curve_authorized_keys; /* allow-list of client public keys (with curve_key) */
} mlt_dconf_t;

/* Splits a metrics_listen value "HOST:PORT" (HOST an IPv4 address, "localhost"
 * or "*" for every interface; PORT 1..65535) into host (the IPv4 address to
 * bind, "0.0.0.0" for "*") and *port. Returns 0, or -EINVAL. */
int mlt_dconf_parse_listen(const char *s, char *host, size_t hostlen, int *port);

/* Fills *c (uninitialised or freed) with the defaults of every key. Allocates
 * strings (free with mlt_dconf_free); aborts only on out-of-memory. */
void mlt_dconf_defaults(mlt_dconf_t *c);

/* Reads `path` over the values already in *c; keys the file leaves out keep
 * them. Unknown keys, wrong types and out-of-bounds values are refused. When the
 * file gives a non-empty servers list but no n_servers, n_servers becomes the
 * list's length. Returns 0; -EINVAL with a "file:line: what" message in err; or
 * -errno (-ENOENT, -EACCES) with "file: cannot open: why" when the file cannot
 * be opened. On failure *c is unchanged. */
int mlt_dconf_load(mlt_dconf_t *c, const char *path, char *err, size_t errlen);

/* Sets one key from text ("chunk_size", "131072"), as a command-line override.
 * Same checks as the file. Sizes take a K/M/G/T suffix ("512M"), booleans
 * true/false/yes/no/on/off/1/0, servers a comma-separated list (which, when
 * non-empty, also sets n_servers to its length). Returns 0 or -EINVAL with a
 * "--set KEY: what" message; on failure *c is unchanged. */
int mlt_dconf_set(mlt_dconf_t *c, const char *key, const char *value, char *err, size_t errlen);

/* Checks cross-key constraints after all loading (rank < n_servers, bind set,
 * servers count = n_servers) and, again, every key's bounds. Modifies nothing:
 * an empty bind is refused, so call mlt_dconf_finish first. Returns 0 or
 * -EINVAL with a message. */
int mlt_dconf_validate(const mlt_dconf_t *c, char *err, size_t errlen);

/* Resolves the defaults that depend on other keys, then validates: an empty
 * bind becomes servers[rank] when a servers list is given (and rank is inside
 * it), else "tcp://127.0.0.1:7100" when none is. Returns what
 * mlt_dconf_validate returns. */
int mlt_dconf_finish(mlt_dconf_t *c, char *err, size_t errlen);

/* Writes every key with its default and one-line description in libconfig
 * syntax: byte for byte what conf/mltunerd.conf ships (a test checks). */
void mlt_dconf_write_defaults(FILE *f);

/* Frees the strings in *c (not c itself). Safe on a zeroed struct. */
void mlt_dconf_free(mlt_dconf_t *c);

#endif
