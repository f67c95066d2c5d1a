/* check_config.c - the daemon configuration (daemon/config.c): defaults, the
 * shipped conf/mltunerd.conf, loading every key, the exact errors a user sees,
 * command-line overrides, and the cross-key resolution in mlt_dconf_finish.
 *
 * The shipped file is found under $MLT_SOURCE_ROOT (default "."). Temporary
 * files are made with mkstemp under $TMPDIR (default /tmp) and removed. */
#include "daemon/config.h"

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/testutil.h"
#include "common/alloc.h"
#include "common/log.h"

/* ---- helpers ---- */

static char *tmp_conf(const char *text)
{
    return tmp_file_tagged("check_config", text, strlen(text));
}

/* Loads text over the defaults into *c; returns load's code, message in err. */
static int load_text(mlt_dconf_t *c, const char *text, char *err, size_t errlen, char **pathp)
{
    mlt_dconf_defaults(c);
    char *path = tmp_conf(text);
    int rc = mlt_dconf_load(c, path, err, errlen);
    if (pathp)
        *pathp = path;
    else
        tmp_drop(path);
    return rc;
}

static void assert_same(const mlt_dconf_t *a, const mlt_dconf_t *b)
{
    ck_assert_int_eq(a->rank, b->rank);
    ck_assert_int_eq(a->n_servers, b->n_servers);
    ck_assert(!a->servers == !b->servers);
    for (size_t i = 0; a->servers && (a->servers[i] || b->servers[i]); i++) {
        ck_assert_ptr_nonnull(a->servers[i]);
        ck_assert_ptr_nonnull(b->servers[i]);
        ck_assert_str_eq(a->servers[i], b->servers[i]);
    }
    ck_assert_str_eq(a->bind, b->bind);
    ck_assert_str_eq(a->endpoint_file, b->endpoint_file);
    ck_assert_uint_eq(a->chunk_size, b->chunk_size);
    ck_assert_uint_eq(a->memory_limit, b->memory_limit);
    ck_assert_int_eq(a->log_level, b->log_level);
    ck_assert_str_eq(a->state_dir, b->state_dir);
    ck_assert_double_eq(a->pull_timeout_s, b->pull_timeout_s);
    ck_assert_double_eq(a->worker_timeout_s, b->worker_timeout_s);
    ck_assert_int_eq(a->allow_insecure, b->allow_insecure);
}

/* Loads a file that must fail with -EINVAL and returns err; the file's path is
 * checked to start the message ("PATH:LINE: "). */
static void expect_load_error(const char *text, int line, const char *needle)
{
    mlt_dconf_t c;
    char err[512] = "", prefix[PATH_MAX + 32];
    char *path = NULL;
    int rc = load_text(&c, text, err, sizeof err, &path);
    ck_assert_int_eq(rc, -EINVAL);
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "error '%s' does not start with '%s'",
                  err, prefix);
    ck_assert_msg(strstr(err, needle) != NULL, "error '%s' lacks '%s'", err, needle);
    tmp_drop(path);
    mlt_dconf_free(&c);
}

/* The same, and the message after the prefix must be exactly `exact`. */
static void expect_load_error_exact(const char *text, int line, const char *exact)
{
    mlt_dconf_t c;
    char err[512] = "", want[PATH_MAX + 600];
    char *path = NULL;
    ck_assert_int_eq(load_text(&c, text, err, sizeof err, &path), -EINVAL);
    snprintf(want, sizeof want, "%s:%d: %s", path, line, exact);
    ck_assert_str_eq(err, want);
    tmp_drop(path);
    mlt_dconf_free(&c);
}

static void expect_set_error(const char *key, const char *value, const char *exact)
{
    mlt_dconf_t c, d;
    char err[512] = "";
    mlt_dconf_defaults(&c);
    mlt_dconf_defaults(&d);
    ck_assert_int_eq(mlt_dconf_set(&c, key, value, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, exact);
    assert_same(&c, &d); /* a refused override changes nothing */
    mlt_dconf_free(&c);
    mlt_dconf_free(&d);
}

/* ---- defaults ---- */

START_TEST(test_default_values)
{
    mlt_dconf_t c;
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(c.rank, 0);
    ck_assert_int_eq(c.n_servers, 1);
    ck_assert_ptr_null(c.servers);
    ck_assert_str_eq(c.bind, "");
    ck_assert_str_eq(c.endpoint_file, "");
    ck_assert_uint_eq(c.chunk_size, 65536);
    ck_assert_uint_eq(c.memory_limit, 8ULL << 30);
    ck_assert_int_eq(c.log_level, MLT_LOG_INFO);
    ck_assert_str_eq(c.state_dir, "/var/lib/mltuner");
    ck_assert_double_eq(c.pull_timeout_s, 60.0);
    ck_assert_double_eq(c.worker_timeout_s, 30.0);
    ck_assert(!c.allow_insecure);
    mlt_dconf_free(&c);
    mlt_dconf_free(&c); /* freed struct: safe again */
    ck_assert_ptr_null(c.bind);
}
END_TEST

START_TEST(test_free_zeroed)
{
    mlt_dconf_t c;
    memset(&c, 0, sizeof c);
    mlt_dconf_free(&c);
    ck_assert_ptr_null(c.state_dir);
}
END_TEST

/* Every key in the shipped file, with the default: loaded over a struct in
 * which every key differs from its default, it must give back the defaults. */
START_TEST(test_shipped_conf_is_defaults)
{
    mlt_dconf_t c, d;
    char err[512] = "";
    mlt_dconf_defaults(&d);
    char *text_path = NULL;
    ck_assert_int_eq(load_text(&c,
                               "rank = 1; n_servers = 2; servers = (\"tcp://a:1\", \"tcp://b:2\");\n"
                               "bind = \"tcp://x:1\"; endpoint_file = \"/e\"; chunk_size = 8192;\n"
                               "memory_limit = \"2M\"; log_level = \"debug\"; state_dir = \"/s\";\n"
                               "pull_timeout_s = 1.0; worker_timeout_s = 1.0;\n"
                               "allow_insecure = true;\n",
                               err, sizeof err, &text_path),
                     0);
    tmp_drop(text_path);
    char *path = source_path("conf/mltunerd.conf");
    int rc = mlt_dconf_load(&c, path, err, sizeof err);
    ck_assert_msg(rc == 0, "shipped conf: %s", err);
    assert_same(&c, &d);
    mlt_dconf_free(&c);
    mlt_dconf_free(&d);
    mlt_free(path);
}
END_TEST

static char *slurp(FILE *f, size_t *lenp)
{
    size_t cap = 4096, len = 0;
    char *buf = mlt_malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap)
            buf = mlt_realloc(buf, cap *= 2);
    }
    *lenp = len;
    return buf;
}

/* conf/mltunerd.conf is byte for byte what mlt_dconf_write_defaults prints. */
START_TEST(test_shipped_conf_matches_write_defaults)
{
    FILE *gen = tmpfile();
    ck_assert_ptr_nonnull(gen);
    mlt_dconf_write_defaults(gen);
    rewind(gen);
    char *path = source_path("conf/mltunerd.conf");
    FILE *shipped = fopen(path, "r");
    ck_assert_msg(shipped != NULL, "%s: %s", path, strerror(errno));
    size_t glen, slen;
    char *g = slurp(gen, &glen), *s = slurp(shipped, &slen);
    ck_assert_msg(glen == slen && memcmp(g, s, glen) == 0,
                  "%s differs from mlt_dconf_write_defaults() output", path);
    mlt_free(g);
    mlt_free(s);
    fclose(gen);
    fclose(shipped);
    mlt_free(path);
}
END_TEST

/* What write_defaults prints loads cleanly (independently of the file). */
START_TEST(test_write_defaults_parses)
{
    FILE *gen = tmpfile();
    ck_assert_ptr_nonnull(gen);
    mlt_dconf_write_defaults(gen);
    rewind(gen);
    size_t len;
    char *text = slurp(gen, &len);
    text = mlt_realloc(text, len + 1);
    text[len] = '\0';
    fclose(gen);
    mlt_dconf_t c, d;
    char err[512] = "";
    ck_assert_msg(load_text(&c, text, err, sizeof err, NULL) == 0, "%s", err);
    mlt_dconf_defaults(&d);
    assert_same(&c, &d);
    ck_assert_ptr_nonnull(strstr(text, "# bytes per parameter chunk"));
    mlt_free(text);
    mlt_dconf_free(&c);
    mlt_dconf_free(&d);
}
END_TEST

/* ---- load ---- */

START_TEST(test_load_every_key)
{
    mlt_dconf_t c;
    char err[512] = "";
    int rc = load_text(&c,
                       "rank = 2;\n"
                       "n_servers = 3;\n"
                       "servers = ( \"tcp://a:1\", \"tcp://b:2\", \"tcp://c:3\" );\n"
                       "bind = \"tcp://*:7200\";\n"
                       "endpoint_file = \"/run/mlt.ep\";\n"
                       "chunk_size = 131072;\n"
                       "memory_limit = \"512M\";\n"
                       "log_level = \"debug\";\n"
                       "state_dir = \"/srv/mlt\";\n"
                       "pull_timeout_s = 1.5;\n"
                       "worker_timeout_s = 10;   // an integer for a double\n"
                       "allow_insecure = true;\n",
                       err, sizeof err, NULL);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(c.rank, 2);
    ck_assert_int_eq(c.n_servers, 3);
    ck_assert_str_eq(c.servers[0], "tcp://a:1");
    ck_assert_str_eq(c.servers[1], "tcp://b:2");
    ck_assert_str_eq(c.servers[2], "tcp://c:3");
    ck_assert_ptr_null(c.servers[3]);
    ck_assert_str_eq(c.bind, "tcp://*:7200");
    ck_assert_str_eq(c.endpoint_file, "/run/mlt.ep");
    ck_assert_uint_eq(c.chunk_size, 131072);
    ck_assert_uint_eq(c.memory_limit, 512ULL << 20);
    ck_assert_int_eq(c.log_level, MLT_LOG_DEBUG);
    ck_assert_str_eq(c.state_dir, "/srv/mlt");
    ck_assert_double_eq(c.pull_timeout_s, 1.5);
    ck_assert_double_eq(c.worker_timeout_s, 10.0);
    ck_assert(c.allow_insecure);
    ck_assert_int_eq(mlt_dconf_validate(&c, err, sizeof err), 0);
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_load_sizes)
{
    static const struct {
        const char *text;
        size_t want;
    } cases[] = {
        {"memory_limit = \"512M\";", 512ULL << 20},
        {"memory_limit = \"8g\";", 8ULL << 30},
        {"memory_limit = \"1T\";", 1ULL << 40},          /* upper bound */
        {"memory_limit = \"1024K\";", 1ULL << 20},       /* lower bound */
        {"memory_limit = 1048576;", 1ULL << 20},
        {"memory_limit = 2147483648L;", 2ULL << 30},     /* past 32 bits: L */
        {"memory_limit = 3221225472L;", 3ULL << 30},
        {"memory_limit = \"3221225472\";", 3ULL << 30},
        {"chunk_size = 4096;", 4096},                    /* lower bound */
        {"chunk_size = \"16M\";", 16ULL << 20},          /* upper bound */
        {"chunk_size = \"8k\";", 8192},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mlt_dconf_t c;
        char err[512] = "";
        int rc = load_text(&c, cases[i].text, err, sizeof err, NULL);
        ck_assert_msg(rc == 0, "%s: %s", cases[i].text, err);
        size_t got = strstr(cases[i].text, "memory") ? c.memory_limit : c.chunk_size;
        ck_assert_msg(got == cases[i].want, "%s: got %zu", cases[i].text, got);
        mlt_dconf_free(&c);
    }
}
END_TEST

START_TEST(test_load_n_servers_from_list)
{
    mlt_dconf_t c;
    char err[512] = "";
    /* array syntax as well as list syntax; no n_servers given */
    ck_assert_int_eq(load_text(&c, "servers = [ \"tcp://a:1\", \"tcp://b:2\" ];\nrank = 1;\n",
                               err, sizeof err, NULL),
                     0);
    ck_assert_int_eq(c.n_servers, 2);
    mlt_dconf_free(&c);
    /* an empty list derives nothing */
    ck_assert_int_eq(load_text(&c, "servers = ( );\n", err, sizeof err, NULL), 0);
    ck_assert_ptr_null(c.servers);
    ck_assert_int_eq(c.n_servers, 1);
    mlt_dconf_free(&c);
}
END_TEST

/* A second file only changes the keys it names. */
START_TEST(test_load_layers)
{
    mlt_dconf_t c;
    char err[512] = "";
    ck_assert_int_eq(load_text(&c, "rank = 3;\nn_servers = 4;\nstate_dir = \"/a\";\n", err,
                               sizeof err, NULL),
                     0);
    char *path = tmp_conf("state_dir = \"/b\";\n");
    ck_assert_int_eq(mlt_dconf_load(&c, path, err, sizeof err), 0);
    ck_assert_int_eq(c.rank, 3);
    ck_assert_int_eq(c.n_servers, 4);
    ck_assert_str_eq(c.state_dir, "/b");
    tmp_drop(path);
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_load_empty_file)
{
    mlt_dconf_t c, d;
    char err[512] = "";
    ck_assert_int_eq(load_text(&c, "# nothing\n", err, sizeof err, NULL), 0);
    mlt_dconf_defaults(&d);
    assert_same(&c, &d);
    mlt_dconf_free(&c);
    mlt_dconf_free(&d);
}
END_TEST

/* ---- errors ---- */

START_TEST(test_err_unknown_key)
{
    expect_load_error("rank = 0;\n# a comment\nbogus_key = 5;\n", 3, "unknown key 'bogus_key'");
    expect_load_error_exact("rank = 0;\n\nbogus_key = 5;\n", 3, "unknown key 'bogus_key'");
    expect_load_error("\n\nlimits = { x = 1; };\n", 3, "unknown key 'limits'");
}
END_TEST

START_TEST(test_err_wrong_type)
{
    expect_load_error_exact("rank = \"two\";\n", 1, "key 'rank' must be an integer");
    expect_load_error_exact("\nrank = 1.5;\n", 2, "key 'rank' must be an integer");
    expect_load_error_exact("chunk_size = true;\n", 1,
                            "key 'chunk_size' must be an integer or a size string such as \"8G\"");
    expect_load_error_exact("chunk_size = 65536.0;\n", 1,
                            "key 'chunk_size' must be an integer or a size string such as \"8G\"");
    expect_load_error_exact("pull_timeout_s = \"60\";\n", 1, "key 'pull_timeout_s' must be a number");
    expect_load_error_exact("state_dir = 5;\n", 1, "key 'state_dir' must be a string");
    expect_load_error_exact("log_level = 3;\n", 1, "key 'log_level' must be a string");
    expect_load_error_exact("allow_insecure = 1;\n", 1, "key 'allow_insecure' must be true or false");
    expect_load_error_exact("servers = \"tcp://a:1\";\n", 1, "key 'servers' must be a list of strings");
    expect_load_error_exact("servers = ( \"tcp://a:1\", 2 );\n", 1,
                            "key 'servers' must be a list of strings");
    expect_load_error_exact("n_servers = { };\n", 1, "key 'n_servers' must be an integer");
}
END_TEST

START_TEST(test_err_bounds)
{
    expect_load_error_exact("chunk_size = 5;\n", 1,
                            "chunk_size must be between 4096 and 16777216 (got 5)");
    expect_load_error_exact("chunk_size = 4095;\n", 1,
                            "chunk_size must be between 4096 and 16777216 (got 4095)");
    expect_load_error_exact("chunk_size = \"32M\";\n", 1,
                            "chunk_size must be between 4096 and 16777216 (got 33554432)");
    expect_load_error_exact("chunk_size = -4096;\n", 1,
                            "chunk_size must be between 4096 and 16777216 (got -4096)");
    expect_load_error_exact("memory_limit = 1048575;\n", 1,
                            "memory_limit must be between 1048576 and 1099511627776 (got 1048575)");
    expect_load_error_exact("memory_limit = \"2T\";\n", 1,
                            "memory_limit must be between 1048576 and 1099511627776 "
                            "(got 2199023255552)");
    expect_load_error("memory_limit = \"99999999999999999999T\";\n", 1,
                      "memory_limit must be between");
    expect_load_error_exact("rank = 256;\n", 1, "rank must be between 0 and 255 (got 256)");
    expect_load_error_exact("rank = -1;\n", 1, "rank must be between 0 and 255 (got -1)");
    expect_load_error_exact("rank = 4294967296L;\n", 1,
                            "rank must be between 0 and 255 (got 4294967296)");
    expect_load_error_exact("n_servers = 0;\n", 1, "n_servers must be between 1 and 256 (got 0)");
    expect_load_error_exact("n_servers = 257;\n", 1, "n_servers must be between 1 and 256 (got 257)");
    expect_load_error_exact("pull_timeout_s = 0.001;\n", 1,
                            "pull_timeout_s must be between 0.01 and 86400 (got 0.001)");
    expect_load_error_exact("worker_timeout_s = 86401;\n", 1,
                            "worker_timeout_s must be between 0.1 and 86400 (got 86401)");
    expect_load_error_exact("servers = ( \"tcp://a:1\", \"\" );\n", 1,
                            "servers must not have an empty entry (entry 1 is empty)");
}
END_TEST

START_TEST(test_err_too_many_servers)
{
    size_t cap = 16 + 257 * 16;
    char *text = mlt_malloc(cap);
    size_t len = (size_t)snprintf(text, cap, "servers = (");
    for (int i = 0; i < 257; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"tcp://h:%d\"", i ? "," : "", i);
    snprintf(text + len, cap - len, ");\n");
    expect_load_error_exact(text, 1, "servers must have at most 256 entries (got 257)");
    mlt_free(text);
}
END_TEST

START_TEST(test_err_multiple)
{
    expect_load_error_exact("chunk_size = 5000;\n", 1, "chunk_size must be a multiple of 4096 (got 5000)");
    expect_load_error_exact("chunk_size = \"6K\";\n", 1,
                            "chunk_size must be a multiple of 4096 (got 6144)");
}
END_TEST

START_TEST(test_err_bad_size_string)
{
    expect_load_error_exact("memory_limit = \"8X\";\n", 1,
                            "memory_limit must be a size such as \"8G\" or 1048576 (got \"8X\")");
    expect_load_error_exact("memory_limit = \"G\";\n", 1,
                            "memory_limit must be a size such as \"8G\" or 1048576 (got \"G\")");
    expect_load_error_exact("memory_limit = \"\";\n", 1,
                            "memory_limit must be a size such as \"8G\" or 1048576 (got \"\")");
    expect_load_error_exact("memory_limit = \"-8G\";\n", 1,
                            "memory_limit must be a size such as \"8G\" or 1048576 (got \"-8G\")");
    expect_load_error_exact("memory_limit = \"8GB\";\n", 1,
                            "memory_limit must be a size such as \"8G\" or 1048576 (got \"8GB\")");
}
END_TEST

START_TEST(test_err_log_level)
{
    expect_load_error_exact("\n\nlog_level = \"loud\";\n", 3,
                            "log_level must be one of error, warn, info, debug (got \"loud\")");
    expect_load_error("log_level = \"INFO\";\n", 1, "log_level must be one of");
}
END_TEST

START_TEST(test_err_syntax)
{
    /* libconfig's own text, after the file and the line of the error */
    expect_load_error("rank = 1;\nchunk_size = ;\n", 2, "syntax error");
    expect_load_error("rank = 1;\nstate_dir = \"/a\";\nlog_level = \"info\" \"x\" 3;\n", 3,
                      "syntax error");
    expect_load_error("\n\n\nservers = ( \"a\", ;\n", 4, "syntax error");
}
END_TEST

START_TEST(test_err_missing_file)
{
    mlt_dconf_t c;
    char err[512] = "", want[600];
    const char *path = "/nonexistent/dir/mltunerd.conf";
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_load(&c, path, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "%s: cannot open: %s", path, strerror(ENOENT));
    ck_assert_str_eq(err, want);
    /* a directory is not a config file either */
    ck_assert_int_eq(mlt_dconf_load(&c, "/", err, sizeof err), -EISDIR);
    ck_assert_ptr_nonnull(strstr(err, "/: cannot open: "));
    /* err may be omitted */
    ck_assert_int_eq(mlt_dconf_load(&c, path, NULL, 0), -ENOENT);
    mlt_dconf_free(&c);
}
END_TEST

/* libconfig 1.5 wraps integer literals past 32 bits that have no L suffix
 * (4296015872 would become 1048576); such literals are refused by name. */
START_TEST(test_err_int_literal_wraps)
{
    expect_load_error_exact("# 4296015872 in a comment is fine\n"
                            "state_dir = \"/x/4296015872\";\nmemory_limit = 4296015872;\n",
                            3,
                            "integer 4296015872 does not fit in 32 bits; write 4296015872L "
                            "(or a size string such as \"8G\")");
    expect_load_error("/* 99999999999\n */ rank = 4294967296;\n", 2, "integer 4294967296 does not");
    expect_load_error("rank = -2147483649;\n", 1, "integer -2147483649 does not");
    expect_load_error("rank = 0x100000000;\n", 1, "integer 0x100000000 does not");
    /* at the 32-bit edges, with L, and floats: fine (or refused for other reasons) */
    expect_load_error_exact("rank = 2147483647;\n", 1,
                            "rank must be between 0 and 255 (got 2147483647)");
    expect_load_error_exact("rank = -2147483648;\n", 1,
                            "rank must be between 0 and 255 (got -2147483648)");
    mlt_dconf_t c;
    char err[512] = "";
    ck_assert_msg(load_text(&c,
                            "memory_limit = 4296015872L;\npull_timeout_s = 12345678901.5e-6;\n"
                            "worker_timeout_s = .99999999999;\nstate_dir = \"a\\\"99999999999\";\n",
                            err, sizeof err, NULL) == 0,
                  "%s", err);
    ck_assert_uint_eq(c.memory_limit, 4296015872ULL);
    ck_assert_str_eq(c.state_dir, "a\"99999999999");
    mlt_dconf_free(&c);
}
END_TEST

/* A refused file leaves the struct as it was, even for the keys before the
 * bad one. */
START_TEST(test_err_leaves_struct)
{
    mlt_dconf_t c, d;
    char err[512] = "";
    mlt_dconf_defaults(&c);
    mlt_dconf_defaults(&d);
    char *path = tmp_conf("rank = 3;\nservers = ( \"tcp://a:1\" );\nstate_dir = \"/x\";\n"
                          "chunk_size = 5;\n");
    ck_assert_int_eq(mlt_dconf_load(&c, path, err, sizeof err), -EINVAL);
    assert_same(&c, &d);
    tmp_drop(path);
    mlt_dconf_free(&c);
    mlt_dconf_free(&d);
}
END_TEST

/* ---- set ---- */

START_TEST(test_set_good)
{
    mlt_dconf_t c;
    char err[512] = "";
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_set(&c, "chunk_size", "131072", err, sizeof err), 0);
    ck_assert_uint_eq(c.chunk_size, 131072);
    ck_assert_int_eq(mlt_dconf_set(&c, "chunk_size", "16M", err, sizeof err), 0);
    ck_assert_uint_eq(c.chunk_size, 16ULL << 20);
    ck_assert_int_eq(mlt_dconf_set(&c, "memory_limit", "512M", err, sizeof err), 0);
    ck_assert_uint_eq(c.memory_limit, 512ULL << 20);
    ck_assert_int_eq(mlt_dconf_set(&c, "memory_limit", "1099511627776", err, sizeof err), 0);
    ck_assert_uint_eq(c.memory_limit, 1ULL << 40);
    ck_assert_int_eq(mlt_dconf_set(&c, "log_level", "warn", err, sizeof err), 0);
    ck_assert_int_eq(c.log_level, MLT_LOG_WARN);
    ck_assert_int_eq(mlt_dconf_set(&c, "pull_timeout_s", "0.5", err, sizeof err), 0);
    ck_assert_double_eq(c.pull_timeout_s, 0.5);
    ck_assert_int_eq(mlt_dconf_set(&c, "worker_timeout_s", "86400", err, sizeof err), 0);
    ck_assert_double_eq(c.worker_timeout_s, 86400.0);
    ck_assert_int_eq(mlt_dconf_set(&c, "allow_insecure", "true", err, sizeof err), 0);
    ck_assert(c.allow_insecure);
    ck_assert_int_eq(mlt_dconf_set(&c, "allow_insecure", "off", err, sizeof err), 0);
    ck_assert(!c.allow_insecure);
    ck_assert_int_eq(mlt_dconf_set(&c, "state_dir", "/tmp/s", err, sizeof err), 0);
    ck_assert_str_eq(c.state_dir, "/tmp/s");
    ck_assert_int_eq(mlt_dconf_set(&c, "bind", "tcp://127.0.0.1:0", err, sizeof err), 0);
    ck_assert_str_eq(c.bind, "tcp://127.0.0.1:0");
    ck_assert_int_eq(mlt_dconf_set(&c, "endpoint_file", "/tmp/ep", err, sizeof err), 0);
    ck_assert_str_eq(c.endpoint_file, "/tmp/ep");
    ck_assert_int_eq(mlt_dconf_set(&c, "servers", "tcp://a:1, tcp://b:2", err, sizeof err), 0);
    ck_assert_str_eq(c.servers[0], "tcp://a:1");
    ck_assert_str_eq(c.servers[1], "tcp://b:2");
    ck_assert_ptr_null(c.servers[2]);
    ck_assert_int_eq(c.n_servers, 2);
    ck_assert_int_eq(mlt_dconf_set(&c, "rank", "1", err, sizeof err), 0);
    ck_assert_int_eq(c.rank, 1);
    ck_assert_int_eq(mlt_dconf_set(&c, "servers", "", err, sizeof err), 0);
    ck_assert_ptr_null(c.servers);
    ck_assert_int_eq(mlt_dconf_set(&c, "n_servers", "256", err, sizeof err), 0);
    ck_assert_int_eq(c.n_servers, 256);
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_set_bad)
{
    expect_set_error("nope", "1", "--set nope: unknown key");
    expect_set_error("rank", "abc", "--set rank: must be an integer (got \"abc\")");
    expect_set_error("rank", "1.5", "--set rank: must be an integer (got \"1.5\")");
    expect_set_error("rank", "", "--set rank: must be an integer (got \"\")");
    expect_set_error("rank", "256", "--set rank: must be between 0 and 255 (got 256)");
    expect_set_error("rank", "99999999999999999999",
                     "--set rank: must be between 0 and 255 (got 99999999999999999999)");
    expect_set_error("chunk_size", "5", "--set chunk_size: must be between 4096 and 16777216 (got 5)");
    expect_set_error("chunk_size", "5000", "--set chunk_size: must be a multiple of 4096 (got 5000)");
    expect_set_error("memory_limit", "8Q",
                     "--set memory_limit: must be a size such as \"8G\" or 1048576 (got \"8Q\")");
    expect_set_error("memory_limit", "2T",
                     "--set memory_limit: must be between 1048576 and 1099511627776 "
                     "(got 2199023255552)");
    expect_set_error("pull_timeout_s", "soon", "--set pull_timeout_s: must be a number (got \"soon\")");
    expect_set_error("pull_timeout_s", "nan",
                     "--set pull_timeout_s: must be between 0.01 and 86400 (got nan)");
    expect_set_error("pull_timeout_s", "0", "--set pull_timeout_s: must be between 0.01 and 86400 (got 0)");
    expect_set_error("allow_insecure", "maybe", "--set allow_insecure: must be true or false (got \"maybe\")");
    expect_set_error("log_level", "loud",
                     "--set log_level: must be one of error, warn, info, debug (got \"loud\")");
    expect_set_error("servers", "tcp://a:1,,tcp://b:2",
                     "--set servers: must not have an empty entry (entry 1 is empty)");
}
END_TEST

/* ---- finish ---- */

START_TEST(test_finish_bind_from_servers)
{
    mlt_dconf_t c;
    char err[512] = "";
    ck_assert_int_eq(load_text(&c,
                               "rank = 1;\n"
                               "servers = ( \"tcp://a:7100\", \"tcp://b:7100\", \"tcp://c:7100\" );\n",
                               err, sizeof err, NULL),
                     0);
    ck_assert_int_eq(mlt_dconf_validate(&c, err, sizeof err), -EINVAL); /* bind still "" */
    ck_assert_ptr_nonnull(strstr(err, "bind"));
    ck_assert_msg(mlt_dconf_finish(&c, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(c.bind, "tcp://b:7100");
    ck_assert_int_eq(c.n_servers, 3);
    ck_assert_int_eq(mlt_dconf_validate(&c, err, sizeof err), 0);
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_finish_bind_kept_or_fallback)
{
    mlt_dconf_t c;
    char err[512] = "";
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), 0);
    ck_assert_str_eq(c.bind, "tcp://127.0.0.1:7100");
    mlt_dconf_free(&c);

    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_set(&c, "servers", "tcp://a:1,tcp://b:2", err, sizeof err), 0);
    ck_assert_int_eq(mlt_dconf_set(&c, "bind", "tcp://*:9000", err, sizeof err), 0);
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), 0);
    ck_assert_str_eq(c.bind, "tcp://*:9000");
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_finish_rank_refused)
{
    mlt_dconf_t c;
    char err[512] = "";
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_set(&c, "n_servers", "2", err, sizeof err), 0);
    ck_assert_int_eq(mlt_dconf_set(&c, "rank", "2", err, sizeof err), 0);
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "rank 2 must be less than n_servers (2)");
    mlt_dconf_free(&c);

    /* rank outside a servers list: no bind is invented, the rank is refused */
    ck_assert_int_eq(load_text(&c, "rank = 2;\nservers = ( \"tcp://a:1\", \"tcp://b:2\" );\n", err,
                               sizeof err, NULL),
                     0);
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "rank 2 must be less than n_servers (2)");
    ck_assert_str_eq(c.bind, "");
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_finish_servers_mismatch)
{
    mlt_dconf_t c;
    char err[512] = "";
    ck_assert_int_eq(load_text(&c, "n_servers = 3;\nservers = ( \"tcp://a:1\", \"tcp://b:2\" );\n",
                               err, sizeof err, NULL),
                     0);
    ck_assert_int_eq(c.n_servers, 3); /* given explicitly: kept, not derived */
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "servers lists 2 endpoints but n_servers is 3"));
    mlt_dconf_free(&c);

    /* the same through an override after the list */
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_set(&c, "servers", "tcp://a:1,tcp://b:2", err, sizeof err), 0);
    ck_assert_int_eq(mlt_dconf_set(&c, "n_servers", "1", err, sizeof err), 0);
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "servers lists 2 endpoints but n_servers is 1"));
    mlt_dconf_free(&c);
}
END_TEST

/* validate re-checks bounds of a struct filled in by hand */
START_TEST(test_validate_bounds)
{
    mlt_dconf_t c;
    char err[512] = "";
    mlt_dconf_defaults(&c);
    ck_assert_int_eq(mlt_dconf_finish(&c, err, sizeof err), 0);
    c.chunk_size = 5000;
    ck_assert_int_eq(mlt_dconf_validate(&c, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "chunk_size must be a multiple of 4096 (got 5000)");
    c.chunk_size = 65536;
    c.log_level = 7;
    ck_assert_int_eq(mlt_dconf_validate(&c, err, sizeof err), -EINVAL);
    ck_assert_str_eq(err, "log_level must be between 0 and 3 (got 7)");
    mlt_dconf_free(&c);
}
END_TEST

START_TEST(test_metrics_listen)
{
    char host[64];
    int port = 0;
    ck_assert_int_eq(mlt_dconf_parse_listen("127.0.0.1:9108", host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 9108);
    ck_assert_int_eq(mlt_dconf_parse_listen("*:1", host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "0.0.0.0");
    ck_assert_int_eq(mlt_dconf_parse_listen("localhost:65535", host, sizeof host, &port), 0);
    ck_assert_str_eq(host, "127.0.0.1");
    static const char *const bad[] = {"", "9108", ":9108", "127.0.0.1:", "127.0.0.1:0",
                                      "127.0.0.1:65536", "127.0.0.1:9x", "example.org:80",
                                      "300.1.1.1:80", "127.0.0.1:-5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(mlt_dconf_parse_listen(bad[i], host, sizeof host, &port) == -EINVAL, "%s",
                      bad[i]);
    /* through the config: a bad value is refused by validate, naming the key */
    mlt_dconf_t c;
    mlt_dconf_defaults(&c);
    char err[512];
    ck_assert_int_eq(mlt_dconf_set(&c, "metrics_listen", "nope", err, sizeof err), 0);
    int rc = mlt_dconf_finish(&c, err, sizeof err);
    if (rc == 0)
        rc = mlt_dconf_validate(&c, err, sizeof err);
    ck_assert_int_eq(rc, -EINVAL);
    ck_assert_msg(strstr(err, "metrics_listen") && strstr(err, "nope"), "%s", err);
    mlt_dconf_free(&c);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc;

    tc = tcase_create("defaults");
    tcase_add_test(tc, test_default_values);
    tcase_add_test(tc, test_free_zeroed);
    tcase_add_test(tc, test_shipped_conf_is_defaults);
    tcase_add_test(tc, test_shipped_conf_matches_write_defaults);
    tcase_add_test(tc, test_write_defaults_parses);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_test(tc, test_load_every_key);
    tcase_add_test(tc, test_load_sizes);
    tcase_add_test(tc, test_load_n_servers_from_list);
    tcase_add_test(tc, test_load_layers);
    tcase_add_test(tc, test_load_empty_file);
    suite_add_tcase(s, tc);

    tc = tcase_create("errors");
    tcase_add_test(tc, test_err_unknown_key);
    tcase_add_test(tc, test_err_wrong_type);
    tcase_add_test(tc, test_err_bounds);
    tcase_add_test(tc, test_err_too_many_servers);
    tcase_add_test(tc, test_err_multiple);
    tcase_add_test(tc, test_err_bad_size_string);
    tcase_add_test(tc, test_err_log_level);
    tcase_add_test(tc, test_err_syntax);
    tcase_add_test(tc, test_err_missing_file);
    tcase_add_test(tc, test_err_int_literal_wraps);
    tcase_add_test(tc, test_err_leaves_struct);
    suite_add_tcase(s, tc);

    tc = tcase_create("set");
    tcase_add_test(tc, test_set_good);
    tcase_add_test(tc, test_set_bad);
    suite_add_tcase(s, tc);

    tc = tcase_create("finish");
    tcase_add_test(tc, test_finish_bind_from_servers);
    tcase_add_test(tc, test_finish_bind_kept_or_fallback);
    tcase_add_test(tc, test_finish_rank_refused);
    tcase_add_test(tc, test_finish_servers_mismatch);
    tcase_add_test(tc, test_validate_bounds);
    tcase_add_test(tc, test_metrics_listen);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
