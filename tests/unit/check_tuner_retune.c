/* check_tuner_retune.c - the tuner suite's "retune" TCase: re-tunes on a
 * plateau (the paired learning-rate probe on the same data, a decay that
 * wins, the larger batch size on the same samples), convergence, the data
 * cursor, and training that diverges or regresses late (roll back to the
 * snapshot, re-tune, give up). Part of check_tuner (see check_tuner.c). */
#include "check_tuner.h"

#include <math.h>
#include <string.h>

/* ================================================================= retune */

/* the probe's trial: the propose line after retune line ri, and the paired line */
static void probe_lines(const dlog_t *d, size_t ri, size_t *pi, size_t *pa)
{
    *pi = ct_dlog_find(d, ri, "propose", UINT32_MAX);
    ck_assert_uint_lt(*pi, d->n);
    *pa = ct_dlog_find(d, *pi, "paired", d->l[*pi].branch);
    ck_assert_uint_lt(*pa, d->n);
}

START_TEST(test_retune_on_plateau)
{
    /* the validation accuracy is flat: the first test is a gain, the next
     * retune_tests are not, and then the tuner re-tunes the learning rate
     * first: a fork of the training branch with lr x tuner.decay, everything
     * else the same, paired with the training branch on the same data; it is
     * no better here (the first search's rate is the best one), so it is
     * freed and the training branch goes on */
    mlt_job_t job;
    ct_job_make(&job, "tuner.plateau_t", "0", "stop.max_epochs", "8", NULL);
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
    char pr[32];
    ck_assert_str_eq(ct_l_str(&d->l[ri], "probe", pr, sizeof pr), "lr");
    ck_assert_uint_eq(ct_dlog_count(d, c0, ri, "test"), 1 + (size_t)job.tuner.retune_tests);
    uint32_t train = d->l[c0].branch;
    ck_assert_uint_eq(d->l[ri].branch, train);
    size_t pi, pa;
    probe_lines(d, ri, &pi, &pa);
    uint32_t b = d->l[pi].branch;
    size_t fk = ct_dlog_find(d, pi, "fork", b);
    ck_assert_uint_eq((uint32_t)ct_l_num(&d->l[fk], "parent"), train);
    double lr0 = ct_l_sub(&d->l[c0], "tunables", "lr");
    ck_assert_double_eq_tol(ct_l_sub(&d->l[pi], "tunables", "lr"), lr0 * job.tuner.decay,
                            1e-5 * lr0);
    ck_assert_double_eq_tol(ct_l_sub(&d->l[pi], "tunables", "momentum"),
                            ct_l_sub(&d->l[c0], "tunables", "momentum"), 1e-6);
    /* the same data: B starts where the training branch's probe clocks did */
    ck_assert_double_eq_tol(r.x->b[b].first_epoch, r.x->b[b].fork_pos, 1e-9);
    char v[32];
    ck_assert_str_eq(ct_l_str(&d->l[pa], "verdict", v, sizeof v), "not better");
    ck_assert_msg(ct_dlog_find(d, pa, "free", b) < ct_dlog_find(d, pa, "test", UINT32_MAX),
                  "the probe was not freed before the next test");
    ck_assert(!r.x->b[b].live);
    ck_assert_uint_eq(ct_dlog_count(d, c0 + 1, d->n, "commit"), 0);
    ck_assert_uint_eq(r.res.branch, train);
    ck_assert_uint_ge(r.res.searches, 2);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_decay_retune)
{
    /* late in training the best learning rate falls to an eighth and the
     * loss gets noisy: the training loss stalls beyond its noise (the trend
     * trigger), the decayed rate's trial pairs clock by clock with the
     * training branch on the same data, the noise cancels, and the lower
     * loss shows: B replaces the training branch (freed), with the lr
     * halved, over the same data (the lineage's epochs do not jump) */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "0", "stop.max_epochs", "8", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    x->noise_late = 0.5;
    x->noise_from = 1.2;
    x->opt_late = LR_OPT / 8;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    size_t ri = ct_dlog_find(d, c0, "retune", UINT32_MAX);
    ck_assert_msg(ri < d->n, "no retune on a stalled loss");
    ck_assert_msg(ct_l_reason_has(&d->l[ri], "stalled"), "%s", d->l[ri].text);
    size_t pi, pa;
    probe_lines(d, ri, &pi, &pa);
    char v[32];
    ck_assert_str_eq(ct_l_str(&d->l[pa], "verdict", v, sizeof v), "better");
    ck_assert(ct_l_num(&d->l[pa], "t_stat") < -2.5);
    size_t c1 = ct_dlog_find(d, pa, "commit", UINT32_MAX);
    ck_assert_uint_lt(c1, d->n);
    ck_assert_msg(ct_l_reason_has(&d->l[c1], "decayed"), "%s", d->l[c1].text);
    uint32_t a = d->l[c0].branch, b = d->l[c1].branch;
    ck_assert_uint_eq(b, d->l[pi].branch);
    ck_assert_msg(ct_dlog_find(d, pa, "free", a) < c1, "the old training branch lives on");
    ck_assert(!r.x->b[a].live);
    double lr0 = ct_l_sub(&d->l[c0], "tunables", "lr"), lr1 = ct_l_sub(&d->l[c1], "tunables", "lr");
    ck_assert_double_eq_tol(lr1, lr0 * job.tuner.decay, 1e-5 * lr0);
    /* the same data: B ran from A's cursor before the probe, and the
     * lineage's epochs at the end are the clocks of A before plus B's */
    ck_assert_double_eq_tol(r.x->b[b].first_epoch, r.x->b[b].fork_pos, 1e-9);
    ck_assert_double_eq_tol(r.res.epoch, 8.0, 1e-9);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_batch_retune)
{
    /* batch size tuned, and a clock's progress grows with the batch (as
     * many samples, as much progress): the first search keeps batch 128
     * (its trials are too short to judge it); at the first stall the decayed
     * rate is no better (the optimum does not move), then the next larger
     * batch (256) at twice the rate runs half the clocks over the same
     * samples, about as good and faster per sample (the script's clocks cost
     * 0.004 + 0.0001 x batch s): it replaces the training branch */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "1", "tuner.plateau_t", "0",
                "tunables.batch_size.tune", "true", "tuner.max_overhead", "0.5",
                "stop.max_epochs", "8", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    x->batch_power = 1.0;
    run_t r;
    ct_run_job(&job, x, &r);
    const dlog_t *d = &r.log;
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    size_t c0 = ct_dlog_find(d, 0, "commit", UINT32_MAX);
    ck_assert_double_eq(ct_l_sub(&d->l[c0], "tunables", "batch_size"), 128);
    size_t c1 = ct_dlog_find(d, c0 + 1, "commit", UINT32_MAX);
    ck_assert_msg(c1 < d->n, "the larger batch never replaced the training branch");
    ck_assert_double_eq(ct_l_sub(&d->l[c1], "tunables", "batch_size"), 256);
    /* the rate scaled with the batch (sgd: linearly) */
    double lr0 = ct_l_sub(&d->l[c0], "tunables", "lr");
    ck_assert_double_eq_tol(ct_l_sub(&d->l[c1], "tunables", "lr"), 2 * lr0, 1e-5 * lr0);
    /* its retune line said batch_size, after a learning-rate one that lost */
    size_t pa = c1;
    while (pa > c0 && !ct_l_is(&d->l[pa], "paired"))
        pa--;
    char pr[32], v[32];
    ck_assert_str_eq(ct_l_str(&d->l[pa], "probe", pr, sizeof pr), "batch_size");
    ck_assert_str_eq(ct_l_str(&d->l[pa], "verdict", v, sizeof v), "better");
    ck_assert(ct_l_num(&d->l[pa], "seconds") < 0.9 * ct_l_num(&d->l[pa], "against_seconds"));
    size_t lr_probe = ct_dlog_find(d, c0, "paired", UINT32_MAX);
    ck_assert_uint_lt(lr_probe, pa);
    ck_assert_str_eq(ct_l_str(&d->l[lr_probe], "probe", pr, sizeof pr), "lr");
    /* B ran half the clocks of A's probe, from A's cursor before it */
    uint32_t b = d->l[c1].branch;
    ck_assert_double_eq_tol(r.x->b[b].first_epoch, r.x->b[b].fork_pos, 1e-9);
    /* max_epochs to within one clock of the larger batch (50 clocks an epoch) */
    ck_assert(r.res.epoch >= 8.0 - 1e-9 && r.res.epoch <= 8.0 + 1.0 / 50 + 1e-9);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_converges)
{
    /* the setting does not matter and the accuracy is flat: every re-tune
     * keeps the training branch, and after converge_tests of them the tuner
     * is converged and re-tunes no more, though the plateau goes on */
    mlt_job_t job;
    ct_job_make(&job, "tuner.retune_tests", "2", "tuner.converge_tests", "2", "tuner.plateau_t",
                "0", "stop.max_epochs", "16", NULL);
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
    ck_assert_uint_gt(ct_dlog_count(d, conv, d->n, "test"), (size_t)job.tuner.retune_tests + 1);
    ck_assert_uint_eq(ct_dlog_count(d, 0, d->n, "commit"), 1);
    ck_assert(ct_l_reason_has(&d->l[conv], "2 re-tunes"));
    ck_assert_uint_eq(r.res.searches, 1 + (uint32_t)job.tuner.converge_tests);
    ct_assert_one_stop_per_search(d);
    ck_assert_msg(strstr(r.res.reason, "max_epochs") != NULL, "%s", r.res.reason);
    ct_assert_only_training_live(r.x, &r.res);
    ct_run_free(&r);
    mlt_job_free(&job);
}
END_TEST

START_TEST(test_same_data_cursor)
{
    /* every trial of the first search starts from the initial data cursor;
     * every re-tune's trial from the training branch's cursor at the fork,
     * later each time */
    mlt_job_t job;
    ct_job_make(&job, "tuner.plateau_t", "0", "tuner.retune_tests", "1",
                "tuner.converge_tests", "100", "stop.max_epochs", "12", NULL);
    script_t *x = ct_script_new(&job);
    x->acc_const = 0.5;
    run_t r;
    ct_run_job(&job, x, &r);
    ck_assert_msg(r.rc == 0, "%s", r.res.reason);
    ck_assert_uint_ge(r.res.searches, 3);
    size_t trials = 0, probes = 0;
    double last = 0;
    for (uint32_t id = INIT + 1; id < MAXB; id++) {
        const br_t *b = &r.x->b[id];
        if (!b->exists || b->kind != MLT_BRANCH_TRAIN)
            continue;
        ck_assert_msg(!isnan(b->first_epoch), "trial %u never ran", id);
        ck_assert_double_eq_tol(b->first_epoch, b->fork_pos, 1e-9);
        if (b->parent == INIT) {
            ck_assert_double_eq(b->first_epoch, 0.0);
            trials++;
        } else {
            ck_assert_msg(b->first_epoch > last, "re-tune trial %u starts at %.12g", id,
                          b->first_epoch);
            last = b->first_epoch;
            probes++;
        }
    }
    ck_assert_uint_eq(trials, r.res.trials + 1); /* and the range test */
    ck_assert_uint_eq(probes, r.res.searches - 1);
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
    ck_assert_int_eq(r.x->b[snap].kind, MLT_BRANCH_SNAPSHOT);
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
    ck_assert_int_eq(r.x->b[snap].kind, MLT_BRANCH_SNAPSHOT);
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
    tcase_add_test(tc, test_decay_retune);
    tcase_add_test(tc, test_batch_retune);
    tcase_add_test(tc, test_converges);
    tcase_add_test(tc, test_same_data_cursor);
    tcase_add_test(tc, test_diverged_training_rolls_back);
    tcase_add_test(tc, test_diverged_training_gives_up);
    tcase_add_test(tc, test_regressed_training_rolls_back);
    suite_add_tcase(s, tc);
}
