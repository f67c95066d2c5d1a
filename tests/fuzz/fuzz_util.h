/* fuzz_util.h - helpers shared by the file-decoder fuzz targets (fuzz_idx.c,
 * fuzz_ratings.c, fuzz_jobfile.c).
 *
 * The loaders under test take paths, so a target writes each input to a file
 * whose path is fixed for the process (/tmp/mlt-fuzz-<tag>-<pid>), rewritten
 * per input and removed after it (libFuzzer's fork-mode children leave by
 * _Exit, so an atexit handler alone would leave files behind). Inputs that
 * are one complete gzip member can be unpacked here, so that a target's
 * reference decoder sees what the loader sees through zlib. Violated
 * invariants abort (CHECK), which libFuzzer and tests/fuzz/replay.c both
 * report. Not thread-safe: one input at a time. */
#ifndef MLT_FUZZ_UTIL_H
#define MLT_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define fuzz_assert(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The path /tmp/mlt-fuzz-<tag>-<pid>, made once per tag (at most 4 tags per
 * process). Borrowed; valid until exit. */
const char *fuzz_tmp_path(const char *tag);

/* Removes the files at every path fuzz_tmp_path has made (missing ones are
 * fine). A target calls it at the end of each input; also run at exit. */
void fuzz_remove_files(void);

/* Replaces the file at path with data[0..size). Aborts on an I/O error (that
 * is the harness failing, not the decoder). */
void fuzz_write_file(const char *path, const uint8_t *data, size_t size);

/* 1 when data is a gzip file as zlib's gz reader sees one (starts 1f 8b). */
int fuzz_is_gzip(const uint8_t *data, size_t size);

/* When data[0..size) is exactly one complete, valid gzip member (nothing
 * after it) that unpacks to at most max bytes, returns 1 with *out (malloc'd,
 * caller frees; never NULL) and *outlen; else 0. */
int fuzz_gunzip_exact(const uint8_t *data, size_t size, size_t max, uint8_t **out, size_t *outlen);

/* A decoder's error message: NUL-terminated within errlen, not empty, one line
 * (no '\n'), and starting with "<prefix>:" when prefix is not NULL
 * (the loaders name the file first). Aborts, printing the message, otherwise. */
void fuzz_check_message(const char *err, size_t errlen, const char *prefix);

/* The decoder's verdict on the current input, for tests/fuzz/replay.c, which
 * compares it with the verdict a seed's name states (ok_... accepted,
 * bad_... refused). A target calls fuzz_verdict(1) when the decoder accepted
 * the input, fuzz_verdict(0) when it refused it, once per input. */
void fuzz_verdict(int accepted);

/* The verdict set since the last call, then forgotten: 1, 0, or -1 when the
 * target set none. */
int fuzz_take_verdict(void);

#endif
