/*
 * bench/gemm.c: nnrt_sgemm against OpenBLAS's cblas_sgemm, in GFLOP/s, on the
 * square sizes 256, 512 and 1024 and on the GEMM shapes of the examples (the
 * MLP's dense layers forward and backward, LeNet's and resnet_mini's
 * convolutions through im2col, forward and backward), at 1 and 2 threads.
 *
 * For each shape and thread count the two libraries are timed in turn, A B A
 * B, for reps rounds (default 15; every shape on 1 thread, then on 2); a round of one library is as many back-to-back calls as
 * fill about 2 ms (after one untimed call). The table shows the median round
 * of each and their ratio; the closing lines check the bar at one
 * thread: the median ratio of the square sizes >= 0.90, of every example
 * shape >= 0.75.
 *
 * A second table times a convolution's forward product both ways on one
 * thread: im2col into a buffer then nnrt_sgemm, against nnrt_sgemm_conv,
 * which packs B's slivers straight from the image (same rounds, interleaved).
 *
 * usage: make bench-gemm (installs libopenblas-dev when missing), or
 *        build/bench/gemm [reps [text]]: with text, only the shapes whose
 *        name contains it (build/bench/gemm 31 "conv1 fwd")
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nnrt.h"

/* OpenBLAS's CBLAS, declared here so the bench needs no cblas.h (Debian's
 * comes from whichever BLAS the alternatives point at); blasint is int */
enum { CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float *a, int lda,
		 const float *b, int ldb, float beta, float *c, int ldc);
void openblas_set_num_threads(int n);
char *openblas_get_corename(void);

typedef struct Shape {
	const char *what;
	int ta, tb;
	int m, n, k;
	int square;		/* in the 0.90 group, else in the 0.75 group */
} Shape;

static const Shape shapes[] = {
	{"square", 0, 0, 256, 256, 256, 1},
	{"square", 0, 0, 512, 512, 512, 1},
	{"square", 0, 0, 1024, 1024, 1024, 1},
	/* mlp, batch 64: y = x w^T (NT); dx = g w (NN); dw = g^T x (TN) */
	{"mlp dense1 fwd", 0, 1, 64, 256, 784, 0},
	{"mlp dense2 fwd", 0, 1, 64, 128, 256, 0},
	{"mlp dense3 fwd", 0, 1, 64, 10, 128, 0},
	{"mlp dense1 dx", 0, 0, 64, 784, 256, 0},
	{"mlp dense2 dx", 0, 0, 64, 256, 128, 0},
	{"mlp dense3 dx", 0, 0, 64, 128, 10, 0},
	{"mlp dense1 dw", 1, 0, 256, 784, 64, 0},
	{"mlp dense2 dw", 1, 0, 128, 256, 64, 0},
	{"mlp dense3 dw", 1, 0, 10, 128, 64, 0},
	/* convolutions per sample: y = w col (NN); dcol = w^T dy (TN); dw = dy col^T (NT) */
	{"lenet conv1 fwd", 0, 0, 6, 784, 25, 0},
	{"lenet conv2 fwd", 0, 0, 16, 100, 150, 0},
	{"lenet conv2 dx", 1, 0, 150, 100, 16, 0},
	{"lenet conv1 dw", 0, 1, 6, 25, 784, 0},
	{"lenet conv2 dw", 0, 1, 16, 150, 100, 0},
	{"resnet 3x3 fwd", 0, 0, 16, 784, 144, 0},
	{"resnet 1x1 16->32 fwd", 0, 0, 32, 784, 16, 0},
	{"resnet 1x1 32->16 fwd", 0, 0, 16, 784, 32, 0},
	{"resnet 3x3 dx", 1, 0, 144, 784, 16, 0},
	{"resnet 3x3 dw", 0, 1, 16, 144, 784, 0},
};
enum { NSHAPES = sizeof shapes / sizeof shapes[0], MAX_REPS = 99 };

typedef struct Problem {
	const Shape *s;
	float *a, *b, *c;
	int lda, ldb;
	int calls;		/* per timed round */
} Problem;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void run(const Problem *p, int openblas)
{
	const Shape *s = p->s;
	if (openblas)
		cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m,
			    s->n, s->k, 1.0f, p->a, p->lda, p->b, p->ldb, 0.0f, p->c, s->n);
	else
		nnrt_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, p->a, p->lda, p->b, p->ldb, 0.0f, p->c, s->n);
}

/* seconds per call over one round */
static double round_time(const Problem *p, int openblas)
{
	run(p, openblas);
	double t = now();
	for (int i = 0; i < p->calls; i++)
		run(p, openblas);
	return (now() - t) / p->calls;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* 64-byte aligned, as nnc's arena places every tensor (both libraries get the same
 * buffers): malloc's 16 bytes made the smallest products' timings depend on where
 * their rows fell against cache lines (mlp dense3 fwd 0.74-0.97 of OpenBLAS over
 * runs of one binary, 0.92-0.94 aligned) */
static float *random_floats(size_t n)
{
	float *x = aligned_alloc(64, (n * sizeof *x + 63) / 64 * 64);
	if (!x) {
		fprintf(stderr, "bench-gemm: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		x[i] = (float)rand() / (float)RAND_MAX - 0.5f;
	return x;
}

/* GFLOP/s of the median round of each library, interleaved */
static void measure(const Shape *s, int threads, int reps, double *gf_blas, double *gf_nnrt)
{
	Problem p = {s, random_floats((size_t)s->m * s->k), random_floats((size_t)s->k * s->n),
		     random_floats((size_t)s->m * s->n), s->ta ? s->m : s->k, s->tb ? s->k : s->n, 1};
	double flops = 2.0 * s->m * s->n * s->k;
	openblas_set_num_threads(threads);
	nnrt_pool_set_threads(threads);
	double once = round_time(&p, 0);
	p.calls = (int)(2e-3 / (once > 1e-7 ? once : 1e-7)) + 1;
	double tb[MAX_REPS], tn[MAX_REPS];
	for (int r = 0; r < reps; r++) {
		tb[r] = round_time(&p, 1);
		tn[r] = round_time(&p, 0);
	}
	*gf_blas = flops / median(tb, reps) * 1e-9;
	*gf_nnrt = flops / median(tn, reps) * 1e-9;
	free(p.a);
	free(p.b);
	free(p.c);
}

/* ---- im2col in memory against nnrt_sgemm_conv ---- */

/* one sample's convolution, square image and kernel, stride 1 */
typedef struct ConvShape {
	const char *what;
	int c, hw, kk, pad, m;
} ConvShape;

static const ConvShape convs[] = {
	{"unet 16->16 32x32 3x3", 16, 32, 3, 1, 16},
	{"unet 16->32 32x32 3x3", 16, 32, 3, 1, 32},
	{"unet 32->32 32x32 3x3", 32, 32, 3, 1, 32},
	{"unet 32->32 16x16 3x3", 32, 16, 3, 1, 32},
	{"lenet conv1 28x28 5x5", 1, 28, 5, 2, 6},
	{"lenet conv2 14x14 5x5", 6, 14, 5, 0, 16},
	{"resnet 16->16 28x28 3x3", 16, 28, 3, 1, 16},
	{"resnet 16->16 16x16 3x3", 16, 16, 3, 1, 16},
	{"resnet 32->32 8x8 3x3", 32, 8, 3, 1, 32},
	{"resnet 64->64 8x8 3x3", 64, 8, 3, 1, 64},
};
enum { NCONVS = sizeof convs / sizeof convs[0] };

/* The column matrix of x as nnc's lowering builds it (compiler/lower.c:
 * im2col_by_spans, im2col): the positions outside the image are zeroed once
 * (b starts zeroed) and never written again; with the output as wide as the
 * image, a tap's row is one contiguous copy of the plane, shifted, and the
 * few columns it wrongly fills are re-zeroed; otherwise row by row. */
static void im2col(const int64_t *g, const float *x, float *b)
{
	int64_t h = g[NNRT_CONV_H], w = g[NNRT_CONV_W], oh = g[NNRT_CONV_OH], ow = g[NNRT_CONV_OW];
	int64_t kh = g[NNRT_CONV_KH], kw = g[NNRT_CONV_KW], ph = g[NNRT_CONV_PH], pw = g[NNRT_CONV_PW];
	for (int64_t ci = 0; ci < g[NNRT_CONV_C]; ci++)
		for (int64_t ky = 0; ky < kh; ky++) {
			int64_t ylo = ph - ky > 0 ? ph - ky : 0, yhi = h + ph - ky < oh ? h + ph - ky : oh;
			const float *plane = x + ci * h * w + (ky - ph) * w;
			for (int64_t kx = 0; kx < kw; kx++, b += oh * ow) {
				int64_t shift = kx - pw, xlo = shift < 0 ? -shift : 0, xhi = shift > 0 ? w - shift : w;
				if (ow == w) {
					/* gcc -O3 makes the emitted loop this memmove */
					int64_t q0 = ylo * w + xlo, q1 = (yhi - 1) * w + xhi;
					if (q1 > q0)
						memcpy(b + q0, plane + shift + q0, (size_t)(q1 - q0) * sizeof *b);
					for (int64_t y = ylo; y < yhi; y++) {
						for (int64_t ox = 0; ox < xlo; ox++)
							b[y * w + ox] = 0.0f;
						for (int64_t ox = xhi; ox < w; ox++)
							b[y * w + ox] = 0.0f;
					}
					continue;
				}
				xhi = xhi < ow ? xhi : ow;
				for (int64_t y = ylo; y < yhi && xhi > xlo; y++)
					memcpy(b + y * ow + xlo, plane + y * w + shift + xlo, (size_t)(xhi - xlo) * sizeof *b);
			}
		}
}

/* microseconds per call of the median round: [0] im2col + nnrt_sgemm, [1] nnrt_sgemm_conv */
static void measure_conv(const ConvShape *s, int reps, double us[2])
{
	int64_t o = s->hw + 2 * s->pad - s->kk + 1;
	const int64_t g[NNRT_CONV_GEOM] = {s->c, s->hw, s->hw, s->kk, s->kk, 1, 1, s->pad, s->pad, 1, 1, o, o};
	int64_t m = s->m, n = o * o, k = (int64_t)s->c * s->kk * s->kk;
	float *a = random_floats((size_t)(m * k)), *x = random_floats((size_t)s->c * s->hw * s->hw);
	float *b = calloc((size_t)(k * n), sizeof *b), *c = random_floats((size_t)(m * n));
	if (!b)
		abort();
	int calls = (int)(2e-3 / (2.0 * m * n * k / 50e9)) + 1;
	double t[2][MAX_REPS];
	for (int r = -1; r < reps; r++)
		for (int way = 0; way < 2; way++) {
			double t0 = now();
			for (int i = 0; i < calls; i++)
				if (way == 0) {
					im2col(g, x, b);
					nnrt_sgemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
				} else
					nnrt_sgemm_conv(0, m, n, k, 1.0f, a, k, x, g, 0.0f, c, n);
			if (r >= 0)	/* round -1 warms the caches */
				t[way][r] = (now() - t0) / calls;
		}
	us[0] = 1e6 * median(t[0], reps);
	us[1] = 1e6 * median(t[1], reps);
	free(a);
	free(x);
	free(b);
	free(c);
}

static void conv_table(int reps, const char *only)
{
	printf("\nconvolution forward, 1 thread, us per call: im2col into memory (as nnc lowers it) + nnrt_sgemm "
	       "against nnrt_sgemm_conv, one image again and again (hot in cache; in training, with each "
	       "sample's image new, the forward convolutions' gain was within noise). With AVX2 or AVX-512, "
	       "nnrt_sgemm_conv computes these 3x3s by Winograd's F(2x2, 3x3) (runtime/winograd.c)\n\n"
	       "| shape | m | n | k | im2col + sgemm | sgemm_conv | ratio |\n"
	       "|---|--:|--:|--:|--:|--:|--:|\n");
	nnrt_pool_set_threads(1);
	for (int i = 0; i < NCONVS; i++) {
		const ConvShape *s = &convs[i];
		if (only && !strstr(s->what, only))
			continue;
		double us[2];
		measure_conv(s, reps, us);
		int o = s->hw + 2 * s->pad - s->kk + 1;
		printf("| %s | %d | %d | %d | %.1f | %.1f | %.2f |\n", s->what, s->m, o * o, s->c * s->kk * s->kk,
		       us[0], us[1], us[0] / us[1]);
	}
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 15;
	if (reps < 1 || reps > MAX_REPS)
		reps = 15;
	srand(1);
	printf("nnrt_sgemm vs OpenBLAS %s (core %s), GFLOP/s, median of %d interleaved rounds\n\n",
#if defined(__AVX512F__) && defined(__AVX512VL__)
	       "(nnrt: AVX-512 kernel)",
#elif defined(__AVX2__) && defined(__FMA__)
	       "(nnrt: AVX2+FMA kernel)",
#else
	       "(nnrt: portable kernel)",
#endif
	       openblas_get_corename(), reps);
	printf("| shape | op | m | n | k | OpenBLAS 1T | nnrt 1T | ratio 1T | OpenBLAS 2T | nnrt 2T | ratio 2T | "
	       "nnrt 2T/1T |\n");
	printf("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
	/* every shape on 1 thread, then every shape on 2: OpenBLAS's workers
	 * spin for a while after a threaded call, and would slow the next
	 * single-threaded rounds of both libraries */
	double gf[2][NSHAPES][2];
	const char *only = argc > 2 ? argv[2] : NULL;
	int count = 0;
	for (int t = 0; t < 2; t++)
		for (int i = 0; i < NSHAPES; i++)
			if (!only || strstr(shapes[i].what, only))
				measure(&shapes[i], t + 1, reps, &gf[t][i][0], &gf[t][i][1]);
	double worst_square = INFINITY, worst_example = INFINITY;
	double log_sum = 0;
	for (int i = 0; i < NSHAPES; i++) {
		const Shape *s = &shapes[i];
		if (only && !strstr(s->what, only))
			continue;
		count++;
		double b1 = gf[0][i][0], n1 = gf[0][i][1], b2 = gf[1][i][0], n2 = gf[1][i][1];
		printf("| %s | %s%s | %d | %d | %d | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.2f |\n", s->what,
		       s->ta ? "T" : "N", s->tb ? "T" : "N", s->m, s->n, s->k, b1, n1, n1 / b1, b2, n2, n2 / b2,
		       n2 / n1);
		double r = n1 / b1;
		log_sum += log(r);
		if (s->square)
			worst_square = r < worst_square ? r : worst_square;
		else
			worst_example = r < worst_example ? r : worst_example;
	}
	printf("\nat 1 thread: worst square ratio %.2f (bar 0.90: %s), worst example ratio %.2f (bar 0.75: %s), "
	       "geometric mean %.2f\n",
	       worst_square, worst_square >= 0.90 ? "met" : "missed", worst_example,
	       worst_example >= 0.75 ? "met" : "missed", exp(log_sum / (count ? count : 1)));
	conv_table(reps, only);
	return 0;
}
