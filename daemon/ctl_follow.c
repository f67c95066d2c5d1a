/* ctl_follow.c - the live views of mltunerctl: `watch` (a progress display
 * redrawn in place on a terminal, one line per change otherwise) and
 * `decisions [--json] [--follow]` (the decision log, read from the job's
 * output directory, which the coordinator names in its status: mltunerctl
 * must see the same file system as the daemon, as on one machine or a shared
 * directory). Both end on Ctrl-C with status 130. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/ctl.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void catch_sigint(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a sleep ends at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- watch ----------------------------------------------------------------------- */

#define BAR_WIDTH 30

static void bar(char *out, size_t cap, double frac)
{
    if (!(frac >= 0))
        frac = 0;
    if (frac > 1)
        frac = 1;
    int full = (int)lround(frac * BAR_WIDTH);
    size_t k = 0;
    out[k++] = '[';
    for (int i = 0; i < BAR_WIDTH && k + 2 < cap; i++)
        out[k++] = i < full ? '#' : '.';
    out[k++] = ']';
    out[k] = 0;
}

/* v with 4 decimals, or "-" when not known yet. */
static const char *f4(char b[24], double v)
{
    if (!isfinite(v))
        return "-";
    snprintf(b, 24, "%.4f", v);
    return b;
}

/* The display's lines for state s, into buf (one line per '\n'). */
static void render(const Mlt__JobState *s, char *buf, size_t cap)
{
    const bool mf = isfinite(s->test_rmse) || isfinite(s->val_rmse);
    char b[64], metric[160], tun[160] = "", progress[128];
    double spent = s->tuning_seconds + s->training_seconds;
    if (s->max_epochs > 0) {
        bar(b, sizeof b, s->epoch / s->max_epochs);
        snprintf(progress, sizeof progress, "%s %6.2f of %g epochs", b, s->epoch, s->max_epochs);
    } else {
        snprintf(progress, sizeof progress, "%6.2f epochs", s->epoch);
    }
    char v1[24], v2[24], v3[24];
    if (mf)
        snprintf(metric, sizeof metric, "rmse %s validation, %s test", f4(v1, s->val_rmse),
                 f4(v2, s->test_rmse));
    else
        snprintf(metric, sizeof metric, "accuracy %s validation, %s test",
                 f4(v1, s->val_accuracy), f4(v2, s->test_accuracy));
    if (s->target > 0)
        snprintf(metric + strlen(metric), sizeof metric - strlen(metric), " (target %.4g)",
                 s->target);
    if (s->tunables)
        snprintf(tun, sizeof tun, "lr %.4g  momentum %.3g  batch %u  staleness %u",
                 (double)s->tunables->lr, (double)s->tunables->momentum, s->batch_size,
                 s->tunables->staleness);
    snprintf(buf, cap,
             "%s  %s  branch %u  %.1f s  workers %u/%u\n"
             "epoch     %s\n"
             "loss      %s\n"
             "%-9s %s\n"
             "tunables  %s\n"
             "trials    %u   tuning %.1f s (%.0f%%)   training %.1f s\n",
             s->name ? s->name : "(no job)", s->phase, s->branch, s->elapsed, s->workers_joined,
             s->workers, progress, f4(v3, s->loss), mf ? "rmse" : "accuracy", metric + (mf ? 5 : 9),
             tun[0] ? tun : "-", s->trials, s->tuning_seconds,
             spent > 0 ? 100 * s->tuning_seconds / spent : 0.0, s->training_seconds);
}

int cmd_watch(void *sock)
{
    catch_sigint();
    const bool tty = isatty(STDOUT_FILENO);
    int drawn = 0; /* lines on screen to redraw over */
    char prev[1024] = "", cur[1024];
    for (;;) {
        mlt_header_t *r = get_status(sock);
        if (!r)
            return 2;
        const Mlt__JobState *s = r->job_state;
        render(s, cur, sizeof cur);
        if (tty) {
            if (drawn)
                printf("\033[%dA", drawn); /* back to the display's first line */
            drawn = 0;
            for (char *p = cur, *nl; (nl = strchr(p, '\n')); p = nl + 1, drawn++)
                printf("%.*s\033[K\n", (int)(nl - p), p);
        } else if (strcmp(cur, prev) != 0) {
            /* one line per change: the first two lines of the display */
            char *nl = strchr(cur, '\n');
            char *nl2 = nl ? strchr(nl + 1, '\n') : NULL;
            printf("%.*s |%.*s\n", nl ? (int)(nl - cur) : (int)strlen(cur), cur,
                   nl2 ? (int)(nl2 - nl - 1) : 0, nl ? nl + 1 : "");
            memcpy(prev, cur, sizeof prev);
        }
        fflush(stdout);
        if (is_over(s->phase)) {
            int rc = over_status(s->phase, s->message);
            mlt_wire_free(&r);
            return rc;
        }
        mlt_wire_free(&r);
        for (int i = 0; i < 5 && !interrupted; i++)
            nap(100);
        if (interrupted) {
            printf("\n");
            return 130;
        }
    }
}

/* ---- decisions -------------------------------------------------------------------- */

/* One decision line, human-readable: time, event, branch, then the rest of
 * the object as it is. Lines of another shape are printed unchanged. */
static void print_decision(const char *line, bool json)
{
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (json) {
        printf("%.*s\n", (int)len, line);
        return;
    }
    double t;
    char event[48];
    unsigned long branch;
    int used = 0;
    if (sscanf(line, "{\"t\":%lf,\"event\":\"%47[^\"]\",\"branch\":%lu%n", &t, event, &branch,
               &used) != 3 || used <= 0) {
        printf("%.*s\n", (int)len, line);
        return;
    }
    const char *rest = line + used;
    size_t rl = len - (size_t)used;
    if (rl && rest[0] == ',') {
        rest++;
        rl--;
    }
    if (rl && rest[rl - 1] == '}')
        rl--;
    printf("%9.3f s  %-14s #%-6lu %.*s\n", t, event, branch, (int)rl, rest);
}

int cmd_decisions(void *sock, int argc, char **argv)
{
    bool json = false, follow = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
            follow = true;
        else {
            fprintf(stderr, "mltunerctl: decisions: unexpected '%s'\n", argv[i]);
            return 2;
        }
    }
    mlt_header_t *r = get_status(sock);
    if (!r)
        return 2;
    char path[1200];
    if (!r->job_state->out_dir || !r->job_state->out_dir[0]) {
        fprintf(stderr, "mltunerctl: no job has been submitted to %s: no decision log\n",
                endpoint);
        mlt_wire_free(&r);
        return 1;
    }
    snprintf(path, sizeof path, "%s/decisions.jsonl", r->job_state->out_dir);
    mlt_wire_free(&r);
    catch_sigint();
    FILE *f = NULL;
    ino_t ino = 0;
    long pos = 0;
    char line[1 << 16];
    for (;;) {
        if (!f) {
            f = fopen(path, "r");
            if (!f && !(follow && errno == ENOENT)) {
                fprintf(stderr, "mltunerctl: %s: %s%s\n", path, strerror(errno),
                        errno == ENOENT ? " (the job has not started tuning yet, or mltunerctl "
                                          "does not see the daemon's file system)"
                                        : "");
                return 1;
            }
            struct stat sb;
            if (f && fstat(fileno(f), &sb) == 0)
                ino = sb.st_ino;
            pos = 0;
        }
        /* print what is there; a partial last line waits for its end */
        while (f && fgets(line, sizeof line, f)) {
            size_t n = strlen(line);
            if (n && line[n - 1] != '\n' && follow) {
                fseek(f, pos, SEEK_SET);
                break;
            }
            print_decision(line, json);
            pos = ftell(f);
        }
        fflush(stdout);
        if (!follow)
            break;
        if (f)
            clearerr(f);
        /* the job over and everything read: done */
        mlt_header_t *st = get_status(sock);
        if (!st) {
            if (f)
                fclose(f);
            return 2;
        }
        bool over = is_over(st->job_state->phase);
        mlt_wire_free(&st);
        /* a new job writes a new file: start over on it */
        struct stat sb;
        if (f && stat(path, &sb) == 0 && (sb.st_ino != ino || sb.st_size < pos)) {
            fclose(f);
            f = NULL;
            continue;
        }
        if (over) {
            bool more = false;
            if (f && stat(path, &sb) == 0)
                more = sb.st_size > pos;
            if (!more)
                break;
            continue;
        }
        for (int i = 0; i < 3 && !interrupted; i++)
            nap(100);
        if (interrupted) {
            if (f)
                fclose(f);
            return 130;
        }
    }
    if (f)
        fclose(f);
    return 0;
}
