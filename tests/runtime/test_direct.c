/*
 * test_direct.c: nnrt_conv_direct, a convolution of at most 32 taps summed
 * tap by tap from a padded copy of the image, against
 *  - the convolution's definition summed in double (1e-5 of the sum of the
 *    products' magnitudes: any misplaced tap, filter or column is far off);
 *  - nnrt_sgemm on the built column matrix, bitwise, as nnrt.h promises;
 *  - nnrt_sgemm_conv, which must take it (the same bits again).
 * Cases: lenet's first layer (1 channel, 5x5, pad 2, 28x28, 6 filters; with
 * AVX-512 "flat", outputs as wide as the image in one run of vectors),
 * three channels 3x3 (27 taps), 32 taps exactly, filters past a block of 8,
 * rows of 8 columns (the least it takes), of one vector and a few columns
 * more, of several blocks; alpha, beta 0 (C full of NaN), 1 and another;
 * leading dimensions wider than the rows, whose padding holds a sentinel
 * that must survive. Geometries it does not take (33 taps, strides,
 * dilation, 7 columns, asymmetric padding, 17 filters) must return 0 with C
 * untouched.
 * The Makefile also builds this file against direct.c compiled for AVX2 and
 * portable; without AVX2 it takes nothing and the value tests are skipped.
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
	int64_t c, h, w, kh, kw, p, m;
	float alpha, beta;
	int64_t lda_pad, ldc_pad;
} Case;

static float uniform(NnrtRng *r)
{
	return 2.0f * nnrt_rng_uniform(r) - 1.0f;
}

static void im2col(const float *x, const int64_t *g, float *col)
{
	int64_t oh = g[NNRT_CONV_OH], ow = g[NNRT_CONV_OW], h = g[NNRT_CONV_H], w = g[NNRT_CONV_W];
	for (int64_t c = 0; c < g[NNRT_CONV_C]; c++)
		for (int64_t ky = 0; ky < g[NNRT_CONV_KH]; ky++)
			for (int64_t kx = 0; kx < g[NNRT_CONV_KW]; kx++, col += oh * ow)
				for (int64_t oy = 0; oy < oh; oy++)
					for (int64_t ox = 0; ox < ow; ox++) {
						int64_t iy = oy - g[NNRT_CONV_PH] + ky, ix = ox - g[NNRT_CONV_PW] + kx;
						col[oy * ow + ox] = iy >= 0 && iy < h && ix >= 0 && ix < w
									    ? x[(c * h + iy) * w + ix] : 0.0f;
					}
}

/* 1 when nnrt_conv_direct took the case, 0 when it computed nothing */
static int run_case(const Case *t, uint64_t seed)
{
	int64_t oh = t->h + 2 * t->p - t->kh + 1, ow = t->w + 2 * t->p - t->kw + 1, n = oh * ow;
	int64_t k = t->c * t->kh * t->kw, lda = k + t->lda_pad, ldc = n + t->ldc_pad;
	int64_t g[NNRT_CONV_GEOM] = {t->c, t->h, t->w, t->kh, t->kw, 1, 1, t->p, t->p, 1, 1, oh, ow};
	NnrtRng r;
	nnrt_rng_seed(&r, seed, 3);
	size_t cs = (size_t)(t->m * ldc);
	float *a = malloc((size_t)(t->m * lda) * sizeof *a), *x = malloc((size_t)(t->c * t->h * t->w) * sizeof *x);
	float *col = malloc((size_t)(k * n) * sizeof *col), *c = malloc(cs * sizeof *c);
	float *c0 = malloc(cs * sizeof *c0), *cg = malloc(cs * sizeof *cg), *cc = malloc(cs * sizeof *cc);
	assert_true(a && x && col && c && c0 && cg && cc);
	for (int64_t i = 0; i < t->m * lda; i++)
		a[i] = i % lda < k ? uniform(&r) : NAN;
	for (int64_t i = 0; i < t->c * t->h * t->w; i++)
		x[i] = uniform(&r);
	for (size_t i = 0; i < cs; i++)
		c0[i] = (int64_t)i % ldc >= n ? sentinel : t->beta == 0.0f ? NAN : uniform(&r);
	memcpy(c, c0, cs * sizeof *c);
	memcpy(cg, c0, cs * sizeof *c);
	memcpy(cc, c0, cs * sizeof *c);
	int took = nnrt_conv_direct(t->m, t->alpha, a, lda, x, g, t->beta, c, ldc);
	assert_int_equal(took, nnrt_conv_direct_pays(t->m, lda, g));
	im2col(x, g, col);
	nnrt_sgemm(0, 0, t->m, n, k, t->alpha, a, lda, col, n, t->beta, cg, ldc);
	nnrt_sgemm_conv(0, t->m, n, k, t->alpha, a, lda, x, g, t->beta, cc, ldc);
	for (int64_t f = 0; f < t->m; f++)
		for (int64_t p = 0; p < ldc; p++) {
			int64_t i = f * ldc + p;
			if (p >= n) {
				assert_true(c[i] == sentinel && cc[i] == sentinel);
				continue;
			}
			int64_t oy = p / ow, ox = p % ow;
			double sum = 0, mag = 0;
			for (int64_t ci = 0; ci < t->c; ci++)
				for (int64_t ky = 0; ky < t->kh; ky++)
					for (int64_t kx = 0; kx < t->kw; kx++) {
						int64_t iy = oy - t->p + ky, ix = ox - t->p + kx;
						if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
							continue;
						double v = (double)a[f * lda + (ci * t->kh + ky) * t->kw + kx] *
							   x[(ci * t->h + iy) * t->w + ix];
						sum += v;
						mag += fabs(v);
					}
			double old = t->beta == 0.0f ? 0.0 : (double)t->beta * c0[i];	/* beta 0: C's NaN unread */
			double want = t->alpha * sum + old, bound = 1e-5 * (fabs(t->alpha) * mag + fabs(old) + 1e-6);
			if (!took)
				assert_true(c[i] == c0[i] || (isnan(c[i]) && isnan(c0[i])));
			else if (!(fabs(c[i] - want) <= bound) || memcmp(&c[i], &cg[i], sizeof c[i]))
				fail_msg("%ldx%ldx%ld %ldx%ld pad %ld m %ld: filter %ld position %ld: %.9g (%a), definition %.9g, "
					 "GEMM on the built columns %.9g (%a)", (long)t->c, (long)t->h, (long)t->w, (long)t->kh,
					 (long)t->kw, (long)t->p, (long)t->m, (long)f, (long)p, c[i], c[i], want, cg[i], cg[i]);
			if (memcmp(&cc[i], &cg[i], sizeof cc[i]))
				fail_msg("nnrt_sgemm_conv: filter %ld position %ld: %.9g, GEMM %.9g", (long)f, (long)p, cc[i],
					 cg[i]);
		}
	free(a), free(x), free(col), free(c), free(c0), free(cg), free(cc);
	return took;
}

static void test_values(void **state)
{
	(void)state;
	static const Case cases[] = {
		{1, 28, 28, 5, 5, 2, 6, 1.0f, 1.0f, 0, 0},	/* lenet's first layer, the bias in C */
		{1, 28, 28, 5, 5, 2, 6, 1.0f, 0.0f, 0, 0},
		{3, 32, 32, 3, 3, 1, 16, 1.0f, 0.0f, 0, 0},	/* 27 taps, 16 filters: two blocks */
		{2, 12, 12, 4, 4, 0, 9, 0.5f, 0.25f, 3, 5},	/* 32 taps, a block and a filter */
		{1, 10, 10, 3, 3, 0, 1, -1.5f, 1.0f, 0, 7},	/* 8 columns */
		{1, 19, 19, 3, 3, 1, 7, 1.0f, 0.0f, 1, 0},	/* a vector and 3 columns */
		{1, 41, 45, 5, 5, 2, 3, 2.0f, -0.5f, 0, 2},	/* blocks of 32 and 13 columns (AVX-512) */
		{2, 9, 33, 3, 5, 0, 8, 1.0f, 1.0f, 0, 0},	/* a rectangle */
		{2, 9, 9, 3, 3, 1, 5, 1.0f, 0.0f, 0, 1},	/* rows of 9: a vector spans two (AVX-512 flat) */
		{1, 28, 28, 5, 5, 2, 6, 1.0f, 1.0f, 0, 0},	/* lenet's again: the kept masks */
		{1, 28, 28, 3, 3, 1, 4, 1.0f, 0.0f, 0, 0},	/* as many outputs, other masks */
		{1, 64, 64, 5, 5, 2, 2, 1.0f, 0.5f, 0, 0},	/* masks too many to keep, scratch on the heap */
	};
	int took = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		took += run_case(&cases[i], 11 + i);
	if (!took)
		skip();
}

/* not taken: C untouched, 0 returned */
static void test_refuses(void **state)
{
	(void)state;
	float a[64 * 4] = {0}, x[4 * 16 * 16] = {0}, c[8 * 256];
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
		c[i] = sentinel;
	/* 33 taps: 3 channels of 11 x 1 */
	int64_t taps33[NNRT_CONV_GEOM] = {3, 16, 16, 11, 1, 1, 1, 0, 0, 1, 1, 6, 16};
	int64_t stride[NNRT_CONV_GEOM] = {1, 16, 16, 3, 3, 2, 2, 1, 1, 1, 1, 8, 8};
	int64_t dilation[NNRT_CONV_GEOM] = {1, 16, 16, 3, 3, 1, 1, 2, 2, 2, 2, 16, 16};
	int64_t narrow[NNRT_CONV_GEOM] = {1, 9, 7, 3, 3, 1, 1, 1, 1, 1, 1, 9, 7};
	int64_t uneven[NNRT_CONV_GEOM] = {1, 16, 16, 4, 4, 1, 1, 1, 1, 1, 1, 16, 16};	/* "same" of an even kernel */
	const int64_t *gs[] = {taps33, stride, dilation, narrow, uneven};
	for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
		assert_int_equal(nnrt_conv_direct_pays(4, 64, gs[i]), 0);
		assert_int_equal(nnrt_conv_direct(4, 1.0f, a, 64, x, gs[i], 0.0f, c, 256), 0);
	}
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
		assert_true(c[i] == sentinel);
	/* lda shorter than the taps; 17 filters */
	int64_t ok[NNRT_CONV_GEOM] = {1, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, 16, 16};
	assert_int_equal(nnrt_conv_direct_pays(4, 8, ok), 0);
	assert_int_equal(nnrt_conv_direct_pays(17, 9, ok), 0);
	assert_int_equal(nnrt_conv_direct_pays(16, 9, ok), nnrt_conv_direct_pays(4, 9, ok));	/* 1 with AVX2 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_refuses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
