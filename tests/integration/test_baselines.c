/* test_baselines.c - the searchers and tuning logics that test_job does not
 * reach, each through the real mltunerd and a real mltuner-worker, the job
 * submitted with mltunerctl --wait, small enough to take seconds:
 *
 *   grid and tpe under the mltuner logic, mf: after the design, the
 *     searcher's proposals (grid: grid points; tpe: not all on the grid).
 *   grid + train-to-completion, mf on synthetic ratings: every setting the
 *     baseline trains is a grid point (lr on the 64-point log grid of its
 *     range), no point twice, each trained, tested and observed; a commit.
 *   tpe + train-to-completion, mf: the same flow, settings inside the range,
 *     no point twice.
 *   hyperband, cnn on a small synthetic IDX data set written here (so it runs
 *     without Fashion-MNIST): brackets of successive halving (each bracket
 *     proposes as many random settings as it announces; losers freed by the
 *     halving); the test accuracy beats chance.
 *
 * Each job must end "done" in progress.jsonl with the baseline's reason.
 * Outputs go to a relative output_dir, i.e. under the daemon's state_dir. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/integration/harness.h"
#include "tests/integration/suite_main.h"

#define MAX_LINES 4096

static mlt_test_cluster_t cl;

static void setup(void)
{
    ck_assert_int_eq(mlt_test_start(&cl, 1, NULL), 0);
    ck_assert_msg(cl.control[0], "the daemon wrote no control endpoint");
}

static void teardown(void)
{
    ck_assert_int_eq(mlt_test_stop(&cl), 0);
}

/* "key": in a JSON line, as a double; NAN if absent or null. */
static double jget(const char *line, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    if (!p || strncmp(p + strlen(pat), "null", 4) == 0)
        return NAN;
    return strtod(p + strlen(pat), NULL);
}

static int is_event(const char *line, const char *event)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"event\":\"%s\"", event);
    return strstr(line, pat) != NULL;
}

typedef struct joblog {
    char *lines[MAX_LINES]; /* decisions.jsonl */
    int n;
    char end[4096]; /* progress.jsonl's end line */
} joblog_t;

static void joblog_free(joblog_t *j)
{
    for (int i = 0; i < j->n; i++)
        free(j->lines[i]);
    j->n = 0;
}

/* Writes text as DIR/name.conf, submits it with 1 worker and the overrides
 * (NULL-terminated), waits; the job must end done. Reads its logs into j. */
static void run_job(const char *name, const char *text, const char *const *sets, joblog_t *j)
{
    char conf[400], out[128], log[8192];
    snprintf(conf, sizeof conf, "%s/%s.conf", cl.dir, name);
    FILE *f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(out, sizeof out, "output_dir=out-%s", name); /* relative: under state_dir */
    ck_assert_int_eq(mlt_test_start_workers(&cl, 1), 0);
    const char *argv[32] = {
        "daemon/mltunerctl", "-c", cl.control, "submit", conf, "--set", out, "--wait"};
    int a = 8;
    for (int i = 0; sets && sets[i] && a < 30; i++) {
        argv[a++] = "--set";
        argv[a++] = sets[i];
    }
    argv[a] = NULL;
    int rc = mlt_test_run(argv, log, sizeof log);
    ck_assert_msg(rc == 0, "%s: mltunerctl submit --wait exited %d:\n%s", name, rc, log);
    ck_assert_int_eq(mlt_test_wait_workers(&cl, 30), 0);

    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/out-%s/progress.jsonl", cl.dir, name);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    j->end[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (is_event(line, "end"))
            snprintf(j->end, sizeof j->end, "%s", line);
    fclose(f);
    ck_assert_msg(strstr(j->end, "\"phase\":\"done\""), "%s did not end done: %s", name, j->end);

    snprintf(path, sizeof path, "%s/out-%s/decisions.jsonl", cl.dir, name);
    f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    j->n = 0;
    while (j->n < MAX_LINES && fgets(line, sizeof line, f)) {
        ck_assert_msg(strstr(line, "{\"t\":") == line && strstr(line, "\"event\":"),
                      "not a decision line: %s", line);
        j->lines[j->n++] = strdup(line);
    }
    fclose(f);
}

static int count(const joblog_t *j, const char *event, const char *also)
{
    int n = 0;
    for (int i = 0; i < j->n; i++)
        n += is_event(j->lines[i], event) && (!also || strstr(j->lines[i], also));
    return n;
}

/* ---- mf, train-to-completion ----------------------------------------------- */

#define LR_MIN       1.0
#define LR_MAX       30.0
#define GRID_POINTS  63.0 /* one continuous tunable: 64 points, ends included */
#define TTC_SETTINGS 12   /* TTC_MAX_SETTINGS in tuner/tuner_base.c */

static const char mf_job[] =
    "name = \"mf-small\";\n"
    "workers = 1;\n"
    "model = { type = \"mf\"; rank = 4; l2 = 0.01; };\n"
    "data = { format = \"synthetic\"; synthetic = { users = 200; items = 100; rank = 4;\n"
    "  ratings = 6000; noise = 0.1; }; test_fraction = 0.1; validation = 500; };\n"
    "update = { rule = \"sgd\"; };\n"
    "tunables = {\n"
    "  lr = { default = 10.0; min = 1.0; max = 30.0; scale = \"log\"; tune = true; };\n"
    "  batch_size = { default = 256; values = [256]; tune = false; };\n"
    "};\n"
    "tuner = { logic = \"train-to-completion\"; };\n"
    "test_interval = 0.5;\n"
    "stop = { max_epochs = 2.0; plateau_tests = 2; target_rmse = 0.0; };\n";

/* The settings train-to-completion tried: each proposed, forked from init,
 * tested, observed; their lrs in lrs[] (in order). Returns how many. */
static int ttc_settings(const joblog_t *j, double *lrs, int max)
{
    int n = 0, observed = 0, forks = 0;
    for (int i = 0; i < j->n; i++) {
        const char *l = j->lines[i];
        if (is_event(l, "propose")) {
            ck_assert_msg(strstr(l, "train-to-completion: next setting"), "%s", l);
            ck_assert_int_lt(n, max);
            lrs[n++] = jget(l, "lr");
        } else if (is_event(l, "observe")) {
            observed++;
        } else if (is_event(l, "fork")) {
            forks++;
        }
    }
    ck_assert_int_eq(forks, n);
    ck_assert_int_eq(observed, n);
    ck_assert_int_ge(count(j, "commit", NULL), 1);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(lrs[i] >= LR_MIN * (1 - 1e-6) && lrs[i] <= LR_MAX * (1 + 1e-6),
                      "setting %d: lr %g outside [%g, %g]", i, lrs[i], LR_MIN, LR_MAX);
        for (int k = 0; k < i; k++)
            ck_assert_msg(fabs(lrs[i] - lrs[k]) > 1e-9 * lrs[i], "lr %g proposed twice", lrs[i]);
    }
    return n;
}

START_TEST(test_grid_ttc)
{
    joblog_t j;
    run_job("grid-ttc", mf_job, (const char *const[]){"tuner.searcher=grid", NULL}, &j);
    double lrs[TTC_SETTINGS + 1];
    int n = ttc_settings(&j, lrs, TTC_SETTINGS + 1);
    ck_assert_int_eq(n, TTC_SETTINGS);
    for (int i = 0; i < n; i++) {
        /* a point of the grid: its position in the log range is k/63 */
        double u = log(lrs[i] / LR_MIN) / log(LR_MAX / LR_MIN) * GRID_POINTS;
        ck_assert_msg(fabs(u - round(u)) < 1e-3, "setting %d: lr %g is not a grid point (%.4f/63)",
                      i, lrs[i], u);
    }
    ck_assert_msg(strstr(j.end, "train-to-completion tried 12 settings"), "%s", j.end);
    ck_assert_msg(isfinite(jget(j.end, "test_rmse")), "no test rmse at the end: %s", j.end);
    joblog_free(&j);
}
END_TEST

START_TEST(test_tpe_ttc)
{
    joblog_t j;
    run_job("tpe-ttc", mf_job, (const char *const[]){"tuner.searcher=tpe", NULL}, &j);
    double lrs[TTC_SETTINGS + 1];
    int n = ttc_settings(&j, lrs, TTC_SETTINGS + 1);
    ck_assert_int_eq(n, TTC_SETTINGS);
    int on_grid = 0;
    for (int i = 0; i < n; i++) {
        double u = log(lrs[i] / LR_MIN) / log(LR_MAX / LR_MIN) * GRID_POINTS;
        on_grid += fabs(u - round(u)) < 1e-3;
    }
    ck_assert_msg(on_grid < n, "every tpe setting is a grid point: the grid searcher ran");
    ck_assert_msg(isfinite(jget(j.end, "test_rmse")), "no test rmse at the end: %s", j.end);
    joblog_free(&j);
}
END_TEST

/* ---- mf, the mltuner logic's searcher proposals ---------------------------------- */

/* After the design (2 trials), the searcher proposes up to max_trials; a
 * budget of max_overhead 1 of 20 epochs is many times the 6 short trials,
 * whatever the machine's speed (both scale with it). No warm start. */
static const char *const mltuner_sets[] = {"tuner.logic=mltuner",  "tuner.max_overhead=1",
                                           "tuner.gain_stop=0",    "tuner.first_trials=2",
                                           "tuner.max_trials=6",   "tuner.min_trial_clocks=5",
                                           "tuner.range_clocks=0", "tuner.warm_start=",
                                           "stop.max_epochs=20",   NULL};

/* The lrs of the searcher's proposals (reason "searcher proposal ..."). */
static int searcher_proposals(const joblog_t *j, double *lrs, int max)
{
    int n = 0;
    for (int i = 0; i < j->n; i++)
        if (is_event(j->lines[i], "propose") && strstr(j->lines[i], "searcher proposal")) {
            ck_assert_int_lt(n, max);
            lrs[n] = jget(j->lines[i], "lr");
            ck_assert_msg(lrs[n] >= LR_MIN * (1 - 1e-6) && lrs[n] <= LR_MAX * (1 + 1e-6), "%s",
                          j->lines[i]);
            n++;
        }
    ck_assert_msg(n >= 1, "the searcher proposed nothing");
    return n;
}

static void run_mltuner(const char *name, const char *searcher, joblog_t *j)
{
    char set[64];
    snprintf(set, sizeof set, "tuner.searcher=%s", searcher);
    const char *sets[16] = {set};
    for (int i = 0; mltuner_sets[i]; i++)
        sets[i + 1] = mltuner_sets[i];
    run_job(name, mf_job, sets, j);
}

START_TEST(test_grid_mltuner)
{
    joblog_t j;
    run_mltuner("grid-mltuner", "grid", &j);
    double lrs[8];
    int n = searcher_proposals(&j, lrs, 8);
    for (int i = 0; i < n; i++) {
        double u = log(lrs[i] / LR_MIN) / log(LR_MAX / LR_MIN) * GRID_POINTS;
        ck_assert_msg(fabs(u - round(u)) < 1e-3, "proposal %d: lr %g is not a grid point (%.4f/63)",
                      i, lrs[i], u);
    }
    fprintf(stderr, "grid under mltuner: %d searcher proposals\n", n);
    joblog_free(&j);
}
END_TEST

START_TEST(test_tpe_mltuner)
{
    joblog_t j;
    run_mltuner("tpe-mltuner", "tpe", &j);
    double lrs[8];
    int n = searcher_proposals(&j, lrs, 8), on_grid = 0;
    for (int i = 0; i < n; i++) {
        double u = log(lrs[i] / LR_MIN) / log(LR_MAX / LR_MIN) * GRID_POINTS;
        on_grid += fabs(u - round(u)) < 1e-3;
    }
    ck_assert_msg(on_grid < n, "every tpe proposal is a grid point: the grid searcher ran");
    fprintf(stderr, "tpe under mltuner: %d searcher proposals\n", n);
    joblog_free(&j);
}
END_TEST

/* ---- cnn, hyperband ---------------------------------------------------------- */

#define IMG     8 /* rows = cols */
#define CLASSES 4
#define N_TRAIN 1200
#define N_TEST  400

static void be32(FILE *f, uint32_t v)
{
    uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    ck_assert_int_eq(fwrite(b, 1, 4, f), 4);
}

/* A plain IDX pair: class c has a bright 4x4 quadrant c on a noisy dark
 * background; easy for a small cnn, and chance is 1/CLASSES. */
static void write_idx(const char *images, const char *labels, uint32_t n, uint64_t seed)
{
    FILE *fi = fopen(images, "wb"), *fl = fopen(labels, "wb");
    ck_assert(fi && fl);
    be32(fi, 0x803), be32(fi, n), be32(fi, IMG), be32(fi, IMG);
    be32(fl, 0x801), be32(fl, n);
    uint64_t s = seed;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(i % CLASSES), px[IMG * IMG];
        for (int p = 0; p < IMG * IMG; p++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int r = p / IMG, q = p % IMG;
            int in = (r >= IMG / 2) == (c >> 1) && (q >= IMG / 2) == (c & 1);
            px[p] = (uint8_t)((in ? 150 : 0) + (s >> 58)); /* noise 0..63 */
        }
        ck_assert_int_eq(fwrite(px, 1, sizeof px, fi), sizeof px);
        ck_assert_int_eq(fwrite(&c, 1, 1, fl), 1);
    }
    ck_assert_int_eq(fclose(fi), 0);
    ck_assert_int_eq(fclose(fl), 0);
}

START_TEST(test_hyperband_cnn)
{
    char tri[300], trl[300], tei[300], tel[300], job[4096];
    snprintf(tri, sizeof tri, "%s/train-images", cl.dir);
    snprintf(trl, sizeof trl, "%s/train-labels", cl.dir);
    snprintf(tei, sizeof tei, "%s/test-images", cl.dir);
    snprintf(tel, sizeof tel, "%s/test-labels", cl.dir);
    write_idx(tri, trl, N_TRAIN, 1);
    write_idx(tei, tel, N_TEST, 2);
    snprintf(job, sizeof job,
             "name = \"cnn-small\";\n"
             "workers = 1;\n"
             "model = { type = \"cnn\"; cnn = [\"conv3x3x4\", \"pool2\", \"fc16\"]; };\n"
             "data = { format = \"idx\"; train_images = \"%s\"; train_labels = \"%s\";\n"
             "  test_images = \"%s\"; test_labels = \"%s\"; validation = 200; };\n"
             "update = { rule = \"sgd\"; };\n"
             "tunables = {\n"
             "  lr = { default = 0.05; min = 0.01; max = 0.3; scale = \"log\"; tune = true; };\n"
             "  momentum = { default = 0.9; min = 0.0; max = 0.9; tune = true; };\n"
             "  batch_size = { default = 32; values = [32]; tune = false; };\n"
             "};\n"
             "tuner = { logic = \"hyperband\"; };\n"
             "test_interval = 0.34;\n"
             "stop = { max_epochs = 3.0; target_accuracy = 0.0; };\n",
             tri, trl, tei, tel);
    joblog_t j;
    run_job("hyperband-cnn", job, NULL, &j);

    /* R = 3 epochs, eta 3, smallest resource 0.34 epoch: s_max = 1, so two
     * brackets: s = 1 (3 settings from 1 epoch, the best 1 to 3 epochs),
     * then s = 0 (2 settings at 3 epochs) */
    int brackets = 0, last_s = 1 << 20, want = 0, proposed = 0, halved = 0;
    for (int i = 0; i < j.n; i++) {
        const char *l = j.lines[i];
        if (is_event(l, "bracket")) {
            ck_assert_int_eq(proposed, want); /* the previous bracket's settings */
            int s = (int)jget(l, "s");
            ck_assert_msg(s < last_s, "brackets out of order: %s", l);
            last_s = s;
            want = (int)jget(l, "settings");
            proposed = 0;
            brackets++;
        } else if (is_event(l, "propose")) {
            ck_assert_msg(brackets > 0 && strstr(l, "hyperband: random setting"), "%s", l);
            double lr = jget(l, "lr");
            ck_assert_msg(lr >= 0.01 * (1 - 1e-6) && lr <= 0.3 * (1 + 1e-6), "%s", l);
            proposed++;
        } else if (is_event(l, "free") && strstr(l, "successive halving")) {
            halved++;
        }
    }
    ck_assert_int_eq(proposed, want);
    ck_assert_int_eq(brackets, 2);
    ck_assert_int_eq(last_s, 0);
    ck_assert_msg(halved >= 2, "the halving freed %d settings, want >= 2", halved);
    ck_assert_msg(strstr(j.end, "hyperband finished its 2 brackets"), "%s", j.end);
    double acc = jget(j.end, "test_accuracy");
    ck_assert_msg(acc > 1.5 / CLASSES, "test accuracy %g: no better than chance (%g)", acc,
                  1.0 / CLASSES);
    fprintf(stderr, "hyperband cnn: test accuracy %.4f\n", acc);
    joblog_free(&j);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("baselines");
    TCase *tc = tcase_create("through-mltunerd");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_grid_ttc);
    tcase_add_test(tc, test_tpe_ttc);
    tcase_add_test(tc, test_grid_mltuner);
    tcase_add_test(tc, test_tpe_mltuner);
    tcase_add_test(tc, test_hyperband_cnn);
    suite_add_tcase(s, tc);
    return mlt_test_run_suite(s);
}
