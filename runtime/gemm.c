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
 * Built with NNRT_BLAS_OPENBLAS (make BLAS=openblas), the products go to
 * OpenBLAS instead, with the same API and guarantees (the end of this file).
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
static inline __attribute__((always_inline)) void dot16_body(int64_t k, const float *a, int64_t lda, const float *b,
							   int64_t ldb, const Tile *t, int R, int Cn)
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
			bv[j] = _mm512_maskz_loadu_ps(mask, b + j * ldb + p);
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
 * of B at b + j * ldb; the last k % 8 through masked loads */
static inline __attribute__((always_inline)) void dot_body(int64_t k, const float *a, int64_t lda, const float *b,
							   int64_t ldb, const Tile *t, int R, int Cn)
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
		for (int j = 0; j < Cn; j++)
			bv[j] = k - p >= 8 ? _mm256_loadu_ps(b + j * ldb + p) : _mm256_maskload_ps(b + j * ldb + p, mask);
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

typedef void DotFn(int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb, const Tile *t);

#if GEMM_AVX512
#define DOT(R, C)                                                                                          \
	static void dot_##R##x##C(int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,       \
				  const Tile *t)                                                             \
	{                                                                                                   \
		dot_body(k, a, lda, b, ldb, t, R, C);                                                       \
	}                                                                                                   \
	static void dot16_##R##x##C(int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,     \
				    const Tile *t)                                                           \
	{                                                                                                   \
		dot16_body(k, a, lda, b, ldb, t, R, C);                                                     \
	}
#else
#define DOT(R, C)                                                                                          \
	static void dot_##R##x##C(int64_t k, const float *a, int64_t lda, const float *b, int64_t ldb,       \
				  const Tile *t)                                                             \
	{                                                                                                   \
		dot_body(k, a, lda, b, ldb, t, R, C);                                                       \
	}
#endif
DOT(1, 1) DOT(1, 2) DOT(1, 3) DOT(1, 4) DOT(2, 1) DOT(2, 2) DOT(2, 3) DOT(2, 4)
DOT(3, 1) DOT(3, 2) DOT(3, 3) DOT(3, 4)
#if GEMM_AVX512
DOT(4, 1) DOT(4, 2) DOT(4, 3) DOT(4, 4)
#endif

static DotFn *const dots[DR][DC] = {
	{dot_1x1, dot_1x2, dot_1x3, dot_1x4},
	{dot_2x1, dot_2x2, dot_2x3, dot_2x4},
	{dot_3x1, dot_3x2, dot_3x3, dot_3x4},
#if GEMM_AVX512
	{dot_4x1, dot_4x2, dot_4x3, dot_4x4},
#endif
};
#if GEMM_AVX512
static DotFn *const dots16[DR][DC] = {
	{dot16_1x1, dot16_1x2, dot16_1x3, dot16_1x4},
	{dot16_2x1, dot16_2x2, dot16_2x3, dot16_2x4},
	{dot16_3x1, dot16_3x2, dot16_3x3, dot16_3x4},
	{dot16_4x1, dot16_4x2, dot16_4x3, dot16_4x4},
};
#endif

/* C[i0 .. i1, j0 .. j1] by dot-product tiles; A not transposed, B transposed */
static void dot_block(View a, View b, int64_t k, float alpha, float beta, float *c, int64_t ldc, int64_t i0,
		      int64_t i1, int64_t j0, int64_t j1)
{
	DotFn *const(*table)[DC] = dots;
#if GEMM_AVX512
	if (k >= DOT16_K)
		table = dots16;
#endif
	for (int64_t i = i0; i < i1; i += DR)
		for (int64_t j = j0; j < j1; j += DC) {
			Tile t = {c + i * ldc + j, ldc, i1 - i < DR ? i1 - i : DR, j1 - j < DC ? j1 - j : DC, alpha, beta};
			table[t.mr - 1][t.nr - 1](k, a.p + i * a.rs, a.rs, b.p + j * b.cs, b.cs, &t);
		}
}

/* dot products pay for A * B^T when C is narrow or small and k long enough
 * to fill the vectors; MR and NR are multiples of DR and DC, so the tiles
 * are the same however the threads split C */
_Static_assert(MR % DR == 0 && NR % DC == 0, "thread splits keep the dot tiles");
static int use_dot(int transa, int transb, int64_t m, int64_t n, int64_t k)
{
	return !transa && transb && k >= 32 && (n <= NR || m * n <= 1024);
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

/* the kc x nc panel of op(B) at (p0, j0), sliver after sliver */
static void pack_b(View b, int64_t p0, int64_t j0, int64_t kc, int64_t nc, float *dst)
{
	for (int64_t js = 0; js < nc; js += NR, dst += kc * NR)
		pack_b_sliver(b, p0, j0 + js, kc, nc - js < NR ? nc - js : NR, dst);
}

/* ---- the loops ---- */

typedef struct Gemm {
	int64_t m, n, k, kc;		/* kc: the k block, a function of k alone */
	float alpha, beta;
	View a, b;
	float *c;
	int64_t ldc;
	int pack_b;			/* decided once per call, for every thread alike */
	int dot;			/* dot products (use_dot) instead of the kernels */
	int split_n;			/* tasks are slivers of columns (else of rows) */
	int64_t units, grain;		/* slivers along the split, slivers per task */
	atomic_llong next;		/* the next task to claim */
} Gemm;

/* one thread's buffers: the packed A block (NULL without memory) and B
 * panel (when packed), one B sliver for the slivers packed one at a time,
 * and one A sliver for when the block could not be allocated */
typedef struct Work {
	float *pa, *pb, *sliver, *asliver;
} Work;

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
		else if (g->b.cs == 1 && whole_b_sliver(nr))
			b = g->b.p + p0 * g->b.rs + j0 + js, bs = g->b.rs;
		else
			pack_b_sliver(g->b, p0, j0 + js, kc, nr, w->sliver);
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
				pack_b(g->b, pc, jc, kc, ncur, w->pb);
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
		dot_block(g.a, g.b, g.k, g.alpha, g.beta, g.c, g.ldc, i0, i1, j0, j1);
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

/* the built-in product, for m, n, k >= 1 and alpha != 0 */
static void native_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
			 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	Gemm g = {.m = m, .n = n, .k = k, .kc = even_block(k, KC, 1), .alpha = alpha, .beta = beta,
		  .a = view(a, lda, transa), .b = view(b, ldb, transb), .c = c, .ldc = ldc,
		  .pack_b = m > MC,
		  .dot = use_dot(transa, transb, m, n, k)};
	int64_t mu = (m + MR - 1) / MR, nu = (n + NR - 1) / NR;
	g.split_n = nu >= mu;
	g.units = g.split_n ? nu : mu;
	int threads = nnrt_pool_threads();
	if (threads == 1 || g.units == 1 || 2.0 * (double)m * (double)n * (double)k < PAR_FLOPS) {
		gemm_task(&g, 0, g.units);
		return;
	}
	g.grain = (g.units + TASKS_PER_THREAD * threads - 1) / (TASKS_PER_THREAD * threads);
	atomic_init(&g.next, 0);
	nnrt_parallel_for(threads, gemm_thread, &g);
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

void nnrt_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
		int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	if (m <= 0 || n <= 0)
		return;
	if (k <= 0 || alpha == 0.0f) {
		scale_c(m, n, beta, c, ldc);
		return;
	}
#ifdef NNRT_BLAS_OPENBLAS
	if (blas_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
		return;
#endif
	native_sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
