/*
 * gemm.c: C = alpha * op(A) * op(B) + beta * C in single precision, row-major,
 * the product behind dense and convolution layers and their gradients.
 *
 * The structure is the one of GotoBLAS and BLIS. The k dimension is cut into
 * blocks of KC, n into blocks of NC and m into blocks of MC. For each (k, n)
 * block a panel of op(B) is packed once into a buffer that stays in L2; for
 * each m block a panel of alpha * op(A) is packed into one that stays in L1/L2.
 * Packing absorbs the transposes and leading dimensions, so one micro-kernel
 * serves all four cases: it multiplies an MR x KC sliver of A by a KC x NR
 * sliver of B into MR x NR accumulators held in registers, reading both
 * slivers contiguously. Edge slivers are padded with zeros in the buffers, so
 * the kernel always runs full-size and only the store looks at the edge.
 *
 * beta is applied by the store of the first k block (later blocks add with
 * beta = 1); when beta is 0 that store writes C without reading it.
 * The packing buffers live on the stack (about 160 KB): no allocation, no
 * failure, no shared state, so concurrent calls from pool threads are safe.
 */
#include <string.h>

#include "nnrt.h"

/* Register tile. The portable kernel below relies on the compiler keeping
 * MR x NR floats in registers and vectorizing over NR; 4 x 8 fits the 16
 * SSE registers of baseline x86-64. An ISA-specific kernel may choose its
 * own MR and NR: everything else is written in terms of these names. */
enum { MR = 4, NR = 8 };

/* Cache blocks: a KC x NR sliver of B (8 KB) stays in L1 while the kernel
 * walks down the MC rows of packed A (64 KB, L2); the packed B panel of
 * KC x NC (96 KB) is reused for every m block. MC % MR == 0, NC % NR == 0. */
enum { KC = 256, MC = 64, NC = 96 };
_Static_assert(MC % MR == 0 && NC % NR == 0, "blocks hold whole slivers");

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

/* Packs the mc x kc block of op(A) at (i0, p0), scaled by alpha, as slivers
 * of MR rows: sliver s holds [kc][MR], element (i, p) at p * MR + i. Rows
 * past mc are zero. */
static void pack_a(View a, int64_t i0, int64_t p0, int64_t mc, int64_t kc, float alpha, float *dst)
{
	for (int64_t is = 0; is < mc; is += MR, dst += kc * MR) {
		int64_t mr = mc - is < MR ? mc - is : MR;
		for (int64_t i = 0; i < mr; i++) {
			const float *src = a.p + (i0 + is + i) * a.rs + p0 * a.cs;
			for (int64_t p = 0; p < kc; p++)
				dst[p * MR + i] = alpha * src[p * a.cs];
		}
		for (int64_t i = mr; i < MR; i++)
			for (int64_t p = 0; p < kc; p++)
				dst[p * MR + i] = 0.0f;
	}
}

/* Packs the kc x nc block of op(B) at (p0, j0) as slivers of NR columns:
 * sliver s holds [kc][NR], element (p, j) at p * NR + j. Columns past nc
 * are zero. */
static void pack_b(View b, int64_t p0, int64_t j0, int64_t kc, int64_t nc, float *dst)
{
	for (int64_t js = 0; js < nc; js += NR, dst += kc * NR) {
		int64_t nr = nc - js < NR ? nc - js : NR;
		for (int64_t p = 0; p < kc; p++) {
			const float *src = b.p + (p0 + p) * b.rs + (j0 + js) * b.cs;
			for (int64_t j = 0; j < NR; j++)
				dst[p * NR + j] = j < nr ? src[j * b.cs] : 0.0f;
		}
	}
}

/* The product of one A sliver and one B sliver, both read front to back,
 * stored into the mr x nr corner of c as acc + beta * c (beta 0 never reads
 * c). The unroll pragmas flatten the MR x NR tile so the compiler keeps acc
 * in registers instead of in memory: at -O2 gcc otherwise loads and stores
 * acc on every step (clang keeps it in registers either way). */
static void kernel(int64_t kc, const float *a, const float *b, int64_t mr, int64_t nr, float beta, float *c,
		   int64_t ldc)
{
	float acc[MR][NR] = {{0}};
	for (int64_t p = 0; p < kc; p++, a += MR, b += NR) {
#pragma GCC unroll 16
		for (int i = 0; i < MR; i++)
#pragma GCC unroll 16
			for (int j = 0; j < NR; j++)
				acc[i][j] += a[i] * b[j];
	}
	for (int64_t i = 0; i < mr; i++, c += ldc) {
		if (beta == 0.0f)
			for (int64_t j = 0; j < nr; j++)
				c[j] = acc[i][j];
		else
			for (int64_t j = 0; j < nr; j++)
				c[j] = acc[i][j] + beta * c[j];
	}
}

/* C[mc x nc] op= packed A [mc x kc] * packed B [kc x nc], sliver by sliver:
 * the B sliver outer, so it stays in L1 while every A sliver passes by */
static void macro_kernel(int64_t mc, int64_t nc, int64_t kc, const float *pa, const float *pb, float beta,
			 float *c, int64_t ldc)
{
	for (int64_t js = 0; js < nc; js += NR) {
		int64_t nr = nc - js < NR ? nc - js : NR;
		for (int64_t is = 0; is < mc; is += MR) {
			int64_t mr = mc - is < MR ? mc - is : MR;
			kernel(kc, pa + is * kc, pb + js * kc, mr, nr, beta, c + is * ldc + js, ldc);
		}
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

void nnrt_sgemm(int transa, int transb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
		int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
	if (m <= 0 || n <= 0)
		return;
	if (k <= 0 || alpha == 0.0f) {
		scale_c(m, n, beta, c, ldc);
		return;
	}
	_Alignas(64) float pa[MC * KC];	/* [MC / MR][KC][MR] */
	_Alignas(64) float pb[KC * NC];	/* [NC / NR][KC][NR] */
	View va = view(a, lda, transa), vb = view(b, ldb, transb);
	for (int64_t j0 = 0; j0 < n; j0 += NC) {
		int64_t nc = n - j0 < NC ? n - j0 : NC;
		for (int64_t p0 = 0; p0 < k; p0 += KC) {
			int64_t kc = k - p0 < KC ? k - p0 : KC;
			float bk = p0 == 0 ? beta : 1.0f;	/* later k blocks add to what the first wrote */
			pack_b(vb, p0, j0, kc, nc, pb);
			for (int64_t i0 = 0; i0 < m; i0 += MC) {
				int64_t mc = m - i0 < MC ? m - i0 : MC;
				pack_a(va, i0, p0, mc, kc, alpha, pa);
				macro_kernel(mc, nc, kc, pa, pb, bk, c + i0 * ldc + j0, ldc);
			}
		}
	}
}
