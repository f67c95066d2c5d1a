/* check_model.h - shared by the model suite's files: check_model.c (the test
 * models and these helpers, gradient checks, training, eval, the suite) and
 * check_model_desc.c (init, descriptions, run-time errors). */
#ifndef MLT_CHECK_MODEL_H
#define MLT_CHECK_MODEL_H

#include <check.h>
#include <stdint.h>

#include "worker/model.h"

enum { M_SOFTMAX, M_MLP, M_CNN, M_CNN2, M_CNN3, M_MF, N_MODELS };

/* Test model `which` (M_*) for batches up to max_batch. */
mlt_model_desc_t test_desc(int which, uint32_t max_batch);
/* A model for d; the test fails unless it is made. */
mlt_model_t *new_model(const mlt_model_desc_t *d);

/* A model's tensors in float and double, and gradient buffers. */
typedef struct tensors {
    uint32_t n;
    float **f;
    double **d;
    float **gf;
    double **gd;
} tensors_t;
tensors_t tensors_new(const mlt_model_t *m);
void tensors_free(tensors_t *t);
/* init in float, copied to double */
void tensors_init(const mlt_model_t *m, tensors_t *t, uint64_t seed);

/* A batch: images (float and double) and labels, or ratings. */
typedef struct batch {
    uint32_t n;
    float *xf;
    double *xd;
    uint8_t *y;
    uint32_t *users, *items;
    float *rf;
    double *rd;
} batch_t;
batch_t batch_new(const mlt_model_desc_t *d, uint32_t n, uint64_t seed);
void batch_free(batch_t *b);

/* check_model_desc.c's TCases: "init", "desc", "errors" */
void cm_desc_tcases(Suite *s);

#endif
