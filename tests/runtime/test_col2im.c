/*
 * test_col2im.c: nnrt_sgemm_col2im against its definition, two ways. Bitwise
 * against nnrt_sgemm into a built column matrix followed by the plain
 * scatter (beta times the image, then every column element added into its
 * pixel, row after row of the column matrix), which adds in the same order;
 * and, as a check on that reference too, against the product and the
 * scatter summed in double, within 1e-5 of the sum of the terms'
 * magnitudes. Geometries: lenet's second convolution's input gradient,
 * "same" pads, pads past the kernel, strides and dilations along H (the
 * vector path) and along W (the scalar path), non-square kernels, rows of
 * 1, 16, 17 and 37 columns (one vector, one and a bit, several), and
 * channels past one scratch block; A transposed or not, alpha, beta 0 (the
 * image full of NaN), 1 and 0.5. Every case runs again with every
 * allocation of more than 4 KB failing (the link wraps malloc and
 * aligned_alloc): the scatter in pieces must give the same bits.
 *
 * The Makefile builds this file three times: against the runtime's ISA,
 * against col2im.c built portable (scalar code), and on x86-64 against it
 * built for AVX2 (8 lanes; skipped on a CPU without AVX2 and FMA).
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

/* allocations of more than 4 KB fail while this is set */
static int starved;
void *__real_malloc(size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);

void *__wrap_malloc(size_t size)
{
	return starved && size > 4096 ? NULL : __real_malloc(size);
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
	return starved && size > 4096 ? NULL : __real_aligned_alloc(align, size);
}

typedef struct Case {
	int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
	int64_t k;		/* the product's depth */
	int transa;
	float alpha, beta;
} Case;

static float uniform(NnrtRng *r)
{
	return 2.0f * nnrt_rng_uniform(r) - 1.0f;
}

static void run_case(const Case *t, uint64_t seed)
{
	int64_t oh = (t->h + 2 * t->ph - t->dh * (t->kh - 1) - 1) / t->sh + 1;
	int64_t ow = (t->w + 2 * t->pw - t->dw * (t->kw - 1) - 1) / t->sw + 1;
	int64_t taps = t->kh * t->kw, m = t->c * taps, n = oh * ow, k = t->k, pix = t->c * t->h * t->w;
	int64_t g[NNRT_CONV_GEOM] = {t->c, t->h, t->w, t->kh, t->kw, t->sh, t->sw, t->ph, t->pw, t->dh, t->dw, oh, ow};
	int64_t lda = t->transa ? m + 3 : k + 2, ldb = n + 5;	/* leading dimensions wider than the rows */
	NnrtRng r;
	nnrt_rng_seed(&r, seed, 9);
	float *a = malloc((size_t)((t->transa ? k : m) * lda) * sizeof *a);
	float *b = malloc((size_t)(k * ldb) * sizeof *b), *col = malloc((size_t)(m * n) * sizeof *col);
	float *x0 = malloc((size_t)pix * sizeof *x0), *want = malloc((size_t)pix * sizeof *want);
	float *got = malloc((size_t)pix * sizeof *got);
	double *exact = malloc((size_t)pix * sizeof *exact), *mag = malloc((size_t)pix * sizeof *mag);
	assert_true(a && b && col && x0 && want && got && exact && mag);
	for (int64_t i = 0; i < (t->transa ? k : m) * lda; i++)
		a[i] = uniform(&r);
	for (int64_t i = 0; i < k * ldb; i++)
		b[i] = uniform(&r);
	for (int64_t i = 0; i < pix; i++)
		x0[i] = t->beta == 0.0f ? NAN : uniform(&r);

	/* the reference: the built column matrix, then the scatter */
	nnrt_sgemm(t->transa, 0, m, n, k, t->alpha, a, lda, b, ldb, 0.0f, col, n);
	for (int64_t i = 0; i < pix; i++) {
		want[i] = t->beta == 0.0f ? 0.0f : t->beta == 1.0f ? x0[i] : t->beta * x0[i];
		exact[i] = t->beta == 0.0f ? 0.0 : (double)t->beta * x0[i];
		mag[i] = fabs(exact[i]);
	}
	for (int64_t p = 0; p < m; p++) {
		int64_t ci = p / taps, ky = p / t->kw % t->kh, kx = p % t->kw;
		for (int64_t j = 0; j < n; j++) {
			int64_t iy = j / ow * t->sh - t->ph + ky * t->dh, ix = j % ow * t->sw - t->pw + kx * t->dw;
			if (iy < 0 || iy >= t->h || ix < 0 || ix >= t->w)
				continue;
			int64_t at = (ci * t->h + iy) * t->w + ix;
			want[at] += col[p * n + j];
			for (int64_t q = 0; q < k; q++) {
				double term = (double)t->alpha * (t->transa ? a[q * lda + p] : a[p * lda + q]) * b[q * ldb + j];
				exact[at] += term;
				mag[at] += fabs(term);
			}
		}
	}

	for (int pass = 0; pass < 2; pass++) {
		memcpy(got, x0, (size_t)pix * sizeof *got);
		starved = pass;
		nnrt_sgemm_col2im(t->transa, m, n, k, t->alpha, a, lda, b, ldb, g, t->beta, got);
		starved = 0;
		for (int64_t i = 0; i < pix; i++) {
			if (memcmp(&got[i], &want[i], sizeof got[i]) || fabs(got[i] - exact[i]) > 1e-5 * mag[i] + 1e-30) {
				fail_msg("%s c%ld %ldx%ld k%ldx%ld s%ldx%ld p%ldx%ld d%ldx%ld transa %d beta %g: pixel %ld "
					 "is %.9g, the scatter gives %.9g, exactly %.9g",
					 pass ? "without memory" : "", (long)t->c, (long)t->h, (long)t->w, (long)t->kh,
					 (long)t->kw, (long)t->sh, (long)t->sw, (long)t->ph, (long)t->pw, (long)t->dh,
					 (long)t->dw, t->transa, (double)t->beta, (long)i, (double)got[i], (double)want[i],
					 exact[i]);
			}
		}
	}
	free(a);
	free(b);
	free(col);
	free(x0);
	free(want);
	free(got);
	free(exact);
	free(mag);
}

static void test_values(void **state)
{
	(void)state;
	static const Case cases[] = {
		/* lenet's conv2 input gradient: 16 filters into 6 channels of 14 x 14 */
		{6, 14, 14, 5, 5, 1, 1, 0, 0, 1, 1, 16, 1, 1.0f, 0.0f},
		{6, 14, 14, 5, 5, 1, 1, 0, 0, 1, 1, 16, 1, 1.0f, 1.0f},
		/* "same" pads, rows of 37 and 16 and 17 columns, A not transposed */
		{3, 9, 37, 3, 3, 1, 1, 1, 1, 1, 1, 7, 0, -0.75f, 0.5f},
		{5, 4, 16, 3, 3, 1, 1, 1, 1, 1, 1, 20, 1, 1.0f, 0.0f},
		{2, 6, 17, 5, 5, 1, 1, 2, 2, 1, 1, 3, 0, 1.0f, 1.0f},
		/* pads past the kernel: some rows and columns take no tap */
		{2, 5, 6, 3, 3, 1, 1, 3, 4, 1, 1, 4, 1, 1.0f, 0.0f},
		/* strides and dilations along H (vector rows), along W (scalar) */
		{3, 11, 19, 3, 3, 2, 1, 1, 1, 1, 1, 5, 1, 1.0f, 0.0f},
		{2, 12, 20, 3, 3, 1, 1, 2, 1, 2, 1, 6, 0, 0.5f, 1.0f},
		{3, 11, 19, 3, 3, 2, 2, 1, 1, 1, 1, 5, 1, 1.0f, 0.0f},
		{2, 9, 13, 2, 3, 1, 1, 0, 2, 1, 2, 4, 0, 1.0f, 0.5f},
		{4, 8, 8, 4, 4, 2, 2, 1, 1, 1, 1, 8, 1, 1.0f, 0.0f},	/* an up-convolution's shape */
		/* non-square kernels, one column, one row */
		{3, 7, 1, 3, 1, 1, 1, 1, 0, 1, 1, 5, 1, 1.0f, 0.0f},
		{3, 1, 23, 1, 5, 1, 1, 0, 2, 1, 1, 5, 0, 1.0f, 1.0f},
		/* 12 channels of 32 x 32, 5 x 5: past one scratch block of 2^18 floats */
		{12, 32, 32, 5, 5, 1, 1, 2, 2, 1, 1, 9, 1, 1.0f, 0.0f},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		run_case(&cases[i], 100 + i);
}

/* m or n other than the geometry's, or m or n of 0: the image is left alone */
static void test_shape_mismatch(void **state)
{
	(void)state;
	float a[4] = {1, 2, 3, 4}, b[4] = {1, 1, 1, 1}, x[4] = {7, 7, 7, 7};
	int64_t g[NNRT_CONV_GEOM] = {1, 2, 2, 1, 1, 1, 1, 0, 0, 1, 1, 2, 2};
	nnrt_sgemm_col2im(0, 2, 4, 1, 1.0f, a, 1, b, 4, g, 0.0f, x);
	nnrt_sgemm_col2im(0, 1, 0, 1, 1.0f, a, 1, b, 4, g, 0.0f, x);
	for (int i = 0; i < 4; i++)
		assert_true(x[i] == 7.0f);
	nnrt_sgemm_col2im(0, 1, 4, 1, 2.0f, a, 1, b, 4, g, 0.0f, x);	/* a 1x1 convolution: x = 2 * b */
	for (int i = 0; i < 4; i++)
		assert_true(x[i] == 2.0f);
}

int main(void)
{
#ifdef NNRT_TEST_AVX2
	/* built against col2im.c compiled for AVX2 (the Makefile's test_col2im_avx2) */
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
		printf("test_col2im_avx2: skipped, this CPU has no AVX2 and FMA\n");
		return 0;
	}
#endif
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_shape_mismatch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
