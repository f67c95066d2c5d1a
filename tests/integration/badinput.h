/* badinput.h - the fixture of the bad-input tests (test_badinput.c,
 * test_badinput_shm.c; badinput.c): one mltunerd, a well-behaved client and
 * a raw ZeroMQ DEALER that sends hand-made messages. See test_badinput.c. */
#ifndef MLT_TEST_BADINPUT_H
#define MLT_TEST_BADINPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"
#include "tests/integration/harness.h"
#include "client/mltuner.h"

#define W_SIZE 100000u /* several chunks, the last one short; one SGD branch ~800 KB */
#define B_SIZE 10u
#define LR 0.1f
#define MAX_GOOD 2
#define REPLY_WAIT_MS 5000

/* the job, and the fixture's state (badinput.c says what each is) */
extern const mlt_table_def_t tables[2];
extern const uint64_t table_size[2];

extern mlt_test_cluster_t cl;
extern mlt_client_t *good[MAX_GOOD];
extern uint32_t n_good;
extern void *zctx, *raw;
extern uint32_t chunk_floats;
extern float *expect[2], *got[2];
extern float *ones_w, *ones_b;
extern int64_t clk;
extern uint64_t next_rid;

typedef struct frame {
    const void *data;
    size_t len;
} frame_t;

uint32_t w_chunks(void);

/* Floats in chunk k of table t. */
size_t chunk_len(uint32_t t, uint32_t k);

void start(const char *const *extra, uint32_t n_workers);

void setup_default(void);

void setup_memory(void);

void setup_timeout(void);

void teardown(void);

/* Status, a pull from the daemon that must return exactly `expect`, a push of
 * ones to both tables and a clock by every worker: the daemon still serves. */
void good_round(void);

mlt_branch_status_t branch_status(uint32_t id, uint32_t *n_branches);

void raw_send(const frame_t *f, size_t n);

/* Receives one whole message (failing after 5 s of silence) and returns its
 * decoded header (caller frees); *n_payload gets the frames after it. */
mlt_header_t *raw_recv(size_t *n_payload);

/* The next reply must be ERROR with error_code `code`, a text containing
 * `word`, and (rid != 0) request_id rid. */
void expect_reply(uint64_t rid, int code, const char *word);

/* The raw peer is still served: STATUS gets its STATUS_REPLY (and nothing
 * left over from the bad message comes first). */
void raw_ping(void);

void after_case(void);

/* Sends frames as they are (frame 0 need not be a header) and expects ERROR
 * `code` mentioning `word`; no request_id can be echoed. */
void expect_error_frames(const frame_t *f, size_t n, int code, const char *word);

/* Packs h (with a fresh request_id) into frame 0, sends it with the payload
 * frames, and expects ERROR `code` mentioning `word`, echoing the request_id
 * when the header decodes. The caller sends the next message. */
uint64_t send_header(mlt_header_t *h, const frame_t *payload, size_t n_payload,
                            bool *decodes);

void expect_error(mlt_header_t *h, const frame_t *payload, size_t n_payload, int code,
                         const char *word);

/* A valid request header of `type` from worker 0 on branch 1, table 0,
 * chunks [first, first+count). */
mlt_header_t data_header(Mlt__MsgType type, uint32_t first, uint32_t count);

#endif
