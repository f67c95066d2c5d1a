/* coord_out.c - the job's output files: progress.jsonl (mlt_coord__line, _emit),
 * decisions.jsonl and job.conf, opened under state_dir without following links
 * and checked after every step (mlt_coord__check_outputs); the warm start read
 * at the start of a job and written at its end. Part of the coordinator (see
 * coord_int.h); coord.c runs the job. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/outfile.h"
#include "common/safepath.h"
#include "common/timeutil.h"
#include "daemon/coord_int.h"
#include "tuner/declog.h"
#include "tuner/warm.h"

/* ---- output ------------------------------------------------------------------ */

double mlt_coord__job_time(const mlt_coord_t *c)
{
    return mlt_time_mono() - c->t0;
}

void mlt_coord__line(const mlt_coord_t *c, mlt_json_t *j, const char *event)
{
    mlt_json_begin(j);
    mlt_json_fixed(j, "t", mlt_coord__job_time(c), 3);
    mlt_json_str(j, "event", event);
}

void mlt_coord__emit(mlt_coord_t *c, mlt_json_t *j)
{
    if (!c->progress || mlt_outfile_error(c->progress)) {
        /* after a failed write the file ends there; check_outputs fails the job */
        mlt_json_free(j);
        return;
    }
    FILE *f = mlt_outfile_stream(c->progress);
    fputs(mlt_json_text(j), f);
    fputc('\n', f);
    mlt_outfile_flush(c->progress); /* a failed write is kept there (outfile.h) */
    mlt_json_free(j);
}

static int mkdir_p(const char *path);

/* state_dir, made when missing (it is the administrator's path: links in it
 * are followed); an O_DIRECTORY descriptor or -errno. */
static int open_state_dir(const mlt_coord_t *c)
{
    int rc = mkdir_p(c->state_dir);
    if (rc < 0)
        return rc;
    int fd = open(c->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int mkdir_p(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ---- warm start ---------------------------------------------------------------- *
 * After a tuned job, its first search's winner goes to <output>/warm-start.conf
 * and to <state_dir>/warm-start/<job name>.conf; a job with tuner.warm_start
 * "auto" reads the latter, one with a path reads that. What was used, or why
 * not, is the decision log's first line. */

static void warm_auto_path(const mlt_coord_t *c, char *path, size_t cap)
{
    snprintf(path, cap, "%s/warm-start/%s.conf", c->state_dir, c->job.name);
}

void mlt_coord__warm_load(mlt_coord_t *c, FILE *dlog, mlt_warm_t *w)
{
    const char *ws = c->job.tuner.warm_start;
    char path[1100], err[600] = "";
    memset(w, 0, sizeof *w);
    if (c->job.tuner.logic != MLT_LOGIC_MLTUNER || !ws || !*ws)
        return;
    if (strcmp(ws, "auto") == 0)
        warm_auto_path(c, path, sizeof path);
    else if (ws[0] == '/')
        snprintf(path, sizeof path, "%s", ws);
    else
        snprintf(path, sizeof path, "%s/%s", c->state_dir, ws);
    int rc = mlt_warm_read(path, &c->job, w, err, sizeof err);
    if (rc == -ENOENT && strcmp(ws, "auto") == 0)
        return; /* the first job of this model here */
    if (rc) {
        log_warn("job '%s': no warm start: %s", c->job.name, err);
    } else {
        log_info("job '%s': warm start from %s", c->job.name, path);
    }
    mlt_json_t j;
    mlt_declog_begin(&j, 0.0, "warm_start", 0);
    mlt_json_bool(&j, "used", rc == 0);
    mlt_json_str(&j, rc ? "reason" : "from", rc ? err : path);
    mlt_declog_end(&j, dlog);
}

/* Writes the warm start to the job's output directory and to
 * state_dir/warm-start/<name>.conf, neither through a symbolic link. Returns
 * 0, or -1 when a write failed (the job has failed). */
int mlt_coord__warm_save(mlt_coord_t *c, const mlt_warm_t *w)
{
    char name[300], err[600];
    if (!w->have)
        return 0;
    int rc = mlt_warm_write(c->out_fd, MLT_WARM_FILE, &c->job, w, err, sizeof err);
    if (rc)
        return mlt_coord__fail_job(c, "cannot write %s/%s: %s", c->out_dir, MLT_WARM_FILE,
                                   mlt_safepath_strerror(rc));
    int sfd = open_state_dir(c);
    int wfd = sfd < 0 ? sfd : mlt_safepath_mkdirs(sfd, "warm-start");
    if (sfd >= 0)
        close(sfd);
    if (wfd < 0)
        return mlt_coord__fail_job(c, "cannot create %s/warm-start: %s", c->state_dir,
                                   mlt_safepath_strerror(wfd));
    snprintf(name, sizeof name, "%s.conf", c->job.name);
    rc = mlt_warm_write(wfd, name, &c->job, w, err, sizeof err);
    close(wfd);
    if (rc)
        return mlt_coord__fail_job(c, "cannot write %s/warm-start/%s: %s", c->state_dir, name,
                                   mlt_safepath_strerror(rc));
    return 0;
}

/* Fails the job (returns -1) when a write to one of its output files failed;
 * 0 when they are whole so far. The first failure names the job's end. */
int mlt_coord__check_outputs(mlt_coord_t *c)
{
    mlt_outfile_t *const outs[] = {c->progress, c->dlog};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        int rc = outs[i] ? mlt_outfile_error(outs[i]) : 0;
        if (rc && c->phase == PH_FAILED)
            return -1;
        if (rc)
            return mlt_coord__fail_job(c, "cannot write %s/%s: %s", c->out_dir,
                                       mlt_outfile_name(outs[i]), strerror(-rc));
    }
    return 0;
}

/* Makes the job's output directory under state_dir (c->out_rel, checked at
 * submit) and creates its files there: progress.jsonl, decisions.jsonl and
 * job.conf (written whole), none through a symbolic link or into another
 * kind of file. ppos, dpos: the bytes of progress.jsonl and decisions.jsonl
 * that stay (0 for a new job; a checkpoint's positions for a resumed one;
 * UINT64_MAX: all). Returns 0, or -1 (the job has failed, naming the file). */
int mlt_coord__open_outputs(mlt_coord_t *c, uint64_t ppos, uint64_t dpos)
{
    int sfd = open_state_dir(c);
    if (sfd < 0)
        return mlt_coord__fail_job(c, "cannot open state_dir %s: %s", c->state_dir, strerror(-sfd));
    c->out_fd = mlt_safepath_mkdirs(sfd, c->out_rel);
    close(sfd);
    if (c->out_fd < 0) {
        int rc = c->out_fd;
        c->out_fd = -1;
        return mlt_coord__fail_job(c, "cannot create output directory %s: %s", c->out_dir,
                                   mlt_safepath_strerror(rc));
    }
    static const char *const names[] = {"progress.jsonl", "decisions.jsonl", "job.conf"};
    mlt_outfile_t *o[3] = {NULL, NULL, NULL};
    int rc = 0;
    size_t i;
    const uint64_t keep[] = {ppos, dpos, 0};
    for (i = 0; i < 3 && !rc; i++)
        o[i] = mlt_outfile_reopen(c->out_fd, names[i], keep[i], &rc);
    c->progress = o[0];
    c->dlog = o[1];
    if (rc) /* a link, another kind of file, or no permission */
        return mlt_coord__fail_job(c, "cannot write %s/%s: %s", c->out_dir, names[i - 1],
                                   mlt_safepath_strerror(rc));
    fputs(c->job.text, mlt_outfile_stream(o[2]));
    if ((rc = mlt_outfile_close(&o[2])))
        return mlt_coord__fail_job(c, "cannot write %s/job.conf: %s", c->out_dir, strerror(-rc));
    return 0;
}
