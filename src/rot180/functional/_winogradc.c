/* Winograd F(2x2, 3x3) transforms: the optional compiled helper of the `winograd` realisation.
 * See _winograd.py for the algorithm, the layout and when it is used.
 *
 * Three one-pass transforms around the 16 products, and the products themselves:
 *
 *   kernel_tiles(w, u):  u[4a + b, o, c] = (G w[o, c] G^T)[a, b]          w (M, C, 3, 3)
 *                        (rotated=True: of w[o, c] rotated by 180 degrees, a permutation)
 *   input_tiles(x, v):   v[4a + b, c, t] = (B^T d_t B)[a, b]              x (B, C, H, W)
 *   output_tiles(m, out, bias): the 2 x 2 outputs of tile t, A^T m_t A + bias   out (B, M, OH, OW)
 *   forward_tiles(x, ut, out, bias, v, m): chunk by chunk of tile rows, input_tiles into v, the
 *                        16 products m[k] = ut[k]^T v[k] (with the tiles in the vector lanes),
 *                        output_tiles into out: the whole forward pass, each chunk in cache
 *
 * with u (16, M, C), v (16, C, T), m (16, M, T). Tile t = r * TW + j: tile row r (a flattened
 * (sample, tile row) pair, r = b TH + i, counted from `first_row`) and tile column j; tile (i, j)
 * reads the padded input's rows 2i .. 2i + 3 and columns 2j .. 2j + 3 and gives outputs
 * (2i .. 2i + 1, 2j .. 2j + 1), those at or past (OH, OW) dropped (ragged edges: TH = ceil(OH/2),
 * TW = ceil(OW/2)). The padding is implicit: padded row p is row p - top of x, and only rows
 * 0 <= p - top < min(H, H + bottom) (columns likewise) are read, zeros elsewhere, so a negative
 * pad crops and no cell outside the padded input is ever read.
 *
 * x, w, u, out and bias may have any strides (a group's view, a transposed or flipped array, a
 * range of channels); v and m any whose last axis (the tiles) is contiguous. Sums run in an order fixed by the loops; the GIL is released.
 *
 * The Python functions take keyword arguments and read every size from the arrays' own shapes,
 * checking that they agree (ValueError / TypeError naming the argument); sizes derived from
 * them are formed in overflow-checked arithmetic (OverflowError).
 */
#include "_glue.h" /* first: Python.h; the glue shared by the helpers, and MULTI (the widest
                    * vectors the running CPU has; -DROT180_PORTABLE: the plain code) */
#include <stdlib.h>
#include <string.h>

/* --- the transforms, for float and double --------------------------------------------------
 *
 * Input: B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]. The rows first
 * (e_a = sum_k B^T[a, k] row_k, over whole padded rows), then the columns of each e_a. The
 * padded columns are kept split into even (E[j] = column 2j) and odd (O[j] = 2j + 1) ones, so
 * that tile j's columns 2j .. 2j + 3 are E[j], O[j], E[j + 1], O[j + 1] and every loop runs
 * over contiguous memory:
 *   (e B)[0] = E[j] - E[j+1],  [1] = O[j] + E[j+1],  [2] = E[j+1] - O[j],  [3] = O[j] - O[j+1].
 *
 * Output: A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]: s_0 = m_0 + m_1 + m_2, s_1 = m_1 - m_2 - m_3
 * over the tile's rows, then the same over its columns.
 *
 * Kernel: G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]], in double, rounded
 * once to the array's type. */

#define DEFINE_TRANSFORMS(T, SUF)                                                                \
    /* Row `row` of x as padded columns 0 .. 2N - 1, split: E[j] = column 2j, O[j] = 2j + 1    \
     * (zeros outside 0 <= column - left < wlim). The columns with both inside: j in [lo, hi). */ \
    static inline void gather_##SUF(const T *row, T *E, T *O, Py_ssize_t N, Py_ssize_t left,     \
                                    Py_ssize_t wlim, Py_ssize_t sw)                              \
    {                                                                                            \
        const Py_ssize_t span = wlim + left - 2;                                                 \
        Py_ssize_t hi = span < 0 ? 0 : span / 2 + 1, lo = left > 0 ? (left + 1) / 2 : 0;         \
        if (hi > N) hi = N;                                                                      \
        if (lo > hi) lo = hi;                                                                    \
        for (Py_ssize_t j = 0; j < N; j++) {                                                     \
            if (j == lo) { /* the inside, without tests */                                       \
                if (sw == 1)                                                                     \
                    for (; j < hi; j++) {                                                        \
                        E[j] = row[2 * j - left];                                                \
                        O[j] = row[2 * j + 1 - left];                                            \
                    }                                                                            \
                else                                                                             \
                    for (; j < hi; j++) {                                                        \
                        E[j] = row[(2 * j - left) * sw];                                         \
                        O[j] = row[(2 * j + 1 - left) * sw];                                     \
                    }                                                                            \
                if (j == N) break;                                                               \
            }                                                                                    \
            const Py_ssize_t q0 = 2 * j - left, q1 = q0 + 1;                                     \
            E[j] = q0 >= 0 && q0 < wlim ? row[q0 * sw] : (T)0;                                   \
            O[j] = q1 >= 0 && q1 < wlim ? row[q1 * sw] : (T)0;                                   \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    MULTI static void input_##SUF(const T *x, T *v, Py_ssize_t sb, Py_ssize_t sc,               \
                                  Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t C, Py_ssize_t hlim,  \
                                  Py_ssize_t wlim, Py_ssize_t top, Py_ssize_t left,             \
                                  Py_ssize_t TH, Py_ssize_t TW, Py_ssize_t r0, Py_ssize_t n,    \
                                  Py_ssize_t vk, Py_ssize_t vc, T *buf)                          \
    {                                                                                            \
        const Py_ssize_t N = TW + 1;                                                             \
        for (Py_ssize_t c = 0; c < C; c++) {                                                     \
            T *rE[4], *rO[4];                                                                    \
            for (int k = 0; k < 4; k++) {                                                        \
                rE[k] = buf + 2 * k * N;                                                         \
                rO[k] = buf + (2 * k + 1) * N;                                                   \
            }                                                                                    \
            for (Py_ssize_t r = 0; r < n; r++) {                                                 \
                const Py_ssize_t b = (r0 + r) / TH, i = (r0 + r) % TH;                           \
                int k0 = 0;                                                                      \
                if (r > 0 && i > 0) { /* tile row i - 1 of the same sample: its rows 2, 3 */     \
                    for (int k = 0; k < 2; k++) {                                                \
                        T *e = rE[k], *o = rO[k];                                                \
                        rE[k] = rE[k + 2], rO[k] = rO[k + 2], rE[k + 2] = e, rO[k + 2] = o;      \
                    }                                                                            \
                    k0 = 2;                                                                      \
                }                                                                                \
                for (int k = k0; k < 4; k++) {                                                   \
                    const Py_ssize_t y = 2 * i + k - top;                                        \
                    if (y < 0 || y >= hlim) {                                                    \
                        memset(rE[k], 0, N * sizeof(T));                                         \
                        memset(rO[k], 0, N * sizeof(T));                                         \
                    } else                                                                       \
                        gather_##SUF(x + b * sb + c * sc + y * sh, rE[k], rO[k], N, left, wlim,  \
                                     sw);                                                        \
                }                                                                                \
                /* e_a = B^T[a] . rows (r0 - r2, r1 + r2, r2 - r1, r1 - r3) at columns 2j, 2j+1 \
                 * and 2j+2, 2j+3 (E, O at j and j + 1), then its columns times B. */          \
                const T *restrict E0 = rE[0], *restrict E1 = rE[1], *restrict E2 = rE[2],        \
                        *restrict E3 = rE[3], *restrict O0 = rO[0], *restrict O1 = rO[1],        \
                        *restrict O2 = rO[2], *restrict O3 = rO[3];                              \
                T *restrict d = v + c * vc + r * TW;                                             \
                /* a at a time: 4 store streams (16 at C T apart would alias in L1) */           \
                for (int a = 0; a < 4; a++) {                                                    \
                    const T *restrict P = a == 0 ? E0 : E1, *restrict Q = a == 3 ? E3 : E2;      \
                    const T *restrict PO = a == 0 ? O0 : O1, *restrict QO = a == 3 ? O3 : O2;    \
                    T *restrict d0 = d + 4 * a * vk, *restrict d1 = d0 + vk,                     \
                      *restrict d2 = d1 + vk, *restrict d3 = d2 + vk;                            \
                    for (Py_ssize_t j = 0; j < TW; j++) {                                        \
                        T ej, ej1, oj, oj1;                                                      \
                        if (a == 1) {                                                            \
                            ej = P[j] + Q[j], ej1 = P[j + 1] + Q[j + 1];                         \
                            oj = PO[j] + QO[j], oj1 = PO[j + 1] + QO[j + 1];                     \
                        } else if (a == 2) {                                                     \
                            ej = Q[j] - P[j], ej1 = Q[j + 1] - P[j + 1];                         \
                            oj = QO[j] - PO[j], oj1 = QO[j + 1] - PO[j + 1];                     \
                        } else {                                                                 \
                            ej = P[j] - Q[j], ej1 = P[j + 1] - Q[j + 1];                         \
                            oj = PO[j] - QO[j], oj1 = PO[j + 1] - QO[j + 1];                     \
                        }                                                                        \
                        d0[j] = ej - ej1;                                                        \
                        d1[j] = oj + ej1;                                                        \
                        d2[j] = ej1 - oj;                                                        \
                        d3[j] = oj - oj1;                                                        \
                    }                                                                            \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    MULTI static void output_##SUF(const T *m, T *out, const T *bias, Py_ssize_t sbias,         \
                                   Py_ssize_t sb, Py_ssize_t so, Py_ssize_t sh, Py_ssize_t sw,  \
                                   Py_ssize_t M, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t TH,   \
                                   Py_ssize_t TW, Py_ssize_t r0, Py_ssize_t n, Py_ssize_t mk,   \
                                   Py_ssize_t mo, T *buf)                                        \
    {                                                                                            \
        T *s[8], *y0 = buf + 8 * TW, *y1 = y0 + 2 * TW;                                          \
        for (int k = 0; k < 8; k++) s[k] = buf + k * TW;                                         \
        for (Py_ssize_t o = 0; o < M; o++) {                                                     \
            const T beta = bias ? bias[o * sbias] : (T)0;                                        \
            for (Py_ssize_t r = 0; r < n; r++) {                                                 \
                const Py_ssize_t b = (r0 + r) / TH, i = (r0 + r) % TH;                           \
                const T *src = m + o * mo + r * TW;                                              \
                /* s_0[c] = m[0, c] + m[1, c] + m[2, c], s_1[c] = m[1, c] - m[2, c] - m[3, c] */ \
                for (int c = 0; c < 4; c++) {                                                    \
                    const T *m0 = src + c * mk, *m1 = m0 + 4 * mk, *m2 = m1 + 4 * mk,           \
                            *m3 = m2 + 4 * mk;                                                   \
                    T *s0 = s[c], *s1 = s[4 + c];                                                \
                    for (Py_ssize_t j = 0; j < TW; j++) {                                        \
                        s0[j] = m0[j] + m1[j] + m2[j];                                           \
                        s1[j] = m1[j] - m2[j] - m3[j];                                           \
                    }                                                                            \
                }                                                                                \
                for (Py_ssize_t j = 0; j < TW; j++) {                                            \
                    y0[2 * j] = beta + (s[0][j] + s[1][j] + s[2][j]);                            \
                    y0[2 * j + 1] = beta + (s[1][j] - s[2][j] - s[3][j]);                        \
                    y1[2 * j] = beta + (s[4][j] + s[5][j] + s[6][j]);                            \
                    y1[2 * j + 1] = beta + (s[5][j] - s[6][j] - s[7][j]);                        \
                }                                                                                \
                T *dst = out + b * sb + o * so + 2 * i * sh;                                     \
                for (Py_ssize_t q = 0; q < OW; q++) dst[q * sw] = y0[q];                         \
                if (2 * i + 1 < OH)                                                              \
                    for (Py_ssize_t q = 0; q < OW; q++) dst[sh + q * sw] = y1[q];                \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* A block of nb output channels at a time (1, or 8 where u's output channels are its     \
     * contiguous axis: then each write is a run of 8), vectorised over (input channel, channel \
     * of the block) pairs e = c nb + j: the 9 taps gathered into rows of `buf` (9 C nb        \
     * doubles), then each of the 16 cells formed over all e. Written one value at a time, C   \
     * apart (16 of them, 256 x 256 channels), the transposed cells took 5.8 ms against 0.9. */ \
    MULTI static void kernel_##SUF(const T *w, T *u, Py_ssize_t so, Py_ssize_t sc,              \
                                   Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t uk, Py_ssize_t uo,  \
                                   Py_ssize_t uc, Py_ssize_t M, Py_ssize_t C, int rotated,      \
                                   Py_ssize_t nb, double *buf)                                   \
    {                                                                                            \
        /* rotated: cell (a, b) of G w G^T lands at (p(a), p(b)), p = (3, 1, 2, 0) */            \
        static const int P[4] = {3, 1, 2, 0}, I[4] = {0, 1, 2, 3};                               \
        const int *cell = rotated ? P : I;                                                       \
        for (Py_ssize_t o0 = 0; o0 < M; o0 += nb) {                                              \
            const Py_ssize_t jb = M - o0 < nb ? M - o0 : nb, E = C * jb;                         \
            double *h = buf + 9 * E; /* G g: 4 rows x 3 taps, each E long */                     \
            for (int t = 0; t < 9; t++) {                                                        \
                const T *g = w + o0 * so + (t / 3) * sh + (t % 3) * sw;                          \
                double *d = buf + t * E;                                                         \
                for (Py_ssize_t c = 0; c < C; c++)                                               \
                    for (Py_ssize_t j = 0; j < jb; j++) d[c * jb + j] = g[j * so + c * sc];      \
            }                                                                                    \
            for (int q = 0; q < 3; q++) { /* G g: the rows */                                    \
                const double *a = buf + q * E, *b = buf + (3 + q) * E, *e = buf + (6 + q) * E;   \
                double *h0 = h + q * E, *h1 = h + (3 + q) * E, *h2 = h + (6 + q) * E,            \
                       *h3 = h + (9 + q) * E;                                                    \
                for (Py_ssize_t i = 0; i < E; i++) {                                             \
                    h0[i] = a[i];                                                                \
                    h1[i] = 0.5 * (a[i] + b[i] + e[i]);                                          \
                    h2[i] = 0.5 * (a[i] - b[i] + e[i]);                                          \
                    h3[i] = e[i];                                                                \
                }                                                                                \
            }                                                                                    \
            for (int p = 0; p < 4; p++) { /* (G g) G^T: the columns */                           \
                const double *a = h + 3 * p * E, *b = a + E, *e = b + E;                         \
                T *row = u + 4 * cell[p] * uk + o0 * uo, *f0 = row + cell[0] * uk,               \
                  *f1 = row + cell[1] * uk, *f2 = row + cell[2] * uk, *f3 = row + cell[3] * uk;  \
                if (uc == 1 && jb == 1)                                                          \
                    for (Py_ssize_t c = 0; c < C; c++) {                                         \
                        f0[c] = (T)a[c];                                                         \
                        f1[c] = (T)(0.5 * (a[c] + b[c] + e[c]));                                 \
                        f2[c] = (T)(0.5 * (a[c] - b[c] + e[c]));                                 \
                        f3[c] = (T)e[c];                                                         \
                    }                                                                            \
                else                                                                             \
                    for (Py_ssize_t c = 0; c < C; c++)                                           \
                        for (Py_ssize_t j = 0; j < jb; j++) {                                    \
                            const Py_ssize_t i = c * jb + j, at = c * uc + j * uo;               \
                            f0[at] = (T)a[i];                                                    \
                            f1[at] = (T)(0.5 * (a[i] + b[i] + e[i]));                            \
                            f2[at] = (T)(0.5 * (a[i] - b[i] + e[i]));                            \
                            f3[at] = (T)e[i];                                                    \
                        }                                                                        \
            }                                                                                    \
        }                                                                                        \
    }

DEFINE_TRANSFORMS(float, f32)
DEFINE_TRANSFORMS(double, f64)

/* --- the 16 products, and the whole chunk ----------------------------------------------------
 *
 * m[k, o, t] = sum_c ut[k, c, o] v[k, c, t] for the 16 cells k, with the tiles in the vector
 * lanes (LANES tiles a vector, v's and m's rows padded to whole vectors) and the kernel read
 * transposed, ut (16, C, Mp): a tile of OB output channels x XB vectors of tiles holds OB XB
 * accumulators, and each input channel adds XB vector loads of v times OB broadcasts of the OB
 * neighbouring values ut[k, c, o0 .. o0 + OB) (one base register for all of them; Mp >= M
 * rounded up to 8, its columns past M zero). The sums run over c in order, one fused
 * multiply-add each, whatever the chunk, thread or tile: the bits depend on the shapes alone.
 * OB x XB: 8 x 3 (24 of the 32 registers) where the CPU has AVX-512, else 4 x 1 (float32;
 * float64 vectors take two registers: 4 x 2 and 2 x 1). Why not BLAS: these products are short
 * (C, M of 32-512, 100-300 tiles a chunk), where the BLAS kernels ran at 55-70 % of the
 * machine's matmul rate (BENCHMARKS.md, "Issue 13, fifth pass"). */

#define WG_LANES 16
typedef float wf32 __attribute__((vector_size(WG_LANES * sizeof(float))));
typedef double wf64 __attribute__((vector_size(WG_LANES * sizeof(double))));

#define DEFINE_PROD_TILE(T, V, SUF, OB, XB)                                                      \
    static inline __attribute__((always_inline)) void prod_##SUF##_##OB##x##XB(                  \
        const T *restrict u, const T *restrict v, T *restrict m, Py_ssize_t C, Py_ssize_t Mp,    \
        Py_ssize_t vc, Py_ssize_t mo, Py_ssize_t ob, int first)                                  \
    {                                                                                            \
        V acc[OB][XB];                                                                           \
        for (int j = 0; j < OB; j++)                                                             \
            for (int i = 0; i < XB; i++)                                                         \
                acc[j][i] = first || j >= ob ? (V){0} : LOAD(V, m + j * mo + i * WG_LANES);   \
        for (Py_ssize_t c = 0; c < C; c++) {                                                     \
            V x[XB];                                                                             \
            for (int i = 0; i < XB; i++) x[i] = LOAD(V, v + c * vc + i * WG_LANES);           \
            const T *uc = u + c * Mp;                                                            \
            for (int j = 0; j < OB; j++) {                                                       \
                const T s = uc[j];                                                               \
                for (int i = 0; i < XB; i++) acc[j][i] += s * x[i];                              \
            }                                                                                    \
        }                                                                                        \
        for (int j = 0; j < OB && j < ob; j++)                                                   \
            for (int i = 0; i < XB; i++) STORE(V, m + j * mo + i * WG_LANES, acc[j][i]);      \
    }

/* One cell's product over nv vectors of tiles, in blocks of WG_CB input channels (the sums
 * carried in m from one block to the next: the same sums in the same order, whatever the
 * block), XB vectors of tiles at a time (the last ones one by one), every block of OB output
 * channels over those tiles before the next: the tiles' WG_CB x XB vectors of v stay in L1
 * (12 KiB of float32) while u streams. Over whole rows of v instead (8 x 256 x 14 x 14 -> 256:
 * a 278 KiB cell, read from L2 once per 8 output channels), the loads held the products to
 * 60 % of the rate. */
#define WG_CB 64
/* A cell of u larger than this (384 x 384 float32 channels and up) is read block by block
 * once, each block over all the tiles, rather than once per XB vectors of tiles: 8 x 512 x 7 x 7
 * has 1 MiB a cell, which the tile-major order read from L3 four times. */
#define WG_U_OUTER (512 * 1024)
#define DEFINE_PROD_CELL(T, V, SUF, OB, XB)                                                      \
    static inline __attribute__((always_inline)) void cell_##SUF##_##OB##x##XB(                  \
        const T *u, const T *v, T *m, Py_ssize_t C, Py_ssize_t M, Py_ssize_t Mp, Py_ssize_t nv,  \
        Py_ssize_t vc, Py_ssize_t mo)                                                            \
    {                                                                                            \
        const int u_outer = C * Mp * (Py_ssize_t)sizeof(T) > WG_U_OUTER;                         \
        for (Py_ssize_t c0 = 0; c0 < C; c0 += WG_CB) {                                           \
            const Py_ssize_t cn = C - c0 < WG_CB ? C - c0 : WG_CB;                               \
            const T *uc = u + c0 * Mp, *vb = v + c0 * vc;                                        \
            if (u_outer) { /* each block of u once, the tiles' vectors from L2 */                \
                for (Py_ssize_t o = 0; o < M; o += OB) {                                         \
                    Py_ssize_t t = 0;                                                            \
                    for (; t + XB <= nv; t += XB)                                                \
                        prod_##SUF##_##OB##x##XB(uc + o, vb + t * WG_LANES,                      \
                                                 m + o * mo + t * WG_LANES, cn, Mp, vc, mo,      \
                                                 M - o, c0 == 0);                                \
                    for (; t < nv; t++)                                                          \
                        prod_##SUF##_##OB##x1(uc + o, vb + t * WG_LANES,                         \
                                              m + o * mo + t * WG_LANES, cn, Mp, vc, mo, M - o,  \
                                              c0 == 0);                                          \
                }                                                                                \
                continue;                                                                        \
            }                                                                                    \
            Py_ssize_t t = 0;                                                                    \
            for (; t + XB <= nv; t += XB)                                                        \
                for (Py_ssize_t o = 0; o < M; o += OB)                                           \
                    prod_##SUF##_##OB##x##XB(uc + o, vb + t * WG_LANES,                          \
                                             m + o * mo + t * WG_LANES, cn, Mp, vc, mo, M - o,   \
                                             c0 == 0);                                           \
            for (; t < nv; t++)                                                                  \
                for (Py_ssize_t o = 0; o < M; o += OB)                                           \
                    prod_##SUF##_##OB##x1(uc + o, vb + t * WG_LANES, m + o * mo + t * WG_LANES,  \
                                          cn, Mp, vc, mo, M - o, c0 == 0);                       \
        }                                                                                        \
    }

#define DEFINE_PRODUCTS(T, V, SUF, WOB, WXB, NOB)                                                \
    DEFINE_PROD_TILE(T, V, SUF, WOB, WXB)                                                        \
    DEFINE_PROD_TILE(T, V, SUF, WOB, 1)                                                          \
    DEFINE_PROD_TILE(T, V, SUF, NOB, 1)                                                          \
    DEFINE_PROD_CELL(T, V, SUF, WOB, WXB)                                                        \
    DEFINE_PROD_CELL(T, V, SUF, NOB, 1)                                                          \
                                                                                                 \
    /* Tile rows r0 .. r0 + rows in chunks of `chunk` rows: each gathered into v, multiplied   \
     * into m and written to out, all three in cache (v, m: 16 cells, rows vc and mo long, the \
     * cells vk and mk apart). */                                                                \
    MULTI static void chunks_##SUF(const T *x, const T *ut, T *out, const T *bias,               \
                                   const Py_ssize_t *xs, const Py_ssize_t *os, Py_ssize_t sbias, \
                                   Py_ssize_t C, Py_ssize_t M, Py_ssize_t Mp, Py_ssize_t uk,     \
                                   Py_ssize_t hlim, Py_ssize_t wlim, Py_ssize_t top,             \
                                   Py_ssize_t left, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t TH, \
                                   Py_ssize_t TW, Py_ssize_t r0, Py_ssize_t rows,                \
                                   Py_ssize_t chunk, T *v, Py_ssize_t vk, Py_ssize_t vc, T *m,   \
                                   Py_ssize_t mk, Py_ssize_t mo, int wide, T *ibuf, T *obuf)     \
    {                                                                                            \
        for (Py_ssize_t r = r0; r < r0 + rows; r += chunk) {                                     \
            const Py_ssize_t n = r0 + rows - r < chunk ? r0 + rows - r : chunk;                  \
            const Py_ssize_t nt = n * TW, nv = (nt + WG_LANES - 1) / WG_LANES;                   \
            input_##SUF(x, v, xs[0], xs[1], xs[2], xs[3], C, hlim, wlim, top, left, TH, TW, r,   \
                        n, vk, vc, ibuf);                                                        \
            if (nt % WG_LANES) /* the last vector's lanes past the tiles: zeros, not stale */    \
                for (int k = 0; k < 16; k++)                                                     \
                    for (Py_ssize_t c = 0; c < C; c++)                                           \
                        memset(v + k * vk + c * vc + nt, 0,                                      \
                               (nv * WG_LANES - nt) * sizeof(T));                                \
            for (int k = 0; k < 16; k++) {                                                       \
                if (wide)                                                                        \
                    cell_##SUF##_##WOB##x##WXB(ut + k * uk, v + k * vk, m + k * mk, C, M, Mp,    \
                                               nv, vc, mo);                                      \
                else                                                                             \
                    cell_##SUF##_##NOB##x1(ut + k * uk, v + k * vk, m + k * mk, C, M, Mp, nv,    \
                                           vc, mo);                                              \
            }                                                                                    \
            output_##SUF(m, out, bias, sbias, os[0], os[1], os[2], os[3], M, OH, OW, TH, TW, r,  \
                         n, mk, mo, obuf);                                                       \
        }                                                                                        \
    }

DEFINE_PRODUCTS(float, wf32, f32, 8, 3, 4)
DEFINE_PRODUCTS(double, wf64, f64, 4, 2, 2)

/* --- the Python glue ----------------------------------------------------------------------- */

/* An array argument (get_float_array, _glue.h): float32 or float64 (all of a call alike),
 * `ndim` axes, writable if asked (a read-only array is a TypeError here); any strides that are
 * whole elements, kept in elements in a->st, or with `rows` its last axis contiguous. */
static int get_array(Arg *a, PyObject *obj, const char *fn, const char *name, int ndim,
                     const char *axes, int writable, int rows, char *kind)
{
    if (get_float_array(a, obj, fn, name, ndim, axes, writable ? ARG_ASK_WRITABLE : 0, kind) < 0)
        return -1;
    const Py_buffer *v = &a->view;
    if (rows && v->shape[ndim - 1] > 1 && v->strides[ndim - 1] != v->itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %s's last axis must be contiguous (stride %zd "
                     "bytes), got stride %zd (np.ascontiguousarray)", fn, name, v->itemsize,
                     v->strides[ndim - 1]);
        return -1;
    }
    for (int i = 0; i < ndim; i++)
        if (whole_stride(a, fn, name, i, "") < 0) return -1;
    return 0;
}

/* The tile rows first .. first + n must lie inside the B TH (sample, tile row) pairs. */
static int row_range(const char *fn, Py_ssize_t B, Py_ssize_t TH, Py_ssize_t first, Py_ssize_t n)
{
    Py_ssize_t all, end;
    if (first < 0) {
        PyErr_Format(PyExc_ValueError, "%s: first_row must be >= 0, got %zd", fn, first);
        return -1;
    }
    if (__builtin_mul_overflow(B, TH, &all)) return overflow(fn, "samples x tile rows");
    if (__builtin_add_overflow(first, n, &end)) return overflow(fn, "first_row + rows");
    if (end > all) {
        PyErr_Format(PyExc_ValueError, "%s: tile rows %zd:%zd are past the %zd tile rows of "
                     "%zd samples x %zd", fn, first, end, all, B, TH);
        return -1;
    }
    return 0;
}

/* The tile rows first_row .. first_row + T / TW of B samples of TH tile rows each: T must be a
 * whole number of tile rows and the range inside the B TH rows. Sets *n. */
static int tile_rows(const char *fn, const char *name, Py_ssize_t T, Py_ssize_t TW,
                     Py_ssize_t B, Py_ssize_t TH, Py_ssize_t first, Py_ssize_t *n)
{
    if (T % TW) {
        PyErr_Format(PyExc_ValueError, "%s: %s has T = %zd tiles (axis 2), not a whole number "
                     "of tile rows of TW = %zd", fn, name, T, TW);
        return -1;
    }
    *n = T / TW;
    return row_range(fn, B, TH, first, *n);
}

/* Output size n + lo + hi - 2 of one axis (>= 1), overflow-checked. */
static int out_size(const char *fn, const char *axis, Py_ssize_t n, Py_ssize_t lo, Py_ssize_t hi,
                    Py_ssize_t *o)
{
    Py_ssize_t s;
    if (__builtin_add_overflow(n, lo, &s) || __builtin_add_overflow(s, hi, &s))
        return overflow(fn, "size + pads");
    if (s < 3) {
        PyErr_Format(PyExc_ValueError, "%s: the padded %s is %zd cells, fewer than the "
                     "kernel's 3", fn, axis, s);
        return -1;
    }
    *o = s - 2;
    return 0;
}

/* input_tiles(x, v, *, top=0, left=0, bottom=0, right=0, first_row=0) */
static PyObject *py_input_tiles(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "v", "top", "left", "bottom", "right", "first_row", NULL};
    static const char *fn = "input_tiles";
    PyObject *ox, *ov;
    Py_ssize_t top = 0, left = 0, bottom = 0, right = 0, first = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$nnnnn", kw, &ox, &ov, &top, &left,
                                     &bottom, &right, &first))
        return NULL;
    char kind = 0;
    Arg a[2] = {{.held = 0}, {.held = 0}};
    if (get_array(&a[0], ox, fn, "x", 4, "(B, C, H, W)", 0, 0, &kind) < 0 ||
        get_array(&a[1], ov, fn, "v", 3, "(16, C, T)", 1, 1, &kind) < 0 ||
        same(fn, &a[1], "v", 0, "the tile's cells", 16, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[1], "v", 1, "C", a[0].view.shape[1], "x") < 0)
        goto out;
    const Py_ssize_t *xs = a[0].view.shape;
    const Py_ssize_t B = xs[0], C = xs[1], H = xs[2], W = xs[3], T = a[1].view.shape[2];
    Py_ssize_t OH, OW, n;
    if (out_size(fn, "height", H, top, bottom, &OH) < 0 ||
        out_size(fn, "width", W, left, right, &OW) < 0)
        goto out;
    const Py_ssize_t TH = OH / 2 + OH % 2, TW = OW / 2 + OW % 2;
    if (tile_rows(fn, "v", T, TW, B, TH, first, &n) < 0) goto out;
    /* Rows and columns read: those of x inside the padded input (a negative pad crops). */
    const Py_ssize_t hlim = bottom < 0 ? H + bottom : H, wlim = right < 0 ? W + right : W;
    if (n == 0 || C == 0) goto out;
    void *buf = malloc(8 * (TW + 1) * a[0].view.itemsize);
    if (!buf) {
        PyErr_NoMemory();
        goto out;
    }
    const Py_ssize_t *st = a[0].st;
    BY_DTYPE(kind, input, a[0].view.buf, a[1].view.buf, st[0], st[1], st[2], st[3], C, hlim, wlim,
                          top, left, TH, TW, first, n, a[1].st[0], a[1].st[1], buf);
    free(buf);
out:
    return finish(a, 2);
}

/* output_tiles(m, out, bias=None, *, first_row=0) */
static PyObject *py_output_tiles(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"m", "out", "bias", "first_row", NULL};
    static const char *fn = "output_tiles";
    PyObject *om, *oout, *obias = Py_None;
    Py_ssize_t first = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O$n", kw, &om, &oout, &obias, &first))
        return NULL;
    char kind = 0;
    Arg a[3] = {{.held = 0}, {.held = 0}, {.held = 0}};
    if (get_array(&a[0], om, fn, "m", 3, "(16, M, T)", 0, 1, &kind) < 0 ||
        get_array(&a[1], oout, fn, "out", 4, "(B, M, OH, OW)", 1, 0, &kind) < 0 ||
        same(fn, &a[0], "m", 0, "the tile's cells", 16, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[0], "m", 1, "M", a[1].view.shape[1], "out") < 0)
        goto out;
    if (obias != Py_None && (get_array(&a[2], obias, fn, "bias", 1, "(M,)", 0, 0, &kind) < 0 ||
                             same(fn, &a[2], "bias", 0, "M", a[1].view.shape[1], "out") < 0))
        goto out;
    const Py_ssize_t *os = a[1].view.shape;
    const Py_ssize_t B = os[0], M = os[1], OH = os[2], OW = os[3], T = a[0].view.shape[2];
    if (OH < 1 || OW < 1) {
        PyErr_Format(PyExc_ValueError, "%s: out must have OH, OW >= 1, got %zd, %zd", fn, OH, OW);
        goto out;
    }
    const Py_ssize_t TH = OH / 2 + OH % 2, TW = OW / 2 + OW % 2;
    Py_ssize_t n;
    if (tile_rows(fn, "m", T, TW, B, TH, first, &n) < 0) goto out;
    if (n == 0 || M == 0) goto out;
    void *buf = malloc(12 * TW * a[0].view.itemsize);
    if (!buf) {
        PyErr_NoMemory();
        goto out;
    }
    const Py_ssize_t *st = a[1].st;
    const void *bias = a[2].held ? a[2].view.buf : NULL;
    const Py_ssize_t sbias = a[2].held ? a[2].st[0] : 0;
    BY_DTYPE(kind, output, a[0].view.buf, a[1].view.buf, bias, sbias, st[0], st[1], st[2], st[3], M,
                           OH, OW, TH, TW, first, n, a[0].st[0], a[0].st[1], buf);
    free(buf);
out:
    return finish(a, 3);
}

/* kernel_tiles(w, u, *, rotated=False) */
static PyObject *py_kernel_tiles(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"w", "u", "rotated", NULL};
    static const char *fn = "kernel_tiles";
    PyObject *ow, *ou;
    int rotated = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|$p", kw, &ow, &ou, &rotated)) return NULL;
    char kind = 0;
    Arg a[2] = {{.held = 0}, {.held = 0}};
    if (get_array(&a[0], ow, fn, "w", 4, "(M, C, 3, 3)", 0, 0, &kind) < 0 ||
        get_array(&a[1], ou, fn, "u", 3, "(16, M, C)", 1, 0, &kind) < 0 ||
        same(fn, &a[0], "w", 2, "the kernel's height", 3, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[0], "w", 3, "the kernel's width", 3, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[1], "u", 0, "the tile's cells", 16, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[1], "u", 1, "M", a[0].view.shape[0], "w") < 0 ||
        same(fn, &a[1], "u", 2, "C", a[0].view.shape[1], "w") < 0)
        goto out;
    const Py_ssize_t M = a[0].view.shape[0], C = a[0].view.shape[1], *st = a[0].st,
                     *su = a[1].st;
    if (M == 0 || C == 0) goto out;
    /* Blocks of 8 output channels where they are u's contiguous axis (kernel_ above). */
    const Py_ssize_t nb = su[1] == 1 && su[2] != 1 && M > 1 ? 8 : 1;
    /* 9 C nb + 12 C nb doubles; C is an extent of w, so they fit unless C is absurd. */
    if (C > PY_SSIZE_T_MAX / (21 * nb * (Py_ssize_t)sizeof(double))) {
        overflow(fn, "the scratch of 21 C nb doubles");
        goto out;
    }
    double *buf = malloc(21 * nb * C * sizeof(double));
    if (!buf) {
        PyErr_NoMemory();
        goto out;
    }
    BY_DTYPE(kind, kernel, a[0].view.buf, a[1].view.buf, st[0], st[1], st[2], st[3], su[0], su[1],
                           su[2], M, C, rotated, nb, buf);
    free(buf);
out:
    return finish(a, 2);
}

/* The round-up of n to a multiple of k (k > 0), overflow-checked into *r. */
static int round_up(const char *fn, const char *what, Py_ssize_t n, Py_ssize_t k, Py_ssize_t *r)
{
    if (__builtin_add_overflow(n, k - 1, r)) return overflow(fn, what);
    *r -= *r % k;
    return 0;
}

/* forward_tiles(x, ut, out, bias=None, *, v, m, top=0, left=0, bottom=0, right=0, first_row=0,
 *               rows, chunk_rows, narrow=False) */
static PyObject *py_forward_tiles(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"x", "ut", "out", "bias", "v", "m", "top", "left", "bottom", "right",
                         "first_row", "rows", "chunk_rows", "narrow", NULL};
    static const char *fn = "forward_tiles";
    PyObject *ox, *ou, *oout, *obias = Py_None, *ov = NULL, *om = NULL;
    Py_ssize_t top = 0, left = 0, bottom = 0, right = 0, first = 0, rows = -1, chunk = 0;
    int narrow = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O$OOnnnnnnnp", kw, &ox, &ou, &oout, &obias,
                                     &ov, &om, &top, &left, &bottom, &right, &first, &rows,
                                     &chunk, &narrow))
        return NULL;
    if (!ov || !om || rows < 0 || chunk < 1) {
        PyErr_Format(PyExc_TypeError, "%s: v=, m=, rows= (>= 0) and chunk_rows= (>= 1) are "
                     "required keywords", fn);
        return NULL;
    }
    char kind = 0;
    Arg a[6] = {{.held = 0}, {.held = 0}, {.held = 0}, {.held = 0}, {.held = 0}, {.held = 0}};
    if (get_array(&a[0], ox, fn, "x", 4, "(B, C, H, W)", 0, 0, &kind) < 0 ||
        get_array(&a[1], ou, fn, "ut", 3, "(16, C, Mp)", 0, 1, &kind) < 0 ||
        get_array(&a[2], oout, fn, "out", 4, "(B, M, OH, OW)", 1, 0, &kind) < 0 ||
        get_array(&a[3], ov, fn, "v", 3, "(16, C, Tp)", 1, 1, &kind) < 0 ||
        get_array(&a[4], om, fn, "m", 3, "(16, M, Tp)", 1, 1, &kind) < 0)
        goto out;
    const Py_ssize_t *xs = a[0].view.shape, *os = a[2].view.shape;
    const Py_ssize_t B = xs[0], C = xs[1], H = xs[2], W = xs[3], M = os[1];
    if (same(fn, &a[1], "ut", 0, "the tile's cells", 16, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[1], "ut", 1, "C", C, "x") < 0 ||
        same(fn, &a[2], "out", 0, "B", B, "x") < 0 ||
        same(fn, &a[3], "v", 0, "the tile's cells", 16, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[3], "v", 1, "C", C, "x") < 0 ||
        same(fn, &a[4], "m", 0, "the tile's cells", 16, "F(2x2, 3x3)") < 0 ||
        same(fn, &a[4], "m", 1, "M", M, "out") < 0)
        goto out;
    if (obias != Py_None && (get_array(&a[5], obias, fn, "bias", 1, "(M,)", 0, 0, &kind) < 0 ||
                             same(fn, &a[5], "bias", 0, "M", M, "out") < 0))
        goto out;
    Py_ssize_t OH, OW, Mp, Tp, nt;
    if (out_size(fn, "height", H, top, bottom, &OH) < 0 ||
        out_size(fn, "width", W, left, right, &OW) < 0 ||
        same(fn, &a[2], "out", 2, "OH", OH, "x and the pads") < 0 ||
        same(fn, &a[2], "out", 3, "OW", OW, "x and the pads") < 0)
        goto out;
    const Py_ssize_t TH = OH / 2 + OH % 2, TW = OW / 2 + OW % 2;
    if (row_range(fn, B, TH, first, rows) < 0) goto out;
    if (chunk > rows && rows > 0) chunk = rows;
    if (round_up(fn, "M rounded up to 8", M, 8, &Mp) < 0 ||
        __builtin_mul_overflow(chunk, TW, &nt) ||
        round_up(fn, "the chunk's tiles", nt, WG_LANES, &Tp) < 0)
        goto out;
    if (a[1].view.shape[2] < Mp) {
        PyErr_Format(PyExc_ValueError, "%s: ut has %zd columns (axis 2), expected at least M = "
                     "%zd rounded up to 8, %zd (the columns past M zero)", fn,
                     a[1].view.shape[2], M, Mp);
        goto out;
    }
    for (int i = 3; i < 5; i++)
        if (a[i].view.shape[2] < Tp) {
            PyErr_Format(PyExc_ValueError, "%s: %s has %zd tiles (axis 2), expected at least "
                         "chunk_rows x TW = %zd rounded up to %d, %zd", fn, i == 3 ? "v" : "m",
                         a[i].view.shape[2], nt, WG_LANES, Tp);
            goto out;
        }
    if (rows == 0 || M == 0) goto out;
    const Py_ssize_t hlim = bottom < 0 ? H + bottom : H, wlim = right < 0 ? W + right : W;
    void *ibuf = malloc(8 * (TW + 1) * a[0].view.itemsize),
         *obuf = malloc(12 * TW * a[0].view.itemsize);
    if (!ibuf || !obuf) {
        free(ibuf);
        free(obuf);
        PyErr_NoMemory();
        goto out;
    }
    const void *bias = a[5].held ? a[5].view.buf : NULL;
    const Py_ssize_t sbias = a[5].held ? a[5].st[0] : 0;
    const int wide = WIDE_REGISTERS(narrow);
    BY_DTYPE(kind, chunks, a[0].view.buf, a[1].view.buf, a[2].view.buf, bias, a[0].st, a[2].st,
                           sbias, C, M, a[1].st[1], a[1].st[0], hlim, wlim, top, left, OH, OW, TH,
                           TW, first, rows, chunk, a[3].view.buf, a[3].st[0], a[3].st[1],
                           a[4].view.buf, a[4].st[0], a[4].st[1], wide, ibuf, obuf);
    free(ibuf);
    free(obuf);
out:
    return finish(a, 6);
}

static PyMethodDef methods[] = {
    METHOD(input_tiles,
     "input_tiles(x, v, *, top=0, left=0, bottom=0, right=0, first_row=0): v[4a + b, c, t] =\n"
     "(B^T d_t B)[a, b] for the 4 x 4 tiles d_t (stride 2) of x (B, C, H, W) padded by top,\n"
     "bottom, left, right (negative: cropped), into v (16, C, T); T / TW tile rows from\n"
     "first_row of the B TH (sample, tile row) pairs, TH = ceil(OH / 2), TW = ceil(OW / 2)."),
    METHOD(output_tiles,
     "output_tiles(m, out, bias=None, *, first_row=0): out's 2 x 2 blocks A^T m_t A + bias\n"
     "from m (16, M, T) into out (B, M, OH, OW), for T / TW tile rows from first_row; outputs\n"
     "at or past (OH, OW) dropped."),
    METHOD(kernel_tiles,
     "kernel_tiles(w, u, *, rotated=False): u[4a + b, o, c] = (G w[o, c] G^T)[a, b] for w\n"
     "(M, C, 3, 3), into u (16, M, C), computed in double; rotated: that of w[o, c] rotated by\n"
     "180 degrees, (G w G^T)[p(a), p(b)] with p = (3, 1, 2, 0) (G J = P G)."),
    METHOD(forward_tiles,
     "forward_tiles(x, ut, out, bias=None, *, v, m, top=0, left=0, bottom=0, right=0,\n"
     "first_row=0, rows, chunk_rows, narrow=False): the tile rows first_row .. + rows of the\n"
     "3x3 correlation of x (B, C, H, W), padded, into out (B, M, OH, OW) (+ bias), in chunks\n"
     "of chunk_rows tile rows: each gathered into v (16, C, Tp), multiplied by the transposed\n"
     "kernel tiles ut (16, C, Mp >= M rounded up to 8, zero past M) into m (16, M, Tp), and\n"
     "written; Tp >= chunk_rows TW rounded up to 16. narrow: the tiles of CPUs without\n"
     "AVX-512."),
    {NULL, NULL, 0, NULL},
};

MODULE(_winogradc, "Winograd F(2x2, 3x3) transforms (see _winograd.py).", methods)
