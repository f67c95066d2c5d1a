/* check_clientq.c - Check suite for daemon/clientq: one entry per routing id,
 * unsent bytes counted from mlt_clientq_hold() until the frame's release (and
 * the wrapped free function called once), parked counts, the limit's formula,
 * idle entries reused, and the table's capacity. */
#include "daemon/clientq.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int freed; /* calls of the wrapped free function */
static void *freed_data, *freed_hint;

static void count_free(void *data, void *hint)
{
    freed++;
    freed_data = data;
    freed_hint = hint;
}

START_TEST(test_entries)
{
    mlt_clientq_t *q = mlt_clientq_new();
    /* a client keeps its entry while it has something outstanding */
    mlt_clientq_entry_t *a = mlt_clientq_get(q, "\0AAAA", 5);
    ck_assert_ptr_nonnull(a);
    mlt_clientq_park(a, +1);
    mlt_clientq_entry_t *b = mlt_clientq_get(q, "\0BBBB", 5);
    ck_assert_ptr_nonnull(b);
    mlt_clientq_park(b, +1);
    ck_assert_ptr_ne(a, b);
    ck_assert_ptr_eq(mlt_clientq_get(q, "\0AAAA", 5), a);
    ck_assert_ptr_eq(mlt_clientq_get(q, "\0BBBB", 5), b);
    ck_assert_ptr_eq(mlt_clientq_get(q, "\0BBBB", 5), b);    /* the remembered one */
    mlt_clientq_entry_t *p = mlt_clientq_get(q, "\0AAA", 4); /* a prefix is another client */
    ck_assert_ptr_ne(p, a);
    ck_assert_ptr_ne(p, b);
    ck_assert_uint_eq(mlt_clientq_parked(p), 0);
    /* one with nothing outstanding may give its entry to the next new client */
    mlt_clientq_park(a, -1);
    mlt_clientq_entry_t *c = mlt_clientq_get(q, "\0CCCC", 5);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_ne(c, b);
    ck_assert_ptr_eq(mlt_clientq_get(q, "\0CCCC", 5), c);
    char big[300] = {0};
    ck_assert_ptr_null(mlt_clientq_get(q, big, sizeof big));
    mlt_clientq_destroy(&q);
    ck_assert_ptr_null(q);
    mlt_clientq_destroy(&q); /* NULL is fine */
}
END_TEST

START_TEST(test_unsent)
{
    mlt_clientq_t *q = mlt_clientq_new();
    mlt_clientq_entry_t *a = mlt_clientq_get(q, "a", 1);
    int data, hint;
    freed = 0;
    void *h1 = mlt_clientq_hold(a, 1000, count_free, &hint);
    void *h2 = mlt_clientq_hold(a, 24, NULL, NULL);
    ck_assert_ptr_nonnull(h1);
    ck_assert_uint_eq(mlt_clientq_unsent(a), 1024);
    mlt_clientq_sent(&data, h1);
    ck_assert_int_eq(freed, 1);
    ck_assert_ptr_eq(freed_data, &data);
    ck_assert_ptr_eq(freed_hint, &hint);
    ck_assert_uint_eq(mlt_clientq_unsent(a), 24);
    mlt_clientq_sent(NULL, h2);
    ck_assert_int_eq(freed, 1);
    ck_assert_uint_eq(mlt_clientq_unsent(a), 0);
    ck_assert_uint_eq(mlt_clientq_limit(0), MLT_CLIENT_UNSENT_FLOOR);
    ck_assert_uint_eq(mlt_clientq_limit(1000), MLT_CLIENT_UNSENT_FLOOR + 4000);
    mlt_clientq_destroy(&q);
}
END_TEST

START_TEST(test_parked)
{
    mlt_clientq_t *q = mlt_clientq_new();
    mlt_clientq_entry_t *a = mlt_clientq_get(q, "a", 1);
    mlt_clientq_park(a, +1);
    mlt_clientq_park(a, +1);
    ck_assert_uint_eq(mlt_clientq_parked(a), 2);
    mlt_clientq_park(a, -1);
    ck_assert_uint_eq(mlt_clientq_parked(a), 1);
    mlt_clientq_park(a, -5); /* never below zero */
    ck_assert_uint_eq(mlt_clientq_parked(a), 0);
    mlt_clientq_destroy(&q);
}
END_TEST

/* Every entry busy: a new client gets none; one idle again: it is reused, and
 * the clients still busy keep theirs. */
START_TEST(test_capacity)
{
    mlt_clientq_t *q = mlt_clientq_new();
    static void *held[MLT_MAX_CLIENTS];
    char id[16];
    for (uint32_t i = 0; i < MLT_MAX_CLIENTS; i++) {
        int n = snprintf(id, sizeof id, "c%u", i);
        mlt_clientq_entry_t *e = mlt_clientq_get(q, id, (size_t)n);
        ck_assert_ptr_nonnull(e);
        held[i] = mlt_clientq_hold(e, 1, NULL, NULL);
    }
    ck_assert_ptr_null(mlt_clientq_get(q, "new", 3));
    mlt_clientq_entry_t *c7 = mlt_clientq_get(q, "c7", 2);
    mlt_clientq_entry_t *c8 = mlt_clientq_get(q, "c8", 2);
    mlt_clientq_sent(NULL, held[7]); /* c7 is idle now */
    mlt_clientq_entry_t *fresh = mlt_clientq_get(q, "new", 3);
    ck_assert_ptr_eq(fresh, c7);
    ck_assert_uint_eq(mlt_clientq_unsent(fresh), 0);
    ck_assert_ptr_eq(mlt_clientq_get(q, "c8", 2), c8);
    ck_assert_uint_eq(mlt_clientq_unsent(c8), 1);
    for (uint32_t i = 0; i < MLT_MAX_CLIENTS; i++)
        if (i != 7)
            mlt_clientq_sent(NULL, held[i]);
    mlt_clientq_destroy(&q);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("clientq");
    TCase *tc = tcase_create("clientq");
    tcase_add_test(tc, test_entries);
    tcase_add_test(tc, test_unsent);
    tcase_add_test(tc, test_parked);
    tcase_add_test(tc, test_capacity);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
