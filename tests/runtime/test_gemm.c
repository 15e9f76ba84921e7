/*
 * test_gemm.c: nnrt_sgemm against a naive triple loop in double, for all four
 * transposes, sizes from 1 to past every cache block (odd, non-square),
 * leading dimensions wider than the rows, and beta 0, 1 and 0.5. Padding
 * between rows of A and B holds NaN, so reading it shows in the result;
 * padding of C holds a sentinel that must survive. Large products run on 1
 * and 2 threads, and give bitwise the same C on 1, 2, 3 and 8. The Makefile builds
 * this file twice: against the ISA kernel of the build and, with
 * NNRT_GEMM_PORTABLE, against a gemm.c built with the portable kernel.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nnrt.h"

static const float sentinel = 12345.0f;

typedef struct Case {
	int ta, tb;
	int64_t m, n, k;
	int64_t pad;			/* extra elements at the end of every row of A, B and C */
	float alpha, beta;
} Case;

/* a stored matrix: rows x cols inside rows x ld, the rest filled with fill */
typedef struct Mat {
	float *p;
	int64_t rows, cols, ld;
} Mat;

static Mat mat_new(int64_t rows, int64_t cols, int64_t pad, float fill)
{
	Mat x = {NULL, rows, cols, cols + pad};
	x.p = malloc((size_t)(rows * x.ld + 1) * sizeof *x.p);
	assert_non_null(x.p);
	for (int64_t i = 0; i < rows * x.ld; i++)
		x.p[i] = fill;
	return x;
}

/* integers in [-4, 4] keep every product and sum exact in float */
static void mat_fill(Mat *x, NnrtRng *r, int integers)
{
	for (int64_t i = 0; i < x->rows; i++)
		for (int64_t j = 0; j < x->cols; j++)
			x->p[i * x->ld + j] = integers ? (float)nnrt_rng_below(r, 9) - 4.0f
							 : 2.0f * nnrt_rng_uniform(r) - 1.0f;
}

/* element (i, j) of op(X) */
static double op(const Mat *x, int trans, int64_t i, int64_t j)
{
	return trans ? x->p[j * x->ld + i] : x->p[i * x->ld + j];
}

/* Runs one case and compares every element with the double product. The
 * tolerance is the worst-case bound of float summation, k * eps times the
 * sum of magnitudes; exact inputs must give exact results. */
static void run_case(const Case *cs, int integers, uint64_t seed)
{
	NnrtRng r;
	nnrt_rng_seed(&r, seed, 7);
	Mat a = cs->ta ? mat_new(cs->k, cs->m, cs->pad, NAN) : mat_new(cs->m, cs->k, cs->pad, NAN);
	Mat b = cs->tb ? mat_new(cs->n, cs->k, cs->pad, NAN) : mat_new(cs->k, cs->n, cs->pad, NAN);
	Mat c = mat_new(cs->m, cs->n, cs->pad, sentinel);
	Mat c0 = mat_new(cs->m, cs->n, 0, 0.0f);
	mat_fill(&a, &r, integers);
	mat_fill(&b, &r, integers);
	mat_fill(&c, &r, integers);
	for (int64_t i = 0; i < cs->m; i++)
		for (int64_t j = 0; j < cs->n; j++) {
			c0.p[i * c0.ld + j] = c.p[i * c.ld + j];
			if (cs->beta == 0.0f)
				c.p[i * c.ld + j] = NAN;	/* beta 0 must not read C */
		}
	nnrt_sgemm(cs->ta, cs->tb, cs->m, cs->n, cs->k, cs->alpha, a.p, a.ld, b.p, b.ld, cs->beta, c.p, c.ld);
	for (int64_t i = 0; i < cs->m; i++) {
		for (int64_t j = 0; j < cs->n; j++) {
			double sum = 0, mag = 0;
			for (int64_t p = 0; p < cs->k; p++) {
				double t = op(&a, cs->ta, i, p) * op(&b, cs->tb, p, j);
				sum += t;
				mag += fabs(t);
			}
			double cold = c0.p[i * c0.ld + j];
			double want = cs->alpha * sum + (cs->beta == 0.0f ? 0.0 : cs->beta * cold);
			double tol = integers ? 0.0 : (cs->k + 2) * FLT_EPSILON * (fabs(cs->alpha) * mag + fabs(cold));
			double got = c.p[i * c.ld + j];
			if (!(fabs(got - want) <= tol))
				fail_msg("ta=%d tb=%d m=%lld n=%lld k=%lld beta=%g: C[%lld][%lld] = %.9g, want %.9g", cs->ta,
					 cs->tb, (long long)cs->m, (long long)cs->n, (long long)cs->k, cs->beta,
					 (long long)i, (long long)j, got, want);
		}
		for (int64_t j = cs->n; j < c.ld; j++)
			assert_true(c.p[i * c.ld + j] == sentinel);
	}
	free(a.p);
	free(b.p);
	free(c.p);
	free(c0.p);
}

/* every transpose and beta for one size */
static void run_all(int64_t m, int64_t n, int64_t k, int64_t pad, float alpha, int integers, uint64_t seed)
{
	static const float betas[] = {0.0f, 1.0f, 0.5f};
	for (int t = 0; t < 4; t++)
		for (int bi = 0; bi < 3; bi++) {
			Case cs = {t >> 1, t & 1, m, n, k, pad, alpha, betas[bi]};
			run_case(&cs, integers, seed + (uint64_t)(t * 3 + bi));
		}
}

/* 2x3 times 3x2 worked by hand: [1 2 3; 4 5 6] [7 8; 9 10; 11 12] */
static void test_small_by_hand(void **state)
{
	(void)state;
	const float a[] = {1, 2, 3, 4, 5, 6}, b[] = {7, 8, 9, 10, 11, 12};
	float c[4] = {1, 1, 1, 1};
	nnrt_sgemm(0, 0, 2, 2, 3, 1.0f, a, 3, b, 2, 0.0f, c, 2);
	assert_true(c[0] == 58 && c[1] == 64 && c[2] == 139 && c[3] == 154);
	nnrt_sgemm(0, 0, 2, 2, 3, 2.0f, a, 3, b, 2, 1.0f, c, 2);	/* C = 2AB + C = 3AB */
	assert_true(c[0] == 174 && c[1] == 192 && c[2] == 417 && c[3] == 462);
	const float at[] = {1, 4, 2, 5, 3, 6}, bt[] = {7, 9, 11, 8, 10, 12};
	nnrt_sgemm(1, 1, 2, 2, 3, 1.0f, at, 2, bt, 3, 0.0f, c, 2);
	assert_true(c[0] == 58 && c[1] == 64 && c[2] == 139 && c[3] == 154);
}

/* integer inputs: results must be exact, so a misplaced element cannot hide
 * in a tolerance; sizes straddle MR, NR and every cache block, and reach the
 * dot products of narrow A * B^T */
static void test_exact_integers(void **state)
{
	(void)state;
	static const int64_t sizes[][3] = {
		{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {3, 5, 1}, {4, 8, 16}, {7, 13, 11},
		{65, 97, 257}, {130, 17, 300}, {9, 200, 40},
		{5, 9, 100}, {64, 10, 128}, {3, 4, 32}, {7, 17, 45},	/* A * B^T by dot products */
		{6, 25, 784}, {3, 6, 271}, {9, 5, 256},	/* ... 16 steps of k a vector from k = 256 */
		/* every row count of an 8-row tile, ragged columns on either side
		 * of 16 and 32 (read and written through masks), the examples' own
		 * shapes */
		{8, 32, 5}, {9, 33, 2}, {15, 31, 7}, {16, 47, 3}, {17, 48, 12}, {2, 63, 9}, {11, 1, 4},
		{6, 784, 25}, {16, 100, 150}, {150, 100, 16}, {64, 128, 10}, {10, 128, 64}, {32, 25, 16},
	};
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
		run_all(sizes[s][0], sizes[s][1], sizes[s][2], (int64_t)(s % 3) * 3, 1.0f, 1, 100 + s);
}

/* random floats and alpha != 1, with leading dimensions wider than rows */
static void test_random_floats(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 2024, 1);
	for (int t = 0; t < 12; t++) {
		int64_t m = 1 + nnrt_rng_below(&r, 150);
		int64_t n = 1 + nnrt_rng_below(&r, 210);
		int64_t k = 1 + nnrt_rng_below(&r, 600);
		run_all(m, n, k, 1 + t % 4, t % 2 ? -0.75f : 1.5f, 0, 1000 + (uint64_t)t * 20);
	}
}

/* larger than every block in every dimension, at once */
static void test_across_blocks(void **state)
{
	(void)state;
	Case cs = {0, 0, 131, 203, 530, 5, 1.0f, 0.5f};
	run_case(&cs, 0, 77);
	Case ct = {1, 1, 131, 203, 530, 5, 1.0f, 0.0f};
	run_case(&ct, 0, 78);
}

/* k = 0 or alpha = 0: C = beta * C, and beta 0 clears NaN to 0 */
static void test_nothing_to_add(void **state)
{
	(void)state;
	float a[4] = {NAN, NAN, NAN, NAN}, b[4] = {NAN, NAN, NAN, NAN};
	float c[6] = {1, 2, 3, 4, 5, 6};
	nnrt_sgemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.5f, c, 3);
	assert_true(c[0] == 0.5f && c[1] == 1.0f && c[2] == 3.0f && c[3] == 2.0f && c[4] == 2.5f && c[5] == 6.0f);
	nnrt_sgemm(0, 0, 2, 2, 2, 0.0f, a, 2, b, 2, 1.0f, c, 3);
	assert_true(c[0] == 0.5f && c[1] == 1.0f && c[3] == 2.0f && c[4] == 2.5f);
	float d[4] = {NAN, NAN, NAN, NAN};
	nnrt_sgemm(0, 0, 2, 2, 0, 1.0f, a, 1, b, 2, 0.0f, d, 2);
	assert_true(d[0] == 0.0f && d[1] == 0.0f && d[2] == 0.0f && d[3] == 0.0f);
}

/* m = 0 or n = 0: nothing is touched */
static void test_empty_output(void **state)
{
	(void)state;
	float a[4] = {1, 2, 3, 4}, b[4] = {1, 2, 3, 4}, c[4] = {9, 9, 9, 9};
	nnrt_sgemm(0, 0, 0, 2, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
	nnrt_sgemm(0, 0, 2, 0, 2, 1.0f, a, 2, b, 2, 0.0f, c, 2);
	for (int i = 0; i < 4; i++)
		assert_true(c[i] == 9.0f);
}

/* past every cache block and the threading threshold, each packing choice
 * and both ways of splitting over threads, against the double product */
static const Case large[] = {
	{0, 0, 150, 100, 520, 3, 1.0f, 0.5f},	/* A and B packed, k in 3 blocks */
	{1, 1, 150, 100, 520, 0, -0.75f, 0.0f},
	{0, 0, 150, 1030, 30, 1, 1.0f, 0.0f},	/* B packed, A in place, 2 n blocks */
	{0, 1, 400, 20, 300, 2, 1.0f, 1.0f},	/* split over rows; B transposed */
	{1, 0, 40, 120, 1100, 0, 1.0f, 0.5f},	/* both in place, k in 5 blocks */
	{0, 1, 64, 256, 784, 0, 1.0f, 0.0f},	/* the MLP's first layer */
	{0, 1, 300, 12, 700, 1, 0.5f, 0.5f},	/* dot products, split over rows */
};

static void test_large_on_threads(void **state)
{
	(void)state;
	for (int threads = 1; threads <= 2; threads++) {
		nnrt_pool_set_threads(threads);
		for (size_t i = 0; i < sizeof large / sizeof large[0]; i++)
			run_case(&large[i], 0, 500 + i);
	}
	nnrt_pool_set_threads(0);
}

/* C for the case on the given thread count, from the same inputs */
static float *product_on(const Case *cs, int threads)
{
	NnrtRng r;
	nnrt_rng_seed(&r, 99, 3);
	int64_t ar = cs->ta ? cs->k : cs->m, ac = cs->ta ? cs->m : cs->k;
	int64_t br = cs->tb ? cs->n : cs->k, bc = cs->tb ? cs->k : cs->n;
	Mat a = mat_new(ar, ac, 0, 0.0f), b = mat_new(br, bc, 0, 0.0f), c = mat_new(cs->m, cs->n, 0, 0.0f);
	mat_fill(&a, &r, 0);
	mat_fill(&b, &r, 0);
	mat_fill(&c, &r, 0);
	nnrt_pool_set_threads(threads);
	nnrt_sgemm(cs->ta, cs->tb, cs->m, cs->n, cs->k, cs->alpha, a.p, a.ld, b.p, b.ld, cs->beta, c.p, c.ld);
	free(a.p);
	free(b.p);
	return c.p;
}

/* The split is over whole slivers of C and never over k: every element is
 * the same operations on every thread count. One case per path: A and B
 * packed, B packed, split over rows, dot products. */
static void test_threads_bitwise_equal(void **state)
{
	(void)state;
	static const size_t cases[] = {0, 2, 3, 6};
	static const int counts[] = {2, 3, 8};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const Case *cs = &large[cases[i]];
		float *one = product_on(cs, 1);
		for (size_t t = 0; t < sizeof counts / sizeof counts[0]; t++) {
			float *many = product_on(cs, counts[t]);
			assert_memory_equal(one, many, (size_t)(cs->m * cs->n) * sizeof *one);
			free(many);
		}
		free(one);
	}
	nnrt_pool_set_threads(0);
}

/* ---- nnrt_sgemm_conv: the column matrix of an image, never built ---- */

/* a convolution: image C x H x W, kernel KH x KW, stride, padding, dilation,
 * m output channels */
typedef struct Conv {
	int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, m;
} Conv;

/* the geometry array of cv, its output size included */
static void conv_geom(const Conv *cv, int64_t geom[NNRT_CONV_GEOM])
{
	int64_t oh = (cv->h + 2 * cv->ph - cv->dh * (cv->kh - 1) - 1) / cv->sh + 1;
	int64_t ow = (cv->w + 2 * cv->pw - cv->dw * (cv->kw - 1) - 1) / cv->sw + 1;
	const int64_t g[NNRT_CONV_GEOM] = {cv->c, cv->h, cv->w, cv->kh, cv->kw, cv->sh, cv->sw,
					   cv->ph, cv->pw, cv->dh, cv->dw, oh, ow};
	for (int i = 0; i < NNRT_CONV_GEOM; i++)
		geom[i] = g[i];
}

/* the column matrix, built element by element from its definition */
static float *im2col(const int64_t *g, const float *x)
{
	int64_t k = g[NNRT_CONV_C] * g[NNRT_CONV_KH] * g[NNRT_CONV_KW], n = g[NNRT_CONV_OH] * g[NNRT_CONV_OW];
	float *b = malloc((size_t)(k * n) * sizeof *b);
	assert_non_null(b);
	for (int64_t p = 0; p < k; p++)
		for (int64_t j = 0; j < n; j++) {
			int64_t kx = p % g[NNRT_CONV_KW], ky = p / g[NNRT_CONV_KW] % g[NNRT_CONV_KH];
			int64_t ci = p / g[NNRT_CONV_KW] / g[NNRT_CONV_KH];
			int64_t iy = j / g[NNRT_CONV_OW] * g[NNRT_CONV_SH] - g[NNRT_CONV_PH] + ky * g[NNRT_CONV_DH];
			int64_t ix = j % g[NNRT_CONV_OW] * g[NNRT_CONV_SW] - g[NNRT_CONV_PW] + kx * g[NNRT_CONV_DW];
			int inside = iy >= 0 && iy < g[NNRT_CONV_H] && ix >= 0 && ix < g[NNRT_CONV_W];
			b[p * n + j] = inside ? x[(ci * g[NNRT_CONV_H] + iy) * g[NNRT_CONV_W] + ix] : 0.0f;
		}
	return b;
}

/* C from nnrt_sgemm_conv is bitwise C from nnrt_sgemm on the built column
 * matrix (or from the Winograd functions, where it takes their path), on the given
 * threads; beta 0 gets C full of NaN. Without transb the product is m x
 * positions over the column matrix's rows (a convolution); with it, m x rows
 * over the positions (a weight gradient). */
static void run_conv(const Conv *cv, int transb, float alpha, float beta, int threads, uint64_t seed)
{
	int64_t g[NNRT_CONV_GEOM];
	conv_geom(cv, g);
	int64_t rows = cv->c * cv->kh * cv->kw, cols = g[NNRT_CONV_OH] * g[NNRT_CONV_OW], pad = 3;
	int64_t k = transb ? cols : rows, n = transb ? rows : cols;
	NnrtRng r;
	nnrt_rng_seed(&r, seed, 11);
	Mat a = mat_new(cv->m, k, pad, NAN), x = mat_new(1, cv->c * cv->h * cv->w, 0, 0.0f);
	Mat c = mat_new(cv->m, n, pad, sentinel), want = mat_new(cv->m, n, pad, sentinel);
	mat_fill(&a, &r, 0);
	mat_fill(&x, &r, 0);
	mat_fill(&c, &r, 0);
	for (int64_t i = 0; i < cv->m; i++)
		for (int64_t j = 0; j < n; j++)
			c.p[i * c.ld + j] = want.p[i * c.ld + j] = beta == 0.0f ? NAN : c.p[i * c.ld + j];
	float *b = im2col(g, x.p);
	nnrt_pool_set_threads(threads);
	/* where nnrt_sgemm_conv hands a 3x3 or 5x5 product or weight gradient to
	 * Winograd's algorithm (test_winograd.c checks its values), C is exactly
	 * that function's; the portable gemm.c never does */
	int winograd = 0;
#ifndef NNRT_GEMM_PORTABLE
	if (transb)
		winograd = (nnrt_winograd_pays_dw(cv->m, g) &&
			    nnrt_winograd_3x3_dw(cv->m, alpha, a.p, a.ld, x.p, g, beta, want.p, want.ld)) ||
			   (nnrt_winograd_pays_5x5_dw(cv->m, g) &&
			    nnrt_winograd_5x5_dw(cv->m, alpha, a.p, a.ld, x.p, g, beta, want.p, want.ld));
	else
		winograd = (nnrt_winograd_pays(cv->m, a.ld, g) &&
			    nnrt_winograd_3x3(cv->m, alpha, a.p, a.ld, x.p, g, beta, want.p, want.ld)) ||
			   (nnrt_winograd_pays_5x5(cv->m, a.ld, g) &&
			    nnrt_winograd_5x5(cv->m, alpha, a.p, a.ld, x.p, g, beta, want.p, want.ld));
#endif
	if (!winograd)
		nnrt_sgemm(0, transb, cv->m, n, k, alpha, a.p, a.ld, b, cols, beta, want.p, want.ld);
	nnrt_sgemm_conv(transb, cv->m, n, k, alpha, a.p, a.ld, x.p, g, beta, c.p, c.ld);
	nnrt_pool_set_threads(0);
	if (memcmp(c.p, want.p, (size_t)(cv->m * c.ld) * sizeof *c.p) != 0)
		fail_msg("conv%s c=%lld %lldx%lld k=%lldx%lld s=%lld,%lld p=%lld,%lld d=%lld,%lld m=%lld alpha=%g "
			 "beta=%g threads=%d: C differs from the built column matrix's", transb ? " (B^T)" : "",
			 (long long)cv->c, (long long)cv->h, (long long)cv->w, (long long)cv->kh, (long long)cv->kw,
			 (long long)cv->sh, (long long)cv->sw, (long long)cv->ph, (long long)cv->pw, (long long)cv->dh,
			 (long long)cv->dw, (long long)cv->m, alpha, beta, threads);
	free(b);
	free(a.p);
	free(x.p);
	free(c.p);
	free(want.p);
}

/* strides 1 and 2, dilation 2, pads 0 to 2; output rows narrower than a
 * sliver (several rows in one), wider, and of odd widths; k past one block
 * (C * KH * KW > 256); m past MC and below MR; on 1 and 2 threads */
static void test_conv_bitwise(void **state)
{
	(void)state;
	static const Conv convs[] = {
		/* c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, m */
		{1, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1, 6},		/* lenet conv1 */
		{6, 14, 14, 5, 5, 1, 1, 0, 0, 1, 1, 16},	/* lenet conv2 */
		{16, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 16},	/* unet, OW = 32 */
		{32, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 150},	/* OW = 8, k = 288: two k blocks, m > MC */
		{64, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 5},		/* k = 576, m < MR */
		{3, 13, 37, 3, 5, 1, 1, 2, 1, 1, 1, 7},		/* OW = 37 > NR, odd */
		{5, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1, 9},		/* OW = 3: many rows a sliver */
		{4, 7, 1, 3, 1, 1, 1, 1, 0, 1, 1, 3},		/* OW = 1 */
		{8, 17, 19, 3, 3, 2, 2, 1, 1, 1, 1, 12},	/* stride 2 */
		{3, 16, 21, 3, 3, 1, 2, 0, 2, 1, 1, 4},		/* stride 2 along W only */
		{6, 15, 15, 3, 3, 1, 1, 2, 2, 2, 2, 10},	/* dilation 2 */
		{2, 9, 40, 3, 3, 1, 1, 1, 2, 2, 1, 3},		/* dilation 2 along H only */
		{30, 20, 20, 3, 3, 1, 1, 1, 1, 1, 1, 160},	/* large: on the pool, k = 270 */
		{16, 33, 35, 3, 3, 1, 1, 1, 1, 1, 1, 24},	/* n = 1155, split over columns */
		{2, 3, 3, 5, 5, 1, 1, 2, 2, 1, 1, 2},		/* kernel larger than the image */
		{7, 6, 5, 1, 1, 1, 1, 0, 0, 1, 1, 11},		/* 1 x 1 */
		/* as wide as the image, for the weight gradients' dot products */
		{16, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 16},	/* resnet_mini: 784 positions, 16 lanes */
		{8, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1, 8},		/* unet_tiny */
		{8, 12, 20, 3, 3, 1, 1, 1, 1, 1, 1, 12},	/* 240 positions: 8 lanes, a partial word */
		{4, 10, 9, 3, 3, 1, 1, 2, 2, 2, 2, 4},		/* dilation 2, pad 2 */
		{3, 9, 11, 3, 5, 1, 1, 0, 2, 1, 1, 16},		/* no rows padded, columns padded 2 */
		/* few filters */
		{40, 6, 18, 3, 3, 1, 1, 1, 1, 1, 1, 20},	/* k = 360: two k blocks; 8 + 8 + 4 filters */
		{3, 8, 24, 3, 3, 1, 1, 1, 2, 1, 2, 5},		/* dilation 2 along W */
		{4, 17, 20, 3, 3, 2, 1, 1, 1, 1, 1, 32},	/* stride 2 along H only; 4 x 8 filters */
		{2, 5, 70, 1, 7, 1, 1, 0, 3, 1, 1, 1},		/* 70 columns, 1 x 7 taps; 1 filter */
	};
	static const float scale[][2] = {{1.0f, 0.0f}, {-0.75f, 1.0f}, {1.5f, 0.5f}};
	for (size_t i = 0; i < sizeof convs / sizeof convs[0]; i++)
		for (int transb = 0; transb <= 1; transb++)
			for (int s = 0; s < 3; s++)
				for (int threads = 1; threads <= 2; threads++)
					run_conv(&convs[i], transb, scale[s][0], scale[s][1], threads,
						 300 + i * 6 + (size_t)(transb * 3 + s));
}

/* k = 0 or alpha = 0: C = beta * C, as nnrt_sgemm; m = 0: nothing */
static void test_conv_nothing_to_add(void **state)
{
	(void)state;
	const int64_t g[NNRT_CONV_GEOM] = {1, 1, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1, 2};
	float a[1] = {NAN}, x[2] = {NAN, NAN}, c[2] = {NAN, NAN};
	for (int transb = 0; transb <= 1; transb++) {
		c[0] = c[1] = NAN;
		nnrt_sgemm_conv(transb, 1, 2, 1, 0.0f, a, 1, x, g, 0.0f, c, 2);
		assert_true(c[0] == 0.0f && c[1] == 0.0f);
		c[0] = 2.0f, c[1] = 4.0f;
		nnrt_sgemm_conv(transb, 0, 2, 1, 1.0f, a, 1, x, g, 0.0f, c, 2);
		assert_true(c[0] == 2.0f && c[1] == 4.0f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_by_hand),
		cmocka_unit_test(test_exact_integers),
		cmocka_unit_test(test_random_floats),
		cmocka_unit_test(test_across_blocks),
		cmocka_unit_test(test_nothing_to_add),
		cmocka_unit_test(test_empty_output),
		cmocka_unit_test(test_large_on_threads),
		cmocka_unit_test(test_threads_bitwise_equal),
		cmocka_unit_test(test_conv_bitwise),
		cmocka_unit_test(test_conv_nothing_to_add),
	};
#ifdef NNRT_GEMM_PORTABLE
	return cmocka_run_group_tests_name("gemm, portable kernel", tests, NULL, NULL);
#else
	return cmocka_run_group_tests_name("gemm", tests, NULL, NULL);
#endif
}
