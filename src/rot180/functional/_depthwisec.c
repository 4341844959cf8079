/* Plane-wise valid cross-correlation for few channels per group (depthwise layers): the compiled
 * loops of rot180's `depthwise` realisation. See _depthwise.py for when it is used and why.
 *
 * Layout: the arrays' own (NCHW) layout, any strides; vectors run along an output row:
 *
 *   x   (B, G, C, H, W)        out, dz  (B, G, M, OH, OW)        w, dw  (G, M, C, KH, KW)
 *
 *   correlate:        out[b, g, m, y, q] = bias[g, m] + sum_{c, ty, tx} w[g, m, c, ty, tx]
 *                                             * xp[b, g, c, y*sh + ty*dh, q*sw + tx*dw]
 *   correlate_kernel: dw[g, m, c, ty, tx] = sum_{b, y, q} dz[b, g, m, y, q]
 *                                             * xp[b, g, c, y*sh + ty*dh, q*sw + tx*dw]
 *
 * with xp the input zero-padded by (pt, pb) rows and (pl, pr) columns. Per plane (b, g) the C
 * input planes are first copied, padded, into a scratch buffer split by *column phase*: a tap
 * whose column offset is tx*dw reads padded column q*sw + tx*dw = (q + j0) sw + r with
 * r = (tx*dw) % sw, j0 = (tx*dw) / sw, so the phase row P_r[j] = xp[.., j*sw + r] makes every
 * tap a contiguous (unaligned) vector load P_r[q + j0 ...], whatever the stride and dilation.
 * Only the phases some tap reads are built (at most KW of them, at most sw), each about OW long,
 * so the copy is one pass over the input. The rows need no such split: a tap row is a row.
 *
 * Forward: a tile of up to 4 vectors of an output row keeps its accumulators in registers while
 * every input channel and tap of the window is added (one broadcast weight, one load, one
 * multiply-add per vector and tap). Kernel gradient: per tap row ty, one pass over the delta
 * rows: up to 4 neighbouring taps x 2-4 vectors of a delta row accumulate in registers over all
 * rows, then add into per-weight partial-sum vectors, whose lanes are summed (fixed tree) at the
 * end. Every sum runs in an order fixed by the loops, never by threads or timing: a plane's
 * outputs do not depend on which call computed it, and a group's kernel gradient not on how the
 * groups were split.
 *
 * The Python functions take keyword arguments and read every size from the arrays' own shapes,
 * checking that they agree (ValueError / TypeError naming the argument); every size derived
 * from them is formed in overflow-checked arithmetic (OverflowError) before anything is
 * allocated or touched. The GIL is released while the loops run.
 */
#include "_glue.h" /* first: Python.h; the glue shared by the helpers, and MULTI (one build,
                    * the widest vectors the running CPU has; -DROT180_PORTABLE: the plain
                    * vector code alone) */
#include <stdlib.h>
#include <string.h>

#define VBYTES 64 /* one vector: 16 float32 or 8 float64 */
typedef float vf32 __attribute__((vector_size(VBYTES)));
typedef double vf64 __attribute__((vector_size(VBYTES)));
typedef int vi32 __attribute__((vector_size(VBYTES)));
typedef long long vi64 __attribute__((vector_size(VBYTES)));

/* The geometry of one call, in elements (strides of x, out / dz signed, any). */
typedef struct {
    Py_ssize_t B, G, C, M, H, W, KH, KW, OH, OW, sh, sw, dh, dw, pt, pl;
    Py_ssize_t ih, iw;            /* the input stretched by these first (1: not) */
    Py_ssize_t Ws0;               /* its stretched width (W - 1) iw + 1 */
    Py_ssize_t xs[5], zs[5];      /* strides of x and of out / dz */
    Py_ssize_t Hp;                /* padded rows */
    Py_ssize_t L;                 /* elements of one phase row (a multiple of the lanes) */
    Py_ssize_t nr;                /* column phases built */
    Py_ssize_t *phase_r;          /* nr: the residue of each phase */
    Py_ssize_t *tap_off;          /* KW: offset of tap tx's data from a channel's row start */
    Py_ssize_t plane;             /* elements of one channel's phase rows: nr * Hp * L */
    char *live;                   /* Hp: whether a padded row holds input entries */
} Geo;

/* --- packing one input plane into its padded column phases ------------------------------- */

/* Whether column c of the stretched, padded row holds an input entry, and which: the input
 * stretched by `in` (in - 1 zeros between entries; 1: none) and padded by `lo` (negative:
 * cropped). */
static inline Py_ssize_t source(Py_ssize_t c, Py_ssize_t lo, Py_ssize_t in, Py_ssize_t n)
{
    const Py_ssize_t u = c - lo;
    if (u < 0 || u % in) return -1;
    return u / in < n ? u / in : -1;
}

#define EVEN_f32 {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#define ODD_f32 {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}
#define EVEN_f64 {0, 2, 4, 6, 8, 10, 12, 14}
#define ODD_f64 {1, 3, 5, 7, 9, 11, 13, 15}

/* dst: the channel's phase rows [phase][Hp][L]. A row of
 * the stretched padded input with no entry (d->live) is zeros. Stride 1: the row as it is;
 * stride 2 without stretching: the padded row, then both column phases split with vector
 * shuffles; otherwise element by element. */
#define DEFINE_PACK(T, V, IV, SUF)                                                             \
    static inline __attribute__((always_inline)) void pack_##SUF(const T *xc, T *dst,          \
                                                                 const Geo *d)                 \
    {                                                                                          \
        const Py_ssize_t L = d->L, sw = d->sw, W = d->W, xh = d->xs[3], xw = d->xs[4];         \
        const Py_ssize_t NL = VBYTES / sizeof(T);                                              \
        for (Py_ssize_t yy = 0; yy < d->Hp; yy++) {                                            \
            const Py_ssize_t y = source(yy, d->pt, d->ih, d->H);                               \
            if (y < 0) {                                                                       \
                for (Py_ssize_t k = 0; k < d->nr; k++)                                         \
                    memset(dst + (k * d->Hp + yy) * L, 0, (size_t)L * sizeof(T));              \
                continue;                                                                      \
            }                                                                                  \
            const T *src = xc + y * xh;                                                        \
            if (sw == 2 && d->iw == 1 && xw == 1) {                                            \
                /* P_r[j] = x[2j + r - pl]: the even and odd lanes of two loads at 2j - pl */  \
                T *rows[2] = {NULL, NULL};                                                     \
                for (Py_ssize_t k = 0; k < d->nr; k++)                                         \
                    rows[d->phase_r[k]] = dst + (k * d->Hp + yy) * L;                          \
                const Py_ssize_t ja = (d->pl + 1) / 2 < L ? (d->pl + 1) / 2 : L;               \
                Py_ssize_t j = 0;                                                              \
                for (; j < ja; j++)                                                            \
                    for (int r = 0; r < 2; r++)                                                \
                        if (rows[r]) {                                                         \
                            const Py_ssize_t u = 2 * j + r - d->pl;                            \
                            rows[r][j] = u >= 0 && u < W ? src[u] : (T)0;                      \
                        }                                                                      \
                for (; j + NL <= L && 2 * j - d->pl + 2 * NL <= W; j += NL) {                  \
                    const V a = LOAD(V, src + 2 * j - d->pl);                                  \
                    const V b = LOAD(V, src + 2 * j - d->pl + NL);                             \
                    if (rows[0]) STORE(V, rows[0] + j, __builtin_shuffle(a, b, (IV)EVEN_##SUF)); \
                    if (rows[1]) STORE(V, rows[1] + j, __builtin_shuffle(a, b, (IV)ODD_##SUF));  \
                }                                                                              \
                /* the last entries one by one, then zeros: 2j - pl < W for j < je */          \
                Py_ssize_t je = (W + d->pl + 1) / 2;                                           \
                if (je > L) je = L;                                                            \
                for (; j < je; j++)                                                            \
                    for (int r = 0; r < 2; r++)                                                \
                        if (rows[r]) {                                                         \
                            const Py_ssize_t u = 2 * j + r - d->pl;                            \
                            rows[r][j] = u >= 0 && u < W ? src[u] : (T)0;                      \
                        }                                                                      \
                for (int r = 0; r < 2; r++)                                                    \
                    if (rows[r] && j < L) memset(rows[r] + j, 0, (size_t)(L - j) * sizeof(T)); \
                continue;                                                                      \
            }                                                                                  \
            for (Py_ssize_t k = 0; k < d->nr; k++) {                                           \
                T *row = dst + (k * d->Hp + yy) * L;                                           \
                const Py_ssize_t r = d->phase_r[k];                                            \
                if (sw == 1 && d->iw == 1 && xw == 1) {                                        \
                    /* columns j with 0 <= j - pl < W: [ja, jb) */                             \
                    Py_ssize_t ja = d->pl > 0 ? d->pl : 0, jb = W + d->pl;                     \
                    if (jb > L) jb = L;                                                        \
                    if (jb < 0) jb = 0;                                                        \
                    if (ja > jb) ja = jb;                                                      \
                    memset(row, 0, (size_t)ja * sizeof(T));                                    \
                    memcpy(row + ja, src + ja - d->pl, (size_t)(jb - ja) * sizeof(T));         \
                    memset(row + jb, 0, (size_t)(L - jb) * sizeof(T));                         \
                    continue;                                                                  \
                }                                                                              \
                if (sw == 1 && d->iw > 1) { /* the stretched row: entries iw apart */         \
                    memset(row, 0, (size_t)L * sizeof(T));                                     \
                    Py_ssize_t u0 = d->pl < 0 ? (-d->pl + d->iw - 1) / d->iw : 0;              \
                    for (Py_ssize_t u = u0, c = d->pl + u0 * d->iw; u < W && c < L;            \
                         u++, c += d->iw)                                                      \
                        row[c] = src[u * xw];                                                  \
                    continue;                                                                  \
                }                                                                              \
                /* j * sw + r - pl < Ws0 for j < jlim (no j * sw formed past it) */           \
                const Py_ssize_t top = d->Ws0 + d->pl - r;                                     \
                Py_ssize_t jlim = top > 0 ? (top - 1) / sw + 1 : 0;                            \
                if (jlim > L) jlim = L;                                                        \
                for (Py_ssize_t j = 0; j < jlim; j++) {                                        \
                    const Py_ssize_t u = source(j * sw + r, d->pl, d->iw, W);                  \
                    row[j] = u >= 0 ? src[u * xw] : (T)0;                                      \
                }                                                                              \
                memset(row + jlim, 0, (size_t)(L - jlim) * sizeof(T));                         \
            }                                                                                  \
        }                                                                                      \
    }

/* --- forward -------------------------------------------------------------------------------- */

/* One tile: NVc vectors of output row y from column q0 (n valid outputs); KWc taps a kernel row
 * (0: d->KW, read at run time; 3 and 5 are unrolled). */
#define DEFINE_FWD_TILE(T, V, SUF, NVc, KWc)                                                   \
    static inline __attribute__((always_inline)) void fwd_tile_##SUF##_##NVc##_##KWc(          \
        const T *xb, const T *wm, T bias, T *orow, Py_ssize_t ow, const Geo *d, Py_ssize_t y,   \
        Py_ssize_t q0, Py_ssize_t n)                                                           \
    {                                                                                          \
        const Py_ssize_t NL = VBYTES / sizeof(T), L = d->L, KW = KWc ? KWc : d->KW;            \
        V acc[NVc];                                                                            \
        for (int i = 0; i < NVc; i++) acc[i] = (V){0} + bias;                                  \
        for (Py_ssize_t c = 0; c < d->C; c++)                                                  \
            for (Py_ssize_t ty = 0; ty < d->KH; ty++) {                                        \
                if (!d->live[y * d->sh + ty * d->dh]) continue; /* zeros */                    \
                const T *row = xb + c * d->plane + (y * d->sh + ty * d->dh) * L + q0;          \
                const T *wr = wm + (c * d->KH + ty) * KW;                                      \
                for (Py_ssize_t tx = 0; tx < KW; tx++) {                                       \
                    const T *p = row + d->tap_off[tx];                                         \
                    const T wv = wr[tx];                                                       \
                    for (int i = 0; i < NVc; i++) acc[i] += wv * LOAD(V, p + i * NL);          \
                }                                                                              \
            }                                                                                  \
        fwd_store_##SUF##_##NVc(acc, orow, ow, q0, n);                                         \
    }

/* The first n outputs of NVc vectors into a row of element stride ow from column q0. */
#define DEFINE_FWD_STORE(T, V, SUF, NVc)                                                       \
    static inline __attribute__((always_inline)) void fwd_store_##SUF##_##NVc(                 \
        const V *acc, T *orow, Py_ssize_t ow, Py_ssize_t q0, Py_ssize_t n)                     \
    {                                                                                          \
        const Py_ssize_t NL = VBYTES / sizeof(T);                                              \
        if (ow == 1) {                                                                         \
            for (int i = 0; i < NVc; i++) {                                                    \
                const Py_ssize_t left = n - i * NL;                                            \
                if (left >= NL) STORE(V, orow + q0 + i * NL, acc[i]);                          \
                else if (left > 0) {                                                           \
                    const V t_ = acc[i];                                                       \
                    memcpy(orow + q0 + i * NL, &t_, (size_t)left * sizeof(T));                 \
                }                                                                              \
            }                                                                                  \
        } else {                                                                               \
            for (int i = 0; i < NVc; i++)                                                      \
                for (Py_ssize_t l = 0; l < NL && i * NL + l < n; l++)                          \
                    orow[(q0 + i * NL + l) * ow] = acc[i][l];                                  \
        }                                                                                      \
    }

/* Rows y and y + 1 at once (stride and dilation 1 along the rows, no stretching): each input
 * row's vectors are loaded once for both, which halves the loads the multiply-adds wait on
 * (an unaligned 64-byte load is the bottleneck of the one-row tile). */
#define DEFINE_FWD_TILE2(T, V, SUF, NVc, KWc)                                                  \
    static inline __attribute__((always_inline)) void fwd_tile2_##SUF##_##NVc##_##KWc(         \
        const T *xb, const T *wm, T bias, T *orow, Py_ssize_t ow, const Geo *d, Py_ssize_t y,   \
        Py_ssize_t q0, Py_ssize_t n)                                                           \
    {                                                                                          \
        const Py_ssize_t NL = VBYTES / sizeof(T), L = d->L, KW = KWc ? KWc : d->KW;            \
        V a0[NVc], a1[NVc];                                                                    \
        for (int i = 0; i < NVc; i++) a0[i] = a1[i] = (V){0} + bias;                           \
        for (Py_ssize_t c = 0; c < d->C; c++)                                                  \
            for (Py_ssize_t r = 0; r <= d->KH; r++) {                                          \
                const T *row = xb + c * d->plane + (y + r) * L + q0;                           \
                const T *w0 = wm + (c * d->KH + r) * KW, *w1 = w0 - KW;                        \
                for (Py_ssize_t tx = 0; tx < KW; tx++) {                                       \
                    const T *p = row + d->tap_off[tx];                                         \
                    V v[NVc];                                                                  \
                    for (int i = 0; i < NVc; i++) v[i] = LOAD(V, p + i * NL);                  \
                    if (r < d->KH)                                                             \
                        for (int i = 0; i < NVc; i++) a0[i] += w0[tx] * v[i];                  \
                    if (r > 0)                                                                 \
                        for (int i = 0; i < NVc; i++) a1[i] += w1[tx] * v[i];                  \
                }                                                                              \
            }                                                                                  \
        fwd_store_##SUF##_##NVc(a0, orow, ow, q0, n);                                          \
        fwd_store_##SUF##_##NVc(a1, orow + d->zs[3], ow, q0, n);                               \
    }

#define FWD_TILE_VECTORS 4

/* Output plane m of plane (b, g): rows of tiles of up to 4 vectors. */
#define DEFINE_FWD_PLANE(T, V, SUF, KWc)                                                       \
    DEFINE_FWD_TILE(T, V, SUF, 1, KWc)                                                         \
    DEFINE_FWD_TILE(T, V, SUF, 2, KWc)                                                         \
    DEFINE_FWD_TILE(T, V, SUF, 3, KWc)                                                         \
    DEFINE_FWD_TILE(T, V, SUF, 4, KWc)                                                         \
    DEFINE_FWD_TILE2(T, V, SUF, 1, KWc)                                                        \
    DEFINE_FWD_TILE2(T, V, SUF, 2, KWc)                                                        \
    DEFINE_FWD_TILE2(T, V, SUF, 3, KWc)                                                        \
    DEFINE_FWD_TILE2(T, V, SUF, 4, KWc)                                                        \
    static inline __attribute__((always_inline)) void fwd_plane_##SUF##_##KWc(                 \
        const T *buf, const T *wm, T bv, T *om, const Geo *d)                                  \
    {                                                                                          \
        const Py_ssize_t NL = VBYTES / sizeof(T), tile = FWD_TILE_VECTORS * NL, ow = d->zs[4]; \
        Py_ssize_t y = 0;                                                                      \
        if (d->sh == 1 && d->dh == 1 && d->ih == 1)                                            \
            for (; y + 2 <= d->OH; y += 2) {                                                   \
                T *orow = om + y * d->zs[3];                                                   \
                for (Py_ssize_t q0 = 0; q0 < d->OW; q0 += tile) {                              \
                    const Py_ssize_t n = d->OW - q0 < tile ? d->OW - q0 : tile;                \
                    switch ((n + NL - 1) / NL) {                                               \
                    case 4: fwd_tile2_##SUF##_4_##KWc(buf, wm, bv, orow, ow, d, y, q0, n); break; \
                    case 3: fwd_tile2_##SUF##_3_##KWc(buf, wm, bv, orow, ow, d, y, q0, n); break; \
                    case 2: fwd_tile2_##SUF##_2_##KWc(buf, wm, bv, orow, ow, d, y, q0, n); break; \
                    default: fwd_tile2_##SUF##_1_##KWc(buf, wm, bv, orow, ow, d, y, q0, n);    \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        for (; y < d->OH; y++) {                                                               \
            T *orow = om + y * d->zs[3];                                                       \
            for (Py_ssize_t q0 = 0; q0 < d->OW; q0 += tile) {                                  \
                const Py_ssize_t n = d->OW - q0 < tile ? d->OW - q0 : tile;                    \
                switch ((n + NL - 1) / NL) {                                                   \
                case 4: fwd_tile_##SUF##_4_##KWc(buf, wm, bv, orow, ow, d, y, q0, n); break;   \
                case 3: fwd_tile_##SUF##_3_##KWc(buf, wm, bv, orow, ow, d, y, q0, n); break;   \
                case 2: fwd_tile_##SUF##_2_##KWc(buf, wm, bv, orow, ow, d, y, q0, n); break;   \
                default: fwd_tile_##SUF##_1_##KWc(buf, wm, bv, orow, ow, d, y, q0, n);         \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

#define DEFINE_FWD(T, V, IV, SUF)                                                              \
    DEFINE_PACK(T, V, IV, SUF)                                                                 \
    DEFINE_FWD_STORE(T, V, SUF, 1)                                                             \
    DEFINE_FWD_STORE(T, V, SUF, 2)                                                             \
    DEFINE_FWD_STORE(T, V, SUF, 3)                                                             \
    DEFINE_FWD_STORE(T, V, SUF, 4)                                                             \
    DEFINE_FWD_PLANE(T, V, SUF, 0)                                                             \
    DEFINE_FWD_PLANE(T, V, SUF, 3)                                                             \
    DEFINE_FWD_PLANE(T, V, SUF, 5)                                                             \
    /* Planes p0:p1 of the flattened (b, g): pack the C input planes, then every output plane  \
     * of the group. */                                                                        \
    MULTI static void corr_##SUF(const T *x, const T *w, T *out, const T *bias, const Geo *d,  \
                                 Py_ssize_t p0, Py_ssize_t p1, T *buf)                         \
    {                                                                                          \
        const Py_ssize_t CK = d->C * d->KH * d->KW;                                            \
        for (Py_ssize_t p = p0; p < p1; p++) {                                                 \
            const Py_ssize_t b = p / d->G, g = p % d->G;                                       \
            const T *xbg = x + b * d->xs[0] + g * d->xs[1];                                    \
            for (Py_ssize_t c = 0; c < d->C; c++)                                              \
                pack_##SUF(xbg + c * d->xs[2], buf + c * d->plane, d);                         \
            for (Py_ssize_t m = 0; m < d->M; m++) {                                            \
                const T *wm = w + (g * d->M + m) * CK;                                         \
                const T bv = bias ? bias[g * d->M + m] : (T)0;                                 \
                T *om = out + b * d->zs[0] + g * d->zs[1] + m * d->zs[2];                      \
                switch (d->KW) {                                                               \
                case 3: fwd_plane_##SUF##_3(buf, wm, bv, om, d); break;                        \
                case 5: fwd_plane_##SUF##_5(buf, wm, bv, om, d); break;                        \
                default: fwd_plane_##SUF##_0(buf, wm, bv, om, d);                              \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

DEFINE_FWD(float, vf32, vi32, f32)
DEFINE_FWD(double, vf64, vi64, f64)

/* --- kernel gradient ------------------------------------------------------------------------ */

/* The sum of a vector's lanes as a tree, in a fixed order: halves, quarters, ... */
static inline float hsum_f32(vf32 v)
{
    v += __builtin_shuffle(v, (vi32){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});
    v += __builtin_shuffle(v, (vi32){4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3});
    v += __builtin_shuffle(v, (vi32){2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1});
    v += __builtin_shuffle(v, (vi32){1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0});
    return v[0];
}
static inline double hsum_f64(vf64 v)
{
    v += __builtin_shuffle(v, (vi64){4, 5, 6, 7, 0, 1, 2, 3});
    v += __builtin_shuffle(v, (vi64){2, 3, 0, 1, 2, 3, 0, 1});
    v += __builtin_shuffle(v, (vi64){1, 0, 1, 0, 1, 0, 1, 0});
    return v[0];
}

/* TBc neighbouring taps tx0.. of tap row ty, over every delta row: acc[t][u] over vectors
 * u (mod Uc) of the row, then added into part[t] (u in order). zm: the delta plane (OH rows of
 * Lz, zero past OW); xc: the channel's phase rows; nv vectors per delta row. */
#define DEFINE_GRAD_TILE(T, V, SUF, TBc, Uc)                                                   \
    static inline __attribute__((always_inline)) void grad_tile_##SUF##_##TBc(                 \
        const T *xc, const T *zm, V *part, const Geo *d, Py_ssize_t ty, Py_ssize_t tx0,        \
        Py_ssize_t Lz, Py_ssize_t nv)                                                          \
    {                                                                                          \
        const Py_ssize_t NL = VBYTES / sizeof(T);                                              \
        V acc[TBc][Uc];                                                                        \
        for (int t = 0; t < TBc; t++)                                                          \
            for (int u = 0; u < Uc; u++) acc[t][u] = (V){0};                                   \
        for (Py_ssize_t y = 0; y < d->OH; y++) {                                               \
            if (!d->live[y * d->sh + ty * d->dh]) continue; /* zeros */                        \
            const T *row = xc + (y * d->sh + ty * d->dh) * d->L;                               \
            const T *zr = zm + y * Lz;                                                         \
            const T *xt[TBc];                                                                  \
            for (int t = 0; t < TBc; t++) xt[t] = row + d->tap_off[tx0 + t];                   \
            Py_ssize_t v = 0;                                                                  \
            for (; v + Uc <= nv; v += Uc)                                                      \
                for (int u = 0; u < Uc; u++) {                                                 \
                    const V g_ = LOAD(V, zr + (v + u) * NL);                                   \
                    for (int t = 0; t < TBc; t++)                                              \
                        acc[t][u] += g_ * LOAD(V, xt[t] + (v + u) * NL);                       \
                }                                                                              \
            for (; v < nv; v++) {                                                              \
                const V g_ = LOAD(V, zr + v * NL);                                             \
                for (int t = 0; t < TBc; t++) acc[t][0] += g_ * LOAD(V, xt[t] + v * NL);       \
            }                                                                                  \
        }                                                                                      \
        for (int t = 0; t < TBc; t++) {                                                        \
            V s = acc[t][0];                                                                   \
            for (int u = 1; u < Uc; u++) s += acc[t][u];                                       \
            part[t] += s;                                                                      \
        }                                                                                      \
    }

#define DEFINE_GRAD(T, V, SUF)                                                                 \
    DEFINE_GRAD_TILE(T, V, SUF, 1, 4)                                                          \
    DEFINE_GRAD_TILE(T, V, SUF, 2, 4)                                                          \
    DEFINE_GRAD_TILE(T, V, SUF, 3, 4)                                                          \
    DEFINE_GRAD_TILE(T, V, SUF, 4, 3)                                                          \
    DEFINE_GRAD_TILE(T, V, SUF, 5, 2)                                                          \
    /* dw[g] for groups g0:g1, summed over samples b0:b1 (b outermost, in order). buf: the C   \
     * phase planes then the M delta planes; part: M*C*KH*KW vectors. */                       \
    MULTI static void kern_##SUF(const T *x, const T *dz, T *dw, const Geo *d, Py_ssize_t g0,  \
                                 Py_ssize_t g1, Py_ssize_t b0, Py_ssize_t b1, T *buf, V *part) \
    {                                                                                          \
        const Py_ssize_t NL = VBYTES / sizeof(T), K = d->KH * d->KW;                           \
        const Py_ssize_t nv = (d->OW + NL - 1) / NL, Lz = nv * NL, n = d->M * d->C * K;        \
        T *zb = buf + d->C * d->plane;                                                         \
        for (Py_ssize_t g = g0; g < g1; g++) {                                                 \
            for (Py_ssize_t r = 0; r < n; r++) part[r] = (V){0};                               \
            for (Py_ssize_t b = b0; b < b1; b++) {                                             \
                const T *xbg = x + b * d->xs[0] + g * d->xs[1];                                \
                for (Py_ssize_t c = 0; c < d->C; c++)                                          \
                    pack_##SUF(xbg + c * d->xs[2], buf + c * d->plane, d);                     \
                for (Py_ssize_t m = 0; m < d->M; m++)                                          \
                    for (Py_ssize_t y = 0; y < d->OH; y++) {                                   \
                        const T *src = dz + b * d->zs[0] + g * d->zs[1] + m * d->zs[2] +       \
                                       y * d->zs[3];                                           \
                        T *row = zb + (m * d->OH + y) * Lz;                                    \
                        if (d->zs[4] == 1) memcpy(row, src, (size_t)d->OW * sizeof(T));        \
                        else                                                                   \
                            for (Py_ssize_t q = 0; q < d->OW; q++) row[q] = src[q * d->zs[4]]; \
                        memset(row + d->OW, 0, (size_t)(Lz - d->OW) * sizeof(T));              \
                    }                                                                          \
                for (Py_ssize_t m = 0; m < d->M; m++)                                          \
                    for (Py_ssize_t c = 0; c < d->C; c++)                                      \
                        for (Py_ssize_t ty = 0; ty < d->KH; ty++) {                            \
                            V *pr = part + ((m * d->C + c) * d->KH + ty) * d->KW;              \
                            const T *xc = buf + c * d->plane, *zm = zb + m * d->OH * Lz;       \
                            for (Py_ssize_t tx = 0, tb; tx < d->KW; tx += tb) {                \
                                const Py_ssize_t left = d->KW - tx;                            \
                                tb = left == 4 ? 4 : left >= 5 ? 5 : left; /* 6: 5 + 1 */      \
                                V *pt = pr + tx;                                               \
                                switch (tb) {                                                  \
                                case 5: grad_tile_##SUF##_5(xc, zm, pt, d, ty, tx, Lz, nv); break; \
                                case 4: grad_tile_##SUF##_4(xc, zm, pt, d, ty, tx, Lz, nv); break; \
                                case 3: grad_tile_##SUF##_3(xc, zm, pt, d, ty, tx, Lz, nv); break; \
                                case 2: grad_tile_##SUF##_2(xc, zm, pt, d, ty, tx, Lz, nv); break; \
                                default: grad_tile_##SUF##_1(xc, zm, pt, d, ty, tx, Lz, nv);   \
                                }                                                              \
                            }                                                                  \
                        }                                                                      \
            }                                                                                  \
            T *dwg = dw + g * n;                                                               \
            for (Py_ssize_t r = 0; r < n; r++) dwg[r] = hsum_##SUF(part[r]);                   \
        }                                                                                      \
    }

DEFINE_GRAD(float, vf32, f32)
DEFINE_GRAD(double, vf64, f64)

/* --- Python glue ------------------------------------------------------------------------------ */

/* An array argument (get_float_array, _glue.h) of `ndim` axes, float32 or float64 (all of a
 * call alike); C-contiguous if `contiguous`, else any strides that are whole elements; writable
 * if asked. The product of the non-zero extents must fit. */
static int get_array(Arg *a, PyObject *obj, const char *fn, const char *name, int ndim,
                     const char *axes, int writable, int contiguous, char *kind)
{
    const int flags = (contiguous ? ARG_CONTIGUOUS : 0) | (writable ? ARG_WRITABLE : 0);
    if (get_float_array(a, obj, fn, name, ndim, axes, flags, kind) < 0) return -1;
    return check_extents(a, fn, name, " (np.ascontiguousarray)", NULL);
}

/* A tuple or list of n ints, each >= low (get_ints, _glue.h). */
static int get_seq(PyObject *obj, Py_ssize_t *v, int n, Py_ssize_t low, const char *fn,
                   const char *name)
{
    char what[32];
    PyOS_snprintf(what, sizeof(what), "a sequence of %d ints", n);
    return get_ints(obj, v, n, low, fn, name, what);
}

/* The geometry from x (B, G, C, H, W), the kernel's (G, M, C, KH, KW) and z (B, G, M, OH, OW),
 * which must agree, the steps and the pads: every window inside the padded input. Allocates
 * d->phase_r and d->tap_off (freed by geo_free); the scratch sizes come back in *buf_elems. */
static int geometry(Geo *d, const char *fn, const Arg *x, const Arg *k, const char *kname,
                    const Arg *z, const char *zname, PyObject *stride, PyObject *dilation,
                    PyObject *pads, PyObject *insert, Py_ssize_t *buf_elems)
{
    const Py_ssize_t *xs = x->view.shape, *ks = k->view.shape, *zs = z->view.shape;
    memset(d, 0, sizeof(*d));
    if (same(fn, z, zname, 0, "B", xs[0], "x") < 0 || same(fn, k, kname, 0, "G", xs[1], "x") < 0 ||
        same(fn, z, zname, 1, "G", xs[1], "x") < 0 || same(fn, k, kname, 2, "C", xs[2], "x") < 0 ||
        same(fn, z, zname, 2, "M", ks[1], kname) < 0)
        return -1;
    Py_ssize_t st[2], dl[2], pd[4], in[2] = {1, 1};
    if (get_seq(stride, st, 2, 1, fn, "stride") < 0 ||
        get_seq(dilation, dl, 2, 1, fn, "dilation") < 0 ||
        get_seq(pads, pd, 4, PY_SSIZE_T_MIN / 4, fn, "pads") < 0 ||
        (insert != Py_None && get_seq(insert, in, 2, 1, fn, "insert") < 0))
        return -1;
    d->B = xs[0], d->G = xs[1], d->C = xs[2], d->H = xs[3], d->W = xs[4];
    d->M = ks[1], d->KH = ks[3], d->KW = ks[4], d->OH = zs[3], d->OW = zs[4];
    d->sh = st[0], d->sw = st[1], d->dh = dl[0], d->dw = dl[1], d->pt = pd[0], d->pl = pd[2];
    d->ih = in[0], d->iw = in[1];
    for (int i = 0; i < 5; i++) {
        d->xs[i] = x->view.strides[i] / x->view.itemsize;
        d->zs[i] = z->view.strides[i] / z->view.itemsize;
    }
    /* The stretched input: (n - 1) in + 1 entries per axis (n of them real), then padded. */
    Py_ssize_t Hs = 0, Ws = 0, Hp, Wp;
    if ((d->H && mul_add(&Hs, fn, "the stretched rows", d->H - 1, d->ih, 1) < 0) ||
        (d->W && mul_add(&Ws, fn, "the stretched columns", d->W - 1, d->iw, 1) < 0) ||
        mul_add(&Hp, fn, "the padded rows", 1, Hs, pd[0]) < 0 ||
        mul_add(&Hp, fn, "the padded rows", 1, Hp, pd[1]) < 0 ||
        mul_add(&Wp, fn, "the padded columns", 1, Ws, pd[2]) < 0 ||
        mul_add(&Wp, fn, "the padded columns", 1, Wp, pd[3]) < 0)
        return -1;
    d->Ws0 = Ws;
    d->Hp = Hp > 0 ? Hp : 0;
    *buf_elems = 0;
    if (d->OH == 0 || d->OW == 0 || d->KH == 0 || d->KW == 0 || d->B == 0 || d->G == 0)
        return 0;                                   /* nothing to read */
    Py_ssize_t th = 0, tw = 0, eh = 0, ew = 0;
    if (mul_add(&th, fn, "the windows' extent", d->KH - 1, d->dh, 0) < 0 ||
        mul_add(&eh, fn, "the windows' extent", d->OH - 1, d->sh, th) < 0 ||
        mul_add(&tw, fn, "the windows' extent", d->KW - 1, d->dw, 0) < 0 ||
        mul_add(&ew, fn, "the windows' extent", d->OW - 1, d->sw, tw) < 0)
        return -1;
    if (eh >= Hp || ew >= Wp) {
        PyErr_Format(PyExc_ValueError, "%s: the windows reach padded row %zd and column %zd, "
                     "outside the padded input's %zd x %zd (check %s's OH, OW, the stride, "
                     "dilation and pads)", fn, eh, ew, Hp, Wp, zname);
        return -1;
    }
    /* Column phases: the residues of the taps' offsets, in order of first use. */
    d->phase_r = PyMem_Malloc((size_t)d->KW * sizeof(Py_ssize_t));
    d->tap_off = PyMem_Malloc((size_t)d->KW * sizeof(Py_ssize_t));
    Py_ssize_t *j0 = PyMem_Malloc((size_t)d->KW * sizeof(Py_ssize_t));
    Py_ssize_t *which = PyMem_Malloc((size_t)d->KW * sizeof(Py_ssize_t));
    if (!d->phase_r || !d->tap_off || !j0 || !which) {
        PyMem_Free(j0), PyMem_Free(which);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t jmax = 0;
    for (Py_ssize_t tx = 0; tx < d->KW; tx++) {
        const Py_ssize_t e = tx * d->dw, r = e % d->sw;          /* no overflow: e <= tw */
        Py_ssize_t k2 = 0;
        while (k2 < d->nr && d->phase_r[k2] != r) k2++;
        if (k2 == d->nr) d->phase_r[d->nr++] = r;
        which[tx] = k2, j0[tx] = e / d->sw;
        if (j0[tx] > jmax) jmax = j0[tx];
    }
    /* A phase row: the vectors of an output row (rounded up to whole tiles of vectors are not
     * needed: tiles stop at the last vector) plus the largest tap offset, whole vectors. */
    const Py_ssize_t NL = VBYTES / x->view.itemsize;
    Py_ssize_t L = 0, rows = 0, plane = 0, elems = 0, zrows = 0, zel = 0;
    if (mul_add(&L, fn, "a phase row", (d->OW + NL - 1) / NL, NL, jmax) < 0 ||
        mul_add(&L, fn, "a phase row", (L + NL - 1) / NL, NL, 0) < 0 ||
        mul_add(&rows, fn, "the phase planes", d->nr, Hp, 0) < 0 ||
        mul_add(&plane, fn, "the phase planes", rows, L, 0) < 0 ||
        mul_add(&elems, fn, "the phase planes", d->C, plane, 0) < 0 ||
        mul_add(&zrows, fn, "the delta planes", d->M, d->OH, 0) < 0 ||
        mul_add(&zel, fn, "the delta planes", zrows, (d->OW + NL - 1) / NL * NL, 0) < 0 ||
        mul_add(&elems, fn, "the scratch", 1, elems, zel) < 0)
        goto fail;
    d->L = L, d->plane = plane;
    for (Py_ssize_t tx = 0; tx < d->KW; tx++) d->tap_off[tx] = which[tx] * Hp * L + j0[tx];
    PyMem_Free(j0), PyMem_Free(which);
    d->live = PyMem_Malloc((size_t)Hp);
    if (!d->live) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t yy = 0; yy < Hp; yy++) d->live[yy] = source(yy, d->pt, d->ih, d->H) >= 0;
    *buf_elems = elems;
    return 0;
fail:
    PyMem_Free(j0), PyMem_Free(which);
    return -1;
}

static void geo_free(Geo *d)
{
    PyMem_Free(d->phase_r), PyMem_Free(d->tap_off), PyMem_Free(d->live);
    d->phase_r = d->tap_off = NULL;
    d->live = NULL;
}

/* A range (lo, hi) with 0 <= lo <= hi <= n. */
static int get_range(PyObject *obj, Py_ssize_t n, Py_ssize_t *lo, Py_ssize_t *hi,
                     const char *fn, const char *name, const char *what)
{
    Py_ssize_t v[2] = {0, n};
    if (obj != Py_None && get_seq(obj, v, 2, 0, fn, name) < 0) return -1;
    if (v[0] > v[1] || v[1] > n) {
        PyErr_Format(PyExc_ValueError, "%s: %s=(%zd, %zd) must be a range inside the %zd %s",
                     fn, name, v[0], v[1], n, what);
        return -1;
    }
    *lo = v[0], *hi = v[1];
    return 0;
}

static PyObject *py_correlate(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "w", "out", "bias", "stride", "dilation", "pads", "planes",
                         "insert", NULL};
    static const char *fn = "correlate";
    PyObject *ox, *ow, *oout, *obias = Py_None, *ostride = NULL, *odil = NULL, *opads = NULL,
             *oplanes = Py_None, *oinsert = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O$OOOOO", kw, &ox, &ow, &oout, &obias,
                                     &ostride, &odil, &opads, &oplanes, &oinsert))
        return NULL;
    char kind = 0;
    Arg a[4] = {{.held = 0}};
    Geo d = {0};
    Py_ssize_t elems, p0, p1;
    if (get_array(&a[0], ox, fn, "x", 5, "(B, G, C, H, W)", 0, 0, &kind) < 0 ||
        get_array(&a[1], ow, fn, "w", 5, "(G, M, C, KH, KW)", 0, 1, &kind) < 0 ||
        get_array(&a[2], oout, fn, "out", 5, "(B, G, M, OH, OW)", 1, 0, &kind) < 0 ||
        geometry(&d, fn, &a[0], &a[1], "w", &a[2], "out", ostride, odil, opads, oinsert,
                 &elems) < 0)
        goto out;
    if (obias != Py_None &&
        (get_array(&a[3], obias, fn, "bias", 2, "(G, M)", 0, 1, &kind) < 0 ||
         same(fn, &a[3], "bias", 0, "G", d.G, "x") < 0 ||
         same(fn, &a[3], "bias", 1, "M", d.M, "w") < 0))
        goto out;
    if (get_range(oplanes, d.B * d.G, &p0, &p1, fn, "planes", "planes B x G") < 0) goto out;
    if (elems > 0 && p0 < p1) {
        const size_t item = kind == 'f' ? sizeof(float) : sizeof(double);
        if ((size_t)elems > ((size_t)-1) / item / 2) { overflow(fn, "the scratch"); goto out; }
        void *buf = aligned_alloc(VBYTES, ((size_t)elems * item + VBYTES - 1) / VBYTES * VBYTES);
        if (!buf) { PyErr_NoMemory(); goto out; }
        const void *bias = a[3].held ? a[3].view.buf : NULL;
        BY_DTYPE(kind, corr, a[0].view.buf, a[1].view.buf, a[2].view.buf, bias, &d, p0, p1, buf);
        free(buf);
    }
out:
    geo_free(&d);
    return finish(a, 4);
}

static PyObject *py_correlate_kernel(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "dz", "dw", "stride", "dilation", "pads", "groups", "samples",
                         NULL};
    static const char *fn = "correlate_kernel";
    PyObject *ox, *odz, *odw, *ostride = NULL, *odil = NULL, *opads = NULL, *ogroups = Py_None,
             *osamples = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$OOOOO", kw, &ox, &odz, &odw, &ostride,
                                     &odil, &opads, &ogroups, &osamples))
        return NULL;
    char kind = 0;
    Arg a[3] = {{.held = 0}};
    Geo d = {0};
    Py_ssize_t elems, g0, g1, b0, b1, nparts = 0;
    if (get_array(&a[0], ox, fn, "x", 5, "(B, G, C, H, W)", 0, 0, &kind) < 0 ||
        get_array(&a[1], odz, fn, "dz", 5, "(B, G, M, OH, OW)", 0, 0, &kind) < 0 ||
        get_array(&a[2], odw, fn, "dw", 5, "(G, M, C, KH, KW)", 1, 1, &kind) < 0 ||
        geometry(&d, fn, &a[0], &a[2], "dw", &a[1], "dz", ostride, odil, opads, Py_None,
                 &elems) < 0)
        goto out;
    if (get_range(ogroups, d.G, &g0, &g1, fn, "groups", "groups") < 0 ||
        get_range(osamples, d.B, &b0, &b1, fn, "samples", "samples") < 0)
        goto out;
    if (mul_add(&nparts, fn, "dw's partial sums", d.M, d.C, 0) < 0 ||
        mul_add(&nparts, fn, "dw's partial sums", nparts, d.KH, 0) < 0 ||
        mul_add(&nparts, fn, "dw's partial sums", nparts, d.KW, 0) < 0)
        goto out;
    const size_t item = kind == 'f' ? sizeof(float) : sizeof(double);
    if (elems == 0 || b0 == b1) {               /* nothing read: the sums are zero */
        char *dw = a[2].view.buf;
        for (Py_ssize_t g = g0; g < g1; g++)
            memset(dw + (size_t)(g * nparts) * item, 0, (size_t)nparts * item);
    } else if (g0 < g1) {
        if ((size_t)elems > ((size_t)-1) / item / 2 ||
            (size_t)nparts > ((size_t)-1) / VBYTES / 2) { overflow(fn, "the scratch"); goto out; }
        void *buf = aligned_alloc(VBYTES, ((size_t)elems * item + VBYTES - 1) / VBYTES * VBYTES);
        void *part = aligned_alloc(VBYTES, (size_t)nparts * VBYTES);
        if (!buf || !part) { free(buf), free(part); PyErr_NoMemory(); goto out; }
        BY_DTYPE(kind, kern, a[0].view.buf, a[1].view.buf, a[2].view.buf, &d, g0, g1, b0, b1, buf,
                             part);
        free(buf), free(part);
    }
out:
    geo_free(&d);
    return finish(a, 3);
}

static PyMethodDef methods[] = {
    METHOD(correlate,
     "correlate(x, w, out, bias=None, *, stride, dilation, pads, planes=None): the valid\n"
     "correlation of x (B, G, C, H, W), zero-padded by pads = (top, bottom, left, right), with\n"
     "w (G, M, C, KH, KW) plus bias (G, M) into out (B, G, M, OH, OW), for the planes\n"
     "planes[0]:planes[1] of the flattened (b, g) (all when None). x and out: any strides."),
    METHOD(correlate_kernel,
     "correlate_kernel(x, dz, dw, *, stride, dilation, pads, groups=None, samples=None): the\n"
     "kernel gradient dw[g] (G, M, C, KH, KW) of x (B, G, C, H, W), zero-padded by pads, and\n"
     "dz (B, G, M, OH, OW) for the groups groups[0]:groups[1], summed over the samples\n"
     "samples[0]:samples[1] (all when None); other groups of dw are not touched."),
    {NULL, NULL, 0, NULL},
};

MODULE(_depthwisec, "Plane-wise correlation loops (see _depthwise.py).", methods)
