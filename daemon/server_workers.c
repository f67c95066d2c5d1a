/* server_workers.c - the coordinator's word on which workers are in the job
 * (MSG_WORKER_GONE, MSG_WORKER_BACK; see store.h, mlt_store_set_worker_gone).
 * A worker the coordinator dropped (dead, silent for worker_timeout_s, or its
 * connection replaced) leaves every branch's SSP minimum, so the pulls of the
 * others that waited for it are answered now; its own parked pulls are
 * refused (ESTALE), as are its later pulls, pushes and clocks, until it is
 * back. Runs on the server's thread, like server.c. */
#include <errno.h>
#include <stdbool.h>

#include "common/log.h"
#include "daemon/server_int.h"
#include "daemon/ssp.h"
#include "daemon/store.h"

static void on_gone(void *arg, const mlt_parked_t *p)
{
    mlt_server__send_error_to(arg, p->id, p->id_len, p->request_id, -ESTALE,
                              "this worker was dropped from the job while its pull waited");
}

int mlt_server__handle_worker(mlt_server_t *s, req_t *rq)
{
    uint32_t w = rq->h->worker;
    bool gone = rq->h->type == MLT__MSG_TYPE__MSG_WORKER_GONE;
    if (mlt_store_set_worker_gone(s->store, w, gone) < 0)
        return mlt_server__reply_error(s, rq, -ERANGE, "worker %u is outside the job's %u workers",
                                       w, mlt_store_n_workers(s->store));
    log_info("worker %u %s", w,
             gone ? "dropped from the job by the coordinator: the others no longer wait for it"
                  : "back in the job");
    if (gone) {
        mlt_ssp_drop_worker(s->parked, w, on_gone, s);
        /* without it, min_clock may have risen on every branch */
        for (uint32_t i = 0; i < mlt_store_n_branches(s->store); i++) {
            mlt_branch_t *b = mlt_store_branch_at(s->store, i);
            mlt_ssp_release(s->parked, mlt_store_branch_id(b), mlt_store_branch_min_clock(b),
                            mlt_store_branch_tunables(b)->staleness, mlt_server__on_released, s);
        }
    }
    return mlt_server__reply_ok(s, rq, 0);
}
