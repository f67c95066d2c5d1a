/* replay.c - runs a libFuzzer target's corpus without libFuzzer.
 *
 * Linked with a fuzz target (LLVMFuzzerTestOneInput) into an ordinary program:
 * every file named on the command line, and every regular file under every
 * directory named there (recursively, in sorted order), is read and passed to
 * the target once. The target aborts on a violated invariant.
 *
 * Each seed states the verdict it must get in its file name: "ok_..." must
 * be accepted by the decoder, "bad_..." refused; the target reports the
 * decoder's verdict through fuzz_verdict() (fuzz_util.h). A seed whose
 * verdict differs, a name with neither prefix, or a target that reported no
 * verdict fails the run, naming the seed. Prints "replayed N inputs
 * (A accepted, R refused)"; exits 1 if an argument can't be read, a verdict
 * is wrong or no input was found, so an empty or misplaced corpus fails the
 * test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t replayed, n_accepted, n_refused, n_wrong;

/* The verdict the seed's file name states: 1 accept, 0 refuse, -1 none. */
static int named_verdict(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    if (strncmp(name, "ok_", 3) == 0)
        return 1;
    if (strncmp(name, "bad_", 4) == 0)
        return 0;
    return -1;
}

static int replay_file(const char *path, off_t size)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    /* at least one byte so data is never NULL, as under libFuzzer */
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf) {
        fclose(f);
        fprintf(stderr, "%s: out of memory\n", path);
        return -1;
    }
    size_t n = fread(buf, 1, (size_t)size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n != (size_t)size) {
        fprintf(stderr, "%s: short read\n", path);
        free(buf);
        return -1;
    }
    int want = named_verdict(path);
    fuzz_take_verdict(); /* forget any stale one */
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    replayed++;
    int got = fuzz_take_verdict();
    if (got < 0) {
        fprintf(stderr, "FAIL %s: the target reported no verdict\n", path);
        n_wrong++;
    } else if (want < 0) {
        fprintf(stderr,
                "FAIL %s: the name states no verdict (ok_... or bad_...); the decoder %s it\n",
                path, got ? "accepted" : "refused");
        n_wrong++;
    } else if (got != want) {
        fprintf(stderr, "FAIL %s: expected %s, the decoder %s it\n", path,
                want ? "accepted" : "refused", got ? "accepted" : "refused");
        n_wrong++;
    }
    if (got == 1)
        n_accepted++;
    else if (got == 0)
        n_refused++;
    return 0;
}

static int name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (S_ISREG(st.st_mode))
        return replay_file(path, st.st_size);
    if (!S_ISDIR(st.st_mode))
        return 0; /* sockets, fifos: not inputs */

    struct dirent **ents;
    int n = scandir(path, &ents, NULL, name_cmp);
    if (n < 0) {
        perror(path);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = ents[i]->d_name;
        if (rc == 0 && name[0] != '.') {
            size_t len = strlen(path) + strlen(name) + 2;
            char *sub = malloc(len);
            if (!sub) {
                rc = -1;
            } else {
                snprintf(sub, len, "%s/%s", path, name);
                rc = replay_path(sub);
                free(sub);
            }
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (replay_path(argv[i]) != 0)
            return 1;
    printf("replayed %zu inputs (%zu accepted, %zu refused)\n", replayed, n_accepted, n_refused);
    if (replayed == 0) {
        fprintf(stderr, "no inputs found\n");
        return 1;
    }
    if (n_wrong > 0) {
        fprintf(stderr, "%zu inputs got a verdict other than their name states\n", n_wrong);
        return 1;
    }
    return 0;
}
