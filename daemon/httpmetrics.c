/* httpmetrics.c - see httpmetrics.h. */
#include "daemon/httpmetrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/alloc.h"
#include "common/log.h"
#include "daemon/config.h"
#include "daemon/metrics.h"
#include "daemon/shardask.h"
#include "proto/wire.h"

/* The coordinator answers a scrape within MLT_SHARD_STATUS_TIMEOUT_S plus
 * what it is doing; Prometheus's default scrape timeout is 10 s. */
#define ASK_TIMEOUT_MS 5000
/* A client that connects and sends nothing (or trickles) holds a connection
 * CONNECTION_TIMEOUT_S at most, one address at most PER_IP_CONNECTIONS of
 * MAX_CONNECTIONS, and THREADS scrapes run at once: slow or idle clients from
 * one address cannot keep a scraper elsewhere out. */
#define MAX_CONNECTIONS      64u
#define PER_IP_CONNECTIONS   8u
#define CONNECTION_TIMEOUT_S 5u
#define THREADS              4u

struct mlt_http {
    struct MHD_Daemon *mhd;
    void *ctx; /* the thread's own ZeroMQ context */
    char control[256], shard[256];
    uint32_t rank;
    bool curve;               /* ask as a CurveZMQ client with keys */
    mlt_curve_client_t keys;
};

/* One request/reply with the daemon over a fresh DEALER socket; the decoded
 * reply (caller frees), or NULL with why in err. */
static mlt_header_t *ask(mlt_http_t *h, const char *ep, Mlt__MsgType type, char *err, size_t len)
{
    void *s = zmq_socket(h->ctx, ZMQ_DEALER);
    if (!s) {
        snprintf(err, len, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    if (h->curve)
        mlt_curve_client_socket(s, &h->keys);
    mlt_header_t *r = NULL;
    mlt_header_t q;
    mlt_wire_init(&q, type);
    q.has_request_id = 1;
    q.request_id = 1;
    zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
    if (zmq_connect(s, ep) < 0 || mlt_wire_send(s, &q, 0) < 0) {
        snprintf(err, len, "cannot reach %s: %s", ep, zmq_strerror(zmq_errno()));
    } else if (zmq_poll(&it, 1, ASK_TIMEOUT_MS) <= 0) {
        snprintf(err, len, "no answer from %s within %d s", ep, ASK_TIMEOUT_MS / 1000);
    } else {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) >= 0 &&
            mlt_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &r, err, len) == 0 &&
            r->type == MLT__MSG_TYPE__MSG_ERROR) {
            snprintf(err, len, "%s answered: %s", ep, r->error ? r->error : "error");
            mlt_wire_free(&r);
        }
        zmq_msg_close(&m);
        /* a shard's reply may carry more frames: none is expected here */
    }
    zmq_close(s);
    return r;
}

/* shardask's socket setup: a CURVE client with the daemon's keys */
static void curve_setup(void *sock, const void *keys)
{
    mlt_curve_client_socket(sock, keys);
}

/* The exposition text (caller frees), or NULL with why in err. */
static char *scrape(mlt_http_t *h, char *err, size_t len)
{
    char *text = NULL;
    if (h->control[0]) {
        mlt_header_t *r = ask(h, h->control, MLT__MSG_TYPE__MSG_METRICS, err, len);
        if (r && r->text)
            text = mlt_strdup(r->text);
        else if (r)
            snprintf(err, len, "the coordinator sent no metrics text");
        mlt_wire_free(&r);
        return text;
    }
    mlt_server_status_t st;
    bool up;
    char why[1][MLT_SHARDASK_WHY_LEN];
    const char *eps[1] = {h->shard};
    mlt_shardask_status(h->ctx, eps, 1, MLT_SHARD_STATUS_TIMEOUT_S, h->curve ? curve_setup : NULL,
                        &h->keys, &st, &up, why);
    if (!up)
        mlt_log_ratelimited(MLT_LOG_WARN, "metrics-shard", 10.0, "metrics: %s", why[0]);
    text = mlt_malloc(MLT_MAX_METRICS_TEXT + 1);
    mlt_metrics_text(text, MLT_MAX_METRICS_TEXT + 1, NULL, &st, &up, 1, h->rank);
    if (up)
        mlt_server_status_free(&st);
    return text;
}

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned code, const char *type,
                               const char *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    enum MHD_Result rc = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    mlt_http_t *h = cls;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    static const char plain[] = "text/plain; charset=utf-8";
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, plain, "only GET /metrics\n");
    if (*upload_data_size) {
        *upload_data_size = 0; /* a GET body: ignored */
        return MHD_YES;
    }
    if (strcmp(url, "/") == 0)
        return respond(conn, MHD_HTTP_OK, plain, "mltunerd: Prometheus metrics at /metrics\n");
    if (strcmp(url, "/metrics") != 0)
        return respond(conn, MHD_HTTP_NOT_FOUND, plain, "not found: try /metrics\n");
    char err[512] = "";
    char *text = scrape(h, err, sizeof err);
    if (!text) {
        mlt_log_ratelimited(MLT_LOG_WARN, "metrics", 10.0, "metrics scrape failed: %s", err);
        char body[600];
        snprintf(body, sizeof body, "metrics unavailable: %s\n", err);
        return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, plain, body);
    }
    enum MHD_Result rc = respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text);
    mlt_free(text);
    return rc;
}

mlt_http_t *mlt_http_start(const char *listen, const char *control, const char *shard,
                           uint32_t rank, const mlt_curve_client_t *keys, char *err,
                           size_t errlen)
{
    char host[64];
    int port;
    if (mlt_dconf_parse_listen(listen, host, sizeof host, &port)) {
        snprintf(err, errlen, "metrics_listen \"%s\" is not HOST:PORT", listen);
        return NULL;
    }
    mlt_http_t *h = mlt_calloc(1, sizeof *h);
    snprintf(h->control, sizeof h->control, "%s", control ? control : "");
    snprintf(h->shard, sizeof h->shard, "%s", shard ? shard : "");
    h->rank = rank;
    if (keys) {
        h->curve = true;
        h->keys = *keys;
    }
    h->ctx = zmq_ctx_new();
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    h->mhd = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL, NULL, on_request, h,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_THREAD_POOL_SIZE, THREADS,
        MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        PER_IP_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, CONNECTION_TIMEOUT_S, MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot serve metrics on %s:%d (metrics_listen): %s", host, port,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        zmq_ctx_term(h->ctx);
        mlt_free(h);
        return NULL;
    }
    log_info("metrics on http://%s:%d/metrics", host, port);
    return h;
}

void mlt_http_stop(mlt_http_t **hp)
{
    mlt_http_t *h = *hp;
    if (!h)
        return;
    MHD_stop_daemon(h->mhd);
    zmq_ctx_term(h->ctx);
    mlt_free(h);
    *hp = NULL;
}
