/* ctl.h - PRIVATE to mltunerctl (ctl.c, ctl_follow.c): the request helpers
 * the commands share. */
#ifndef MLT_CTL_H
#define MLT_CTL_H

#include "proto/wire.h"

extern const char *endpoint; /* the coordinator's control endpoint */
extern double timeout_s;     /* seconds to wait for a reply */

/* Sends h and waits for the reply; returns the decoded reply (caller frees
 * with mlt_wire_free) or NULL after printing why. */
mlt_header_t *request(void *sock, mlt_header_t *h);
/* -1 (after printing its text) if r is an ERROR reply, else 0. */
int check_error(mlt_header_t *r);
/* The JOB_STATUS reply (job_state set), or NULL after printing why. */
mlt_header_t *get_status(void *sock);
/* The phase is final: done, failed, stopped, idle. */
int is_over(const char *phase);
/* For a job whose phase is final: prints "phase: message" if there is a
 * message and returns the exit status (0 done, 1 otherwise). */
int over_status(const char *phase, const char *message);

/* ---- ctl_keys.c ---- */
/* `keygen NAME [--dir DIR]` with its arguments. Returns the exit status. */
int ctl_keygen(int argc, char **argv);
/* Loads the CurveZMQ keys to connect with: key (else $MLTUNER_KEY) and
 * server_key (else $MLTUNER_SERVER_KEY, else /etc/mltuner/server.pub); none:
 * plain. 0, or -EINVAL after printing why. */
int ctl_keys_init(const char *key, const char *server_key);
/* A DEALER connected to ep (a CURVE client when keys were given and ep is not
 * ipc://), or NULL after printing why. */
void *ctl_connect(void *ctx, const char *ep);
/* request() for SUBMIT and JOB_STOP: refused with EACCES and a local control
 * socket named, sends again there (replacing *sockp, and endpoint). */
mlt_header_t *ctl_request_change(void *ctx, void **sockp, mlt_header_t *h);
/* 1 when keys were given. */
int ctl_have_keys(void);

/* `watch`: redraws the job's progress until it ends. Returns the exit status. */
int cmd_watch(void *sock);
/* `decisions [--json] [--follow]` with its arguments. Returns the exit status. */
int cmd_decisions(void *sock, int argc, char **argv);

#endif
