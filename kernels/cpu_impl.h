/* cpu_impl.h - PRIVATE to kernels/cpu.c: the text of every CPU kernel, written
 * once over a scalar type and included twice (float, double). See cpu.h for
 * the contracts.
 *
 * The includer defines:
 *   REAL           the scalar type
 *   R(name)        the instantiated name of `name` (name, or name##_f64)
 *   CBLAS_GEMM     cblas_sgemm or cblas_dgemm
 *   REXP, RLOG     exp and log for REAL
 * No include guard: that is the point. Every file-local helper goes through
 * R() too, so the two copies do not collide. */

/* GCC 12 at -O2 (-fvect-cost-model=very-cheap) vectorises a loop only when
 * its trip count is a known multiple of the vector width, so the hot loops run
 * over the largest multiple of 16 elements (the widest vector) and then a
 * scalar tail, both through one element function (see kernels/optim.c). */
#ifndef MLT_CPU_VEC
#define MLT_CPU_VEC ((size_t)16)
static inline size_t mlt_cpu_vec_floor(size_t n)
{
    return n & ~(MLT_CPU_VEC - 1);
}
/* For loops that vectorise only out of line (inlined into a loop nest, GCC
 * loses what restrict told it). */
#define MLT_CPU_NOINLINE __attribute__((noinline))
/* The element loops are compiled for AVX-512 and AVX2 as well as the baseline
 * (SSE2), the loader picking one per CPU (GCC/clang function multiversioning);
 * the build has no -march. Results do not depend on the choice: ISO C mode
 * (-std=c11) keeps GCC from contracting a*b+c into an FMA. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MLT_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef MLT_CPU_CLONES
#define MLT_CPU_CLONES
#endif
#endif

/* One pixel's patch span: the kx range [kx0, kx1) of a k-wide 'same' window
 * centred on column xx that lies inside a row of width w. */
static inline void R(patch_span)(size_t xx, size_t w, size_t k, size_t pad, size_t *kx0,
                                 size_t *kx1)
{
    *kx0 = xx < pad ? pad - xx : 0;
    *kx1 = xx + k - pad > w ? w + pad - xx : k;
}

void R(mlt_cpu_gemm)(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, REAL alpha,
                     const REAL *a, size_t lda, const REAL *b, size_t ldb, REAL beta, REAL *c,
                     size_t ldc)
{
    assert(m <= INT_MAX && n <= INT_MAX && k <= INT_MAX);
    assert(lda <= INT_MAX && ldb <= INT_MAX && ldc <= INT_MAX);
    if (m == 0 || n == 0)
        return;
    CBLAS_GEMM(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
               trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
               (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

MLT_CPU_CLONES void R(mlt_cpu_bias_add)(REAL *restrict y, const REAL *restrict bias, size_t rows,
                                        size_t cols)
{
    const size_t cv = mlt_cpu_vec_floor(cols);
    for (size_t r = 0; r < rows; r++, y += cols) {
        size_t j = 0;
        for (; j < cv; j++)
            y[j] += bias[j];
        for (; j < cols; j++)
            y[j] += bias[j];
    }
}

/* The ReLU of one value: `v < 0 ? 0 : v` keeps NaN (a comparison with NaN is
 * false), where `v > 0 ? v : 0` would turn it into 0. */
static inline REAL R(relu1)(REAL v)
{
    return v < 0 ? (REAL)0 : v;
}

MLT_CPU_CLONES void R(mlt_cpu_bias_relu)(REAL *restrict y, const REAL *restrict bias, size_t rows,
                                         size_t cols)
{
    const size_t cv = mlt_cpu_vec_floor(cols);
    for (size_t r = 0; r < rows; r++, y += cols) {
        size_t j = 0;
        for (; j < cv; j++)
            y[j] = R(relu1)(y[j] + bias[j]);
        for (; j < cols; j++)
            y[j] = R(relu1)(y[j] + bias[j]);
    }
}

MLT_CPU_CLONES void R(mlt_cpu_bias_grad)(REAL *restrict db, const REAL *restrict dy, size_t rows,
                                         size_t cols, bool accumulate)
{
    const size_t cv = mlt_cpu_vec_floor(cols);
    if (!accumulate)
        memset(db, 0, cols * sizeof *db);
    for (size_t r = 0; r < rows; r++, dy += cols) {
        size_t j = 0;
        for (; j < cv; j++)
            db[j] += dy[j];
        for (; j < cols; j++)
            db[j] += dy[j];
    }
}

MLT_CPU_CLONES void R(mlt_cpu_relu)(REAL *restrict x, size_t n)
{
    size_t i = 0;
    for (const size_t nv = mlt_cpu_vec_floor(n); i < nv; i++)
        x[i] = R(relu1)(x[i]);
    for (; i < n; i++)
        x[i] = R(relu1)(x[i]);
}

/* As PyTorch's threshold_backward: zero where y <= 0, so a NaN y passes the
 * gradient through rather than hiding it. */
static inline REAL R(relu_bwd1)(REAL dy, REAL y)
{
    return y <= 0 ? (REAL)0 : dy;
}

MLT_CPU_CLONES void R(mlt_cpu_relu_backward)(REAL *restrict dy, const REAL *restrict y, size_t n)
{
    size_t i = 0;
    for (const size_t nv = mlt_cpu_vec_floor(n); i < nv; i++)
        dy[i] = R(relu_bwd1)(dy[i], y[i]);
    for (; i < n; i++)
        dy[i] = R(relu_bwd1)(dy[i], y[i]);
}

double R(mlt_cpu_softmax_xent)(const REAL *z, const uint8_t *y, size_t rows, size_t classes,
                               REAL *dz, uint32_t *correct)
{
    assert(classes > 0);
    double total = 0;
    uint32_t right = 0;
    const REAL inv_rows = rows ? (REAL)1 / (REAL)rows : 0;
    for (size_t r = 0; r < rows; r++, z += classes) {
        assert(y[r] < classes);
        /* the first maximum; a NaN wins and stays */
        size_t arg = 0;
        REAL m = z[0];
        for (size_t j = 1; j < classes; j++)
            if (!(z[j] <= m) && m == m) {
                m = z[j];
                arg = j;
            }
        REAL s = 0;
        for (size_t j = 0; j < classes; j++)
            s += REXP(z[j] - m);
        /* log(s) >= 0 as s includes exp(0) = 1; z[y]-m <= 0: no overflow
         * before the final sum, and no exp of a large number */
        REAL lse = RLOG(s);
        REAL loss = lse - (z[y[r]] - m);
        total += (double)loss;
        if (arg == y[r] && m == m && loss == loss)
            right++;
        if (dz != NULL) {
            REAL *d = dz + r * classes;
            REAL inv_s = (REAL)1 / s;
            /* z may be d: read z[j] before writing d[j] */
            for (size_t j = 0; j < classes; j++)
                d[j] = REXP(z[j] - m) * inv_s * inv_rows;
            d[y[r]] -= inv_rows;
        }
    }
    if (correct != NULL)
        *correct = right;
    return rows ? total / (double)rows : 0.0;
}

/* Copies n elements. Runs of 16 and more go in inline 64-byte blocks, which
 * measured ~30% faster than one libc memcpy for the 160-float runs of a 5x5x32
 * patch row; short runs (a 1-channel image's 5) stay with memcpy. */
static inline void R(copy_run)(REAL *restrict dst, const REAL *restrict src, size_t n)
{
    const size_t blk = 64 / sizeof(REAL);
    if (n >= blk) {
        for (; n >= blk; n -= blk, dst += blk, src += blk)
            memcpy(dst, src, 64);
    }
    if (n > 0)
        memcpy(dst, src, n * sizeof *dst);
}

void R(mlt_cpu_im2col)(const REAL *restrict x, size_t n, size_t h, size_t w, size_t c, size_t k,
                       REAL *restrict col)
{
    assert(k % 2 == 1);
    const size_t pad = (k - 1) / 2, kc = k * c;
    for (size_t b = 0; b < n; b++) {
        const REAL *img = x + b * h * w * c;
        for (size_t yy = 0; yy < h; yy++)
            for (size_t xx = 0; xx < w; xx++) {
                size_t kx0, kx1;
                R(patch_span)(xx, w, k, pad, &kx0, &kx1);
                for (size_t ky = 0; ky < k; ky++, col += kc) {
                    if (yy + ky < pad || yy + ky - pad >= h) {
                        memset(col, 0, kc * sizeof *col);
                        continue;
                    }
                    /* the valid part of this patch row is contiguous in x */
                    const REAL *src = img + ((yy + ky - pad) * w + xx + kx0 - pad) * c;
                    if (kx0 > 0)
                        memset(col, 0, kx0 * c * sizeof *col);
                    R(copy_run)(col + kx0 * c, src, (kx1 - kx0) * c);
                    if (kx1 < k)
                        memset(col + kx1 * c, 0, (k - kx1) * c * sizeof *col);
                }
            }
    }
}

/* dst[i] += src[i], i < n. */
static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(add_to)(REAL *restrict dst, const REAL *restrict src,
                                                      size_t n)
{
    size_t i = 0;
    for (const size_t nv = mlt_cpu_vec_floor(n); i < nv; i++)
        dst[i] += src[i];
    for (; i < n; i++)
        dst[i] += src[i];
}

void R(mlt_cpu_col2im)(const REAL *restrict col, size_t n, size_t h, size_t w, size_t c, size_t k,
                       REAL *restrict x)
{
    assert(k % 2 == 1);
    const size_t pad = (k - 1) / 2, kc = k * c;
    memset(x, 0, n * h * w * c * sizeof *x);
    for (size_t b = 0; b < n; b++) {
        REAL *img = x + b * h * w * c;
        for (size_t yy = 0; yy < h; yy++)
            for (size_t xx = 0; xx < w; xx++) {
                size_t kx0, kx1;
                R(patch_span)(xx, w, k, pad, &kx0, &kx1);
                for (size_t ky = 0; ky < k; ky++, col += kc) {
                    if (yy + ky < pad || yy + ky - pad >= h)
                        continue;
                    REAL *dst = img + ((yy + ky - pad) * w + xx + kx0 - pad) * c;
                    const REAL *src = col + kx0 * c;
                    R(add_to)(dst, src, (kx1 - kx0) * c);
                }
            }
    }
}

/* Max pooling, of x or of relu(x + bias[ch]). Per window and channel: the
 * first maximum in window order; once a NaN is seen it is the maximum
 * (`!(v <= best)` is true for a NaN v, and a NaN best is never replaced). The
 * loops run over the channels of one pixel at a time (contiguous in NHWC), the
 * window's first pixel initialising, the others comparing; the selects are
 * unconditional stores so that they vectorise. */
static inline REAL R(pool_val)(const REAL *restrict bias, bool bias_relu, REAL v, size_t ch)
{
    return bias_relu ? R(relu1)(v + bias[ch]) : v;
}

static inline void R(pool_take)(REAL v, uint32_t at, REAL *restrict best, uint32_t *restrict arg)
{
    REAL cur = *best;
    /* an all-ones mask and bit selects rather than && and ?: on the index:
     * no branch, so the loop vectorises */
    uint32_t take = -(uint32_t)(!(v <= cur)) & -(uint32_t)(cur == cur);
    *best = take ? v : cur;
    *arg = (at & take) | (*arg & ~take);
}

/* One window pixel px (c channels, at offset `at` in its image) into the
 * running maxima y/idx: first = true initialises them. */
static inline __attribute__((always_inline)) void
R(pool_pixel)(const REAL *restrict px, const REAL *restrict bias, bool bias_relu, bool first,
              uint32_t at, size_t c, REAL *restrict y, uint32_t *restrict idx)
{
    size_t ch = 0;
    if (first) {
        for (const size_t cv = mlt_cpu_vec_floor(c); ch < cv; ch++) {
            y[ch] = R(pool_val)(bias, bias_relu, px[ch], ch);
            idx[ch] = at + (uint32_t)ch;
        }
        for (; ch < c; ch++) {
            y[ch] = R(pool_val)(bias, bias_relu, px[ch], ch);
            idx[ch] = at + (uint32_t)ch;
        }
        return;
    }
    for (const size_t cv = mlt_cpu_vec_floor(c); ch < cv; ch++)
        R(pool_take)(R(pool_val)(bias, bias_relu, px[ch], ch), at + (uint32_t)ch, &y[ch], &idx[ch]);
    for (; ch < c; ch++)
        R(pool_take)(R(pool_val)(bias, bias_relu, px[ch], ch), at + (uint32_t)ch, &y[ch], &idx[ch]);
}

/* The four specialisations, out of line so that each channel loop vectorises
 * (inlined into the window loops, GCC loses what restrict told it). */
static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(pool_first)(const REAL *restrict px, uint32_t at,
                                                          size_t c, REAL *restrict y,
                                                          uint32_t *restrict idx)
{
    R(pool_pixel)(px, NULL, false, true, at, c, y, idx);
}

static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(pool_next)(const REAL *restrict px, uint32_t at,
                                                         size_t c, REAL *restrict y,
                                                         uint32_t *restrict idx)
{
    R(pool_pixel)(px, NULL, false, false, at, c, y, idx);
}

static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(pool_first_br)(const REAL *restrict px,
                                                             const REAL *restrict bias, uint32_t at,
                                                             size_t c, REAL *restrict y,
                                                             uint32_t *restrict idx)
{
    R(pool_pixel)(px, bias, true, true, at, c, y, idx);
}

static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(pool_next_br)(const REAL *restrict px,
                                                            const REAL *restrict bias, uint32_t at,
                                                            size_t c, REAL *restrict y,
                                                            uint32_t *restrict idx)
{
    R(pool_pixel)(px, bias, true, false, at, c, y, idx);
}

/* Max pooling of x, or of relu(x + bias) when bias is not NULL. */
static void R(pool_fwd)(const REAL *x, const REAL *bias, size_t n, size_t h, size_t w, size_t c,
                        size_t p, REAL *y, uint32_t *idx)
{
    assert(p > 0);
    const size_t oh = h / p, ow = w / p, hwc = h * w * c;
    assert(hwc <= UINT32_MAX);
    for (size_t b = 0; b < n; b++) {
        const REAL *img = x + b * hwc;
        for (size_t oy = 0; oy < oh; oy++)
            for (size_t ox = 0; ox < ow; ox++, y += c, idx += c)
                for (size_t dy = 0; dy < p; dy++)
                    for (size_t dx = 0; dx < p; dx++) {
                        const size_t off = ((oy * p + dy) * w + ox * p + dx) * c;
                        const bool first = dy == 0 && dx == 0;
                        if (bias == NULL && first)
                            R(pool_first)(img + off, (uint32_t)off, c, y, idx);
                        else if (bias == NULL)
                            R(pool_next)(img + off, (uint32_t)off, c, y, idx);
                        else if (first)
                            R(pool_first_br)(img + off, bias, (uint32_t)off, c, y, idx);
                        else
                            R(pool_next_br)(img + off, bias, (uint32_t)off, c, y, idx);
                    }
    }
}

void R(mlt_cpu_maxpool)(const REAL *x, size_t n, size_t h, size_t w, size_t c, size_t p, REAL *y,
                        uint32_t *idx)
{
    R(pool_fwd)(x, NULL, n, h, w, c, p, y, idx);
}

void R(mlt_cpu_bias_relu_maxpool)(const REAL *z, const REAL *bias, size_t n, size_t h, size_t w,
                                  size_t c, size_t p, REAL *y, uint32_t *idx)
{
    R(pool_fwd)(z, bias, n, h, w, c, p, y, idx);
}

void R(mlt_cpu_maxpool_backward)(const REAL *restrict dy, const uint32_t *restrict idx, size_t n,
                                 size_t h, size_t w, size_t c, size_t p, REAL *restrict dx)
{
    const size_t hwc = h * w * c, per_img = (h / p) * (w / p) * c;
    memset(dx, 0, n * hwc * sizeof *dx);
    /* windows do not overlap, so each dx element gets at most one dy */
    for (size_t b = 0; b < n; b++, dx += hwc)
        for (size_t j = 0; j < per_img; j++, dy++, idx++)
            dx[*idx] = *dy;
}

/* Direct convolution for thin patches (small k*k*c). The sums are kept in
 * registers: a 64-byte vector of output channels (GCC/clang vector extension:
 * one AVX-512 register, two AVX2 or four SSE2 ones in the respective clones)
 * accumulates over all the taps of a pixel (forward) or over a row of pixels
 * (weight gradient). */
typedef REAL R(vec) __attribute__((vector_size(64)));
#define R_LANES (64 / sizeof(REAL))

/* Unaligned vector load and store (macros: a vector passed by value through
 * a function would change the ABI between the clones). */
#define R_VLOAD(v, p)  memcpy(&(v), (p), sizeof(v))
#define R_VSTORE(p, v) memcpy((p), &(v), sizeof(v))

/* Pixels per step of the forward row loop: independent accumulators, so that
 * the adds do not wait on each other's latency. */
#define R_PIX 4 /* the accumulators a0..a3 below */

/* One output image row yy: zrow[xx][o] = sum over the taps inside the image
 * of wt[(ky*k + kx)*c + i][o] * x[yy+ky-pad][xx+kx-pad][i]; overwritten.
 * Interior pixels go R_PIX at a time (same taps, shifted by c), the pixels
 * near the left and right edges one at a time. */
static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(thin_fwd_row)(const REAL *restrict img, size_t h,
                                                            size_t w, size_t c, size_t k, size_t yy,
                                                            const REAL *restrict wt, size_t co,
                                                            REAL *restrict zrow)
{
    const size_t pad = (k - 1) / 2, ky0 = yy < pad ? pad - yy : 0,
                 ky1 = yy + k - pad > h ? h + pad - yy : k;
    size_t xx = 0;
    while (xx < w) {
        size_t kx0, kx1, o = 0;
        R(patch_span)(xx, w, k, pad, &kx0, &kx1);
        REAL *z = zrow + xx * co;
        if (xx >= pad && xx + R_PIX - 1 + pad < w) { /* R_PIX whole patches */
            for (; o + R_LANES <= co; o += R_LANES) {
                R(vec) a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                for (size_t ky = ky0; ky < ky1; ky++) {
                    const REAL *src = img + ((yy + ky - pad) * w + xx - pad) * c;
                    const REAL *wr = wt + ky * k * c * co + o;
                    for (size_t t = 0; t < k * c; t++) {
                        R(vec) wv;
                        R_VLOAD(wv, wr + t * co);
                        a0 += wv * src[t];
                        a1 += wv * src[t + c];
                        a2 += wv * src[t + 2 * c];
                        a3 += wv * src[t + 3 * c];
                    }
                }
                R_VSTORE(z + o, a0);
                R_VSTORE(z + co + o, a1);
                R_VSTORE(z + 2 * co + o, a2);
                R_VSTORE(z + 3 * co + o, a3);
            }
            for (; o < co; o++)
                for (size_t j = 0; j < R_PIX; j++) {
                    REAL acc = 0;
                    for (size_t ky = ky0; ky < ky1; ky++) {
                        const REAL *src = img + ((yy + ky - pad) * w + xx + j - pad) * c;
                        const REAL *wr = wt + ky * k * c * co + o;
                        for (size_t t = 0; t < k * c; t++)
                            acc += wr[t * co] * src[t];
                    }
                    z[j * co + o] = acc;
                }
            xx += R_PIX;
            continue;
        }
        const size_t run = (kx1 - kx0) * c; /* taps per patch row, contiguous in x */
        for (; o + R_LANES <= co; o += R_LANES) {
            R(vec) acc = {0};
            for (size_t ky = ky0; ky < ky1; ky++) {
                const REAL *src = img + ((yy + ky - pad) * w + xx + kx0 - pad) * c;
                const REAL *wr = wt + (ky * k + kx0) * c * co + o;
                for (size_t t = 0; t < run; t++) {
                    R(vec) wv;
                    R_VLOAD(wv, wr + t * co);
                    acc += wv * src[t];
                }
            }
            R_VSTORE(z + o, acc);
        }
        for (; o < co; o++) {
            REAL acc = 0;
            for (size_t ky = ky0; ky < ky1; ky++) {
                const REAL *src = img + ((yy + ky - pad) * w + xx + kx0 - pad) * c;
                const REAL *wr = wt + (ky * k + kx0) * c * co + o;
                for (size_t t = 0; t < run; t++)
                    acc += wr[t * co] * src[t];
            }
            z[o] = acc;
        }
        xx++;
    }
}

/* The weight gradient of the same for one row: dwt[(ky*k + kx)*c + i][o] +=
 * sum over xx of dzrow[xx][o] * x[yy+ky-pad][xx+kx-pad][i], the sum over xx
 * split over four accumulators (again for latency). */
static MLT_CPU_NOINLINE MLT_CPU_CLONES void R(thin_dw_row)(const REAL *restrict img, size_t h,
                                                           size_t w, size_t c, size_t k, size_t yy,
                                                           const REAL *restrict dzrow, size_t co,
                                                           REAL *restrict dwt)
{
    const size_t pad = (k - 1) / 2, ky0 = yy < pad ? pad - yy : 0,
                 ky1 = yy + k - pad > h ? h + pad - yy : k;
    for (size_t ky = ky0; ky < ky1; ky++) {
        const REAL *xrow = img + (yy + ky - pad) * w * c;
        for (size_t kx = 0; kx < k; kx++) {
            /* the pixels whose tap kx is inside the row: pad <= xx + kx < w + pad */
            const size_t x0 = kx < pad ? pad - kx : 0, x1 = w + pad - kx < w ? w + pad - kx : w;
            for (size_t i = 0; i < c; i++) {
                REAL *dr = dwt + ((ky * k + kx) * c + i) * co;
                const REAL *src = xrow + (x0 + kx - pad) * c + i; /* src[(xx - x0) * c] */
                size_t o = 0;
                for (; o + R_LANES <= co; o += R_LANES) {
                    R(vec) a0, a1 = {0}, a2 = {0}, a3 = {0}, d0, d1, d2, d3;
                    R_VLOAD(a0, dr + o);
                    size_t xx = x0;
                    for (; xx + 4 <= x1; xx += 4) {
                        const REAL *s4 = src + (xx - x0) * c;
                        R_VLOAD(d0, dzrow + xx * co + o);
                        R_VLOAD(d1, dzrow + (xx + 1) * co + o);
                        R_VLOAD(d2, dzrow + (xx + 2) * co + o);
                        R_VLOAD(d3, dzrow + (xx + 3) * co + o);
                        a0 += d0 * s4[0];
                        a1 += d1 * s4[c];
                        a2 += d2 * s4[2 * c];
                        a3 += d3 * s4[3 * c];
                    }
                    for (; xx < x1; xx++) {
                        R_VLOAD(d0, dzrow + xx * co + o);
                        a0 += d0 * src[(xx - x0) * c];
                    }
                    a0 += (a1 + a2) + a3;
                    R_VSTORE(dr + o, a0);
                }
                for (; o < co; o++) {
                    REAL acc = dr[o];
                    for (size_t xx = x0; xx < x1; xx++)
                        acc += dzrow[xx * co + o] * src[(xx - x0) * c];
                    dr[o] = acc;
                }
            }
        }
    }
}

void R(mlt_cpu_conv_thin)(const REAL *x, size_t n, size_t h, size_t w, size_t c, size_t k,
                          const REAL *wt, size_t co, REAL *z)
{
    assert(k % 2 == 1);
    for (size_t b = 0; b < n; b++) {
        const REAL *img = x + b * h * w * c;
        for (size_t yy = 0; yy < h; yy++, z += w * co)
            R(thin_fwd_row)(img, h, w, c, k, yy, wt, co, z);
    }
}
#undef R_LANES
#undef R_PIX
#undef R_VLOAD
#undef R_VSTORE

void R(mlt_cpu_conv_thin_dw)(const REAL *x, const REAL *dz, size_t n, size_t h, size_t w, size_t c,
                             size_t k, size_t co, REAL *dwt, bool accumulate)
{
    assert(k % 2 == 1);
    if (!accumulate)
        memset(dwt, 0, k * k * c * co * sizeof *dwt);
    for (size_t b = 0; b < n; b++) {
        const REAL *img = x + b * h * w * c;
        for (size_t yy = 0; yy < h; yy++, dz += w * co)
            R(thin_dw_row)(img, h, w, c, k, yy, dz, co, dwt);
    }
}

void R(mlt_cpu_transpose)(const REAL *restrict a, size_t rows, size_t cols, REAL *restrict t)
{
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++)
            t[j * rows + r] = a[r * cols + j];
}

void R(mlt_cpu_nchw_to_nhwc)(const REAL *restrict x, size_t n, size_t c, size_t h, size_t w,
                             REAL *restrict y)
{
    const size_t hw = h * w;
    for (size_t b = 0; b < n; b++, x += c * hw, y += c * hw)
        for (size_t ch = 0; ch < c; ch++)
            for (size_t i = 0; i < hw; i++)
                y[i * c + ch] = x[ch * hw + i];
}

REAL R(mlt_cpu_mf_predict)(const REAL *u, const REAL *v, size_t rank)
{
    REAL s = 0;
    for (size_t j = 0; j < rank; j++)
        s += u[j] * v[j];
    return s;
}

double R(mlt_cpu_mf_grad)(const REAL *U, const REAL *V, size_t rank, const uint32_t *users,
                          const uint32_t *items, const REAL *r, size_t batch, REAL l2, REAL scale,
                          REAL *dU, REAL *dV)
{
    double sse = 0;
    const REAL two = 2;
    for (size_t i = 0; i < batch; i++) {
        const REAL *u = U + (size_t)users[i] * rank, *v = V + (size_t)items[i] * rank;
        REAL *du = dU + (size_t)users[i] * rank, *dv = dV + (size_t)items[i] * rank;
        REAL e = R(mlt_cpu_mf_predict)(u, v, rank) - r[i];
        sse += (double)e * (double)e;
        REAL ge = scale * two * e, gl = scale * two * l2;
        for (size_t j = 0; j < rank; j++) {
            REAL uj = u[j], vj = v[j];
            du[j] += ge * vj + gl * uj;
            dv[j] += ge * uj + gl * vj;
        }
    }
    return sse;
}

double R(mlt_cpu_mf_sse)(const REAL *U, const REAL *V, size_t rank, const uint32_t *users,
                         const uint32_t *items, const REAL *r, size_t n)
{
    double sse = 0;
    for (size_t i = 0; i < n; i++) {
        REAL e =
            R(mlt_cpu_mf_predict)(U + (size_t)users[i] * rank, V + (size_t)items[i] * rank, rank) -
            r[i];
        sse += (double)e * (double)e;
    }
    return sse;
}
