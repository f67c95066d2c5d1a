/* client_shm.c - libmltuner's same-host transport (see client_int.h).
 *
 * After a job's layout is known the client creates one shared-memory
 * segment (a sealed memfd the shards map, named /proc/<pid>/fd/<fd>, else a
 * POSIX one, /mltuner-<128 random bits in hex>, mode 0600; see make_segment): 64 bytes
 * whose first 8 are a random token (64 bits, not in the name), then MAX_CACHES cache
 * regions and N_STAGES push-stage regions, each holding every table (64-byte
 * aligned), allocated whole at once (at most SHM_MAX_CLIENT_BYTES). It
 * names the segment to every shard in SHM_ATTACH and unlinks the name once
 * they have answered, so nothing is left in /dev/shm by a crash
 * after that. A shard that could open it (same host, same user) from then on
 * writes pull replies into the cache region the pull names and reads pushes
 * from a stage region; one that could not (another host) answers ERROR and
 * that shard's data keeps travelling in frames. MLT_SHM=0 in the environment
 * turns the transport off.
 *
 * A stage region is reused only after every part pushed from it has been
 * acknowledged (stage_busy): the shard reads it when it serves the push, which
 * may be well after mlt_push returns on a branch with staleness > 0. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/timeutil.h"
#include "client/client_int.h"
#include "proto/layout.h"

/* Segments larger than this are not made (the cache regions alone are
 * MAX_CACHES copies of the model, and the whole segment is allocated up
 * front); such jobs keep the socket transport. */
#define SHM_MAX_CLIENT_BYTES (1ull << 30)

static uint64_t align64(uint64_t x)
{
    return (x + 63) & ~(uint64_t)63;
}

void mlt_client__shm_reply(mlt_client_t *c, const pending_t *p, const mlt_header_t *h)
{
    if (h->type == MLT__MSG_TYPE__MSG_OK && h->has_shm_handle) {
        c->shm_ok[p->shard] = true;
        c->shm_handle[p->shard] = h->shm_handle;
    } else if (h->type == MLT__MSG_TYPE__MSG_ERROR) {
        snprintf(c->shm_why, sizeof c->shm_why, "%.100s: %.500s", c->endpoints[p->shard],
                 h->error ? h->error : "error");
    }
}

void mlt_client__shm_teardown(mlt_client_t *c)
{
    bool any = false;
    for (uint32_t s = 0; s < c->n; s++)
        any = any || c->shm_ok[s];
    /* Replies still to come (a prefetch parked at a shard) may be written into
     * the segment after it is gone from here: harmless, the shard holds its
     * own descriptor until the detach, and their pendings are forgotten. */
    if (any) {
        for (uint32_t s = 0; s < c->n; s++) {
            if (!c->shm_ok[s])
                continue;
            mlt_header_t h;
            pending_t *p = mlt_client__pending(c, s, P_SHM);
            mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_SHM_DETACH, p);
            h.has_shm_handle = h.has_shm_token = 1;
            h.shm_handle = c->shm_handle[s];
            h.shm_token = c->shm_token;
            mlt_client__send(c, s, &h);
        }
        double saved = c->timeout_s;
        c->timeout_s = saved < 5 ? saved : 5; /* a shard gone away forgets it anyway */
        mlt_client__wait(c, P_SHM);
        c->timeout_s = saved;
    }
    for (size_t i = 0; i < c->n_pending; i++)
        c->pending[i].stage = -1;
    for (uint32_t s = 0; s < c->n; s++)
        c->shm_ok[s] = false;
    if (c->shm_base)
        munmap(c->shm_base, c->shm_bytes);
    c->shm_base = NULL;
    mlt_free(c->part_off);
    mlt_free(c->shard_off);
    mlt_free(c->step_table);
    mlt_free(c->step_due);
    mlt_free(c->step_pulled);
    c->step_pulled = NULL;
    mlt_free(c->step_list);
    c->part_off = c->shard_off = NULL;
    c->step_table = c->step_due = NULL;
    c->step_list = NULL;
    c->step_region = -1;
    memset(c->stage_busy, 0, sizeof c->stage_busy);
}

/* Makes the segment: a sealed memfd (mapped == true: a shard maps it, its size
 * sealed so that the mapping can never lose pages under the shard), named to
 * the shards as /proc/<pid>/fd/<fd>; or a POSIX shared-memory object named
 * /mltuner-<128 random bits in hex> (the shards pread and pwrite it). Both
 * allocated whole now: a store into a page that /dev/shm has no room for
 * would be a SIGBUS; no room here is an error, and the sockets. On success
 * c->shm_base holds the mapping, name the name, *fd the descriptor to close
 * (memfd: once the shards have opened it) or unlink the name (-1). */
static int make_segment(mlt_client_t *c, uint64_t total, bool mapped, char *name, size_t len,
                        int *fd_out)
{
    int fd = -1, err = 0;
    if (mapped) {
        fd = memfd_create("mltuner", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        snprintf(name, len, "/proc/%d/fd/%d", (int)getpid(), fd);
    } else {
        unsigned char rnd[16];
        if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
            return -errno;
        int pos = snprintf(name, len, "/mltuner-");
        for (size_t i = 0; i < sizeof rnd; i++)
            pos += snprintf(name + pos, len - (size_t)pos, "%02x", rnd[i]);
        fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    }
    void *base = MAP_FAILED;
    err = fd < 0 ? errno : 0;
    if (fd >= 0 && ftruncate(fd, (off_t)total) == 0 &&
        (err = posix_fallocate(fd, 0, (off_t)total)) == 0 &&
        (!mapped || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0))
        base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED && err == 0)
        err = errno;
    if (base == MAP_FAILED) {
        if (fd >= 0 && !mapped)
            shm_unlink(name);
        if (fd >= 0)
            close(fd);
        return -err;
    }
    if (!mapped) /* the name is what the shards open */
        close(fd);
    c->shm_base = base;
    c->shm_bytes = total;
    *fd_out = mapped ? fd : -1;
    return 0;
}

/* Names the segment to every shard; returns how many attached it. */
static uint32_t attach_all(mlt_client_t *c, const char *name)
{
    c->shm_why[0] = '\0';
    for (uint32_t s = 0; s < c->n; s++) {
        mlt_header_t h;
        pending_t *p = mlt_client__pending(c, s, P_SHM);
        mlt_client__header(c, &h, MLT__MSG_TYPE__MSG_SHM_ATTACH, p);
        h.shm_name = (char *)name;
        h.has_shm_bytes = h.has_shm_token = 1;
        h.shm_bytes = c->shm_bytes;
        h.shm_token = c->shm_token;
        if (mlt_client__send(c, s, &h) < 0)
            break;
    }
    int rc = mlt_client__wait(c, P_SHM);
    uint32_t n_ok = 0;
    for (uint32_t s = 0; s < c->n; s++)
        n_ok += c->shm_ok[s];
    if (rc < 0 && !c->shm_why[0])
        snprintf(c->shm_why, sizeof c->shm_why, "%.500s", c->err);
    return n_ok;
}

void mlt_client__shm_setup(mlt_client_t *c)
{
    if (c->shm_off) {
        snprintf(c->shm_why, sizeof c->shm_why, "sockets only (shared memory off (MLT_SHM=0))");
        return;
    }
    /* the shard-major layout (proto/layout.h): parts come shard by shard,
     * table by table, a group's pieces back to back */
    c->part_off = mlt_calloc(c->n_parts ? c->n_parts : 1, sizeof *c->part_off);
    c->shard_off = mlt_calloc(c->n, sizeof *c->shard_off);
    for (uint32_t s = 0; s < c->n; s++)
        c->shard_off[s] = UINT64_MAX;
    uint64_t off = 0;
    for (uint32_t i = 0; i < c->n_parts; i++) {
        const part_t *pt = &c->parts[i];
        if (i == 0 || pt->shard != c->parts[i - 1].shard || pt->table != c->parts[i - 1].table)
            off = mlt_layout_group_start(off);
        if (c->shard_off[pt->shard] == UINT64_MAX)
            c->shard_off[pt->shard] = off;
        c->part_off[i] = off;
        uint64_t end = (uint64_t)(pt->first + pt->count) * c->chunk_floats;
        uint64_t size = c->tables[pt->table].size;
        off += ((end < size ? end : size) - (uint64_t)pt->first * c->chunk_floats) * sizeof(float);
    }
    c->region_bytes = align64(off);
    c->step_table = mlt_calloc(c->n_tables, sizeof *c->step_table);
    c->step_list = mlt_calloc(c->n_tables, sizeof *c->step_list);
    c->step_due = mlt_calloc(c->n, sizeof *c->step_due);
    c->step_pulled = mlt_calloc(c->n, sizeof *c->step_pulled);
    c->step_region = -1;
    uint64_t total = 64 + (uint64_t)(MAX_CACHES + N_STAGES) * c->region_bytes;
    if (total > SHM_MAX_CLIENT_BYTES) {
        snprintf(c->shm_why, sizeof c->shm_why,
                 "sockets only (shared memory of %llu MiB would be over the %llu MiB cap)",
                 (unsigned long long)(total >> 20), SHM_MAX_CLIENT_BYTES >> 20);
        return;
    }
    /* The token is 64 random bits; without getrandom there is no segment. */
    uint64_t token = 0;
    if (getrandom(&token, sizeof token, 0) != sizeof token) {
        snprintf(c->shm_why, sizeof c->shm_why, "sockets only (getrandom: %s)", strerror(errno));
        return;
    }
    /* First a sealed segment the shards map (no copy through the kernel on
     * their side, #15); one no shard takes (a daemon that cannot open
     * /proc/<pid>/fd, or an older one) gives way to a POSIX one they read and
     * write with pread/pwrite. MLT_SHM_MAP=0 goes to the latter at once. */
    char name[64], why_map[sizeof c->shm_why] = "";
    uint32_t n_ok = 0;
    bool mapped = false;
    for (int pass = c->shm_map_off ? 1 : 0; pass < 2 && n_ok == 0; pass++) {
        int fd = -1;
        int rc = make_segment(c, total, pass == 0, name, sizeof name, &fd);
        if (rc < 0) {
            snprintf(c->shm_why, sizeof c->shm_why, "no shared memory: %s, %llu MiB: %s", name,
                     (unsigned long long)(total >> 20), strerror(-rc));
            continue;
        }
        c->shm_token = token;
        memcpy(c->shm_base, &token, sizeof token);
        n_ok = attach_all(c, name);
        if (fd >= 0)
            close(fd); /* the shards that took it hold their own descriptor */
        else
            shm_unlink(name);
        mapped = pass == 0;
        if (n_ok == 0) { /* no shard holds it: gone with the mapping */
            munmap(c->shm_base, c->shm_bytes);
            c->shm_base = NULL;
            if (pass == 0)
                snprintf(why_map, sizeof why_map, "%.300s", c->shm_why);
        }
    }
    if (n_ok == 0) {
        char why[sizeof c->shm_why];
        snprintf(why, sizeof why, "%s", c->shm_why);
        mlt_client__shm_teardown(c);
        snprintf(c->shm_why, sizeof c->shm_why, "sockets only (shared memory refused: %.500s)",
                 why[0] ? why : "?");
        return;
    }
    char why[sizeof c->shm_why];
    snprintf(why, sizeof why, "%s", c->shm_why);
    snprintf(c->shm_why, sizeof c->shm_why,
             "shared memory with %u of %u shards (%llu MiB, %s)%s%.300s%s%.200s", n_ok, c->n,
             (unsigned long long)(total >> 20), mapped ? "mapped by the shards" : "pread/pwrite",
             why[0] ? "; refused by " : "", why, !mapped && why_map[0] ? "; not mapped: " : "",
             why_map);
}

uint32_t mlt_client__stage_pick(mlt_client_t *c)
{
    for (uint32_t r = 0; r < N_STAGES; r++)
        if (c->stage_busy[r] == 0 && (int)r != c->step_region)
            return r;
    uint32_t r = c->stage_next;
    if ((int)r == c->step_region)
        r = (r + 1) % N_STAGES;
    c->stage_next = (r + 1) % N_STAGES;
    return r;
}

int mlt_client__stage_wait(mlt_client_t *c, uint32_t r)
{
    uint32_t *busy = &c->stage_busy[r];
    double deadline = mlt_time_mono() + c->timeout_s;
    while (*busy) {
        int rc = mlt_client__pump(c, &deadline);
        if (rc == -ETIMEDOUT)
            return mlt_client__err(c, rc,
                                   "%u pushes from shared memory not acknowledged for %.0f s",
                                   *busy, c->timeout_s);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const char *mlt_client_transport(const mlt_client_t *c)
{
    return c->shm_why[0] ? c->shm_why : "sockets";
}
