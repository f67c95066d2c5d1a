/* server_ckpt.c - a shard's side of checkpoints (#12): CKPT_SAVE writes the
 * store to <state_dir>/checkpoints/<job>/<seq>/shard-<rank>.ckpt through
 * common/ckfile (temporary name, fsync, CRC, rename, directory fsync) and
 * removes this shard's checkpoints older than ckpt_keep; CKPT_LOAD verifies
 * such a file against the size and CRC the coordinator's manifest holds and
 * replaces the store by it. The coordinator sends them at a consistent point
 * (no task out, every push applied), so the write is synchronous: the
 * shard's other clients are idle meanwhile. Runs on the server thread. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/ckfile.h"
#include "common/log.h"
#include "daemon/server_int.h"
#include "daemon/ssp.h"
#include "daemon/store.h"
#include "proto/wire.h"

/* true when s may be a directory name: 1..128 of A-Z a-z 0-9 . _ -, not "."
 * or ".." (a job's name obeys this; the wire must not climb out) */
static bool safe_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MLT_MAX_NAME_LEN || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

void mlt_server__ckpt_dir(const mlt_server_t *s, const char *job, uint64_t seq, char *out,
                          size_t cap)
{
    snprintf(out, cap, "%s/checkpoints/%s/%" PRIu64, s->state_dir, job, seq);
}

/* Removes this shard's files of job's checkpoints other than `newest` and the
 * newest one below it, and those numbered below keep: at most two stay,
 * whatever a client asks (a CKPT_SAVE per number must not fill the disk). */
static void prune(mlt_server_t *s, const char *job, uint64_t newest, uint64_t keep)
{
    char dir[1200], sub[1500], f[1600];
    snprintf(dir, sizeof dir, "%s/checkpoints/%s", s->state_dir, job);
    uint64_t second = 0; /* the newest below `newest` */
    for (int pass = 0; pass < 2; pass++) {
        DIR *d = opendir(dir);
        if (!d)
            return;
        struct dirent *e;
        while ((e = readdir(d))) {
            char *end;
            unsigned long long seq = strtoull(e->d_name, &end, 10);
            if (e->d_name[0] < '0' || e->d_name[0] > '9' || *end)
                continue;
            if (pass == 0) {
                if (seq < newest && seq > second)
                    second = seq;
                continue;
            }
            if (seq == newest || (seq == second && seq >= keep))
                continue;
            /* the coordinator's files live here too when this is rank 0:
             * only this shard's file goes, and the directory if empty */
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            snprintf(f, sizeof f, "%s/shard-%u.ckpt", sub, s->rank);
            unlink(f);
            rmdir(sub);
        }
        closedir(d);
    }
}

#define MAX_HELLOS 4096u /* connections remembered */

static uint64_t id_hash(const void *id, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)id)[i]) * 1099511628211ull;
    return h;
}

void mlt_server__hello(mlt_server_t *s, const void *id, size_t len)
{
    if (!s->hellos)
        s->hellos = mlt_calloc(MAX_HELLOS, sizeof *s->hellos);
    uint64_t h = id_hash(id, len);
    for (uint32_t i = 0; i < s->n_hellos; i++)
        if (s->hellos[i] == h)
            return;
    s->hellos[s->next_hello] = h;
    s->next_hello = (s->next_hello + 1) % MAX_HELLOS;
    if (s->n_hellos < MAX_HELLOS)
        s->n_hellos++;
}

bool mlt_server__stale(const mlt_server_t *s, const void *id, size_t len)
{
    if (!s->restored)
        return false;
    uint64_t h = id_hash(id, len);
    for (uint32_t i = 0; i < s->n_hellos; i++)
        if (s->hellos[i] == h)
            return false;
    return true;
}

int mlt_server__handle_ckpt(mlt_server_t *s, req_t *rq)
{
    const mlt_header_t *h = rq->h;
    if (!h->ckpt_job || !h->has_ckpt_seq)
        return mlt_server__reply_error(s, rq, -EINVAL, "%s lacks ckpt_job/ckpt_seq",
                                       mlt_wire_type_name(h->type));
    if (!safe_name(h->ckpt_job))
        return mlt_server__reply_error(
            s, rq, -EINVAL, "ckpt_job must be 1..128 of A-Z a-z 0-9 . _ - (not . or ..)");
    if (!s->state_dir || !*s->state_dir)
        return mlt_server__reply_error(s, rq, -ENOENT, "this daemon has no state_dir");
    char dir[1200], name[64], path[1300], err[600];
    mlt_server__ckpt_dir(s, h->ckpt_job, h->ckpt_seq, dir, sizeof dir);
    snprintf(name, sizeof name, "shard-%u.ckpt", s->rank);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc;
    if (h->type == MLT__MSG_TYPE__MSG_CKPT_LOAD) {
        if (!h->has_ckpt_size || !h->has_ckpt_crc)
            return mlt_server__reply_error(s, rq, -EINVAL, "CKPT_LOAD lacks ckpt_size/ckpt_crc");
        mlt_ckr_t *r = mlt_ckr_open(path, h->ckpt_size, h->ckpt_crc, err, sizeof err);
        if (!r)
            return mlt_server__reply_error(s, rq, -EPROTO, "shard %u: %s", s->rank, err);
        mlt_ssp_drop(s->parked, UINT32_MAX, mlt_server__on_dropped, s);
        rc = mlt_store_load(s->store, r, s->rank, s->n_servers, err, sizeof err);
        mlt_ckr_close(&r);
        if (rc)
            return mlt_server__reply_error(s, rq, rc, "shard %u: %s: %s", s->rank, path, err);
        /* from here on only connections that say HELLO are served (and this
         * one, the coordinator's): on a shard that was not restarted itself,
         * the old connections of a worker's task from before the coordinator
         * died are still open, and must not write onto what was restored */
        s->restored = true;
        s->n_hellos = s->next_hello = 0;
        mlt_server__hello(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
        log_info("job '%s': loaded checkpoint %s (%u branches)", h->ckpt_job, path,
                 mlt_store_n_branches(s->store));
        return mlt_server__reply_ok(s, rq, 0);
    }
    const char *job = mlt_store_job(s->store);
    if (!job || strcmp(job, h->ckpt_job) != 0)
        return mlt_server__reply_error(s, rq, -ENOENT, "shard %u serves no job '%s'", s->rank,
                                       h->ckpt_job);
    if ((rc = mlt_ckfile_mkdirs(dir)) < 0)
        return mlt_server__reply_error(s, rq, rc, "shard %u: cannot create %s: %s", s->rank, dir,
                                       strerror(-rc));
    mlt_ckw_t *w = mlt_ckw_open(dir, name, err, sizeof err);
    if (!w)
        return mlt_server__reply_error(s, rq, -EIO, "shard %u: %s", s->rank, err);
    mlt_store_save(s->store, w, s->rank, s->n_servers);
    uint64_t size = 0;
    uint32_t crc = 0;
    if ((rc = mlt_ckw_close(&w, &size, &crc, err, sizeof err)) < 0)
        return mlt_server__reply_error(s, rq, rc, "shard %u: %s", s->rank, err);
    prune(s, h->ckpt_job, h->ckpt_seq, h->has_ckpt_keep ? h->ckpt_keep : 0);
    log_debug("job '%s': checkpoint %s (%" PRIu64 " bytes)", h->ckpt_job, path, size);
    mlt_header_t r;
    mlt_wire_init(&r, MLT__MSG_TYPE__MSG_OK);
    r.has_request_id = 1;
    r.request_id = h->request_id;
    r.has_ckpt_size = r.has_ckpt_crc = 1;
    r.ckpt_size = size;
    r.ckpt_crc = crc;
    mlt_server__send_id(s, zmq_msg_data(rq->id), zmq_msg_size(rq->id));
    return mlt_wire_send(s->router, &r, 0);
}

void mlt_server__ckpt_drop(mlt_server_t *s, const char *job)
{
    if (s->state_dir && *s->state_dir && safe_name(job))
        prune(s, job, UINT64_MAX, UINT64_MAX);
}
