/* replay.c - runs a libFuzzer target's corpus without libFuzzer.
 *
 * Linked with a fuzz target (LLVMFuzzerTestOneInput) into an ordinary program:
 * every file named on the command line, and every regular file under every
 * directory named there (recursively, in sorted order), is read and passed to
 * the target once. The target aborts on a violated invariant. Prints
 * "replayed N inputs"; exits 1 if an argument can't be read or no input was
 * found, so an empty or misplaced corpus fails the test. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t replayed;

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
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    replayed++;
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
    printf("replayed %zu inputs\n", replayed);
    if (replayed == 0) {
        fprintf(stderr, "no inputs found\n");
        return 1;
    }
    return 0;
}
