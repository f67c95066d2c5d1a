/* store.c - see store.h for the invariants and the branch lifecycle. */
#include "daemon/store.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/errtext.h"
#include "proto/layout.h"
#include "proto/limits.h"

#include "daemon/store_int.h"

static void acct_put(acct_t *a)
{
    if (atomic_fetch_sub_explicit(&a->holders, 1, memory_order_acq_rel) == 1)
        mlt_free(a);
}

/* ---- chunks ---------------------------------------------------------------- */

static float *chunk_data(mlt_chunk_t *c)
{
    return (float *)((char *)c + CHUNK_HDR);
}

uint64_t mlt_store_chunk_bytes(const mlt_store_t *st, uint32_t floats)
{
    return CHUNK_HDR + (uint64_t)floats * sizeof(float) * (1 + st->state_arrays);
}

/* New zeroed chunk with one reference, or NULL. */
mlt_chunk_t *mlt_store__chunk_new(mlt_store_t *st, uint32_t n)
{
    uint64_t bytes = mlt_store_chunk_bytes(st, n);
    mlt_chunk_t *c = mlt_try_aligned(bytes);
    if (!c)
        return NULL;
    memset(c, 0, bytes);
    atomic_init(&c->refs, 1);
    c->branch_refs = 1;
    c->n = n;
    c->state_arrays = st->state_arrays;
    c->bytes = bytes;
    c->acct = st->acct;
    atomic_fetch_add(&st->acct->holders, 1);
    atomic_fetch_add(&st->acct->allocated, bytes);
    return c;
}

static void chunk_unref(mlt_chunk_t *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
        acct_t *a = c->acct;
        atomic_fetch_sub(&a->allocated, c->bytes);
        mlt_free(c);
        acct_put(a);
    }
}

void mlt_chunk_release(void *data, void *hint)
{
    (void)data;
    chunk_unref(hint);
}

/* Drops a branch's reference. */
void mlt_store__chunk_drop(mlt_chunk_t *c)
{
    assert(c->branch_refs > 0);
    c->branch_refs--;
    chunk_unref(c);
}

/* Makes *slot private to its branch, copying it if anyone else holds it.
 * 0 or -ENOMEM (slot unchanged). */
static int chunk_make_private(mlt_store_t *st, mlt_chunk_t **slot)
{
    mlt_chunk_t *c = *slot;
    if (atomic_load_explicit(&c->refs, memory_order_acquire) == 1)
        return 0;
    mlt_chunk_t *copy = mlt_try_aligned(c->bytes);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, c, c->bytes);
    atomic_init(&copy->refs, 1);
    copy->branch_refs = 1;
    atomic_fetch_add(&st->acct->holders, 1);
    atomic_fetch_add(&st->acct->allocated, copy->bytes);
    *slot = copy;
    mlt_store__chunk_drop(c);
    return 0;
}

/* ---- job ------------------------------------------------------------------- */

mlt_store_t *mlt_store_new(uint32_t chunk_floats, uint64_t memory_limit)
{
    if (chunk_floats == 0 || chunk_floats > MLT_MAX_CHUNK_BYTES / sizeof(float)) {
        errno = EINVAL;
        return NULL;
    }
    mlt_store_t *st = mlt_calloc(1, sizeof *st);
    st->chunk_floats = chunk_floats;
    st->limit = memory_limit;
    st->acct = mlt_calloc(1, sizeof *st->acct);
    atomic_init(&st->acct->allocated, 0);
    atomic_init(&st->acct->holders, 1);
    st->branches = mlt_calloc(MLT_MAX_BRANCHES, sizeof *st->branches);
    return st;
}

void mlt_store_destroy(mlt_store_t **sp)
{
    if (!sp || !*sp)
        return;
    mlt_store_end_job(*sp);
    mlt_free((*sp)->branches);
    acct_put((*sp)->acct);
    mlt_free(*sp);
    *sp = NULL;
}

static bool same_job(const mlt_store_t *st, const mlt_store_job_t *job)
{
    if (strcmp(st->job, job->name) != 0 || st->n_workers != job->n_workers ||
        st->rule != job->rule || st->average != job->average || st->n_tables != job->n_tables)
        return false;
    for (uint32_t i = 0; i < job->n_tables; i++)
        if (strcmp(st->tables[i].name, job->tables[i].name) != 0 ||
            st->tables[i].size != job->tables[i].size)
            return false;
    return true;
}

int mlt_store_set_job(mlt_store_t *st, const char *name, uint32_t n_workers, mlt_rule_t rule,
                      const mlt_table_spec_t *tables, uint32_t n_tables, uint32_t rank,
                      uint32_t n_servers, char *err, size_t errlen)
{
    const mlt_store_job_t job = {name, n_workers, rule, false, tables, n_tables, rank, n_servers};
    return mlt_store_set_job_spec(st, &job, err, errlen);
}

int mlt_store_set_job_spec(mlt_store_t *st, const mlt_store_job_t *job, char *err, size_t errlen)
{
    const char *name = job->name;
    const mlt_rule_t rule = job->rule;
    const mlt_table_spec_t *tables = job->tables;
    const uint32_t n_tables = job->n_tables, rank = job->rank, n_servers = job->n_servers;
    if (st->job) {
        if (same_job(st, job))
            return 0;
        return mlt_errf(-EBUSY, err, errlen,
                        "this daemon serves job '%s'; end it before registering '%s' "
                        "(or register the same spec)",
                        st->job, name);
    }
    if (!mlt_rule_name(rule))
        return mlt_errf(-EINVAL, err, errlen, "unknown update rule %d", (int)rule);
    if (mlt_optim_state_floats(rule, job->average) == 0)
        return mlt_errf(-EINVAL, err, errlen,
                        "update rule %s cannot keep a weight average (update.average: sgd and "
                        "nesterov only; the schedule-free rules always do)",
                        mlt_rule_name(rule));
    if (n_servers == 0 || rank >= n_servers)
        return mlt_errf(-EINVAL, err, errlen, "rank %u of %u servers", rank, n_servers);
    /* Everything the job costs on this shard is known from the table sizes in
     * closed form: O(tables), never O(chunks), so a REGISTER at the limits
     * (4096 tables of 2^34 floats) is answered at once, and one whose single
     * branch cannot fit memory_limit is refused before anything is allocated. */
    const uint32_t state_arrays = (uint32_t)mlt_optim_state_floats(rule, job->average);
    uint64_t g = 0;
    for (uint32_t i = 0; i < n_tables; i++)
        g += mlt_layout_chunks(tables[i].size, st->chunk_floats);
    uint64_t lo, hi, n_owned = 0, owned_floats = 0, tfirst = 0;
    mlt_layout_shard_range(g, n_servers, rank, &lo, &hi);
    for (uint32_t i = 0; i < n_tables; i++) {
        uint64_t n_chunks = mlt_layout_chunks(tables[i].size, st->chunk_floats), first, count;
        mlt_layout_table_part(tfirst, n_chunks, lo, hi, &first, &count);
        n_owned += count;
        owned_floats += count * st->chunk_floats;
        if (count && first + count == n_chunks) /* the table's last chunk may be short */
            owned_floats -= n_chunks * st->chunk_floats - tables[i].size;
        tfirst += n_chunks;
    }
    const uint64_t branch_bytes =
        n_owned * CHUNK_HDR + owned_floats * sizeof(float) * (1 + (uint64_t)state_arrays);
    if (branch_bytes > st->limit)
        return mlt_errf(-ENOMEM, err, errlen,
                        "job '%s' needs %llu bytes per branch on shard %u (%llu chunks of its "
                        "%u tables), more than memory_limit %llu: not one branch would fit",
                        name, (unsigned long long)branch_bytes, rank, (unsigned long long)n_owned,
                        n_tables, (unsigned long long)st->limit);
    st->tables = mlt_calloc(n_tables, sizeof *st->tables);
    g = 0;
    for (uint32_t i = 0; i < n_tables; i++) {
        st->tables[i].name = mlt_strdup(tables[i].name);
        st->tables[i].size = tables[i].size;
        st->tables[i].n_chunks = mlt_layout_chunks(tables[i].size, st->chunk_floats);
        st->tables[i].gfirst = g;
        g += st->tables[i].n_chunks;
    }
    st->state_arrays = state_arrays;
    st->n_owned = 0;
    for (uint32_t i = 0; i < n_tables; i++) {
        table_t *t = &st->tables[i];
        mlt_layout_table_part(t->gfirst, t->n_chunks, lo, hi, &t->own_first, &t->own_count);
        t->slot0 = st->n_owned;
        st->n_owned += t->own_count;
    }
    assert(st->n_owned == n_owned);
    st->branch_bytes = branch_bytes;
    st->job = mlt_strdup(name);
    st->n_workers = job->n_workers;
    st->rule = rule;
    st->average = job->average;
    st->x_array = mlt_optim_average_array(rule, job->average);
    st->n_tables = n_tables;
    return 0;
}

void mlt_store__branch_destroy(mlt_branch_t *b, uint64_t n_owned)
{
    for (uint64_t i = 0; i < n_owned; i++)
        if (b->chunks[i])
            mlt_store__chunk_drop(b->chunks[i]);
    mlt_free(b->chunks);
    mlt_free(b->clocks);
    mlt_free(b->out);
    mlt_free(b);
}

void mlt_store_end_job(mlt_store_t *st)
{
    for (uint32_t i = 0; i < st->n_branches; i++)
        mlt_store__branch_destroy(st->branches[i], st->n_owned);
    st->n_branches = 0;
    st->potential = 0;
    for (uint32_t i = 0; i < st->n_tables; i++)
        mlt_free(st->tables[i].name);
    mlt_free(st->tables);
    st->tables = NULL;
    st->n_tables = 0;
    st->n_owned = 0;
    mlt_free(st->job);
    st->job = NULL;
    memset(st->gone, 0, sizeof st->gone);
}

const char *mlt_store_job(const mlt_store_t *st)
{
    return st->job;
}

uint32_t mlt_store_n_workers(const mlt_store_t *st)
{
    return st->n_workers;
}

uint32_t mlt_store_n_tables(const mlt_store_t *st)
{
    return st->n_tables;
}

int mlt_store_check_range(const mlt_store_t *st, uint32_t table, uint32_t first, uint32_t count,
                          char *err, size_t errlen)
{
    if (!st->job)
        return mlt_errf(-ENOENT, err, errlen, "no job is registered");
    if (table >= st->n_tables)
        return mlt_errf(-ENOENT, err, errlen, "unknown table %u (job '%s' has %u)", table, st->job,
                        st->n_tables);
    const table_t *t = &st->tables[table];
    uint64_t end = (uint64_t)first + count;
    if (count == 0 || end > t->n_chunks)
        return mlt_errf(-ERANGE, err, errlen,
                        "chunks [%u, %llu) out of range for table '%s' (%llu chunks)", first,
                        (unsigned long long)end, t->name, (unsigned long long)t->n_chunks);
    if (first < t->own_first || end > t->own_first + t->own_count)
        return mlt_errf(
            -ERANGE, err, errlen,
            "chunks [%u, %llu) of table '%s' are not on this shard (it holds [%llu, %llu))", first,
            (unsigned long long)end, t->name, (unsigned long long)t->own_first,
            (unsigned long long)(t->own_first + t->own_count));
    return 0;
}

uint32_t mlt_store_chunk_len(const mlt_store_t *st, uint32_t table, uint32_t k)
{
    const table_t *t = &st->tables[table];
    uint64_t start = (uint64_t)k * st->chunk_floats;
    uint64_t left = t->size - start;
    return (uint32_t)(left < st->chunk_floats ? left : st->chunk_floats);
}

void mlt_store_own_range(const mlt_store_t *st, uint32_t table, uint32_t *first, uint32_t *count)
{
    const table_t *t = &st->tables[table];
    *first = (uint32_t)t->own_first;
    *count = (uint32_t)t->own_count;
}

/* ---- branches -------------------------------------------------------------- */

mlt_branch_t *mlt_store_branch(mlt_store_t *st, uint32_t id)
{
    for (uint32_t i = 0; i < st->n_branches; i++)
        if (st->branches[i]->id == id)
            return st->branches[i];
    return NULL;
}

mlt_branch_t *mlt_store_branch_at(mlt_store_t *st, uint32_t i)
{
    return i < st->n_branches ? st->branches[i] : NULL;
}

uint32_t mlt_store_n_branches(const mlt_store_t *st)
{
    return st->n_branches;
}

/* Checks a new branch may be added; 0 or -errno with a message. */
static int branch_admit(const mlt_store_t *st, uint32_t id, char *err, size_t errlen)
{
    if (!st->job)
        return mlt_errf(-ENOENT, err, errlen, "no job is registered");
    if (mlt_store_branch((mlt_store_t *)st, id))
        return mlt_errf(-EEXIST, err, errlen, "branch %u already exists", id);
    if (st->n_branches >= MLT_MAX_BRANCHES)
        return mlt_errf(-ENOSPC, err, errlen, "%u branches are live, the limit", MLT_MAX_BRANCHES);
    if (st->potential + st->branch_bytes > st->limit)
        return mlt_errf(-ENOMEM, err, errlen,
                        "branch %u would raise branch memory to %llu bytes: memory_limit %llu "
                        "holds %llu branches of this job's %llu bytes on this shard; %u are live",
                        id, (unsigned long long)(st->potential + st->branch_bytes),
                        (unsigned long long)st->limit,
                        (unsigned long long)(st->limit / st->branch_bytes),
                        (unsigned long long)st->branch_bytes, st->n_branches);
    return 0;
}

mlt_branch_t *mlt_store__branch_new(const mlt_store_t *st, uint32_t id, int64_t parent,
                                    mlt_branch_kind_t kind, const mlt_tunables_t *t)
{
    mlt_branch_t *b = mlt_calloc(1, sizeof *b);
    b->id = id;
    b->parent = parent;
    b->kind = kind;
    b->t = *t;
    b->n_workers = st->n_workers;
    b->clocks = mlt_calloc(st->n_workers, sizeof *b->clocks);
    b->out = mlt_calloc(st->n_workers ? st->n_workers : 1, 1);
    for (uint32_t w = 0; w < st->n_workers; w++)
        b->out[w] = mlt_store_worker_gone(st, w);
    b->chunks = mlt_try_calloc(st->n_owned ? st->n_owned : 1, sizeof *b->chunks);
    if (!b->chunks) {
        mlt_free(b->out);
        mlt_free(b->clocks);
        mlt_free(b);
        return NULL;
    }
    return b;
}

void mlt_store__branch_add(mlt_store_t *st, mlt_branch_t *b)
{
    st->branches[st->n_branches++] = b;
    st->potential += st->branch_bytes;
}

int mlt_store_create(mlt_store_t *st, uint32_t id, mlt_branch_kind_t kind, const mlt_tunables_t *t,
                     char *err, size_t errlen)
{
    int rc = branch_admit(st, id, err, errlen);
    if (rc)
        return rc;
    mlt_branch_t *b = mlt_store__branch_new(st, id, -1, kind, t);
    if (!b)
        goto fail_oom;
    for (uint32_t ti = 0; ti < st->n_tables; ti++) {
        const table_t *tb = &st->tables[ti];
        for (uint64_t k = 0; k < tb->own_count; k++) {
            uint32_t len = mlt_store_chunk_len(st, ti, (uint32_t)(tb->own_first + k));
            if (!(b->chunks[tb->slot0 + k] = mlt_store__chunk_new(st, len)))
                goto fail_branch;
        }
    }
    mlt_store__branch_add(st, b);
    return 0;
fail_branch:
    mlt_store__branch_destroy(b, st->n_owned);
fail_oom:
    return mlt_errf(-ENOMEM, err, errlen, "out of memory creating branch %u", id);
}

int mlt_store_fork(mlt_store_t *st, uint32_t child, uint32_t parent, mlt_branch_kind_t kind,
                   const mlt_tunables_t *t, char *err, size_t errlen)
{
    mlt_branch_t *p = mlt_store_branch(st, parent);
    if (!p)
        return mlt_errf(-ENOENT, err, errlen, "unknown parent branch %u", parent);
    int rc = branch_admit(st, child, err, errlen);
    if (rc)
        return rc;
    mlt_branch_t *b = mlt_store__branch_new(st, child, parent, kind, t);
    if (!b)
        return mlt_errf(-ENOMEM, err, errlen, "out of memory forking branch %u", child);
    for (uint64_t i = 0; i < st->n_owned; i++) {
        mlt_chunk_t *c = p->chunks[i];
        c->branch_refs++;
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        b->chunks[i] = c;
    }
    b->diverged = p->diverged;
    mlt_store__branch_add(st, b);
    return 0;
}

mlt_branch_kind_t mlt_store_branch_kind(const mlt_branch_t *b)
{
    return b->kind;
}

int mlt_store_free(mlt_store_t *st, uint32_t id)
{
    for (uint32_t i = 0; i < st->n_branches; i++) {
        if (st->branches[i]->id != id)
            continue;
        mlt_store__branch_destroy(st->branches[i], st->n_owned);
        st->branches[i] = st->branches[--st->n_branches];
        st->potential -= st->branch_bytes;
        return 0;
    }
    return -ENOENT;
}

uint32_t mlt_store_branch_id(const mlt_branch_t *b)
{
    return b->id;
}

const mlt_tunables_t *mlt_store_branch_tunables(const mlt_branch_t *b)
{
    return &b->t;
}

void mlt_store_branch_set_tunables(mlt_branch_t *b, const mlt_tunables_t *t)
{
    b->t = *t;
}

bool mlt_store_branch_diverged(const mlt_branch_t *b)
{
    return b->diverged;
}

void mlt_store_branch_set_diverged(mlt_branch_t *b)
{
    b->diverged = true;
}

int64_t mlt_store_branch_min_clock(const mlt_branch_t *b)
{
    int64_t m = INT64_MAX, any = INT64_MIN;
    for (uint32_t w = 0; w < b->n_workers; w++) {
        if (b->clocks[w] > any)
            any = b->clocks[w];
        if (!b->out[w] && b->clocks[w] < m)
            m = b->clocks[w];
    }
    /* every worker out: nobody to wait for (and nobody pulling) */
    if (m == INT64_MAX)
        return any == INT64_MIN ? 0 : any;
    return m;
}

uint32_t mlt_store_branch_slowest(const mlt_branch_t *b)
{
    uint32_t s = 0;
    for (uint32_t w = 0; w < b->n_workers; w++)
        if (!b->out[w] && (b->out[s] || b->clocks[w] < b->clocks[s]))
            s = w;
    return s;
}

int mlt_store_branch_clock(mlt_branch_t *b, uint32_t worker, int64_t clock, int64_t *min_clock)
{
    if (worker >= b->n_workers)
        return -ERANGE;
    if (clock < b->clocks[worker]) {
        if (!b->out[worker])
            return -EINVAL;
        /* back below the clock its lost connection reached (a replacement
         * resumes from the last clock the coordinator heard of): it catches
         * up out of min_clock, whose value never goes back */
        b->out[worker] = OUT_CATCHING_UP;
    } else {
        b->clocks[worker] = clock;
        b->out[worker] = 0;
    }
    *min_clock = mlt_store_branch_min_clock(b);
    return 0;
}

void mlt_store_branch_enter(mlt_branch_t *b, uint32_t worker, int64_t clock)
{
    if (worker >= b->n_workers || !b->out[worker])
        return;
    if (clock >= b->clocks[worker]) {
        b->clocks[worker] = clock;
        b->out[worker] = 0;
    } else {
        b->out[worker] = OUT_CATCHING_UP; /* see mlt_store_branch_clock */
    }
}

bool mlt_store_worker_gone(const mlt_store_t *st, uint32_t worker)
{
    return worker < MLT_MAX_WORKERS && (st->gone[worker / 8] >> (worker % 8) & 1);
}

int mlt_store_set_worker_gone(mlt_store_t *st, uint32_t worker, bool gone)
{
    if (!st->job || worker >= st->n_workers)
        return -ERANGE;
    if (gone) {
        st->gone[worker / 8] |= (uint8_t)(1u << (worker % 8));
        for (uint32_t i = 0; i < st->n_branches; i++)
            st->branches[i]->out[worker] = 1;
    } else {
        st->gone[worker / 8] &= (uint8_t)~(1u << (worker % 8));
    }
    return 0;
}

void mlt_store_branch_info(const mlt_store_t *st, const mlt_branch_t *b, mlt_branch_info_t *out)
{
    memset(out, 0, sizeof *out);
    out->id = b->id;
    out->parent = b->parent;
    out->kind = b->kind;
    out->tunables = b->t;
    out->min_clock = mlt_store_branch_min_clock(b);
    out->diverged = b->diverged;
    for (uint64_t i = 0; i < st->n_owned; i++) {
        const mlt_chunk_t *c = b->chunks[i];
        if (c->branch_refs == 1)
            out->owned_bytes += c->bytes;
        else
            out->shared_bytes += c->bytes;
    }
}

/* ---- data ------------------------------------------------------------------ */

static mlt_chunk_t **slot_of(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k)
{
    const table_t *t = &st->tables[table];
    assert(k >= t->own_first && k < t->own_first + t->own_count);
    return &b->chunks[t->slot0 + (k - t->own_first)];
}

int mlt_store_apply(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k, const float *g)
{
    mlt_chunk_t **slot = slot_of(st, b, table, k);
    if (chunk_make_private(st, slot))
        return -ENOMEM;
    mlt_chunk_t *c = *slot;
    float *w = chunk_data(c);
    mlt_optim_update(st->rule, st->average, &b->t.h, w, w + c->n, g, c->n, &c->sc);
    if (!mlt_all_finite(w, c->n))
        b->diverged = true; /* finite gradients, but the step overflowed */
    return 0;
}

int mlt_store_write(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k, const float *v)
{
    mlt_chunk_t **slot = slot_of(st, b, table, k);
    if (chunk_make_private(st, slot))
        return -ENOMEM;
    mlt_chunk_t *c = *slot;
    float *w = chunk_data(c);
    memcpy(w, v, (size_t)c->n * sizeof(float));
    mlt_optim_restart(st->rule, st->average, w, w + c->n, c->n, &c->sc);
    return 0;
}

/* The one place that decides what a pull of b reads from c (store.h): the
 * average x for a TEST or EVAL branch under a rule that keeps one, else the
 * parameters y. */
static const float *chunk_read(const mlt_store_t *st, const mlt_branch_t *b, mlt_chunk_t *c)
{
    const float *params = chunk_data(c);
    if (st->x_array >= 0 && (b->kind == MLT_BRANCH_TEST || b->kind == MLT_BRANCH_EVAL))
        return params + (size_t)(1 + st->x_array) * c->n; /* state array x_array */
    return params;
}

mlt_chunk_t *mlt_store_chunk_get(mlt_store_t *st, mlt_branch_t *b, uint32_t table, uint32_t k,
                                 const float **data)
{
    mlt_chunk_t *c = *slot_of(st, b, table, k);
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    *data = chunk_read(st, b, c);
    return c;
}

uint64_t mlt_store_allocated(const mlt_store_t *st)
{
    return atomic_load(&st->acct->allocated);
}

uint64_t mlt_store_potential(const mlt_store_t *st)
{
    return st->potential;
}

uint64_t mlt_store_branch_bytes(const mlt_store_t *st)
{
    return st->job ? st->branch_bytes : 0;
}

uint64_t mlt_store_limit(const mlt_store_t *st)
{
    return st->limit;
}

uint32_t mlt_store_chunk_floats(const mlt_store_t *st)
{
    return st->chunk_floats;
}
