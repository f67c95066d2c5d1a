/* zap.c - see zap.h.
 *
 * One thread per context polls two sockets it owns: the REP socket bound at
 * inproc://zeromq.zap.01 (requests: version, request id, domain, address,
 * routing id, mechanism, credentials; each frame bounded before use) and the
 * PAIR end of the watched sockets' monitors. It stops when `stop` is set (it
 * looks every 100 ms). Refusals are remembered in a small table (key, address,
 * last time logged) so that a peer retrying every 100 ms logs once a minute. */
#include "daemon/zap.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/timeutil.h"

#define ZAP_ENDPOINT   "inproc://zeromq.zap.01"
#define ZAP_MAX_FRAMES 8   /* frames of a request read; more are drained */
#define ZAP_MAX_FRAME  256 /* bytes of a frame kept */
#define SEEN_SLOTS     256 /* refusals remembered for rate limiting */

typedef struct {
    char who[128]; /* key (Z85) or "no CURVE", and the address */
    double logged; /* monotonic time of the last line */
} seen_t;

struct mlt_zap {
    void *rep;                      /* ZAP requests */
    void *mon;                      /* PAIR: handshake events of the watched socket */
    const mlt_curve_allow_t *allow; /* borrowed */
    char what[32];
    pthread_t thread;
    atomic_bool stop;
    seen_t seen[SEEN_SLOTS];
    unsigned long refused;
};

/* 1 when a line about who should be written now (first time, or a minute on). */
static int should_log(mlt_zap_t *z, const char *who)
{
    double now = mlt_time_mono();
    seen_t *slot = NULL;
    for (int i = 0; i < SEEN_SLOTS; i++) {
        seen_t *s = &z->seen[i];
        if (s->who[0] && strcmp(s->who, who) == 0) {
            if (now - s->logged < MLT_ZAP_LOG_INTERVAL_S)
                return 0;
            s->logged = now;
            return 1;
        }
        if (!slot || (slot->who[0] && (!s->who[0] || s->logged < slot->logged)))
            slot = s; /* an empty slot, else the one logged longest ago */
    }
    snprintf(slot->who, sizeof slot->who, "%s", who);
    slot->logged = now;
    return 1;
}

static void send_reply(void *rep, const char *rid, size_t rid_len, const char *code,
                       const char *text, const char *user)
{
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(rep, rid, rid_len, ZMQ_SNDMORE);
    zmq_send(rep, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
}

/* Printable copy of a frame (address, domain, mechanism). */
static void frame_text(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++)
        dst[n++] = src[i] >= 0x20 && src[i] < 0x7f ? src[i] : '?';
    dst[n] = '\0';
}

static void serve_request(mlt_zap_t *z)
{
    char f[ZAP_MAX_FRAMES][ZAP_MAX_FRAME];
    size_t len[ZAP_MAX_FRAMES] = {0};
    int n = 0, more = 1;
    while (more) {
        char sink[ZAP_MAX_FRAME];
        char *buf = n < ZAP_MAX_FRAMES ? f[n] : sink;
        int got = zmq_recv(z->rep, buf, ZAP_MAX_FRAME, 0);
        if (got < 0)
            return;
        if (n < ZAP_MAX_FRAMES)
            len[n] = (size_t)got < ZAP_MAX_FRAME ? (size_t)got : ZAP_MAX_FRAME;
        n++;
        int m = 0;
        size_t ml = sizeof m;
        zmq_getsockopt(z->rep, ZMQ_RCVMORE, &m, &ml);
        more = m;
    }
    if (n < 6) {
        /* not a ZAP request; REP must still answer */
        send_reply(z->rep, "", 0, "500", "malformed request", "");
        return;
    }
    char domain[64], addr[64], mech[16];
    frame_text(domain, sizeof domain, f[2], len[2]);
    frame_text(addr, sizeof addr, f[3], len[3]);
    frame_text(mech, sizeof mech, f[5], len[5]);
    if (strcmp(mech, "NULL") == 0 && strcmp(domain, MLT_ZAP_DOMAIN_LOCAL) == 0) {
        send_reply(z->rep, f[1], len[1], "200", "OK", MLT_ZAP_USER_LOCAL);
        return;
    }
    if (strcmp(mech, "NULL") == 0 && strcmp(domain, MLT_ZAP_DOMAIN_PLAIN) == 0) {
        send_reply(z->rep, f[1], len[1], "200", "OK", "");
        return;
    }
    if (strcmp(mech, "CURVE") == 0 && n >= 7 && len[6] == 32) {
        const char *name = mlt_curve_allow_find(z->allow, (const unsigned char *)f[6]);
        char z85[MLT_CURVE_Z85 + 1];
        mlt_curve_z85((const unsigned char *)f[6], z85);
        if (name) {
            char user[MLT_CURVE_MAX_NAME + 8];
            snprintf(user, sizeof user, "%s", name[0] ? name : "key");
            send_reply(z->rep, f[1], len[1], "200", "OK", user);
            return;
        }
        z->refused++;
        char who[128];
        snprintf(who, sizeof who, "%s %s", z85, addr);
        if (should_log(z, who))
            log_warn("%s: refused a peer at %s with CurveZMQ key %s: not in the allow-list "
                     "(curve_authorized_keys); it gets no reply",
                     z->what, addr, z85);
        send_reply(z->rep, f[1], len[1], "400", "key not authorised", "");
        return;
    }
    z->refused++;
    char who[128];
    snprintf(who, sizeof who, "%s %s", mech, addr);
    if (should_log(z, who))
        log_warn("%s: refused a peer at %s using mechanism %s: only authorised CurveZMQ keys "
                 "are accepted",
                 z->what, addr, mech);
    send_reply(z->rep, f[1], len[1], "400", "mechanism not accepted", "");
}

static void serve_event(mlt_zap_t *z)
{
    uint8_t ev[6];
    char ep[128];
    int got = zmq_recv(z->mon, ev, sizeof ev, 0);
    int more = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(z->mon, ZMQ_RCVMORE, &more, &ml);
    int eplen = more ? zmq_recv(z->mon, ep, sizeof ep - 1, 0) : 0;
    if (got != 6 || eplen < 0)
        return;
    ep[(size_t)eplen < sizeof ep ? (size_t)eplen : sizeof ep - 1] = '\0';
    uint16_t event;
    uint32_t value;
    memcpy(&event, ev, 2);
    memcpy(&value, ev + 2, 4);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return; /* the ZAP handler logged it, with the key */
    char who[160];
    snprintf(who, sizeof who, "event %u %u %s", event, value, ep);
    z->refused++;
    if (!should_log(z, who))
        return;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
        value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        log_warn("%s: refused a peer on %s without CurveZMQ (no key given): it gets no reply",
                 z->what, ep);
    else
        log_warn("%s: refused a peer on %s that did not complete a CurveZMQ handshake (no key, "
                 "or a wrong server key; event %#x, %#x): it gets no reply",
                 z->what, ep, event, value);
}

static void *zap_main(void *arg)
{
    mlt_zap_t *z = arg;
    while (!atomic_load(&z->stop)) {
        zmq_pollitem_t it[2] = {{.socket = z->rep, .events = ZMQ_POLLIN},
                                {.socket = z->mon, .events = ZMQ_POLLIN}};
        int n = zmq_poll(it, z->mon ? 2 : 1, 100);
        if (n < 0 && zmq_errno() != EINTR)
            break;
        if (n > 0 && (it[0].revents & ZMQ_POLLIN))
            serve_request(z);
        if (n > 0 && z->mon && (it[1].revents & ZMQ_POLLIN))
            serve_event(z);
    }
    return NULL;
}

mlt_zap_t *mlt_zap_start(void *ctx, const mlt_curve_allow_t *allow, void *watch, const char *what,
                         char *err, size_t errlen)
{
    mlt_zap_t *z = mlt_calloc(1, sizeof *z);
    z->allow = allow;
    snprintf(z->what, sizeof z->what, "%s", what);
    int zero = 0;
    z->rep = zmq_socket(ctx, ZMQ_REP);
    zmq_setsockopt(z->rep, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(z->rep, ZAP_ENDPOINT) < 0) {
        snprintf(err, errlen, "%s: cannot start the ZAP handler: %s", what,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (watch) {
        char ep[64];
        snprintf(ep, sizeof ep, "inproc://mlt-zap-monitor-%p", (void *)z);
        if (zmq_socket_monitor(watch, ep,
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                   ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) < 0) {
            snprintf(err, errlen, "%s: cannot watch handshakes: %s", what,
                     zmq_strerror(zmq_errno()));
            goto fail;
        }
        z->mon = zmq_socket(ctx, ZMQ_PAIR);
        zmq_setsockopt(z->mon, ZMQ_LINGER, &zero, sizeof zero);
        zmq_connect(z->mon, ep);
    }
    /* the sockets move to the thread; pthread_create is the memory barrier */
    int rc = pthread_create(&z->thread, NULL, zap_main, z);
    if (rc) {
        snprintf(err, errlen, "%s: cannot start the ZAP thread: %s", what, strerror(rc));
        goto fail;
    }
    return z;
fail:
    if (z->mon)
        zmq_close(z->mon);
    zmq_close(z->rep);
    mlt_free(z);
    return NULL;
}

void mlt_zap_stop(mlt_zap_t **zp)
{
    if (!zp || !*zp)
        return;
    mlt_zap_t *z = *zp;
    atomic_store(&z->stop, true);
    pthread_join(z->thread, NULL);
    zmq_close(z->rep);
    if (z->mon)
        zmq_close(z->mon);
    mlt_free(z);
    *zp = NULL;
}
