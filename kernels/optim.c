/* optim.c - optimizer update rules on caller-owned float arrays (see optim.h).
 *
 * Each rule is one element step (a static inline function stating the formula)
 * run by a simple loop over restrict-qualified pointers, written so that GCC
 * -O2 vectorises it (see VEC_FLOATS). Weight decay is folded into the same pass
 * (g' = g + wd*w) rather than materialised, because g is borrowed and const.
 * Arithmetic is in float; only the per-call scalars (Adam's bias corrections,
 * the schedule and averaging weight of the averaging rules) are computed, once
 * per call, in double. No allocation, no global state, no logging: every
 * function is thread-safe on disjoint arrays. */
#include "kernels/optim.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* Indexed by mlt_rule_t. */
static const char *const rule_names[MLT_RULE_COUNT_] = {
    [MLT_RULE_SGD] = "sgd",         [MLT_RULE_NESTEROV] = "nesterov",
    [MLT_RULE_ADAM] = "adam",       [MLT_RULE_RMSPROP] = "rmsprop",
    [MLT_RULE_ADAGRAD] = "adagrad", [MLT_RULE_ADADELTA] = "adadelta",
    [MLT_RULE_SF_SGD] = "sf-sgd",   [MLT_RULE_SF_ADAMW] = "sf-adamw",
};

/* Indexed by mlt_rule_t: state arrays of n floats each, without average. */
static const size_t rule_state[MLT_RULE_COUNT_] = {
    [MLT_RULE_SGD] = 1,     [MLT_RULE_NESTEROV] = 1, [MLT_RULE_ADAM] = 2,
    [MLT_RULE_RMSPROP] = 1, [MLT_RULE_ADAGRAD] = 1,  [MLT_RULE_ADADELTA] = 2,
    [MLT_RULE_SF_SGD] = 2,  [MLT_RULE_SF_ADAMW] = 3,
};

/* Where the averaging rules keep their arrays: z (schedule-free) or h
 * (sgd/nesterov) first, the average x second, v (sf-adamw) third. */
#define ARRAY_X 1
#define ARRAY_V 2

mlt_hyper_t mlt_hyper_default(void)
{
    return (mlt_hyper_t){
        .lr = 0.01f,
        .momentum = 0.0f,
        .weight_decay = 0.0f,
        .beta1 = 0.9f,
        .beta2 = 0.999f,
        .eps = 1e-8f,
        .warmup = 0,
    };
}

const char *mlt_rule_name(mlt_rule_t rule)
{
    /* The unsigned cast also rejects negative values of a signed enum. */
    if ((unsigned)rule >= (unsigned)MLT_RULE_COUNT_)
        return NULL;
    return rule_names[rule];
}

int mlt_rule_parse(const char *name)
{
    if (name == NULL)
        return -1;
    for (int r = 0; r < MLT_RULE_COUNT_; r++)
        if (strcmp(name, rule_names[r]) == 0)
            return r;
    return -1;
}

bool mlt_rule_schedule_free(mlt_rule_t rule)
{
    return rule == MLT_RULE_SF_SGD || rule == MLT_RULE_SF_ADAMW;
}

size_t mlt_optim_state_floats(mlt_rule_t rule, bool average)
{
    if ((unsigned)rule >= (unsigned)MLT_RULE_COUNT_)
        return 0;
    if (!average || mlt_rule_schedule_free(rule))
        return rule_state[rule];
    /* sgd and nesterov keep x after h; the adaptive rules cannot average */
    return rule == MLT_RULE_SGD || rule == MLT_RULE_NESTEROV ? rule_state[rule] + 1 : 0;
}

int mlt_optim_average_array(mlt_rule_t rule, bool average)
{
    if (mlt_optim_state_floats(rule, average) == 0)
        return -1;
    return mlt_rule_schedule_free(rule) || average ? ARRAY_X : -1;
}

/* GCC 12 at -O2 uses -fvect-cost-model=very-cheap, which vectorises a loop
 * only when no scalar epilogue is needed, i.e. when its trip count is known to
 * be a multiple of the vector width. So each rule runs its element step over
 * the largest multiple of VEC_FLOATS (16: one 64-byte line, the widest vector)
 * and then over the few floats left. The element steps are static inline
 * functions so both loops share one statement of each formula.
 *
 * The loops that call sqrtf() (adam, rmsprop, adagrad, adadelta, sf-adamw)
 * vectorise only under -fno-math-errno: otherwise GCC keeps a scalar errno
 * path for negative input, which cannot occur here (every operand is a sum of
 * squares, plus eps).
 * Neither the pragma nor the optimize attribute changes that, so the flag has
 * to come from the build (kernels_lib c_args); nothing here reads errno. */
#define VEC_FLOATS ((size_t)16)

/* The loop functions stay out of line: inlined into mlt_optim_apply, whose
 * pointers are not restrict (Adam's two state arrays share one base), GCC
 * would need a run-time alias check, which -O2 does not emit. */
#if defined(__GNUC__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

/* The loops are built for SSE2 (the build targets any x86-64) and again for
 * AVX2 and AVX-512, the copy the CPU can run picked at load time (GCC's
 * target_clones): on the shards' update of a 1 MiB chunk set, 52 -> 40 us,
 * and the finiteness scan 25 -> 12 us (#15). Element-wise, without FMA
 * contraction (-std=c11): every copy computes the same floats. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

static inline size_t vec_floor(size_t n)
{
    return n & ~(VEC_FLOATS - 1);
}

/* Per-call coefficients, prepared once in mlt_optim_apply and passed by value
 * so that the loops read them from registers, never through a pointer that
 * might alias w or the state. */
typedef struct coef {
    float lr;        /* learning rate */
    float m;         /* momentum */
    float wd;        /* weight decay */
    float b1, c1;    /* beta1 and 1 - beta1 (Adam) */
    float b2, c2;    /* beta2 (rho) and 1 - beta2 */
    float eps;       /* denominator guard */
    float adam_step; /* Adam: lr / (1 - beta1^t) */
    float adam_isb2; /* Adam, sf-adamw: 1 / sqrt(1 - beta2^t) */
    float avg_c;     /* averaging: the new point's weight c */
    float avg_keep;  /* averaging: 1 - c */
    float y_x;       /* schedule-free: beta, the weight of x in y */
    float y_z;       /* schedule-free: 1 - beta */
} coef_t;

/* SGD with momentum: h = m*h + g'; w -= lr*h. */
static inline void sgd_one(coef_t k, float *w, float *h, float g)
{
    float gp = g + k.wd * *w;
    float hi = k.m * *h + gp;
    *h = hi;
    *w -= k.lr * hi;
}

/* Plain SGD (momentum 0): w -= lr*g'. The momentum buffer would only ever
 * hold g', so it is neither read nor written: 3 memory streams instead of 5. */
static inline void sgd0_one(coef_t k, float *w, float g)
{
    *w -= k.lr * (g + k.wd * *w);
}

static NOINLINE CLONES void apply_sgd0(coef_t k, float *restrict w, const float *restrict g,
                                       size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        sgd0_one(k, &w[i], g[i]);
    for (; i < n; i++)
        sgd0_one(k, &w[i], g[i]);
}

static NOINLINE CLONES void apply_sgd(coef_t k, float *restrict w, float *restrict h,
                                      const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        sgd_one(k, &w[i], &h[i], g[i]);
    for (; i < n; i++)
        sgd_one(k, &w[i], &h[i], g[i]);
}

/* Nesterov momentum: h = m*h + g'; w -= lr*(g' + m*h). */
static inline void nesterov_one(coef_t k, float *w, float *h, float g)
{
    float gp = g + k.wd * *w;
    float hi = k.m * *h + gp;
    *h = hi;
    *w -= k.lr * (gp + k.m * hi);
}

static NOINLINE CLONES void apply_nesterov(coef_t k, float *restrict w, float *restrict h,
                                           const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        nesterov_one(k, &w[i], &h[i], g[i]);
    for (; i < n; i++)
        nesterov_one(k, &w[i], &h[i], g[i]);
}

/* Adam: a = b1*a + (1-b1)*g'; v = b2*v + (1-b2)*g'^2, with the bias
 * corrections folded into two per-call scalars (see mlt_optim_apply):
 *   lr*(a/bc1)/(sqrt(v/bc2)+eps) = (lr/bc1)*a/(sqrt(v)*(1/sqrt(bc2))+eps). */
static inline void adam_one(coef_t k, float *w, float *a, float *v, float g)
{
    float gp = g + k.wd * *w;
    float ai = k.b1 * *a + k.c1 * gp;
    float vi = k.b2 * *v + k.c2 * (gp * gp);
    *a = ai;
    *v = vi;
    *w -= k.adam_step * ai / (sqrtf(vi) * k.adam_isb2 + k.eps);
}

static NOINLINE CLONES void apply_adam(coef_t k, float *restrict w, float *restrict a,
                                       float *restrict v, const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        adam_one(k, &w[i], &a[i], &v[i], g[i]);
    for (; i < n; i++)
        adam_one(k, &w[i], &a[i], &v[i], g[i]);
}

/* RMSProp: v = rho*v + (1-rho)*g'^2; w -= lr*g'/(sqrt(v)+eps). */
static inline void rmsprop_one(coef_t k, float *w, float *v, float g)
{
    float gp = g + k.wd * *w;
    float vi = k.b2 * *v + k.c2 * (gp * gp);
    *v = vi;
    *w -= k.lr * gp / (sqrtf(vi) + k.eps);
}

static NOINLINE CLONES void apply_rmsprop(coef_t k, float *restrict w, float *restrict v,
                                          const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        rmsprop_one(k, &w[i], &v[i], g[i]);
    for (; i < n; i++)
        rmsprop_one(k, &w[i], &v[i], g[i]);
}

/* AdaGrad: v += g'^2; w -= lr*g'/(sqrt(v)+eps). */
static inline void adagrad_one(coef_t k, float *w, float *v, float g)
{
    float gp = g + k.wd * *w;
    float vi = *v + gp * gp;
    *v = vi;
    *w -= k.lr * gp / (sqrtf(vi) + k.eps);
}

static NOINLINE CLONES void apply_adagrad(coef_t k, float *restrict w, float *restrict v,
                                          const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        adagrad_one(k, &w[i], &v[i], g[i]);
    for (; i < n; i++)
        adagrad_one(k, &w[i], &v[i], g[i]);
}

/* AdaDelta: v = rho*v + (1-rho)*g'^2; d = sqrt(u+eps)/sqrt(v+eps)*g';
 *           u = rho*u + (1-rho)*d^2;  w -= lr*d. */
static inline void adadelta_one(coef_t k, float *w, float *v, float *u, float g)
{
    float gp = g + k.wd * *w;
    float vi = k.b2 * *v + k.c2 * (gp * gp);
    float d = sqrtf(*u + k.eps) / sqrtf(vi + k.eps) * gp;
    *v = vi;
    *u = k.b2 * *u + k.c2 * (d * d);
    *w -= k.lr * d;
}

static NOINLINE CLONES void apply_adadelta(coef_t k, float *restrict w, float *restrict v,
                                           float *restrict u, const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        adadelta_one(k, &w[i], &v[i], &u[i], g[i]);
    for (; i < n; i++)
        adadelta_one(k, &w[i], &v[i], &u[i], g[i]);
}

/* Schedule-free SGD: g' = g + wd*y; z -= lr*g'; x = (1-c)*x + c*z;
 * y = (1-beta)*z + beta*x. */
static inline void sfsgd_one(coef_t k, float *y, float *z, float *x, float g)
{
    float gp = g + k.wd * *y;
    float zi = *z - k.lr * gp;
    float xi = k.avg_keep * *x + k.avg_c * zi;
    *z = zi;
    *x = xi;
    *y = k.y_z * zi + k.y_x * xi;
}

static NOINLINE CLONES void apply_sfsgd(coef_t k, float *restrict y, float *restrict z,
                                        float *restrict x, const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        sfsgd_one(k, &y[i], &z[i], &x[i], g[i]);
    for (; i < n; i++)
        sfsgd_one(k, &y[i], &z[i], &x[i], g[i]);
}

/* Schedule-free AdamW: v = b2*v + (1-b2)*g^2; g' = g/(sqrt(v/bc2)+eps) + wd*y,
 * with 1/sqrt(bc2) a per-call scalar as in adam_one; then as sfsgd_one. */
static inline void sfadamw_one(coef_t k, float *y, float *z, float *x, float *v, float g)
{
    float vi = k.b2 * *v + k.c2 * (g * g);
    float gp = g / (sqrtf(vi) * k.adam_isb2 + k.eps) + k.wd * *y;
    float zi = *z - k.lr * gp;
    float xi = k.avg_keep * *x + k.avg_c * zi;
    *v = vi;
    *z = zi;
    *x = xi;
    *y = k.y_z * zi + k.y_x * xi;
}

static NOINLINE CLONES void apply_sfadamw(coef_t k, float *restrict y, float *restrict z,
                                          float *restrict x, float *restrict v,
                                          const float *restrict g, size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        sfadamw_one(k, &y[i], &z[i], &x[i], &v[i], g[i]);
    for (; i < n; i++)
        sfadamw_one(k, &y[i], &z[i], &x[i], &v[i], g[i]);
}

/* The weight average of sgd/nesterov: x = (1-c)*x + c*w. */
static inline void average_one(coef_t k, const float *w, float *x)
{
    *x = k.avg_keep * *x + k.avg_c * *w;
}

static NOINLINE CLONES void apply_average(coef_t k, const float *restrict w, float *restrict x,
                                          size_t n)
{
    size_t i = 0;
    for (const size_t nv = vec_floor(n); i < nv; i++)
        average_one(k, &w[i], &x[i]);
    for (; i < n; i++)
        average_one(k, &w[i], &x[i]);
}

/* Adam's bias corrections 1 - beta^t, computed once per call in double (beta^t
 * for large t underflows gracefully to 0, giving a correction of 1). */
static void adam_coefs(coef_t *k, const mlt_hyper_t *h, uint64_t step)
{
    const double t = (double)step;
    const double bc1 = 1.0 - pow((double)h->beta1, t);
    const double bc2 = 1.0 - pow((double)h->beta2, t);
    k->adam_step = (float)((double)h->lr / bc1);
    k->adam_isb2 = (float)(1.0 / sqrt(bc2));
}

/* Per-call coefficients from the hyperparameters. */
static coef_t coefs(const mlt_hyper_t *h)
{
    return (coef_t){
        .lr = h->lr,
        .m = h->momentum,
        .wd = h->weight_decay,
        .b1 = h->beta1,
        .c1 = 1.0f - h->beta1,
        .b2 = h->beta2,
        .c2 = 1.0f - h->beta2,
        .eps = h->eps,
    };
}

void mlt_optim_apply(mlt_rule_t rule, const mlt_hyper_t *h, float *w, float *state,
                     const float *g, size_t n, uint64_t step)
{
    assert(h != NULL);
    if (n == 0)
        return;
    assert(w != NULL && state != NULL && g != NULL);
    assert(!mlt_rule_schedule_free(rule)); /* their scalars: mlt_optim_update */

    coef_t k = coefs(h);
    switch (rule) {
    case MLT_RULE_SGD:
        if (k.m == 0.0f)
            apply_sgd0(k, w, g, n);
        else
            apply_sgd(k, w, state, g, n);
        break;
    case MLT_RULE_NESTEROV:
        apply_nesterov(k, w, state, g, n);
        break;
    case MLT_RULE_ADAM:
        adam_coefs(&k, h, step == 0 ? 1 : step); /* t = 0 would divide by 0 */
        apply_adam(k, w, state, state + n, g, n);
        break;
    case MLT_RULE_RMSPROP:
        apply_rmsprop(k, w, state, g, n);
        break;
    case MLT_RULE_ADAGRAD:
        apply_adagrad(k, w, state, g, n);
        break;
    case MLT_RULE_ADADELTA:
        apply_adadelta(k, w, state, state + n, g, n);
        break;
    default: /* invalid rule: documented no-op */
        break;
    }
}

/* ---- the averaging rules ---------------------------------------------------- */

/* lr_k: the learning rate of the update after k, warm-up applied. */
static double scheduled_lr(const mlt_hyper_t *h, uint64_t k)
{
    if (h->warmup > 0 && k < h->warmup)
        return (double)h->lr * (double)(k + 1) / (double)h->warmup;
    return (double)h->lr;
}

/* Advances lr_max and weight_sum for an update at lr_k and sets the
 * averaging weight c (and 1 - c) in *k. */
static void average_coefs(coef_t *k, mlt_optim_scalars_t *s, double lr_k)
{
    s->lr_max = fmax(s->lr_max, lr_k);
    const double weight = s->lr_max * s->lr_max;
    s->weight_sum += weight;
    const double c = s->weight_sum > 0 ? weight / s->weight_sum : 0.0;
    k->avg_c = (float)c;
    k->avg_keep = (float)(1.0 - c);
}

/* The sequences' common start: z = x = w, v = 0 (the arrays a rule has). */
static void restart_arrays(mlt_rule_t rule, const float *w, float *state, size_t n)
{
    if (mlt_rule_schedule_free(rule))
        memcpy(state, w, n * sizeof *w); /* z */
    memcpy(state + ARRAY_X * n, w, n * sizeof *w);
    if (rule == MLT_RULE_SF_ADAMW)
        memset(state + ARRAY_V * n, 0, n * sizeof *state);
}

void mlt_optim_restart(mlt_rule_t rule, bool average, const float *w, float *state, size_t n,
                       mlt_optim_scalars_t *s)
{
    assert(s != NULL);
    if (mlt_optim_average_array(rule, average) < 0)
        return;
    *s = (mlt_optim_scalars_t){0};
    if (n > 0)
        restart_arrays(rule, w, state, n);
}

void mlt_optim_update(mlt_rule_t rule, bool average, const mlt_hyper_t *h, float *w, float *state,
                      const float *g, size_t n, mlt_optim_scalars_t *s)
{
    assert(h != NULL && s != NULL);
    if (n == 0 || mlt_optim_state_floats(rule, average) == 0)
        return;
    assert(w != NULL && state != NULL && g != NULL);
    const bool averaging = mlt_optim_average_array(rule, average) >= 0;
    if (averaging && s->step == 0)
        restart_arrays(rule, w, state, n);
    const double lr_k = scheduled_lr(h, s->step);
    float *x = averaging ? state + ARRAY_X * n : NULL;

    if (!mlt_rule_schedule_free(rule)) {
        mlt_hyper_t hk = *h;
        hk.lr = (float)lr_k;
        s->step++;
        mlt_optim_apply(rule, &hk, w, state, g, n, s->step);
        if (averaging && lr_k != 0.0) {
            coef_t k = coefs(h);
            average_coefs(&k, s, lr_k);
            apply_average(k, w, x, n);
        }
        return;
    }
    if (lr_k == 0.0) /* lr 0: nothing changes (optim.h) */
        return;
    coef_t k = coefs(h);
    k.lr = (float)lr_k;
    average_coefs(&k, s, lr_k);
    const float beta = rule == MLT_RULE_SF_SGD ? h->momentum : h->beta1;
    k.y_x = beta;
    k.y_z = 1.0f - beta;
    if (rule == MLT_RULE_SF_SGD) {
        apply_sfsgd(k, w, state, x, g, n);
    } else {
        /* v's bias correction 1 - beta2^(k+1), as adam_coefs */
        const double bc2 = 1.0 - pow((double)h->beta2, (double)(s->step + 1));
        k.adam_isb2 = (float)(1.0 / sqrt(bc2));
        apply_sfadamw(k, w, state, x, state + ARRAY_V * n, g, n);
    }
    s->step++;
}

/* Floats checked per block before the early exit: large enough that the
 * branch costs nothing, small enough that a NaN near the front of a large
 * gradient is found soon. */
#define FINITE_BLOCK ((size_t)1024)

/* A float is NaN or +-Inf exactly when its exponent bits are all ones, i.e.
 * when |bits| >= 0x7f800000. Adding 0x00800000 to |bits| (at most 0x7fffffff,
 * so no overflow) carries into bit 31 exactly for those values; the loops OR
 * these words and test bit 31 once. memcpy is the aliasing-safe way to read the
 * bits and compiles to a plain load. */
static inline uint32_t nonfinite_word(const float *x)
{
    uint32_t u;
    memcpy(&u, x, sizeof u);
    return (u & 0x7fffffffu) + 0x00800000u;
}

/* OR of nonfinite_word() over x[0 .. len). Only ever called with a constant
 * len: -O2 vectorises a reduction only when its trip count is known. */
static inline uint32_t nonfinite_fixed(const float *restrict x, size_t len)
{
    uint32_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= nonfinite_word(&x[i]);
    return acc;
}

CLONES bool mlt_all_finite(const float *x, size_t n)
{
    size_t i = 0;
    for (; n - i >= FINITE_BLOCK; i += FINITE_BLOCK)
        if (nonfinite_fixed(x + i, FINITE_BLOCK) >> 31)
            return false;
    uint32_t acc = 0;
    for (; n - i >= VEC_FLOATS; i += VEC_FLOATS)
        acc |= nonfinite_fixed(x + i, VEC_FLOATS);
    for (; i < n; i++)
        acc |= nonfinite_word(&x[i]);
    return (acc >> 31) == 0;
}
