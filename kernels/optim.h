/* optim.h - optimizer update rules applied to one float array (a chunk's
 * parameters) with its optimizer state. Pure functions on caller memory: no
 * allocation, no logging, no global state; thread-safe.
 *
 * State layout: mlt_optim_state_floats(rule) arrays of n floats each, packed
 * one after the other in `state` (array k starts at state + k*n). All state
 * starts at zero (a fresh chunk is zeroed).
 *
 * Conventions follow PyTorch's torch.optim (dampening 0):
 *   weight decay (L2, all rules): g' = g + wd*w
 *   SGD:       h = m*h + g';           w -= lr*h          (m = 0: plain SGD,
 *              w -= lr*g'; h is then left as it is, neither read nor written)
 *   Nesterov:  h = m*h + g';           w -= lr*(g' + m*h)
 *   Adam:      a = b1*a + (1-b1)*g';   v = b2*v + (1-b2)*g'^2
 *              w -= lr * (a/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
 *   RMSProp:   v = rho*v + (1-rho)*g'^2; w -= lr*g'/(sqrt(v)+eps)   (rho = beta2)
 *   AdaGrad:   v += g'^2;               w -= lr*g'/(sqrt(v)+eps)
 *   AdaDelta:  v = rho*v + (1-rho)*g'^2; d = sqrt(u+eps)/sqrt(v+eps)*g';
 *              u = rho*u + (1-rho)*d^2;  w -= lr*d                  (rho = beta2)
 * where t is the 1-based count of updates applied to this array so far,
 * including this one. */
#ifndef MLT_OPTIM_H
#define MLT_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MLT_RULE_SGD = 0,
    MLT_RULE_NESTEROV = 1,
    MLT_RULE_ADAM = 2,
    MLT_RULE_RMSPROP = 3,
    MLT_RULE_ADAGRAD = 4,
    MLT_RULE_ADADELTA = 5,
    MLT_RULE_COUNT_
} mlt_rule_t;

typedef struct mlt_hyper {
    float lr;           /* learning rate */
    float momentum;     /* SGD/Nesterov momentum m */
    float weight_decay; /* L2 coefficient added to the gradient */
    float beta1;        /* Adam first-moment decay */
    float beta2;        /* Adam second-moment decay; rho of RMSProp/AdaDelta */
    float eps;          /* denominator guard */
} mlt_hyper_t;

/* Default hyperparameters (lr 0.01, momentum 0, wd 0, beta1 0.9, beta2 0.999,
 * eps 1e-8). */
mlt_hyper_t mlt_hyper_default(void);

/* Name of a rule ("sgd", "nesterov", "adam", "rmsprop", "adagrad", "adadelta"),
 * or NULL for an out-of-range value. */
const char *mlt_rule_name(mlt_rule_t rule);
/* Parses a rule name; returns the rule or -1. */
int mlt_rule_parse(const char *name);

/* Number of state arrays (each n floats) the rule keeps per parameter: 1 for
 * sgd/nesterov/rmsprop/adagrad, 2 for adam/adadelta. 0 for an invalid rule. */
size_t mlt_optim_state_floats(mlt_rule_t rule);

/* Applies one update of `rule` to w[0..n) with gradient g[0..n) and state
 * (mlt_optim_state_floats(rule)*n floats). `step` is the 1-based update count t
 * including this one (used by Adam's bias correction; 0 is taken as 1). g is
 * not modified. w, state and g must not overlap; they may be NULL when n is 0.
 * An invalid rule changes nothing. */
void mlt_optim_apply(mlt_rule_t rule, const mlt_hyper_t *h, float *w, float *state,
                     const float *g, size_t n, uint64_t step);

/* true when every x[i] is finite (no NaN, no +-Inf; denormals are finite).
 * true for n = 0, where x may be NULL. */
bool mlt_all_finite(const float *x, size_t n);

#endif
