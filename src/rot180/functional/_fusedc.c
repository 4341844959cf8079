/* One-pass kernels for batch normalisation (+ ReLU), ReLU, 2-D max pooling and global average
 * pooling: the optional compiled helper of rot180.functional._fused (see there for the rules,
 * the derivations and when each kernel runs).
 *
 * Every kernel works on a range [first, last) of independent units (channels of an (N, C, S)
 * array, planes of a (P, ...) array, or elements of a flat array) with the GIL released, so that
 * Python threads (rot180.functional._parallel) can run disjoint ranges at once. Sums run in an
 * order fixed by the loops (per unit, in memory order, vectorised in a fixed pattern), never by
 * threads or timing; they accumulate in float64 whatever the data's dtype.
 *
 *   bn_stats       mean, biased var of each channel in one read of x: sums of x - K with the
 *                  shift K = the channel's first value (no catastrophic cancellation when the
 *                  mean is large against the spread: var = E[(x-K)^2] - E[x-K]^2 with x-K small)
 *   bn_apply       y = (x - mean) * scale + shift, optionally max(., 0), one read and one write
 *   bn_grad_sums   s1 = sum v, s2 = sum v (x - mean), v = dy (or dy [y > 0] with y given)
 *   bn_grad_apply  dx = a v + b (x - mean) + c per channel, one pass
 *   relu, relu_grad               y = max(x, 0) (NaN kept); dx = dy where not x <= 0 (PyTorch:
 *                                 a NaN input passes the gradient; a selection, never 0 * inf)
 *   max_pool2d, max_pool2d_grad   PyTorch's max pooling with int64 argmax (first maximum, last
 *                                 NaN, padding never chosen); the gradient routes dy to it
 *   plane_mean, plane_fill        global average pooling and its gradient
 *
 * The Python functions take keyword arguments, read every size from the arrays' own shapes and
 * check that they agree (ValueError / TypeError naming the argument) before anything is touched.
 */
#include "_glue.h" /* first: Python.h; the glue shared by the helpers, and MULTI */
#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* --- argument checks ------------------------------------------------------------------------ */

/* An array argument (the steps of get_float_array, _glue.h, with this helper's dtype rules and
 * messages), C-contiguous, writable if asked, of `ndim` axes, whose length is the shape's.
 * want: 0 = float32 or float64, matching *kind once set; 'D' = float64; 'L' = int64. */
static int get_array(Arg *a, PyObject *obj, const char *fn, const char *name, int ndim,
                     const char *axes, int writable, char want, char *kind)
{
    if (get_buffer(a, obj, fn, name, 0, "numpy array") < 0) return -1;
    const Py_buffer *v = &a->view;
    const char k = format_code(v);
    const int is_int64 = (k == 'l' || k == 'q') && v->itemsize == 8;
    if (want == 'L' ? !is_int64 : want == 'D' ? k != 'd' :
        (!(k == 'f' || k == 'd') || (*kind && k != *kind))) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s, got format '%s'", fn, name,
                     want == 'L' ? "int64" : want == 'D' ? "float64" :
                     *kind ? (*kind == 'f' ? "float32 (as x)" : "float64 (as x)") :
                     "float32 or float64", format_of(v));
        return -1;
    }
    if (!want) *kind = k;
    if (check_layout(a, fn, name, ndim, axes, ARG_CONTIGUOUS | (writable ? ARG_WRITABLE : 0)) < 0)
        return -1;
    Py_ssize_t n = v->itemsize;
    for (int i = 0; i < ndim; i++)
        if (v->shape[i] < 0 || __builtin_mul_overflow(n, v->shape[i], &n)) {
            PyErr_Format(PyExc_OverflowError, "%s: %s is too large", fn, name);
            return -1;
        }
    return holds(a, fn, name, n);
}

/* Array b must have array a's shape (both already checked, with the same number of axes). */
static int same_shape(const char *fn, const Arg *a, const char *an, const Arg *b, const char *bn)
{
    for (int i = 0; i < a->view.ndim; i++)
        if (a->view.shape[i] != b->view.shape[i]) {
            PyErr_Format(PyExc_ValueError, "%s: %s has size %zd on axis %d, expected %zd as %s",
                         fn, bn, b->view.shape[i], i, a->view.shape[i], an);
            return -1;
        }
    return 0;
}

/* A per-unit vector (C,) or (P,) of length n. */
static int length(const char *fn, const Arg *a, const char *name, Py_ssize_t n, const char *of)
{
    if (a->view.shape[0] == n) return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s must have length %zd (%s), got %zd", fn, name, n, of,
                 a->view.shape[0]);
    return -1;
}

/* [first, last) inside [0, n); last = -1 means n. */
static int unit_range(const char *fn, Py_ssize_t *first, Py_ssize_t *last, Py_ssize_t n)
{
    if (*last == -1) *last = n;
    if (*first < 0 || *first > *last || *last > n) {
        PyErr_Format(PyExc_ValueError, "%s: first = %zd and last = %zd must satisfy 0 <= first <= "
                     "last <= %zd", fn, *first, *last, n);
        return -1;
    }
    return 0;
}

/* --- kernels, once per dtype ---------------------------------------------------------------- */

/* Rows shorter than this are summed side by side (short_rows): measured on (64, 256, 16) float32,
 * 1 MiB, the statistics took 0.20 ms row by row (a horizontal sum per 16 values). */
#define SHORT_ROWS 64

#define KERNELS(T, SFX)                                                                          \
/* Rows (n, c) in memory order (n outer), each row's sums added to its channel's: sequential   \
 * reads also when rows are short (4x4 planes). mean / var hold the running sums meanwhile. */  \
MULTI static void bn_stats_rows_##SFX(const T *x, double *mean, double *var, Py_ssize_t N,      \
                                      Py_ssize_t C, Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1) \
{                                                                                                \
    const double M = (double)N * (double)S;                                                      \
    for (Py_ssize_t c = c0; c < c1; c++) mean[c] = var[c] = 0;                                   \
    for (Py_ssize_t n = 0; n < N; n++)                                                           \
        for (Py_ssize_t c = c0; c < c1; c++) {                                                   \
            const double K = x[c * S];                                                           \
            const T *p = x + (n * C + c) * S;                                                    \
            double s1 = 0, s2 = 0;                                                               \
            _Pragma("omp simd reduction(+ : s1, s2)")                                            \
            for (Py_ssize_t i = 0; i < S; i++) {                                                 \
                const double d = (double)p[i] - K;                                               \
                s1 += d;                                                                         \
                s2 += d * d;                                                                     \
            }                                                                                    \
            mean[c] += s1;                                                                       \
            var[c] += s2;                                                                        \
        }                                                                                        \
    for (Py_ssize_t c = c0; c < c1; c++) {                                                       \
        const double m1 = mean[c] / M, v = var[c] / M - m1 * m1;                                 \
        mean[c] = x[c * S] + m1;                                                                 \
        var[c] = v > 0 ? v : (v == v ? 0 : v);                                                   \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
MULTI static void bn_apply_##SFX(const T *x, T *y, const T *mean, const T *scale,               \
                                 const T *shift, int relu, Py_ssize_t N, Py_ssize_t C,          \
                                 Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1)                    \
{                                                                                                \
    for (Py_ssize_t n = 0; n < N; n++)                                                           \
        for (Py_ssize_t c = c0; c < c1; c++) {                                                   \
            const T m = mean[c], a = scale[c], b = shift[c];                                     \
            const T *p = x + (n * C + c) * S;                                                    \
            T *q = y + (n * C + c) * S;                                                          \
            if (relu)                                                                            \
                for (Py_ssize_t i = 0; i < S; i++) {                                             \
                    const T v = (p[i] - m) * a + b;                                              \
                    q[i] = v < 0 ? (T)0 : v;                                                     \
                }                                                                                \
            else                                                                                 \
                for (Py_ssize_t i = 0; i < S; i++) q[i] = (p[i] - m) * a + b;                    \
        }                                                                                        \
}                                                                                                \
                                                                                                 \
/* v = dy [y > 0] (y given) or dy; one function per case: GCC vectorises neither loop of a     \
 * function holding both. */                                                                    \
MULTI static void bn_grad_sums_masked_rows_##SFX(const T *dy, const T *x, const T *y,                \
                                            const T *mean, double *o1, double *o2, Py_ssize_t N,\
                                            Py_ssize_t C, Py_ssize_t S, Py_ssize_t c0,          \
                                            Py_ssize_t c1)                                      \
{                                                                                                \
    for (Py_ssize_t c = c0; c < c1; c++) o1[c] = o2[c] = 0;                                      \
    for (Py_ssize_t n = 0; n < N; n++)                                                           \
        for (Py_ssize_t c = c0; c < c1; c++) {                                                   \
            const double m = mean[c];                                                            \
            const Py_ssize_t o = (n * C + c) * S;                                                \
            const T *g = dy + o, *p = x + o, *r = y + o;                                         \
            double s1 = 0, s2 = 0;                                                               \
            _Pragma("omp simd reduction(+ : s1, s2)")                                            \
            for (Py_ssize_t i = 0; i < S; i++) {                                                 \
                /* the mask in double: GCC 12 vectorises a float mask on double lanes badly */  \
                const double rd = r[i], gd = g[i], v = rd <= 0 ? 0.0 : gd;                       \
                s1 += v;                                                                         \
                s2 += v * ((double)p[i] - m);                                                    \
            }                                                                                    \
            o1[c] += s1;                                                                         \
            o2[c] += s2;                                                                         \
        }                                                                                        \
}                                                                                                \
                                                                                                 \
MULTI static void bn_grad_sums_plain_rows_##SFX(const T *dy, const T *x, const T *mean, double *o1,  \
                                           double *o2, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,\
                                           Py_ssize_t c0, Py_ssize_t c1)                        \
{                                                                                                \
    for (Py_ssize_t c = c0; c < c1; c++) o1[c] = o2[c] = 0;                                      \
    for (Py_ssize_t n = 0; n < N; n++)                                                           \
        for (Py_ssize_t c = c0; c < c1; c++) {                                                   \
            const double m = mean[c];                                                            \
            const Py_ssize_t o = (n * C + c) * S;                                                \
            const T *g = dy + o, *p = x + o;                                                     \
            double s1 = 0, s2 = 0;                                                               \
            _Pragma("omp simd reduction(+ : s1, s2)")                                            \
            for (Py_ssize_t i = 0; i < S; i++) {                                                 \
                const double v = g[i];                                                           \
                s1 += v;                                                                         \
                s2 += v * ((double)p[i] - m);                                                    \
            }                                                                                    \
            o1[c] += s1;                                                                         \
            o2[c] += s2;                                                                         \
        }                                                                                        \
}                                                                                                \
                                                                                                 \
/* Short rows (S < SHORT_ROWS, e.g. 4x4 planes): a horizontal sum per row would cost more than  \
 * the row; instead the rows of one sample, c0..c1 side by side (contiguous), are added element \
 * by element into float64 accumulators a1, a2 of (c1 - c0) S entries, summed per channel at    \
 * the end. shift[j]: the value subtracted from element j (its channel's K or mean). */         \
MULTI static void short_sums_##SFX(const T *dy, const T *x, const T *y, const double *shift,    \
                                   double *a1, double *a2, int squares, Py_ssize_t N,           \
                                   Py_ssize_t C, Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1)    \
{                                                                                                \
    const Py_ssize_t L = (c1 - c0) * S;                                                          \
    for (Py_ssize_t n = 0; n < N; n++) {                                                         \
        const Py_ssize_t o = (n * C + c0) * S;                                                   \
        const T *p = x + o;                                                                      \
        if (squares) /* statistics: a1 += x - K, a2 += (x - K)^2 */                              \
            for (Py_ssize_t j = 0; j < L; j++) {                                                 \
                const double d = (double)p[j] - shift[j];                                        \
                a1[j] += d;                                                                      \
                a2[j] += d * d;                                                                  \
            }                                                                                    \
        else if (y) { /* gradient sums, masked: v = dy [y > 0] */                                \
            const T *g = dy + o, *r = y + o;                                                     \
            for (Py_ssize_t j = 0; j < L; j++) {                                                 \
                const double rd = r[j], gd = g[j], v = rd <= 0 ? 0.0 : gd;                       \
                a1[j] += v;                                                                      \
                a2[j] += v * ((double)p[j] - shift[j]);                                          \
            }                                                                                    \
        } else {                                                                                 \
            const T *g = dy + o;                                                                 \
            for (Py_ssize_t j = 0; j < L; j++) {                                                 \
                const double v = g[j];                                                           \
                a1[j] += v;                                                                      \
                a2[j] += v * ((double)p[j] - shift[j]);                                          \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* The short-row sums into o1, o2 (per channel); 0, or -1 if out of memory (nothing written). */ \
static int short_rows_##SFX(const T *dy, const T *x, const T *y, const T *mean, double *o1,     \
                            double *o2, int stats, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,    \
                            Py_ssize_t c0, Py_ssize_t c1)                                       \
{                                                                                                \
    const Py_ssize_t L = (c1 - c0) * S;                                                          \
    double *buf = calloc((size_t)(3 * L + 1), sizeof(double));                                   \
    if (!buf) return -1;                                                                         \
    double *shift = buf, *a1 = buf + L, *a2 = buf + 2 * L;                                       \
    for (Py_ssize_t j = 0; j < L; j++) {                                                         \
        const Py_ssize_t c = c0 + j / S;                                                         \
        shift[j] = stats ? (double)x[c * S] : (double)mean[c];                                   \
    }                                                                                            \
    short_sums_##SFX(dy, x, y, shift, a1, a2, stats, N, C, S, c0, c1);                          \
    for (Py_ssize_t c = c0; c < c1; c++) {                                                       \
        double s1 = 0, s2 = 0;                                                                   \
        for (Py_ssize_t i = 0; i < S; i++) {                                                     \
            s1 += a1[(c - c0) * S + i];                                                          \
            s2 += a2[(c - c0) * S + i];                                                          \
        }                                                                                        \
        o1[c] = s1;                                                                              \
        o2[c] = s2;                                                                              \
    }                                                                                            \
    free(buf);                                                                                   \
    return 0;                                                                                    \
}                                                                                                \
                                                                                                 \
static void bn_stats_##SFX(const T *x, double *mean, double *var, Py_ssize_t N, Py_ssize_t C,   \
                           Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1)                          \
{                                                                                                \
    if (S >= SHORT_ROWS || short_rows_##SFX(NULL, x, NULL, NULL, mean, var, 1, N, C, S, c0, c1)) { \
        bn_stats_rows_##SFX(x, mean, var, N, C, S, c0, c1);                                      \
        return;                                                                                  \
    }                                                                                            \
    const double M = (double)N * (double)S;                                                      \
    for (Py_ssize_t c = c0; c < c1; c++) {                                                       \
        const double m1 = mean[c] / M, v = var[c] / M - m1 * m1;                                 \
        mean[c] = x[c * S] + m1;                                                                 \
        var[c] = v > 0 ? v : (v == v ? 0 : v);                                                   \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
static void bn_grad_sums_##SFX(const T *dy, const T *x, const T *y, const T *mean, double *o1,  \
                               double *o2, Py_ssize_t N, Py_ssize_t C, Py_ssize_t S,            \
                               Py_ssize_t c0, Py_ssize_t c1)                                    \
{                                                                                                \
    if (S < SHORT_ROWS && !short_rows_##SFX(dy, x, y, mean, o1, o2, 0, N, C, S, c0, c1)) return; \
    if (y) bn_grad_sums_masked_rows_##SFX(dy, x, y, mean, o1, o2, N, C, S, c0, c1);             \
    else bn_grad_sums_plain_rows_##SFX(dy, x, mean, o1, o2, N, C, S, c0, c1);                   \
}                                                                                                \
                                                                                                 \
MULTI static void bn_grad_apply_##SFX(const T *dy, const T *x, const T *y, T *dx, const T *mean,\
                                      const T *ca, const T *cb, const T *cc, Py_ssize_t N,      \
                                      Py_ssize_t C, Py_ssize_t S, Py_ssize_t c0, Py_ssize_t c1) \
{                                                                                                \
    for (Py_ssize_t n = 0; n < N; n++)                                                           \
        for (Py_ssize_t c = c0; c < c1; c++) {                                                   \
            const T m = mean[c], a = ca[c], b = cb[c], k = cc[c];                                \
            const Py_ssize_t o = (n * C + c) * S;                                                \
            const T *g = dy + o, *p = x + o;                                                     \
            T *q = dx + o;                                                                       \
            if (y) {                                                                             \
                const T *r = y + o;                                                              \
                for (Py_ssize_t i = 0; i < S; i++) {                                             \
                    const T gv = r[i] <= 0 ? (T)0 : g[i];                                        \
                    q[i] = a * gv + b * (p[i] - m) + k;                                          \
                }                                                                                \
            } else                                                                               \
                for (Py_ssize_t i = 0; i < S; i++) q[i] = a * g[i] + b * (p[i] - m) + k;         \
        }                                                                                        \
}                                                                                                \
                                                                                                 \
MULTI static void relu_##SFX(const T *x, T *y, Py_ssize_t i0, Py_ssize_t i1)                     \
{                                                                                                \
    for (Py_ssize_t i = i0; i < i1; i++) y[i] = x[i] < 0 ? (T)0 : x[i];                          \
}                                                                                                \
                                                                                                 \
MULTI static void relu_grad_##SFX(const T *dy, const T *x, T *dx, Py_ssize_t i0, Py_ssize_t i1)  \
{                                                                                                \
    for (Py_ssize_t i = i0; i < i1; i++) dx[i] = x[i] <= 0 ? (T)0 : dy[i];                       \
}                                                                                                \
                                                                                                 \
/* PyTorch's CPU max pooling: the window clipped to the input, -inf start, the first real cell   \
 * as the index of an all -inf window, `v > max || isnan(v)` (first maximum, last NaN). */      \
MULTI static void max_pool2d_##SFX(const T *x, T *y, int64_t *idx, Py_ssize_t H, Py_ssize_t W,  \
                             Py_ssize_t OH, Py_ssize_t OW, const Py_ssize_t *k,                 \
                             const Py_ssize_t *s, const Py_ssize_t *pad, const Py_ssize_t *d,   \
                             Py_ssize_t p0, Py_ssize_t p1)                                      \
{                                                                                                \
    const int pairs = k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && pad[0] == 0 &&        \
                      pad[1] == 0 && d[0] == 1 && d[1] == 1;                                    \
    for (Py_ssize_t p = p0; p < p1; p++) {                                                       \
        const T *xp = x + p * H * W;                                                             \
        T *yp = y + p * OH * OW;                                                                 \
        int64_t *ip = idx + p * OH * OW;                                                         \
        for (Py_ssize_t oy = 0; oy < OH; oy++) {                                                 \
            Py_ssize_t start = 0;                                                                \
            if (pairs && 2 * oy + 1 < H) {                                                       \
                const T *r0 = xp + 2 * oy * W, *r1 = r0 + W;                                     \
                start = W / 2 < OW ? W / 2 : OW;                                                 \
                const int64_t base = 2 * oy * W;                                                 \
                /* selects, not branches: GCC if-converts (vectorises) them */                  \
                for (Py_ssize_t ox = 0; ox < start; ox++) {                                      \
                    const T a = r0[2 * ox], b = r0[2 * ox + 1], c = r1[2 * ox], e = r1[2 * ox + 1];\
                    T m = a;                                                                     \
                    int64_t t = 0;                                                               \
                    const int k1 = (b > m) | (b != b);                                            \
                    m = k1 ? b : m;                                                              \
                    t = k1 ? 1 : t;                                                              \
                    const int k2 = (c > m) | (c != c);                                            \
                    m = k2 ? c : m;                                                              \
                    t = k2 ? W : t;                                                              \
                    const int k3 = (e > m) | (e != e);                                            \
                    m = k3 ? e : m;                                                              \
                    t = k3 ? W + 1 : t;                                                          \
                    yp[oy * OW + ox] = m;                                                        \
                    ip[oy * OW + ox] = base + 2 * ox + t;                                        \
                }                                                                                \
            }                                                                                    \
            Py_ssize_t h0 = oy * s[0] - pad[0];                                                  \
            Py_ssize_t h1 = h0 + (k[0] - 1) * d[0] + 1;                                          \
            if (h1 > H) h1 = H;                                                                  \
            if (h0 < 0) h0 += (-h0 + d[0] - 1) / d[0] * d[0];                                                           \
            for (Py_ssize_t ox = start; ox < OW; ox++) {                                         \
                Py_ssize_t w0 = ox * s[1] - pad[1];                                              \
                Py_ssize_t w1 = w0 + (k[1] - 1) * d[1] + 1;                                      \
                if (w1 > W) w1 = W;                                                              \
                if (w0 < 0) w0 += (-w0 + d[1] - 1) / d[1] * d[1];                                                       \
                T m = (T)-INFINITY;                                                              \
                int64_t at = h0 * W + w0;                                                        \
                for (Py_ssize_t h = h0; h < h1; h += d[0])                                       \
                    for (Py_ssize_t w = w0; w < w1; w += d[1]) {                                 \
                        const T v = xp[h * W + w];                                               \
                        const int take = (v > m) | (v != v);                                     \
                        m = take ? v : m;                                                        \
                        at = take ? h * W + w : at;                                              \
                    }                                                                            \
                yp[oy * OW + ox] = m;                                                            \
                ip[oy * OW + ox] = at;                                                           \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
/* Returns 0, or -1 when an index lies outside its plane (dx is then partly written). */        \
static int max_pool2d_grad_##SFX(const T *dy, const int64_t *idx, T *dx, Py_ssize_t HW,         \
                                 Py_ssize_t O, Py_ssize_t p0, Py_ssize_t p1)                    \
{                                                                                                \
    for (Py_ssize_t p = p0; p < p1; p++) {                                                       \
        T *q = dx + p * HW;                                                                      \
        const T *g = dy + p * O;                                                                 \
        const int64_t *ip = idx + p * O;                                                         \
        memset(q, 0, (size_t)HW * sizeof(T));                                                    \
        for (Py_ssize_t i = 0; i < O; i++) {                                                     \
            const int64_t at = ip[i];                                                            \
            if (at < 0 || at >= HW) return -1;                                                   \
            q[at] += g[i];                                                                       \
        }                                                                                        \
    }                                                                                            \
    return 0;                                                                                    \
}                                                                                                \
                                                                                                 \
/* Blocks of 256 values summed in the data's dtype (full-width vectors, 16 values a lane with    \
 * AVX-512), the blocks' sums in float64: 0.20 -> 0.12 ms on 8 MiB float32, error ~16 ulp of a   \
 * block's sum at most. */                                                                      \
MULTI static void plane_mean_##SFX(const T *x, T *y, Py_ssize_t S, Py_ssize_t p0, Py_ssize_t p1)\
{                                                                                                \
    for (Py_ssize_t p = p0; p < p1; p++) {                                                       \
        const T *xp = x + p * S;                                                                 \
        double s = 0;                                                                            \
        for (Py_ssize_t i0 = 0; i0 < S; i0 += 256) {                                             \
            const Py_ssize_t n = S - i0 < 256 ? S - i0 : 256;                                    \
            T b = 0;                                                                             \
            _Pragma("omp simd reduction(+ : b)")                                                 \
            for (Py_ssize_t i = 0; i < n; i++) b += xp[i0 + i];                                  \
            s += b;                                                                              \
        }                                                                                        \
        y[p] = (T)(s / (double)S);                                                               \
    }                                                                                            \
}                                                                                                \
                                                                                                 \
MULTI static void plane_fill_##SFX(const T *dy, T *dx, double scale, Py_ssize_t S,              \
                                   Py_ssize_t p0, Py_ssize_t p1)                                \
{                                                                                                \
    for (Py_ssize_t p = p0; p < p1; p++) {                                                       \
        const T v = (T)(dy[p] * scale);                                                          \
        T *q = dx + p * S;                                                                       \
        for (Py_ssize_t i = 0; i < S; i++) q[i] = v;                                             \
    }                                                                                            \
}

KERNELS(float, f32)
KERNELS(double, f64)

/* --- the Python functions ------------------------------------------------------------------- */

#define BUF(i) (a[i].held ? a[i].view.buf : NULL)
#define NCS "(N, C, S)"

static PyObject *py_bn_stats(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "mean", "var", "first", "last", NULL};
    static const char *fn = "bn_stats";
    PyObject *ox, *om, *ov;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    Arg a[3] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$nn", kw, &ox, &om, &ov, &first, &last))
        return NULL;
    if (get_array(&a[0], ox, fn, "x", 3, NCS, 0, 0, &kind) < 0 ||
        get_array(&a[1], om, fn, "mean", 1, "(C,)", 1, 'D', &kind) < 0 ||
        get_array(&a[2], ov, fn, "var", 1, "(C,)", 1, 'D', &kind) < 0)
        goto out;
    const Py_ssize_t N = a[0].view.shape[0], C = a[0].view.shape[1], S = a[0].view.shape[2];
    if (length(fn, &a[1], "mean", C, "x's C") < 0 || length(fn, &a[2], "var", C, "x's C") < 0 ||
        unit_range(fn, &first, &last, C) < 0)
        goto out;
    if (N == 0 || S == 0) {
        PyErr_Format(PyExc_ValueError, "%s: x must hold values, got N = %zd, S = %zd", fn, N, S);
        goto out;
    }
    BY_DTYPE(kind, bn_stats, BUF(0), BUF(1), BUF(2), N, C, S, first, last);
out:
    return finish(a, 3);
}

static PyObject *py_bn_apply(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "y", "mean", "scale", "shift", "relu", "first", "last", NULL};
    static const char *fn = "bn_apply";
    PyObject *o[5];
    Py_ssize_t first = 0, last = -1;
    int relu = 0;
    char kind = 0;
    Arg a[5] = {{.held = 0}};
    static const char *names[] = {"x", "y", "mean", "scale", "shift"};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|$pnn", kw, &o[0], &o[1], &o[2], &o[3],
                                     &o[4], &relu, &first, &last))
        return NULL;
    if (get_array(&a[0], o[0], fn, "x", 3, NCS, 0, 0, &kind) < 0 ||
        get_array(&a[1], o[1], fn, "y", 3, NCS, 1, 0, &kind) < 0 ||
        same_shape(fn, &a[0], "x", &a[1], "y") < 0)
        goto out;
    const Py_ssize_t N = a[0].view.shape[0], C = a[0].view.shape[1], S = a[0].view.shape[2];
    for (int i = 2; i < 5; i++)
        if (get_array(&a[i], o[i], fn, names[i], 1, "(C,)", 0, 0, &kind) < 0 ||
            length(fn, &a[i], names[i], C, "x's C") < 0)
            goto out;
    if (unit_range(fn, &first, &last, C) < 0) goto out;
    BY_DTYPE(kind, bn_apply, BUF(0), BUF(1), BUF(2), BUF(3), BUF(4), relu, N, C, S, first, last);
out:
    return finish(a, 5);
}

static PyObject *py_bn_grad_sums(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"dy", "x", "mean", "s1", "s2", "y", "first", "last", NULL};
    static const char *fn = "bn_grad_sums";
    PyObject *ody, *ox, *om, *o1, *o2, *oy = Py_None;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    Arg a[6] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|$Onn", kw, &ody, &ox, &om, &o1, &o2, &oy,
                                     &first, &last))
        return NULL;
    if (get_array(&a[0], ody, fn, "dy", 3, NCS, 0, 0, &kind) < 0 ||
        get_array(&a[1], ox, fn, "x", 3, NCS, 0, 0, &kind) < 0 ||
        same_shape(fn, &a[0], "dy", &a[1], "x") < 0 ||
        (oy != Py_None && (get_array(&a[5], oy, fn, "y", 3, NCS, 0, 0, &kind) < 0 ||
                           same_shape(fn, &a[0], "dy", &a[5], "y") < 0)))
        goto out;
    const Py_ssize_t N = a[0].view.shape[0], C = a[0].view.shape[1], S = a[0].view.shape[2];
    if (get_array(&a[2], om, fn, "mean", 1, "(C,)", 0, 0, &kind) < 0 ||
        get_array(&a[3], o1, fn, "s1", 1, "(C,)", 1, 'D', &kind) < 0 ||
        get_array(&a[4], o2, fn, "s2", 1, "(C,)", 1, 'D', &kind) < 0 ||
        length(fn, &a[2], "mean", C, "x's C") < 0 || length(fn, &a[3], "s1", C, "x's C") < 0 ||
        length(fn, &a[4], "s2", C, "x's C") < 0 || unit_range(fn, &first, &last, C) < 0)
        goto out;
    BY_DTYPE(kind, bn_grad_sums, BUF(0), BUF(1), BUF(5), BUF(2), BUF(3), BUF(4), N, C, S, first,
                                 last);
out:
    return finish(a, 6);
}

static PyObject *py_bn_grad_apply(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"dy", "x", "dx", "mean", "a", "b", "c", "y", "first", "last", NULL};
    static const char *fn = "bn_grad_apply";
    static const char *names[] = {"dy", "x", "dx", "mean", "a", "b", "c", "y"};
    PyObject *o[8];
    o[7] = Py_None;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    Arg a[8] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOO|$Onn", kw, &o[0], &o[1], &o[2], &o[3],
                                     &o[4], &o[5], &o[6], &o[7], &first, &last))
        return NULL;
    for (int i = 0; i < 3; i++)
        if (get_array(&a[i], o[i], fn, names[i], 3, NCS, i == 2, 0, &kind) < 0 ||
            same_shape(fn, &a[0], "dy", &a[i], names[i]) < 0)
            goto out;
    if (o[7] != Py_None && (get_array(&a[7], o[7], fn, "y", 3, NCS, 0, 0, &kind) < 0 ||
                            same_shape(fn, &a[0], "dy", &a[7], "y") < 0))
        goto out;
    const Py_ssize_t N = a[0].view.shape[0], C = a[0].view.shape[1], S = a[0].view.shape[2];
    for (int i = 3; i < 7; i++)
        if (get_array(&a[i], o[i], fn, names[i], 1, "(C,)", 0, 0, &kind) < 0 ||
            length(fn, &a[i], names[i], C, "dy's C") < 0)
            goto out;
    if (unit_range(fn, &first, &last, C) < 0) goto out;
    BY_DTYPE(kind, bn_grad_apply, BUF(0), BUF(1), BUF(7), BUF(2), BUF(3), BUF(4), BUF(5), BUF(6), N,
                                  C, S, first, last);
out:
    return finish(a, 8);
}

/* relu(x, y) and relu_grad(dy, x, dx): flat arrays of one length. */
static PyObject *elementwise(PyObject *args, PyObject *kwds, int grad)
{
    static char *kw1[] = {"x", "y", "first", "last", NULL};
    static char *kw2[] = {"dy", "x", "dx", "first", "last", NULL};
    const char *fn = grad ? "relu_grad" : "relu";
    PyObject *o[3] = {NULL, NULL, NULL};
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    Arg a[3] = {{.held = 0}};
    const int n = grad ? 3 : 2;
    const char **names = grad ? (const char *[]){"dy", "x", "dx"} : (const char *[]){"x", "y"};
    if (grad ? !PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$nn", kw2, &o[0], &o[1], &o[2],
                                            &first, &last)
             : !PyArg_ParseTupleAndKeywords(args, kwds, "OO|$nn", kw1, &o[0], &o[1], &first,
                                            &last))
        return NULL;
    for (int i = 0; i < n; i++)
        if (get_array(&a[i], o[i], fn, names[i], 1, "(L,)", i == n - 1, 0, &kind) < 0 ||
            same_shape(fn, &a[0], names[0], &a[i], names[i]) < 0)
            goto out;
    if (unit_range(fn, &first, &last, a[0].view.shape[0]) < 0) goto out;
    if (grad) BY_DTYPE(kind, relu_grad, BUF(0), BUF(1), BUF(2), first, last);
    else BY_DTYPE(kind, relu, BUF(0), BUF(1), first, last);
out:
    return finish(a, 3);
}

static PyObject *py_relu(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    return elementwise(args, kwds, 0);
}

static PyObject *py_relu_grad(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    return elementwise(args, kwds, 1);
}

/* A pair of ints (a tuple of 2), each >= low. */
static int get_pair(PyObject *obj, Py_ssize_t *out, Py_ssize_t low, const char *fn,
                    const char *name)
{
    if (!obj || !PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 2) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a tuple of 2 ints", fn, name);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        out[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(obj, i));
        if (out[i] == -1 && PyErr_Occurred()) return -1;
        if (out[i] < low) {
            PyErr_Format(PyExc_ValueError, "%s: %s entries must be >= %zd, got %zd", fn, name,
                         low, out[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *py_max_pool2d(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "y", "idx", "kernel", "stride", "padding", "dilation", "first",
                         "last", NULL};
    static const char *fn = "max_pool2d";
    PyObject *ox, *oy, *oi, *ok = NULL, *os = NULL, *op = NULL, *od = NULL;
    Py_ssize_t first = 0, last = -1, k[2], s[2], pad[2], d[2];
    char kind = 0;
    Arg a[3] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$OOOOnn", kw, &ox, &oy, &oi, &ok, &os, &op,
                                     &od, &first, &last))
        return NULL;
    if (get_pair(ok, k, 1, fn, "kernel") < 0 || get_pair(os, s, 1, fn, "stride") < 0 ||
        get_pair(op, pad, 0, fn, "padding") < 0 || get_pair(od, d, 1, fn, "dilation") < 0)
        return NULL;
    if (get_array(&a[0], ox, fn, "x", 3, "(P, H, W)", 0, 0, &kind) < 0 ||
        get_array(&a[1], oy, fn, "y", 3, "(P, OH, OW)", 1, 0, &kind) < 0 ||
        get_array(&a[2], oi, fn, "idx", 3, "(P, OH, OW)", 1, 'L', &kind) < 0 ||
        same_shape(fn, &a[1], "y", &a[2], "idx") < 0)
        goto out;
    const Py_ssize_t P = a[0].view.shape[0], H = a[0].view.shape[1], W = a[0].view.shape[2];
    const Py_ssize_t OH = a[1].view.shape[1], OW = a[1].view.shape[2];
    if (length(fn, &a[1], "y", P, "x's P") < 0 || unit_range(fn, &first, &last, P) < 0)
        goto out;
    /* Every window must hold a real cell (the loops clip windows to the input). */
    for (int i = 0; i < 2; i++) {
        const Py_ssize_t n = i ? W : H, o = i ? OW : OH;
        for (Py_ssize_t q = 0; q < o; q++) {
            Py_ssize_t lo = q * s[i] - pad[i], hi = lo + (k[i] - 1) * d[i] + 1;
            if (hi > n) hi = n;
            if (lo < 0) lo += (-lo + d[i] - 1) / d[i] * d[i];   /* the first real cell */
            if (lo >= hi) {
                PyErr_Format(PyExc_ValueError, "%s: window %zd of axis %d holds no input cell "
                             "(input size %zd, output size %zd, kernel %zd, stride %zd, padding "
                             "%zd, dilation %zd)", fn, q, i, n, o, k[i], s[i], pad[i], d[i]);
                goto out;
            }
        }
    }
    BY_DTYPE(kind, max_pool2d, BUF(0), BUF(1), BUF(2), H, W, OH, OW, k, s, pad, d, first, last);
out:
    return finish(a, 3);
}

static PyObject *py_max_pool2d_grad(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"dy", "idx", "dx", "first", "last", NULL};
    static const char *fn = "max_pool2d_grad";
    PyObject *ody, *oi, *odx;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    int bad = 0;
    Arg a[3] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$nn", kw, &ody, &oi, &odx, &first, &last))
        return NULL;
    if (get_array(&a[0], ody, fn, "dy", 3, "(P, OH, OW)", 0, 0, &kind) < 0 ||
        get_array(&a[1], oi, fn, "idx", 3, "(P, OH, OW)", 0, 'L', &kind) < 0 ||
        get_array(&a[2], odx, fn, "dx", 3, "(P, H, W)", 1, 0, &kind) < 0 ||
        same_shape(fn, &a[0], "dy", &a[1], "idx") < 0 ||
        length(fn, &a[2], "dx", a[0].view.shape[0], "dy's P") < 0 ||
        unit_range(fn, &first, &last, a[0].view.shape[0]) < 0)
        goto out;
    const Py_ssize_t HW = a[2].view.shape[1] * a[2].view.shape[2];
    const Py_ssize_t O = a[0].view.shape[1] * a[0].view.shape[2];
    Py_BEGIN_ALLOW_THREADS
    bad = kind == 'f' ? max_pool2d_grad_f32(BUF(0), BUF(1), BUF(2), HW, O, first, last)
                      : max_pool2d_grad_f64(BUF(0), BUF(1), BUF(2), HW, O, first, last);
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_Format(PyExc_ValueError, "%s: idx entries must lie in [0, %zd) (flat indices "
                     "within one plane of dx)", fn, HW);
out:
    return finish(a, 3);
}

static PyObject *py_plane_mean(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "y", "first", "last", NULL};
    static const char *fn = "plane_mean";
    PyObject *ox, *oy;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    Arg a[2] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$nn", kw, &ox, &oy, &first, &last))
        return NULL;
    if (get_array(&a[0], ox, fn, "x", 2, "(P, S)", 0, 0, &kind) < 0 ||
        get_array(&a[1], oy, fn, "y", 1, "(P,)", 1, 0, &kind) < 0 ||
        length(fn, &a[1], "y", a[0].view.shape[0], "x's P") < 0 ||
        unit_range(fn, &first, &last, a[0].view.shape[0]) < 0)
        goto out;
    if (a[0].view.shape[1] < 1) {
        PyErr_Format(PyExc_ValueError, "%s: x must have S >= 1", fn);
        goto out;
    }
    BY_DTYPE(kind, plane_mean, BUF(0), BUF(1), a[0].view.shape[1], first, last);
out:
    return finish(a, 2);
}

static PyObject *py_plane_fill(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"dy", "dx", "scale", "first", "last", NULL};
    static const char *fn = "plane_fill";
    PyObject *ody, *odx;
    double scale = 1.0;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    Arg a[2] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$dnn", kw, &ody, &odx, &scale, &first,
                                     &last))
        return NULL;
    if (get_array(&a[0], ody, fn, "dy", 1, "(P,)", 0, 0, &kind) < 0 ||
        get_array(&a[1], odx, fn, "dx", 2, "(P, S)", 1, 0, &kind) < 0 ||
        length(fn, &a[1], "dx", a[0].view.shape[0], "dy's P") < 0 ||
        unit_range(fn, &first, &last, a[0].view.shape[0]) < 0)
        goto out;
    BY_DTYPE(kind, plane_fill, BUF(0), BUF(1), scale, a[1].view.shape[1], first, last);
out:
    return finish(a, 2);
}

/* all_finite: whether no value of x[first:last] has every exponent bit set (inf or NaN), in
 * one read, in blocks of 4096 values whose largest exponent field is taken as an unsigned
 * integer maximum (vectorised; no floating-point compare, so a NaN is not special): the
 * engine checks every kernel before a convolution (an infinite weight must not meet padding),
 * where numpy's max and min read it twice (BENCHMARKS.md, "Issue 13, seventh pass"). */
#define FINITE_BLOCK 4096
#define DEFINE_ALL_FINITE(U, MASK)                                                             \
    MULTI static int all_finite_##U(const U *x, Py_ssize_t first, Py_ssize_t last)             \
    {                                                                                          \
        for (Py_ssize_t i = first; i < last; i += FINITE_BLOCK) {                              \
            const Py_ssize_t end = i + FINITE_BLOCK < last ? i + FINITE_BLOCK : last;          \
            U top = 0;                                                                         \
            for (Py_ssize_t j = i; j < end; j++) {                                             \
                const U e = x[j] & (MASK);                                                     \
                top = e > top ? e : top;                                                       \
            }                                                                                  \
            if (top == (MASK)) return 0;                                                       \
        }                                                                                      \
        return 1;                                                                              \
    }
DEFINE_ALL_FINITE(uint32_t, UINT32_C(0x7f800000))
DEFINE_ALL_FINITE(uint64_t, UINT64_C(0x7ff0000000000000))

static PyObject *py_all_finite(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "first", "last", NULL};
    static const char *fn = "all_finite";
    PyObject *ox;
    Py_ssize_t first = 0, last = -1;
    char kind = 0;
    int ok = 1;
    Arg a[1] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$nn", kw, &ox, &first, &last)) return NULL;
    if (get_array(&a[0], ox, fn, "x", 1, "(n,)", 0, 0, &kind) < 0 ||
        unit_range(fn, &first, &last, a[0].view.shape[0]) < 0)
        goto out;
    Py_BEGIN_ALLOW_THREADS
    ok = kind == 'f' ? all_finite_uint32_t((const uint32_t *)BUF(0), first, last)
                     : all_finite_uint64_t((const uint64_t *)BUF(0), first, last);
    Py_END_ALLOW_THREADS
out:
    release(a, 1);
    if (PyErr_Occurred()) return NULL;
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    METHOD(bn_stats, "bn_stats(x, mean, var, *, first=0, last=-1): per-channel mean and biased\n"
                     "variance (float64 (C,) outputs) of x (N, C, S), channels [first, last)."),
    METHOD(bn_apply, "bn_apply(x, y, mean, scale, shift, *, relu=False, first=0, last=-1):\n"
                     "y = (x - mean) * scale + shift per channel (then max(., 0) with relu)."),
    METHOD(bn_grad_sums, "bn_grad_sums(dy, x, mean, s1, s2, *, y=None, first=0, last=-1):\n"
                         "s1 = sum v, s2 = sum v (x - mean) per channel, v = dy [y > 0] (dy\n"
                         "without y), float64 (C,) outputs."),
    METHOD(bn_grad_apply, "bn_grad_apply(dy, x, dx, mean, a, b, c, *, y=None, first=0,\n"
                          "last=-1): dx = a v + b (x - mean) + c per channel, v as bn_grad_sums."),
    METHOD(relu, "relu(x, y, *, first=0, last=-1): y = max(x, 0) on flat arrays (NaN kept)."),
    METHOD(relu_grad, "relu_grad(dy, x, dx, *, first=0, last=-1): dx = dy [x > 0], flat arrays."),
    METHOD(max_pool2d, "max_pool2d(x, y, idx, *, kernel, stride, padding, dilation, first=0,\n"
                       "last=-1): max pooling of planes x (P, H, W) into y (P, OH, OW) with the\n"
                       "int64 flat argmax idx, as PyTorch."),
    METHOD(max_pool2d_grad, "max_pool2d_grad(dy, idx, dx, *, first=0, last=-1): dx (P, H, W) =\n"
                            "0, then dx[p].flat[idx[p]] += dy[p] in order."),
    METHOD(plane_mean, "plane_mean(x, y, *, first=0, last=-1): y[p] = mean of x[p] (P, S)."),
    METHOD(plane_fill, "plane_fill(dy, dx, *, scale=1, first=0, last=-1): dx[p, :] = dy[p] *\n"
                       "scale."),
    METHOD(all_finite, "all_finite(x, *, first=0, last=-1): whether every value of the flat\n"
                       "x[first:last] is finite (one read)."),
    {NULL, NULL, 0, NULL},
};

MODULE(_fusedc, "One-pass normalisation, activation and pooling kernels "
       "(see _fused.py).", methods)
