/* check_json.c - Check suite for common/json: the one JSON string escaper.
 *
 * "escape": plain text unchanged; quotes, backslashes, newlines and other
 * control bytes escaped; a buffer too small cuts the text short, never
 * mid-escape, and always terminates; NULL is the empty string. */
#include "common/json.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_escape)
{
    char b[64];
    ck_assert_str_eq(mlt_json_str(b, sizeof b, "out/fmnist-mlp"), "out/fmnist-mlp");
    ck_assert_str_eq(mlt_json_str(b, sizeof b, "a\"b\\c"), "a\\\"b\\\\c");
    ck_assert_str_eq(mlt_json_str(b, sizeof b, "x\ny\tz\x7f"), "x\\u000ay\\u0009z\\u007f");
    ck_assert_str_eq(mlt_json_str(b, sizeof b, NULL), "");
    ck_assert_str_eq(mlt_json_str(b, sizeof b, "été"), "été"); /* UTF-8 passes through */
}
END_TEST

START_TEST(test_short_buffer)
{
    char b[10];
    memset(b, 'X', sizeof b);
    mlt_json_str(b, sizeof b, "\"\"\"\"\"\"\"\"");
    ck_assert_uint_lt(strlen(b), sizeof b);
    /* whole escapes only: an even number of characters, each pair \" */
    ck_assert_uint_eq(strlen(b) % 2, 0);
    for (size_t i = 0; b[i]; i += 2)
        ck_assert(b[i] == '\\' && b[i + 1] == '"');
    char one[1] = {'X'};
    ck_assert_str_eq(mlt_json_str(one, 1, "abc"), "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("escape");
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_short_buffer);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
