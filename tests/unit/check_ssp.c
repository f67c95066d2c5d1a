/* check_ssp.c - Check suite for daemon/ssp: the bounded-staleness rule at its
 * boundaries, and the parked-pull queue (release, expire, drop, capacity,
 * arrival order, re-entrant parking from a callback). Each parked pull carries
 * a distinct request_id; callbacks record the ids they see, in order. */
#include "daemon/ssp.h"

#include <check.h>
#include <math.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/store.h"

/* ======================================================================= rule */

START_TEST(test_rule_bsp)
{
    /* s = 0: clock c needs every worker to have finished c clocks */
    ck_assert(mlt_ssp_ready(5, 5, 0));
    ck_assert(!mlt_ssp_ready(4, 5, 0));
    ck_assert(mlt_ssp_ready(6, 5, 0));
    ck_assert(mlt_ssp_ready(0, 0, 0));
    ck_assert(!mlt_ssp_ready(0, 1, 0));
}
END_TEST

START_TEST(test_rule_stale)
{
    /* s = 2: clock c needs min_clock >= c - 2 */
    ck_assert(mlt_ssp_ready(3, 5, 2));
    ck_assert(!mlt_ssp_ready(2, 5, 2));
    ck_assert(mlt_ssp_ready(0, 2, 2));
    ck_assert(!mlt_ssp_ready(0, 3, 2));
    ck_assert(mlt_ssp_ready(0, 0, 2));
    ck_assert(mlt_ssp_ready(1, 3, 2));
    /* the largest bounds do not wrap */
    ck_assert(mlt_ssp_ready(0, MLT_MAX_STALENESS, MLT_MAX_STALENESS));
    ck_assert(!mlt_ssp_ready(0, MLT_MAX_STALENESS + 1, MLT_MAX_STALENESS));
    ck_assert(mlt_ssp_ready(0, 1000000, UINT32_MAX));
    ck_assert(!mlt_ssp_ready(0, (int64_t)UINT32_MAX + 1, UINT32_MAX));
}
END_TEST

/* ====================================================================== queue */

#define MAX_SEEN 512

typedef struct rec {
    uint64_t ids[MAX_SEEN];
    mlt_parked_t last;
    size_t n;
    /* re-entrant parking */
    mlt_ssp_t *q;
    int park_per_call; /* pulls each callback parks (only for ids < 1000) */
    uint32_t park_branch;
    int64_t park_clock;
    uint64_t next_id;
} rec_t;

static void record(void *arg, const mlt_parked_t *p)
{
    rec_t *r = arg;
    ck_assert_uint_lt(r->n, MAX_SEEN);
    r->ids[r->n++] = p->request_id;
    r->last = *p;
}

static mlt_parked_t pull(uint64_t id, uint32_t branch, int64_t clock, double deadline)
{
    mlt_parked_t p;
    memset(&p, 0, sizeof p);
    p.id_len = 5;
    memcpy(p.id, "\x00w\x01\xffz", 5);
    p.request_id = id;
    p.worker = (uint32_t)(id % 7);
    p.branch = branch;
    p.clock = clock;
    p.table = 3;
    p.first = (uint32_t)id;
    p.count = 2;
    p.since = 1.5;
    p.deadline = deadline;
    return p;
}

static void park_ok(mlt_ssp_t *q, uint64_t id, uint32_t branch, int64_t clock, double deadline)
{
    mlt_parked_t p = pull(id, branch, clock, deadline);
    ck_assert_int_eq(mlt_ssp_park(q, &p), 0);
}

static void expect_ids(const rec_t *r, const uint64_t *want, size_t n)
{
    ck_assert_uint_eq(r->n, n);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(r->ids[i] == want[i], "callback %zu: id %llu, want %llu", i,
                      (unsigned long long)r->ids[i], (unsigned long long)want[i]);
}

START_TEST(test_queue_release)
{
    mlt_ssp_t *q = mlt_ssp_new(16);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(mlt_ssp_count(q), 0);
    park_ok(q, 1, 1, 3, 100);
    park_ok(q, 2, 2, 3, 100);
    park_ok(q, 3, 1, 5, 100);
    park_ok(q, 4, 1, 4, 100);
    park_ok(q, 5, 2, 1, 100);
    park_ok(q, 6, 1, 3, 100);
    park_ok(q, 7, 1, 6, 100);
    ck_assert_uint_eq(mlt_ssp_count(q), 7);

    rec_t r = {0};
    /* nothing of branch 1 is ready below clock 3 */
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 2, 0, record, &r), 0);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_uint_eq(mlt_ssp_count(q), 7);

    /* min_clock 4, s 0: clocks 3, 4, 3 of branch 1, in arrival order (not by clock) */
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 4, 0, record, &r), 3);
    expect_ids(&r, (const uint64_t[]){1, 4, 6}, 3);
    ck_assert_uint_eq(mlt_ssp_count(q), 4);
    /* the callback saw a full copy */
    ck_assert_uint_eq(r.last.id_len, 5);
    ck_assert(memcmp(r.last.id, "\x00w\x01\xffz", 5) == 0);
    ck_assert_uint_eq(r.last.branch, 1);
    ck_assert_int_eq(r.last.clock, 3);
    ck_assert_uint_eq(r.last.worker, 6);
    ck_assert_uint_eq(r.last.table, 3);
    ck_assert_uint_eq(r.last.first, 6);
    ck_assert_uint_eq(r.last.count, 2);
    ck_assert(r.last.since == 1.5 && r.last.deadline == 100);

    /* min_clock 4, s 1: clock 5 yes, clock 6 no */
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 4, 1, record, &r), 1);
    expect_ids(&r, (const uint64_t[]){3}, 1);

    /* branch 2 untouched so far; a release of branch 2 leaves branch 1 alone */
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_release(q, 2, 0, 0, record, &r), 0);
    ck_assert_uint_eq(mlt_ssp_release(q, 2, 1, 0, record, &r), 1);
    expect_ids(&r, (const uint64_t[]){5}, 1);
    ck_assert_uint_eq(mlt_ssp_count(q), 2); /* 2 (b2, c3) and 7 (b1, c6) */
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_release(q, 2, 100, 0, record, &r), 1);
    expect_ids(&r, (const uint64_t[]){2}, 1);
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 4, 2, record, &r), 1);
    expect_ids(&r, (const uint64_t[]){7}, 1);
    ck_assert_uint_eq(mlt_ssp_count(q), 0);
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 100, 0, record, &r), 0);
    mlt_ssp_destroy(&q);
    ck_assert_ptr_null(q);
    mlt_ssp_destroy(&q);
    mlt_ssp_destroy(NULL);
}
END_TEST

START_TEST(test_queue_expire)
{
    mlt_ssp_t *q = mlt_ssp_new(16);
    park_ok(q, 1, 1, 9, 10.0);
    park_ok(q, 2, 2, 9, 5.0);
    park_ok(q, 3, 1, 9, 7.0);
    park_ok(q, 4, 2, 9, 20.0);
    park_ok(q, 5, 1, 9, 7.0);
    rec_t r = {0};
    ck_assert_uint_eq(mlt_ssp_expire(q, 4.999, record, &r), 0);
    ck_assert_uint_eq(mlt_ssp_expire(q, 6.0, record, &r), 1);
    expect_ids(&r, (const uint64_t[]){2}, 1);
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_expire(q, 7.0, record, &r), 2); /* deadline == now expires */
    expect_ids(&r, (const uint64_t[]){3, 5}, 2);
    ck_assert_uint_eq(mlt_ssp_count(q), 2);
    ck_assert(mlt_ssp_next_deadline(q) == 10.0);
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_expire(q, 1e9, record, &r), 2);
    expect_ids(&r, (const uint64_t[]){1, 4}, 2);
    ck_assert_uint_eq(mlt_ssp_count(q), 0);
    ck_assert(mlt_ssp_next_deadline(q) < 0);
    mlt_ssp_destroy(&q);
}
END_TEST

START_TEST(test_queue_drop)
{
    mlt_ssp_t *q = mlt_ssp_new(16);
    park_ok(q, 1, 1, 1, 10);
    park_ok(q, 2, 2, 1, 10);
    park_ok(q, 3, 1, 2, 10);
    park_ok(q, 4, 3, 1, 10);
    park_ok(q, 5, 2, 5, 10);
    rec_t r = {0};
    ck_assert_uint_eq(mlt_ssp_drop(q, 9, record, &r), 0);
    ck_assert_uint_eq(mlt_ssp_drop(q, 1, record, &r), 2);
    expect_ids(&r, (const uint64_t[]){1, 3}, 2);
    ck_assert_uint_eq(mlt_ssp_count(q), 3);
    /* what is left keeps its order */
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_drop(q, UINT32_MAX, record, &r), 3);
    expect_ids(&r, (const uint64_t[]){2, 4, 5}, 3);
    ck_assert_uint_eq(mlt_ssp_count(q), 0);
    ck_assert_uint_eq(mlt_ssp_drop(q, UINT32_MAX, record, &r), 0);
    mlt_ssp_destroy(&q);
}
END_TEST

START_TEST(test_queue_next_deadline)
{
    mlt_ssp_t *q = mlt_ssp_new(16);
    ck_assert(mlt_ssp_next_deadline(q) < 0);
    park_ok(q, 1, 1, 1, 9.0);
    ck_assert(mlt_ssp_next_deadline(q) == 9.0);
    park_ok(q, 2, 1, 1, 3.0);
    park_ok(q, 3, 1, 1, 5.0);
    ck_assert(mlt_ssp_next_deadline(q) == 3.0);
    park_ok(q, 4, 1, 1, 0.0); /* zero is a deadline, not "empty" */
    ck_assert(mlt_ssp_next_deadline(q) == 0.0);
    rec_t r = {0};
    ck_assert_uint_eq(mlt_ssp_expire(q, 3.0, record, &r), 2);
    ck_assert(mlt_ssp_next_deadline(q) == 5.0);
    /* removal by release and drop updates it too */
    ck_assert_uint_eq(mlt_ssp_drop(q, 1, record, &r), 2);
    ck_assert(mlt_ssp_next_deadline(q) < 0);
    mlt_ssp_destroy(&q);
}
END_TEST

START_TEST(test_queue_capacity)
{
    mlt_ssp_t *q = mlt_ssp_new(3);
    park_ok(q, 1, 1, 5, 10);
    park_ok(q, 2, 1, 1, 10);
    park_ok(q, 3, 1, 5, 10);
    mlt_parked_t p = pull(4, 1, 1, 10);
    ck_assert_int_eq(mlt_ssp_park(q, &p), -EAGAIN);
    ck_assert_uint_eq(mlt_ssp_count(q), 3);
    rec_t r = {0};
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 1, 0, record, &r), 1);
    expect_ids(&r, (const uint64_t[]){2}, 1);
    ck_assert_int_eq(mlt_ssp_park(q, &p), 0);
    ck_assert_int_eq(mlt_ssp_park(q, &p), -EAGAIN);
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_drop(q, UINT32_MAX, record, &r), 3);
    expect_ids(&r, (const uint64_t[]){1, 3, 4}, 3);
    mlt_ssp_destroy(&q);

    q = mlt_ssp_new(0);
    ck_assert_int_eq(mlt_ssp_park(q, &p), -EAGAIN);
    ck_assert_uint_eq(mlt_ssp_count(q), 0);
    mlt_ssp_destroy(&q);
}
END_TEST

/* Many pulls, across the queue's growth steps, with removals in between:
 * nothing is lost, duplicated or reordered. */
START_TEST(test_queue_many)
{
    enum { N = 300 };
    mlt_ssp_t *q = mlt_ssp_new(N);
    for (uint64_t i = 0; i < N; i++)
        park_ok(q, i, (uint32_t)(i % 3), (int64_t)(i % 10), 100);
    mlt_parked_t extra = pull(N, 0, 0, 100);
    ck_assert_int_eq(mlt_ssp_park(q, &extra), -EAGAIN);
    rec_t r = {0};
    /* branch 1, clocks <= 4: i % 3 == 1 and i % 10 <= 4 */
    size_t n = mlt_ssp_release(q, 1, 4, 0, record, &r);
    size_t want = 0;
    for (uint64_t i = 0; i < N; i++) {
        if (i % 3 == 1 && i % 10 <= 4) {
            ck_assert_uint_lt(want, r.n);
            ck_assert_uint_eq(r.ids[want], i);
            want++;
        }
    }
    ck_assert_uint_eq(n, want);
    ck_assert_uint_eq(r.n, want);
    ck_assert_uint_eq(mlt_ssp_count(q), N - want);
    /* refill to capacity, then drain everything */
    for (uint64_t i = 0; i < want; i++)
        park_ok(q, N + i, 5, 0, 100);
    ck_assert_int_eq(mlt_ssp_park(q, &extra), -EAGAIN);
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_drop(q, UINT32_MAX, record, &r), N);
    size_t j = 0;
    for (uint64_t i = 0; i < N; i++)
        if (!(i % 3 == 1 && i % 10 <= 4))
            ck_assert_uint_eq(r.ids[j++], i);
    for (uint64_t i = 0; i < want; i++)
        ck_assert_uint_eq(r.ids[j++], N + i);
    mlt_ssp_destroy(&q);
}
END_TEST

/* Releases, and for each released pull (original ids < 1000) parks new ones,
 * as the server does when it answers a pull and the worker's next one arrives. */
static void record_and_park(void *arg, const mlt_parked_t *p)
{
    rec_t *r = arg;
    record(arg, p);
    if (p->request_id >= 1000)
        return;
    for (int i = 0; i < r->park_per_call; i++) {
        mlt_parked_t n = pull(r->next_id++, r->park_branch, r->park_clock, 50);
        ck_assert_int_eq(mlt_ssp_park(r->q, &n), 0);
    }
}

START_TEST(test_queue_park_in_callback)
{
    mlt_ssp_t *q = mlt_ssp_new(1024);
    park_ok(q, 1, 1, 2, 100);
    park_ok(q, 2, 2, 2, 100);
    park_ok(q, 3, 1, 9, 100);
    park_ok(q, 4, 1, 1, 100);
    park_ok(q, 5, 1, 2, 100);
    rec_t r = {0};
    r.q = q;
    r.park_per_call = 70; /* enough to make the queue grow during the callbacks */
    r.park_branch = 1;
    r.park_clock = 0; /* ready at once: must not be lost nor taken twice */
    r.next_id = 1000;

    ck_assert_uint_eq(mlt_ssp_release(q, 1, 2, 0, record_and_park, &r), 3);
    expect_ids(&r, (const uint64_t[]){1, 4, 5}, 3);
    ck_assert_uint_eq(mlt_ssp_count(q), 2 + 3 * 70);

    /* the pulls parked during the callbacks come out next, in the order parked,
     * after none of the others */
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_release(q, 1, 2, 0, record_and_park, &r), 3 * 70);
    for (size_t i = 0; i < 3 * 70; i++)
        ck_assert_uint_eq(r.ids[i], 1000 + i);
    ck_assert_uint_eq(mlt_ssp_count(q), 2);
    r.n = 0;
    ck_assert_uint_eq(mlt_ssp_drop(q, UINT32_MAX, record, &r), 2);
    expect_ids(&r, (const uint64_t[]){2, 3}, 2);
    mlt_ssp_destroy(&q);
}
END_TEST

/* ============================================================ dropped workers */

/* A 3-worker store with branch 1 at clocks {5, 3, 7}. */
static mlt_store_t *gone_store(void)
{
    mlt_store_t *st = mlt_store_new(16, UINT64_MAX);
    ck_assert_ptr_nonnull(st);
    const mlt_table_spec_t tab = {"w", 40};
    char err[256] = "";
    ck_assert_int_eq(mlt_store_set_job(st, "job", 3, MLT_RULE_SGD, &tab, 1, 0, 1, err, sizeof err),
                     0);
    mlt_tunables_t t;
    memset(&t, 0, sizeof t);
    t.h.lr = 0.1f;
    ck_assert_int_eq(mlt_store_create(st, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), 0);
    mlt_branch_t *b = mlt_store_branch(st, 1);
    int64_t m;
    ck_assert_int_eq(mlt_store_branch_clock(b, 0, 5, &m), 0);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 3, &m), 0);
    ck_assert_int_eq(mlt_store_branch_clock(b, 2, 7, &m), 0);
    ck_assert_int_eq(m, 3);
    return st;
}

START_TEST(test_gone_leaves_min_clock)
{
    mlt_store_t *st = gone_store();
    mlt_branch_t *b = mlt_store_branch(st, 1);
    ck_assert_uint_eq(mlt_store_branch_slowest(b), 1);
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 1, true), 0);
    ck_assert(mlt_store_worker_gone(st, 1));
    ck_assert(!mlt_store_worker_gone(st, 0));
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 5); /* the others: nobody waits for 1 */
    ck_assert_uint_eq(mlt_store_branch_slowest(b), 0);
    /* a branch made while 1 is gone leaves it out too */
    char err[256];
    mlt_tunables_t t = *mlt_store_branch_tunables(b);
    ck_assert_int_eq(mlt_store_fork(st, 2, 1, MLT_BRANCH_TRAIN, &t, err, sizeof err), 0);
    mlt_branch_t *b2 = mlt_store_branch(st, 2);
    int64_t m;
    ck_assert_int_eq(mlt_store_branch_clock(mlt_store_branch(st, 2), 0, 2, &m), 0);
    ck_assert_int_eq(mlt_store_branch_clock(mlt_store_branch(st, 2), 2, 4, &m), 0);
    ck_assert_int_eq(m, 2);
    /* every worker gone: nobody to wait for */
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 0, true), 0);
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 2, true), 0);
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 7);
    (void)b2;
    /* outside the job */
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 3, true), -ERANGE);
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_back_reenters_at_its_clock)
{
    mlt_store_t *st = gone_store();
    mlt_branch_t *b = mlt_store_branch(st, 1);
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 1, true), 0);
    int64_t m;
    ck_assert_int_eq(mlt_store_branch_clock(b, 0, 9, &m), 0);
    ck_assert_int_eq(m, 7);
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 1, false), 0);
    ck_assert(!mlt_store_worker_gone(st, 1));
    /* back, but out of b until its first pull there: its old clock 3 holds nobody */
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 7);
    /* its first pull at 7 (the step's start): in again at 7, not at 3, so its
     * own pull is ready and the others' wait only for it to catch up */
    mlt_store_branch_enter(b, 1, 7);
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 7);
    ck_assert(mlt_ssp_ready(mlt_store_branch_min_clock(b), 7, 0));
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 8, &m), 0);
    ck_assert_int_eq(m, 7);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 6, &m), -EINVAL); /* in again: no going back */
    /* a replacement resuming below the clock its lost connection reached
     * (the coordinator had not heard of the last ones): it catches up out of
     * min_clock, which does not go back, and is in again once past it */
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 1, true), 0);
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 1, false), 0);
    mlt_store_branch_enter(b, 1, 5);
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 7); /* worker 2's: not 5 */
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 6, &m), 0);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 7, &m), 0);
    ck_assert_int_eq(m, 7);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 8, &m), 0); /* at 8 again: in */
    ck_assert_int_eq(m, 7);
    ck_assert_int_eq(mlt_store_branch_clock(b, 1, 7, &m), -EINVAL);
    /* a clock (no pull: a diverged branch) also brings a worker back in */
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 0, true), 0);
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 0, false), 0);
    ck_assert_int_eq(mlt_store_branch_min_clock(b), 7);
    ck_assert_int_eq(mlt_store_branch_clock(b, 0, 10, &m), 0);
    ck_assert_int_eq(m, 7);
    /* a new job forgets who was gone */
    ck_assert_int_eq(mlt_store_set_worker_gone(st, 2, true), 0);
    mlt_store_end_job(st);
    ck_assert(!mlt_store_worker_gone(st, 2));
    mlt_store_destroy(&st);
}
END_TEST

START_TEST(test_queue_drop_worker)
{
    mlt_ssp_t *q = mlt_ssp_new(16);
    rec_t r = {0};
    for (uint64_t id = 1; id <= 8; id++) /* pull() gives worker id % 7 */
        park_ok(q, id, 1, 5, 10);
    ck_assert_uint_eq(mlt_ssp_drop_worker(q, 1, record, &r), 2); /* ids 1 and 8 */
    const uint64_t want[] = {1, 8};
    expect_ids(&r, want, 2);
    ck_assert_uint_eq(mlt_ssp_count(q), 6);
    ck_assert_uint_eq(mlt_ssp_drop_worker(q, 6, record, &r), 1);
    ck_assert_uint_eq(mlt_ssp_drop_worker(q, 99, record, &r), 0);
    mlt_ssp_destroy(&q);
}
END_TEST

static Suite *ssp_suite(void)
{
    Suite *s = suite_create("ssp");

    TCase *tc = tcase_create("rule");
    tcase_add_test(tc, test_rule_bsp);
    tcase_add_test(tc, test_rule_stale);
    suite_add_tcase(s, tc);

    tc = tcase_create("queue");
    tcase_add_test(tc, test_queue_release);
    tcase_add_test(tc, test_queue_expire);
    tcase_add_test(tc, test_queue_drop);
    tcase_add_test(tc, test_queue_next_deadline);
    tcase_add_test(tc, test_queue_capacity);
    tcase_add_test(tc, test_queue_many);
    tcase_add_test(tc, test_queue_park_in_callback);
    tcase_add_test(tc, test_queue_drop_worker);
    suite_add_tcase(s, tc);

    tc = tcase_create("dropped workers");
    tcase_add_test(tc, test_gone_leaves_min_clock);
    tcase_add_test(tc, test_back_reenters_at_its_clock);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ssp_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
