/* client_ckpt.c - libmltuner's checkpoint requests (CKPT_SAVE, CKPT_LOAD):
 * one shard at a time, waited for. See mltuner.h. */
#include <errno.h>
#include <string.h>

#include "client/client_int.h"
#include "client/mltuner.h"

static int ckpt_request(mlt_client_t *c, uint32_t server, Mlt__MsgType type, const char *job,
                        uint64_t seq, uint64_t keep, uint64_t *size, uint32_t *crc)
{
    if (server >= c->n)
        return mlt_client__err(c, -EINVAL, "server %u: the client knows %u", server, c->n);
    mlt_header_t h;
    pending_t *p = mlt_client__pending(c, server, P_CKPT);
    p->ck_size = type == MLT__MSG_TYPE__MSG_CKPT_SAVE ? size : NULL;
    p->ck_crc = type == MLT__MSG_TYPE__MSG_CKPT_SAVE ? crc : NULL;
    mlt_client__header(c, &h, type, p);
    h.ckpt_job = (char *)job;
    h.has_ckpt_seq = 1;
    h.ckpt_seq = seq;
    if (type == MLT__MSG_TYPE__MSG_CKPT_SAVE) {
        h.has_ckpt_keep = 1;
        h.ckpt_keep = keep;
    } else {
        h.has_ckpt_size = h.has_ckpt_crc = 1;
        h.ckpt_size = *size;
        h.ckpt_crc = *crc;
    }
    int rc = mlt_client__send(c, server, &h);
    if (rc < 0)
        return rc;
    return mlt_client__wait(c, P_CKPT);
}

int mlt_client_ckpt_save(mlt_client_t *c, uint32_t server, const char *job, uint64_t seq,
                         uint64_t keep, uint64_t *size, uint32_t *crc)
{
    *size = 0;
    *crc = 0;
    return ckpt_request(c, server, MLT__MSG_TYPE__MSG_CKPT_SAVE, job, seq, keep, size, crc);
}

int mlt_client_ckpt_load(mlt_client_t *c, uint32_t server, const char *job, uint64_t seq,
                         uint64_t size, uint32_t crc)
{
    return ckpt_request(c, server, MLT__MSG_TYPE__MSG_CKPT_LOAD, job, seq, 0, &size, &crc);
}
