/* suite_main.h - the main() every integration test shares: SIGPIPE ignored
 * (a daemon that dies mid-send must fail a test, not kill the runner), the
 * suite run, exit 0 only when every check passed. Header-only, since
 * harness.c is also linked into bench/ps, which has no Check. */
#ifndef MLT_SUITE_MAIN_H
#define MLT_SUITE_MAIN_H

#include <check.h>
#include <signal.h>

static inline int mlt_test_run_suite(Suite *s)
{
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
