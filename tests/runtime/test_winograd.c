/*
 * test_winograd.c: nnrt_winograd_3x3 and nnrt_winograd_5x5, and their weight
 * gradients nnrt_winograd_3x3_dw and nnrt_winograd_5x5_dw, against the
 * convolution's definition summed in double, over
 * channels and filters from 1 to past a block of 16, images from 1x1 to
 * wider than one vector of tiles (odd, non-square; rows of up to 8 tiles
 * share a vector with the next row's), pads 0 to 2, alpha, beta 0 (C full
 * of NaN), 1 and another, and leading dimensions wider than the rows. An
 * error bound relative to the sum of the products' magnitudes, 1e-5, leaves
 * rounding room and catches any misplaced tap, tile or lane (5x5: relative
 * to the magnitude of the 6x6 patches, see run_case and run_case_dw). Padding of C
 * holds a sentinel that must survive. Geometries they do not take (strides,
 * dilation, other kernels) must return 0 with C untouched. The Makefile
 * also builds this file against winograd.c compiled for AVX2 (8 tiles, or
 * filters, a vector); without AVX2 they take nothing and the value tests are
 * skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nnrt.h"

static const float sentinel = 12345.0f;

typedef struct Case {
	int64_t c, h, w, p, m;
	float alpha, beta;
	int64_t lda_pad, ldc_pad;
	int64_t kk;	/* the kernel's size, 3 or 5 */
} Case;

static float uniform(NnrtRng *r)
{
	return 2.0f * nnrt_rng_uniform(r) - 1.0f;
}

/* 1 when the case ran (AVX-512), 0 when the function took nothing */
static int run_case(const Case *t, uint64_t seed)
{
	int64_t kk = t->kk, taps = kk * kk;
	int64_t oh = t->h + 2 * t->p - (kk - 1), ow = t->w + 2 * t->p - (kk - 1), n = oh * ow, k = taps * t->c;
	int64_t lda = k + t->lda_pad, ldc = n + t->ldc_pad;
	int64_t g[NNRT_CONV_GEOM] = {t->c, t->h, t->w, kk, kk, 1, 1, t->p, t->p, 1, 1, oh, ow};
	NnrtRng r;
	nnrt_rng_seed(&r, seed, 5);
	float *a = malloc((size_t)(t->m * lda) * sizeof *a), *x = malloc((size_t)(t->c * t->h * t->w) * sizeof *x);
	float *c = malloc((size_t)(t->m * ldc) * sizeof *c), *c0 = malloc((size_t)(t->m * ldc) * sizeof *c0);
	assert_true(a && x && c && c0);
	for (int64_t i = 0; i < t->m * lda; i++)
		a[i] = i % lda < k ? uniform(&r) : NAN;
	for (int64_t i = 0; i < t->c * t->h * t->w; i++)
		x[i] = uniform(&r);
	for (int64_t i = 0; i < t->m * ldc; i++)
		c0[i] = i % ldc >= n ? sentinel : t->beta == 0.0f ? NAN : uniform(&r);
	memcpy(c, c0, (size_t)(t->m * ldc) * sizeof *c);
	int ran = kk == 5 ? nnrt_winograd_5x5(t->m, t->alpha, a, lda, x, g, t->beta, c, ldc)
			  : nnrt_winograd_3x3(t->m, t->alpha, a, lda, x, g, t->beta, c, ldc);
	for (int64_t f = 0; ran && f < t->m; f++) {
		for (int64_t j = n; j < ldc; j++)
			if (c[f * ldc + j] != sentinel)
				fail_msg("c=%lld %lldx%lld p=%lld m=%lld: padding of C row %lld written", (long long)t->c,
					 (long long)t->h, (long long)t->w, (long long)t->p, (long long)t->m, (long long)f);
		for (int64_t oy = 0; oy < oh; oy++)
			for (int64_t ox = 0; ox < ow; ox++) {
				double sum = 0.0, mag = 0.0, wide = 0.0;
				for (int64_t ci = 0; ci < t->c; ci++) {
					double wmax = 0.0, patch = 0.0;
					for (int ky = 0; ky < kk; ky++)
						for (int kx = 0; kx < kk; kx++) {
							double wv = a[f * lda + ci * taps + ky * kk + kx];
							wmax = fmax(wmax, fabs(wv));
							int64_t iy = oy - t->p + ky, ix = ox - t->p + kx;
							if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
								continue;
							double v = wv * x[(ci * t->h + iy) * t->w + ix];
							sum += v;
							mag += fabs(v);
						}
					/* 5x5: as for the weight gradients (run_case_dw), the rounding
					 * scales with the whole 6x6 patch under the tile, here times
					 * the filter's largest tap */
					int64_t y0 = oy / 2 * 2 - t->p, x0 = ox / 2 * 2 - t->p;
					for (int64_t py = y0; kk == 5 && py < y0 + 6; py++)
						for (int64_t px = x0; px < x0 + 6; px++)
							if (py >= 0 && py < t->h && px >= 0 && px < t->w)
								patch += fabs(x[(ci * t->h + py) * t->w + px]);
					wide += wmax * patch;
				}
				double old = t->beta == 0.0f ? 0.0 : (double)t->beta * c0[f * ldc + oy * ow + ox];
				double want = t->alpha * sum + old, got = c[f * ldc + oy * ow + ox];
				/* 5x5 measured up to 3.8e-7 of wide; a misplaced tap is off by
				 * about a product, some 1e-2 of wide */
				double bound = (kk == 5 ? 4e-6 * fabs(t->alpha) * wide : 1e-5 * fabs(t->alpha) * mag) +
					       1e-5 * fabs(old) + 1e-30;
				if (!(fabs(got - want) <= bound))
					fail_msg("c=%lld %lldx%lld p=%lld m=%lld alpha=%g beta=%g: C[%lld][%lld][%lld] = %.9g, "
						 "want %.9g (bound %.3g)", (long long)t->c, (long long)t->h, (long long)t->w,
						 (long long)t->p, (long long)t->m, t->alpha, t->beta, (long long)f,
						 (long long)oy, (long long)ox, got, want, bound);
			}
	}
	free(a);
	free(x);
	free(c);
	free(c0);
	return ran;
}

static void test_values(void **state)
{
	(void)state;
	static const Case cases[] = {
		/* c, h, w, p, m, alpha, beta, lda pad, ldc pad, kernel */
		{16, 28, 28, 1, 16, 1.0f, 0.0f, 0, 0, 3},		/* resnet_mini's 3x3 */
		{16, 28, 28, 1, 16, 1.0f, 1.0f, 0, 0, 3},		/* with a bias in C */
		{24, 32, 32, 1, 8, 1.0f, 0.0f, 0, 0, 3},		/* unet_tiny's last 3x3: 16 tiles a row */
		{1, 1, 1, 1, 1, 1.0f, 0.0f, 0, 0, 3},		/* one pixel, one tile, one output */
		{3, 2, 2, 1, 5, 0.5f, -0.75f, 2, 3, 3},
		{5, 3, 3, 0, 3, 1.0f, 0.0f, 0, 1, 3},		/* no pad: one output */
		{4, 7, 9, 1, 17, 1.0f, 1.0f, 1, 2, 3},		/* odd sizes, m past a block of 16 */
		{20, 9, 8, 2, 33, -1.5f, 0.25f, 3, 0, 3},	/* pad 2, blocks 16 + 16 + 1 */
		{33, 31, 35, 1, 12, 1.0f, 0.0f, 0, 5, 3},		/* 18 tiles a row: two vectors */
		{2, 40, 33, 0, 4, 2.0f, 1.0f, 0, 0, 3},		/* 16 tiles and a ragged output column */
		{8, 5, 70, 1, 9, 1.0f, 0.0f, 0, 0, 3},		/* 35 tiles a row: three vectors */
		{8, 16, 16, 1, 16, 1.0f, 1.0f, 0, 0, 3},		/* 8 tiles a row: two rows a vector */
		{6, 13, 14, 1, 7, 1.0f, 0.0f, 0, 2, 3},		/* 7 rows of 7 tiles: the last vector half empty */
		/* 5x5 */
		{6, 14, 14, 0, 16, 1.0f, 1.0f, 0, 0, 5},	/* lenet's second layer, a bias in C */
		{6, 14, 14, 0, 16, 1.0f, 0.0f, 0, 0, 5},
		{1, 5, 5, 0, 1, 1.0f, 0.0f, 0, 0, 5},		/* one output */
		{3, 4, 4, 2, 5, 0.5f, -0.75f, 2, 3, 5},		/* patches mostly outside the image */
		{5, 9, 12, 1, 17, 1.0f, 1.0f, 1, 2, 5},		/* odd output rows, m past a block of 16 */
		{20, 11, 10, 3, 33, -1.5f, 0.25f, 3, 0, 5},	/* pad past the kernel's middle, 16 + 16 + 1 */
		{17, 15, 13, 2, 18, 1.0f, 0.0f, 0, 2, 5},	/* channels past a block of 16 */
		{8, 28, 28, 2, 16, 1.0f, 0.0f, 0, 0, 5},	/* 196 tiles */
	};
	int ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ran += run_case(&cases[i], 100 + i);
	if (!ran)
		skip();
	assert_int_equal(ran, (int)(sizeof cases / sizeof cases[0]));
}

/* nnrt_winograd_3x3_dw and nnrt_winograd_5x5_dw, the weight gradients:
 * C[f][c * kk^2 + tap] = alpha * sum over the outputs of dy[f][o] x[c][o +
 * tap] + beta * C; a holds dy */
static int run_case_dw(const Case *t, uint64_t seed)
{
	int64_t kk = t->kk, taps = kk * kk;
	int64_t oh = t->h + 2 * t->p - (kk - 1), ow = t->w + 2 * t->p - (kk - 1), n = oh * ow, k = taps * t->c;
	int64_t lda = n + t->lda_pad, ldc = k + t->ldc_pad;
	int64_t g[NNRT_CONV_GEOM] = {t->c, t->h, t->w, kk, kk, 1, 1, t->p, t->p, 1, 1, oh, ow};
	NnrtRng r;
	nnrt_rng_seed(&r, seed, 6);
	float *dy = malloc((size_t)(t->m * lda) * sizeof *dy), *x = malloc((size_t)(t->c * t->h * t->w) * sizeof *x);
	float *c = malloc((size_t)(t->m * ldc) * sizeof *c), *c0 = malloc((size_t)(t->m * ldc) * sizeof *c0);
	assert_true(dy && x && c && c0);
	for (int64_t i = 0; i < t->m * lda; i++)
		dy[i] = i % lda < n ? uniform(&r) : NAN;
	for (int64_t i = 0; i < t->c * t->h * t->w; i++)
		x[i] = uniform(&r);
	for (int64_t i = 0; i < t->m * ldc; i++)
		c0[i] = i % ldc >= k ? sentinel : t->beta == 0.0f ? NAN : uniform(&r);
	memcpy(c, c0, (size_t)(t->m * ldc) * sizeof *c);
	int ran = kk == 5 ? nnrt_winograd_5x5_dw(t->m, t->alpha, dy, lda, x, g, t->beta, c, ldc)
			  : nnrt_winograd_3x3_dw(t->m, t->alpha, dy, lda, x, g, t->beta, c, ldc);
	for (int64_t f = 0; ran && f < t->m; f++) {
		for (int64_t j = k; j < ldc; j++)
			if (c[f * ldc + j] != sentinel)
				fail_msg("dw %lldx%lld c=%lld %lldx%lld p=%lld m=%lld: padding of C row %lld written",
					 (long long)kk, (long long)kk, (long long)t->c, (long long)t->h, (long long)t->w, (long long)t->p,
					 (long long)t->m, (long long)f);
		for (int64_t j = 0; j < k; j++) {
			int64_t ci = j / taps, ky = j % taps / kk, kx = j % kk;
			double sum = 0.0, mag = 0.0;
			for (int64_t oy = 0; oy < oh; oy++)
				for (int64_t ox = 0; ox < ow; ox++) {
					int64_t iy = oy - t->p + ky, ix = ox - t->p + kx;
					if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
						continue;
					double v = (double)dy[f * lda + oy * ow + ox] * x[(ci * t->h + iy) * t->w + ix];
					sum += v;
					mag += fabs(v);
				}
			/* 5x5: the transforms mix the whole 6x6 patch under a tile, the taps that
			 * miss its outputs included, and the points 2 and -2 weigh them by up to
			 * 25: the rounding scales with |dy| times what the patch holds (measured
			 * at up to 1.04e-7 of that here; the bound leaves 10x; a misplaced tap
			 * is off by about the sum itself, some 1e-2 of it) */
			double wide = 0.0;
			for (int64_t o = 0; kk == 5 && o < oh * ow; o++) {
				int64_t y0 = o / ow / 2 * 2 - t->p, x0 = o % ow / 2 * 2 - t->p;
				double patch = 0.0;
				for (int64_t py = y0; py < y0 + 6; py++)
					for (int64_t px = x0; px < x0 + 6; px++)
						if (py >= 0 && py < t->h && px >= 0 && px < t->w)
							patch += fabs(x[(ci * t->h + py) * t->w + px]);
				wide += fabs(dy[f * lda + o]) * patch;
			}
			double old = t->beta == 0.0f ? 0.0 : (double)t->beta * c0[f * ldc + j];
			double want = t->alpha * sum + old, got = c[f * ldc + j];
			double bound = (kk == 5 ? 1e-6 * fabs(t->alpha) * wide : 1e-5 * fabs(t->alpha) * mag) +
				       1e-5 * fabs(old) + 1e-30;
			if (!(fabs(got - want) <= bound))
				fail_msg("dw %lldx%lld c=%lld %lldx%lld p=%lld m=%lld alpha=%g beta=%g: C[%lld][%lld] = %.9g, "
					 "want %.9g (bound %.3g)", (long long)kk, (long long)kk, (long long)t->c, (long long)t->h, (long long)t->w,
					 (long long)t->p, (long long)t->m, t->alpha, t->beta, (long long)f, (long long)j,
					 got, want, bound);
		}
	}
	free(dy);
	free(x);
	free(c);
	free(c0);
	return ran;
}

/* filters and channels past a block of 16 and below it, both ways of
 * putting them in lanes, and the forward cases' images */
static void test_weight_gradient(void **state)
{
	(void)state;
	static const Case cases[] = {
		/* c, h, w, p, m, alpha, beta, lda pad, ldc pad, kernel */
		{16, 28, 28, 1, 16, 1.0f, 0.0f, 0, 0, 3},		/* resnet_mini's 3x3 */
		{16, 28, 28, 1, 16, 1.0f, 1.0f, 0, 0, 3},		/* summed over samples */
		{24, 32, 32, 1, 8, 1.0f, 0.0f, 0, 0, 3},		/* 8 filters: channels in the lanes */
		{1, 1, 1, 1, 1, 1.0f, 0.0f, 0, 0, 3},
		{3, 2, 2, 1, 5, 0.5f, -0.75f, 2, 3, 3},
		{5, 3, 3, 0, 3, 1.0f, 0.0f, 0, 1, 3},
		{4, 7, 9, 1, 17, 1.0f, 1.0f, 1, 2, 3},
		{20, 9, 8, 2, 33, -1.5f, 0.25f, 3, 0, 3},
		{33, 31, 35, 1, 12, 1.0f, 0.0f, 0, 5, 3},
		{17, 13, 14, 1, 18, 1.0f, 0.0f, 0, 2, 3},
		/* 5x5 */
		{6, 14, 14, 0, 16, 1.0f, 0.0f, 0, 0, 5},	/* lenet's second layer */
		{6, 14, 14, 0, 16, 1.0f, 1.0f, 0, 0, 5},	/* summed over samples */
		{1, 28, 28, 2, 6, 1.0f, 0.0f, 0, 0, 5},		/* lenet's first: "same", 1 channel, 6 filters */
		{24, 9, 8, 1, 8, 1.0f, 0.0f, 0, 0, 5},		/* 8 filters: channels in the lanes */
		{1, 5, 5, 0, 1, 1.0f, 0.0f, 0, 0, 5},		/* one output */
		{3, 4, 4, 2, 5, 0.5f, -0.75f, 2, 3, 5},		/* patches mostly outside the image */
		{5, 9, 12, 1, 17, 1.0f, 1.0f, 1, 2, 5},		/* odd output rows, m past a block of 16 */
		{20, 11, 10, 3, 33, -1.5f, 0.25f, 3, 0, 5},	/* pad past the kernel's middle, 16 + 16 + 1 */
		{17, 15, 13, 2, 18, 1.0f, 0.0f, 0, 2, 5},	/* channels past a block of 16 */
	};
	int ran = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		ran += run_case_dw(&cases[i], 200 + i);
	if (!ran)
		skip();
	assert_int_equal(ran, (int)(sizeof cases / sizeof cases[0]));
}

/* strides, dilation, other kernels and an output size that does not follow
 * from the image are not theirs to take: 0, and C untouched */
static void test_declines(void **state)
{
	(void)state;
	static const int64_t geoms[][NNRT_CONV_GEOM] = {
		/* c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow */
		{4, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1, 4, 4},
		{4, 8, 8, 3, 3, 1, 1, 2, 2, 2, 2, 8, 8},
		{4, 8, 8, 3, 1, 1, 1, 1, 0, 1, 1, 8, 8},
		{4, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 7, 8},
		{4, 8, 8, 5, 5, 2, 2, 2, 2, 1, 1, 4, 4},
		{4, 8, 8, 5, 5, 1, 1, 4, 4, 2, 2, 8, 8},
		{4, 8, 8, 5, 3, 1, 1, 2, 1, 1, 1, 8, 8},
		{4, 8, 8, 5, 5, 1, 1, 2, 2, 1, 1, 8, 7},
		{4, 8, 8, 5, 5, 1, 1, 2, 2, 1, 1, 8, 8},	/* a 5x5 the 3x3 functions must refuse */
		{4, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8},	/* and a 3x3 the 5x5 ones must */
	};
	enum { N = sizeof geoms / sizeof geoms[0] };
	float a[16 * 100] = {0}, x[4 * 64] = {0}, c[16 * 100];
	for (size_t i = 0; i < N; i++) {
		for (int j = 0; j < 16 * 100; j++)
			c[j] = sentinel;
		if (i != N - 1) {
			assert_int_equal(nnrt_winograd_3x3(4, 1.0f, a, 36, x, geoms[i], 0.0f, c, 64), 0);
			assert_int_equal(nnrt_winograd_pays(4, 36, geoms[i]), 0);
			assert_int_equal(nnrt_winograd_3x3_dw(4, 1.0f, x, 64, x, geoms[i], 0.0f, c, 36), 0);
			assert_int_equal(nnrt_winograd_pays_dw(16, geoms[i]), 0);
		}
		if (i != N - 2) {
			assert_int_equal(nnrt_winograd_5x5(4, 1.0f, a, 100, x, geoms[i], 0.0f, c, 64), 0);
			assert_int_equal(nnrt_winograd_pays_5x5(16, 100, geoms[i]), 0);
			assert_int_equal(nnrt_winograd_5x5_dw(16, 1.0f, a, 64, x, geoms[i], 0.0f, c, 100), 0);
			assert_int_equal(nnrt_winograd_pays_5x5_dw(16, geoms[i]), 0);
		}
		for (int j = 0; j < 16 * 100; j++)
			assert_true(c[j] == sentinel);
	}
}

/* where it pays: a few channels and filters, rows of tiles that fill their vectors */
static void test_pays(void **state)
{
	(void)state;
	int64_t g28[NNRT_CONV_GEOM] = {16, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 28, 28};
	int64_t g16[NNRT_CONV_GEOM] = {16, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16};
	int64_t g8[NNRT_CONV_GEOM] = {16, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8, 8};
	int64_t g4[NNRT_CONV_GEOM] = {16, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4};
	int64_t g1[NNRT_CONV_GEOM] = {1, 28, 28, 3, 3, 1, 1, 1, 1, 1, 1, 28, 28};
	assert_true(nnrt_winograd_pays(16, 144, g28));
	assert_true(nnrt_winograd_pays(16, 144, g16));	/* two rows of 8 tiles a vector */
	assert_false(nnrt_winograd_pays(16, 144, g4));	/* two rows of 2 tiles: half an AVX2 vector or less */
	assert_false(nnrt_winograd_pays(16, 9, g1));	/* one channel */
	assert_false(nnrt_winograd_pays(2, 144, g28));	/* two filters */
	int64_t g16c8[NNRT_CONV_GEOM] = {8, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16};
	assert_true(nnrt_winograd_pays_dw(16, g28));
	assert_true(nnrt_winograd_pays_dw(16, g8));	/* a weight gradient sums over tiles, not lanes */
	assert_false(nnrt_winograd_pays_dw(8, g28));	/* 8 filters */
	assert_false(nnrt_winograd_pays_dw(16, g16c8));	/* 8 channels */
	int64_t lenet2[NNRT_CONV_GEOM] = {6, 14, 14, 5, 5, 1, 1, 0, 0, 1, 1, 10, 10};
	int64_t lenet1[NNRT_CONV_GEOM] = {1, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28};
	int64_t c4[NNRT_CONV_GEOM] = {4, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1, 28, 28};
	assert_true(nnrt_winograd_pays_5x5_dw(16, lenet2));
	assert_false(nnrt_winograd_pays_5x5_dw(8, lenet2));	/* 8 filters: half a vector */
	assert_false(nnrt_winograd_pays_5x5_dw(6, lenet1));	/* one channel */
	assert_false(nnrt_winograd_pays_5x5_dw(16, c4));	/* 4 channels */
	assert_false(nnrt_winograd_pays_5x5_dw(16, g28));	/* 3x3 */
	assert_false(nnrt_winograd_pays_dw(16, lenet2));	/* 5x5 */
}

int main(void)
{
#ifdef NNRT_TEST_AVX2
	/* built against winograd.c compiled for AVX2 (the Makefile's test_winograd_avx2) */
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
		printf("test_winograd_avx2: skipped, this CPU has no AVX2 and FMA\n");
		return 0;
	}
#endif
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_weight_gradient),
		cmocka_unit_test(test_declines),
		cmocka_unit_test(test_pays),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
