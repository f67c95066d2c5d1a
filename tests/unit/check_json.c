/* check_json.c - Check suite for common/json: the one JSON writer.
 *
 * "escape": plain text unchanged; quotes, backslashes, newlines and other
 * control bytes escaped; a buffer too small cuts the text short, never
 * mid-escape, and always terminates; NULL is the empty string.
 * "writer": members of every type with their separators; strings and keys
 * escaped; NaN and Inf written as null in every number form; nesting
 * (arrays of arrays, objects in arrays in objects, empty containers); the
 * open containers closed by mlt_json_text and mlt_json_write; a line longer
 * than the first buffer; a line written to a stream ends in a newline. */
#include "common/json.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_escape)
{
    char b[64];
    ck_assert_str_eq(mlt_json_escape(b, sizeof b, "out/fmnist-mlp"), "out/fmnist-mlp");
    ck_assert_str_eq(mlt_json_escape(b, sizeof b, "a\"b\\c"), "a\\\"b\\\\c");
    ck_assert_str_eq(mlt_json_escape(b, sizeof b, "x\ny\tz\x7f"), "x\\u000ay\\u0009z\\u007f");
    ck_assert_str_eq(mlt_json_escape(b, sizeof b, NULL), "");
    ck_assert_str_eq(mlt_json_escape(b, sizeof b, "été"), "été"); /* UTF-8 passes through */
}
END_TEST

START_TEST(test_short_buffer)
{
    char b[10];
    memset(b, 'X', sizeof b);
    mlt_json_escape(b, sizeof b, "\"\"\"\"\"\"\"\"");
    ck_assert_uint_lt(strlen(b), sizeof b);
    /* whole escapes only: an even number of characters, each pair \" */
    ck_assert_uint_eq(strlen(b) % 2, 0);
    for (size_t i = 0; b[i]; i += 2)
        ck_assert(b[i] == '\\' && b[i + 1] == '"');
    char one[1] = {'X'};
    ck_assert_str_eq(mlt_json_escape(one, 1, "abc"), "");
}
END_TEST

START_TEST(test_members)
{
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_json_fixed(&j, "t", 1.23456, 3);
    mlt_json_str(&j, "event", "fork");
    mlt_json_uint(&j, "branch", 4000000000u);
    mlt_json_int(&j, "clock", -7);
    mlt_json_num(&j, "lr", 0.03);
    mlt_json_sig(&j, "epochs", 1.0 / 3.0, 4);
    mlt_json_bool(&j, "warm", true);
    mlt_json_bool(&j, "cut", false);
    mlt_json_null(&j, "parent");
    mlt_json_str(&j, "none", NULL);
    mlt_json_strf(&j, "reason", "replaced by snapshot %u", 12u);
    ck_assert_str_eq(mlt_json_text(&j),
                     "{\"t\":1.235,\"event\":\"fork\",\"branch\":4000000000,\"clock\":-7,"
                     "\"lr\":0.03,\"epochs\":0.3333,\"warm\":true,\"cut\":false,\"parent\":null,"
                     "\"none\":null,\"reason\":\"replaced by snapshot 12\"}");
    mlt_json_free(&j);
}
END_TEST

START_TEST(test_escaped)
{
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_json_str(&j, "path", "out/\"a\\b\"\n\x01");
    mlt_json_str(&j, "k\"ey", "été");
    mlt_json_strf(&j, "why", "%s", "tab\there");
    ck_assert_str_eq(mlt_json_text(&j), "{\"path\":\"out/\\\"a\\\\b\\\"\\u000a\\u0001\","
                                        "\"k\\\"ey\":\"été\",\"why\":\"tab\\u0009here\"}");
    mlt_json_free(&j);
}
END_TEST

START_TEST(test_nonfinite)
{
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_json_num(&j, "a", NAN);
    mlt_json_num(&j, "b", INFINITY);
    mlt_json_fixed(&j, "c", -INFINITY, 4);
    mlt_json_sig(&j, "d", NAN, 4);
    mlt_json_arr(&j, "y");
    mlt_json_num(&j, NULL, 1.5);
    mlt_json_num(&j, NULL, NAN);
    mlt_json_num(&j, NULL, -2e-7);
    mlt_json_end(&j);
    ck_assert_str_eq(mlt_json_text(&j),
                     "{\"a\":null,\"b\":null,\"c\":null,\"d\":null,\"y\":[1.5,null,-2e-07]}");
    mlt_json_free(&j);
}
END_TEST

START_TEST(test_nesting)
{
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_json_arr(&j, "curve");
    for (int i = 1; i <= 2; i++) {
        mlt_json_arr(&j, NULL);
        mlt_json_num(&j, NULL, i);
        mlt_json_num(&j, NULL, 10 * i);
        mlt_json_end(&j);
    }
    mlt_json_end(&j);
    mlt_json_arr(&j, "branches");
    mlt_json_obj(&j, NULL);
    mlt_json_uint(&j, "id", 1);
    mlt_json_obj(&j, "tunables");
    mlt_json_num(&j, "lr", 0.1);
    mlt_json_end(&j);
    mlt_json_end(&j);
    mlt_json_obj(&j, NULL);
    mlt_json_end(&j);
    mlt_json_end(&j);
    mlt_json_arr(&j, "empty");
    mlt_json_end(&j);
    mlt_json_obj(&j, "open"); /* left open: the text closes it and the line */
    mlt_json_arr(&j, "x");
    ck_assert_str_eq(mlt_json_text(&j), "{\"curve\":[[1,10],[2,20]],\"branches\":[{\"id\":1,"
                                        "\"tunables\":{\"lr\":0.1}},{}],\"empty\":[],"
                                        "\"open\":{\"x\":[]}}");
    ck_assert_uint_eq(j.depth, 0);
    mlt_json_free(&j);
    mlt_json_begin(&j);
    ck_assert_str_eq(mlt_json_text(&j), "{}");
    mlt_json_free(&j);
    ck_assert_ptr_null(j.b);
}
END_TEST

START_TEST(test_long_line)
{
    static char big[5001];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_json_arr(&j, "points");
    for (int i = 0; i < 1000; i++)
        mlt_json_int(&j, NULL, i);
    mlt_json_end(&j);
    mlt_json_str(&j, "big", big);
    const char *t = mlt_json_text(&j);
    ck_assert_uint_eq(strlen(t), j.len);
    ck_assert(strncmp(t, "{\"points\":[0,1,2,", 17) == 0);
    ck_assert(strstr(t, ",998,999],\"big\":\"qqq") != NULL);
    ck_assert(strcmp(t + j.len - 5, "qqq\"}") == 0);
    mlt_json_free(&j);
}
END_TEST

START_TEST(test_write)
{
    char buf[256] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    ck_assert_ptr_nonnull(f);
    mlt_json_t j;
    mlt_json_begin(&j);
    mlt_json_str(&j, "event", "end");
    mlt_json_arr(&j, "a");
    mlt_json_num(&j, NULL, 1);
    ck_assert_int_eq(mlt_json_write(&j, f), 0); /* closes the array and the object */
    ck_assert_ptr_null(j.b);                    /* and frees j */
    mlt_json_begin(&j);
    ck_assert_int_eq(mlt_json_write(&j, NULL), 0); /* no stream: nothing, still freed */
    ck_assert_ptr_null(j.b);
    fclose(f);
    ck_assert_str_eq(buf, "{\"event\":\"end\",\"a\":[1]}\n");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("escape");
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_short_buffer);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_add_test(tc, test_members);
    tcase_add_test(tc, test_escaped);
    tcase_add_test(tc, test_nonfinite);
    tcase_add_test(tc, test_nesting);
    tcase_add_test(tc, test_long_line);
    tcase_add_test(tc, test_write);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
