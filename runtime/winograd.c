/*
 * winograd.c: 3x3 convolutions of stride 1 by Winograd's minimal filtering
 * F(2x2, 3x3), for nnrt_sgemm_conv.
 *
 * Each 2x2 block ("tile") of the output is computed from the 4x4 patch d of
 * the image under it as Y = At [(G g Gt) . (Bt d B)] A, with . the product
 * element by element and
 *
 *   Bt = | 1  0 -1  0 |   G = | 1    0    0   |   At = | 1  1  1  0 |
 *        | 0  1  1  0 |       | 1/2  1/2  1/2 |        | 0  1 -1 -1 |
 *        | 0 -1  1  0 |       | 1/2 -1/2  1/2 |
 *        | 0  1  0 -1 |       | 0    0    1   |
 *
 * Summed over the input channels, the 16 elements of the transformed patch
 * become 16 independent products U[xi] (filters x channels) times V[xi]
 * (channels x tiles): 16 multiply-adds per tile and pair of channels where
 * the direct convolution does 36, 2.25 times fewer. The transforms are adds
 * and halvings only, so the result differs from the direct sum by rounding
 * alone (tests/runtime/test_winograd.c bounds it).
 *
 * Layout: a vector holds 16 tiles of one row of tiles (lane l is tile
 * tx0 + l). A patch row of those tiles is the image row's columns
 * 2 tx - PW + j, j = 0..3: two masked loads (columns outside the image read
 * as zeros without being touched) and a permute pick the even or odd ones.
 * Per row of tiles and chunk of 16 tiles, the input transform writes V for
 * every channel (1 KB a channel), then for each block of up to 16 filters
 * the products accumulate in 16 registers, one per filter, and the output
 * transform writes the 2 x 32 outputs straight to C (alpha * Y + beta * C),
 * interleaving the tiles' columns back. U, the filters' transform, is made
 * once per call.
 *
 * Only with AVX-512 (nnrt_winograd_3x3 returns 0 elsewhere, and the direct
 * GEMM computes the product). Results depend on the geometry alone, not on
 * threads: a call runs on its caller's thread.
 */
#include <stdint.h>
#include <stdlib.h>

#include "nnrt.h"

static int applies(int64_t m, int64_t lda, const int64_t *g);

#if defined(__AVX512F__) && defined(__AVX512VL__) && !defined(NNRT_GEMM_PORTABLE)
#include <immintrin.h>

enum { LANES = 16, XI = 16, FB = 16 };	/* tiles a vector, transformed elements, filters a block */

/* U[xi][c][f] (f padded to mp) = (G g Gt)[xi] for g = a[f * lda + c * 9 ..] */
static void filter_transform(int64_t m, int64_t mp, int64_t ch, const float *a, int64_t lda, float *u)
{
	for (int64_t f0 = 0; f0 < mp; f0 += LANES) {
		__mmask16 in = m - f0 >= LANES ? 0xffff : (__mmask16)((1u << (m - f0)) - 1);
		__m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
						 _mm512_set1_epi32((int)lda));
		for (int64_t c = 0; c < ch; c++) {
			const float *base = a + f0 * lda + c * 9;
			__m512 g[9];
#pragma GCC unroll 9
			for (int t = 0; t < 9; t++)
				g[t] = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), in, at, base + t, 4);
			/* t = G g (4 x 3), then u = t Gt (4 x 4) */
			__m512 half = _mm512_set1_ps(0.5f), t4[4][3];
#pragma GCC unroll 3
			for (int j = 0; j < 3; j++) {
				__m512 g0 = g[j], g1 = g[3 + j], g2 = g[6 + j], s = _mm512_add_ps(g0, g2);
				t4[0][j] = g0;
				t4[1][j] = _mm512_mul_ps(half, _mm512_add_ps(s, g1));
				t4[2][j] = _mm512_mul_ps(half, _mm512_sub_ps(s, g1));
				t4[3][j] = g2;
			}
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++) {
				__m512 s = _mm512_add_ps(t4[i][0], t4[i][2]);
				__m512 r[4] = {t4[i][0], _mm512_mul_ps(half, _mm512_add_ps(s, t4[i][1])),
					       _mm512_mul_ps(half, _mm512_sub_ps(s, t4[i][1])), t4[i][2]};
#pragma GCC unroll 4
				for (int j = 0; j < 4; j++)
					_mm512_storeu_ps(u + ((i * 4 + j) * ch + c) * mp + f0, r[j]);
			}
		}
	}
}

/* lanes l with 0 <= col + l < w */
static inline __mmask16 inside(int64_t col, int64_t w)
{
	int64_t lo = col < 0 ? -col : 0, hi = w - col < LANES ? w - col : LANES;
	if (hi <= lo)
		return 0;
	return (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

/* V[xi][c][lane] for the 16 tiles from (ty, tx0): row iy0 + r, columns col0 + 2 l + j */
static void input_transform(const float *x, const int64_t *geom, int64_t iy0, int64_t col0, float *v)
{
	int64_t ch = geom[NNRT_CONV_C], h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W];
	const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
	const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
	__mmask16 m0 = inside(col0, w), m1 = inside(col0 + 16, w), m2 = inside(col0 + 2, w),
		  m3 = inside(col0 + 18, w);
	for (int64_t c = 0; c < ch; c++) {
		__m512 e[4][4];	/* (d B) row by row */
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			int64_t iy = iy0 + r;
			if (iy < 0 || iy >= h) {
#pragma GCC unroll 4
				for (int j = 0; j < 4; j++)
					e[r][j] = _mm512_setzero_ps();
				continue;
			}
			const float *row = x + (c * h + iy) * w + col0;
			__m512 lo = _mm512_maskz_loadu_ps(m0, row), hi = _mm512_maskz_loadu_ps(m1, row + 16);
			__m512 lo2 = _mm512_maskz_loadu_ps(m2, row + 2), hi2 = _mm512_maskz_loadu_ps(m3, row + 18);
			__m512 d0 = _mm512_permutex2var_ps(lo, even, hi), d1 = _mm512_permutex2var_ps(lo, odd, hi);
			__m512 d2 = _mm512_permutex2var_ps(lo2, even, hi2), d3 = _mm512_permutex2var_ps(lo2, odd, hi2);
			e[r][0] = _mm512_sub_ps(d0, d2);
			e[r][1] = _mm512_add_ps(d1, d2);
			e[r][2] = _mm512_sub_ps(d2, d1);
			e[r][3] = _mm512_sub_ps(d1, d3);
		}
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			_mm512_store_ps(v + ((0 * 4 + j) * ch + c) * LANES, _mm512_sub_ps(e[0][j], e[2][j]));
			_mm512_store_ps(v + ((1 * 4 + j) * ch + c) * LANES, _mm512_add_ps(e[1][j], e[2][j]));
			_mm512_store_ps(v + ((2 * 4 + j) * ch + c) * LANES, _mm512_sub_ps(e[2][j], e[1][j]));
			_mm512_store_ps(v + ((3 * 4 + j) * ch + c) * LANES, _mm512_sub_ps(e[1][j], e[3][j]));
		}
	}
}

/* mb[xi][f][lane] = sum over c of U[xi][c][f0 + f] V[xi][c][lane], for NF filters */
static inline __attribute__((always_inline)) void products(int nf, int64_t ch, int64_t mp, const float *u,
							   const float *v, float *mb)
{
	for (int xi = 0; xi < XI; xi++) {
		__m512 acc[FB];
#pragma GCC unroll 16
		for (int f = 0; f < nf; f++)
			acc[f] = _mm512_setzero_ps();
		const float *ux = u + xi * ch * mp, *vx = v + xi * ch * LANES;
		for (int64_t c = 0; c < ch; c++) {
			__m512 b = _mm512_load_ps(vx + c * LANES);
#pragma GCC unroll 16
			for (int f = 0; f < nf; f++)
				acc[f] = _mm512_fmadd_ps(_mm512_set1_ps(ux[c * mp + f]), b, acc[f]);
		}
#pragma GCC unroll 16
		for (int f = 0; f < nf; f++)
			_mm512_store_ps(mb + (xi * FB + f) * LANES, acc[f]);
	}
}

static void products_16(int64_t ch, int64_t mp, const float *u, const float *v, float *mb)
{
	products(16, ch, mp, u, v, mb);
}

static void products_8(int64_t ch, int64_t mp, const float *u, const float *v, float *mb)
{
	products(8, ch, mp, u, v, mb);
}

static void products_4(int64_t ch, int64_t mp, const float *u, const float *v, float *mb)
{
	products(4, ch, mp, u, v, mb);
}

static void products_1(int64_t ch, int64_t mp, const float *u, const float *v, float *mb)
{
	products(1, ch, mp, u, v, mb);
}

/* outputs of filter f: rows oy0, oy0 + 1 (if < OH), columns ox0 .. ox0 + 31 (if < OW) */
static void output_transform(const float *mf, float alpha, float beta, float *c, int64_t ow, int rows,
			     int64_t ox0)
{
	const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
	const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
	__m512 s[4][2];	/* (M A) row by row */
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		__m512 m0 = _mm512_load_ps(mf + (i * 4 + 0) * FB * LANES), m1 = _mm512_load_ps(mf + (i * 4 + 1) * FB * LANES);
		__m512 m2 = _mm512_load_ps(mf + (i * 4 + 2) * FB * LANES), m3 = _mm512_load_ps(mf + (i * 4 + 3) * FB * LANES);
		s[i][0] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
		s[i][1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
	}
	__m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
	__mmask16 k0 = inside(ox0, ow), k1 = inside(ox0 + 16, ow);
	for (int r = 0; r < rows; r++) {
		__m512 y0 = r ? _mm512_sub_ps(_mm512_sub_ps(s[1][0], s[2][0]), s[3][0])
			      : _mm512_add_ps(_mm512_add_ps(s[0][0], s[1][0]), s[2][0]);
		__m512 y1 = r ? _mm512_sub_ps(_mm512_sub_ps(s[1][1], s[2][1]), s[3][1])
			      : _mm512_add_ps(_mm512_add_ps(s[0][1], s[1][1]), s[2][1]);
		float *out = c + r * ow + ox0;
		__m512 a0 = _mm512_mul_ps(va, _mm512_permutex2var_ps(y0, lo, y1));
		__m512 a1 = _mm512_mul_ps(va, _mm512_permutex2var_ps(y0, hi, y1));
		if (beta != 0.0f) {
			a0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k0, out), a0);
			a1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(k1, out + 16), a1);
		}
		_mm512_mask_storeu_ps(out, k0, a0);
		_mm512_mask_storeu_ps(out + 16, k1, a1);
	}
}

int nnrt_winograd_3x3(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc)
{
	int64_t ch = geom[NNRT_CONV_C], oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW];
	if (!applies(m, lda, geom))
		return 0;
	int64_t mp = (m + LANES - 1) / LANES * LANES;
	size_t floats = (size_t)(XI * ch * mp + XI * ch * LANES + XI * FB * LANES);
	float *u = aligned_alloc(64, floats * sizeof *u);
	if (!u)
		return 0;
	float *v = u + XI * ch * mp, *mb = v + XI * ch * LANES;
	filter_transform(m, mp, ch, a, lda, u);
	int64_t th = (oh + 1) / 2, tw = (ow + 1) / 2;
	for (int64_t ty = 0; ty < th; ty++) {
		int rows = 2 * ty + 1 < oh ? 2 : 1;
		for (int64_t tx0 = 0; tx0 < tw; tx0 += LANES) {
			input_transform(x, geom, 2 * ty - geom[NNRT_CONV_PH], 2 * tx0 - geom[NNRT_CONV_PW], v);
			for (int64_t f0 = 0; f0 < m;) {
				int64_t left = m - f0;
				int nf = left >= 16 ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : 1;
				const float *uf = u + f0;
				if (nf == 16)
					products_16(ch, mp, uf, v, mb);
				else if (nf == 8)
					products_8(ch, mp, uf, v, mb);
				else if (nf == 4)
					products_4(ch, mp, uf, v, mb);
				else
					products_1(ch, mp, uf, v, mb);
				for (int f = 0; f < nf; f++)
					output_transform(mb + f * LANES, alpha, beta, c + (f0 + f) * ldc + 2 * ty * ow, ow,
							 rows, 2 * tx0);
				f0 += nf;
			}
		}
	}
	free(u);
	return 1;
}

#else

int nnrt_winograd_3x3(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc)
{
	(void)m, (void)alpha, (void)a, (void)lda, (void)x, (void)geom, (void)beta, (void)c, (void)ldc;
	return 0;
}

#endif

/* a 3x3 convolution of stride and dilation 1 whose sizes the scratch indexes take */
static int applies(int64_t m, int64_t lda, const int64_t *g)
{
	return g[NNRT_CONV_KH] == 3 && g[NNRT_CONV_KW] == 3 && g[NNRT_CONV_SH] == 1 && g[NNRT_CONV_SW] == 1 &&
	       g[NNRT_CONV_DH] == 1 && g[NNRT_CONV_DW] == 1 && g[NNRT_CONV_OH] == g[NNRT_CONV_H] + 2 * g[NNRT_CONV_PH] - 2 &&
	       g[NNRT_CONV_OW] == g[NNRT_CONV_W] + 2 * g[NNRT_CONV_PW] - 2 && g[NNRT_CONV_OH] >= 1 &&
	       g[NNRT_CONV_OW] >= 1 && m >= 1 && m <= 1 << 16 && g[NNRT_CONV_C] >= 1 && g[NNRT_CONV_C] <= 1 << 16 &&
	       lda >= 9 * g[NNRT_CONV_C] && lda <= INT32_MAX / 16;
}

/*
 * Measured against nnrt_sgemm_conv's direct product, one thread, AVX-512
 * (Zen 4), channels -> filters at the output's size: 16 -> 16 and 64 -> 64
 * at 28x28 1.84x and 1.72x, 24 -> 8 at 32x32 2.0x; at 16x16 (8 tiles a row,
 * half the lanes idle) 0.96-1.15x, at 8x8 0.57-0.68x; one channel 0.97x. It
 * pays with a few channels and filters and rows of tiles that fill most of
 * their vectors.
 */
int nnrt_winograd_pays(int64_t m, int64_t lda, const int64_t *geom)
{
	if (!applies(m, lda, geom) || m < 4 || geom[NNRT_CONV_C] < 4)
		return 0;
	int64_t tw = (geom[NNRT_CONV_OW] + 1) / 2, lanes = (tw + 15) / 16 * 16;
	return 10 * tw >= 7 * lanes;
}
