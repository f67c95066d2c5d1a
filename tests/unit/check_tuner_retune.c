/* check_tuner_retune.c - the tuner suite's "retune" TCase: re-tunes on a
 * plateau (the marginal search, paired losses, the trial time settled again),
 * convergence, the data cursor, and training that diverges or regresses late
 * (roll back to the snapshot, re-tune, give up). Part of check_tuner (see
 * check_tuner.c). */
#include "check_tuner.h"

#include <math.h>
#include <string.h>

/* ================================================================= retune */

/* the setting of a propose or commit line, per job tunable */
static void line_setting(const mlt_job_t *job, const line_t *l, double *v)
{
    for (uint32_t i = 0; i < job->n_tunables; i++)
        v[i] = ct_l_sub(l, "tunables", job->tunables[i].name);
}

START_TEST(test_retune_on_plateau)
{
    /* the validation accuracy is flat: the first test is a gain, the next
     * retune_tests are not, and then the tuner re-tunes with the marginal
     * searcher from the training branch: the incumbent as a trial, then
     * settings that change one tuned tunable each, then a commit */
    mlt_job_t job;
    ct_job_make(&job, "stop.max_epochs", "8", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    size_t ri = ct_dlog_find(d, c0, "retune", UINT32_MAX);
    ck_assert_msg(ri < d->n, "no retune on a validation plateau");
    ck_assert_msg(ct_l_reason_has(&d->l[ri], "validation metric has not improved"), "%s",
                  d->l[ri].text);
    ck_assert_uint_eq(ct_dlog_count(d, c0, ri, "retune_skipped"), 0);
    ck_assert_uint_eq(ct_dlog_count(d, c0, ri, "test"), 1 + (size_t)job.tuner.retune_tests);
    uint32_t parent = d->l[ri].branch;
    ck_assert_uint_eq(parent, d->l[c0].branch);
    /* the re-tune's search */
    size_t c1 = ct_dlog_find(d, ri, "commit", UINT32_MAX);
    ck_assert_msg(c1 < d->n, "no commit after the retune");
    ck_assert_msg(ct_l_reason_has(&d->l[c1], "re-tune"), "%s", d->l[c1].text);
    double inc[MLT_JOB_MAX_TUNABLES], s[MLT_JOB_MAX_TUNABLES];
    line_setting(&job, &d->l[c0], inc);
    size_t proposals = 0, incumbents = 0;
    for (size_t i = ri; i < c1; i++) {
        const line_t *l = &d->l[i];
        if (ct_is_trial_fork(l))
            ck_assert_uint_eq((uint32_t)ct_l_num(l, "parent"), parent);
        if (!ct_l_is(l, "propose"))
            continue;
        line_setting(&job, l, s);
        int changed = 0;
        for (uint32_t k = 0; k < job.n_tunables; k++) {
            if (fabs(s[k] - inc[k]) > 1e-9 * fabs(inc[k]) + 1e-12) {
                changed++;
                ck_assert_msg(job.tunables[k].tune, "a fixed tunable changed: %s", l->text);
            }
        }
        if (ct_l_reason_has(l, "the current setting")) {
            incumbents++;
            ck_assert_int_eq(changed, 0);
            ck_assert_uint_eq(proposals, 0);
        } else {
            proposals++;
            ck_assert_msg(changed == 1, "a marginal proposal changes %d tunables: %s", changed,
                          l->text);
        }
    }
    ck_assert_uint_eq(incumbents, 1);
    ck_assert_uint_ge(proposals, 1);
    /* the winner replaced the old training branch */
    ck_assert_uint_ne(d->l[c1].branch, parent);
    ck_assert_msg(ct_dlog_find(d, ri, "free", parent) < c1, "the old training branch lives on");
    ck_assert(!r.x->b[parent].live);
    ck_assert_uint_ge(r.res.searches, 2);
    ct_assert_one_stop_per_search(d);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* the first search's commit c0, the first re-tune after it ri, and its commit c1 */
static void first_retune(const dlog_t *d, size_t *c0, size_t *ri, size_t *c1)
{
    *c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    *ri = ct_dlog_find(d, *c0, "retune", UINT32_MAX);
    ck_assert_msg(*ri < d->n, "no retune");
    *c1 = ct_dlog_find(d, *ri, "commit", UINT32_MAX);
    ck_assert_msg(*c1 < d->n, "no commit after the retune");
}

START_TEST(test_retune_paired_lower_loss)
{
    /* late in training the best learning rate falls to an eighth (as in real
     * training, where a lower rate reaches a lower loss) and the loss gets
     * noisier than any trial's progress: the re-tune's trials are unstable,
     * and their slopes say nothing. But they run the current setting's data
     * (the noise is keyed by the data position), so the block means pair up
     * with the current setting's trial, and a lower rate shows a lower loss
     * beyond doubt: the re-tune commits it. */
    mlt_job_t job;
    ct_job_make(&job, "stop.max_epochs", "8", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    x->noise_late = 0.5;
    x->noise_from = 1.2;
    x->opt_late = LR_OPT / 8;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0, ri, c1;
    first_retune(d, &c0, &ri, &c1);
    char v[32];
    size_t unstable = 0, summaries = 0;
    for (size_t i = ri; i < c1; i++)
        if (ct_l_is(&d->l[i], "summary")) {
            summaries++;
            unstable += strcmp(ct_l_str(&d->l[i], "verdict", v, sizeof v), "unstable") == 0;
        }
    ck_assert_msg(unstable == summaries && summaries >= 2,
                  "precondition: the re-tune's trials are all unstable (%zu of %zu)", unstable,
                  summaries);
    ck_assert_msg(ct_l_reason_has(&d->l[c1], "lower loss than the current setting"), "%s",
                  d->l[c1].text);
    double lr0 = ct_l_sub(&d->l[c0], "tunables", "lr"), lr1 = ct_l_sub(&d->l[c1], "tunables", "lr");
    ck_assert_msg(lr1 < lr0, "the re-tune committed lr %g, from %g", lr1, lr0);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_retune_settles_trial_time_again)
{
    /* after the first search the loss gets far noisier (as late in training,
     * where it falls slowly): a re-tune cannot trust the first search's trial
     * time, so it settles it again (doubling until a trial converges or one
     * epoch); when no trial converges even at one epoch, the current setting
     * goes on rather than the least bad trial */
    mlt_job_t job;
    ct_job_make(&job, "stop.max_epochs", "8", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    x->noise_late = 5.0; /* far above any progress a trial can show */
    x->noise_from = 1.2; /* after the first search, which ends by epoch 1 */
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0, ri, c1;
    first_retune(d, &c0, &ri, &c1);
    /* the re-tune settles its trial time itself (here at one epoch, the cap:
     * nothing converges), where it used to reuse the first search's */
    size_t settled = 0;
    for (size_t i = ri; i < c1; i++)
        settled += ct_l_is(&d->l[i], "trial_time");
    ck_assert_msg(settled >= 1, "the re-tune did not settle its trial time");
    ck_assert_msg(ct_l_reason_has(&d->l[c1], "the current setting goes on"), "%s", d->l[c1].text);
    double before[MLT_JOB_MAX_TUNABLES], after[MLT_JOB_MAX_TUNABLES];
    line_setting(&job, &d->l[c0], before);
    line_setting(&job, &d->l[c1], after);
    for (uint32_t k = 0; k < job.n_tunables; k++)
        ck_assert_double_eq_tol(after[k], before[k], 1e-9 * fabs(before[k]) + 1e-12);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_converges)
{
    /* the setting does not matter and the accuracy is flat: every re-tune
     * keeps the incumbent, and after converge_tests of them the tuner is
     * converged and re-tunes no more, though the plateau goes on */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "2", "tuner.converge_tests", "2", "stop.max_epochs",
                "16", NULL);
    script_t *x = ct_script_new(&job);
    x->flat = true;
    x->noise = 0;
    x->acc_const = 0.5;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t conv = ct_dlog_find(d, 0, "converged", UINT32_MAX);
    ck_assert_msg(conv < d->n, "never converged");
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "converged"), 1);
    ck_assert_uint_eq(ct_dlog_count(d, 0, conv, "retune"), (size_t)job.tuner.converge_tests);
    ck_assert_uint_eq(ct_dlog_count(d, conv, d->n, "retune"), 0);
    ck_assert_uint_eq(ct_dlog_count(d, conv, d->n, "retune_skipped"), 0);
    ck_assert_uint_eq(ct_dlog_count(d, conv, d->n, "propose"), 0);
    /* the plateau went on long enough after it that a re-tune was due */
    ck_assert_uint_gt(ct_dlog_count(d, conv, d->n, "test"), (size_t)job.tuner.retune_tests + 1);
    /* every commit has the first one's setting */
    size_t c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    double first[MLT_JOB_MAX_TUNABLES], s[MLT_JOB_MAX_TUNABLES];
    line_setting(&job, &d->l[c0], first);
    size_t commits = 0;
    for (size_t i = c0; i < d->n; i = ct_dlog_find(d, i + 1, "commit", UINT32_MAX)) {
        commits++;
        line_setting(&job, &d->l[i], s);
        ck_assert_msg(memcmp(first, s, job.n_tunables * sizeof(double)) == 0,
                      "a re-tune changed the setting: %s", d->l[i].text);
        ck_assert_uint_lt(i, conv);
    }
    ck_assert_uint_eq(commits, 1 + (size_t)job.tuner.converge_tests);
    ck_assert(ct_l_reason_has(&d->l[conv], "2 re-tunes"));
    ck_assert_uint_eq(r.res.searches, commits);
    ct_assert_one_stop_per_search(d);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_same_data_cursor)
{
    /* every trial of one search starts from the same data cursor (its
     * parent's), for the first search and for each re-tune */
    mlt_job_t job;
    ct_job_make(&job, "stop.max_epochs", "12", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    run_t r;
    ct_run_job(&job, x, &r);
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_uint_ge(r.res.searches, 2);
    uint32_t parents[64];
    double cursor[64];
    size_t n_par = 0, trials = 0;
    for (uint32_t id = INIT + 1; id < MAXB; id++) {
        const br_t *b = &r.x->b[id];
        if (!b->exists || b->kind != K_TRAIN)
            continue;
        ck_assert_msg(!isnan(b->first_epoch), "trial %u never ran", id);
        /* the executor already checks run by run that data_epoch continues the
         * branch's cursor; here: the first run of each trial starts at the
         * parent's cursor, the same for every trial of the parent */
        ck_assert_double_eq_tol(b->first_epoch, b->fork_pos, 1e-9);
        size_t k = 0;
        while (k < n_par && parents[k] != b->parent)
            k++;
        if (k == n_par) {
            ck_assert(n_par < 64);
            parents[n_par] = b->parent;
            cursor[n_par++] = b->first_epoch;
        }
        ck_assert_msg(b->first_epoch == cursor[k],
                      "trial %u of parent %u starts at data epoch %.12g, another at %.12g", id,
                      b->parent, b->first_epoch, cursor[k]);
        trials++;
    }
    ck_assert_uint_eq(trials, r.res.trials);
    ck_assert_uint_eq(n_par, r.res.searches);
    ck_assert_double_eq(cursor[0], 0.0);
    for (size_t k = 1; k < n_par; k++)
        ck_assert_msg(cursor[k] > cursor[k - 1], "re-tune %zu starts at %.12g", k, cursor[k]);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* The committed setting trains fine for a while, then diverges (a NaN loss
 * at lr >= 0.02 once the branch has run 250 clocks, 2.5 epochs: no trial
 * runs that long). The tuner rolls back to its snapshot at
 * the last good test, caps lr at half the diverged rate, re-tunes from the
 * snapshot and trains to max_epochs. */
START_TEST(test_diverged_training_rolls_back)
{
    mlt_job_t job;
    ct_job_make(&job, NULL);
    script_t *x = ct_script_new(&job);
    x->late_lr = 0.02;
    x->late_age = 250;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    size_t c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_uint_lt(c0, d->n);
    double bad_lr = ct_l_sub(&d->l[c0], "tunables", "lr");
    ck_assert_msg(bad_lr >= x->late_lr, "the first search committed lr %g: nothing to recover "
                  "from (the test needs a setting that diverges late)", bad_lr);
    size_t dv = ct_dlog_find(d, c0, "diverged", UINT32_MAX);
    ck_assert_msg(dv < d->n, "no diverged line");
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "diverged"), 1);
    uint32_t train = d->l[c0].branch, snap = (uint32_t)ct_l_num(&d->l[dv], "snapshot");
    ck_assert_uint_eq(d->l[dv].branch, train);
    ck_assert(!r.x->b[train].live);
    /* the snapshot: a fork of the training branch before the NaN, at the last test */
    ck_assert_int_eq(r.x->b[snap].kind, K_SNAP);
    ck_assert_uint_eq(r.x->b[snap].parent, train);
    ck_assert(isfinite(r.x->b[snap].q));
    double snap_epoch = ct_l_num(&d->l[dv], "epoch");
    ck_assert_msg(snap_epoch >= 1 && snap_epoch < 2.5 + 1e-9, "snapshot at epoch %g", snap_epoch);
    /* the range cut, the re-tune from the snapshot, and a commit below the cut */
    size_t rg = ct_dlog_find(d, dv, "range", UINT32_MAX);
    ck_assert_uint_lt(rg, d->n);
    /* the log prints 6 significant digits */
    ck_assert_double_eq_tol(ct_l_num(&d->l[rg], "max"), bad_lr / 2, 1e-5 * bad_lr);
    size_t rt = ct_dlog_find(d, dv, "retune", snap);
    ck_assert_uint_lt(rt, d->n);
    size_t c1 = ct_dlog_find(d, rt, "commit", UINT32_MAX);
    ck_assert_uint_lt(c1, d->n);
    for (size_t i = rt; i < c1; i++)
        if (ct_is_trial_fork(&d->l[i]))
            ck_assert_uint_eq((uint32_t)ct_l_num(&d->l[i], "parent"), snap);
    double lr1 = ct_l_sub(&d->l[c1], "tunables", "lr");
    ck_assert_msg(lr1 <= bad_lr / 2 * (1 + 1e-5), "re-committed lr %g above the cut %g", lr1,
                  bad_lr / 2);
    ck_assert_msg(ct_lr_of(&job, &r.res.setting) < x->late_lr, "final lr %g",
                  ct_lr_of(&job, &r.res.setting));
    /* no test after the divergence reports NaN, and the job trained its epochs */
    ck_assert(isfinite(r.res.test) && r.res.test > 0.5);
    ck_assert(r.res.epoch >= 6 - 1e-9);
    ck_assert_uint_eq(ct_dlog_count(d, dv + 1, d->n, "diverged"), 0);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* The committed setting starts to unlearn after 250 clocks (finite losses,
 * falling accuracy): the test that sees validation accuracy 0.05 below the
 * best rolls back to the snapshot and re-tunes below the failed rate. */
START_TEST(test_regressed_training_rolls_back)
{
    mlt_job_t job;
    ct_job_make(&job, NULL);
    script_t *x = ct_script_new(&job);
    x->late_lr = 0.02;
    x->late_age = 250;
    x->late_regress = true;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    double bad_lr = ct_l_sub(&d->l[c0], "tunables", "lr");
    ck_assert_msg(bad_lr >= x->late_lr, "committed lr %g", bad_lr);
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "diverged"), 0);
    size_t rg = ct_dlog_find(d, c0, "regressed", UINT32_MAX);
    ck_assert_msg(rg < d->n, "no regressed line");
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "regressed"), 1);
    /* the test before it was within the margin; this one is below */
    size_t tst = rg;
    while (tst > 0 && !ct_l_is(&d->l[tst], "test"))
        tst--;
    double best = 0;
    for (size_t i = 0; i < tst; i++)
        if (ct_l_is(&d->l[i], "test") && ct_l_num(&d->l[i], "accuracy") > best)
            best = ct_l_num(&d->l[i], "accuracy");
    ck_assert_msg(ct_l_num(&d->l[tst], "accuracy") < best - 0.05, "%s", d->l[tst].text);
    uint32_t snap = (uint32_t)ct_l_num(&d->l[rg], "snapshot");
    ck_assert_int_eq(r.x->b[snap].kind, K_SNAP);
    size_t c1 = ct_dlog_find(d, rg, "commit", UINT32_MAX);
    ck_assert_uint_lt(c1, d->n);
    ck_assert(ct_l_sub(&d->l[c1], "tunables", "lr") <= bad_lr / 2 * (1 + 1e-5)); /* 6 digits */
    ck_assert(isfinite(r.res.test) && r.res.test >= best - 0.05);
    ck_assert(r.res.epoch >= 6 - 1e-9);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

/* Every rate diverges late: the tuner recovers 3 times, then fails the job
 * with a reason; a fixed job that diverges fails at once. */
START_TEST(test_diverged_training_gives_up)
{
    mlt_job_t job;
    ct_job_make(&job, "stop.max_epochs", "20", NULL);
    script_t *x = ct_script_new(&job);
    x->late_lr = 1e-9;
    x->late_age = 250;
    run_t r;
    ct_run_job(&job, x, &r);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_msg(strstr(r.res.reason, "diverged") && strstr(r.res.reason, "after 3 recoveries"),
                  "%s", r.res.reason);
    ck_assert_uint_eq(ct_dlog_count(&r.log, 0, r.log.n, "diverged"), 4);
    ct_run_free(&r);
    mlt_job_free(&job);

    ct_job_make(&job, "tuner.logic", "fixed", "tunables.lr.default", "0.03", NULL);
    x = ct_script_new(&job);
    x->late_lr = 0.02;
    x->late_age = 250;
    ct_run_job(&job, x, &r);
    ck_assert_int_eq(r.rc, -1);
    ck_assert_msg(strstr(r.res.reason, "nothing is tuned"), "%s", r.res.reason);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

void ct_retune_tcases(Suite *s)
{
    TCase *tc = tcase_create("retune");
    tcase_add_test(tc, test_retune_on_plateau);
    tcase_add_test(tc, test_retune_settles_trial_time_again);
    tcase_add_test(tc, test_retune_paired_lower_loss);
    tcase_add_test(tc, test_converges);
    tcase_add_test(tc, test_same_data_cursor);
    tcase_add_test(tc, test_diverged_training_rolls_back);
    tcase_add_test(tc, test_diverged_training_gives_up);
    tcase_add_test(tc, test_regressed_training_rolls_back);
    suite_add_tcase(s, tc);
}
