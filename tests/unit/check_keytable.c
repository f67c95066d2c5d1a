/* check_keytable.c - the key-table engine (common/keytable.h) on a table of
 * its own, one row of every type: reading a libconfig text (values, groups,
 * the file:line:key of every error, both type-error styles, required keys,
 * control characters), setting one key from text (suffixes, lists, a refused
 * value changes nothing), copying and freeing, and the written default config
 * reading back as the defaults. The daemon's and the job's tables have their
 * own suites (check_config, check_jobfile). */
#include "common/keytable.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/errtext.h"

typedef struct {
    int n;
    int64_t count;
    size_t size;
    double ratio;
    char *name;
    int level; /* PARSED: "low" 1, "high" 2 */
    bool on;
    int color; /* ENUM */
    char **hosts;
    uint32_t *sizes;
    uint32_t n_sizes;
    double *steps;
    uint32_t n_steps;
    int inner;  /* g.inner */
    char *must; /* required */
} toy_t;

static const char *const colors[] = {"red", "green", "blue", NULL};

static int parse_level(const char *subj, const char *s, long long *out, char *why, size_t whylen)
{
    if (strcmp(s, "low") == 0 || strcmp(s, "high") == 0) {
        *out = s[0] == 'l' ? 1 : 2;
        return 0;
    }
    return mlt_errf(-EINVAL, why, whylen, "%s must be low or high (got \"%s\")", subj, s);
}

static int check_name(const char *subj, const char *s, char *why, size_t whylen)
{
    return strchr(s, '/') ? mlt_errf(-EINVAL, why, whylen, "%s must not hold a '/'", subj) : 0;
}

#define T(f) offsetof(toy_t, f)
static const mlt_kt_key_t toy_keys[] = {
    {.path = "n",
     .type = MLT_KT_INT,
     .def_i = 3,
     .min_i = 0,
     .max_i = 100,
     .multiple = 1,
     .off = T(n),
     .desc = "an int"},
    {.path = "count",
     .type = MLT_KT_INT64,
     .def_i = 5000000000LL,
     .min_i = 0,
     .max_i = 1000000000000LL,
     .off = T(count),
     .desc = "a count"},
    {.path = "size",
     .type = MLT_KT_SIZE,
     .def_i = 65536,
     .min_i = 4096,
     .max_i = 1LL << 30,
     .multiple = 4096,
     .off = T(size),
     .desc = "a size"},
    {.path = "ratio",
     .type = MLT_KT_DOUBLE,
     .def_d = 0.5,
     .min_d = 0.0,
     .max_d = 1.0,
     .max_open = true,
     .off = T(ratio),
     .desc = "a ratio"},
    {.path = "name",
     .type = MLT_KT_STRING,
     .def_s = "a\"b",
     .check = check_name,
     .off = T(name),
     .desc = "a name"},
    {.path = "level",
     .type = MLT_KT_PARSED,
     .def_s = "low",
     .parse = parse_level,
     .min_i = 1,
     .max_i = 2,
     .off = T(level),
     .desc = "low or high"},
    {.path = "on", .type = MLT_KT_BOOL, .def_i = 1, .off = T(on), .desc = "a switch"},
    {.path = "color",
     .type = MLT_KT_ENUM,
     .def_i = 2,
     .names = colors,
     .off = T(color),
     .desc = "a color"},
    {.path = "hosts", .type = MLT_KT_STRLIST, .max_n = 3, .off = T(hosts), .desc = "hosts"},
    {.path = "sizes",
     .type = MLT_KT_INTLIST,
     .min_i = 1,
     .max_i = 10,
     .max_n = 4,
     .off = T(sizes),
     .off_n = T(n_sizes),
     .desc = "sizes"},
    {.path = "steps",
     .type = MLT_KT_NUMLIST,
     .max_n = 4,
     .off = T(steps),
     .off_n = T(n_steps),
     .desc = "steps"},
    {.path = "g", .type = MLT_KT_GROUP, .desc = "a group"},
    {.path = "g.inner",
     .type = MLT_KT_INT,
     .def_i = 7,
     .min_i = 0,
     .max_i = 9,
     .off = T(inner),
     .desc = "in the group"},
    {.path = "must",
     .type = MLT_KT_STRING,
     .required = true,
     .off = T(must),
     .desc = "a key the file must give"},
};

static const mlt_kt_table_t toy = {
    .keys = toy_keys, .n_keys = sizeof toy_keys / sizeof toy_keys[0], .printable = true};

/* Reads text over the defaults; returns read's code, message in err. */
static int toy_read(const mlt_kt_table_t *t, toy_t *x, const char *text, char *err, size_t errlen)
{
    memset(x, 0, sizeof *x);
    mlt_kt_defaults(t, x, false);
    mlt_kt_ctx_t p = {.table = t, .file = "toy.conf"};
    int rc = mlt_kt_read_text(&p, x, text, false, "a count such as \"1M\"", err, errlen);
    mlt_kt_ctx_free(&p);
    return rc;
}

static void expect_error(const mlt_kt_table_t *t, const char *text, const char *exact)
{
    toy_t x;
    char err[512] = "";
    ck_assert_msg(toy_read(t, &x, text, err, sizeof err) == -EINVAL, "accepted: %s", text);
    ck_assert_str_eq(err, exact);
    mlt_kt_free_fields(t, &x, false);
}

START_TEST(test_read_values)
{
    toy_t x;
    char err[512] = "";
    int rc = toy_read(&toy, &x,
                      "n = 42; count = \"2M\"; size = \"8K\"; ratio = 1; name = \"nm\";\n"
                      "level = \"high\"; on = false; color = \"red\";\n"
                      "hosts = ( \"a\", \"b\" ); sizes = [1, 10]; steps = [0.5, 2.0];\n"
                      "g = { inner = 9; }; must = \"x\";\n",
                      err, sizeof err);
    ck_assert_msg(rc == -EINVAL, "%s", err); /* ratio = 1 hits the open max */
    ck_assert_str_eq(err, "toy.conf:1: ratio must be at least 0 and less than 1 (got 1)");
    mlt_kt_free_fields(&toy, &x, false);

    rc = toy_read(&toy, &x,
                  "n = 42; count = \"2M\"; size = \"8K\"; ratio = 0.25; name = \"nm\";\n"
                  "level = \"high\"; on = false; color = \"red\";\n"
                  "hosts = ( \"a\", \"b\" ); sizes = [1, 10]; steps = [0.5, 2.0];\n"
                  "g = { inner = 9; }; must = \"x\";\n",
                  err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(x.n, 42);
    ck_assert_int_eq(x.count, 2000000); /* a count: decimal suffix */
    ck_assert_uint_eq(x.size, 8192);    /* a size: binary suffix */
    ck_assert_double_eq(x.ratio, 0.25);
    ck_assert_str_eq(x.name, "nm");
    ck_assert_int_eq(x.level, 2);
    ck_assert(!x.on);
    ck_assert_int_eq(x.color, 0);
    ck_assert_str_eq(x.hosts[1], "b");
    ck_assert_ptr_null(x.hosts[2]);
    ck_assert_uint_eq(x.n_sizes, 2);
    ck_assert_uint_eq(x.sizes[1], 10);
    ck_assert_double_eq(x.steps[1], 2.0);
    ck_assert_int_eq(x.inner, 9);
    ck_assert_str_eq(x.must, "x");

    /* a deep copy outlives the original */
    toy_t y;
    mlt_kt_copy(&toy, &y, &x, sizeof y);
    mlt_kt_free_fields(&toy, &x, false);
    ck_assert_ptr_null(x.hosts);
    ck_assert_str_eq(y.hosts[0], "a");
    ck_assert_uint_eq(y.sizes[0], 1);
    ck_assert_str_eq(y.name, "nm");
    mlt_kt_free_fields(&toy, &y, false);
    mlt_kt_free_fields(&toy, &y, false); /* freed: safe again */
}
END_TEST

START_TEST(test_read_errors)
{
    expect_error(&toy, "must = \"x\";\ng = { inner = 1; bad = 2; };\n",
                 "toy.conf:2: unknown key 'g.bad'");
    expect_error(&toy, "must = \"x\";\n\nn = \"two\";\n", "toy.conf:3: n must be an integer");
    expect_error(&toy, "must = \"x\"; g = 5;\n", "toy.conf:1: g must be a group { ... }");
    expect_error(&toy, "must = \"x\"; n = 150;\n",
                 "toy.conf:1: n must be between 0 and 100 (got 150)");
}
END_TEST

START_TEST(test_read_error_lines)
{
    /* the line of the list entry at fault, not of the key */
    expect_error(&toy, "must = \"x\";\nsizes = [1,\n 2,\n 11];\n",
                 "toy.conf:4: sizes[2] must be between 1 and 10 (got 11)");
    expect_error(&toy, "must = \"x\";\nsteps = [1.0,\n 0.5];\n",
                 "toy.conf:3: steps must be ascending without repeats ([1] = 0.5 follows [0] = 1)");
    expect_error(&toy, "must = \"x\";\nhosts = ( \"a\",\n 5 );\n",
                 "toy.conf:3: hosts must be a list of strings");
    expect_error(&toy, "n = 1;\n", "toy.conf: must is required (a key the file must give)");
    expect_error(&toy, "must = \"x\";\nname = \"a\\nb\";\n",
                 "toy.conf:2: name has a control character (0x0a) at byte 1");
    expect_error(&toy, "must = \"x\";\nname = \"a/b\";\n", "toy.conf:2: name must not hold a '/'");
    expect_error(&toy, "must = \"x\";\ncount = 5000000000;\n",
                 "toy.conf:2: integer 5000000000 does not fit in 32 bits; write 5000000000L (or "
                 "a count such as \"1M\")");
    expect_error(&toy, "must = \"x\";\nsize = 5000;\n",
                 "toy.conf:2: size must be a multiple of 4096 (got 5000)");
    expect_error(&toy, "must = \"x\";\nlevel = \"mid\";\n",
                 "toy.conf:2: level must be low or high (got \"mid\")");
    expect_error(&toy, "must = \"x\";\nn = ;\n", "toy.conf:2: syntax error");
}
END_TEST

/* The daemon's style: a wrong type quotes the key; control characters pass. */
START_TEST(test_read_quoted_style)
{
    mlt_kt_table_t t = toy;
    t.quote_type_errors = true;
    t.printable = false;
    expect_error(&t, "must = \"x\";\nsize = true;\n",
                 "toy.conf:2: key 'size' must be an integer or a size string such as \"8G\"");
    expect_error(&t, "must = \"x\";\nn = 1.5;\n", "toy.conf:2: key 'n' must be an integer");
    toy_t x;
    char err[256] = "";
    ck_assert_int_eq(toy_read(&t, &x, "must = \"x\\ty\";\n", err, sizeof err), 0);
    ck_assert_str_eq(x.must, "x\ty");
    mlt_kt_free_fields(&t, &x, false);
}
END_TEST

/* A text that may include is parsed before the 32-bit scan (a syntax error
 * is named first); one that may not is scanned first (@include refused
 * before libconfig would open the file). */
START_TEST(test_read_check_order)
{
    static const char text[] = "must = \"x\";\nn = ;\ncount = 5000000000;\n";
    toy_t x;
    char err[256] = "";
    for (int inc = 0; inc < 2; inc++) {
        memset(&x, 0, sizeof x);
        mlt_kt_ctx_t p = {.table = &toy, .file = "toy.conf"};
        ck_assert_int_eq(mlt_kt_read_text(&p, &x, text, inc, "", err, sizeof err), -EINVAL);
        ck_assert_ptr_nonnull(
            strstr(err, inc ? "toy.conf:2: syntax error" : "toy.conf:3: integer"));
        mlt_kt_ctx_free(&p);
        mlt_kt_free_fields(&toy, &x, false);
    }
    mlt_kt_ctx_t p = {.table = &toy, .file = "toy.conf"};
    ck_assert_int_eq(
        mlt_kt_read_text(&p, &x, "@include \"/nonexistent\"\n", false, "", err, sizeof err),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "toy.conf:1: @include is not allowed"));
    mlt_kt_ctx_free(&p);
}
END_TEST

static void expect_set(const char *key, const char *text, const char *exact)
{
    toy_t x, before;
    char why[256] = "";
    memset(&x, 0, sizeof x);
    mlt_kt_defaults(&toy, &x, false);
    mlt_kt_copy(&toy, &before, &x, sizeof before);
    const mlt_kt_key_t *k = mlt_kt_find(&toy, key);
    ck_assert_ptr_nonnull(k);
    ck_assert_int_eq(mlt_kt_set_text(&toy, &x, k, key, text, why, sizeof why), -EINVAL);
    ck_assert_str_eq(why, exact);
    /* nothing changed */
    ck_assert_int_eq(x.n, before.n);
    ck_assert_uint_eq(x.size, before.size);
    ck_assert_str_eq(x.name, before.name);
    ck_assert_ptr_null(x.hosts);
    ck_assert_uint_eq(x.n_sizes, 0);
    mlt_kt_free_fields(&toy, &x, false);
    mlt_kt_free_fields(&toy, &before, false);
}

START_TEST(test_set_text)
{
    toy_t x;
    char why[256] = "";
    memset(&x, 0, sizeof x);
    mlt_kt_defaults(&toy, &x, false);
    static const struct {
        const char *key, *text;
    } good[] = {{"n", "+12"},        {"count", "3K"},         {"size", "1M"},    {"ratio", "0.75"},
                {"on", "no"},        {"color", "blue"},       {"level", "high"}, {"g.inner", "0"},
                {"sizes", "[2, 3]"}, {"hosts", "h1, \"h2\""}, {"steps", "1,2,3"}};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const mlt_kt_key_t *k = mlt_kt_find(&toy, good[i].key);
        ck_assert_msg(mlt_kt_set_text(&toy, &x, k, good[i].key, good[i].text, why, sizeof why) == 0,
                      "%s=%s: %s", good[i].key, good[i].text, why);
    }
    ck_assert_int_eq(x.n, 12);
    ck_assert_int_eq(x.count, 3000);
    ck_assert_uint_eq(x.size, 1u << 20);
    ck_assert(!x.on);
    ck_assert_int_eq(x.color, 2);
    ck_assert_int_eq(x.level, 2);
    ck_assert_int_eq(x.inner, 0);
    ck_assert_uint_eq(x.n_sizes, 2);
    ck_assert_str_eq(x.hosts[1], "h2");
    ck_assert_uint_eq(x.n_steps, 3);
    mlt_kt_free_fields(&toy, &x, false);

    expect_set("n", "1K", "n must be an integer (got \"1K\")");
    expect_set("n", "99999999999999999999",
               "n must be between 0 and 100 (got 99999999999999999999)");
    expect_set("size", "-8K", "size must be a size such as \"8G\" or 1048576 (got \"-8K\")");
    expect_set("size", "2G", "size must be between 4096 and 1073741824 (got 2147483648)");
    expect_set("color", "pink", "color must be one of \"red\", \"green\", \"blue\" (got \"pink\")");
    expect_set("on", "maybe", "on must be true or false (got \"maybe\")");
    expect_set("hosts", "a,b,c,d", "hosts must have at most 3 entries (got 4)");
    expect_set("hosts", "a,,c", "hosts must not have an empty entry (entry 1 is empty)");
    expect_set("sizes", "1,x", "sizes[1] must be an integer (got \"x\")");
    expect_set("name", "a\x01", "name has a control character (0x01) at byte 1");
    expect_set("g", "1", "g is a group; set one of its keys");
}
END_TEST

/* What write_conf prints reads back as the defaults. */
START_TEST(test_write_conf_reads_back)
{
    static const mlt_kt_key_t flat_keys[] = {toy_keys[0], toy_keys[1], toy_keys[2], toy_keys[3],
                                             toy_keys[4], toy_keys[5], toy_keys[6], toy_keys[7],
                                             toy_keys[8], toy_keys[9], toy_keys[10]};
    mlt_kt_table_t flat = {.keys = flat_keys, .n_keys = sizeof flat_keys / sizeof flat_keys[0]};
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    mlt_kt_write_conf(f, &flat, "# toy\n");
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "\n# a size [4K..1G, a multiple of 4K]\nsize = \"64K\";\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\n# a ratio [0..1)\nratio = 0.5;\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\ncount = 5000000000L;\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nname = \"a\\\"b\";\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nhosts = ( );\n"));

    toy_t x, d;
    memset(&x, 0, sizeof x);
    memset(&d, 0, sizeof d);
    mlt_kt_defaults(&flat, &d, false);
    x.n = 99; /* read over values that differ from the defaults */
    x.count = 1;
    x.size = 4096;
    x.level = 2;
    x.color = 0;
    mlt_kt_ctx_t p = {.table = &flat, .file = "gen"};
    char err[256] = "";
    ck_assert_msg(mlt_kt_read_text(&p, &x, buf, false, "", err, sizeof err) == 0, "%s\n%s", err,
                  buf);
    mlt_kt_ctx_free(&p);
    ck_assert_int_eq(x.n, d.n);
    ck_assert_int_eq(x.count, d.count);
    ck_assert_uint_eq(x.size, d.size);
    ck_assert_int_eq(x.level, d.level);
    ck_assert_int_eq(x.color, d.color);
    ck_assert_str_eq(x.name, d.name);
    mlt_kt_free_fields(&flat, &x, false);
    mlt_kt_free_fields(&flat, &d, false);
    free(buf);
}
END_TEST

static Suite *keytable_suite(void)
{
    Suite *s = suite_create("keytable");
    TCase *tc = tcase_create("read");
    tcase_add_test(tc, test_read_values);
    tcase_add_test(tc, test_read_errors);
    tcase_add_test(tc, test_read_error_lines);
    tcase_add_test(tc, test_read_quoted_style);
    tcase_add_test(tc, test_read_check_order);
    suite_add_tcase(s, tc);
    tc = tcase_create("set");
    tcase_add_test(tc, test_set_text);
    suite_add_tcase(s, tc);
    tc = tcase_create("write");
    tcase_add_test(tc, test_write_conf_reads_back);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(keytable_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
