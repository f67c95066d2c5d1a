/* make_corpus_data.c - writes the seed corpora of fuzz_idx, fuzz_ratings and
 * fuzz_jobfile into CORPUS_DIR/idx, CORPUS_DIR/ratings and CORPUS_DIR/jobfile
 * (which must exist).
 *
 * Seeds: small valid files, plain and gzipped, and variants just outside each
 * rule the loaders enforce (magic, dimensions, counts, truncation, trailing
 * bytes, broken gzip; ratings fields, lines, headers; job keys, bounds, checks
 * between keys, @include, 32-bit literals), plus copies of the job files given
 * on the command line (the conf/jobs files). Not built by default; regenerate
 * with
 *   ninja -C build tests/fuzz/make_corpus_data &&
 *   build/tests/fuzz/make_corpus_data tests/fuzz/corpus conf/jobs/[a-z]*.conf
 * Output is deterministic (gzip without a time stamp). Each seed is loaded
 * here: those named bad_* must be refused and all others accepted. IDX seeds
 * are fuzz_idx inputs: a first byte 0 (the images file follows) or 1 (the
 * labels file follows); the other file is fuzz_idx's fixed one. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/alloc.h"
#include "common/jobfile.h"
#include "worker/data.h"

static const char *root;
static int failures;

/* a growable byte buffer */
typedef struct buf {
    uint8_t *p;
    size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = mlt_realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_be32(buf_t *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}

static void put_str(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void put_byte(buf_t *b, uint8_t c)
{
    put(b, &c, 1);
}

/* src as one gzip member (no file name, time stamp 0) */
static buf_t gzip_of(const buf_t *src)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        fprintf(stderr, "deflateInit2 failed\n");
        exit(1);
    }
    buf_t out = {0};
    out.cap = deflateBound(&z, (uLong)src->n);
    out.p = mlt_malloc(out.cap);
    z.next_in = src->p;
    z.avail_in = (uInt)src->n;
    z.next_out = out.p;
    z.avail_out = (uInt)out.cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        fprintf(stderr, "deflate failed\n");
        exit(1);
    }
    out.n = z.total_out;
    deflateEnd(&z);
    return out;
}

static void write_path(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        failures++;
    }
}

static void emit(const char *sub, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", root, sub, name);
    write_path(path, p, n);
}

static void verdict(const char *sub, const char *name, int rc, const char *err)
{
    int want_bad = strncmp(name, "bad_", 4) == 0;
    if (!want_bad && strncmp(name, "ok_", 3) != 0) {
        fprintf(stderr, "%s/%s: a seed's name starts with ok_ or bad_\n", sub, name);
        failures++;
    } else if ((rc != 0) != want_bad) {
        fprintf(stderr, "%s/%s: loader returned %d (%s)\n", sub, name, rc, rc ? err : "accepted");
        failures++;
    }
}

/* ---- idx ------------------------------------------------------------------ */

/* fuzz_idx's fixed files: 3 images of 2x2, labels 0 9 4 */
static const uint8_t fixed_images[] = {
    0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 255, 128, 1, 2, 3, 254, 127, 64, 32, 16, 8,
};
static const uint8_t fixed_labels[] = {0, 0, 8, 1, 0, 0, 0, 3, 0, 9, 4};

/* Writes an idx seed: mode byte, then the file (gzipped when gz), and checks
 * the loader's verdict against the name. */
static void idx_seed(const char *name, int labels, const buf_t *file, int gz)
{
    buf_t packed = gz ? gzip_of(file) : (buf_t){0};
    const buf_t *f = gz ? &packed : file;
    char img[] = "/tmp/mlt-corpus-images-XXXXXX", lbl[] = "/tmp/mlt-corpus-labels-XXXXXX";
    int fi = mkstemp(img), fl = mkstemp(lbl);
    if (fi < 0 || fl < 0) {
        perror("mkstemp");
        exit(1);
    }
    close(fi);
    close(fl);
    write_path(labels ? img : lbl, labels ? fixed_images : fixed_labels,
               labels ? sizeof fixed_images : sizeof fixed_labels);
    write_path(labels ? lbl : img, f->p, f->n);
    char err[512] = "";
    mlt_dataset_t d;
    int rc = mlt_idx_load(img, lbl, &d, err, sizeof err);
    mlt_dataset_free(&d);
    unlink(img);
    unlink(lbl);
    verdict("idx", name, rc, err);

    buf_t seed = {0};
    put_byte(&seed, labels ? 1 : 0);
    put(&seed, f->p, f->n);
    emit("idx", name, seed.p, seed.n);
    mlt_free(seed.p);
    mlt_free(packed.p);
}

static buf_t images(uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, size_t pixels)
{
    buf_t b = {0};
    put_be32(&b, magic);
    put_be32(&b, n);
    put_be32(&b, rows);
    put_be32(&b, cols);
    for (size_t i = 0; i < pixels; i++)
        put_byte(&b, (uint8_t)(i * 37 + 11));
    return b;
}

static buf_t labels(uint32_t magic, uint32_t n, size_t count)
{
    buf_t b = {0};
    put_be32(&b, magic);
    put_be32(&b, n);
    for (size_t i = 0; i < count; i++)
        put_byte(&b, (uint8_t)(i * 7 % 10));
    return b;
}

static void idx_seeds(void)
{
    buf_t b = images(0x803, 3, 2, 2, 12);
    idx_seed("ok_images_3x2x2", 0, &b, 0);
    idx_seed("ok_images_3x2x2_gz", 0, &b, 1);
    b.n -= 5;
    idx_seed("bad_images_truncated", 0, &b, 0);
    idx_seed("bad_images_truncated_gz", 0, &b, 1);
    b.n += 5;
    put_byte(&b, 0);
    idx_seed("bad_images_trailing", 0, &b, 0);
    idx_seed("bad_images_trailing_gz", 0, &b, 1);
    mlt_free(b.p);

    b = images(0x803, 3, 28, 28, 3 * 28 * 28);
    idx_seed("ok_images_3x28x28_gz", 0, &b, 1);
    mlt_free(b.p);
    b = images(0x803, 3, 1, 5, 15);
    idx_seed("ok_images_3x1x5", 0, &b, 0);
    mlt_free(b.p);

    b = images(0x803, 3, 2, 2, 12);
    buf_t gz = gzip_of(&b);
    gz.n -= 6; /* the trailer's CRC and part of its size missing */
    idx_seed("bad_images_gz_cut", 0, &gz, 0);
    gz.n += 6;
    gz.p[gz.n - 8] ^= 0xff; /* wrong CRC */
    idx_seed("bad_images_gz_crc", 0, &gz, 0);
    mlt_free(gz.p);
    mlt_free(b.p);

    b = images(0x803, 2, 2, 2, 8);
    idx_seed("bad_images_count_2", 0, &b, 0);
    mlt_free(b.p);
    b = images(0x803, 0, 2, 2, 0);
    idx_seed("bad_images_zero_n", 0, &b, 0);
    mlt_free(b.p);
    b = images(0x803, 3, 0, 2, 0);
    idx_seed("bad_images_zero_rows", 0, &b, 0);
    mlt_free(b.p);
    b = images(0x803, 3, 2, MLT_IDX_MAX_DIM + 1, 0);
    idx_seed("bad_images_cols_too_big", 0, &b, 0);
    mlt_free(b.p);
    b = images(0x802, 3, 2, 2, 12);
    idx_seed("bad_images_magic_dims", 0, &b, 0);
    mlt_free(b.p);
    b = images(0x0d03, 3, 2, 2, 12);
    idx_seed("bad_images_magic_type", 0, &b, 0);
    mlt_free(b.p);
    b = labels(0x801, 3, 3);
    idx_seed("bad_images_is_labels", 0, &b, 0);
    mlt_free(b.p);
    b = (buf_t){0};
    idx_seed("bad_images_empty", 0, &b, 0);
    put_str(&b, "\0\0\x08");
    idx_seed("bad_images_short_magic", 0, &b, 0);
    b.n = 0;
    put_be32(&b, 0x803);
    put_be32(&b, 3);
    put_byte(&b, 0);
    idx_seed("bad_images_short_dims", 0, &b, 0);
    mlt_free(b.p);

    b = labels(0x801, 3, 3);
    idx_seed("ok_labels_3", 1, &b, 0);
    idx_seed("ok_labels_3_gz", 1, &b, 1);
    b.n--;
    idx_seed("bad_labels_truncated", 1, &b, 0);
    b.n++;
    put_byte(&b, 1);
    idx_seed("bad_labels_trailing", 1, &b, 0);
    mlt_free(b.p);
    b = labels(0x801, 4, 4);
    idx_seed("bad_labels_count_4", 1, &b, 0);
    mlt_free(b.p);
    b = labels(0x803, 3, 3);
    idx_seed("bad_labels_magic_dims", 1, &b, 0);
    mlt_free(b.p);
    b = images(0x803, 3, 2, 2, 12);
    idx_seed("bad_labels_is_images", 1, &b, 0);
    mlt_free(b.p);
}

/* ---- ratings ---------------------------------------------------------------- */

static void ratings_seed(const char *name, const void *p, size_t n, int gz)
{
    buf_t plain = {0};
    put(&plain, p, n);
    buf_t packed = gz ? gzip_of(&plain) : (buf_t){0};
    const buf_t *f = gz ? &packed : &plain;
    char path[] = "/tmp/mlt-corpus-ratings-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        exit(1);
    }
    close(fd);
    write_path(path, f->p, f->n);
    char err[512] = "";
    mlt_ratings_t r;
    int rc = mlt_ratings_load(path, &r, err, sizeof err);
    mlt_ratings_free(&r);
    unlink(path);
    verdict("ratings", name, rc, err);
    emit("ratings", name, f->p, f->n);
    mlt_free(plain.p);
    mlt_free(packed.p);
}

static void ratings_str(const char *name, const char *s, int gz)
{
    ratings_seed(name, s, strlen(s), gz);
}

static void ratings_seeds(void)
{
    static const char udata[] = "196\t242\t3\t881250949\n"
                                "186\t302\t3\t891717742\n"
                                "22\t377\t1\t878887116\n"
                                "196\t377\t5\t881251000\n";
    static const char csv[] = "userId,movieId,rating,timestamp\n"
                              "1,1,4.0,964982703\n"
                              "1,3,4.5,964981247\n"
                              "2,1,0.5,964982224\n";
    ratings_str("ok_udata", udata, 0);
    ratings_str("ok_udata_gz", udata, 1);
    ratings_str("ok_csv", csv, 0);
    ratings_str("ok_csv_gz", csv, 1);
    ratings_str("ok_csv_crlf", "userId,movieId,rating,timestamp\r\n1,2,3.5,4\r\n2,2,10,5\r\n", 0);
    ratings_str("ok_csv_no_header", "1,2,3.5,4\n5,6,0,7\n", 0);
    ratings_str("ok_udata_no_final_newline", "1\t1\t5\t874965758\n1\t2\t3\t876893171", 0);
    ratings_str("ok_udata_blank_lines", "\n\n1\t1\t5\t1\n\r\n\n2\t1\t0.25\t2\n\n", 0);
    ratings_str("ok_udata_big_ids",
                "4294967295\t0\t1e1\t18446744073709551615\n0\t4294967295\t.5\t0\n", 0);
    ratings_str("ok_udata_number_forms", "1\t1\t+5\t1\n1\t2\t-0\t1\n1\t3\t0x1p3\t1\n1\t4\t7.\t1\n",
                0);
    char line[MLT_RATINGS_MAX_LINE + 2];
    int n = snprintf(line, sizeof line, "1\t1\t5\t");
    memset(line + n, '0', MLT_RATINGS_MAX_LINE - 1 - (size_t)n); /* 1023 bytes and the newline */
    line[MLT_RATINGS_MAX_LINE - 1] = '\n';
    line[MLT_RATINGS_MAX_LINE] = '\0';
    ratings_str("ok_udata_longest_line", line, 0);
    line[MLT_RATINGS_MAX_LINE - 1] = '0'; /* 1024 bytes and the newline */
    line[MLT_RATINGS_MAX_LINE] = '\n';
    line[MLT_RATINGS_MAX_LINE + 1] = '\0';
    ratings_str("bad_line_too_long", line, 0);

    ratings_str("bad_empty", "", 0);
    ratings_str("bad_header_only", "userId,movieId,rating,timestamp\n", 0);
    ratings_str("bad_unknown_header", "user,item,rating,time\n1,2,3,4\n", 0);
    ratings_str("bad_no_separator", "1 2 3 4\n", 0);
    ratings_str("bad_3_fields", "1\t2\t3\n", 0);
    ratings_str("bad_5_fields", "1\t2\t3\t4\t5\n", 0);
    ratings_str("bad_mixed_separators", "1\t2\t3\t4\n1,2,3,4\n", 0);
    ratings_str("bad_rating_11", "1\t2\t11\t4\n", 0);
    ratings_str("bad_rating_negative", "1\t2\t-0.5\t4\n", 0);
    ratings_str("bad_rating_nan", "1\t2\tnan\t4\n", 0);
    ratings_str("bad_rating_space", "1\t2\t 3\t4\n", 0);
    ratings_str("bad_id_negative", "-1\t2\t3\t4\n", 0);
    ratings_str("bad_id_over_32_bits", "4294967296\t2\t3\t4\n", 0);
    ratings_str("bad_timestamp", "1\t2\t3\t4.5\n", 0);
    ratings_str("bad_csv_late_error", "userId,movieId,rating,timestamp\n1,1,4,1\n1,x,4,1\n", 1);
    static const char nul[] = "1\t2\t3\t4\n1\t2\0\t3\t4\n";
    ratings_seed("bad_nul_byte", nul, sizeof nul - 1, 0);

    buf_t b = {0};
    put_str(&b, udata);
    buf_t gz = gzip_of(&b);
    ratings_seed("bad_gz_cut", gz.p, gz.n - 4, 0);
    gz.p[gz.n - 8] ^= 0x01; /* wrong CRC */
    ratings_seed("bad_gz_crc", gz.p, gz.n, 0);
    mlt_free(gz.p);
    mlt_free(b.p);
}

/* ---- job files -------------------------------------------------------------- */

static void job_seed(const char *name, const char *text, size_t n)
{
    char *t = mlt_malloc(n + 1);
    memcpy(t, text, n);
    t[n] = '\0';
    char err[512] = "";
    mlt_job_t job;
    int rc = mlt_job_parse_string(t, "seed", &job, err, sizeof err);
    mlt_job_free(&job);
    mlt_free(t);
    verdict("jobfile", name, rc, err);
    emit("jobfile", name, text, n);
}

static void job_str(const char *name, const char *text)
{
    job_seed(name, text, strlen(text));
}

#define SOFTMAX "name = \"s\";\nmodel = { type = \"softmax\"; };\n"

static void job_seeds(int n_conf, char **conf)
{
    for (int i = 0; i < n_conf; i++) {
        FILE *f = fopen(conf[i], "rb");
        char *text = mlt_malloc(MLT_JOB_MAX_TEXT + 1);
        size_t n = f ? fread(text, 1, MLT_JOB_MAX_TEXT + 1, f) : 0;
        if (!f || ferror(f) || n > MLT_JOB_MAX_TEXT) {
            fprintf(stderr, "%s: cannot read a job file\n", conf[i]);
            failures++;
        } else {
            const char *base = strrchr(conf[i], '/');
            char name[256];
            snprintf(name, sizeof name, "ok_%s", base ? base + 1 : conf[i]);
            job_seed(name, text, n);
        }
        if (f)
            fclose(f);
        mlt_free(text);
    }

    job_str("ok_min_softmax.conf", SOFTMAX);
    job_str("ok_min_mlp.conf", "name = \"m\"; model = { type = \"mlp\"; layers = [8]; };");
    job_str("ok_mf_synthetic.conf",
            "name = \"mf-1.x_y\"; seed = 4294967296L; workers = 1024; backend = \"cpu\";\n"
            "output_dir = \"out\";\n"
            "model = { type = \"mf\"; rank = 3; l2 = 0.5; };\n"
            "data = { format = \"synthetic\"; synthetic = { users = 100; items = 20; rank = 2;\n"
            "  ratings = \"1K\"; noise = 0; }; test_fraction = 0.5; };\n"
            "stop = { target_rmse = 0.25; };\n");
    job_str("ok_mf_ratings.conf", "name = \"r\"; model = { type = \"mf\"; };\n"
                                  "data = { format = \"ratings\"; ratings = \"u.data\"; };\n");
    job_str("ok_tunables.conf",
            SOFTMAX "update = { rule = \"adam\"; beta1 = 0; beta2 = 0.5; eps = 1e-20; };\n"
                    "tunables = {\n"
                    "  lr = { default = 0.5; min = 1e-300; max = 1.7e308; scale = \"log\"; };\n"
                    "  x-y_z = { default = -1.5; values = [-2.5, -1.5, 0.125]; tune = false; };\n"
                    "  batch_size = { default = 64; values = [1, 64, 65536]; };\n"
                    "  momentum = { default = 0; min = 0; max = 0.999; };\n"
                    "};\n"
                    "tuner = { searcher = \"grid\"; logic = \"hyperband\"; max_trials = 256; };\n");
    job_str("ok_comments.conf", "# a comment with @include \"x\"\n"
                                "/* a block\n@include \"y\" */ name = \"c\"; // 4294967296\n"
                                "model = { type = \"cnn\"; cnn = [\"conv1x1x1\", \"pool8\", "
                                "\"conv11x11x1024\", \"fc65536\", \"fc1\"]; };\n");

    job_str("bad_empty", "");
    static const char nul[] = "name = \"x\";\0"
                              "model = { type = \"softmax\"; };";
    job_seed("bad_nul_byte", nul, sizeof nul - 1);
    job_str("bad_syntax", "name = \"x\"\nmodel = {");
    job_str("bad_unknown_key", SOFTMAX "bogus = 1;\n");
    job_str("bad_include", SOFTMAX "@include \"/dev/null\"\n");
    job_str("bad_int32_literal", SOFTMAX "seed = 4294967296;\n");
    job_str("bad_hex_literal", SOFTMAX "seed = 0x100000000;\n");
    job_str("bad_name", "name = \".hidden\"; model = { type = \"softmax\"; };");
    job_str("bad_backend", SOFTMAX "backend = \"gpu\";\n");
    job_str("bad_cnn_even", "name = \"c\"; model = { type = \"cnn\"; cnn = [\"conv4x4x8\"]; };");
    job_str("bad_cnn_after_fc",
            "name = \"c\"; model = { type = \"cnn\"; cnn = [\"fc8\", \"pool2\"]; };");
    job_str("bad_mlp_no_layers", "name = \"m\"; model = { type = \"mlp\"; };");
    job_str("bad_mf_idx", "name = \"m\"; model = { type = \"mf\"; };");
    job_str("bad_count_suffix", SOFTMAX "data = { validation = \"1X\"; };\n");
    job_str("bad_beta_1", SOFTMAX "update = { beta1 = 1.0; };\n");
    job_str("bad_tunable_both",
            SOFTMAX "tunables = { lr = { default = 1; values = [1]; min = 0; }; };\n");
    job_str("bad_tunable_outside",
            SOFTMAX "tunables = { lr = { default = 2; min = 0.1; max = 1; }; };\n");
    job_str("bad_tunable_not_ascending",
            SOFTMAX "tunables = { t = { default = 1; values = [2, 1]; }; };\n");
    job_str("bad_tunable_log_zero",
            SOFTMAX "tunables = { t = { default = 1; min = 0; max = 2; scale = \"log\"; }; };\n");
    job_str("bad_known_tunable", SOFTMAX "tunables = { batch_size = { default = 1.5; "
                                         "values = [1, 1.5]; }; };\n");
    job_str("bad_synthetic_too_many",
            "name = \"m\"; model = { type = \"mf\"; };\n"
            "data = { format = \"synthetic\"; synthetic = { users = 2; items = 2; "
            "ratings = 5; }; };\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR [JOB_FILE...]\n", argv[0]);
        return 2;
    }
    root = argv[1];
    idx_seeds();
    ratings_seeds();
    job_seeds(argc - 2, argv + 2);
    return failures ? 1 : 0;
}
