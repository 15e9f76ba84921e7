/*
 * gemm.c: C = alpha * op(A) * op(B) + beta * C in single precision, row-major,
 * the product behind dense and convolution layers and their gradients.
 *
 * The structure is the one of GotoBLAS and BLIS. The k dimension is cut into
 * blocks of at most KC, n into blocks of NC and m into blocks of MC. A
 * micro-kernel multiplies an MR x kc sliver of A by a kc x NR sliver of B into
 * MR x NR accumulators held in registers, then stores alpha * acc + beta * C.
 * A is always packed, an MC x kc block of slivers that every B sliver reuses
 * (for the small products of training the copy is m * k floats against
 * m * n * k multiply-adds, and it lets the kernel read A with no strides: a
 * sliver's column is MR consecutive floats, zero past the last row). B is
 * packed into a kc x NC panel when more than one m block reuses it (m >
 * MC); otherwise a sliver is read straight from the caller's matrix when
 * its rows are contiguous, and packed one at a time on the stack when B is
 * transposed (or, with AVX2, at a ragged edge). Packing absorbs the
 * transposes.
 *
 * Kernels, chosen at build time (-march=native):
 *  - AVX-512 (F and VL): 8 x 32, 16 zmm accumulators, per step 2 loads of
 *    B and 8 broadcasts of A. Zen 4 runs a zmm FMA as two halves, so this
 *    peaks like AVX2 but with half the instructions, and the 32 registers
 *    leave room. Edge tiles use the same code with fewer rows (1..8) or one
 *    vector; a ragged last vector (nr not a multiple of 16) reads B and
 *    reads and writes C through a lane mask, so an edge sliver of B is read
 *    in place and nothing past column n is touched.
 *  - AVX2 and FMA: 6 x 16, 12 ymm accumulators, 2 loads of B and 6
 *    broadcasts of A per step; edges with fewer rows or one vector of 8,
 *    ragged columns through a copy of the corner.
 *  - elsewhere (or with NNRT_GEMM_PORTABLE) a plain C 4 x 8 kernel that
 *    the compiler keeps in registers and vectorizes.
 * With AVX2 or AVX-512, A * B^T with a narrow C and a long k goes to dot
 * products instead (see use_dot), which need no packing at all.
 *
 * Which path computes C (kernels or dot products) depends on the transposes
 * and sizes alone, and within a path every element of C is the same sequence
 * of floating-point operations wherever it falls in a tile and whether its
 * slivers were packed or not (the k blocks depend on k alone; each sums in k
 * order, from zero, with one FMA per step). Large products are split over
 * the thread pool into tasks of whole slivers of rows or columns of C, each
 * packing its own buffers, so C is bitwise the same for every thread count.
 * beta is applied by the store of the first k block (later blocks add);
 * when beta is 0 that store writes C without reading it. The packed buffers
 * come from the heap, sized to the task; without memory a task reads B in
 * place and packs A one sliver at a time on the stack, with the same result.
 * Stack use is about 40 KB with AVX-512 (a B and an A sliver), 20 KB with
 * AVX2.
 *
 * nnrt_sgemm_conv is the same product with B a convolution's column matrix
 * (im2col) that is never built: its slivers are packed straight from the
 * image, always (see "implicit im2col"), with the values the built matrix
 * would have, so C is bitwise nnrt_sgemm's on it. Except: a 3x3 product of
 * stride 1, or its weight gradient, and the same for 5x5, goes to
 * Winograd's algorithm (winograd.c) where nnrt_winograd_pays,
 * nnrt_winograd_pays_dw, nnrt_winograd_pays_5x5 or nnrt_winograd_pays_5x5_dw
 * say so, which rounds differently.
 *
 * Built with NNRT_BLAS_OPENBLAS (make BLAS=openblas), the products go to
 * OpenBLAS instead, with the same API and guarantees (the end of this file);
 * nnrt_sgemm_conv then builds the column matrix for it.
 */
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt.h"

#if defined(__AVX2__) && defined(__FMA__) && !defined(NNRT_GEMM_PORTABLE)
#define GEMM_AVX2 1
#include <immintrin.h>
#if defined(__AVX512F__) && defined(__AVX512VL__)
#define GEMM_AVX512 1
enum { MR = 8, NR = 32 };
#else
#define GEMM_AVX512 0
enum { MR = 6, NR = 16 };
#endif
#else
#define GEMM_AVX2 0
#define GEMM_AVX512 0
enum { MR = 4, NR = 8 };
#endif

/* Cache blocks, for Zen 3/4 (32 KB L1d, 512 KB-1 MB L2): a kc x NR B sliver
 * (16 KB; 32 KB with AVX-512) stays in L1 while the MC x kc A block (144 KB)
 * streams from L2; the kc x NC B panel (1 MB) is reused by every m block
 * from L2/L3. On a Zen 4, KC 192-384, MC 72-192 and NC 512-2048 all measured
 * within noise of these with AVX2; with AVX-512, KC 128 and 192 were slower
 * on 1024^3. The blocks are evened out (k = 300 is two blocks of 150, not
 * 256 + 44). */
enum { KC = 256, MC = 144, NC = 1024 };
_Static_assert(MC % MR == 0 && NC % NR == 0, "blocks hold whole slivers");

/* A is always packed (the kernels read only packed A slivers); B is packed
 * when more than one m block reuses it. Products of fewer flops than
 * PAR_FLOPS stay on the calling thread: waking a worker costs more. */
#define PAR_FLOPS 4e6
enum { TASKS_PER_THREAD = 4 };	/* tasks per thread: a slow thread takes fewer */

/* op(X)(i, j) = x[i * rs + j * cs]: a view that hides the transpose */
typedef struct View {
	const float *p;
	int64_t rs, cs;
} View;

typedef struct Gemm Gemm;

static View view(const float *p, int64_t ld, int trans)
{
	View v = {p, trans ? 1 : ld, trans ? ld : 1};
	return v;
}

/* What one kernel call computes: count tiles of mr x nr stacked down C, tile
 * q from the packed A sliver at a + q * MR * kc (element (i, p) at
 * [p * MR + i], zero past mr) and the one B sliver (element (p, j) at
 * b[p * bs + j]; packed: bs = NR), stored at c + q * mr * ldc. One call per
 * column of tiles keeps the B sliver in L1 and the call off the inner loop. */
typedef struct Strip {
	const float *a;
	int64_t count;
	const float *b;
	int64_t bs;
	float *c;
	int64_t ldc, mr, nr;
	float alpha, beta;
} Strip;

typedef void KernelFn(int64_t kc, const Strip *s);

#if GEMM_AVX512

/* the lanes of vector v (16 columns from 16 * v) that fall inside nr columns */
static inline __attribute__((always_inline)) __mmask16 lanes(int64_t nr, int v)
{
	int64_t left = nr - 16 * v;
	return left >= 16 ? (__mmask16)0xffff : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* R x 16V accumulators (R <= MR, V <= 2): per step, V vectors of B and R
 * broadcasts of A. With ragged (nr not 16V), the last vector of B is read
 * and C's stored through a mask, so nothing past column nr is touched and
 * an edge sliver needs no copy. The unroll pragmas flatten acc so it lives
 * in registers. */
static inline __attribute__((always_inline)) void kernel_body(int64_t kc, const Strip *s, int R, int V, int ragged)
{
	const float *a = s->a;
	float *c = s->c;
	int64_t bs = s->bs, ldc = s->ldc;
	float alpha = s->alpha, beta = s->beta;
	__mmask16 mask[2] = {lanes(s->nr, 0), lanes(s->nr, 1)};
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	for (int64_t q = 0; q < s->count; q++, a += MR * kc, c += R * ldc) {
		__m512 acc[MR][2];
#pragma GCC unroll 8
		for (int i = 0; i < R; i++)
#pragma GCC unroll 2
			for (int v = 0; v < V; v++)
				acc[i][v] = _mm512_setzero_ps();
		const float *ap = a, *bp = s->b;
#pragma GCC unroll 2
		for (int64_t p = 0; p < kc; p++, ap += MR, bp += bs) {
			__m512 bv[2];
#pragma GCC unroll 2
			for (int v = 0; v < V; v++)
				bv[v] = ragged && v == V - 1 ? _mm512_maskz_loadu_ps(mask[v], bp + 16 * v)
							     : _mm512_loadu_ps(bp + 16 * v);
#pragma GCC unroll 8
			for (int i = 0; i < R; i++) {
				__m512 x = _mm512_set1_ps(ap[i]);
#pragma GCC unroll 2
				for (int v = 0; v < V; v++)
					acc[i][v] = _mm512_fmadd_ps(x, bv[v], acc[i][v]);
			}
		}
		/* alpha * acc + beta * C; beta 0 reads nothing */
		float *ci = c;
#pragma GCC unroll 8
		for (int i = 0; i < R; i++, ci += ldc)
#pragma GCC unroll 2
			for (int v = 0; v < V; v++) {
				__m512 x = acc[i][v];
				int part = ragged && v == V - 1;
				if (alpha != 1.0f)
					x = _mm512_mul_ps(x, va);
				if (beta != 0.0f) {
					__m512 old = part ? _mm512_maskz_loadu_ps(mask[v], ci + 16 * v)
							  : _mm512_loadu_ps(ci + 16 * v);
					x = beta == 1.0f ? _mm512_add_ps(old, x) : _mm512_fmadd_ps(vb, old, x);
				}
				if (part)
					_mm512_mask_storeu_ps(ci + 16 * v, mask[v], x);
				else
					_mm512_storeu_ps(ci + 16 * v, x);
			}
	}
}

#define KERNEL(R, V)                                                      \
	static void kernel_##R##x##V(int64_t kc, const Strip *s)          \
	{                                                                 \
		kernel_body(kc, s, R, V, 0);                              \
	}                                                                 \
	static void kernel_##R##x##V##_ragged(int64_t kc, const Strip *s) \
	{                                                                 \
		kernel_body(kc, s, R, V, 1);                              \
	}
KERNEL(1, 1) KERNEL(2, 1) KERNEL(3, 1) KERNEL(4, 1) KERNEL(5, 1) KERNEL(6, 1) KERNEL(7, 1) KERNEL(8, 1)
KERNEL(1, 2) KERNEL(2, 2) KERNEL(3, 2) KERNEL(4, 2) KERNEL(5, 2) KERNEL(6, 2) KERNEL(7, 2) KERNEL(8, 2)
_Static_assert(MR == 8 && NR == 32, "one kernel per tile shape");

/* [ragged][vectors - 1][rows - 1]: the kernel that computes exactly mr x nr tiles */
static KernelFn *const kernels[2][2][MR] = {
	{{kernel_1x1, kernel_2x1, kernel_3x1, kernel_4x1, kernel_5x1, kernel_6x1, kernel_7x1, kernel_8x1},
	 {kernel_1x2, kernel_2x2, kernel_3x2, kernel_4x2, kernel_5x2, kernel_6x2, kernel_7x2, kernel_8x2}},
	{{kernel_1x1_ragged, kernel_2x1_ragged, kernel_3x1_ragged, kernel_4x1_ragged, kernel_5x1_ragged,
	  kernel_6x1_ragged, kernel_7x1_ragged, kernel_8x1_ragged},
	 {kernel_1x2_ragged, kernel_2x2_ragged, kernel_3x2_ragged, kernel_4x2_ragged, kernel_5x2_ragged,
	  kernel_6x2_ragged, kernel_7x2_ragged, kernel_8x2_ragged}},
};

static void kernel(int64_t kc, const Strip *s)
{
	kernels[s->nr % 16 != 0][s->nr > 16][s->mr - 1](kc, s);
}

/* the masks read no column past a sliver's edge: any B sliver can be read in place */
static int whole_b_sliver(int64_t nr)
{
	(void)nr;
	return 1;
}

#elif GEMM_AVX2

/* alpha * acc + beta * C into R rows of V vectors of C; beta 0 reads nothing */
static inline __attribute__((always_inline)) void store_tile(float *c, int64_t ldc, __m256 acc[MR][2], int R,
							 int V, float alpha, float beta)
{
	__m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
	for (int i = 0; i < R; i++)
#pragma GCC unroll 2
		for (int v = 0; v < V; v++) {
			__m256 x = acc[i][v];
			float *ci = c + i * ldc + 8 * v;
			if (alpha != 1.0f)
				x = _mm256_mul_ps(x, va);
			if (beta == 1.0f)
				x = _mm256_add_ps(_mm256_loadu_ps(ci), x);
			else if (beta != 0.0f)
				x = _mm256_fmadd_ps(vb, _mm256_loadu_ps(ci), x);
			_mm256_storeu_ps(ci, x);
		}
}

/* R x 8V accumulators (R <= 6, V <= 2): per step, V vectors of B and R
 * broadcasts of A. The unroll pragmas flatten acc so it lives in registers. */
static inline __attribute__((always_inline)) void kernel_body(int64_t kc, const Strip *s, int R, int V)
{
	const float *a = s->a;
	float *c = s->c;
	int64_t bs = s->bs, ldc = s->ldc;
	for (int64_t q = 0; q < s->count; q++, a += MR * kc, c += R * ldc) {
		__m256 acc[MR][2];
#pragma GCC unroll 6
		for (int i = 0; i < R; i++)
#pragma GCC unroll 2
			for (int v = 0; v < V; v++)
				acc[i][v] = _mm256_setzero_ps();
		const float *ap = a, *bp = s->b;
#pragma GCC unroll 2
		for (int64_t p = 0; p < kc; p++, ap += MR, bp += bs) {
			__m256 bv[2];
#pragma GCC unroll 2
			for (int v = 0; v < V; v++)
				bv[v] = _mm256_loadu_ps(bp + 8 * v);
#pragma GCC unroll 6
			for (int i = 0; i < R; i++) {
				__m256 x = _mm256_broadcast_ss(ap + i);
#pragma GCC unroll 2
				for (int v = 0; v < V; v++)
					acc[i][v] = _mm256_fmadd_ps(x, bv[v], acc[i][v]);
			}
		}
		if (s->nr == 8 * V) {
			store_tile(c, ldc, acc, R, V, s->alpha, s->beta);
			continue;
		}
		/* fewer columns than the vectors hold: the same arithmetic on a copy
		 * of the corner, then the corner back */
		float buf[MR * NR] = {0};
		if (s->beta != 0.0f)
			for (int i = 0; i < R; i++)
				memcpy(buf + i * NR, c + i * ldc, (size_t)s->nr * sizeof *buf);
		store_tile(buf, NR, acc, R, V, s->alpha, s->beta);
		for (int i = 0; i < R; i++)
			memcpy(c + i * ldc, buf + i * NR, (size_t)s->nr * sizeof *buf);
	}
}

#define KERNEL(R, V)                                         \
	static void kernel_##R##x##V(int64_t kc, const Strip *s) \
	{                                                        \
		kernel_body(kc, s, R, V);                        \
	}
KERNEL(1, 1) KERNEL(2, 1) KERNEL(3, 1) KERNEL(4, 1) KERNEL(5, 1) KERNEL(6, 1)
KERNEL(1, 2) KERNEL(2, 2) KERNEL(3, 2) KERNEL(4, 2) KERNEL(5, 2) KERNEL(6, 2)

/* [vectors - 1][rows - 1]: the kernel that computes exactly mr x nr tiles
 * (nr rounded up to 8 or 16) */
static KernelFn *const kernels[2][MR] = {
	{kernel_1x1, kernel_2x1, kernel_3x1, kernel_4x1, kernel_5x1, kernel_6x1},
	{kernel_1x2, kernel_2x2, kernel_3x2, kernel_4x2, kernel_5x2, kernel_6x2},
};

static void kernel(int64_t kc, const Strip *s)
{
	kernels[s->nr > 8][s->mr - 1](kc, s);
}

/* a B sliver can be read in place when the kernel reads no column past its edge */
static int whole_b_sliver(int64_t nr)
{
	return nr == NR || nr == 8;
}

#endif

#if GEMM_AVX2
/* ---- dot products, for A * B^T with few outputs and a long k ----
 * Both operands are then contiguous in k, and a tile of DR x DC outputs
 * keeps DR x DC vectors of 8 partial sums (lane l sums the p = l mod 8; 16
 * lanes with AVX-512 from k = DOT16_K on), so
 * nothing is packed and no lane is wasted on a narrow C. Per 8 steps of k:
 * DR + DC loads and DR x DC FMAs. A tile holds exactly its mr x nr outputs. */
#if GEMM_AVX512
enum { DR = 4, DC = 4 };	/* 16 accumulators of the 32 registers */
#else
enum { DR = 3, DC = 4 };
#endif

/* where a dot tile's sums go: C[mr x nr] = alpha * sum + beta * C */
typedef struct Tile {
	float *c;
	int64_t ldc, mr, nr;
	float alpha, beta;
} Tile;

/* a dot tile's rows of B, at row[j] + p; for an implicit column matrix (a
 * weight gradient, nnrt_sgemm_conv) in[j][p / 16] holds the lanes p .. p + 15
 * that fall inside the image (the others are 0: the row pointer may lie
 * outside the image there, and masked lanes read nothing, AVX2's maskload
 * as AVX-512's) */
typedef struct DotB {
	const float *row[DC];
	const uint16_t *in[DC];
} DotB;

/* v[0..4) summed across lanes: (sum v0, sum v1, sum v2, sum v3) */
static inline __attribute__((always_inline)) __m128 sum4(const __m256 v[DC])
{
	__m256 s = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
	return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* alpha * x + beta * c into c[0..nr), nr <= 4; beta 0 reads nothing */
static inline __attribute__((always_inline)) void store4(float *c, int64_t nr, __m128 x, float alpha, float beta)
{
	float part[DC] = {0};
	float *d = nr == DC ? c : part;
	if (d == part && beta != 0.0f)
		memcpy(part, c, (size_t)nr * sizeof *part);
	if (alpha != 1.0f)
		x = _mm_mul_ps(x, _mm_set1_ps(alpha));
	if (beta == 1.0f)
		x = _mm_add_ps(_mm_loadu_ps(d), x);
	else if (beta != 0.0f)
		x = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_loadu_ps(d), x);
	_mm_storeu_ps(d, x);
	if (d == part)
		memcpy(c, part, (size_t)nr * sizeof *part);
}

#if GEMM_AVX512
/* the two 8-lane halves of v added */
static inline __attribute__((always_inline)) __m256 halves(__m512 v)
{
	return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* dot_body's product with 16 steps of k per vector, the last k % 16 through
 * masked loads: half the loads and loop steps, for a dearer sum at the end
 * (measured: faster from k = 256 on, slower at k = 128) */
enum { DOT16_K = 256 };
static inline __attribute__((always_inline)) void dot16_body(int64_t k, const float *a, int64_t lda, const DotB *b,
							   const Tile *t, int R, int Cn, int implicit)
{
	__m512 acc[DR][DC];
#pragma GCC unroll 4
	for (int i = 0; i < DR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < DC; j++)
			acc[i][j] = _mm512_setzero_ps();
	for (int64_t p = 0; p < k; p += 16) {
		__mmask16 mask = k - p >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k - p)) - 1);
		__m512 av[DR], bv[DC];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			av[i] = _mm512_maskz_loadu_ps(mask, a + i * lda + p);
#pragma GCC unroll 4
		for (int j = 0; j < Cn; j++)
			bv[j] = _mm512_maskz_loadu_ps(implicit ? mask & b->in[j][p >> 4] : mask, b->row[j] + p);
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
#pragma GCC unroll 4
			for (int j = 0; j < Cn; j++)
				acc[i][j] = _mm512_fmadd_ps(av[i], bv[j], acc[i][j]);
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		__m256 h[DC];
#pragma GCC unroll 4
		for (int j = 0; j < DC; j++)
			h[j] = halves(acc[i][j]);
		store4(t->c + i * t->ldc, Cn, sum4(h), t->alpha, t->beta);
	}
}
#endif

/* C[R x Cn] = alpha * A[R x k] B[Cn x k]^T + beta * C, rows of A at a + i * lda,
 * of B as DotB says; the last k % 8 through masked loads */
static inline __attribute__((always_inline)) void dot_body(int64_t k, const float *a, int64_t lda, const DotB *b,
							   const Tile *t, int R, int Cn, int implicit)
{
	__m256 acc[DR][DC];
#pragma GCC unroll 4
	for (int i = 0; i < DR; i++)
#pragma GCC unroll 4
		for (int j = 0; j < DC; j++)
			acc[i][j] = _mm256_setzero_ps();
	for (int64_t p = 0; p < k; p += 8) {
		__m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(k - p < 8 ? k - p : 8)),
						  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
		__m256 av[DR], bv[DC];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			av[i] = k - p >= 8 ? _mm256_loadu_ps(a + i * lda + p) : _mm256_maskload_ps(a + i * lda + p, mask);
#pragma GCC unroll 4
		for (int j = 0; j < Cn; j++) {
			if (implicit) {
				unsigned in = (unsigned)(b->in[j][p >> 4] >> (p & 8)) & (k - p >= 8 ? 0xffu : (1u << (k - p)) - 1);
#if GEMM_AVX512
				bv[j] = _mm256_maskz_loadu_ps((__mmask8)in, b->row[j] + p);
#else
				/* lane l loads when bit l of in is set */
				__m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
				__m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)in), bit), bit);
				bv[j] = _mm256_maskload_ps(b->row[j] + p, on);
#endif
				continue;
			}
			bv[j] = k - p >= 8 ? _mm256_loadu_ps(b->row[j] + p) : _mm256_maskload_ps(b->row[j] + p, mask);
		}
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
#pragma GCC unroll 4
			for (int j = 0; j < Cn; j++)
				acc[i][j] = _mm256_fmadd_ps(av[i], bv[j], acc[i][j]);
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		store4(t->c + i * t->ldc, Cn, sum4(acc[i]), t->alpha, t->beta);
}

typedef void DotFn(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t);

#if GEMM_AVX512
#define DOT(R, C)                                                                                          \
	static void dot_##R##x##C(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t)     \
	{                                                                                                   \
		dot_body(k, a, lda, b, t, R, C, 0);                                                         \
	}                                                                                                   \
	static void dot16_##R##x##C(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t)   \
	{                                                                                                   \
		dot16_body(k, a, lda, b, t, R, C, 0);                                                       \
	}                                                                                                   \
	static void dotc_##R##x##C(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t)    \
	{                                                                                                   \
		dot_body(k, a, lda, b, t, R, C, 1);                                                         \
	}                                                                                                   \
	static void dot16c_##R##x##C(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t)  \
	{                                                                                                   \
		dot16_body(k, a, lda, b, t, R, C, 1);                                                       \
	}
#else
#define DOT(R, C)                                                                                          \
	static void dot_##R##x##C(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t)     \
	{                                                                                                   \
		dot_body(k, a, lda, b, t, R, C, 0);                                                         \
	}                                                                                                   \
	static void dotc_##R##x##C(int64_t k, const float *a, int64_t lda, const DotB *b, const Tile *t)    \
	{                                                                                                   \
		dot_body(k, a, lda, b, t, R, C, 1);                                                         \
	}
#endif
DOT(1, 1) DOT(1, 2) DOT(1, 3) DOT(1, 4) DOT(2, 1) DOT(2, 2) DOT(2, 3) DOT(2, 4)
DOT(3, 1) DOT(3, 2) DOT(3, 3) DOT(3, 4)
#if GEMM_AVX512
DOT(4, 1) DOT(4, 2) DOT(4, 3) DOT(4, 4)
#endif

#define DOT_TABLE(name) {                                                       \
	{name##_1x1, name##_1x2, name##_1x3, name##_1x4},                       \
	{name##_2x1, name##_2x2, name##_2x3, name##_2x4},                       \
	{name##_3x1, name##_3x2, name##_3x3, name##_3x4},                       \
	DOT_ROW4(name)                                                          \
}
#if GEMM_AVX512
#define DOT_ROW4(name) {name##_4x1, name##_4x2, name##_4x3, name##_4x4},
static DotFn *const dots[2][2][DR][DC] = {	/* [implicit][16 lanes] */
	{DOT_TABLE(dot), DOT_TABLE(dot16)},
	{DOT_TABLE(dotc), DOT_TABLE(dot16c)},
};
#else
#define DOT_ROW4(name)
static DotFn *const dots[2][1][DR][DC] = {{DOT_TABLE(dot)}, {DOT_TABLE(dotc)}};
#endif

/* C[i0 .. i1, j0 .. j1] by dot-product tiles; A not transposed, B transposed
 * or an implicit column matrix (g->rows) */
static void dot_block(const Gemm *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1);

/* dot products pay for A * B^T when C is narrow, small or has few rows, and
 * k is long enough to fill the vectors. Few rows: a convolution's weight
 * gradient per sample, where packing B^T costs as much as the products (1
 * thread, us per product, dot against packed: AVX-512 8 x 144 x 1024 49 /
 * 96, 16 x 144 x 784 71 / 79, 32 x 288 x 256 101 / 79; AVX2 8 x 144 x 1024
 * 64 / 90, 16 x 144 x 784 102 / 73). MR and NR are multiples of DR and DC,
 * so the tiles are the same however the threads split C. */
_Static_assert(MR % DR == 0 && NR % DC == 0, "thread splits keep the dot tiles");
enum { DOT_ROWS = GEMM_AVX512 ? 16 : 8 };
static int use_dot(int transa, int transb, int64_t m, int64_t n, int64_t k)
{
	return !transa && transb && k >= 32 && (n <= NR || m * n <= 1024 || m <= DOT_ROWS);
}

#else

/* The portable kernel relies on the compiler keeping MR x NR floats in
 * registers and vectorizing over NR; 4 x 8 fits the 16 SSE registers of
 * baseline x86-64. At -O2 gcc keeps acc in memory unless the loops are
 * flattened. Rows past mr (zero in the packed sliver) are computed, not stored. */
static void kernel(int64_t kc, const Strip *s)
{
	const float *a = s->a;
	float *c = s->c;
	for (int64_t q = 0; q < s->count; q++, a += MR * kc) {
		float acc[MR][NR] = {{0}};
		const float *ap = a, *bp = s->b;
		for (int64_t p = 0; p < kc; p++, ap += MR, bp += s->bs) {
#pragma GCC unroll 16
			for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
				for (int j = 0; j < NR; j++)
					acc[i][j] += ap[i] * bp[j];
		}
		for (int64_t i = 0; i < s->mr; i++, c += s->ldc) {
			if (s->beta == 0.0f)
				for (int64_t j = 0; j < s->nr; j++)
					c[j] = s->alpha * acc[i][j];
			else if (s->beta == 1.0f)
				for (int64_t j = 0; j < s->nr; j++)
					c[j] += s->alpha * acc[i][j];
			else
				for (int64_t j = 0; j < s->nr; j++)
					c[j] = s->alpha * acc[i][j] + s->beta * c[j];
		}
	}
}

static int whole_b_sliver(int64_t nr)
{
	return nr == NR;
}

static int use_dot(int transa, int transb, int64_t m, int64_t n, int64_t k)
{
	(void)transa, (void)transb, (void)m, (void)n, (void)k;
	return 0;
}

#endif

/* ---- packing ---- */

#if GEMM_AVX2
/* r[0..8) := its 8 x 8 transpose */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
	__m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
	__m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
	__m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
	__m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
	__m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
	__m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
	__m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
	__m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
	r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
	r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
	r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
	r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
	r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
	r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
	r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
	r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

/* Rows [i0, i0 + mr) and columns [p0, p0 + kc) of op(A) into dst[kc][MR],
 * zero past mr. With AVX2, a transposed A (its mr rows contiguous at each p)
 * takes one masked load per p; rows contiguous in p go 8 columns at a time
 * through a transpose. Each store is 8 floats: with MR = 6 it spills 2 past
 * its 6, which the next store (or the next sliver, or the buffer's slack)
 * takes. */
static void pack_a_sliver(View a, int64_t i0, int64_t p0, int64_t mr, int64_t kc, float *dst)
{
	const float *src = a.p + i0 * a.rs + p0 * a.cs;
	int64_t p = 0;
#if GEMM_AVX2
	if (a.rs == 1) {
		/* A transposed: the mr rows are contiguous at each p, one masked load */
		__m256i rows = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)mr),
						  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
		for (; p < kc; p++)
			_mm256_storeu_ps(dst + p * MR, _mm256_maskload_ps(src + p * a.cs, rows));
		return;
	}
	if (a.cs == 1)
		for (; p + 8 <= kc; p += 8) {
			__m256 r[8];
#pragma GCC unroll 8
			for (int i = 0; i < 8; i++)
				r[i] = i < mr ? _mm256_loadu_ps(src + i * a.rs + p) : _mm256_setzero_ps();
			transpose8(r);
#pragma GCC unroll 8
			for (int q = 0; q < 8; q++)
				_mm256_storeu_ps(dst + (p + q) * MR, r[q]);
		}
#endif
	for (; p < kc; p++)
		for (int64_t i = 0; i < MR; i++)
			dst[p * MR + i] = i < mr ? src[i * a.rs + p * a.cs] : 0.0f;
}

/* the mc x kc block of op(A) at (i0, p0), sliver after sliver */
static void pack_a(View a, int64_t i0, int64_t p0, int64_t mc, int64_t kc, float *dst)
{
	for (int64_t is = 0; is < mc; is += MR, dst += kc * MR)
		pack_a_sliver(a, i0 + is, p0, mc - is < MR ? mc - is : MR, kc, dst);
}

/* Rows [p0, p0 + kc) and columns [j0, j0 + nr) of op(B) into dst[kc][NR],
 * zero past nr. A transposed B (columns contiguous in p) goes through 8 x 8
 * transposes with AVX2. */
static void pack_b_sliver(View b, int64_t p0, int64_t j0, int64_t kc, int64_t nr, float *dst)
{
	const float *src = b.p + p0 * b.rs + j0 * b.cs;
	int64_t p = 0;
	if (nr == NR && b.cs == 1) {
		for (; p < kc; p++)
			memcpy(dst + p * NR, src + p * b.rs, NR * sizeof *dst);
		return;
	}
#if GEMM_AVX2
	if (b.cs == 1) {
		/* an edge: masked loads read nothing past column nr */
#if GEMM_AVX512
		__mmask16 lo = lanes(nr, 0), hi = lanes(nr, 1);
		for (; p < kc; p++) {
			_mm512_storeu_ps(dst + p * NR, _mm512_maskz_loadu_ps(lo, src + p * b.rs));
			_mm512_storeu_ps(dst + p * NR + 16, _mm512_maskz_loadu_ps(hi, src + p * b.rs + 16));
		}
#else
		__m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
		__m256i lo = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr), lane);
		__m256i hi = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)nr - 8), lane);
		for (; p < kc; p++) {
			_mm256_storeu_ps(dst + p * NR, _mm256_maskload_ps(src + p * b.rs, lo));
			_mm256_storeu_ps(dst + p * NR + 8, _mm256_maskload_ps(src + p * b.rs + 8, hi));
		}
#endif
		return;
	}
	if (b.rs == 1)
		for (; p + 8 <= kc; p += 8)
#pragma GCC unroll 4
			for (int h = 0; h < NR / 8; h++) {
				__m256 r[8];
#pragma GCC unroll 8
				for (int j = 0; j < 8; j++)
					r[j] = h * 8 + j < nr ? _mm256_loadu_ps(src + (h * 8 + j) * b.cs + p)
							      : _mm256_setzero_ps();
				transpose8(r);
#pragma GCC unroll 8
				for (int q = 0; q < 8; q++)
					_mm256_storeu_ps(dst + (p + q) * NR + h * 8, r[q]);
			}
#endif
	for (; p < kc; p++)
		for (int64_t j = 0; j < NR; j++)
			dst[p * NR + j] = j < nr ? src[p * b.rs + j * b.cs] : 0.0f;
}

/* ---- implicit im2col: B slivers packed straight from an image ----
 * nnrt_sgemm_conv's B is the column matrix of a convolution, never built:
 * each sliver is packed from the image with exactly the values the built B
 * would give pack_b_sliver, so the kernels, blocks and thread split (and so
 * C, bitwise) are nnrt_sgemm's. A sliver's columns are cut into runs that
 * lie in one output row; with unit stride along W a run is a span of one
 * image row, read by masked loads (lanes outside the image read nothing and
 * are 0) and combined in registers row by row (AVX-512: pack_taps; AVX2:
 * pack_rows_unit); otherwise run by run (pack_run_body): a memcpy or memset
 * call per span costs more than the span when the image is small. A weight
 * gradient's B^T is read by the dot products instead (dot_tables). */

/* per call, stride 1 along W: row p of the column matrix starts off[p]
 * floats into the image, at tap tap[p] = ky kw + kx (pack_taps) */
typedef struct ConvTaps {
	int64_t *off;
	int *tap;
} ConvTaps;

struct Gemm {
	int64_t m, n, k, kc;		/* kc: the k block, a function of k alone */
	float alpha, beta;
	View a, b;
	const int64_t *conv;		/* B is x's column matrix for this geometry (else NULL) */
	const float *x;
	ConvTaps taps;			/* for conv, when allocated */
	const float **rows;		/* a weight gradient's implicit B^T by dot products: its rows, */
	const uint16_t **in;		/* and their lanes inside the image (DotB) */
	float *c;
	int64_t ldc;
	int pack_b;			/* decided once per call, for every thread alike */
	int dot;			/* dot products (use_dot) instead of the kernels */
	int split_n;			/* tasks are slivers of columns (else of rows) */
	int64_t units, grain;		/* slivers along the split, slivers per task */
	atomic_llong next;		/* the next task to claim */
};

#if GEMM_AVX2
static void dot_block(const Gemm *g, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
	int implicit = g->rows != NULL, wide = 0;
#if GEMM_AVX512
	wide = g->k >= DOT16_K;
#endif
	DotFn *const(*table)[DC] = dots[implicit][wide];
	for (int64_t i = i0; i < i1; i += DR)
		for (int64_t j = j0; j < j1; j += DC) {
			Tile t = {g->c + i * g->ldc + j, g->ldc, i1 - i < DR ? i1 - i : DR, j1 - j < DC ? j1 - j : DC,
				  g->alpha, g->beta};
			DotB b;
			for (int64_t q = 0; q < t.nr; q++) {
				b.row[q] = implicit ? g->rows[j + q] : g->b.p + (j + q) * g->b.cs;
				b.in[q] = implicit ? g->in[j + q] : NULL;
			}
			table[t.mr - 1][t.nr - 1](g->k, g->a.p + i * g->a.rs, g->a.rs, &b, &t);
		}
}
#endif

/* the columns [off, off + len) of a sliver: output row oy, from column ox0;
 * iy0 = oy * SH - PH and ix0 = ox0 * SW - PW, before the kernel's offsets */
typedef struct Run {
	int64_t iy0, ix0, len, off;
} Run;

/* columns [j0, j0 + nr) cut at the ends of output rows; returns the count */
static int conv_runs(const int64_t *geom, int64_t j0, int64_t nr, Run runs[NR])
{
	int64_t ow = geom[NNRT_CONV_OW], oy = j0 / ow, ox = j0 % ow;
	int count = 0;
	for (int64_t off = 0; off < nr; oy++, ox = 0) {
		int64_t len = ow - ox < nr - off ? ow - ox : nr - off;
		runs[count++] = (Run){oy * geom[NNRT_CONV_SH] - geom[NNRT_CONV_PH],
				      ox * geom[NNRT_CONV_SW] - geom[NNRT_CONV_PW], len, off};
		off += len;
	}
	return count;
}

/* A span: dst[l] := src[l] for the lanes l < len that a SpanMask holds (the
 * columns inside the image), else 0, len <= NR. The mask depends on the
 * image column alone, so a run computes it once per kx. */
#if GEMM_AVX512
typedef uint32_t SpanMask;

/* lanes l < len with 0 <= ix + l < w */
static inline __attribute__((always_inline)) SpanMask span_mask(int64_t ix, int64_t len, int64_t w)
{
	int64_t lo = ix < 0 ? -ix : 0, hi = w - ix < len ? w - ix : len;
	return hi <= lo ? 0 : (hi >= 32 ? ~0u : (1u << hi) - 1) & ~((1u << lo) - 1);
}

/* masked loads (masked lanes never fault), and full stores where len allows */
static inline __attribute__((always_inline)) void copy_masked(float *dst, const float *src, SpanMask in, int64_t len)
{
	uint32_t keep = len >= 32 ? ~0u : (1u << len) - 1;
	__m512 v = _mm512_maskz_loadu_ps((__mmask16)in, src);
	if (len >= 16)
		_mm512_storeu_ps(dst, v);
	else
		_mm512_mask_storeu_ps(dst, (__mmask16)keep, v);
	if (len <= 16)
		return;
	v = _mm512_maskz_loadu_ps((__mmask16)(in >> 16), src + 16);
	if (len == 32)
		_mm512_storeu_ps(dst + 16, v);
	else
		_mm512_mask_storeu_ps(dst + 16, (__mmask16)(keep >> 16), v);
}
#else
/* scalar; AVX2 packs unit spans with pack_rows_unit and uses these only
 * for the zeros past nr of strided slivers */
typedef struct SpanMask {
	int64_t lo, hi;
} SpanMask;

static inline SpanMask span_mask(int64_t ix, int64_t len, int64_t w)
{
	SpanMask m = {ix < 0 ? -ix : 0, w - ix < len ? w - ix : len};
	return m;
}

/* one loop with the test inside: gcc turns a plain copy or fill loop into a
 * memcpy or memset call, dearer than these few floats */
static inline void copy_masked(float *dst, const float *src, SpanMask in, int64_t len)
{
	for (int64_t l = 0; l < len; l++)
		dst[l] = l >= in.lo && l < in.hi ? src[l] : 0.0f;
}
#endif

/* dst[l] := row[ix + l * sw] inside the image, else 0: strides or dilations along W */
static void copy_strided(float *dst, const float *row, int64_t ix, int64_t sw, int64_t len, int64_t w)
{
	for (int64_t l = 0; l < len; l++, ix += sw)
		dst[l] = (uint64_t)ix < (uint64_t)w ? row[ix] : 0.0f;
}

/* A run's columns of rows [p0, p0 + kc) of the column matrix into dst (rows
 * NR apart), one image row a step: (ci, ky, kx) advance as a counter, with
 * no division per row. unit: stride and dilation 1 along W, so the columns
 * are one span of the image row, whose mask depends on kx alone (tabulated
 * for kernels up to MASKS wide). */
enum { MASKS = 16 };
static inline __attribute__((always_inline)) void pack_run_body(const int64_t *geom, const float *x, const Run *u,
								 int64_t p0, int64_t kc, float *dst, int unit)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int64_t dh = geom[NNRT_CONV_DH], dw = geom[NNRT_CONV_DW], sw = geom[NNRT_CONV_SW];
	int64_t kx = p0 % kw, ky = p0 / kw % kh;
	const float *plane = x + p0 / kw / kh * h * w;
	int64_t iy = u->iy0 + ky * dh, len = u->len;
	SpanMask masks[MASKS], none = span_mask(0, len, 0);
	int tabbed = unit && kw <= MASKS;
	for (int64_t q = 0; tabbed && q < kw; q++)
		masks[q] = span_mask(u->ix0 + q, len, w);
	for (int64_t p = 0; p < kc; p++, dst += NR) {
		int inside = (uint64_t)iy < (uint64_t)h;
		const float *row = inside ? plane + iy * w : plane;
		if (unit) {
			/* a row outside the image has no lane inside */
			SpanMask in = !inside ? none : tabbed ? masks[kx] : span_mask(u->ix0 + kx, len, w);
			copy_masked(dst, row + u->ix0 + kx, in, len);
		} else
			copy_strided(dst, row, u->ix0 + kx * dw, sw, len, inside ? w : 0);
		if (++kx == kw) {
			kx = 0, iy += dh;
			if (++ky == kh)
				ky = 0, iy = u->iy0, plane += h * w;
		}
	}
}

static void pack_run_unit(const int64_t *geom, const float *x, const Run *u, int64_t p0, int64_t kc, float *dst)
{
	pack_run_body(geom, x, u, p0, kc, dst, 1);
}

static void pack_run_strided(const int64_t *geom, const float *x, const Run *u, int64_t p0, int64_t kc, float *dst)
{
	pack_run_body(geom, x, u, p0, kc, dst, 0);
}

#if GEMM_AVX2 && !GEMM_AVX512
/* the lanes l of vector v (8 columns from 8 * v) with lo <= l < hi */
static inline __attribute__((always_inline)) __m256i lanes_in(int64_t lo, int64_t hi, int v)
{
	__m256i l = _mm256_add_epi32(_mm256_set1_epi32(8 * v), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
	return _mm256_and_si256(_mm256_cmpgt_epi32(l, _mm256_set1_epi32((int)lo - 1)),
				_mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), l));
}

/* pack_run_body's unit spans for AVX2, row by row: a store through a mask
 * (vmaskmovps) is microcoded on AMD and made packing slower than im2col.
 * Instead each run's masked load is aimed so that its lanes land on its
 * columns, zero elsewhere, and the runs' loads are ORed into the row's two
 * vectors (exact: the other lanes are +0.0), stored whole; no run covers
 * the columns past nr, so they come out 0. */
static void pack_rows_unit(const int64_t *geom, const float *x, const Run *runs, int count, int64_t p0, int64_t kc,
			   float *dst)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int64_t dh = geom[NNRT_CONV_DH];
	int64_t kx = p0 % kw, ky = p0 / kw % kh;
	const float *plane = x + p0 / kw / kh * h * w;
	for (int64_t p = 0; p < kc; p++, dst += NR) {
		__m256 v0 = _mm256_setzero_ps(), v1 = _mm256_setzero_ps();
		for (int r = 0; r < count; r++) {
			const Run *u = &runs[r];
			int64_t iy = u->iy0 + ky * dh, ix = u->ix0 + kx;
			if ((uint64_t)iy >= (uint64_t)h)
				continue;
			/* the row's columns [lo, hi) are inside the image; column c reads src[c] */
			int64_t lo = u->off + (ix < 0 ? -ix : 0), hi = u->off + (w - ix < u->len ? w - ix : u->len);
			const float *src = plane + iy * w + ix - u->off;
			if (lo < 8 && hi > lo)
				v0 = _mm256_or_ps(v0, _mm256_maskload_ps(src, lanes_in(lo, hi, 0)));
			if (hi > 8 && hi > lo)
				v1 = _mm256_or_ps(v1, _mm256_maskload_ps(src + 8, lanes_in(lo, hi, 1)));
		}
		_mm256_storeu_ps(dst, v0);
		_mm256_storeu_ps(dst + 8, v1);
		if (++kx == kw) {
			kx = 0;
			if (++ky == kh)
				ky = 0, plane += h * w;
		}
	}
}
#endif

#if GEMM_AVX512
/*
 * AVX-512, stride 1 along W: row p of the column matrix reads, for run r,
 * the image at x + off[p] + base[r], where off[p] = ci h w + ky dh w + kx dw
 * (tabulated once per call, nnrt_sgemm_conv) and base[r] = iy0 w + ix0 - the
 * run's first lane; the lanes inside the image depend on the run and the tap
 * (ky, kx) alone, tabulated per sliver. Each run's masked loads merge into
 * the row's two vectors at its own lanes, stored whole. Counting (ci, ky, kx)
 * down the rows instead, and storing run by run through masks, packed a row
 * in about 35 cycles, more than building col in memory took.
 */
enum { TAP_MASKS = 1024 };	/* runs x taps of the mask table */

static inline __attribute__((always_inline)) void pack_taps_body(const float *x, const int64_t *off, const int *tap,
								  const int64_t *base, const uint32_t *mask,
								  int taps, int count, int64_t kc, float *dst)
{
	for (int64_t p = 0; p < kc; p++, dst += NR) {
		const float *row = x + off[p];
		const uint32_t *m = mask + tap[p];
		__m512 v0 = _mm512_setzero_ps(), v1 = _mm512_setzero_ps();
		for (int r = 0; r < count; r++, m += taps) {
			v0 = _mm512_mask_loadu_ps(v0, (__mmask16)*m, row + base[r]);
			v1 = _mm512_mask_loadu_ps(v1, (__mmask16)(*m >> 16), row + base[r] + 16);
		}
		_mm512_storeu_ps(dst, v0);
		_mm512_storeu_ps(dst + 16, v1);
	}
}

/* one or two runs (a sliver within one output row, or across one row's end) unrolled */
static void pack_taps_1(const float *x, const int64_t *off, const int *tap, const int64_t *base, const uint32_t *mask,
			int taps, int64_t kc, float *dst)
{
	pack_taps_body(x, off, tap, base, mask, taps, 1, kc, dst);
}

static void pack_taps_2(const float *x, const int64_t *off, const int *tap, const int64_t *base, const uint32_t *mask,
			int taps, int64_t kc, float *dst)
{
	pack_taps_body(x, off, tap, base, mask, taps, 2, kc, dst);
}

/* false when the tables do not fit: pack_run_body packs the sliver */
static int pack_taps(const Gemm *g, const Run *runs, int count, int64_t p0, int64_t kc, float *dst)
{
	const int64_t *geom = g->conv;
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int taps = (int)(kh * kw);
	if (!g->taps.off || count * taps > TAP_MASKS)
		return 0;
	uint32_t mask[TAP_MASKS], cols[TAP_MASKS];
	int64_t base[NR];
	for (int r = 0; r < count; r++) {
		/* a tap's lanes: the run's columns inside the image at kx, none when row iy is outside */
		const Run *u = &runs[r];
		base[r] = u->iy0 * w + u->ix0 - u->off;
		for (int64_t kx = 0; kx < kw; kx++)
			cols[kx] = span_mask(u->ix0 + kx * geom[NNRT_CONV_DW], u->len, w) << u->off;
		uint32_t *m = mask + r * taps;
		for (int64_t ky = 0, iy = u->iy0; ky < kh; ky++, iy += geom[NNRT_CONV_DH], m += kw)
			for (int64_t kx = 0; kx < kw; kx++)
				m[kx] = (uint64_t)iy < (uint64_t)h ? cols[kx] : 0;
	}
	const int64_t *off = g->taps.off + p0;
	const int *tap = g->taps.tap + p0;
	if (count == 1)
		pack_taps_1(g->x, off, tap, base, mask, taps, kc, dst);
	else if (count == 2)
		pack_taps_2(g->x, off, tap, base, mask, taps, kc, dst);
	else
		pack_taps_body(g->x, off, tap, base, mask, taps, count, kc, dst);
	return 1;
}
#endif

/* Rows [p0, p0 + kc) and columns [j0, j0 + nr) of the column matrix of x
 * into dst[kc][NR], zero past nr: pack_b_sliver's result on the built
 * matrix. Run by run, so a run's fields stay in registers down the rows. */
static void pack_b_conv_sliver(const Gemm *g, int64_t p0, int64_t j0, int64_t kc, int64_t nr, float *dst)
{
	const int64_t *geom = g->conv;
	const float *x = g->x;
	Run runs[NR];
	int count = conv_runs(geom, j0, nr, runs);
	int unit = geom[NNRT_CONV_SW] == 1 && geom[NNRT_CONV_DW] == 1;
#if GEMM_AVX512
	if (geom[NNRT_CONV_SW] == 1 && pack_taps(g, runs, count, p0, kc, dst))
		return;
#elif GEMM_AVX2
	if (unit) {
		pack_rows_unit(geom, x, runs, count, p0, kc, dst);
		return;
	}
#endif
	for (int r = 0; r < count; r++)
		(unit ? pack_run_unit : pack_run_strided)(geom, x, &runs[r], p0, kc, dst + runs[r].off);
	if (nr < NR) {
		/* the columns past nr: a span with no lane inside, so nothing is read */
		SpanMask none = span_mask(0, NR - nr, 0);
		for (int64_t p = 0; p < kc; p++)
			copy_masked(dst + p * NR + nr, dst, none, NR - nr);
	}
}

/* ---- the loops ---- */


/* one thread's buffers: the packed A block (NULL without memory) and B
 * panel (when packed), one B sliver for the slivers packed one at a time,
 * and one A sliver for when the block could not be allocated */
typedef struct Work {
	float *pa, *pb, *sliver, *asliver;
} Work;

/* rows [p0, p0 + kc) and columns [j0, j0 + nr) of B into dst[kc][NR] */
static void pack_sliver(const Gemm *g, int64_t p0, int64_t j0, int64_t kc, int64_t nr, float *dst)
{
	if (g->conv)
		pack_b_conv_sliver(g, p0, j0, kc, nr, dst);
	else
		pack_b_sliver(g->b, p0, j0, kc, nr, dst);
}

/* the kc x nc panel of B at (p0, j0), sliver after sliver */
static void pack_b(const Gemm *g, int64_t p0, int64_t j0, int64_t kc, int64_t nc, float *dst)
{
	for (int64_t js = 0; js < nc; js += NR, dst += kc * NR)
		pack_sliver(g, p0, j0 + js, kc, nc - js < NR ? nc - js : NR, dst);
}

/* the block size for n in blocks of at most max, as even as possible,
 * rounded up to a multiple of unit */
static int64_t even_block(int64_t n, int64_t max, int64_t unit)
{
	int64_t blocks = (n + max - 1) / max;
	int64_t b = (n + blocks - 1) / blocks;
	return (b + unit - 1) / unit * unit;
}

/* C[i0 .. i0 + mc, j0 .. j0 + nc] op= A block * B panel for the k block at p0:
 * the B sliver outer, so it stays in L1 while every A sliver passes by */
static void macro_kernel(const Gemm *g, const Work *w, int64_t i0, int64_t mc, int64_t j0, int64_t nc, int64_t p0,
			 int64_t kc, float beta)
{
	for (int64_t js = 0; js < nc; js += NR) {
		int64_t nr = nc - js < NR ? nc - js : NR;
		const float *b = w->sliver;
		int64_t bs = NR;
		if (g->pack_b)
			b = w->pb + js * kc;
		else if (!g->conv && g->b.cs == 1 && whole_b_sliver(nr))
			b = g->b.p + p0 * g->b.rs + j0 + js, bs = g->b.rs;
		else
			pack_sliver(g, p0, j0 + js, kc, nr, w->sliver);
		Strip st = {.b = b, .bs = bs, .c = g->c + i0 * g->ldc + j0 + js, .ldc = g->ldc, .mr = MR, .nr = nr,
			    .alpha = g->alpha, .beta = beta};
		if (!w->pa) {
			/* no packed block: each A sliver packed again for each B sliver */
			for (int64_t is = 0; is < mc; is += MR, st.c += MR * g->ldc) {
				st.mr = mc - is < MR ? mc - is : MR;
				pack_a_sliver(g->a, i0 + is, p0, st.mr, kc, w->asliver);
				st.a = w->asliver, st.count = 1;
				kernel(kc, &st);
			}
			continue;
		}
		/* the whole slivers of A in one call, then the rows past them */
		st.a = w->pa, st.count = mc / MR;
		if (st.count)
			kernel(kc, &st);
		if (mc % MR) {
			st.a += st.count * MR * kc;
			st.c += st.count * MR * g->ldc;
			st.mr = mc % MR;
			st.count = 1;
			kernel(kc, &st);
		}
	}
}

/* C[i0 .. i1, j0 .. j1] of the product: GotoBLAS's three loops around the macro kernel */
static void gemm_block(const Gemm *g, const Work *w, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
	int64_t mc = even_block(i1 - i0, MC, MR), nc = even_block(j1 - j0, NC, NR);
	for (int64_t jc = j0; jc < j1; jc += nc) {
		int64_t ncur = j1 - jc < nc ? j1 - jc : nc;
		for (int64_t pc = 0; pc < g->k; pc += g->kc) {
			int64_t kc = g->k - pc < g->kc ? g->k - pc : g->kc;
			float beta = pc == 0 ? g->beta : 1.0f;	/* later k blocks add to what the first wrote */
			if (g->pack_b)
				pack_b(g, pc, jc, kc, ncur, w->pb);
			for (int64_t ic = i0; ic < i1; ic += mc) {
				int64_t mcur = i1 - ic < mc ? i1 - ic : mc;
				if (w->pa)
					pack_a(g->a, ic, pc, mcur, kc, w->pa);
				macro_kernel(g, w, ic, mcur, jc, ncur, pc, kc, beta);
			}
		}
	}
}

/* A task: the rows or columns of C in slivers [begin, end), with buffers of
 * its own. Without memory for the packed buffers it reads B in place and
 * packs A one sliver at a time on the stack, which gives the same result
 * more slowly. */
static void gemm_task(const Gemm *shared, int64_t begin, int64_t end)
{
	Gemm g;
	memcpy(&g, shared, offsetof(Gemm, next));
	int64_t i0 = 0, i1 = g.m, j0 = 0, j1 = g.n;
	if (g.split_n)
		j0 = begin * NR, j1 = end * NR < g.n ? end * NR : g.n;
	else
		i0 = begin * MR, i1 = end * MR < g.m ? end * MR : g.m;
#if GEMM_AVX2
	if (g.dot) {
		dot_block(&g, i0, i1, j0, j1);
		return;
	}
#endif
	_Alignas(64) float sliver[KC * NR], asliver[KC * MR + 8];
	size_t na = (size_t)(even_block(i1 - i0, MC, MR) * g.kc + 8);
	size_t nb = g.pack_b ? (size_t)(even_block(j1 - j0, NC, NR) * g.kc) : 0;
	float *heap = aligned_alloc(64, (na + nb + 15) / 16 * 64);
	Work w = {NULL, NULL, sliver, asliver};
	if (heap)
		w.pb = heap, w.pa = heap + nb;
	else
		g.pack_b = 0;
	gemm_block(&g, &w, i0, i1, j0, j1);
	free(heap);
}

/* A thread of the pool: claims tasks until none is left, so a thread that
 * runs slower (or starts late) takes fewer; who computes a task does not
 * change its result. */
static void gemm_thread(void *ctx, int64_t begin, int64_t end)
{
	(void)begin, (void)end;
	Gemm *g = ctx;
	for (;;) {
		int64_t t = atomic_fetch_add(&g->next, 1) * g->grain;
		if (t >= g->units)
			return;
		gemm_task(g, t, t + g->grain < g->units ? t + g->grain : g->units);
	}
}

/* C = beta * C, for the products with nothing to add (k = 0 or alpha = 0) */
static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc)
{
	for (int64_t i = 0; i < m; i++, c += ldc) {
		if (beta == 0.0f)
			memset(c, 0, (size_t)n * sizeof *c);
		else if (beta != 1.0f)
			for (int64_t j = 0; j < n; j++)
				c[j] *= beta;
	}
}

/* the product g describes, on the pool when it is large enough */
static void run_gemm(Gemm *g)
{
	int64_t mu = (g->m + MR - 1) / MR, nu = (g->n + NR - 1) / NR;
	g->split_n = nu >= mu;
	g->units = g->split_n ? nu : mu;
	int threads = nnrt_pool_threads();
	if (threads == 1 || g->units == 1 || 2.0 * (double)g->m * (double)g->n * (double)g->k < PAR_FLOPS) {
		gemm_task(g, 0, g->units);
		return;
	}
	g->grain = (g->units + TASKS_PER_THREAD * threads - 1) / (TASKS_PER_THREAD * threads);
	atomic_init(&g->next, 0);
	nnrt_parallel_for(threads, gemm_thread, g);
}

/* the built-in product, for m, n, k >= 1 and alpha != 0 */
static void native_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
			 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	Gemm g = {.m = m, .n = n, .k = k, .kc = even_block(k, KC, 1), .alpha = alpha, .beta = beta,
		  .a = view(a, lda, transa), .b = view(b, ldb, transb), .c = c, .ldc = ldc,
		  .pack_b = m > MC,
		  .dot = use_dot(transa, transb, m, n, k)};
	run_gemm(&g);
}

/* native_sgemm(0, 0, ...) on x's column matrix: the same Gemm but for B's
 * slivers, always packed (there is no B to read in place) */
/* Rows [r0, r0 + rows) and columns [c0, c0 + cols) of the column matrix of
 * x built into b (ldb apart), counting (ci, ky, kx) and (oy, ox): for
 * OpenBLAS, and for a weight gradient the dot products cannot read from the
 * image. */
static void conv_columns(const int64_t *geom, const float *x, int64_t r0, int64_t rows, int64_t c0, int64_t cols,
			 float *b, int64_t ldb)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int64_t ow = geom[NNRT_CONV_OW], sh = geom[NNRT_CONV_SH], sw = geom[NNRT_CONV_SW];
	int64_t kx = r0 % kw, ky = r0 / kw % kh;
	const float *plane = x + r0 / kw / kh * h * w;
	for (int64_t p = 0; p < rows; p++, b += ldb) {
		int64_t oy = c0 / ow, ox = c0 % ow;
		for (int64_t j = 0; j < cols; j++) {
			int64_t iy = oy * sh - geom[NNRT_CONV_PH] + ky * geom[NNRT_CONV_DH];
			int64_t ix = ox * sw - geom[NNRT_CONV_PW] + kx * geom[NNRT_CONV_DW];
			b[j] = (uint64_t)iy < (uint64_t)h && (uint64_t)ix < (uint64_t)w ? plane[iy * w + ix] : 0.0f;
			if (++ox == ow)
				ox = 0, oy++;
		}
		if (++kx == kw) {
			kx = 0;
			if (++ky == kh)
				ky = 0, plane += h * w;
		}
	}
}

/* The whole column matrix of x into b (n = OH * OW floats a row), as nnc's
 * lowering built it before the GEMMs read images: a row of a stride-1
 * convolution as wide as its image is one span of the plane, shifted, whose
 * columns outside the image are zeroed again; otherwise each output row is
 * zeros, a span of an image row, zeros. The copies are memcpy and memset. */
static void conv_columns_all(const int64_t *geom, const float *x, float *b)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int64_t oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW], sh = geom[NNRT_CONV_SH], sw = geom[NNRT_CONV_SW];
	int64_t n = oh * ow, rows = geom[NNRT_CONV_C] * kh * kw;
	int spans = sh == 1 && sw == 1 && ow == w;
	for (int64_t r = 0; r < rows; r++, b += n) {
		int64_t kx = r % kw, ky = r / kw % kh;
		const float *plane = x + r / kw / kh * h * w;
		int64_t dy = ky * geom[NNRT_CONV_DH] - geom[NNRT_CONV_PH], dx = kx * geom[NNRT_CONV_DW] - geom[NNRT_CONV_PW];
		/* output rows [ylo, yhi) and (stride 1) columns [xlo, xhi) read inside the image */
		int64_t ylo = 0, yhi = oh;
		while (ylo < oh && ylo * sh + dy < 0)
			ylo++;
		while (yhi > ylo && (yhi - 1) * sh + dy >= h)
			yhi--;
		int64_t xlo = dx < 0 ? -dx : 0, xhi = w - dx < ow ? w - dx : ow;
		xhi = xhi > xlo ? xhi : xlo;
		if (spans && yhi > ylo && xhi > xlo) {
			int64_t q0 = ylo * w + xlo, q1 = (yhi - 1) * w + xhi;
			memset(b, 0, (size_t)q0 * sizeof *b);
			memcpy(b + q0, plane + dy * w + dx + q0, (size_t)(q1 - q0) * sizeof *b);
			memset(b + q1, 0, (size_t)(n - q1) * sizeof *b);
			for (int64_t y = ylo; y < yhi; y++) {
				for (int64_t c = 0; c < xlo; c++)
					b[y * w + c] = 0.0f;
				for (int64_t c = xhi; c < w; c++)
					b[y * w + c] = 0.0f;
			}
			continue;
		}
		if (sw != 1) {
			conv_columns(geom, x, r, 1, 0, n, b, n);
			continue;
		}
		memset(b, 0, (size_t)n * sizeof *b);
		for (int64_t y = ylo; y < yhi && xhi > xlo; y++)
			memcpy(b + y * ow + xlo, plane + (y * sh + dy) * w + dx + xlo, (size_t)(xhi - xlo) * sizeof *b);
	}
}

#if GEMM_AVX512
enum { TAPS_STACK = 1024 };

/* ConvTaps of rows [0, k), counting (ci, ky, kx) */
static void conv_taps(const int64_t *geom, int64_t k, ConvTaps *t)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int64_t dy = geom[NNRT_CONV_DH] * w, dx = geom[NNRT_CONV_DW];
	int64_t p = 0;
	for (int64_t plane = 0; p < k; plane += h * w)
		for (int64_t ky = 0; ky < kh; ky++)
			for (int64_t kx = 0; kx < kw && p < k; kx++, p++) {
				t->off[p] = plane + ky * dy + kx * dx;
				t->tap[p] = (int)(ky * kw + kx);
			}
}
#endif

#ifdef NNRT_BLAS_OPENBLAS
static int blas_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
		      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
#endif

/* nnrt_sgemm_conv through the built column matrix (C * KH * KW rows of OH *
 * OW, B or, with transb, B^T); false without memory for it */
static int gemm_built(int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		      const float *x, const int64_t *geom, float beta, float *c, int64_t ldc)
{
	float *b = malloc((size_t)n * (size_t)k * sizeof *b);
	if (!b)
		return 0;
	conv_columns_all(geom, x, b);
	int64_t ldb = transb ? k : n;
#ifdef NNRT_BLAS_OPENBLAS
	if (!blas_sgemm(0, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
#endif
		native_sgemm(0, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	free(b);
	return 1;
}

static void native_sgemm_conv(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
			      const float *x, const int64_t *geom, float beta, float *c, int64_t ldc)
{
#if !GEMM_AVX512
	/* AVX2 and the portable kernel pack a sliver run by run: measured on
	 * AVX2, slower than building col unless each sliver is one output row
	 * (unet_tiny's 32 and 16 columns: faster; resnet_mini's 28: 8% slower) */
	if (geom[NNRT_CONV_OW] % NR != 0 && gemm_built(0, m, n, k, alpha, a, lda, x, geom, beta, c, ldc))
		return;
#endif
	Gemm g = {.m = m, .n = n, .k = k, .kc = even_block(k, KC, 1), .alpha = alpha, .beta = beta,
		  .a = view(a, lda, 0), .b = view(NULL, n, 0), .conv = geom, .x = x, .c = c, .ldc = ldc,
		  .pack_b = m > MC,
		  .dot = 0};
#if GEMM_AVX512
	/* the tables on the stack up to TAPS_STACK rows; without memory for
	 * larger ones the slivers are packed by counting (pack_run_body) */
	int64_t off[TAPS_STACK];
	int tap[TAPS_STACK];
	int heap = k > TAPS_STACK;
	if (geom[NNRT_CONV_SW] == 1) {
		g.taps.off = heap ? malloc((size_t)k * sizeof *g.taps.off) : off;
		g.taps.tap = heap ? malloc((size_t)k * sizeof *g.taps.tap) : tap;
		if (g.taps.off && g.taps.tap)
			conv_taps(geom, k, &g.taps);
		else
			free(heap ? g.taps.off : NULL), free(heap ? g.taps.tap : NULL), g.taps.off = NULL, heap = 0;
	}
	run_gemm(&g);
	if (heap)
		free(g.taps.off), free(g.taps.tap);
#else
	run_gemm(&g);
#endif
}

#if GEMM_AVX2
/* Dot products read a weight gradient's B^T (rows: taps of a channel, along
 * the output positions) from the image when a row is the image shifted:
 * stride 1 and the output as wide as the image. Row (ci, ky, kx) starts at
 * x + ci H W + (ky DH - PH) W + kx DW - PW; its lanes inside the image are
 * tabulated per tap, 16 positions a word. */
static int dot_spans(const int64_t *geom)
{
	return geom[NNRT_CONV_SH] == 1 && geom[NNRT_CONV_SW] == 1 && geom[NNRT_CONV_OW] == geom[NNRT_CONV_W];
}

enum { SPAN_STACK = 16384 };	/* bytes of tables on the stack; more from the heap */

/* The lane words depend on the geometry alone, and a weight gradient runs
 * once per sample: each thread keeps the last tables that fit. Computed per
 * call they took twice the time of lenet's first weight gradient. */
enum { MASK_CACHE = 8192 };
static _Thread_local struct {
	int64_t geom[NNRT_CONV_GEOM], k;
	uint16_t masks[MASK_CACHE];
} last_masks;

/* the lane words of every tap (ky, kx) into masks, words apart; cols: KW
 * words of scratch */
static void lane_masks(const int64_t *geom, int64_t k, uint16_t *masks, uint16_t *cols)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kh = geom[NNRT_CONV_KH], kw = geom[NNRT_CONV_KW];
	int64_t words = (k + 15) / 16;
	/* the columns inside the image per kx, for every position */
	memset(cols, 0, (size_t)(kw * words) * sizeof *cols);
	for (int64_t p = 0, ox = 0; p < k; p++, ox = ox + 1 == w ? 0 : ox + 1)
		for (int64_t kx = 0; kx < kw; kx++) {
			int64_t ix = ox + kx * geom[NNRT_CONV_DW] - geom[NNRT_CONV_PW];
			cols[kx * words + p / 16] |= (uint16_t)(((uint64_t)ix < (uint64_t)w) << (p % 16));
		}
	/* and of those, the ones on rows inside the image: positions [lo, hi) */
	for (int64_t ky = 0; ky < kh; ky++) {
		int64_t dy = ky * geom[NNRT_CONV_DH] - geom[NNRT_CONV_PH];
		int64_t lo = dy < 0 ? -dy * w : 0, hi = (h - dy) * w < k ? (h - dy) * w : k;
		for (int64_t kx = 0; kx < kw; kx++)
			for (int64_t q = 0; q < words; q++) {
				int64_t a = lo - 16 * q, b = hi - 16 * q;	/* lanes [a, b) of this word */
				uint32_t below = b >= 16 ? 0xffffu : b > 0 ? (1u << b) - 1 : 0;
				uint32_t above = a >= 16 ? 0xffffu : a > 0 ? (1u << a) - 1 : 0;
				masks[(ky * kw + kx) * words + q] = (uint16_t)(cols[kx * words + q] & below & ~above);
			}
	}
}

/* the tap's lane words: the thread's last ones when the geometry is the
 * same, else computed (into own when too large to keep) */
static const uint16_t *tap_masks(const int64_t *geom, int64_t k, uint16_t *own)
{
	int64_t words = (k + 15) / 16, taps = geom[NNRT_CONV_KH] * geom[NNRT_CONV_KW];
	if (taps * words > MASK_CACHE) {
		lane_masks(geom, k, own, own + taps * words);
		return own;
	}
	if (last_masks.k != k || memcmp(last_masks.geom, geom, sizeof last_masks.geom)) {
		last_masks.k = 0;	/* invalid while written */
		lane_masks(geom, k, last_masks.masks, own);
		memcpy(last_masks.geom, geom, sizeof last_masks.geom);
		last_masks.k = k;
	}
	return last_masks.masks;
}

/* the rows' starts and lane words of B^T (n rows, k positions) into t: n
 * pointers rows, n word pointers in, then room for KH*KW + KW words a tap's
 * table long (tap_masks) */
static void dot_tables(const int64_t *geom, const float *x, int64_t n, int64_t k, void *t, const float ***rows,
		       const uint16_t ***in)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], kw = geom[NNRT_CONV_KW];
	int64_t words = (k + 15) / 16, taps = geom[NNRT_CONV_KH] * kw;
	*rows = t;
	*in = (const uint16_t **)(*rows + n);
	const uint16_t *masks = tap_masks(geom, k, (uint16_t *)(*in + n));
	for (int64_t j = 0; j < n; j++) {
		int64_t tap = j % taps, ky = tap / kw, kx = tap % kw, ci = j / taps;
		(*rows)[j] = x + ci * h * w + (ky * geom[NNRT_CONV_DH] - geom[NNRT_CONV_PH]) * w + kx * geom[NNRT_CONV_DW] -
			     geom[NNRT_CONV_PW];
		(*in)[j] = masks + tap * words;
	}
}
#endif

enum { PART = 4096 };	/* floats of B on the stack when there is no memory for it */

/* nnrt_sgemm_conv with transb, m, n, k >= 1 and alpha != 0 */
static void native_sgemm_conv_t(int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
				const float *x, const int64_t *geom, float beta, float *c, int64_t ldc)
{
#if GEMM_AVX2
	if (use_dot(0, 1, m, n, k) && dot_spans(geom)) {
		int64_t words = (k + 15) / 16, kw = geom[NNRT_CONV_KW];
		size_t bytes = (size_t)n * (sizeof(float *) + sizeof(uint16_t *)) +
			       (size_t)((geom[NNRT_CONV_KH] + 1) * kw * words) * sizeof(uint16_t);
		_Alignas(16) unsigned char stack[SPAN_STACK];
		void *t = bytes <= sizeof stack ? stack : malloc(bytes);
		if (t) {
			Gemm g = {.m = m, .n = n, .k = k, .kc = even_block(k, KC, 1), .alpha = alpha, .beta = beta,
				  .a = view(a, lda, 0), .c = c, .ldc = ldc, .dot = 1};
			dot_tables(geom, x, n, k, t, &g.rows, &g.in);
			run_gemm(&g);
			if (t != stack)
				free(t);
			return;
		}
	}
#endif
	if (gemm_built(1, m, n, k, alpha, a, lda, x, geom, beta, c, ldc))
		return;
	/* without memory: blocks of B built on the stack, each a product of its
	 * own (a different order of the sums, the same products) */
	float part[PART];
	int64_t kb = k < PART ? k : PART, nb = PART / kb;
	for (int64_t j0 = 0; j0 < n; j0 += nb)
		for (int64_t p0 = 0; p0 < k; p0 += kb) {
			int64_t nr = n - j0 < nb ? n - j0 : nb, kr = k - p0 < kb ? k - p0 : kb;
			conv_columns(geom, x, j0, nr, p0, kr, part, kr);
			native_sgemm(0, 1, m, nr, kr, alpha, a + p0, lda, part, kr, p0 ? 1.0f : beta, c + j0, ldc);
		}
}

#ifdef NNRT_BLAS_OPENBLAS
/*
 * make BLAS=openblas: the products go to OpenBLAS's cblas_sgemm (Debian's
 * libopenblas-dev), for those who want its kernels; the default build has no
 * dependency. OpenBLAS runs single-threaded here and the split over threads
 * is the pool's, as for the built-in kernels: OpenBLAS's own threads would
 * wait beside the pool's and fight them for the cores. A large product is cut
 * into blocks of BLAS_BLOCK rows or columns of C that depend on the sizes
 * alone, each one call, so C is bitwise the same for every thread count.
 */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112, BLAS_BLOCK = 128 };
/* declared here, not from cblas.h: Debian's cblas.h is whichever BLAS the
 * alternatives point at; blasint is int in Debian's (32-bit index) builds */
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float *a, int lda,
		 const float *b, int ldb, float beta, float *c, int ldc);
void openblas_set_num_threads(int n);

typedef struct Blas {
	int ta, tb;
	int64_t m, n, k, lda, ldb, ldc;
	float alpha, beta;
	const float *a, *b;
	float *c;
	int split_n;		/* blocks of columns of C (else of rows) */
} Blas;

/* blocks [begin, end) of C, one cblas_sgemm each */
static void blas_blocks(void *ctx, int64_t begin, int64_t end)
{
	const Blas *g = ctx;
	for (int64_t q = begin; q < end; q++) {
		int64_t at = q * BLAS_BLOCK, len = (g->split_n ? g->n : g->m) - at;
		len = len < BLAS_BLOCK ? len : BLAS_BLOCK;
		const float *a = g->a, *b = g->b;
		float *c = g->c;
		int m = (int)g->m, n = (int)g->n;
		if (g->split_n)	/* columns at..: of B (its rows when transposed) and of C */
			b += g->tb ? at * g->ldb : at, c += at, n = (int)len;
		else		/* rows at..: of A (its columns when transposed) and of C */
			a += g->ta ? at : at * g->lda, c += at * g->ldc, m = (int)len;
		cblas_sgemm(CBLAS_ROW_MAJOR, g->ta ? CBLAS_TRANS : CBLAS_NO_TRANS, g->tb ? CBLAS_TRANS : CBLAS_NO_TRANS, m,
			    n, (int)g->k, g->alpha, a, (int)g->lda, b, (int)g->ldb, g->beta, c, (int)g->ldc);
	}
}

static int fits_int(int64_t x)
{
	return x <= 0x7fffffff;
}

/* OpenBLAS takes int sizes: larger products stay with the built-in kernels */
static int blas_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
		      int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	if (!fits_int(m) || !fits_int(n) || !fits_int(k) || !fits_int(lda) || !fits_int(ldb) || !fits_int(ldc))
		return 0;
	openblas_set_num_threads(1);
	Blas g = {transa, transb, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c, n >= m};
	int64_t blocks = ((g.split_n ? n : m) + BLAS_BLOCK - 1) / BLAS_BLOCK;
	if (blocks == 1 || 2.0 * (double)m * (double)n * (double)k < PAR_FLOPS)
		blas_blocks(&g, 0, blocks);
	else
		nnrt_parallel_for(blocks, blas_blocks, &g);
	return 1;
}
#endif

/* an empty C, or one with nothing to add (k = 0 or alpha = 0): C = beta * C;
 * true when that was all */
static int nothing_to_add(int64_t m, int64_t n, int64_t k, float alpha, float beta, float *c, int64_t ldc)
{
	if (m > 0 && n > 0 && (k <= 0 || alpha == 0.0f))
		scale_c(m, n, beta, c, ldc);
	return m <= 0 || n <= 0 || k <= 0 || alpha == 0.0f;
}

void nnrt_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
		int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	if (nothing_to_add(m, n, k, alpha, beta, c, ldc))
		return;
#ifdef NNRT_BLAS_OPENBLAS
	if (blas_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
		return;
#endif
	native_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void nnrt_sgemm_conv(int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		     const float *x, const int64_t *geom, float beta, float *c, int64_t ldc)
{
	if (nothing_to_add(m, n, k, alpha, beta, c, ldc))
		return;
#ifdef NNRT_BLAS_OPENBLAS
	/* OpenBLAS reads B from memory: build it, and without memory for it
	 * compute with the built-in kernels */
	if (gemm_built(transb, m, n, k, alpha, a, lda, x, geom, beta, c, ldc))
		return;
#endif
	if (transb) {
		int sized = GEMM_AVX2 && k == geom[NNRT_CONV_OH] * geom[NNRT_CONV_OW] && ldc >= n;
		if (!(sized && n == 9 * geom[NNRT_CONV_C] && nnrt_winograd_pays_dw(m, geom) &&
		      nnrt_winograd_3x3_dw(m, alpha, a, lda, x, geom, beta, c, ldc)) &&
		    !(sized && n == 25 * geom[NNRT_CONV_C] && nnrt_winograd_pays_5x5_dw(m, geom) &&
		      nnrt_winograd_5x5_dw(m, alpha, a, lda, x, geom, beta, c, ldc)))
			native_sgemm_conv_t(m, n, k, alpha, a, lda, x, geom, beta, c, ldc);
	} else if (!(GEMM_AVX2 && k == geom[NNRT_CONV_C] * geom[NNRT_CONV_KH] * geom[NNRT_CONV_KW] && ldc >= n &&
		     n == geom[NNRT_CONV_OH] * geom[NNRT_CONV_OW] &&
		     nnrt_conv_direct_pays(m, lda, geom) && nnrt_conv_direct(m, alpha, a, lda, x, geom, beta, c, ldc)) &&
		   !(GEMM_AVX2 && k == 9 * geom[NNRT_CONV_C] && ldc >= n && nnrt_winograd_pays(m, lda, geom) &&
		     nnrt_winograd_3x3(m, alpha, a, lda, x, geom, beta, c, ldc)) &&
		   !(GEMM_AVX2 && k == 25 * geom[NNRT_CONV_C] && ldc >= n && nnrt_winograd_pays_5x5(m, lda, geom) &&
		     nnrt_winograd_5x5(m, alpha, a, lda, x, geom, beta, c, ldc)))
		native_sgemm_conv(m, n, k, alpha, a, lda, x, geom, beta, c, ldc);
}
