/* store_ckpt.c - a shard's checkpoint: the job's spec, every live branch (its
 * id, parent, kind, tunables, per-worker clocks, divergence) and its chunks,
 * a chunk shared by several branches written once, so a restored store shares
 * what the saved one shared. See store.h (mlt_store_save / mlt_store_load).
 *
 * Payload (common/ckfile.h frames it and checks its CRC):
 *   "MLTSHARD" u32 version
 *   str job, u32 n_workers, u32 rule, u8 average, u32 rank, u32 n_servers,
 *   u32 chunk_floats, u32 n_tables, n_tables x (str name, u64 size)
 *   u32 n_branches, n_branches x branch:
 *     u32 id, i64 parent, u32 kind, tunables (6 x f64, u32 warmup, u32 staleness),
 *     u8 diverged, n_workers x i64 clock,
 *     per chunk slot: u8 0 then the chunk (u32 n, u64 step, f64 lr_max,
 *     f64 weight_sum, n x (1 + state arrays) floats), or u8 1 then u32 the
 *     earlier branch (index in this file) whose slot it shares. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/ckfile.h"
#include "common/errtext.h"
#include "daemon/store.h"
#include "daemon/store_int.h"
#include "proto/limits.h"

#define SHARD_MAGIC   "MLTSHARD"
#define SHARD_VERSION 1u

static void put_tunables(mlt_ckw_t *w, const mlt_tunables_t *t)
{
    mlt_ckw_f64(w, t->h.lr);
    mlt_ckw_f64(w, t->h.momentum);
    mlt_ckw_f64(w, t->h.weight_decay);
    mlt_ckw_f64(w, t->h.beta1);
    mlt_ckw_f64(w, t->h.beta2);
    mlt_ckw_f64(w, t->h.eps);
    mlt_ckw_u32(w, t->h.warmup);
    mlt_ckw_u32(w, t->staleness);
}

static int get_tunables(mlt_ckr_t *r, mlt_tunables_t *t)
{
    double v[6];
    int rc = 0;
    for (int i = 0; i < 6; i++)
        rc |= mlt_ckr_f64(r, &v[i]);
    rc |= mlt_ckr_u32(r, &t->h.warmup);
    rc |= mlt_ckr_u32(r, &t->staleness);
    t->h.lr = (float)v[0];
    t->h.momentum = (float)v[1];
    t->h.weight_decay = (float)v[2];
    t->h.beta1 = (float)v[3];
    t->h.beta2 = (float)v[4];
    t->h.eps = (float)v[5];
    if (!rc && (t->staleness > MLT_MAX_STALENESS || t->h.warmup > MLT_MAX_WARMUP))
        rc = -EPROTO;
    return rc ? -EPROTO : 0;
}

int mlt_store_save(const mlt_store_t *st, mlt_ckw_t *w, uint32_t rank, uint32_t n_servers)
{
    if (!st->job)
        return -ENOENT;
    mlt_ckw_put(w, SHARD_MAGIC, 8);
    mlt_ckw_u32(w, SHARD_VERSION);
    mlt_ckw_str(w, st->job);
    mlt_ckw_u32(w, st->n_workers);
    mlt_ckw_u32(w, (uint32_t)st->rule);
    mlt_ckw_u8(w, st->average);
    mlt_ckw_u32(w, rank);
    mlt_ckw_u32(w, n_servers);
    mlt_ckw_u32(w, st->chunk_floats);
    mlt_ckw_u32(w, st->n_tables);
    for (uint32_t i = 0; i < st->n_tables; i++) {
        mlt_ckw_str(w, st->tables[i].name);
        mlt_ckw_u64(w, st->tables[i].size);
    }
    mlt_ckw_u32(w, st->n_branches);
    for (uint32_t bi = 0; bi < st->n_branches; bi++) {
        const mlt_branch_t *b = st->branches[bi];
        mlt_ckw_u32(w, b->id);
        mlt_ckw_i64(w, b->parent);
        mlt_ckw_u32(w, (uint32_t)b->kind);
        put_tunables(w, &b->t);
        mlt_ckw_u8(w, b->diverged);
        for (uint32_t k = 0; k < b->n_workers; k++)
            mlt_ckw_i64(w, b->clocks[k]);
        for (uint64_t s = 0; s < st->n_owned; s++) {
            const mlt_chunk_t *c = b->chunks[s];
            uint32_t same = UINT32_MAX;
            for (uint32_t j = 0; j < bi && same == UINT32_MAX; j++)
                if (st->branches[j]->chunks[s] == c)
                    same = j;
            if (same != UINT32_MAX) {
                mlt_ckw_u8(w, 1);
                mlt_ckw_u32(w, same);
                continue;
            }
            mlt_ckw_u8(w, 0);
            mlt_ckw_u32(w, c->n);
            mlt_ckw_u64(w, c->sc.step);
            mlt_ckw_f64(w, c->sc.lr_max);
            mlt_ckw_f64(w, c->sc.weight_sum);
            mlt_ckw_put(w, (const char *)c + CHUNK_HDR,
                        (size_t)c->n * sizeof(float) * (1 + c->state_arrays));
        }
    }
    return 0;
}

/* The spec part of a shard file into *job (tables allocated; free with
 * free_spec). */
typedef struct spec {
    char *name;
    uint32_t n_workers, rule, rank, n_servers, chunk_floats, n_tables;
    uint8_t average;
    mlt_table_spec_t *tables;
} spec_t;

static void free_spec(spec_t *s)
{
    for (uint32_t i = 0; s->tables && i < s->n_tables; i++)
        mlt_free((char *)s->tables[i].name);
    mlt_free(s->tables);
    mlt_free(s->name);
    memset(s, 0, sizeof *s);
}

static int read_spec(mlt_ckr_t *r, spec_t *s, char *err, size_t errlen)
{
    char magic[8];
    uint32_t version;
    memset(s, 0, sizeof *s);
    if (mlt_ckr_get(r, magic, 8) || memcmp(magic, SHARD_MAGIC, 8) != 0 || mlt_ckr_u32(r, &version))
        return mlt_errf(-EPROTO, err, errlen, "not a shard checkpoint");
    if (version != SHARD_VERSION)
        return mlt_errf(-EPROTO, err, errlen, "shard checkpoint version %u, this daemon reads %u",
                        version, SHARD_VERSION);
    if (mlt_ckr_str(r, MLT_MAX_NAME_LEN, &s->name) || mlt_ckr_u32(r, &s->n_workers) ||
        mlt_ckr_u32(r, &s->rule) || mlt_ckr_u8(r, &s->average) || mlt_ckr_u32(r, &s->rank) ||
        mlt_ckr_u32(r, &s->n_servers) || mlt_ckr_u32(r, &s->chunk_floats) ||
        mlt_ckr_u32(r, &s->n_tables))
        return mlt_errf(-EPROTO, err, errlen, "shard checkpoint: its job spec is cut");
    if (!s->name[0] || s->n_workers < 1 || s->n_workers > MLT_MAX_WORKERS ||
        s->n_tables > MLT_MAX_TABLES || s->n_servers < 1 || s->n_servers > MLT_MAX_SERVERS)
        return mlt_errf(-EPROTO, err, errlen,
                        "shard checkpoint: job spec out of range (%u workers, %u tables, %u "
                        "servers)",
                        s->n_workers, s->n_tables, s->n_servers);
    s->tables = mlt_calloc(s->n_tables ? s->n_tables : 1, sizeof *s->tables);
    for (uint32_t i = 0; i < s->n_tables; i++) {
        char *name;
        if (mlt_ckr_str(r, MLT_MAX_NAME_LEN, &name))
            return mlt_errf(-EPROTO, err, errlen, "shard checkpoint: table %u is cut", i);
        s->tables[i].name = name;
        if (mlt_ckr_u64(r, &s->tables[i].size) || s->tables[i].size == 0 ||
            s->tables[i].size > MLT_MAX_TABLE_FLOATS)
            return mlt_errf(-EPROTO, err, errlen, "shard checkpoint: table %u's size", i);
    }
    return 0;
}

/* One chunk of slot s (table ti, chunk k) of b: a new one from the file, or
 * a reference to an earlier branch's. */
static int load_slot(mlt_store_t *st, mlt_ckr_t *r, mlt_branch_t *b, uint32_t bi, uint64_t s,
                     uint32_t expect_n)
{
    uint8_t tag;
    if (mlt_ckr_u8(r, &tag))
        return -EPROTO;
    if (tag == 1) {
        uint32_t j;
        if (mlt_ckr_u32(r, &j) || j >= bi)
            return -EPROTO;
        mlt_chunk_t *c = st->branches[j]->chunks[s]; /* the store was empty: file order */
        c->branch_refs++;
        atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        b->chunks[s] = c;
        return 0;
    }
    uint32_t n;
    if (tag != 0 || mlt_ckr_u32(r, &n) || n != expect_n)
        return -EPROTO;
    mlt_chunk_t *c = mlt_store__chunk_new(st, n);
    if (!c)
        return -ENOMEM;
    b->chunks[s] = c;
    if (mlt_ckr_u64(r, &c->sc.step) || mlt_ckr_f64(r, &c->sc.lr_max) ||
        mlt_ckr_f64(r, &c->sc.weight_sum) ||
        mlt_ckr_get(r, (char *)c + CHUNK_HDR, (size_t)n * sizeof(float) * (1 + c->state_arrays)))
        return -EPROTO;
    return 0;
}

int mlt_store_load(mlt_store_t *st, mlt_ckr_t *r, uint32_t rank, uint32_t n_servers, char *err,
                   size_t errlen)
{
    spec_t sp;
    int rc = read_spec(r, &sp, err, errlen);
    if (rc)
        goto out;
    if (sp.rank != rank || sp.n_servers != n_servers || sp.chunk_floats != st->chunk_floats) {
        rc = mlt_errf(-EINVAL, err, errlen,
                      "the checkpoint is of shard %u of %u with %u-float chunks; this daemon is "
                      "shard %u of %u with %u-float chunks",
                      sp.rank, sp.n_servers, sp.chunk_floats, rank, n_servers, st->chunk_floats);
        goto out;
    }
    mlt_store_end_job(st);
    const mlt_store_job_t job = {.name = sp.name,
                                 .n_workers = sp.n_workers,
                                 .rule = (mlt_rule_t)sp.rule,
                                 .average = sp.average,
                                 .tables = sp.tables,
                                 .n_tables = sp.n_tables,
                                 .rank = rank,
                                 .n_servers = n_servers};
    if ((rc = mlt_store_set_job_spec(st, &job, err, errlen)))
        goto out;
    uint32_t nb;
    if (mlt_ckr_u32(r, &nb) || nb > MLT_MAX_BRANCHES) {
        rc = mlt_errf(-EPROTO, err, errlen, "shard checkpoint: branch count");
        goto fail;
    }
    for (uint32_t bi = 0; bi < nb; bi++) {
        uint32_t id, kind;
        int64_t parent;
        uint8_t div;
        mlt_tunables_t t;
        if (mlt_ckr_u32(r, &id) || mlt_ckr_i64(r, &parent) || mlt_ckr_u32(r, &kind) ||
            get_tunables(r, &t) || mlt_ckr_u8(r, &div) || id > MLT_MAX_BRANCH_ID ||
            kind > MLT_BRANCH_SNAPSHOT || mlt_store_branch(st, id) ||
            st->potential + st->branch_bytes > st->limit) {
            rc = mlt_errf(-EPROTO, err, errlen,
                          "shard checkpoint: branch %u of %u is bad or cut "
                          "(or over memory_limit)",
                          bi, nb);
            goto fail;
        }
        mlt_branch_t *b = mlt_store__branch_new(st, id, parent, (mlt_branch_kind_t)kind, &t);
        if (!b) {
            rc = mlt_errf(-ENOMEM, err, errlen, "out of memory loading branch %u", id);
            goto fail;
        }
        b->diverged = div;
        mlt_store__branch_add(st, b); /* from here freed with the store's branches */
        for (uint32_t k = 0; k < b->n_workers && !rc; k++)
            if (mlt_ckr_i64(r, &b->clocks[k]) || b->clocks[k] < 0 || b->clocks[k] > MLT_MAX_CLOCK)
                rc = -EPROTO;
        /* a checkpoint is taken with no task out: the workers in the job agree
         * on the branch's clock, and one lost before it (behind) comes back at
         * that clock, or its old clock would hold every pull back */
        int64_t top = 0;
        for (uint32_t k = 0; k < b->n_workers && !rc; k++)
            top = b->clocks[k] > top ? b->clocks[k] : top;
        for (uint32_t k = 0; k < b->n_workers && !rc; k++)
            b->clocks[k] = top;
        for (uint32_t ti = 0; ti < st->n_tables && !rc; ti++) {
            const table_t *tb = &st->tables[ti];
            for (uint64_t k = 0; k < tb->own_count && !rc; k++)
                rc = load_slot(st, r, b, bi, tb->slot0 + k,
                               mlt_store_chunk_len(st, ti, (uint32_t)(tb->own_first + k)));
        }
        if (rc) {
            rc = mlt_errf(rc, err, errlen, "shard checkpoint: branch %u's %s", id,
                          rc == -ENOMEM ? "chunks do not fit in memory" : "chunks are bad or cut");
            goto fail;
        }
    }
    if (mlt_ckr_left(r)) {
        rc = mlt_errf(-EPROTO, err, errlen, "shard checkpoint: %llu bytes after the last branch",
                      (unsigned long long)mlt_ckr_left(r));
        goto fail;
    }
    goto out;
fail:
    mlt_store_end_job(st); /* never half a store */
out:
    free_spec(&sp);
    return rc;
}
