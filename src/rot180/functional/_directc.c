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
 * for blocks n0 <= n < n1, with the GIL released so that Python threads can run disjoint block
 * ranges at once. Accumulators are register tiles: forward 8 output channels x 3 output columns
 * with AVX-512, else 4 x 4; kernel gradient 8 output channels x 3 taps of a kernel row with
 * AVX-512, else 4 x up to 5. A lane may hold a band of a sample's rows rather than a whole
 * sample (pack_padded, unpack_bands): the loops do not know. Every sum runs in an order fixed
 * by the loops, never by threads or timing. The caller checks shapes;
 * this file checks the sizes of the buffers (every product and sum in overflow-checked
 * arithmetic: OverflowError, never a wrapped size) against `dims` = (G, C, H, W, M, KH, KW, OH, OW, sh,
 * sw, dh, dw), optionally followed by (r0, r1, c0, c1): the rows and columns of x that are not
 * zero padding.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* One build, the widest vectors the running CPU has (GCC function multi-versioning). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MULTI __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define HAVE_V4 1
#define CPU_V4() (!narrow_only && __builtin_cpu_supports("x86-64-v4"))
#else
#define MULTI
#define TARGET_V4
#define HAVE_V4 0
#endif

/* Whether the CPU has 32 vector registers (x86 AVX-512), for the wider forward tiles. */
#if defined(__GNUC__) && defined(__x86_64__)
#define WIDE_REGISTERS() (!narrow_only && __builtin_cpu_supports("avx512f"))
#else
#define WIDE_REGISTERS() 0
#endif

#define LANES 16 /* samples per vector; _direct.py's LANES must match */

/* Set by narrow(True): the tiles of CPUs without AVX-512 even where it is present (tests). */
static int narrow_only = 0;
/* KEEP_x(g): keep g in a register. In the kernel gradient's 8 x 3 tiles GCC otherwise re-reads
 * each delta vector as a memory operand of all three multiply-adds that use it (24 vector loads
 * for 24 multiply-adds instead of 8 + 3), which ties the loop to the load ports: measured 37
 * against 50 GMAC/s (one thread, L3's shape). Only where a vector is one register (AVX-512,
 * float32, the TARGET_V4 build of that loop). */
#define KEEP_f32(g) (void)0
#define KEEP_f64(g) (void)0
#define KEEP_f32v4(g) __asm__("" : "+v"(g))

typedef float vf32 __attribute__((vector_size(LANES * sizeof(float))));
typedef double vf64 __attribute__((vector_size(LANES * sizeof(double))));
typedef int vi32 __attribute__((vector_size(LANES * sizeof(int))));
typedef long long vi64 __attribute__((vector_size(LANES * sizeof(long long))));

typedef struct {
    Py_ssize_t G, C, H, W, M, KH, KW, OH, OW, sh, sw, dh, dw;
    /* Rows r0:r1 and columns c0:c1 of x may be non-zero; outside is zero padding, whose taps
     * the forward skips (a whole kernel row, or a tap whose columns all fall in it). */
    Py_ssize_t r0, r1, c0, c1;
} Dims;

/* Unaligned vector load/store (numpy guarantees only element alignment). */
#define LOAD(V, p) ({ V v_; memcpy(&v_, (p), sizeof(V)); v_; })
#define STORE(V, p, v) do { V t_ = (v); memcpy((p), &t_, sizeof(V)); } while (0)

/* Forward tile: OBc output channels x XBc output columns of one output row. */
#define DEFINE_FWD_TILE(T, V, SUF, OBc, XBc)                                                   \
    static inline __attribute__((always_inline)) void fwd_tile_##SUF##_##OBc##_##XBc(          \
        const T *xg, const T *wo, T *oo, const T *bias, const Dims *d, Py_ssize_t y,           \
        Py_ssize_t q0)                                                                         \
    {                                                                                          \
        const Py_ssize_t CK = d->C * d->KH * d->KW, HWL = d->H * d->W * LANES;                 \
        const Py_ssize_t plane = d->OH * d->OW * LANES;                                        \
        V acc[OBc][XBc];                                                                       \
        for (int j = 0; j < OBc; j++) {                                                        \
            const T b_ = bias ? bias[j] : (T)0;                                                \
            for (int i = 0; i < XBc; i++) acc[j][i] = (V){0} + b_;                             \
        }                                                                                      \
        /* Taps that read only padding: rows [ty_lo, ty_hi), and per tap the tile's columns. */ \
        Py_ssize_t ty_lo = 0, ty_hi = d->KH;                                                   \
        while (ty_lo < ty_hi && y * d->sh + ty_lo * d->dh < d->r0) ty_lo++;                    \
        while (ty_hi > ty_lo && y * d->sh + (ty_hi - 1) * d->dh >= d->r1) ty_hi--;             \
        const Py_ssize_t first = q0 * d->sw, last = (q0 + XBc - 1) * d->sw;                    \
        for (Py_ssize_t c = 0; c < d->C; c++)                                                  \
            for (Py_ssize_t ty = ty_lo; ty < ty_hi; ty++) {                                    \
                const T *row = xg + c * HWL + (y * d->sh + ty * d->dh) * d->W * LANES;         \
                const T *wr = wo + (c * d->KH + ty) * d->KW;                                   \
                for (Py_ssize_t tx = 0; tx < d->KW; tx++) {                                    \
                    if (last + tx * d->dw < d->c0 || first + tx * d->dw >= d->c1) continue;    \
                    V v[XBc];                                                                  \
                    for (int i = 0; i < XBc; i++)                                              \
                        v[i] = LOAD(V, row + ((q0 + i) * d->sw + tx * d->dw) * LANES);         \
                    for (int j = 0; j < OBc; j++) {                                            \
                        const T wv = wr[j * CK + tx];                                          \
                        for (int i = 0; i < XBc; i++) acc[j][i] += wv * v[i];                  \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        for (int j = 0; j < OBc; j++)                                                          \
            for (int i = 0; i < XBc; i++)                                                      \
                STORE(V, oo + j * plane + (y * d->OW + q0 + i) * LANES, acc[j][i]);            \
    }

/* Every tile and row driver for blocks of OBc output channels. */
#define DEFINE_BLOCK(T, V, SUF, OBc)                                                           \
    DEFINE_FWD_TILE(T, V, SUF, OBc, 4)                                                         \
    DEFINE_FWD_TILE(T, V, SUF, OBc, 1)                                                         \
    DEFINE_ROWS_X(T, V, SUF, OBc, 4, 1)

/* Rows of tiles of OBc channels x XBc columns, then XB2 columns, then single columns (LeNet's
 * 14-wide input gradient in 8-column tiles alone ran 6 of 14 columns one by one). */
#define DEFINE_ROWS_X(T, V, SUF, OBc, XBc, XB2)                                                \
    static inline __attribute__((always_inline)) void fwd_rows_##SUF##_##OBc##x##XBc(          \
        const T *xg, const T *wo, T *oo, const T *bias, const Dims *d)                         \
    {                                                                                          \
        for (Py_ssize_t y = 0; y < d->OH; y++) {                                               \
            Py_ssize_t q = 0;                                                                  \
            for (; q + XBc <= d->OW; q += XBc)                                                 \
                fwd_tile_##SUF##_##OBc##_##XBc(xg, wo, oo, bias, d, y, q);                     \
            for (; q + XB2 <= d->OW; q += XB2)                                                 \
                fwd_tile_##SUF##_##OBc##_##XB2(xg, wo, oo, bias, d, y, q);                     \
            for (; q < d->OW; q++) fwd_tile_##SUF##_##OBc##_1(xg, wo, oo, bias, d, y, q);      \
        }                                                                                      \
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

#define DEFINE_KERNELS(T, V, SUF)                                                              \
    DEFINE_BLOCK(T, V, SUF, 1)                                                                 \
    DEFINE_BLOCK(T, V, SUF, 2)                                                                 \
    DEFINE_BLOCK(T, V, SUF, 3)                                                                 \
    DEFINE_BLOCK(T, V, SUF, 4)                                                                 \
    DEFINE_WIDE(T, V, SUF)                                                                     \
                                                                                               \
    MULTI static void corr_##SUF(const T *x, const T *w, T *out, const T *bias, const Dims *d, \
                                 Py_ssize_t n0, Py_ssize_t n1)                                 \
    {                                                                                          \
        const Py_ssize_t G = d->G, M = d->M, CK = d->C * d->KH * d->KW;                        \
        const Py_ssize_t xs = d->C * d->H * d->W * LANES, os = d->OH * d->OW * LANES;          \
        const int wide = WIDE_REGISTERS();                                                     \
        for (Py_ssize_t n = n0; n < n1; n++)                                                   \
            for (Py_ssize_t g = 0; g < G; g++) {                                               \
                const T *xg = x + (n * G + g) * xs;                                            \
                T *og = out + (n * G + g) * M * os;                                            \
                const T *wg = w + g * M * CK, *bg = bias ? bias + g * M : NULL;                \
                Py_ssize_t o = 0;                                                              \
                if (wide)                                                                      \
                    for (; o + 8 <= M; o += 8)                                                 \
                        fwd_rows_##SUF##_8x3(xg, wg + o * CK, og + o * os, bg ? bg + o : NULL, \
                                             d);                                               \
                for (; o + 4 <= M; o += 4)                                                     \
                    fwd_rows_##SUF##_4x4(xg, wg + o * CK, og + o * os, bg ? bg + o : NULL, d); \
                const T *wr = wg + o * CK, *br = bg ? bg + o : NULL;                           \
                T *orr = og + o * os;                                                          \
                switch (wide ? M - o : 0) { /* the last 1-3 channels: more columns a tile */   \
                case 3: fwd_rows_##SUF##_3x6(xg, wr, orr, br, d); break;                       \
                case 2: fwd_rows_##SUF##_2x8(xg, wr, orr, br, d); break;                       \
                case 1: fwd_rows_##SUF##_1x8(xg, wr, orr, br, d); break;                       \
                }                                                                              \
                switch (wide ? 0 : M - o) {                                                    \
                case 3: fwd_rows_##SUF##_3x4(xg, wr, orr, br, d); break;                       \
                case 2: fwd_rows_##SUF##_2x4(xg, wr, orr, br, d); break;                       \
                case 1: fwd_rows_##SUF##_1x4(xg, wr, orr, br, d); break;                       \
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
DEFINE_HSUM(float, vf32, vi32, f32)
DEFINE_HSUM(double, vf64, vi64, f64)

/* Kernel-gradient tile: OBc output channels x TBc neighbouring taps of one kernel row, summed
 * over a chunk of output positions (rows y0:y1 x columns q0:q1) and added to the partial sums
 * part[j * CK + i] (one vector of lanes per weight). xr: the input row under output row 0 for
 * the first tap; zb: the chunk's delta, position-major with the OBc channels' vectors side by
 * side (a copy: the delta planes themselves sit a multiple of 4 KiB apart, and OBc streams
 * at such a distance evict each other from L1). */
#define DEFINE_GRAD_TILE(T, V, SUF, OBc, TBc)                                                  \
    static inline __attribute__((always_inline)) void grad_tile_##SUF##_##OBc##_##TBc(         \
        const T *xr, const V *zb, V *part, const Dims *d, Py_ssize_t y0, Py_ssize_t y1,        \
        Py_ssize_t q0, Py_ssize_t q1)                                                          \
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
                    v[i] = LOAD(V, row + (q * d->sw + i * d->dw) * LANES);                     \
                for (int j = 0; j < OBc; j++) {                                                \
                    V g_ = zb[j];                                                              \
                    KEEP_##SUF(g_);                                                    \
                    for (int i = 0; i < TBc; i++) acc[j][i] += g_ * v[i];                      \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        for (int j = 0; j < OBc; j++)                                                          \
            for (int i = 0; i < TBc; i++) part[j * CK + i] += acc[j][i];                       \
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
     * into zb, then every input channel and tap; part holds the OBc x CK partial sums. */     \
    static inline __attribute__((always_inline)) void grad_block_##SUF##_##OBc(                \
        const T *xg, const T *dzo, V *part, V *zb, const Dims *d)                              \
    {                                                                                          \
        const Py_ssize_t OW = d->OW, plane = d->OH * OW * LANES, HWL = d->H * d->W * LANES;    \
        const Py_ssize_t K = d->KH * d->KW, per = GRAD_CHUNK_BYTES / (OBc * sizeof(V));        \
        const Py_ssize_t qb = OW < per ? OW : per, rb = OW < per ? per / OW : 1;               \
        for (Py_ssize_t y0 = 0; y0 < d->OH; y0 += rb)                                          \
            for (Py_ssize_t q0 = 0; q0 < OW; q0 += qb) {                                       \
                const Py_ssize_t y1 = y0 + rb < d->OH ? y0 + rb : d->OH;                       \
                const Py_ssize_t q1 = q0 + qb < OW ? q0 + qb : OW;                             \
                V *z = zb;                                                                     \
                for (Py_ssize_t y = y0; y < y1; y++)                                           \
                    for (Py_ssize_t q = q0; q < q1; q++)                                       \
                        for (int j = 0; j < OBc; j++)                                          \
                            *z++ = LOAD(V, dzo + j * plane + (y * OW + q) * LANES);            \
                for (Py_ssize_t c = 0; c < d->C; c++)                                          \
                    for (Py_ssize_t ty = 0; ty < d->KH; ty++) {                                \
                        const T *xr = xg + c * HWL + ty * d->dh * d->W * LANES;                \
                        V *pr = part + c * K + ty * d->KW;                                     \
                        for (Py_ssize_t tx = 0; tx < d->KW; tx += GRAD_TAPS(OBc)) {            \
                            const T *xt = xr + tx * d->dw * LANES;                             \
                            const Py_ssize_t left = d->KW - tx;                                \
                            switch (left < GRAD_TAPS(OBc) ? left : GRAD_TAPS(OBc)) {           \
                            case 5: grad_tile_##SUF##_##OBc##_5(xt, zb, pr + tx, d, y0, y1,    \
                                                                q0, q1); break;                \
                            case 4: grad_tile_##SUF##_##OBc##_4(xt, zb, pr + tx, d, y0, y1,    \
                                                                q0, q1); break;                \
                            case 3: grad_tile_##SUF##_##OBc##_3(xt, zb, pr + tx, d, y0, y1,    \
                                                                q0, q1); break;                \
                            case 2: grad_tile_##SUF##_##OBc##_2(xt, zb, pr + tx, d, y0, y1,    \
                                                                q0, q1); break;                \
                            case 1: grad_tile_##SUF##_##OBc##_1(xt, zb, pr + tx, d, y0, y1,    \
                                                                q0, q1); break;                \
                            }                                                                  \
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
                                 Py_ssize_t n0, Py_ssize_t n1)                                 \
    {                                                                                          \
        const Py_ssize_t G = d->G, M = d->M, C = d->C, CK = C * d->KH * d->KW;                 \
        const Py_ssize_t HWL = d->H * d->W * LANES, plane = d->OH * d->OW * LANES;             \
        const int wide = WIDE_REGISTERS();                                                     \
        for (Py_ssize_t r = 0; r < G * M * CK; r++) dw[r] = 0;                                 \
        for (Py_ssize_t n = n0; n < n1; n++)                                                   \
            for (Py_ssize_t g = 0; g < G; g++) {                                               \
                const T *xg = x + (n * G + g) * C * HWL, *dzg = dz + (n * G + g) * M * plane;  \
                for (Py_ssize_t o = 0; o < M;) {                                               \
                    const Py_ssize_t ob = wide && M - o >= 8 ? 8 : M - o >= 4 ? 4 : M - o;     \
                    for (Py_ssize_t r = 0; r < ob * CK; r++) part[r] = (V){0};                 \
                    const T *dzo = dzg + o * plane;                                            \
                    switch (ob) {                                                              \
                    case 8: grad_block_##SUF##_8(xg, dzo, part, zb, d); break;                 \
                    case 4: grad_block_##SUF##_4(xg, dzo, part, zb, d); break;                 \
                    case 3: grad_block_##SUF##_3(xg, dzo, part, zb, d); break;                 \
                    case 2: grad_block_##SUF##_2(xg, dzo, part, zb, d); break;                 \
                    case 1: grad_block_##SUF##_1(xg, dzo, part, zb, d); break;                 \
                    }                                                                          \
                    T *dwo = dw + (g * M + o) * CK;                                            \
                    for (Py_ssize_t r = 0; r < ob * CK; r++) dwo[r] += hsum_##SUF(part[r]);    \
                    o += ob;                                                                   \
                }                                                                              \
            }                                                                                  \
    }

DEFINE_GRAD_ALL(float, vf32, f32, MULTI)
DEFINE_GRAD_ALL(double, vf64, f64, MULTI)
#if HAVE_V4
DEFINE_HSUM(float, vf32, vi32, f32v4)
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
                                   Py_ssize_t CH, Py_ssize_t R, Py_ssize_t OH, Py_ssize_t n0,  \
                                   Py_ssize_t n1)                                              \
    {                                                                                          \
        /* Lane l of block n is band v = 16n + l: sample v / S, band rows (v % S) R + [0, R)   \
         * of each of its CH planes of OH rows (R and OH counted in elements here).            */ \
        const Py_ssize_t nv = B * S;                                                           \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                 \
            T *base[LANES];                                                                    \
            Py_ssize_t len[LANES];                                                             \
            for (int l = 0; l < LANES; l++) {                                                  \
                const Py_ssize_t v = n * LANES + l, r0 = (v % S) * R;                          \
                base[l] = v < nv ? dst + (v / S) * CH * OH + r0 : NULL;                        \
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
                        T *d = base[l] + ch * OH + r;                                          \
                        if (r + LANES <= len[l]) STORE(V, d, v[l]);                            \
                        else                                                                   \
                            for (Py_ssize_t i = 0; i < len[l] - r; i++) d[i] = v[l][i];        \
                    }                                                                          \
                }                                                                              \
                for (; r < R; r++)                                                             \
                    for (int l = 0; l < LANES; l++)                                            \
                        if (r < len[l]) base[l][ch * OH + r] = s[r * LANES + l];               \
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
    MULTI static void pack_pad_##SUF(const T *src, T *dst, Py_ssize_t B, Py_ssize_t S,         \
                                     Py_ssize_t step, Py_ssize_t CH, Py_ssize_t H,             \
                                     Py_ssize_t W, Py_ssize_t Hp, Py_ssize_t pt, Py_ssize_t pl,\
                                     Py_ssize_t pr, Py_ssize_t n0, Py_ssize_t n1)               \
    {                                                                                          \
        const Py_ssize_t Wp = pl + W + pr, plane = CH * H * W, nv = B * S;                     \
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

/* Every size the glue computes from its arguments goes through these: a product or sum that
 * wraps around would let a small (even zero-byte) buffer pass the size checks and the loops
 * run past it. -1 with OverflowError set. */
static int size_product(Py_ssize_t *out, const char *what, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    Py_ssize_t r = 1;
    int bad = 0;
    for (int i = 0; i < n; i++) bad |= __builtin_mul_overflow(r, va_arg(ap, Py_ssize_t), &r);
    va_end(ap);
    if (bad) {
        PyErr_Format(PyExc_OverflowError, "%s: the size overflows a Py_ssize_t", what);
        return -1;
    }
    *out = r;
    return 0;
}

/* a * b + c, checked. */
static int size_mul_add(Py_ssize_t *out, const char *what, Py_ssize_t a, Py_ssize_t b,
                        Py_ssize_t c)
{
    Py_ssize_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_add_overflow(r, c, &r)) {
        PyErr_Format(PyExc_OverflowError, "%s: the size overflows a Py_ssize_t", what);
        return -1;
    }
    *out = r;
    return 0;
}

static int parse_dims(PyObject *t, Dims *d)
{
    Py_ssize_t v[17];
    const Py_ssize_t n = PyTuple_Check(t) ? PyTuple_GET_SIZE(t) : 0;
    if (n != 13 && n != 17) {
        PyErr_SetString(PyExc_ValueError, "dims must be a tuple of 13 or 17 ints");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        v[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, i));
        if (v[i] == -1 && PyErr_Occurred()) return -1;
        if (v[i] < (i >= 9 && i <= 12 ? 1 : 0)) {
            PyErr_SetString(PyExc_ValueError, "dims must be >= 0 (steps >= 1)");
            return -1;
        }
    }
    if (n == 13) { /* no padding information: every row and column may be non-zero */
        v[13] = 0, v[14] = v[2], v[15] = 0, v[16] = v[3];
    }
    Dims r = {v[0],  v[1],  v[2],  v[3],  v[4],  v[5],  v[6],  v[7], v[8],
              v[9],  v[10], v[11], v[12], v[13], v[14], v[15], v[16]};
    if (r.OH > 0 && r.OW > 0 && r.KH > 0 && r.KW > 0) {
        Py_ssize_t th, tw, eh, ew; /* the last row and column a window reads */
        if (size_mul_add(&th, "dims", r.KH - 1, r.dh, 0) < 0 ||
            size_mul_add(&eh, "dims", r.OH - 1, r.sh, th) < 0 ||
            size_mul_add(&tw, "dims", r.KW - 1, r.dw, 0) < 0 ||
            size_mul_add(&ew, "dims", r.OW - 1, r.sw, tw) < 0)
            return -1;
        if (eh >= r.H || ew >= r.W) {
            PyErr_SetString(PyExc_ValueError, "windows reach outside the input");
            return -1;
        }
    }
    *d = r;
    return 0;
}

/* A writable-if-asked C-contiguous buffer of exactly `count` items of format *kind ('f' or
 * 'd'). The first buffer of a call passes *kind == 0 and sets it: float64 if its format says
 * 'd', else float32 (anything but 'f' then fails). */
static int get_buffer(PyObject *obj, Py_buffer *view, int writable, Py_ssize_t count,
                      char *kind, const char *name)
{
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    const char *f = view->format ? view->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (!*kind) *kind = f[0] == 'd' ? 'd' : 'f';
    Py_ssize_t bytes;
    if (__builtin_mul_overflow(count, view->itemsize, &bytes)) {
        PyErr_Format(PyExc_OverflowError, "%s: the size overflows a Py_ssize_t", name);
        PyBuffer_Release(view);
        return -1;
    }
    if (f[0] != *kind || f[1] != '\0' || view->len != bytes) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd items of format '%c'", name, count,
                     *kind);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The dims and the block range of a call; -1 with an error set. */
static int checked_call(PyObject *odims, Dims *d, Py_ssize_t NB, Py_ssize_t n0, Py_ssize_t n1)
{
    if (parse_dims(odims, d) < 0) return -1;
    if (n0 < 0 || n1 > NB || n0 > n1) {
        PyErr_SetString(PyExc_ValueError, "bad block range");
        return -1;
    }
    return 0;
}

static PyObject *py_correlate(PyObject *self, PyObject *args)
{
    PyObject *ox, *ow, *oout, *obias, *odims;
    Py_ssize_t NB, n0, n1;
    Dims d;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOOnnn", &ox, &ow, &oout, &obias, &odims, &NB, &n0, &n1))
        return NULL;
    if (checked_call(odims, &d, NB, n0, n1) < 0) return NULL;
    Py_ssize_t nx, nw, no, nb;
    if (size_product(&nx, "x", 6, NB, d.G, d.C, d.H, d.W, (Py_ssize_t)LANES) < 0 ||
        size_product(&nw, "w", 5, d.G, d.M, d.C, d.KH, d.KW) < 0 ||
        size_product(&no, "out", 6, NB, d.G, d.M, d.OH, d.OW, (Py_ssize_t)LANES) < 0 ||
        size_product(&nb, "bias", 2, d.G, d.M) < 0)
        return NULL;
    char kind = 0;
    Py_buffer vx, vw, vo, vb;
    vb.buf = NULL;
    if (get_buffer(ox, &vx, 0, nx, &kind, "x") < 0) return NULL;
    if (get_buffer(ow, &vw, 0, nw, &kind, "w") < 0) goto fail_x;
    if (get_buffer(oout, &vo, 1, no, &kind, "out") < 0) goto fail_w;
    if (obias != Py_None && get_buffer(obias, &vb, 0, nb, &kind, "bias") < 0) goto fail_o;
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        corr_f32(vx.buf, vw.buf, vo.buf, vb.buf, &d, n0, n1);
    else
        corr_f64(vx.buf, vw.buf, vo.buf, vb.buf, &d, n0, n1);
    Py_END_ALLOW_THREADS
    if (vb.buf) PyBuffer_Release(&vb);
    PyBuffer_Release(&vo);
    PyBuffer_Release(&vw);
    PyBuffer_Release(&vx);
    Py_RETURN_NONE;
fail_o:
    PyBuffer_Release(&vo);
fail_w:
    PyBuffer_Release(&vw);
fail_x:
    PyBuffer_Release(&vx);
    return NULL;
}

static PyObject *py_correlate_kernel(PyObject *self, PyObject *args)
{
    PyObject *ox, *odz, *odw, *odims;
    Py_ssize_t NB, n0, n1;
    Dims d;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOOOnnn", &ox, &odz, &odw, &odims, &NB, &n0, &n1))
        return NULL;
    if (checked_call(odims, &d, NB, n0, n1) < 0) return NULL;
    /* np_: the partial sums of 8 output channels, in vectors; with the delta chunk after them
     * they must fit in bytes for the wider (float64) vector */
    Py_ssize_t nx, nz, nw, np_, part_bytes;
    if (size_product(&nx, "x", 6, NB, d.G, d.C, d.H, d.W, (Py_ssize_t)LANES) < 0 ||
        size_product(&nz, "dz", 6, NB, d.G, d.M, d.OH, d.OW, (Py_ssize_t)LANES) < 0 ||
        size_product(&nw, "dw", 5, d.G, d.M, d.C, d.KH, d.KW) < 0 ||
        size_product(&np_, "dw", 4, (Py_ssize_t)8, d.C, d.KH, d.KW) < 0 ||
        size_mul_add(&part_bytes, "dw", np_, (Py_ssize_t)sizeof(vf64), GRAD_CHUNK_BYTES) < 0)
        return NULL;
    char kind = 0;
    Py_buffer vx, vz, vw;
    if (get_buffer(ox, &vx, 0, nx, &kind, "x") < 0) return NULL;
    if (get_buffer(odz, &vz, 0, nz, &kind, "dz") < 0) {
        PyBuffer_Release(&vx);
        return NULL;
    }
    if (get_buffer(odw, &vw, 1, nw, &kind, "dw") < 0) {
        PyBuffer_Release(&vz);
        PyBuffer_Release(&vx);
        return NULL;
    }
    const size_t vsize = kind == 'd' ? sizeof(vf64) : sizeof(vf32);
    /* Partial sums of 8 output channels (aligned: whole vectors), then the delta chunk; the
     * bytes were checked above for the wider vector. */
    void *part = aligned_alloc(vsize, (size_t)np_ * vsize + GRAD_CHUNK_BYTES);
    if (!part) {
        PyBuffer_Release(&vw);
        PyBuffer_Release(&vz);
        PyBuffer_Release(&vx);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS
#if HAVE_V4
    if (kind == 'f' && CPU_V4())
        kern_f32v4(vx.buf, vz.buf, vw.buf, part, (vf32 *)part + np_, &d, n0, n1);
    else
#endif
    if (kind == 'f')
        kern_f32(vx.buf, vz.buf, vw.buf, part, (vf32 *)part + np_, &d, n0, n1);
    else
        kern_f64(vx.buf, vz.buf, vw.buf, part, (vf64 *)part + np_, &d, n0, n1);
    Py_END_ALLOW_THREADS
    free(part);
    PyBuffer_Release(&vw);
    PyBuffer_Release(&vz);
    PyBuffer_Release(&vx);
    Py_RETURN_NONE;
}

/* pack_padded(src, dst, B, S, step, CH, H, W, Hp, pt, pl, pr, n0, n1): blocks n0:n1 of the
 * bands of pack_pad, which are all the lane buffer dst holds (also for unpack_bands' src). With
 * S = 1, H = Hp = 1 and no padding it is plain packing of B samples of W values. */
static PyObject *py_pack_padded(PyObject *self, PyObject *args)
{
    PyObject *osrc, *odst;
    Py_ssize_t B, S, step, CH, H, W, Hp, pt, pl, pr, n0, n1;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOnnnnnnnnnnnn", &osrc, &odst, &B, &S, &step, &CH, &H, &W, &Hp,
                          &pt, &pl, &pr, &n0, &n1))
        return NULL;
    if (B < 0 || S < 1 || step < 0 || CH < 0 || H < 0 || W < 0 || Hp < 0 || pt < 0 || pl < 0 ||
        pr < 0) {
        PyErr_SetString(PyExc_ValueError, "bad sizes or block range");
        return NULL;
    }
    /* bands (B * S), the last band's last row ((S - 1) step + Hp, also less pt), the padded
     * width, and both buffers */
    Py_ssize_t nv, last, wp, nsrc, packed;
    if (size_product(&nv, "bands", 2, B, S) < 0 ||
        size_mul_add(&last, "rows", S - 1, step, Hp) < 0 ||
        size_mul_add(&wp, "width", 1, pl, W) < 0 || size_mul_add(&wp, "width", 1, wp, pr) < 0 ||
        size_mul_add(&last, "rows", 1, last, pt) < 0 ||
        size_product(&nsrc, "src", 4, B, CH, H, W) < 0)
        return NULL;
    const Py_ssize_t NB = nv > 0 ? nv / LANES + (nv % LANES != 0) : 0;
    if (n0 < 0 || n1 > NB || n0 > n1) {
        PyErr_SetString(PyExc_ValueError, "bad sizes or block range");
        return NULL;
    }
    if (size_product(&packed, "dst", 5, n1 - n0, CH, Hp, wp, (Py_ssize_t)LANES) < 0)
        return NULL;
    char kind = 0;
    Py_buffer vs, vd;
    if (get_buffer(osrc, &vs, 0, nsrc, &kind, "src") < 0) return NULL;
    if (get_buffer(odst, &vd, 1, packed, &kind, "dst") < 0) {
        PyBuffer_Release(&vs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        pack_pad_f32(vs.buf, vd.buf, B, S, step, CH, H, W, Hp, pt, pl, pr, n0, n1);
    else
        pack_pad_f64(vs.buf, vd.buf, B, S, step, CH, H, W, Hp, pt, pl, pr, n0, n1);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&vd);
    PyBuffer_Release(&vs);
    Py_RETURN_NONE;
}

/* unpack_bands(src, dst, B, S, CH, R, OH, n0, n1): blocks n0:n1 of the bands of unpack. */
static PyObject *py_unpack_bands(PyObject *self, PyObject *args)
{
    PyObject *osrc, *odst;
    Py_ssize_t B, S, CH, R, OH, n0, n1;
    (void)self;
    if (!PyArg_ParseTuple(args, "OOnnnnnnn", &osrc, &odst, &B, &S, &CH, &R, &OH, &n0, &n1))
        return NULL;
    if (B < 0 || S < 1 || CH < 0 || R < 0 || OH < 0) {
        PyErr_SetString(PyExc_ValueError, "bad sizes or block range");
        return NULL;
    }
    Py_ssize_t nv, rows, ndst, nsrc;
    if (size_product(&nv, "bands", 2, B, S) < 0 || size_product(&rows, "rows", 2, S, R) < 0 ||
        size_product(&ndst, "dst", 3, B, CH, OH) < 0)
        return NULL;
    const Py_ssize_t NB = nv > 0 ? nv / LANES + (nv % LANES != 0) : 0;
    if (rows < OH || n0 < 0 || n1 > NB || n0 > n1) {
        PyErr_SetString(PyExc_ValueError, "bad sizes or block range");
        return NULL;
    }
    if (size_product(&nsrc, "src", 4, n1 - n0, CH, R, (Py_ssize_t)LANES) < 0) return NULL;
    char kind = 0;
    Py_buffer vs, vd;
    if (get_buffer(osrc, &vs, 0, nsrc, &kind, "src") < 0) return NULL;
    if (get_buffer(odst, &vd, 1, ndst, &kind, "dst") < 0) {
        PyBuffer_Release(&vs);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 'f')
        unpack_f32(vs.buf, vd.buf, B, S, CH, R, OH, n0, n1);
    else
        unpack_f64(vs.buf, vd.buf, B, S, CH, R, OH, n0, n1);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&vd);
    PyBuffer_Release(&vs);
    Py_RETURN_NONE;
}

static PyObject *py_narrow(PyObject *self, PyObject *arg)
{
    (void)self;
    const int v = PyObject_IsTrue(arg);
    if (v < 0) return NULL;
    PyObject *was = PyBool_FromLong(narrow_only);
    narrow_only = v;
    return was;
}

static PyMethodDef methods[] = {
    {"narrow", py_narrow, METH_O,
     "narrow(flag) -> previous: use only the tiles of CPUs without AVX-512 (for tests)."},
    {"pack_padded", py_pack_padded, METH_VARARGS,
     "pack_padded(src, dst, B, S, step, CH, H, W, Hp, pt, pl, pr, n0, n1): pack row bands of "
     "the zero-padded input."},
    {"unpack_bands", py_unpack_bands, METH_VARARGS,
     "unpack_bands(src, dst, B, S, CH, R, OH, n0, n1): unpack row bands into (B, CH, OH)."},
    {"correlate", py_correlate, METH_VARARGS,
     "correlate(x, w, out, bias, dims, NB, n0, n1): blocks n0:n1 of the valid correlation."},
    {"correlate_kernel", py_correlate_kernel, METH_VARARGS,
     "correlate_kernel(x, dz, dw, dims, NB, n0, n1): kernel gradient over blocks n0:n1."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_directc", "Direct correlation loops (see _direct.py).", -1,
    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__directc(void) { return PyModule_Create(&module); }
