/*
 * col2im.c: nnrt_sgemm_col2im, a product whose C is a column matrix added
 * into an image (col2im): a convolution's input gradient, or a transposed
 * convolution, without the column matrix in the caller's memory.
 *
 * The product goes to nnrt_sgemm, a block of channels at a time, into a
 * scratch column matrix small enough to stay in L2. Then every image row of
 * those channels is written once, as a gather: a row's sum starts from beta
 * times the row (or 0), and adds the column rows that land on it, tap by tap
 * in (ky, kx) order, each shifted by its kx. That is the order of the scatter
 * (for every tap, add its column row into the image), so the image is
 * bitwise what nnrt_sgemm into a built column matrix, then the scatter,
 * gives. The scatter itself read and wrote each image row once per tap, in
 * short runs that overlapped the run before (store forwarding stalls) and
 * that compilers vectorized badly: lenet's second convolution, whose input
 * gradient this is, spent 17% of a training step in it.
 *
 * Rows go by vectors (16 lanes with AVX-512, 8 with AVX2) when the
 * convolution has stride and dilation 1 along W; a column row's lanes
 * outside the row come from a masked load, which never faults. Other
 * geometries, and the portable build, take the same sums in scalar code.
 */
#include <stdint.h>
#include <stdlib.h>

#include "nnrt.h"

#if defined(__AVX2__) && defined(__FMA__) && !defined(NNRT_GEMM_PORTABLE)
#include <immintrin.h>
#if defined(__AVX512F__) && defined(__AVX512VL__)
#define C2I_AVX512 1
#define C2I_AVX2 0
enum { LANES = 16 };
#else
#define C2I_AVX512 0
#define C2I_AVX2 1
enum { LANES = 8 };
#endif
#else
#define C2I_AVX512 0
#define C2I_AVX2 0
enum { LANES = 1 };
#endif

/* scratch column matrices up to this many floats (1 MiB): a block of channels at a time */
enum { BLOCK_FLOATS = 1 << 18 };

typedef struct Geom {
	int64_t c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow;
} Geom;

static Geom geom_of(const int64_t *g)
{
	return (Geom){ g[NNRT_CONV_C], g[NNRT_CONV_H], g[NNRT_CONV_W], g[NNRT_CONV_KH], g[NNRT_CONV_KW],
		       g[NNRT_CONV_SH], g[NNRT_CONV_SW], g[NNRT_CONV_PH], g[NNRT_CONV_PW], g[NNRT_CONV_DH],
		       g[NNRT_CONV_DW], g[NNRT_CONV_OH], g[NNRT_CONV_OW] };
}

/* the column row of tap ky that lands on image row iy, or -1 */
static int64_t tap_row(const Geom *g, int64_t iy, int64_t ky)
{
	int64_t t = iy + g->ph - ky * g->dh;
	if (t < 0 || (g->sh > 1 && t % g->sh))
		return -1;
	if (g->sh > 1)
		t /= g->sh;
	return t < g->oh ? t : -1;
}

/* the start of a row's sum: beta times the image, or 0 without reading it */
static float start(float beta, float x)
{
	return beta == 0.0f ? 0.0f : beta == 1.0f ? x : beta * x;
}

/* the image row of the channel whose column rows start at col (kh kw rows
 * of oh ow); oy[ky] is the column row of tap row ky, or -1; any geometry */
static void row_scalar(const Geom *g, const int64_t *oy, const float *col, float beta, float *row)
{
	for (int64_t ix = 0; ix < g->w; ix++) {
		float s = start(beta, row[ix]);
		for (int64_t ky = 0; ky < g->kh; ky++) {
			if (oy[ky] < 0)
				continue;
			for (int64_t kx = 0; kx < g->kw; kx++) {
				int64_t t = ix + g->pw - kx * g->dw;
				if (t < 0 || (g->sw > 1 && t % g->sw))
					continue;
				if (g->sw > 1)
					t /= g->sw;
				if (t < g->ow)
					s += col[((ky * g->kw + kx) * g->oh + oy[ky]) * g->ow + t];
			}
		}
		row[ix] = s;
	}
}

#if C2I_AVX512
typedef __m512 Vec;
typedef __mmask16 Mask;

/* lanes l < len with 0 <= ox + l < ow */
static inline Mask span(int64_t ox, int64_t len, int64_t ow)
{
	int64_t lo = ox < 0 ? -ox : 0, hi = ow - ox < len ? ow - ox : len;
	return hi <= lo ? 0 : (Mask)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

static inline Vec load(const float *p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void store(float *p, Vec v, Mask m) { _mm512_mask_storeu_ps(p, m, v); }
static inline Vec add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
static inline Vec mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
static inline Vec set1(float x) { return _mm512_set1_ps(x); }
#elif C2I_AVX2
typedef __m256 Vec;
typedef __m256i Mask;

static inline Mask span(int64_t ox, int64_t len, int64_t ow)
{
	int64_t lo = ox < 0 ? -ox : 0, hi = ow - ox < len ? ow - ox : len;
	__m256i l = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
	/* lo <= l < hi: lo - 1 < l and l < hi */
	return _mm256_and_si256(_mm256_cmpgt_epi32(l, _mm256_set1_epi32((int)lo - 1)),
				_mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), l));
}

static inline Vec load(const float *p, Mask m) { return _mm256_maskload_ps(p, m); }
static inline void store(float *p, Vec v, Mask m) { _mm256_maskstore_ps(p, m, v); }
static inline Vec add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
static inline Vec mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
static inline Vec set1(float x) { return _mm256_set1_ps(x); }
#endif

#if C2I_AVX512 || C2I_AVX2
/* Per vector of a row (chunk v, columns from v * LANES) and tap column kx:
 * which lanes of the column row it reads, mask[v * kw + kx]; the same for
 * every row, so made once per call. */
static Mask *masks_of(const Geom *g)
{
	int64_t chunks = (g->w + LANES - 1) / LANES;
	Mask *m = aligned_alloc(64, ((size_t)(chunks * (g->kw + 1)) * sizeof(Mask) + 63) / 64 * 64);
	if (!m)
		return NULL;
	for (int64_t v = 0; v < chunks; v++) {
		int64_t ix = v * LANES, len = g->w - ix < LANES ? g->w - ix : LANES;
		for (int64_t kx = 0; kx < g->kw; kx++)
			m[v * (g->kw + 1) + kx] = span(ix + g->pw - kx, len, g->ow);
		m[v * (g->kw + 1) + g->kw] = span(0, len, len);	/* the row's own lanes */
	}
	return m;
}

/* row_scalar for stride and dilation 1 along W, LANES columns at a time,
 * for R channels at once (their column rows cs apart, their image rows xs
 * apart): R independent sums keep the adds from waiting on each other. oy[ky]
 * is the column row of tap row ky, or -1. A column row's pointer is formed
 * as an address only: lanes outside [0, ow) are masked, so nothing outside
 * the scratch is read. */
static inline __attribute__((always_inline)) void rows_vector(const Geom *g, const Mask *masks, const int64_t *oy,
							      const float *col, int64_t cs, float beta, float *row,
							      int64_t xs, int R)
{
	uintptr_t step = (uintptr_t)(g->oh * g->ow) * sizeof(float), cstep = (uintptr_t)cs * sizeof(float);
	for (int64_t ix = 0, v = 0; ix < g->w; ix += LANES, v++) {
		const Mask *mk = masks + v * (g->kw + 1);
		Mask in = mk[g->kw];
		Vec s[4];
		_Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
			s[r] = beta == 0.0f ? set1(0.0f) : beta == 1.0f ? load(row + r * xs + ix, in)
									  : mul(set1(beta), load(row + r * xs + ix, in));
		for (int64_t ky = 0; ky < g->kh; ky++) {
			if (oy[ky] < 0)
				continue;
			uintptr_t at = (uintptr_t)(col + (ky * g->kw * g->oh + oy[ky]) * g->ow) +
				       (uintptr_t)(ix + g->pw) * sizeof(float);
			for (int64_t kx = 0; kx < g->kw; kx++, at += step - sizeof(float))
				_Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
					s[r] = add(s[r], load((const float *)(at + (uintptr_t)r * cstep), mk[kx]));
		}
		_Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
			store(row + r * xs + ix, s[r], in);
	}
}

/* R = 1 .. 4, each its own unrolled copy */
static void rows_vector_r(const Geom *g, const Mask *masks, const int64_t *oy, const float *col, int64_t cs,
			  float beta, float *row, int64_t xs, int R)
{
	switch (R) {
	case 4: rows_vector(g, masks, oy, col, cs, beta, row, xs, 4); break;
	case 3: rows_vector(g, masks, oy, col, cs, beta, row, xs, 3); break;
	case 2: rows_vector(g, masks, oy, col, cs, beta, row, xs, 2); break;
	default: rows_vector(g, masks, oy, col, cs, beta, row, xs, 1); break;
	}
}
#endif

/* channels [c0, c0 + cn) of the image from their column rows at col */
static void gather(const Geom *g, const void *masks, int64_t *oy, const float *col, float beta, float *x,
		   int64_t c0, int64_t cn)
{
	int64_t rows = g->kh * g->kw * g->oh * g->ow;
	for (int64_t iy = 0; iy < g->h; iy++) {
		for (int64_t ky = 0; ky < g->kh; ky++)
			oy[ky] = tap_row(g, iy, ky);
		int64_t ci = 0;
#if C2I_AVX512 || C2I_AVX2
		if (masks)	/* up to 4 channels' rows at once */
			for (int r; ci < cn; ci += r) {
				r = cn - ci < 4 ? (int)(cn - ci) : 4;
				rows_vector_r(g, masks, oy, col + ci * rows, rows, beta, x + ((c0 + ci) * g->h + iy) * g->w,
					      g->h * g->w, r);
			}
#else
		(void)masks;
#endif
		for (; ci < cn; ci++)
			row_scalar(g, oy, col + ci * rows, beta, x + ((c0 + ci) * g->h + iy) * g->w);
	}
}

/* Without memory for the scratch: the scatter, one column row at a time in
 * pieces of PIECE columns on the stack. gemm.c's kernels sum every element
 * of a product with B not transposed in k order from zero, whatever its
 * size, and the adds come in the same order, so the image is the same as
 * gather's (with OpenBLAS, up to its rounding). */
enum { PIECE = 256 };
static void scatter_in_pieces(int transa, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
			      const float *b, int64_t ldb, const Geom *g, float beta, float *x, int64_t c0, int64_t cn)
{
	float part[PIECE];
	for (int64_t ci = c0; ci < c0 + cn; ci++) {
		float *plane = x + ci * g->h * g->w;
		for (int64_t i = 0; i < g->h * g->w; i++)
			plane[i] = start(beta, plane[i]);
		for (int64_t t = 0; t < g->kh * g->kw; t++) {
			int64_t p = ci * g->kh * g->kw + t, ky = t / g->kw, kx = t % g->kw;
			for (int64_t j0 = 0; j0 < n; j0 += PIECE) {
				int64_t nc = n - j0 < PIECE ? n - j0 : PIECE;
				nnrt_sgemm(transa, 0, 1, nc, k, alpha, transa ? a + p : a + p * lda, lda, b + j0, ldb,
					   0.0f, part, nc);
				for (int64_t j = j0; j < j0 + nc; j++) {
					int64_t iy = j / g->ow * g->sh - g->ph + ky * g->dh;
					int64_t ix = j % g->ow * g->sw - g->pw + kx * g->dw;
					if (iy >= 0 && iy < g->h && ix >= 0 && ix < g->w)
						plane[iy * g->w + ix] += part[j - j0];
				}
			}
		}
	}
}

void nnrt_sgemm_col2im(int transa, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
		       const float *b, int64_t ldb, const int64_t *geom, float beta, float *x)
{
	Geom g = geom_of(geom);
	int64_t taps = g.kh * g.kw;
	if (m <= 0 || n <= 0 || m != g.c * taps || n != g.oh * g.ow)
		return;
	/* channels per block: the scratch of one block stays under BLOCK_FLOATS, or holds one channel */
	int64_t per = taps * n, cb = BLOCK_FLOATS / per;
	if (cb < 1)
		cb = 1;
	if (cb > g.c)
		cb = g.c;
	float *col = malloc((size_t)(cb * per) * sizeof(float));
	int64_t *oy = malloc((size_t)g.kh * sizeof(int64_t));
	void *masks = NULL;
#if C2I_AVX512 || C2I_AVX2
	if (g.sw == 1 && g.dw == 1)
		masks = masks_of(&g);
#endif
	if (!oy) {
		free(col);
		col = NULL;
	}
	for (int64_t c0 = 0; c0 < g.c; c0 += cb) {
		int64_t cn = g.c - c0 < cb ? g.c - c0 : cb;
		if (col) {
			nnrt_sgemm(transa, 0, cn * taps, n, k, alpha, transa ? a + c0 * taps : a + c0 * taps * lda,
				   lda, b, ldb, 0.0f, col, n);
			gather(&g, masks, oy, col, beta, x, c0, cn);
		} else
			scatter_in_pieces(transa, n, k, alpha, a, lda, b, ldb, &g, beta, x, c0, cn);
	}
	free(col);
	free(oy);
	free(masks);
}
