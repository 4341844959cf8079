/* Direct (loop) valid cross-correlation on batch-innermost blocks: the optional compiled helper
 * of rot180's engine. See _direct.py for the layout, when it is used and why.
 *
 * Layout: 16 samples side by side in the innermost axis ("lanes"), so every multiply-add of a
 * convolution is one vector operation over 16 samples, whatever the stride, dilation, image
 * width or channel count (no remainders, no gathers):
 *
 *   x   (NB, G, C, H, W, 16)      dz, out  (NB, G, M, OH, OW, 16)      w, dw  (G, M, C, KH, KW)
 *
 *   correlate:        out[n, g, o, y, q, :] = bias[g, o] + sum_{c, ty, tx} w[g, o, c, ty, tx]
 *                                               * x[n, g, c, y*sh + ty*dh, q*sw + tx*dw, :]
 *   correlate_kernel: dw[g, o, c, ty, tx] = sum_{n, y, q, lane} dz[n, g, o, y, q, lane]
 *                                               * x[n, g, c, y*sh + ty*dh, q*sw + tx*dw, lane]
 *
 * over all NB blocks of the arrays given, with the GIL released so that Python threads can run
 * disjoint ranges of blocks at once (each its own arrays). Accumulators are register tiles:
 * forward 8 output channels x 3 output columns with AVX-512, else 4 x 4; kernel gradient 8
 * output channels x 3 taps of a kernel row with AVX-512, else 4 x up to 5 (`narrow=True`: the
 * latter everywhere, per call). A lane may hold a band of a sample's rows rather than a whole
 * sample (pack_padded, unpack_bands): the loops do not know. Every sum runs in an order fixed
 * by the loops, never by threads or timing.
 *
 * The Python functions take keyword arguments and read every size from the arrays' own shapes,
 * checking that they agree (ValueError / TypeError naming the argument); every size the glue
 * derives from them and from the steps, bands and offsets is formed in overflow-checked
 * arithmetic (OverflowError, never a wrapped size), before anything is allocated or touched.
 */
#include "_glue.h" /* first: Python.h; the glue shared by the helpers, and MULTI */
#include <stdlib.h>
#include <string.h>
#include <unistd.h> /* sysconf: the L2 cache size */

/* With the target clones (_glue.h; not under -DROT180_PORTABLE): the AVX-512 kernel gradient is
 * also built on its own (TARGET_V4) and picked per call (CPU_V4), and it pins a register (asm,
 * KEEP_f32v4 below). Without them: the plain vector code alone (the "default" clone's). */
#if ROT180_CLONES
#define TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define HAVE_V4 1
#define CPU_V4(narrow) (!(narrow) && __builtin_cpu_supports("x86-64-v4"))
#else
#define TARGET_V4
#define HAVE_V4 0
#endif

#define LANES 16 /* samples per vector; _direct.py's LANES must match */

/* KEEP_x(g): keep g in a register. In the kernel gradient's 8 x 3 tiles GCC otherwise re-reads
 * each delta vector as a memory operand of all three multiply-adds that use it (24 vector loads
 * for 24 multiply-adds instead of 8 + 3), which ties the loop to the load ports (the
 * measurement: BENCHMARKS.md, "The register pin"). Only where a vector is one register
 * (AVX-512, float32, the TARGET_V4 build of that loop); -DROT180_NO_ASM leaves it out (to
 * measure it again). */
#define KEEP_f32(g) (void)0
#define KEEP_f64(g) (void)0
#if HAVE_V4 && !defined(ROT180_NO_ASM)
#define KEEP_f32v4(g) __asm__("" : "+v"(g))
#else
#define KEEP_f32v4(g) (void)0
#endif

typedef float vf32 __attribute__((vector_size(LANES * sizeof(float))));
typedef double vf64 __attribute__((vector_size(LANES * sizeof(double))));
typedef int vi32 __attribute__((vector_size(LANES * sizeof(int))));
typedef long long vi64 __attribute__((vector_size(LANES * sizeof(long long))));

typedef struct {
    Py_ssize_t G, C, H, W, M, KH, KW, OH, OW, sh, sw, dh, dw;
    /* Rows r0:r1 and columns c0:c1 of x may be non-zero; outside is zero padding, whose taps
     * the forward skips (a whole kernel row, or a tap whose columns all fall in it). */
    Py_ssize_t r0, r1, c0, c1;
    /* The forward's placement (correlate's origin and place; a sub-pixel phase of a strided
     * input gradient): window (y, q) starts at x's row ro + y sh, column co + q sw, and its
     * output goes to row py0 + y pys, column px0 + q pxs of out's OHf x OWf planes. A plain
     * call: ro = co = py0 = px0 = 0, pys = pxs = 1, OHf x OWf = OH x OW. */
    Py_ssize_t ro, co, OHf, OWf, pys, pxs, py0, px0;
    int narrow; /* use the tiles of CPUs without AVX-512 (a per-call choice, for tests) */
    Py_ssize_t cb; /* the kernel gradient's input channels per pass (grad_channels) */
    Py_ssize_t cq; /* the forward's output columns per chunk of a row (fwd_columns) */
    Py_ssize_t cf; /* the forward's input channels per pass (fwd_channels) */
    Py_ssize_t cp0, cp1; /* the forward's pass now: input channels cp0:cp1 (corr sets them) */
    Py_ssize_t ws[5]; /* the forward's w strides in elements (any sign: w may be a view) */
} Dims;

/* The channels of the forward's next block of tiles, from `left` still to do: 8 with 32
 * vector registers (`wide`), else 4, then the last 1-3 together (corr's dispatch below). */
static inline Py_ssize_t fwd_block(Py_ssize_t left, int wide)
{
    return wide && left >= 8 ? 8 : left >= 4 ? 4 : left;
}

/* Forward tile: OBc output channels x XBc output columns of one output row. `wo`: the block's
 * weights tap-major, the OBc weights of each tap (c, ty, tx) side by side (corr packs them so),
 * so that one base register serves all OBc broadcasts of a tap. Read straight from w, the OBc
 * rows CK apart took OBc offsets, more registers than 24 accumulators leave: GCC kept six of
 * them on the stack and reloaded them every tap. Measured on an AVX-512 Xeon, one thread,
 * operands in cache, 3x3, 16-128 channels: 79-82 % of the machine's matmul rate -> 85-100 %;
 * whole calls on 2 threads 0.93-0.97 of the time (BENCHMARKS.md, "Issue 13, fourth pass").
 * The same products in the same order: the same bits. */
#define DEFINE_FWD_TILE(T, V, SUF, OBc, XBc)                                                   \
    static inline __attribute__((always_inline)) void fwd_tile_##SUF##_##OBc##_##XBc(          \
        const T *xg, const T *wo, T *oo, const T *bias, const Dims *d, Py_ssize_t y,           \
        Py_ssize_t q0)                                                                         \
    {                                                                                          \
        const Py_ssize_t HWL = d->H * d->W * LANES;                                            \
        const Py_ssize_t plane = d->OHf * d->OWf * LANES, yx = y * d->sh + d->ro;              \
        T *orow = oo + ((y * d->pys + d->py0) * d->OWf + d->px0) * LANES;                      \
        V acc[OBc][XBc];                                                                       \
        if (d->cp0 > 0) /* a later pass of input channels: the sums so far */                  \
            for (int j = 0; j < OBc; j++)                                                      \
                for (int i = 0; i < XBc; i++)                                                  \
                    acc[j][i] = LOAD(V, orow + j * plane + (q0 + i) * d->pxs * LANES);         \
        else                                                                                   \
            for (int j = 0; j < OBc; j++) {                                                    \
                const T b_ = bias ? bias[j] : (T)0;                                            \
                for (int i = 0; i < XBc; i++) acc[j][i] = (V){0} + b_;                         \
            }                                                                                  \
        /* Taps that read only padding: rows [ty_lo, ty_hi), and per tap the tile's columns. */ \
        Py_ssize_t ty_lo = 0, ty_hi = d->KH;                                                   \
        while (ty_lo < ty_hi && yx + ty_lo * d->dh < d->r0) ty_lo++;                           \
        while (ty_hi > ty_lo && yx + (ty_hi - 1) * d->dh >= d->r1) ty_hi--;                    \
        const Py_ssize_t first = q0 * d->sw + d->co, last = (q0 + XBc - 1) * d->sw + d->co;   \
        for (Py_ssize_t c = d->cp0; c < d->cp1; c++)                                           \
            for (Py_ssize_t ty = ty_lo; ty < ty_hi; ty++) {                                    \
                const T *row = xg + c * HWL + (yx + ty * d->dh) * d->W * LANES + d->co * LANES;\
                const T *wr = wo + (c * d->KH + ty) * d->KW * OBc;                             \
                for (Py_ssize_t tx = 0; tx < d->KW; tx++) {                                    \
                    if (last + tx * d->dw < d->c0 || first + tx * d->dw >= d->c1) continue;    \
                    V v[XBc];                                                                  \
                    for (int i = 0; i < XBc; i++)                                              \
                        v[i] = LOAD(V, row + ((q0 + i) * d->sw + tx * d->dw) * LANES);         \
                    for (int j = 0; j < OBc; j++) {                                            \
                        const T wv = wr[tx * OBc + j];                                         \
                        for (int i = 0; i < XBc; i++) acc[j][i] += wv * v[i];                  \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        for (int j = 0; j < OBc; j++)                                                          \
            for (int i = 0; i < XBc; i++)                                                      \
                STORE(V, orow + j * plane + (q0 + i) * d->pxs * LANES, acc[j][i]);             \
    }

/* Every tile and row driver for blocks of OBc output channels. */
#define DEFINE_BLOCK(T, V, SUF, OBc)                                                           \
    DEFINE_FWD_TILE(T, V, SUF, OBc, 4)                                                         \
    DEFINE_FWD_TILE(T, V, SUF, OBc, 1)                                                         \
    DEFINE_ROWS_X(T, V, SUF, OBc, 4, 1)

/* Columns qa:qb of output row y in tiles of OBc channels x XBc columns, then XB2 columns, then
 * single columns (LeNet's 14-wide input gradient in 8-column tiles alone ran 6 of 14 columns
 * one by one). */
#define DEFINE_ROWS_X(T, V, SUF, OBc, XBc, XB2)                                                \
    static inline __attribute__((always_inline)) void fwd_rows_##SUF##_##OBc##x##XBc(          \
        const T *xg, const T *wo, T *oo, const T *bias, const Dims *d, Py_ssize_t y,           \
        Py_ssize_t qa, Py_ssize_t qb)                                                          \
    {                                                                                          \
        Py_ssize_t q = qa;                                                                     \
        for (; q + XBc <= qb; q += XBc) fwd_tile_##SUF##_##OBc##_##XBc(xg, wo, oo, bias, d, y, q); \
        for (; q + XB2 <= qb; q += XB2) fwd_tile_##SUF##_##OBc##_##XB2(xg, wo, oo, bias, d, y, q); \
        for (; q < qb; q++) fwd_tile_##SUF##_##OBc##_1(xg, wo, oo, bias, d, y, q);             \
    }

/* With 32 vector registers (AVX-512): tiles of 8 output channels x 3 columns, 24 accumulators.
 * Measured, one thread: the benchmark's stride-2 forward 30.5 -> 26.7 ms, L3's 25.5 -> 23.9;
 * same bits (each output's sum runs in the same order). The last 1-3 channels take 6-8 columns
 * at a time (3 x 6, 2 x 8, 1 x 8: 18, 16, 8 accumulators; 3 x 8 spills registers): 3 channels
 * from 64 with a 4x4 kernel, batch 8 in bands, whole call 13.6 -> 12.1 ms. */
#define DEFINE_WIDE(T, V, SUF)                                                                 \
    DEFINE_FWD_TILE(T, V, SUF, 8, 3)                                                           \
    DEFINE_FWD_TILE(T, V, SUF, 8, 1)                                                           \
    DEFINE_FWD_TILE(T, V, SUF, 3, 6)                                                           \
    DEFINE_FWD_TILE(T, V, SUF, 2, 8)                                                           \
    DEFINE_FWD_TILE(T, V, SUF, 1, 8)                                                           \
    DEFINE_ROWS_X(T, V, SUF, 8, 3, 1)                                                          \
    DEFINE_ROWS_X(T, V, SUF, 3, 6, 4)                                                          \
    DEFINE_ROWS_X(T, V, SUF, 2, 8, 4)                                                          \
    DEFINE_ROWS_X(T, V, SUF, 1, 8, 4)

/* The forward's weights tap-major within each tile's block of ob output channels (fwd_block),
 * as the tiles read them: wt[(g, o) CK + t ob + j] = w[g, o + j, t], t = (c, ty, tx), read
 * through w's own strides d->ws (an input gradient's kernel is a rot180, channel-swapped view).
 * In the order that reads w along its memory: block by block where a block's rows run along
 * their taps (a contiguous kernel: float32 blocks of 8 as 8 x 8 register transposes), input
 * channel by input channel where the view's channel stride is the larger (the swapped view:
 * one c holds every output channel's taps side by side). Read in a block's order alone, a
 * swapped 512 x 512 x 3 x 3 kernel took 2.3 ms a call (each input channel 18 KiB from the last,
 * past what the prefetchers follow) and a contiguous one 1.2 ms (one scalar load and store a
 * value); whole forward and input-gradient calls through the helper on 2 threads, batch 1-8,
 * 7-28 pixels, 128-512 channels: 0.96-0.99 of the time (float64, whose blocks stay scalar:
 * unchanged). Inlined into corr: as a call of its own, float64's loops lost 5 %. A copy: the
 * same values whatever the order. */
typedef float v8f __attribute__((vector_size(8 * sizeof(float))));
typedef int v8i __attribute__((vector_size(8 * sizeof(int))));
#define T8_LO_1 {0, 8, 2, 10, 4, 12, 6, 14}
#define T8_HI_1 {1, 9, 3, 11, 5, 13, 7, 15}
#define T8_LO_2 {0, 1, 8, 9, 4, 5, 12, 13}
#define T8_HI_2 {2, 3, 10, 11, 6, 7, 14, 15}
#define T8_LO_4 {0, 1, 2, 3, 8, 9, 10, 11}
#define T8_HI_4 {4, 5, 6, 7, 12, 13, 14, 15}
#define T8_STAGE(S)                                                                            \
    for (int i = 0; i < 8; i++)                                                                \
        if (!(i & S)) {                                                                        \
            const v8f a_ = v[i], b_ = v[i | S];                                                \
            v[i] = __builtin_shuffle(a_, b_, (v8i)T8_LO_##S);                                  \
            v[i | S] = __builtin_shuffle(a_, b_, (v8i)T8_HI_##S);                              \
        }
/* dst[t 8 + j] = rows[j][t] for t < n (rows: 8 pointers, each row's values contiguous). */
static inline __attribute__((always_inline)) void transpose8_rows(const float *const *rows,
                                                                  float *dst, Py_ssize_t n)
{
    Py_ssize_t t = 0;
    for (; t + 8 <= n; t += 8) {
        v8f v[8];
        for (int j = 0; j < 8; j++) v[j] = LOAD(v8f, rows[j] + t);
        T8_STAGE(1)
        T8_STAGE(2)
        T8_STAGE(4)
        for (int i = 0; i < 8; i++) STORE(v8f, dst + (t + i) * 8, v[i]);
    }
    for (; t < n; t++)
        for (int j = 0; j < 8; j++) dst[t * 8 + j] = rows[j][t];
}
#define DEFINE_PACK_WEIGHTS(T, SUF)                                                            \
    static inline __attribute__((always_inline)) void pack_weights_##SUF(const T *w, T *wt,     \
                                                                     const Dims *d, int wide) \
    {                                                                                          \
        const Py_ssize_t G = d->G, M = d->M, C = d->C, K = d->KH * d->KW, CK = C * K;          \
        const Py_ssize_t *ws = d->ws;                                                          \
        const int rows = ws[4] == 1 && ws[3] == d->KW && ws[2] == K; /* t contiguous */      \
        const int by_c = !rows && (ws[2] < 0 ? -ws[2] : ws[2]) > (ws[1] < 0 ? -ws[1] : ws[1]); \
        for (Py_ssize_t g = 0; g < G; g++) {                                                   \
            const T *wg = w + g * ws[0];                                                       \
            T *tg = wt + g * M * CK;                                                           \
            for (Py_ssize_t c = 0; c < (by_c ? C : 1); c++)                                    \
                for (Py_ssize_t o = 0, ob; o < M; o += ob) {                                   \
                    ob = fwd_block(M - o, wide);                                               \
                    if (rows && ob == 8 && sizeof(T) == sizeof(float)) {                       \
                        const float *r[8];                                                     \
                        for (int j = 0; j < 8; j++) r[j] = (const float *)(wg + (o + j) * ws[1]); \
                        transpose8_rows(r, (float *)(tg + o * CK), CK);                        \
                        continue;                                                              \
                    }                                                                          \
                    const Py_ssize_t c0 = by_c ? c : 0, c1 = by_c ? c + 1 : C;                 \
                    T *dst = tg + o * CK + c0 * K * ob;                                        \
                    for (Py_ssize_t cc = c0; cc < c1; cc++)                                    \
                        for (Py_ssize_t ty = 0; ty < d->KH; ty++)                              \
                            for (Py_ssize_t tx = 0; tx < d->KW; tx++) {                        \
                                const T *src = wg + o * ws[1] + cc * ws[2] + ty * ws[3] +      \
                                               tx * ws[4];                                     \
                                for (Py_ssize_t j = 0; j < ob; j++) *dst++ = src[j * ws[1]];   \
                            }                                                                  \
                }                                                                              \
        }                                                                                      \
    }
DEFINE_PACK_WEIGHTS(float, f32)
DEFINE_PACK_WEIGHTS(double, f64)

#define DEFINE_KERNELS(T, V, SUF)                                                              \
    DEFINE_BLOCK(T, V, SUF, 1)                                                                 \
    DEFINE_BLOCK(T, V, SUF, 2)                                                                 \
    DEFINE_BLOCK(T, V, SUF, 3)                                                                 \
    DEFINE_BLOCK(T, V, SUF, 4)                                                                 \
    DEFINE_WIDE(T, V, SUF)                                                                     \
                                                                                               \
    MULTI static void corr_##SUF(const T *x, const T *w, T *out, const T *bias, const Dims *d, \
                                 Py_ssize_t NB, T *wt)                                         \
    {                                                                                          \
        const Py_ssize_t G = d->G, M = d->M, CK = d->C * d->KH * d->KW;                        \
        const Py_ssize_t xs = d->C * d->H * d->W * LANES, os = d->OHf * d->OWf * LANES;        \
        const int wide = WIDE_REGISTERS(d->narrow);                                            \
        pack_weights_##SUF(w, wt, d, wide);                                                    \
        w = wt;                                                                                \
        /* The input channels in passes of d->cf (fwd_channels; the tiles read the pass   \
         * from their copy of the geometry), a pass at least once so that C = 0 still writes \
         * the bias. */                                                                       \
        Dims pass = *d;                                                                        \
        d = &pass;                                                                             \
        for (Py_ssize_t n = 0; n < NB; n++)                                                    \
            for (Py_ssize_t g = 0; g < G; g++)                                                 \
            for (pass.cp0 = 0; pass.cp0 < pass.C || pass.cp0 == 0; pass.cp0 += pass.cf) {     \
                pass.cp1 = pass.cp0 + pass.cf < pass.C ? pass.cp0 + pass.cf : pass.C;          \
                const T *xg = x + (n * G + g) * xs;                                            \
                T *og = out + (n * G + g) * M * os;                                            \
                const T *wg = w + g * M * CK, *bg = bias ? bias + g * M : NULL;                \
                /* Output row by row, every block of channels before the next row: the rows of \
                 * input one output row reads (a pass's cf x KH of them) stay in the caches   \
                 * for all M / 8 blocks, where block by block over the whole plane re-read the \
                 * sample's input from L3 once per block. Measured, forward passes on 2       \
                 * threads, batch 32-64, 3-128 channels, 8-56 pixels: 0.95-1.00 of the time   \
                 * (one thread: the same). A row too long for L2 in chunks of d->cq columns   \
                 * (fwd_columns). Same tiles, same sums, same bits.                           */\
                for (Py_ssize_t y = 0; y < d->OH; y++)                                         \
                for (Py_ssize_t qa = 0; qa < d->OW; qa += d->cq) {                             \
                    const Py_ssize_t qb = qa + d->cq < d->OW ? qa + d->cq : d->OW;             \
                    Py_ssize_t o = 0;                                                          \
                    if (wide)                                                                  \
                        for (; o + 8 <= M; o += 8)                                             \
                            fwd_rows_##SUF##_8x3(xg, wg + o * CK, og + o * os,                 \
                                                 bg ? bg + o : NULL, d, y, qa, qb);             \
                    for (; o + 4 <= M; o += 4)                                                 \
                        fwd_rows_##SUF##_4x4(xg, wg + o * CK, og + o * os, bg ? bg + o : NULL, \
                                             d, y, qa, qb);                                    \
                    const T *wr = wg + o * CK, *br = bg ? bg + o : NULL;                       \
                    T *orr = og + o * os;                                                      \
                    switch (wide ? M - o : 0) { /* the last 1-3 channels: more columns */      \
                    case 3: fwd_rows_##SUF##_3x6(xg, wr, orr, br, d, y, qa, qb); break;         \
                    case 2: fwd_rows_##SUF##_2x8(xg, wr, orr, br, d, y, qa, qb); break;         \
                    case 1: fwd_rows_##SUF##_1x8(xg, wr, orr, br, d, y, qa, qb); break;         \
                    }                                                                          \
                    switch (wide ? 0 : M - o) {                                                \
                    case 3: fwd_rows_##SUF##_3x4(xg, wr, orr, br, d, y, qa, qb); break;         \
                    case 2: fwd_rows_##SUF##_2x4(xg, wr, orr, br, d, y, qa, qb); break;         \
                    case 1: fwd_rows_##SUF##_1x4(xg, wr, orr, br, d, y, qa, qb); break;         \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
    }

DEFINE_KERNELS(float, vf32, f32)
DEFINE_KERNELS(double, vf64, f64)

/* The sum of a vector's 16 lanes as a tree, in a fixed order: halves, quarters, ... */
#define DEFINE_HSUM(T, V, IV, SUF)                                                             \
    static inline __attribute__((always_inline)) T hsum_##SUF(V v)                             \
    {                                                                                          \
        v += __builtin_shuffle(v, (IV){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7});  \
        v += __builtin_shuffle(v, (IV){4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3});        \
        v += __builtin_shuffle(v, (IV){2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1});        \
        v += __builtin_shuffle(v, (IV){1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0});        \
        return v[0];                                                                           \
    }
/* dst[k] += hsum(a[k]) for 16 vectors at once: a transpose that adds as it goes. Stage S (8,
 * 4, 2, 1) pairs vector k with vector k + S and adds, for both, lane i to lane i + S within
 * each run of 2S lanes: the pairs hsum adds, in its order, so the same bits. After the four
 * stages lane k holds a[k]'s sum: 16 weights of a kernel gradient in 30 shuffles and 15 adds
 * (and one vector load, add and store), where hsum takes 4 shuffles and 4 adds each and then
 * a scalar add (8x512x7x7 -> 512: the lanes' sums took 11 % of the kernel gradient). */
#define RED_LO_8 {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}
#define RED_HI_8 {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}
#define RED_LO_4 {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}
#define RED_HI_4 {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}
#define RED_LO_2 {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}
#define RED_HI_2 {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}
#define RED_LO_1 {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}
#define RED_HI_1 {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}
#define RED_STAGE(V, IV, S)                                                                    \
    for (int k = 0; k < S; k++)                                                                \
        v[k] = __builtin_shuffle(v[k], v[k + S], (IV)RED_LO_##S) +                            \
               __builtin_shuffle(v[k], v[k + S], (IV)RED_HI_##S);
#define DEFINE_HSUM16(T, V, IV, SUF)                                                           \
    static inline __attribute__((always_inline)) void hsum16_##SUF(const V *a, T *dst)         \
    {                                                                                          \
        V v[LANES];                                                                            \
        for (int k = 0; k < LANES; k++) v[k] = a[k];                                           \
        RED_STAGE(V, IV, 8)                                                                    \
        RED_STAGE(V, IV, 4)                                                                    \
        RED_STAGE(V, IV, 2)                                                                    \
        RED_STAGE(V, IV, 1)                                                                    \
        STORE(V, dst, LOAD(V, dst) + v[0]);                                                    \
    }

DEFINE_HSUM(float, vf32, vi32, f32)
DEFINE_HSUM(double, vf64, vi64, f64)
DEFINE_HSUM16(float, vf32, vi32, f32)
DEFINE_HSUM16(double, vf64, vi64, f64)

/* Kernel-gradient tile: OBc output channels x TBc neighbouring taps of one kernel row (or,
 * where the rows are shorter than a tile, of one kernel column), summed over a chunk of
 * output positions (rows y0:y1 x columns q0:q1) and written (`fresh`: the first chunk) or
 * added to the partial sums part[j * CK + i * pstep] (one vector of lanes per weight). xr: the input row under output
 * row 0 for the first tap, tap i tstep values further (dw lanes along a row, dh rows of lanes
 * down a column); zb: the chunk's delta, position-major with the OBc channels' vectors side by
 * side (a copy: the delta planes themselves sit a multiple of 4 KiB apart, and OBc streams
 * at such a distance evict each other from L1). */
#define DEFINE_GRAD_TILE(T, V, SUF, OBc, TBc)                                                  \
    static inline __attribute__((always_inline)) void grad_tile_##SUF##_##OBc##_##TBc(         \
        const T *xr, const V *zb, V *part, const Dims *d, Py_ssize_t y0, Py_ssize_t y1,        \
        Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t tstep, Py_ssize_t pstep, int fresh)           \
    {                                                                                          \
        const Py_ssize_t CK = d->C * d->KH * d->KW;                                            \
        V acc[OBc][TBc];                                                                       \
        for (int j = 0; j < OBc; j++)                                                          \
            for (int i = 0; i < TBc; i++) acc[j][i] = (V){0};                                  \
        for (Py_ssize_t y = y0; y < y1; y++) {                                                 \
            const T *row = xr + y * d->sh * d->W * LANES;                                      \
            for (Py_ssize_t q = q0; q < q1; q++, zb += OBc) {                                  \
                V v[TBc];                                                                      \
                for (int i = 0; i < TBc; i++)                                                  \
                    v[i] = LOAD(V, row + q * d->sw * LANES + i * tstep);                       \
                for (int j = 0; j < OBc; j++) {                                                \
                    V g_ = zb[j];                                                              \
                    KEEP_##SUF(g_);                                                    \
                    for (int i = 0; i < TBc; i++) acc[j][i] += g_ * v[i];                      \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int j = 0; j < OBc; j++)                                                          \
            for (int i = 0; i < TBc; i++) {                                                    \
                V *p_ = part + j * CK + i * pstep;                                             \
                *p_ = fresh ? acc[j][i] : *p_ + acc[j][i];                                     \
            }                                                                                  \
    }

/* The tile of a line's next `left` taps, `fresh` (a constant, so that each tile is inlined
 * with its store or its add and the loops are the same either way) for the first chunk. */
#define GRAD_SWITCH(SUF, OBc, FRESH)                                                           \
    switch (left < GRAD_TAPS(OBc) ? left : GRAD_TAPS(OBc)) {                                   \
    case 5: grad_tile_##SUF##_##OBc##_5(xt, zb, pt, d, y0, y1, q0, q1, tstep, pstep, FRESH);   \
        break;                                                                                 \
    case 4: grad_tile_##SUF##_##OBc##_4(xt, zb, pt, d, y0, y1, q0, q1, tstep, pstep, FRESH);   \
        break;                                                                                 \
    case 3: grad_tile_##SUF##_##OBc##_3(xt, zb, pt, d, y0, y1, q0, q1, tstep, pstep, FRESH);   \
        break;                                                                                 \
    case 2: grad_tile_##SUF##_##OBc##_2(xt, zb, pt, d, y0, y1, q0, q1, tstep, pstep, FRESH);   \
        break;                                                                                 \
    case 1: grad_tile_##SUF##_##OBc##_1(xt, zb, pt, d, y0, y1, q0, q1, tstep, pstep, FRESH);   \
        break;                                                                                 \
    }

/* Taps per tile: 3 with blocks of 8 channels (24 accumulators), else up to 5 (<= 20). */
#define GRAD_TAPS(OBc) ((OBc) == 8 ? 3 : 5)

#define DEFINE_GRAD(T, V, SUF, OBc)                                                            \
    DEFINE_GRAD_TILE(T, V, SUF, OBc, 1)                                                        \
    DEFINE_GRAD_TILE(T, V, SUF, OBc, 2)                                                        \
    DEFINE_GRAD_TILE(T, V, SUF, OBc, 3)                                                        \
    DEFINE_GRAD_TILE(T, V, SUF, OBc, 4)                                                        \
    DEFINE_GRAD_TILE(T, V, SUF, OBc, 5)                                                        \
    /* Output channels o:o+OBc of one block: for each chunk of positions, its delta copied     \
     * into zb, then every input channel and tap; part holds the OBc x CK partial sums, which  \
     * the first chunk writes (every tap of c0:c1 once) and the others add to. */              \
    static inline __attribute__((always_inline)) void grad_block_##SUF##_##OBc(                \
        const T *xg, const T *dzo, V *part, V *zb, const Dims *d, Py_ssize_t c0,               \
        Py_ssize_t c1)                                                                         \
    {                                                                                          \
        const Py_ssize_t OW = d->OW, plane = d->OH * OW * LANES, HWL = d->H * d->W * LANES;    \
        const Py_ssize_t K = d->KH * d->KW, per = GRAD_CHUNK_BYTES / (OBc * sizeof(V));        \
        const Py_ssize_t qb = OW < per ? OW : per, rb = OW < per ? per / OW : 1;               \
        /* The taps in lines of a tile's width: kernel rows, or kernel columns where the rows \
         * are narrower than a tile and the columns longer (7 x 1: one 8 x 1 tile per tap, 8  \
         * multiply-adds to 9 loads, ran at 56 % of the matmul rate). Each weight's sum is    \
         * the same either way: the same bits. */                                              \
        const int cols = d->KW < GRAD_TAPS(OBc) && d->KH > d->KW;                              \
        const Py_ssize_t row_ = d->dh * d->W * LANES, tap_ = d->dw * LANES;                    \
        const Py_ssize_t lines = cols ? d->KW : d->KH, len = cols ? d->KH : d->KW;             \
        const Py_ssize_t xline = cols ? tap_ : row_, tstep = cols ? row_ : tap_;               \
        const Py_ssize_t pline = cols ? 1 : d->KW, pstep = cols ? d->KW : 1;                   \
        for (Py_ssize_t y0 = 0; y0 < d->OH; y0 += rb)                                          \
            for (Py_ssize_t q0 = 0; q0 < OW; q0 += qb) {                                       \
                const Py_ssize_t y1 = y0 + rb < d->OH ? y0 + rb : d->OH;                       \
                const Py_ssize_t q1 = q0 + qb < OW ? q0 + qb : OW;                             \
                const int fresh = y0 == 0 && q0 == 0; /* the first chunk stores its sums */    \
                V *z = zb;                                                                     \
                for (Py_ssize_t y = y0; y < y1; y++)                                           \
                    for (Py_ssize_t q = q0; q < q1; q++)                                       \
                        for (int j = 0; j < OBc; j++)                                          \
                            *z++ = LOAD(V, dzo + j * plane + (y * OW + q) * LANES);            \
                for (Py_ssize_t c = c0; c < c1; c++)                                           \
                    for (Py_ssize_t l = 0; l < lines; l++) {                                   \
                        const T *xr = xg + c * HWL + l * xline;                                \
                        V *pr = part + c * K + l * pline;                                      \
                        for (Py_ssize_t t = 0; t < len; t += GRAD_TAPS(OBc)) {                 \
                            const T *xt = xr + t * tstep;                                      \
                            V *pt = pr + t * pstep;                                            \
                            const Py_ssize_t left = len - t;                                   \
                            if (fresh) GRAD_SWITCH(SUF, OBc, 1) else GRAD_SWITCH(SUF, OBc, 0)  \
                        }                                                                      \
                    }                                                                          \
            }                                                                                  \
    }

/* A chunk of positions: its delta copy (positions x OBc vectors) in this many bytes of L1. */
#define GRAD_CHUNK_BYTES 16384

#define DEFINE_GRAD_ALL(T, V, SUF, ATTR)                                                       \
    DEFINE_GRAD(T, V, SUF, 1)                                                                  \
    DEFINE_GRAD(T, V, SUF, 2)                                                                  \
    DEFINE_GRAD(T, V, SUF, 3)                                                                  \
    DEFINE_GRAD(T, V, SUF, 4)                                                                  \
    DEFINE_GRAD(T, V, SUF, 8)                                                                  \
    /* part: 8 * CK vectors, zb: GRAD_CHUNK_BYTES. Per block of samples and of output         \
     * channels, the lanes of the partial sums are summed (fixed order) into dw. */            \
    ATTR static void kern_##SUF(const T *x, const T *dz, T *dw, V *part, V *zb, const Dims *d, \
                                 Py_ssize_t NB)                                                \
    {                                                                                          \
        const Py_ssize_t G = d->G, M = d->M, C = d->C, K = d->KH * d->KW, CK = C * K;          \
        const Py_ssize_t HWL = d->H * d->W * LANES, plane = d->OH * d->OW * LANES;             \
        const int wide = WIDE_REGISTERS(d->narrow);                                            \
        for (Py_ssize_t r = 0; r < G * M * CK; r++) dw[r] = 0;                                 \
        for (Py_ssize_t n = 0; n < NB; n++)                                                    \
            for (Py_ssize_t g = 0; g < G; g++) {                                               \
                const T *xg = x + (n * G + g) * C * HWL, *dzg = dz + (n * G + g) * M * plane;  \
                for (Py_ssize_t c0 = 0; c0 < C; c0 += d->cb) {                                 \
                    const Py_ssize_t c1 = c0 + d->cb < C ? c0 + d->cb : C;                     \
                    const Py_ssize_t lo = c0 * K, hi = c1 * K;                                 \
                    for (Py_ssize_t o = 0; o < M;) {                                           \
                        const Py_ssize_t ob = wide && M - o >= 8 ? 8 : M - o >= 4 ? 4 : M - o; \
                        if (plane == 0) /* no positions: no chunk writes the partial sums  \
                                         * (and grad_block's chunk sizes divide by OW) */     \
                            for (Py_ssize_t j = 0; j < ob; j++)                                \
                                for (Py_ssize_t r = lo; r < hi; r++) part[j * CK + r] = (V){0}; \
                        const T *dzo = dzg + o * plane;                                        \
                        switch (plane ? ob : 0) {                                              \
                        case 8: grad_block_##SUF##_8(xg, dzo, part, zb, d, c0, c1); break;     \
                        case 4: grad_block_##SUF##_4(xg, dzo, part, zb, d, c0, c1); break;     \
                        case 3: grad_block_##SUF##_3(xg, dzo, part, zb, d, c0, c1); break;     \
                        case 2: grad_block_##SUF##_2(xg, dzo, part, zb, d, c0, c1); break;     \
                        case 1: grad_block_##SUF##_1(xg, dzo, part, zb, d, c0, c1); break;     \
                        }                                                                      \
                        T *dwo = dw + (g * M + o) * CK;                                        \
                        for (Py_ssize_t j = 0; j < ob; j++) {                                  \
                            Py_ssize_t r = lo;                                                 \
                            for (; r + LANES <= hi; r += LANES)                                \
                                hsum16_##SUF(part + j * CK + r, dwo + j * CK + r);             \
                            for (; r < hi; r++) dwo[j * CK + r] += hsum_##SUF(part[j * CK + r]); \
                        }                                                                      \
                        o += ob;                                                               \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
    }

DEFINE_GRAD_ALL(float, vf32, f32, MULTI)
DEFINE_GRAD_ALL(double, vf64, f64, MULTI)
#if HAVE_V4
DEFINE_HSUM(float, vf32, vi32, f32v4)
DEFINE_HSUM16(float, vf32, vi32, f32v4)
DEFINE_GRAD_ALL(float, vf32, f32v4, TARGET_V4)
#endif

/* Packing into lanes and back: dst[n, r, l] = src[16n + l, r] (zero for samples >= B) and its
 * inverse. 16 positions x 16 samples at a time are loaded as 16 vectors, transposed in registers
 * (four butterfly stages: at stage s, rows i and i|s swap the elements whose column has bit s
 * set, so element (i, e) ends at (e, i)), and stored as 16 vectors; the last R % 16 positions
 * are moved one by one. */
#define MASK_LO_1 {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}
#define MASK_HI_1 {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}
#define MASK_LO_2 {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}
#define MASK_HI_2 {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}
#define MASK_LO_4 {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}
#define MASK_HI_4 {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}
#define MASK_LO_8 {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}
#define MASK_HI_8 {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}

/* One stage of the 16 x 16 transpose: rows i and i|S swap the elements of columns with bit S. */
#define BUTTERFLY(V, IV, S)                                                                    \
    for (int i = 0; i < LANES; i++)                                                            \
        if (!(i & S)) {                                                                        \
            const V a = v[i], b = v[i | S];                                                    \
            v[i] = __builtin_shuffle(a, b, (IV)MASK_LO_##S);                                   \
            v[i | S] = __builtin_shuffle(a, b, (IV)MASK_HI_##S);                               \
        }

#define DEFINE_PACK(T, V, IV, SUF)                                                             \
    static inline __attribute__((always_inline)) void transpose_##SUF(V *v)                    \
    {                                                                                          \
        BUTTERFLY(V, IV, 1)                                                                    \
        BUTTERFLY(V, IV, 2)                                                                    \
        BUTTERFLY(V, IV, 4)                                                                    \
        BUTTERFLY(V, IV, 8)                                                                    \
    }                                                                                          \
    MULTI static void unpack_##SUF(const T *src, T *dst, Py_ssize_t B, Py_ssize_t S,        \
                                   Py_ssize_t CH, Py_ssize_t R, Py_ssize_t OH, Py_ssize_t OD,  \
                                   Py_ssize_t n0, Py_ssize_t n1)                               \
    {                                                                                          \
        /* Lane l of block n is band v = 16n + l: sample v / S, band rows (v % S) R + [0, R)   \
         * of each of its CH planes of OH rows (R and OH counted in elements here). OD > 1     \
         * (S = 1): lane v is output depth v % OD of sample v / OD, its plane ch going to      \
         * plane ch OD + v % OD of the sample's CH OD (a 3-D result, unfolded on the way).    */ \
        const Py_ssize_t nv = B * S * OD, PS = OD * OH;                                        \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                 \
            T *base[LANES];                                                                    \
            Py_ssize_t len[LANES];                                                             \
            for (int l = 0; l < LANES; l++) {                                                  \
                const Py_ssize_t v = n * LANES + l, r0 = (v % S) * R;                          \
                base[l] = v >= nv ? NULL : OD > 1 ? dst + ((v / OD) * CH * OD + v % OD) * OH   \
                                                  : dst + (v / S) * CH * OH + r0;              \
                len[l] = v < nv ? (OH - r0 < R ? OH - r0 : R) : 0;                             \
            }                                                                                  \
            for (Py_ssize_t ch = 0; ch < CH; ch++) {                                           \
                const T *s = src + ((n - n0) * CH + ch) * R * LANES;                           \
                Py_ssize_t r = 0;                                                              \
                for (; r + LANES <= R; r += LANES) {                                           \
                    V v[LANES];                                                                \
                    for (int i = 0; i < LANES; i++) v[i] = LOAD(V, s + (r + i) * LANES);       \
                    transpose_##SUF(v);                                                        \
                    for (int l = 0; l < LANES; l++) {                                          \
                        T *d = base[l] + ch * PS + r;                                          \
                        if (r + LANES <= len[l]) STORE(V, d, v[l]);                            \
                        else                                                                   \
                            for (Py_ssize_t i = 0; i < len[l] - r; i++) d[i] = v[l][i];        \
                    }                                                                          \
                }                                                                              \
                for (; r < R; r++)                                                             \
                    for (int l = 0; l < LANES; l++)                                            \
                        if (r < len[l]) base[l][ch * PS + r] = s[r * LANES + l];               \
            }                                                                                  \
        }                                                                                      \
    }

DEFINE_PACK(float, vf32, vi32, f32)
DEFINE_PACK(double, vf64, vi64, f64)

/* Packing with zero padding, in row bands: src (B, CH, H, W) into dst (NB, CH, Hp, pl + W + pr,
 * 16), so that the padded copy of the input is never made separately. Lane l of block n is band
 * v = 16n + l: sample v / S, whose padded rows (v % S) step + [0, Hp) it holds (padded row p is
 * row p - pt of src; rows outside src, and lanes past the last band, are zeros). S = 1, step = 0
 * is plain packing of whole samples. */
#define DEFINE_PACK_PAD(T, V, SUF)                                                             \
    /* Whole samples whose padded rows hold all of src's (S = 1, pt >= 0, Hp >= pt + H): each  \
     * lane's plane is one contiguous run of H W values, transposed 16 values at a time across \
     * row ends (each transposed vector is one position, stored where its row and column put   \
     * it), so that rows narrower than 16 (7, 8, 14, 28 columns) are not copied value by value.\
     * The padding is written as zeros around them. Measured, one thread, padding 1: 64 x 32  \
     * x 32 x 32 1.03 -> 0.55 ms, 64 x 128 x 8 x 8 0.47 -> 0.10, 32 x 256 x 28 x 28 4.96 ->   \
     * 3.01 (row by row, with rows of fewer than 16 values copied value by value). */          \
    static inline __attribute__((always_inline)) void pack_plane_##SUF(                        \
        const T *const *s, T *d, Py_ssize_t H, Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t pt,      \
        Py_ssize_t pl, Py_ssize_t pr)                                                          \
    {                                                                                          \
        /* One padded plane of 16 lanes, lane l read from s[l] (H x W values; NULL: zeros). */\
        const Py_ssize_t Wp = pl + W + pr, HW = H * W;                                         \
        memset(d, 0, (size_t)(pt * Wp * LANES) * sizeof(T));                                   \
        memset(d + (pt + H) * Wp * LANES, 0, (size_t)((Hp - pt - H) * Wp * LANES) * sizeof(T));\
        for (Py_ssize_t y = 0; y < H; y++) {                                                   \
            T *row = d + (pt + y) * Wp * LANES;                                                \
            memset(row, 0, (size_t)(pl * LANES) * sizeof(T));                                  \
            memset(row + (pl + W) * LANES, 0, (size_t)(pr * LANES) * sizeof(T));               \
        }                                                                                      \
        T *first = d + (pt * Wp + pl) * LANES;                                                 \
        Py_ssize_t p = 0, y = 0, x = 0;                                                        \
        for (; p + LANES <= HW; p += LANES) {                                                  \
            V v[LANES];                                                                        \
            for (int l = 0; l < LANES; l++) v[l] = s[l] ? LOAD(V, s[l] + p) : (V){0};          \
            transpose_##SUF(v);                                                                \
            for (int i = 0; i < LANES; i++) {                                                  \
                STORE(V, first + (y * Wp + x) * LANES, v[i]);                                  \
                if (++x == W) x = 0, y++;                                                      \
            }                                                                                  \
        }                                                                                      \
        for (; p < HW; p++) {                                                                  \
            for (int l = 0; l < LANES; l++)                                                    \
                first[(y * Wp + x) * LANES + l] = s[l] ? s[l][p] : (T)0;                       \
            if (++x == W) x = 0, y++;                                                          \
        }                                                                                      \
    }                                                                                          \
    static inline __attribute__((always_inline)) void pack_whole_##SUF(                        \
        const T *src, T *dst, Py_ssize_t B, Py_ssize_t CH, Py_ssize_t H, Py_ssize_t W,          \
        Py_ssize_t Hp, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t pr, Py_ssize_t n0,              \
        Py_ssize_t n1)                                                                         \
    {                                                                                          \
        const Py_ssize_t Wp = pl + W + pr, HW = H * W, plane = CH * HW;                        \
        for (Py_ssize_t n = n0; n < n1; n++)                                                   \
            for (Py_ssize_t ch = 0; ch < CH; ch++) {                                           \
                const T *s[LANES];                                                             \
                for (int l = 0; l < LANES; l++) {                                              \
                    const Py_ssize_t v = n * LANES + l;                                        \
                    s[l] = v < B ? src + v * plane + ch * HW : NULL;                           \
                }                                                                              \
                pack_plane_##SUF(s, dst + ((n - n0) * CH + ch) * Hp * Wp * LANES, H, W, Hp, pt, \
                                 pl, pr);                                                      \
            }                                                                                  \
    }                                                                                          \
    /* A 3-D correlation's depth fold packed straight from src (B, G, C, D, H, W) (_depth.py): \
     * lane v = (b, o) for b = v / OD, o = v % OD, and plane (g, t, c) of it is depth          \
     * o sd + t dd - d0 of src's plane (b, g, c), zeros outside 0:D; the folded input is never \
     * made separately. */                                                                     \
    MULTI static void pack_depth_##SUF(const T *src, T *dst, Py_ssize_t B, Py_ssize_t G,       \
                                       Py_ssize_t C, Py_ssize_t D, Py_ssize_t H, Py_ssize_t W, \
                                       const Py_ssize_t *fold, Py_ssize_t Hp, Py_ssize_t pt,   \
                                       Py_ssize_t pl, Py_ssize_t pr, Py_ssize_t n0,            \
                                       Py_ssize_t n1)                                          \
    {                                                                                          \
        const Py_ssize_t kd = fold[0], sd = fold[1], dd = fold[2], d0 = fold[3], OD = fold[4];  \
        const Py_ssize_t Wp = pl + W + pr, HW = H * W, CH = G * kd * C;                        \
        for (Py_ssize_t n = n0; n < n1; n++)                                                   \
            for (Py_ssize_t g = 0; g < G; g++)                                                 \
                for (Py_ssize_t t = 0; t < kd; t++)                                            \
                    for (Py_ssize_t c = 0; c < C; c++) {                                       \
                        const T *s[LANES];                                                     \
                        for (int l = 0; l < LANES; l++) {                                      \
                            const Py_ssize_t v = n * LANES + l, b = v / OD;                    \
                            const Py_ssize_t z = (v % OD) * sd + t * dd - d0;                  \
                            s[l] = b < B && z >= 0 && z < D                                    \
                                       ? src + (((b * G + g) * C + c) * D + z) * HW : NULL;     \
                        }                                                                      \
                        const Py_ssize_t ch = (g * kd + t) * C + c;                            \
                        pack_plane_##SUF(s, dst + ((n - n0) * CH + ch) * Hp * Wp * LANES, H, W, \
                                         Hp, pt, pl, pr);                                      \
                    }                                                                          \
    }                                                                                          \
    MULTI static void pack_pad_##SUF(const T *src, T *dst, Py_ssize_t B, Py_ssize_t S,         \
                                     Py_ssize_t step, Py_ssize_t CH, Py_ssize_t H,             \
                                     Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t pt, Py_ssize_t pl,\
                                     Py_ssize_t pr, Py_ssize_t n0, Py_ssize_t n1)               \
    {                                                                                          \
        const Py_ssize_t Wp = pl + W + pr, plane = CH * H * W, nv = B * S;                     \
        if (S == 1 && pt >= 0 && Hp >= pt + H) {                                               \
            pack_whole_##SUF(src, dst, B, CH, H, W, Hp, pt, pl, pr, n0, n1);                   \
            return;                                                                            \
        }                                                                                      \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                 \
            const T *base[LANES];                                                              \
            Py_ssize_t y0[LANES];                                                              \
            for (int l = 0; l < LANES; l++) {                                                  \
                const Py_ssize_t v = n * LANES + l;                                            \
                base[l] = v < nv ? src + (v / S) * plane : NULL;                               \
                y0[l] = (v % S) * step - pt;                                                   \
            }                                                                                  \
            for (Py_ssize_t ch = 0; ch < CH; ch++)                                             \
                for (Py_ssize_t yy = 0; yy < Hp; yy++) {                                       \
                    T *d = dst + (((n - n0) * CH + ch) * Hp + yy) * Wp * LANES;                \
                    const T *s[LANES];                                                         \
                    int any = 0;                                                               \
                    for (int l = 0; l < LANES; l++) {                                          \
                        const Py_ssize_t y = y0[l] + yy;                                       \
                        s[l] = base[l] && y >= 0 && y < H ? base[l] + (ch * H + y) * W : NULL; \
                        any |= s[l] != NULL;                                                   \
                    }                                                                          \
                    if (!any) {                                                                \
                        memset(d, 0, (size_t)(Wp * LANES) * sizeof(T));                        \
                        continue;                                                              \
                    }                                                                          \
                    memset(d, 0, (size_t)(pl * LANES) * sizeof(T));                            \
                    memset(d + (pl + W) * LANES, 0, (size_t)(pr * LANES) * sizeof(T));         \
                    T *dr = d + pl * LANES;                                                    \
                    Py_ssize_t x = 0;                                                          \
                    for (; x + LANES <= W; x += LANES) {                                       \
                        V v[LANES];                                                            \
                        for (int l = 0; l < LANES; l++)                                        \
                            v[l] = s[l] ? LOAD(V, s[l] + x) : (V){0};                          \
                        transpose_##SUF(v);                                                    \
                        for (int i = 0; i < LANES; i++) STORE(V, dr + (x + i) * LANES, v[i]);  \
                    }                                                                          \
                    for (; x < W; x++)                                                         \
                        for (int l = 0; l < LANES; l++)                                        \
                            dr[x * LANES + l] = s[l] ? s[l][x] : (T)0;                         \
                }                                                                              \
        }                                                                                      \
    }

DEFINE_PACK_PAD(float, vf32, f32)
DEFINE_PACK_PAD(double, vf64, f64)

/* --- Python glue ----------------------------------------------------------------------------- */

/* Blocks of 16 lanes that `bands` bands of each of B samples fill: ceil(B * bands / 16). */
static int blocks_of(Py_ssize_t *out, const char *fn, Py_ssize_t B, Py_ssize_t bands)
{
    Py_ssize_t nv;
    if (mul_add(&nv, fn, "samples x bands", B, bands, LANES - 1) < 0) return -1;
    *out = nv / LANES;
    return 0;
}

/* An array argument (get_float_array, _glue.h): C-contiguous, writable if asked, of `ndim`
 * axes, float32 or float64, all of a call alike. The loops index by shape: the exporter's length
 * must be the shape's product and the product of the non-zero extents must fit. */
static int get_array(Arg *a, PyObject *obj, const char *fn, const char *name, int ndim,
                     const char *axes, int writable, char *kind)
{
    Py_ssize_t bytes;
    const int flags = ARG_CONTIGUOUS | (writable ? ARG_WRITABLE : 0);
    if (get_float_array(a, obj, fn, name, ndim, axes, flags, kind) < 0 ||
        check_extents(a, fn, name, NULL, &bytes) < 0)
        return -1;
    return holds(a, fn, name, bytes);
}

/* An array argument read through its strides (whole elements, any sign; kept in a->st):
 * float32 or float64 as the call's others, of `ndim` axes, its exporter's length the shape's.
 * The forward's w: an input gradient's kernel, a rot180, channel-swapped view, packed as it
 * is read (corr) where a contiguous copy first cost 4.1 ms a call at 512 x 512 x 3 x 3. */
static int get_strided(Arg *a, PyObject *obj, const char *fn, const char *name, int ndim,
                       const char *axes, char *kind)
{
    Py_ssize_t bytes;
    if (get_float_array(a, obj, fn, name, ndim, axes, 0, kind) < 0 ||
        check_extents(a, fn, name, "", &bytes) < 0)
        return -1;
    return holds(a, fn, name, bytes);
}

/* A pair of Py_ssize_t (a tuple or list of 2 ints), each >= low; `name` for the errors. */
static int get_pair(PyObject *obj, Py_ssize_t *a, Py_ssize_t *b, Py_ssize_t low, const char *fn,
                    const char *name)
{
    Py_ssize_t v[2];
    if (!obj) {
        PyErr_Format(PyExc_TypeError, "%s: %s= is required (a pair of ints)", fn, name);
        return -1;
    }
    if (get_ints(obj, v, 2, low, fn, name, "a pair of ints") < 0) return -1;
    *a = v[0], *b = v[1];
    return 0;
}

/* The geometry of a correlation from x (NB, G, C, H, W, 16), w (G, M, C, KH, KW) and dz/out
 * (NB, G, M, OH, OW, 16), which must agree, and the steps: every window inside x. `origin`
 * and `outputs` (the forward's placement, see Dims; NULL: (0, 0) and out's OH, OW) move the
 * windows and count them. */
static int geometry(Dims *d, const char *fn, const Arg *x, const Arg *w, const char *wname,
                    const Arg *z, const char *zname, PyObject *stride, PyObject *dilation,
                    PyObject *origin, PyObject *outputs)
{
    const Py_ssize_t *xs = x->view.shape, *ws = w->view.shape, *zs = z->view.shape;
    if (same(fn, x, "x", 5, "the lanes", LANES, "LANES") < 0 ||
        same(fn, z, zname, 5, "the lanes", LANES, "LANES") < 0 ||
        same(fn, z, zname, 0, "NB", xs[0], "x") < 0 || same(fn, w, wname, 0, "G", xs[1], "x") < 0 ||
        same(fn, z, zname, 1, "G", xs[1], "x") < 0 || same(fn, w, wname, 2, "C", xs[2], "x") < 0 ||
        same(fn, z, zname, 2, "M", ws[1], wname) < 0)
        return -1;
    Dims r = {.G = xs[1], .C = xs[2], .H = xs[3], .W = xs[4], .M = ws[1], .KH = ws[3],
              .KW = ws[4], .OH = zs[3], .OW = zs[4], .r0 = 0, .r1 = xs[3], .c0 = 0,
              .c1 = xs[4], .ro = 0, .co = 0, .OHf = zs[3], .OWf = zs[4], .pys = 1, .pxs = 1,
              .py0 = 0, .px0 = 0, .narrow = 0};
    if (get_pair(stride, &r.sh, &r.sw, 1, fn, "stride") < 0 ||
        get_pair(dilation, &r.dh, &r.dw, 1, fn, "dilation") < 0 ||
        (origin && get_pair(origin, &r.ro, &r.co, 0, fn, "origin") < 0) ||
        (outputs && get_pair(outputs, &r.OH, &r.OW, 0, fn, "outputs") < 0))
        return -1;
    if (r.OH > 0 && r.OW > 0) {
        /* The last row and column a window reads: checked even for an empty kernel, whose
         * loops still form (OW - 1) sw. */
        Py_ssize_t th, tw, eh, ew;
        if (mul_add(&th, fn, "the windows' extent", r.KH > 0 ? r.KH - 1 : 0, r.dh, r.ro) < 0 ||
            mul_add(&eh, fn, "the windows' extent", r.OH - 1, r.sh, th) < 0 ||
            mul_add(&tw, fn, "the windows' extent", r.KW > 0 ? r.KW - 1 : 0, r.dw, r.co) < 0 ||
            mul_add(&ew, fn, "the windows' extent", r.OW - 1, r.sw, tw) < 0)
            return -1;
        if (r.KH > 0 && r.KW > 0 && (eh >= r.H || ew >= r.W)) {
            PyErr_Format(PyExc_ValueError, "%s: the windows reach row %zd and column %zd, "
                         "outside x's %zd x %zd (check %s's OH, OW, the stride and dilation)",
                         fn, eh, ew, r.H, r.W, zname);
            return -1;
        }
    }
    *d = r;
    return 0;
}

/* A non-negative Py_ssize_t keyword. */
static int non_negative(const char *fn, const char *name, Py_ssize_t v, Py_ssize_t low)
{
    if (v >= low) return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s must be >= %zd, got %zd", fn, name, low, v);
    return -1;
}

/* Half of the L2 cache in bytes (1 MiB where the system does not say): the working set the
 * forward's column chunks and the kernel gradient's channel passes are sized to. */
static Py_ssize_t half_l2(void)
{
    static Py_ssize_t half = 0; /* one answer per process */
    if (!half) {
        long l2 = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
        l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
        half = l2 > 0 ? (Py_ssize_t)(l2 / 2) : (Py_ssize_t)1 << 20;
    }
    return half;
}

/* The forward's output columns per chunk of a row: as many as keep the input they read (a
 * pass's cf channels x KH rows of lanes, sw columns each; fwd_channels) within half of L2, in multiples of 24 (every tile width:
 * 3, 4, 6, 8) and at least 24; the whole row where it fits. Every block of output channels
 * runs over one chunk before the next, so a row longer than the cache holds (a 1-D layer is
 * one row: 128 channels x 258 columns of 16 lanes is 2 MiB) is read from L2 once per block
 * instead of from L3. Measured on an AVX-512 Xeon (2 MiB L2), 2 threads: 1-D layers' forward
 * passes and input gradients 0.64-0.81 of the time (16 x 256 x 400 -> 256 k3 s2: 10.5 -> 6.8
 * ms); 2-D layers, whose rows fit, unchanged (BENCHMARKS.md, "Issue 13, fourth pass"). Each
 * output is one tile's sum whatever the chunks: the same bits. */
#define FWD_COLUMN_STEP 24
static Py_ssize_t fwd_columns(const Dims *d, Py_ssize_t vsize)
{
    const double per = (double)d->cf * (double)d->KH * (double)d->sw * (double)vsize;
    const double fit = per > 0 ? (double)half_l2() / per : (double)d->OW;
    if (fit >= (double)d->OW) return d->OW > 0 ? d->OW : 1;
    const Py_ssize_t q = (Py_ssize_t)fit / FWD_COLUMN_STEP * FWD_COLUMN_STEP;
    return q < FWD_COLUMN_STEP ? FWD_COLUMN_STEP : q;
}

/* The forward's input channels per pass: as many as keep a pass's input (cf planes of H x W
 * lanes) within half of L2, all C where they fit, at least FWD_MIN_CHANNELS. Each tile then
 * sums one pass's channels at a time into the output (the first pass starts from the bias,
 * later ones from the sums so far), so a block's weights for a pass (cf x KH x KW x 8 values)
 * stay in L1 across the row's tiles, and the input the blocks share stays in L2, where one
 * pass over all C streamed both from further out for every tile. A float's store and reload is
 * exact and each output's sum still runs over c, ty, tx in order: the same bits whatever cf
 * (`channels_per_pass=` forces it, for tests). Measured on an AVX-512 Xeon (2 MiB L2), one
 * thread, 16-512 channels, 1-D and 2-D, 1x3 to 7x7, stride 1-2, against the single pass:
 * 0.73-0.99 of the time (256 x 16 x 16 -> 256, 3x3: 0.73; 1-D 128 x 258 -> 128, k3: 0.83);
 * passes of 8 channels were 0.92-0.99, so the floor is 16 (BENCHMARKS.md, "Issue 13, seventh
 * pass"). */
#define FWD_MIN_CHANNELS 16
static Py_ssize_t fwd_channels(const Dims *d, Py_ssize_t vsize)
{
    const double per = (double)d->H * (double)d->W * (double)vsize;
    const double fit = per > 0 ? (double)half_l2() / per : (double)d->C;
    if (fit >= (double)d->C) return d->C > 0 ? d->C : 1;
    return fit < FWD_MIN_CHANNELS ? (d->C < FWD_MIN_CHANNELS ? d->C : FWD_MIN_CHANNELS)
                                  : (Py_ssize_t)fit;
}

static PyObject *py_correlate(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "w", "out", "bias", "stride", "dilation", "live_rows",
                         "live_cols", "narrow", "origin", "outputs", "out_step", "out_first",
                         "columns_per_chunk", "channels_per_pass", NULL};
    static const char *fn = "correlate";
    PyObject *ox, *ow, *oout, *obias = Py_None, *ostride = NULL, *odil = NULL,
             *orows = Py_None, *ocols = Py_None, *oorigin = NULL, *ooutputs = NULL,
             *ostep = NULL, *ofirst = NULL;
    int narrow = 0;
    Py_ssize_t cq = 0, cf = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O$OOOOpOOOOnn", kw, &ox, &ow, &oout,
                                     &obias, &ostride, &odil, &orows, &ocols, &narrow, &oorigin,
                                     &ooutputs, &ostep, &ofirst, &cq, &cf))
        return NULL;
    char kind = 0;
    Arg a[4] = {{.held = 0}};
    Dims d;
    if (get_array(&a[0], ox, fn, "x", 6, "(NB, G, C, H, W, 16)", 0, &kind) < 0 ||
        get_strided(&a[1], ow, fn, "w", 5, "(G, M, C, KH, KW)", &kind) < 0 ||
        get_array(&a[2], oout, fn, "out", 6, "(NB, G, M, OH, OW, 16)", 1, &kind) < 0 ||
        geometry(&d, fn, &a[0], &a[1], "w", &a[2], "out", ostride, odil, oorigin, ooutputs) < 0)
        goto out;
    /* Where the windows' outputs go: row py0 + y pys, column px0 + q pxs of out's planes. */
    if ((ostep && get_pair(ostep, &d.pys, &d.pxs, 1, fn, "out_step") < 0) ||
        (ofirst && get_pair(ofirst, &d.py0, &d.px0, 0, fn, "out_first") < 0))
        goto out;
    if (d.OH > 0 && d.OW > 0) {
        Py_ssize_t lh, lw;
        if (mul_add(&lh, fn, "the outputs' extent", d.OH - 1, d.pys, d.py0) < 0 ||
            mul_add(&lw, fn, "the outputs' extent", d.OW - 1, d.pxs, d.px0) < 0)
            goto out;
        if (lh >= d.OHf || lw >= d.OWf) {
            PyErr_Format(PyExc_ValueError, "%s: the outputs reach row %zd and column %zd, "
                         "outside out's %zd x %zd (check outputs, out_step and out_first)", fn,
                         lh, lw, d.OHf, d.OWf);
            goto out;
        }
    }
    if (obias != Py_None &&
        (get_array(&a[3], obias, fn, "bias", 2, "(G, M)", 0, &kind) < 0 ||
         same(fn, &a[3], "bias", 0, "G", d.G, "x") < 0 ||
         same(fn, &a[3], "bias", 1, "M", d.M, "w") < 0))
        goto out;
    /* Rows r0:r1 and columns c0:c1 of x may be non-zero (the rest is padding). */
    if (orows != Py_None && get_pair(orows, &d.r0, &d.r1, 0, fn, "live_rows") < 0) goto out;
    if (ocols != Py_None && get_pair(ocols, &d.c0, &d.c1, 0, fn, "live_cols") < 0) goto out;
    if (d.r0 > d.r1 || d.r1 > d.H || d.c0 > d.c1 || d.c1 > d.W) {
        PyErr_Format(PyExc_ValueError, "%s: live_rows (%zd, %zd) and live_cols (%zd, %zd) must be "
                     "ranges inside x's %zd rows and %zd columns", fn, d.r0, d.r1, d.c0, d.c1,
                     d.H, d.W);
        goto out;
    }
    d.narrow = narrow;
    for (int i = 0; i < 5; i++) d.ws[i] = a[1].st[i];
    if (non_negative(fn, "columns_per_chunk", cq, 0) < 0 ||
        non_negative(fn, "channels_per_pass", cf, 0) < 0)
        goto out;
    {
        const Py_ssize_t vs = kind == 'd' ? (Py_ssize_t)sizeof(vf64) : (Py_ssize_t)sizeof(vf32);
        d.cf = cf ? cf : fwd_channels(&d, vs);
        d.cq = cq ? cq : fwd_columns(&d, vs);
    }
    const Py_ssize_t NB = a[0].view.shape[0];
    const void *bias = a[3].held ? a[3].view.buf : NULL;
    /* Room for the weights in the tiles' order (corr): w's own size. */
    void *wt = malloc(a[1].view.len > 0 ? (size_t)a[1].view.len : 1);
    if (!wt) {
        PyErr_NoMemory();
        goto out;
    }
    BY_DTYPE(kind, corr, a[0].view.buf, a[1].view.buf, a[2].view.buf, bias, &d, NB, wt);
    free(wt);
out:
    return finish(a, 4);
}

/* The kernel gradient's input channels per pass over the output channels: as many as keep a
 * pass's input (cb planes of H x W lanes) and its partial sums (8 output channels x cb x K
 * vectors) within half of the L2 cache (1 MiB where the system does not say); all C where
 * they fit. Each weight's sum runs as before (its chunks in order, then one sum of the lanes),
 * so the bits do not depend on cb (`channels_per_pass=` forces it, for tests). Without passes a
 * 256-channel input block of 14 x 14 (4 MiB) was read from L3 once per 8 output channels.
 * Measured on an AVX-512 Xeon (2 MiB L2), one thread, 3x3, 3-512 channels, 7-112 pixels:
 * 1.00-1.28x the rate (512 x 7 x 7: 102 -> 131 GF/s, 256 x 14 x 14: 138 -> 156); whole
 * kernel gradients on 2 threads 0.79-0.89 of the time on the large-channel layers, 0.98-1.01
 * elsewhere (BENCHMARKS.md, "Issue 13, fourth pass"). */
#define GRAD_MIN_CHANNELS 32
static Py_ssize_t grad_channels(const Dims *d, Py_ssize_t vsize)
{
    /* bytes per input channel: its plane of lanes, and 8 x K vectors of partial sums */
    const double per = ((double)d->H * (double)d->W + 8.0 * (double)d->KH * (double)d->KW) *
                       (double)vsize;
    const double fit = per > 0 ? (double)half_l2() / per : (double)d->C;
    if (fit >= (double)d->C) return d->C > 0 ? d->C : 1;
    /* at least GRAD_MIN_CHANNELS: each pass copies the delta again (64 bytes per position and
     * output channel, against 32 cb K multiply-adds), which at 4 channels of 3x3 cost more than
     * the cache misses it saved (64 x 56 x 56 -> 128: 160 -> 136 GF/s; 32 channels: 167) */
    return fit < GRAD_MIN_CHANNELS ? (d->C < GRAD_MIN_CHANNELS ? d->C : GRAD_MIN_CHANNELS)
                                   : (Py_ssize_t)fit;
}

static PyObject *py_correlate_kernel(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "dz", "dw", "stride", "dilation", "narrow", "channels_per_pass",
                         NULL};
    static const char *fn = "correlate_kernel";
    PyObject *ox, *odz, *odw, *ostride = NULL, *odil = NULL;
    int narrow = 0;
    Py_ssize_t cb = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|$OOpn", kw, &ox, &odz, &odw, &ostride,
                                     &odil, &narrow, &cb))
        return NULL;
    char kind = 0;
    Arg a[3] = {{.held = 0}};
    Dims d;
    if (get_array(&a[0], ox, fn, "x", 6, "(NB, G, C, H, W, 16)", 0, &kind) < 0 ||
        get_array(&a[1], odz, fn, "dz", 6, "(NB, G, M, OH, OW, 16)", 0, &kind) < 0 ||
        get_array(&a[2], odw, fn, "dw", 5, "(G, M, C, KH, KW)", 1, &kind) < 0 ||
        geometry(&d, fn, &a[0], &a[2], "dw", &a[1], "dz", ostride, odil, NULL, NULL) < 0)
        goto out;
    d.narrow = narrow;
    if (non_negative(fn, "channels_per_pass", cb, 0) < 0) goto out;
    d.cb = cb ? cb : grad_channels(&d, kind == 'd' ? (Py_ssize_t)sizeof(vf64)
                                                   : (Py_ssize_t)sizeof(vf32));
    /* np_: the partial sums of 8 output channels, in vectors; with the delta chunk after them
     * they must fit in bytes for the wider (float64) vector */
    Py_ssize_t np_, part_bytes;
    if (mul_add(&np_, fn, "dw's partial sums", d.C, d.KH, 0) < 0 ||
        mul_add(&np_, fn, "dw's partial sums", np_, d.KW, 0) < 0 ||
        mul_add(&np_, fn, "dw's partial sums", np_, 8, 0) < 0 ||
        mul_add(&part_bytes, fn, "dw's partial sums", np_, (Py_ssize_t)sizeof(vf64),
                GRAD_CHUNK_BYTES) < 0)
        goto out;
    const size_t vsize = kind == 'd' ? sizeof(vf64) : sizeof(vf32);
    /* Partial sums of 8 output channels (aligned: whole vectors), then the delta chunk. */
    void *part = aligned_alloc(vsize, (size_t)np_ * vsize + GRAD_CHUNK_BYTES);
    if (!part) {
        PyErr_NoMemory();
        goto out;
    }
    const Py_ssize_t NB = a[0].view.shape[0];
    const void *x = a[0].view.buf, *dz = a[1].view.buf;
    void *dw = a[2].view.buf;
    Py_BEGIN_ALLOW_THREADS
#if HAVE_V4
    if (kind == 'f' && CPU_V4(narrow))
        kern_f32v4(x, dz, dw, part, (vf32 *)part + np_, &d, NB);
    else
#endif
    if (kind == 'f')
        kern_f32(x, dz, dw, part, (vf32 *)part + np_, &d, NB);
    else
        kern_f64(x, dz, dw, part, (vf64 *)part + np_, &d, NB);
    Py_END_ALLOW_THREADS
    free(part);
out:
    return finish(a, 3);
}

/* The block range first:first+n of the bands of B samples; -1 with ValueError if outside. */
static int block_range(const char *fn, Py_ssize_t B, Py_ssize_t S, Py_ssize_t first,
                       Py_ssize_t n, const char *name)
{
    Py_ssize_t NB, end;
    if (blocks_of(&NB, fn, B, S) < 0) return -1;
    if (__builtin_add_overflow(first, n, &end)) return overflow(fn, "first_block + blocks");
    if (end <= NB) return 0;
    PyErr_Format(PyExc_ValueError, "%s: blocks %zd:%zd of %s are past the %zd blocks of 16 "
                 "that %zd samples x %zd bands fill", fn, first, end, name, NB, B, S);
    return -1;
}

/* pack_padded(..., depth=(D, kd, sd, dd, d0, OD), groups=G): src (B, G*C*D, H, W) is a 3-D
 * input (B, G, C, D, H, W) whose depth fold (pack_depth) fills dst (blocks, G*kd*C, Hp, Wp,
 * 16) for the B*OD lanes (b, o); whole samples only (bands=1), rows padded by top. */
static PyObject *pack_depth(const char *fn, PyObject *osrc, PyObject *odst, PyObject *odepth,
                            Py_ssize_t G, Py_ssize_t S, Py_ssize_t pt, Py_ssize_t pl,
                            Py_ssize_t n0)
{
    Py_ssize_t f[6];
    if (get_ints(odepth, f, 6, 0, fn, "depth", "(D, kd, sd, dd, d0, OD), ints >= 0") < 0)
        return NULL;
    if (S != 1 || G < 1 || f[0] < 1 || f[1] < 1 || f[2] < 1 || f[3] < 1 || f[5] < 1) {
        PyErr_Format(PyExc_ValueError, "%s: depth=(D, kd, sd, dd, d0, OD) needs bands=1, "
                     "groups >= 1 and D, kd, sd, dd, OD >= 1; got bands=%zd, groups=%zd, "
                     "depth=(%zd, %zd, %zd, %zd, %zd, %zd)", fn, S, G, f[0], f[1], f[2], f[3],
                     f[4], f[5]);
        return NULL;
    }
    char kind = 0;
    Arg a[2] = {{.held = 0}};
    if (get_array(&a[0], osrc, fn, "src", 4, "(B, G*C*D, H, W)", 0, &kind) < 0 ||
        get_array(&a[1], odst, fn, "dst", 5, "(blocks, G*kd*C, Hp, Wp, 16)", 1, &kind) < 0 ||
        same(fn, &a[1], "dst", 4, "the lanes", LANES, "LANES") < 0)
        goto out;
    const Py_ssize_t *ss = a[0].view.shape, *ds = a[1].view.shape;
    const Py_ssize_t B = ss[0], D = f[0], H = ss[2], W = ss[3], Hp = ds[2], Wp = ds[3];
    if (ss[1] % (G * D) != 0) {
        PyErr_Format(PyExc_ValueError, "%s: src has %zd planes (axis 1), not a multiple of "
                     "groups x D = %zd x %zd", fn, ss[1], G, D);
        goto out;
    }
    const Py_ssize_t C = ss[1] / (G * D);
    Py_ssize_t planes, lanes, lw, bottom, reach;
    if (mul_add(&planes, fn, "groups x kd x C", G * C, f[1], 0) < 0 ||
        mul_add(&lanes, fn, "samples x OD", B, f[5], 0) < 0 ||
        mul_add(&lw, fn, "left + W", 1, pl, W) < 0 ||
        mul_add(&bottom, fn, "top + H", 1, pt, H) < 0 ||
        mul_add(&reach, fn, "the depth fold's extent", f[5] - 1, f[2], (f[1] - 1) * f[3]) < 0 ||
        block_range(fn, lanes, 1, n0, ds[0], "dst") < 0)
        goto out;
    (void)reach; /* checked only: the loops form o sd + t dd - d0 */
    if (planes != ds[1] || lw > Wp || bottom > Hp) {
        PyErr_Format(PyExc_ValueError, "%s: dst (%zd planes of %zd x %zd) must hold groups x kd "
                     "x C = %zd planes of at least top + H = %zd rows and left + W = %zd "
                     "columns", fn, ds[1], Hp, Wp, planes, bottom, lw);
        goto out;
    }
    const Py_ssize_t fold[5] = {f[1], f[2], f[3], f[4], f[5]}, n1 = n0 + ds[0];
    BY_DTYPE(kind, pack_depth, a[0].view.buf, a[1].view.buf, B, G, C, D, H, W, fold, Hp, pt, pl,
             Wp - lw, n0, n1);
out:
    return finish(a, 2);
}

/* pack_padded(src, dst, *, bands, step, top, left, first_block): see pack_pad. */
static PyObject *py_pack_padded(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"src", "dst", "bands", "step", "top", "left", "first_block", "depth",
                         "groups", NULL};
    static const char *fn = "pack_padded";
    PyObject *osrc, *odst, *odepth = NULL;
    Py_ssize_t S = 1, step = 0, pt = 0, pl = 0, n0 = 0, G = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$nnnnnOn", kw, &osrc, &odst, &S, &step,
                                     &pt, &pl, &n0, &odepth, &G))
        return NULL;
    if (non_negative(fn, "bands", S, 1) < 0 || non_negative(fn, "step", step, 0) < 0 ||
        non_negative(fn, "top", pt, 0) < 0 || non_negative(fn, "left", pl, 0) < 0 ||
        non_negative(fn, "first_block", n0, 0) < 0)
        return NULL;
    if (odepth) return pack_depth(fn, osrc, odst, odepth, G, S, pt, pl, n0);
    if (G != 1) {
        PyErr_Format(PyExc_ValueError, "%s: groups=%zd is read only with depth= (a 3-D "
                     "input's fold); plain packing takes the groups in src's planes", fn, G);
        return NULL;
    }
    char kind = 0;
    Arg a[2] = {{.held = 0}};
    if (get_array(&a[0], osrc, fn, "src", 4, "(B, CH, H, W)", 0, &kind) < 0 ||
        get_array(&a[1], odst, fn, "dst", 5, "(blocks, CH, Hp, Wp, 16)", 1, &kind) < 0 ||
        same(fn, &a[1], "dst", 1, "CH", a[0].view.shape[1], "src") < 0 ||
        same(fn, &a[1], "dst", 4, "the lanes", LANES, "LANES") < 0)
        goto out;
    const Py_ssize_t *ss = a[0].view.shape, *ds = a[1].view.shape;
    const Py_ssize_t B = ss[0], CH = ss[1], H = ss[2], W = ss[3], Hp = ds[2], Wp = ds[3];
    /* The last band's rows ((S - 1) step + Hp, the index arithmetic of the loops) and the
     * right padding that dst's width leaves. */
    Py_ssize_t last, lw;
    if (mul_add(&last, fn, "bands x step", S - 1, step, Hp) < 0 ||
        mul_add(&lw, fn, "left + W", 1, pl, W) < 0 ||
        block_range(fn, B, S, n0, ds[0], "dst") < 0)
        goto out;
    (void)last; /* checked only: the loops form (v % S) * step + yy - top */
    if (lw > Wp) {
        PyErr_Format(PyExc_ValueError, "%s: dst has Wp = %zd columns, fewer than left + W = "
                     "%zd + %zd", fn, Wp, pl, W);
        goto out;
    }
    const Py_ssize_t pr = Wp - lw, n1 = n0 + ds[0];
    BY_DTYPE(kind, pack_pad, a[0].view.buf, a[1].view.buf, B, S, step, CH, H, W, Hp, pt, pl, pr, n0,
                             n1);
out:
    return finish(a, 2);
}

/* unpack_bands(src, dst, *, bands, first_block, depth): see unpack. */
static PyObject *py_unpack_bands(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"src", "dst", "bands", "first_block", "depth", NULL};
    static const char *fn = "unpack_bands";
    PyObject *osrc, *odst;
    Py_ssize_t S = 1, n0 = 0, OD = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$nnn", kw, &osrc, &odst, &S, &n0, &OD))
        return NULL;
    if (non_negative(fn, "bands", S, 1) < 0 || non_negative(fn, "first_block", n0, 0) < 0 ||
        non_negative(fn, "depth", OD, 1) < 0)
        return NULL;
    if (OD > 1 && S > 1) {
        PyErr_Format(PyExc_ValueError, "%s: depth=%zd unfolds whole samples only, got bands=%zd",
                     fn, OD, S);
        return NULL;
    }
    char kind = 0;
    Arg a[2] = {{.held = 0}};
    if (get_array(&a[0], osrc, fn, "src", 4, "(blocks, CH, R, 16)", 0, &kind) < 0 ||
        get_array(&a[1], odst, fn, "dst", 3, "(B, CH x depth, OH)", 1, &kind) < 0 ||
        same(fn, &a[0], "src", 3, "the lanes", LANES, "LANES") < 0)
        goto out;
    const Py_ssize_t *ss = a[0].view.shape, *ds = a[1].view.shape;
    const Py_ssize_t B = ds[0], CH = ss[1], OH = ds[2], R = ss[2];
    /* dst holds depth planes for each of src's: lane v is depth v % depth of sample
     * v / depth (the 3-D unfold; depth 1: plain). */
    Py_ssize_t planes;
    if (mul_add(&planes, fn, "CH x depth", CH, OD, 0) < 0) goto out;
    if (planes != ds[1]) {
        PyErr_Format(PyExc_ValueError, "%s: dst has %zd planes (axis 1), expected CH x depth = "
                     "%zd x %zd as in src", fn, ds[1], CH, OD);
        goto out;
    }
    /* bands x R rows must cover OH; the loops form (v / S) CH OH + (v % S) R, which the sum
     * bounds. */
    Py_ssize_t rows, reach, lanes;
    if (mul_add(&rows, fn, "bands x R", S, R, 0) < 0 ||
        mul_add(&reach, fn, "bands x R", B * planes, OH, rows) < 0 ||
        mul_add(&lanes, fn, "samples x depth", B, OD, 0) < 0 ||
        block_range(fn, lanes, S, n0, ss[0], "src") < 0)
        goto out;
    (void)reach;
    if (rows < OH) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bands of R = %zd rows cover %zd of dst's OH = "
                     "%zd", fn, S, R, rows, OH);
        goto out;
    }
    const Py_ssize_t n1 = n0 + ss[0];
    BY_DTYPE(kind, unpack, a[0].view.buf, a[1].view.buf, B, S, CH, R, OH, OD, n0, n1);
out:
    return finish(a, 2);
}

static PyMethodDef methods[] = {
    METHOD(pack_padded,
     "pack_padded(src, dst, *, bands=1, step=0, top=0, left=0, first_block=0): blocks\n"
     "first_block: of the row bands of the zero-padded src (B, CH, H, W) into dst (blocks, CH,\n"
     "Hp, Wp, 16). Lane l of block n is band v = 16 n + l: sample v // bands, padded rows\n"
     "(v % bands) * step + [0, Hp), padded row p being row p - top of src, columns shifted by\n"
     "left; zeros outside src and past the last band."),
    METHOD(unpack_bands,
     "unpack_bands(src, dst, *, bands=1, first_block=0): the inverse for results: band v's\n"
     "R values of plane ch of src (blocks, CH, R, 16) land at dst[v // bands, ch,\n"
     "(v % bands) * R + r] (B, CH, OH), those at or past OH dropped."),
    METHOD(correlate,
     "correlate(x, w, out, bias=None, *, stride, dilation, live_rows=None, live_cols=None,\n"
     "narrow=False): the valid correlation of x (NB, G, C, H, W, 16) with w (G, M, C, KH, KW)\n"
     "plus bias (G, M) into out (NB, G, M, OH, OW, 16); taps reading only rows outside\n"
     "live_rows or columns outside live_cols (zero padding) are skipped. narrow: the tiles of\n"
     "CPUs without AVX-512. origin=(r, c), outputs=(OH, OW), out_step=(sy, sx),\n"
     "out_first=(fy, fx): windows start at x's row r + y sh, column c + q sw, for y < OH and\n"
     "q < OW, and their outputs go to out[..., fy + y sy, fx + q sx, :] (one sub-pixel phase\n"
     "of a strided input gradient; the rest of out is left as it was). columns_per_chunk:\n"
     "a row's output columns per chunk (0: sized to the L2 cache; the same bits)."),
    METHOD(correlate_kernel,
     "correlate_kernel(x, dz, dw, *, stride, dilation, narrow=False): the kernel gradient\n"
     "dw (G, M, C, KH, KW) of x (NB, G, C, H, W, 16) and dz (NB, G, M, OH, OW, 16).\n"
     "channels_per_pass: input channels per pass (0: sized to the L2 cache; the same bits)."),
    {NULL, NULL, 0, NULL},
};

MODULE(_directc, "Direct correlation loops (see _direct.py).", methods)
