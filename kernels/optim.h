/* optim.h - optimizer update rules applied to one float array (a chunk's
 * parameters) with its optimizer state. Pure functions on caller memory: no
 * allocation, no logging, no global state; thread-safe.
 *
 * State layout: mlt_optim_state_floats(rule, average) arrays of n floats each,
 * packed one after the other in `state` (array k starts at state + k*n),
 * plus the few scalars of mlt_optim_scalars_t that the caller keeps beside
 * them (the store in the chunk's header). All state starts at zero (a fresh
 * chunk is zeroed).
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
 * including this one. State arrays: h (sgd, nesterov), a then v (adam), v
 * (rmsprop, adagrad), v then u (adadelta).
 *
 * Schedule-free rules (Defazio et al. 2024, "The Road Less Scheduled"): w is
 * y, the point where gradients are taken; the state holds z (the base
 * sequence), x (the average a test reads) and, for sf-adamw, v. With k the
 * updates applied so far (mlt_optim_scalars_t.step, 0-based), beta = momentum
 * (sf-sgd) or beta1 (sf-adamw):
 *   schedule:  lr_k = lr * (warmup > 0 && k < warmup ? (k+1)/warmup : 1)
 *              lr_max = max(lr_max, lr_k); weight = lr_max^2;
 *              weight_sum += weight; c = weight_sum > 0 ? weight/weight_sum : 0
 *   sf-sgd:    g' = g + wd*y;                          z -= lr_k*g'
 *   sf-adamw:  v = b2*v + (1-b2)*g^2; d = sqrt(v/(1-b2^(k+1))) + eps;
 *              g' = g/d + wd*y;                        z -= lr_k*g'
 *   both:      x = (1-c)*x + c*z;  y = (1-beta)*z + beta*x;  k += 1
 * State arrays: z, x (sf-sgd); z, x, v (sf-adamw).
 *
 * Weight average (update.average) of sgd and nesterov: after the rule's step
 * (taken with lr_k, the scheduled rate above), x = (1-c)*x + c*w with c from
 * the same schedule, in one more state array after h: x is the lr_max^2-
 * weighted running average of the iterates. The schedule-free rules always
 * average; the other rules cannot (mlt_optim_state_floats says 0).
 *
 * Warm-up (warmup > 0) scales the learning rate of every rule by the same
 * ramp: lr_k above, with k = the updates applied before this one.
 *
 * Restart: an array whose step is 0 (fresh, or after mlt_optim_restart) sets
 * z = x = y (v = 0) before its first averaged update, so that all sequences
 * start at the weights written into it. An update whose lr is 0 changes no
 * weight and no average: the schedule-free rules then change nothing beyond
 * that restart (v and the scalars included); the others run their own step as
 * above (w unchanged, the step counted) and leave x, lr_max and weight_sum as
 * they are. (The tuner's eval branch measures the starting loss with lr 0.) */
#ifndef MLT_OPTIM_H
#define MLT_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" { /* gpu_ops.cu calls mlt_rule_schedule_free and mlt_rule_name */
#endif

typedef enum {
    MLT_RULE_SGD = 0,
    MLT_RULE_NESTEROV = 1,
    MLT_RULE_ADAM = 2,
    MLT_RULE_RMSPROP = 3,
    MLT_RULE_ADAGRAD = 4,
    MLT_RULE_ADADELTA = 5,
    MLT_RULE_SF_SGD = 6,   /* schedule-free SGD */
    MLT_RULE_SF_ADAMW = 7, /* schedule-free AdamW */
    MLT_RULE_COUNT_
} mlt_rule_t;

typedef struct mlt_hyper {
    float lr;           /* learning rate */
    float momentum;     /* SGD/Nesterov momentum m */
    float weight_decay; /* L2 coefficient added to the gradient */
    float beta1;        /* Adam first-moment decay */
    float beta2;        /* Adam second-moment decay; rho of RMSProp/AdaDelta */
    float eps;          /* denominator guard */
    uint32_t warmup;    /* updates over which lr ramps up linearly (0: none) */
} mlt_hyper_t;

/* The scalars an array's update keeps beside its state arrays; all zero at
 * the start. Copied with the arrays (a chunk's copy-on-write copies them). */
typedef struct mlt_optim_scalars {
    uint64_t step;     /* updates applied so far: k (Adam's t is step + 1) */
    double lr_max;     /* averaging rules: the largest scheduled lr so far */
    double weight_sum; /* averaging rules: the sum of lr_max^2 over the updates */
} mlt_optim_scalars_t;

/* Default hyperparameters (lr 0.01, momentum 0, wd 0, beta1 0.9, beta2 0.999,
 * eps 1e-8, warmup 0). */
mlt_hyper_t mlt_hyper_default(void);

/* Name of a rule ("sgd", "nesterov", "adam", "rmsprop", "adagrad", "adadelta",
 * "sf-sgd", "sf-adamw"), or NULL for an out-of-range value. */
const char *mlt_rule_name(mlt_rule_t rule);
/* Parses a rule name; returns the rule or -1. */
int mlt_rule_parse(const char *name);

/* Number of state arrays (each n floats) the rule keeps per parameter, with
 * the weight average when `average` (update.average): 1 for
 * sgd/nesterov/rmsprop/adagrad, 2 for adam/adadelta/sf-sgd and for
 * sgd/nesterov with average, 3 for sf-adamw (average changes nothing for the
 * schedule-free rules, which always average). 0 for an invalid rule, and for
 * average with adam, rmsprop, adagrad or adadelta, which cannot keep one. */
size_t mlt_optim_state_floats(mlt_rule_t rule, bool average);

/* Index of the state array that holds the average x (a test reads it), or -1
 * when (rule, average) keeps none. */
int mlt_optim_average_array(mlt_rule_t rule, bool average);

/* true for the schedule-free rules (sf-sgd, sf-adamw). */
bool mlt_rule_schedule_free(mlt_rule_t rule);

/* One step of a rule that keeps no scalar but its step count: sgd, nesterov,
 * adam, rmsprop, adagrad, adadelta, on w[0..n) with gradient g[0..n) and
 * state (mlt_optim_state_floats(rule, false)*n floats), at rate h->lr
 * (h->warmup is not applied here). `step` is the 1-based update count t
 * including this one (used by Adam's bias correction; 0 is taken as 1). g is
 * not modified. w, state and g must not overlap; they may be NULL when n is
 * 0. An invalid rule changes nothing; a schedule-free rule must not be passed
 * (it needs mlt_optim_update). This is the step kernels/gpu.h mirrors. */
void mlt_optim_apply(mlt_rule_t rule, const mlt_hyper_t *h, float *w, float *state,
                     const float *g, size_t n, uint64_t step);

/* One update of (rule, average) as the header comment states: warm-up, the
 * rule's step, the average, and s advanced. state holds
 * mlt_optim_state_floats(rule, average)*n floats. Same aliasing rules as
 * mlt_optim_apply; n = 0 or an invalid (rule, average) changes nothing, *s
 * included. */
void mlt_optim_update(mlt_rule_t rule, bool average, const mlt_hyper_t *h, float *w, float *state,
                      const float *g, size_t n, mlt_optim_scalars_t *s);

/* After w was overwritten: restarts the averaged sequences at w (z = x = w,
 * v = 0 for sf-adamw; x = w for sgd/nesterov with average) and zeroes *s. No
 * effect when (rule, average) keeps no average (their state is kept). */
void mlt_optim_restart(mlt_rule_t rule, bool average, const float *w, float *state, size_t n,
                       mlt_optim_scalars_t *s);

/* true when every x[i] is finite (no NaN, no +-Inf; denormals are finite).
 * true for n = 0, where x may be NULL. */
bool mlt_all_finite(const float *x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
