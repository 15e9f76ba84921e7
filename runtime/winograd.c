/*
 * winograd.c: 3x3 convolutions of stride 1 and their weight gradients by
 * Winograd's minimal filtering F(2x2, 3x3), and 5x5 ones and their weight
 * gradients by F(2x2, 5x5) (at the end), for nnrt_sgemm_conv.
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
 * Layout (AVX-512): a vector holds 16 tiles, lanes 0-7 and 8-15 two runs of
 * 8 along a row of tiles (Tiles): the next 8 of the same row, or in rows of
 * at most 8 tiles the next row, so 16x16 outputs fill their vectors too. A run's
 * patch row is the image row's columns 2 tx - PW + j, j = 0..3: masked loads
 * (columns outside the image read as zeros without being touched) and a
 * permute pick the even or odd ones. Per vector of tiles, the input
 * transform writes V for every channel (1 KB a channel), then for each block
 * of up to 16 filters the products accumulate in 16 registers, one per
 * filter, and the output transform writes the outputs straight to C
 * (alpha * Y + beta * C), interleaving the tiles' columns back. U, the
 * filters' transform, is made once per call.
 *
 * The weight gradient (nnrt_winograd_3x3_dw) runs the adjoints the other
 * way round; see "The weight gradient" below.
 *
 * With AVX-512, 16 tiles a vector; with AVX2, 8 (halves of 4). Elsewhere
 * the functions return 0 and the GEMM computes the product. Results depend on the geometry alone, not on
 * threads: a call runs on its caller's thread.
 */
#include <stdint.h>
#include <stdlib.h>

#include "nnrt.h"
#include "vec.h"

static int applies_k(int64_t kk, int64_t m, int64_t lda, const int64_t *g);
static int applies(int64_t m, int64_t lda, const int64_t *g) { return applies_k(3, m, lda, g); }

#define WINO_VEC NNRT_VEC

/* tiles a vector (16 with AVX-512, 8 with AVX2), transformed elements, filters a block */
enum { LANES = WINO_VEC ? WINO_VEC : 16, XI = 16, FB = LANES };

/* n channels or filters rounded up to whole vectors */
static int64_t vectors(int64_t n)
{
	return (n + LANES - 1) / LANES * LANES;
}

/* rows of at most half a vector of tiles share a vector with the next row's */
static int narrow(int64_t tw)
{
	return tw <= LANES / 2;
}

#if WINO_VEC

/*
 * The vector operations the transforms need besides vec.h's. A
 * "half" is LANES / 2 tiles: even and odd take a half's even (odd) elements
 * from each of two vectors, zip_lo and zip_hi put two vectors' halves back
 * side by side, element by element.
 */
#if WINO_VEC == 16
static inline Vec v_even(Vec a, Vec b)
{
	return _mm512_permutex2var_ps(a, _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0), b);
}

static inline Vec v_odd(Vec a, Vec b)
{
	return _mm512_permutex2var_ps(a, _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1), b);
}

static inline Vec v_zip_lo(Vec a, Vec b)
{
	return _mm512_permutex2var_ps(a, _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0), b);
}

static inline Vec v_zip_hi(Vec a, Vec b)
{
	return _mm512_permutex2var_ps(a, _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8), b);
}

/* lanes l < count: base[l * stride], the others 0 */
static inline Vec v_gather(const float *base, int64_t stride, int64_t count)
{
	__m512i at = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
					_mm512_set1_epi32((int)stride));
	return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), v_span(0, count < LANES ? count : LANES), at, base, 4);
}
#else
/* a's even elements, then b's: shuffle within 128-bit lanes, then order the 64-bit pairs */
static inline Vec v_even(Vec a, Vec b)
{
	return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xd8));
}

static inline Vec v_odd(Vec a, Vec b)
{
	return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xdd)), 0xd8));
}

static inline Vec v_zip_lo(Vec a, Vec b)
{
	return _mm256_permute2f128_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b), 0x20);
}

static inline Vec v_zip_hi(Vec a, Vec b)
{
	return _mm256_permute2f128_ps(_mm256_unpacklo_ps(a, b), _mm256_unpackhi_ps(a, b), 0x31);
}

static inline Vec v_gather(const float *base, int64_t stride, int64_t count)
{
	__m256i at = _mm256_mullo_epi32(_mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0), _mm256_set1_epi32((int)stride));
	return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), base, at,
					_mm256_castsi256_ps(v_span(0, count < LANES ? count : LANES)), 4);
}
#endif

/* lanes l with 0 <= col + l < w */
static inline Lanes inside(int64_t col, int64_t w)
{
	int64_t lo = col < 0 ? -col : 0, hi = w - col < LANES ? w - col : LANES;
	return v_span(lo, hi);
}

/* floats of scratch on a 64-byte boundary; aligned_alloc wants the size a multiple of it */
static float *scratch(size_t floats)
{
	return aligned_alloc(64, (floats * sizeof(float) + 63) / 64 * 64);
}

/* U[xi][c][f] (f padded to mp) = (G g Gt)[xi] for g = a[f * lda + c * 9 ..] */
static void filter_transform(int64_t m, int64_t mp, int64_t ch, const float *a, int64_t lda, float *u)
{
	Vec half = v_set1(0.5f);
	for (int64_t f0 = 0; f0 < mp; f0 += LANES)
		for (int64_t c = 0; c < ch; c++) {
			const float *base = a + f0 * lda + c * 9;
			Vec g[9];
#pragma GCC unroll 9
			for (int t = 0; t < 9; t++)
				g[t] = v_gather(base + t, lda, m - f0);
			/* t = G g (4 x 3), then u = t Gt (4 x 4) */
			Vec t4[4][3];
#pragma GCC unroll 3
			for (int j = 0; j < 3; j++) {
				Vec g0 = g[j], g1 = g[3 + j], g2 = g[6 + j], s = v_add(g0, g2);
				t4[0][j] = g0;
				t4[1][j] = v_mul(half, v_add(s, g1));
				t4[2][j] = v_mul(half, v_sub(s, g1));
				t4[3][j] = g2;
			}
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++) {
				Vec s = v_add(t4[i][0], t4[i][2]);
				Vec r[4] = {t4[i][0], v_mul(half, v_add(s, t4[i][1])), v_mul(half, v_sub(s, t4[i][1])),
					    t4[i][2]};
#pragma GCC unroll 4
				for (int j = 0; j < 4; j++)
					v_store(u + ((i * 4 + j) * ch + c) * mp + f0, r[j]);
			}
		}
}

/*
 * The tiles of a vector, as two halves of LANES / 2: lanes 0 .. LANES/2 - 1
 * are tiles (ty[0], tx[0] + l), the others tiles (ty[1], tx[1] + l -
 * LANES/2). In a row of more than LANES / 2 tiles the second half is the
 * next tiles of the same row; in a narrower one (16x16 outputs with
 * AVX-512), the next row of tiles, so the lanes stay busy.
 */
typedef struct Tiles {
	int64_t ty[2], tx[2];
} Tiles;

/* LANES floats of row iy from column col, zero outside the image */
static inline __attribute__((always_inline)) Vec image_row(const float *plane, int64_t h, int64_t w, int64_t iy,
							    int64_t col)
{
	if (iy < 0 || iy >= h)
		return v_zero();
	return v_load_in(inside(col, w), plane + iy * w + col);
}

/* V[xi][c][lane] = (Bt d B)[xi] for each lane's tile: d[r][j] = x[c][2 ty - PH + r][2 tx - PW + j] */
static void input_transform(const float *x, const int64_t *geom, const Tiles *t, float *v)
{
	int64_t ch = geom[NNRT_CONV_C], h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W];
	int64_t iy0 = 2 * t->ty[0] - geom[NNRT_CONV_PH], iy1 = 2 * t->ty[1] - geom[NNRT_CONV_PH];
	int64_t col0 = 2 * t->tx[0] - geom[NNRT_CONV_PW], col1 = 2 * t->tx[1] - geom[NNRT_CONV_PW];
	for (int64_t c = 0; c < ch; c++) {
		const float *plane = x + c * h * w;
		Vec e[4][4];	/* (d B) row by row */
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			Vec lo = image_row(plane, h, w, iy0 + r, col0), hi = image_row(plane, h, w, iy1 + r, col1);
			Vec lo2 = image_row(plane, h, w, iy0 + r, col0 + 2), hi2 = image_row(plane, h, w, iy1 + r, col1 + 2);
			Vec d0 = v_even(lo, hi), d1 = v_odd(lo, hi), d2 = v_even(lo2, hi2), d3 = v_odd(lo2, hi2);
			e[r][0] = v_sub(d0, d2);
			e[r][1] = v_add(d1, d2);
			e[r][2] = v_sub(d2, d1);
			e[r][3] = v_sub(d1, d3);
		}
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			v_store(v + ((0 * 4 + j) * ch + c) * LANES, v_sub(e[0][j], e[2][j]));
			v_store(v + ((1 * 4 + j) * ch + c) * LANES, v_add(e[1][j], e[2][j]));
			v_store(v + ((2 * 4 + j) * ch + c) * LANES, v_sub(e[2][j], e[1][j]));
			v_store(v + ((3 * 4 + j) * ch + c) * LANES, v_sub(e[1][j], e[3][j]));
		}
	}
}

/* mb[xi][f][lane] = sum over c of U[xi][c][f0 + f] V[xi][c][lane], for NF filters */
static inline __attribute__((always_inline)) void products(int nf, int64_t ch, int64_t mp, const float *u,
							   const float *v, float *mb)
{
	for (int xi = 0; xi < XI; xi++) {
		Vec acc[FB];
#pragma GCC unroll 16
		for (int f = 0; f < nf; f++)
			acc[f] = v_zero();
		const float *ux = u + xi * ch * mp, *vx = v + xi * ch * LANES;
		for (int64_t c = 0; c < ch; c++) {
			Vec b = v_load(vx + c * LANES);
#pragma GCC unroll 16
			for (int f = 0; f < nf; f++)
				acc[f] = v_fma(v_set1(ux[c * mp + f]), b, acc[f]);
		}
#pragma GCC unroll 16
		for (int f = 0; f < nf; f++)
			v_store(mb + (xi * FB + f) * LANES, acc[f]);
	}
}

#define PRODUCTS(NF)                                                                              \
	static void products_##NF(int64_t ch, int64_t mp, const float *u, const float *v, float *mb) \
	{                                                                                         \
		products(NF, ch, mp, u, v, mb);                                                   \
	}
#if WINO_VEC == 16
PRODUCTS(16)
#endif
PRODUCTS(8)
PRODUCTS(4)
PRODUCTS(1)

/* the outputs of one filter's tiles t (a half's LANES columns of each of its
 * rows 2 ty, 2 ty + 1 inside OH x OW) in its plane c: alpha * (At M A) + beta * c */
static void output_transform(const float *mf, float alpha, float beta, float *c, int64_t oh, int64_t ow,
			     const Tiles *t)
{
	Vec s[4][2];	/* (M A) row by row */
#pragma GCC unroll 4
	for (int i = 0; i < 4; i++) {
		Vec m0 = v_load(mf + (i * 4 + 0) * FB * LANES), m1 = v_load(mf + (i * 4 + 1) * FB * LANES);
		Vec m2 = v_load(mf + (i * 4 + 2) * FB * LANES), m3 = v_load(mf + (i * 4 + 3) * FB * LANES);
		s[i][0] = v_add(v_add(m0, m1), m2);
		s[i][1] = v_sub(v_sub(m1, m2), m3);
	}
	Vec va = v_set1(alpha), vb = v_set1(beta);
#pragma GCC unroll 2
	for (int r = 0; r < 2; r++) {
		Vec y0 = r ? v_sub(v_sub(s[1][0], s[2][0]), s[3][0]) : v_add(v_add(s[0][0], s[1][0]), s[2][0]);
		Vec y1 = r ? v_sub(v_sub(s[1][1], s[2][1]), s[3][1]) : v_add(v_add(s[0][1], s[1][1]), s[2][1]);
		Vec half[2] = {v_zip_lo(y0, y1), v_zip_hi(y0, y1)};
#pragma GCC unroll 2
		for (int q = 0; q < 2; q++) {
			int64_t oy = 2 * t->ty[q] + r, ox = 2 * t->tx[q];
			Lanes k = inside(ox, ow);
			if (oy >= oh || v_none(k))
				continue;
			v_put_in(c + oy * ow + ox, k, v_mul(va, half[q]), vb, beta);
		}
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
	float *u = scratch(floats);
	if (!u)
		return 0;
	float *v = u + XI * ch * mp, *mb = v + XI * ch * LANES;
	filter_transform(m, mp, ch, a, lda, u);
	int64_t th = (oh + 1) / 2, tw = (ow + 1) / 2, wide = !narrow(tw);
	for (int64_t ty = 0; ty < th; ty += wide ? 1 : 2)
		for (int64_t tx0 = 0; tx0 < tw; tx0 += LANES) {
			Tiles t = {{ty, wide ? ty : ty + 1}, {tx0, wide ? tx0 + LANES / 2 : tx0}};
			input_transform(x, geom, &t, v);
			for (int64_t f0 = 0; f0 < m;) {
				int64_t left = m - f0;
				int nf = left >= FB ? FB : left >= 8 ? 8 : left >= 4 ? 4 : 1;
				const float *uf = u + f0;
#if WINO_VEC == 16
				if (nf == 16)
					products_16(ch, mp, uf, v, mb);
				else
#endif
				if (nf == 8)
					products_8(ch, mp, uf, v, mb);
				else if (nf == 4)
					products_4(ch, mp, uf, v, mb);
				else
					products_1(ch, mp, uf, v, mb);
				for (int f = 0; f < nf; f++)
					output_transform(mb + f * LANES, alpha, beta, c + (f0 + f) * ldc, oh, ow, &t);
				f0 += nf;
			}
		}
	free(u);
	return 1;
}

#endif

#if WINO_VEC
/*
 * The weight gradient. dW = Gt dU G with dU[xi] = sum over the tiles of
 * dM[xi] V[xi]^T, dM = A dY At the adjoint of the output transform: the
 * products sum over tiles, so here a vector holds LANES filters, not tiles,
 * and the sums need no reduction across lanes. The image and dy are copied
 * channels-last first (a tile's patch is then one vector a position), the
 * transforms of every tile are kept (vt, dmt), and for each xi LANES
 * channels at a time accumulate in registers over all tiles.
 */

#if WINO_VEC == 16
/* r[i][j] := r[j][i]: pairs of floats, of float pairs (doubles), then of 128-bit lanes */
static inline __attribute__((always_inline)) void transpose(Vec r[16])
{
	__m512 t[16], u[4];
#pragma GCC unroll 8
	for (int i = 0; i < 16; i += 2) {
		t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
	}
	/* r[4 g + j], 128-bit lane k: column 4 k + j of rows 4 g .. 4 g + 3 */
#pragma GCC unroll 4
	for (int g = 0; g < 16; g += 4) {
		__m512d a = _mm512_castps_pd(t[g]), b = _mm512_castps_pd(t[g + 1]);
		__m512d c = _mm512_castps_pd(t[g + 2]), d = _mm512_castps_pd(t[g + 3]);
		r[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
		r[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
		r[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
		r[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
	}
	for (int j = 0; j < 4; j++)
		t[j] = r[j], t[4 + j] = r[4 + j], t[8 + j] = r[8 + j], t[12 + j] = r[12 + j];
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		u[0] = _mm512_shuffle_f32x4(t[j], t[4 + j], 0x44);
		u[1] = _mm512_shuffle_f32x4(t[j], t[4 + j], 0xee);
		u[2] = _mm512_shuffle_f32x4(t[8 + j], t[12 + j], 0x44);
		u[3] = _mm512_shuffle_f32x4(t[8 + j], t[12 + j], 0xee);
		r[j] = _mm512_shuffle_f32x4(u[0], u[2], 0x88);
		r[4 + j] = _mm512_shuffle_f32x4(u[0], u[2], 0xdd);
		r[8 + j] = _mm512_shuffle_f32x4(u[1], u[3], 0x88);
		r[12 + j] = _mm512_shuffle_f32x4(u[1], u[3], 0xdd);
	}
}

#else
/* r[i][j] := r[j][i] for 8 x 8: pairs of floats, of float pairs, then of 128-bit halves */
static inline __attribute__((always_inline)) void transpose(Vec r[8])
{
	__m256 t[8], u[8];
#pragma GCC unroll 4
	for (int i = 0; i < 8; i += 2) {
		t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
		t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
	}
	/* u[4 g + j], 128-bit half k: column 4 k + j of rows 4 g .. 4 g + 3 */
#pragma GCC unroll 2
	for (int g = 0; g < 8; g += 4) {
		u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
		u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xee);
		u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
		u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xee);
	}
#pragma GCC unroll 4
	for (int j = 0; j < 4; j++) {
		r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
		r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
	}
}
#endif

/* xt[p * ld + c] = x[c * plane + p], c < rows, p < n; lanes from rows to ld are zero */
static void channels_last(const float *x, int64_t rows, int64_t plane, int64_t n, int64_t ld, float *xt)
{
	for (int64_t c0 = 0; c0 < ld; c0 += LANES)
		for (int64_t p0 = 0; p0 < n; p0 += LANES) {
			Vec r[LANES];
			int64_t np = n - p0 < LANES ? n - p0 : LANES;
			Lanes in = v_span(0, np);
#pragma GCC unroll 16
			for (int i = 0; i < LANES; i++)
				r[i] = c0 + i < rows ? v_load_in(in, x + (c0 + i) * plane + p0) : v_zero();
			transpose(r);
			for (int64_t j = 0; j < np; j++)
				if (ld - c0 >= LANES)
					v_store(xt + (p0 + j) * ld + c0, r[j]);
				else	/* rows of half a vector (pairs_cp) */
					v_store_half(xt + (p0 + j) * ld + c0, r[j]);
		}
}

/* LANES channels (or filters) of position (y, x) of a channels-last plane of h x w, zero outside it */
static inline __attribute__((always_inline)) Vec position(const float *xt, int64_t ld, int64_t h, int64_t w,
							   int64_t y, int64_t x)
{
	if (y < 0 || y >= h || x < 0 || x >= w)
		return v_zero();
	return v_load(xt + (y * w + x) * ld);
}

/* vt[xi][t][c] = (Bt d B)[xi] of tile t for 16 channels from xt's lane 0 (ld apart) */
static void input_transform_cl(const float *xt, int64_t ld, const int64_t *geom, int64_t tiles, float *vt)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], tw = (geom[NNRT_CONV_OW] + 1) / 2;
	for (int64_t t = 0; t < tiles; t++) {
		int64_t iy = 2 * (t / tw) - geom[NNRT_CONV_PH], ix = 2 * (t % tw) - geom[NNRT_CONV_PW];
		Vec e[4][4];
#pragma GCC unroll 4
		for (int r = 0; r < 4; r++) {
			Vec d0 = position(xt, ld, h, w, iy + r, ix), d1 = position(xt, ld, h, w, iy + r, ix + 1);
			Vec d2 = position(xt, ld, h, w, iy + r, ix + 2), d3 = position(xt, ld, h, w, iy + r, ix + 3);
			e[r][0] = v_sub(d0, d2);
			e[r][1] = v_add(d1, d2);
			e[r][2] = v_sub(d2, d1);
			e[r][3] = v_sub(d1, d3);
		}
		float *o = vt + t * ld;
		int64_t xs = tiles * ld;
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			v_store(o + (0 * 4 + j) * xs, v_sub(e[0][j], e[2][j]));
			v_store(o + (1 * 4 + j) * xs, v_add(e[1][j], e[2][j]));
			v_store(o + (2 * 4 + j) * xs, v_sub(e[2][j], e[1][j]));
			v_store(o + (3 * 4 + j) * xs, v_sub(e[1][j], e[3][j]));
		}
	}
}

/* dmt[xi][t][f] = (A dY At)[xi] of tile t for 16 filters from dyt's lane 0 (ld apart), dY its 2x2 of dy
 * (zero outside OH x OW): the adjoint of output_transform */
static void output_adjoint_cl(const float *dyt, int64_t ld, const int64_t *geom, int64_t tiles, float *dmt)
{
	int64_t oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW], tw = (ow + 1) / 2;
	for (int64_t t = 0; t < tiles; t++) {
		int64_t oy = 2 * (t / tw), ox = 2 * (t % tw);
		Vec p[4][2];	/* A dY */
#pragma GCC unroll 2
		for (int s = 0; s < 2; s++) {
			Vec d0 = position(dyt, ld, oh, ow, oy, ox + s), d1 = position(dyt, ld, oh, ow, oy + 1, ox + s);
			p[0][s] = d0;
			p[1][s] = v_add(d0, d1);
			p[2][s] = v_sub(d0, d1);
			p[3][s] = v_sub(v_zero(), d1);
		}
		float *o = dmt + t * ld;
		int64_t xs = tiles * ld;
#pragma GCC unroll 4
		for (int i = 0; i < 4; i++) {
			v_store(o + (i * 4 + 0) * xs, p[i][0]);
			v_store(o + (i * 4 + 1) * xs, v_add(p[i][0], p[i][1]));
			v_store(o + (i * 4 + 2) * xs, v_sub(p[i][0], p[i][1]));
			v_store(o + (i * 4 + 3) * xs, v_sub(v_zero(), p[i][1]));
		}
	}
}

/* du[c][f-lanes] = sum over tiles t of v[t][c] dm[t][f-lanes], for NC channels (rows of v and
 * dm ldv and ldm apart, rows of du ldu apart) */
static inline __attribute__((always_inline)) void products_dw(int nc, int64_t tiles, const float *v, int64_t ldv,
							      const float *dm, int64_t ldm, float *du, int64_t ldu)
{
	Vec acc[FB];
#pragma GCC unroll 16
	for (int c = 0; c < nc; c++)
		acc[c] = v_zero();
	for (int64_t t = 0; t < tiles; t++) {
		Vec d = v_load(dm + t * ldm);
		const float *vr = v + t * ldv;
#pragma GCC unroll 16
		for (int c = 0; c < nc; c++)
			acc[c] = v_fma(v_set1(vr[c]), d, acc[c]);
	}
#pragma GCC unroll 16
	for (int c = 0; c < nc; c++)
		v_store(du + c * ldu, acc[c]);
}

#define PRODUCTS_DW(NC)                                                                                  \
	static void products_dw_##NC(int64_t tiles, const float *v, int64_t ldv, const float *dm, int64_t ldm, \
				     float *du, int64_t ldu)                                              \
	{                                                                                                \
		products_dw(NC, tiles, v, ldv, dm, ldm, du, ldu);                                       \
	}
#if WINO_VEC == 16
PRODUCTS_DW(16)
#endif
PRODUCTS_DW(8)
PRODUCTS_DW(6)
PRODUCTS_DW(4)
PRODUCTS_DW(2)
PRODUCTS_DW(1)

/*
 * du[xi] = sum over tiles of V[xi] dM[xi]^T for the xi elements of a
 * transformed tile, from vt[xi][t][c] (cp channels a row) and dmt[xi][t][f]
 * (mp filters a row), summed in registers along a vector of 16 filters, or
 * of 16 channels when that wastes fewer lanes (unet_tiny's 8 filters of 24
 * channels). Returns 1 for channels in the lanes, du[xi][f][c] (rows of cp);
 * 0 for filters, du[xi][c][f] (rows of mp).
 */
static int dw_products(int nxi, int64_t tiles, int64_t m, int64_t ch, int64_t mp, int64_t cp, const float *vt,
		       const float *dmt, float *du)
{
	int by_c = cp % LANES == 0 && cp * m < mp * ch;
	int64_t lanes = by_c ? cp : mp, rows = by_c ? m : ch, bs = by_c ? mp : cp;
	const float *vec = by_c ? vt : dmt, *bc = by_c ? dmt : vt;
	for (int xi = 0; xi < nxi; xi++)
		for (int64_t l0 = 0; l0 < lanes; l0 += LANES)
			for (int64_t r0 = 0; r0 < rows;) {
				int64_t left = rows - r0;
				const float *v = bc + xi * tiles * bs + r0, *d = vec + xi * tiles * lanes + l0;
				float *o = du + (xi * bs + r0) * lanes + l0;
#if WINO_VEC == 16
				if (left >= 16)
					products_dw_16(tiles, v, bs, d, lanes, o, lanes), r0 += 16;
				else
#endif
				if (left >= 8)
					products_dw_8(tiles, v, bs, d, lanes, o, lanes), r0 += 8;
				else if (left >= 6)
					products_dw_6(tiles, v, bs, d, lanes, o, lanes), r0 += 6;
				else if (left >= 4)
					products_dw_4(tiles, v, bs, d, lanes, o, lanes), r0 += 4;
				else if (left >= 2)
					products_dw_2(tiles, v, bs, d, lanes, o, lanes), r0 += 2;
				else
					products_dw_1(tiles, v, bs, d, lanes, o, lanes), r0 += 1;
			}
	return by_c;
}

/* a tile transform of 16 channels or filters from lane 0 of a channels-last plane (ld apart) */
typedef void TileFn(const float *t, int64_t ld, const int64_t *geom, int64_t tiles, float *o);

/* what the weight gradients share: du (dw_products) in scratch at mem, which the caller frees */
typedef struct DwSums {
	float *mem, *du;
	int64_t cp, mp;	/* channels and filters padded to vectors */
	int by_c;	/* dw_products' layout of du */
} DwSums;

/* du of a weight gradient whose tiles have nxi elements, `in` the input
 * transform and `out` the output's adjoint; 0 without memory */
static int dw_sums(int nxi, TileFn *in, int64_t cp, TileFn *out, int64_t m, const float *a, int64_t lda,
		   const float *x, const int64_t *geom, DwSums *d)
{
	int64_t ch = geom[NNRT_CONV_C], oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW];
	int64_t hw = geom[NNRT_CONV_H] * geom[NNRT_CONV_W], tiles = (oh + 1) / 2 * ((ow + 1) / 2);
	int64_t mp = (m + LANES - 1) / LANES * LANES;
	int64_t xs = vectors(hw * cp);	/* the regions start on vectors */
	size_t floats = (size_t)(xs + oh * ow * mp + nxi * tiles * (cp + mp) + nxi * cp * mp);
	float *xt = scratch(floats);
	if (!xt)
		return 0;
	float *dyt = xt + xs, *vt = dyt + oh * ow * mp, *dmt = vt + nxi * tiles * cp, *du = dmt + nxi * tiles * mp;
	channels_last(x, ch, hw, hw, cp, xt);
	channels_last(a, m, lda, oh * ow, mp, dyt);
	for (int64_t c0 = 0; c0 < cp; c0 += LANES)
		in(xt + c0, cp, geom, tiles, vt + c0);
	for (int64_t f0 = 0; f0 < mp; f0 += LANES)
		out(dyt + f0, mp, geom, tiles, dmt + f0);
	*d = (DwSums){.mem = xt, .du = du, .cp = cp, .mp = mp, .by_c = dw_products(nxi, tiles, m, ch, mp, cp, vt, dmt, du)};
	return 1;
}

/* c[tap] = alpha * (Gt du G)[tap] + beta * c[tap] for the 4x4 du (element xi
 * at du[xi * ds]): the adjoint of filter_transform, one filter and channel */
static void filter_adjoint(const float *du, int64_t ds, float alpha, float beta, float *c)
{
	float r[3][4];	/* Gt du */
	for (int j = 0; j < 4; j++) {
		float u0 = du[j * ds], u1 = du[(4 + j) * ds], u2 = du[(8 + j) * ds], u3 = du[(12 + j) * ds];
		float h = 0.5f * (u1 + u2);
		r[0][j] = u0 + h;
		r[1][j] = 0.5f * (u1 - u2);
		r[2][j] = h + u3;
	}
	for (int i = 0; i < 3; i++) {
		float h = 0.5f * (r[i][1] + r[i][2]);
		float g[3] = {r[i][0] + h, 0.5f * (r[i][1] - r[i][2]), h + r[i][3]};
		for (int j = 0; j < 3; j++)
			c[i * 3 + j] = beta == 0.0f ? alpha * g[j] : alpha * g[j] + beta * c[i * 3 + j];
	}
}

int nnrt_winograd_3x3_dw(int64_t m, float alpha, const float *a, int64_t lda, const float *x,
			 const int64_t *geom, float beta, float *c, int64_t ldc)
{
	int64_t ch = geom[NNRT_CONV_C], oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW];
	DwSums d;
	if (!applies(m, 9 * ch, geom) || ldc < 9 * ch || lda < oh * ow ||
	    !dw_sums(XI, input_transform_cl, vectors(ch), output_adjoint_cl, m, a, lda, x, geom, &d))
		return 0;
	for (int64_t f = 0; f < m; f++)
		for (int64_t ci = 0; ci < ch; ci++)
			filter_adjoint(d.du + (d.by_c ? f * d.cp + ci : ci * d.mp + f), d.cp * d.mp, alpha, beta,
				       c + f * ldc + ci * 9);
	free(d.mem);
	return 1;
}

/*
 * 5x5 convolutions of stride 1 and their weight gradients by F(2x2, 5x5): each
 * 2x2 block of outputs comes from the 6x6 patch under it, Y = At [(G g Gt)
 * . (Bt d B)] A, with the points 0, 1, -1, 2, -2 and infinity:
 *
 *   Bt = | 4  0 -5  0  1  0 |   G = | 1/4   0     0    0    0   |   At = | 1 1  1 1  1 0 |
 *        | 0 -4 -4  1  1  0 |       | -1/6 -1/6 -1/6 -1/6 -1/6 |        | 0 1 -1 2 -2 1 |
 *        | 0  4 -4 -1  1  0 |       | -1/6  1/6 -1/6  1/6 -1/6 |
 *        | 0 -2 -1  2  1  0 |       | 1/24 1/12 1/6  1/3  2/3  |
 *        | 0  2 -1 -2  1  0 |       | 1/24 -1/12 1/6 -1/3 2/3  |
 *        | 0  4  0 -5  0  1 |       | 0     0    0    0    1   |
 *
 * 36 multiplies for 4 outputs where the direct sum has 100. Both copy the
 * image channels-last and transform each tile's patch with a vector of 16
 * channels (8 with AVX2) in the lanes. The convolution (nnrt_winograd_5x5)
 * then sums M[xi] = V[xi] U[xi] over the channels with a vector of filters
 * in the lanes, transforms M back per tile and copies the outputs
 * channels-first into C. The gradient
 * runs the adjoints as the 3x3 one does: dU[xi] = sum over the tiles of
 * (A dY At)[xi] (Bt d B)[xi]^T, then dW = Gt dU G, one vector of 16 filters
 * (or channels) at a time. The points 2 and -2 round a little more than the
 * 3x3's: test_winograd.c bounds the error by 1e-5 of the sum of the products'
 * magnitudes, as for 3x3.
 */
enum { XI5 = 36 };

/* o = Bt d, for the 6 elements of a column (or row) d */
static inline __attribute__((always_inline)) void bt6(const Vec d[6], Vec o[6])
{
	Vec four = v_set1(4.0f), five = v_set1(-5.0f), two = v_set1(2.0f);
	o[0] = v_fma(four, d[0], v_fma(five, d[2], d[4]));
	o[1] = v_fma(v_set1(-4.0f), v_add(d[1], d[2]), v_add(d[3], d[4]));
	o[2] = v_fma(four, v_sub(d[1], d[2]), v_sub(d[4], d[3]));
	o[3] = v_fma(two, v_sub(d[3], d[1]), v_sub(d[4], d[2]));
	o[4] = v_fma(two, v_sub(d[1], d[3]), v_sub(d[4], d[2]));
	o[5] = v_fma(four, d[1], v_fma(five, d[3], d[5]));
}

/* o = the 6 elements At^T (d0, d1): the adjoint of a column of the output transform */
static inline __attribute__((always_inline)) void at6(Vec d0, Vec d1, Vec o[6])
{
	Vec two = v_set1(2.0f);
	o[0] = d0;
	o[1] = v_add(d0, d1);
	o[2] = v_sub(d0, d1);
	o[3] = v_fma(two, d1, d0);
	o[4] = v_fma(v_set1(-2.0f), d1, d0);
	o[5] = d1;
}

/* o = Gt u, the 5 taps from the 6 elements u: the adjoint of the filter transform's columns */
static inline __attribute__((always_inline)) void gt5(const Vec u[6], Vec o[5])
{
	Vec s12 = v_add(u[1], u[2]), d21 = v_sub(u[2], u[1]), s34 = v_add(u[3], u[4]), d34 = v_sub(u[3], u[4]);
	Vec sixth = v_set1(1.0f / 6.0f);
	Vec t = v_mul(sixth, d21);
	o[0] = v_fma(v_set1(0.25f), u[0], v_fma(v_set1(-1.0f / 6.0f), s12, v_mul(v_set1(1.0f / 24.0f), s34)));
	o[1] = v_fma(v_set1(1.0f / 12.0f), d34, t);
	o[2] = v_mul(sixth, v_sub(s34, s12));
	o[3] = v_fma(v_set1(1.0f / 3.0f), d34, t);
	o[4] = v_add(v_fma(v_set1(-1.0f / 6.0f), s12, v_mul(v_set1(2.0f / 3.0f), s34)), u[5]);
}

enum { STORE_ALIGNED, STORE_ANY, STORE_HALF };

/* (Bt d B) from e, the rows of the patch times B: each column times Bt, element (i, j) stored at
 * o + (i * 6 + j) * xs, a whole vector on a vector boundary or anywhere, or its lower half */
static inline __attribute__((always_inline)) void columns_bt6(Vec e[6][6], float *o, int64_t xs, int how)
{
#pragma GCC unroll 6
	for (int j = 0; j < 6; j++) {
		Vec col[6], v[6];
#pragma GCC unroll 6
		for (int r = 0; r < 6; r++)
			col[r] = e[r][j];
		bt6(col, v);
#pragma GCC unroll 6
		for (int i = 0; i < 6; i++) {
			float *at = o + (i * 6 + j) * xs;
			if (how == STORE_ALIGNED)
				v_store(at, v[i]);
			else if (how == STORE_ANY)
				v_storeu(at, v[i]);
			else
				v_store_half(at, v[i]);
		}
	}
}

/* vt[xi][t][c] = (Bt d B)[xi] of tile t for 16 channels from xt's lane 0 (ld apart) */
static void input_transform5_cl(const float *xt, int64_t ld, const int64_t *geom, int64_t tiles, float *vt)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], tw = (geom[NNRT_CONV_OW] + 1) / 2;
	for (int64_t t = 0; t < tiles; t++) {
		int64_t iy = 2 * (t / tw) - geom[NNRT_CONV_PH], ix = 2 * (t % tw) - geom[NNRT_CONV_PW];
		int inner = iy >= 0 && iy + 6 <= h && ix >= 0 && ix + 6 <= w;	/* no position to check */
		Vec e[6][6];	/* row r of the patch times B, column by column */
#pragma GCC unroll 6
		for (int r = 0; r < 6; r++) {
			Vec d[6];
			const float *row = xt + ((iy + r) * w + ix) * ld;
#pragma GCC unroll 6
			for (int j = 0; j < 6; j++)
				d[j] = inner ? v_load(row + j * ld) : position(xt, ld, h, w, iy + r, ix + j);
			bt6(d, e[r]);
		}
		columns_bt6(e, vt + t * ld, tiles * ld, STORE_ALIGNED);
	}
}

/*
 * With AVX-512 and at most 8 channels (lenet's 6), a vector of 16 channels
 * was mostly zeros: the image is copied channels-last with rows of 8
 * (channels5), and one vector holds two tiles, t in lanes 0-7 and t + 1 in
 * lanes 8-15, so vt[xi][t][c] comes out with rows of 8, two tiles a store.
 * Half the transforms; the sums read vt one float at a time either way.
 */
static int pairs_cp(int64_t ch)
{
	return WINO_VEC == 16 && ch <= LANES / 2;
}

/* channels a row of the channels-last copy and of vt for a 5x5 of ch channels */
static int64_t channels5(int64_t ch)
{
	return pairs_cp(ch) ? LANES / 2 : vectors(ch);
}

#if WINO_VEC == 16
/* 8 channels of position (y, x), zero outside h x w */
static inline __attribute__((always_inline)) __m256 half_at(const float *xt, int64_t h, int64_t w, int64_t y,
							     int64_t x)
{
	if (y < 0 || y >= h || x < 0 || x >= w)
		return _mm256_setzero_ps();
	return _mm256_loadu_ps(xt + (y * w + x) * 8);
}

static void input_transform5_pairs(const float *xt, int64_t ld, const int64_t *geom, int64_t tiles, float *vt)
{
	int64_t h = geom[NNRT_CONV_H], w = geom[NNRT_CONV_W], tw = (geom[NNRT_CONV_OW] + 1) / 2, xs = tiles * ld;
	for (int64_t t = 0; t < tiles; t += 2) {
		int64_t u = t + 1 < tiles ? t + 1 : t;	/* an odd last tile pairs with itself, stored once */
		int64_t iy0 = 2 * (t / tw) - geom[NNRT_CONV_PH], ix0 = 2 * (t % tw) - geom[NNRT_CONV_PW];
		int64_t iy1 = 2 * (u / tw) - geom[NNRT_CONV_PH], ix1 = 2 * (u % tw) - geom[NNRT_CONV_PW];
		int inner = iy0 >= 0 && iy0 + 6 <= h && ix0 >= 0 && ix0 + 6 <= w && iy1 >= 0 && iy1 + 6 <= h &&
			    ix1 >= 0 && ix1 + 6 <= w;
		Vec e[6][6];
#pragma GCC unroll 6
		for (int r = 0; r < 6; r++) {
			Vec d[6];
#pragma GCC unroll 6
			for (int j = 0; j < 6; j++) {
				__m256 lo = inner ? _mm256_loadu_ps(xt + ((iy0 + r) * w + ix0 + j) * 8)
						  : half_at(xt, h, w, iy0 + r, ix0 + j);
				__m256 hi = inner ? _mm256_loadu_ps(xt + ((iy1 + r) * w + ix1 + j) * 8)
						  : half_at(xt, h, w, iy1 + r, ix1 + j);
				d[j] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)),
									    _mm256_castps_pd(hi), 1));
			}
			bt6(d, e[r]);
		}
		columns_bt6(e, vt + t * 8, xs, u > t ? STORE_ANY : STORE_HALF);
	}
}
#else
static void input_transform5_pairs(const float *xt, int64_t ld, const int64_t *geom, int64_t tiles, float *vt)
{
	input_transform5_cl(xt, ld, geom, tiles, vt);	/* never called: pairs_cp is 0 */
}
#endif

/* dmt[xi][t][f] = (A dY At)[xi] of tile t for 16 filters from dyt's lane 0 (ld apart), dY its 2x2 of dy
 * (zero outside OH x OW) */
static void output_adjoint5_cl(const float *dyt, int64_t ld, const int64_t *geom, int64_t tiles, float *dmt)
{
	int64_t oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW], tw = (ow + 1) / 2;
	for (int64_t t = 0; t < tiles; t++) {
		int64_t oy = 2 * (t / tw), ox = 2 * (t % tw);
		Vec p[2][6];	/* A dY, column s */
#pragma GCC unroll 2
		for (int s = 0; s < 2; s++)
			at6(position(dyt, ld, oh, ow, oy, ox + s), position(dyt, ld, oh, ow, oy + 1, ox + s), p[s]);
		float *o = dmt + t * ld;
		int64_t xs = tiles * ld;
#pragma GCC unroll 6
		for (int i = 0; i < 6; i++) {
			Vec q[6];
			at6(p[0][i], p[1][i], q);
#pragma GCC unroll 6
			for (int j = 0; j < 6; j++)
				v_store(o + (i * 6 + j) * xs, q[j]);
		}
	}
}

/* C[f][c * 25 + tap] = alpha * (Gt du G)[tap] + beta * C for a vector of
 * du: du[xi * xs] holds lane l's element xi, for filter f0 + l (channel ci)
 * or channel c0 + l (filter f), count lanes */
static void filter_adjoint5(const float *du, int64_t xs, int count, int64_t f0, int64_t fs, int64_t c0,
			    int64_t cs, float alpha, float beta, float *c, int64_t ldc)
{
	Vec r[5][6];	/* Gt du, column by column */
#pragma GCC unroll 6
	for (int j = 0; j < 6; j++) {
		Vec u[6];
#pragma GCC unroll 6
		for (int i = 0; i < 6; i++)
			u[i] = v_load(du + (i * 6 + j) * xs);
		Vec o[5];
		gt5(u, o);
#pragma GCC unroll 5
		for (int k = 0; k < 5; k++)
			r[k][j] = o[k];
	}
	enum { BLOCKS = (25 + LANES - 1) / LANES };
	Vec g[BLOCKS * LANES];	/* tap by tap, then transposed a block of LANES taps at a time */
#pragma GCC unroll 5
	for (int k = 0; k < 5; k++)
		gt5(r[k], g + k * 5);
	for (int i = 25; i < BLOCKS * LANES; i++)
		g[i] = v_zero();
	Vec va = v_set1(alpha), vb = v_set1(beta);
	for (int b = 0; b < BLOCKS; b++) {
		transpose(g + b * LANES);	/* g[b LANES + l]: taps b LANES .. of lane l */
		int rest = 25 - b * LANES;
		for (int l = 0; l < count; l++) {
			float *out = c + (f0 + l * fs) * ldc + (c0 + l * cs) * 25 + b * LANES;
			Vec y = v_mul(va, g[b * LANES + l]);
			if (rest >= LANES) {
				v_put(out, y, vb, beta);
				continue;
			}
#if WINO_VEC == 16
			v_put_in(out, v_span(0, rest), y, vb, beta);
#else
			/* the last tap: AVX2's masked stores are slow on AMD's cores */
			float part[LANES] __attribute__((aligned(64)));
			v_store(part, y);
			for (int i = 0; i < rest; i++)
				out[i] = beta == 0.0f ? part[i] : part[i] + beta * out[i];
#endif
		}
	}
}

int nnrt_winograd_5x5_dw(int64_t m, float alpha, const float *a, int64_t lda, const float *x,
			 const int64_t *geom, float beta, float *c, int64_t ldc)
{
	int64_t ch = geom[NNRT_CONV_C], oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW];
	DwSums d;
	if (!applies_k(5, m, 25 * ch, geom) || ldc < 25 * ch || lda < oh * ow ||
	    !dw_sums(XI5, pairs_cp(ch) ? input_transform5_pairs : input_transform5_cl, channels5(ch), output_adjoint5_cl,
		     m, a, lda, x, geom, &d))
		return 0;
	if (d.by_c) {	/* du[xi][f][c] */
		for (int64_t f = 0; f < m; f++)
			for (int64_t c0 = 0; c0 < ch; c0 += LANES)
				filter_adjoint5(d.du + f * d.cp + c0, d.mp * d.cp, (int)(ch - c0 < LANES ? ch - c0 : LANES),
						f, 0, c0, 1, alpha, beta, c, ldc);
	} else {	/* du[xi][c][f] */
		for (int64_t ci = 0; ci < ch; ci++)
			for (int64_t f0 = 0; f0 < m; f0 += LANES)
				filter_adjoint5(d.du + ci * d.mp + f0, d.cp * d.mp, (int)(m - f0 < LANES ? m - f0 : LANES),
						f0, 1, ci, 0, alpha, beta, c, ldc);
	}
	free(d.mem);
	return 1;
}

/* o = G v: the 6 elements of a transformed column from the 5 taps v */
static inline __attribute__((always_inline)) void g6(const Vec v[5], Vec o[6])
{
	Vec e = v_add(v_add(v[0], v[2]), v[4]), od = v_add(v[1], v[3]), sixth = v_set1(-1.0f / 6.0f);
	Vec p = v_fma(v_set1(1.0f / 24.0f), v[0], v_fma(v_set1(1.0f / 6.0f), v[2], v_mul(v_set1(2.0f / 3.0f), v[4])));
	Vec q = v_fma(v_set1(1.0f / 12.0f), v[1], v_mul(v_set1(1.0f / 3.0f), v[3]));
	o[0] = v_mul(v_set1(0.25f), v[0]);
	o[1] = v_mul(sixth, v_add(e, od));
	o[2] = v_mul(sixth, v_sub(e, od));
	o[3] = v_add(p, q);
	o[4] = v_sub(p, q);
	o[5] = v[4];
}

/* U[xi][c][f] (f padded to mp) = (G g Gt)[xi] for g = at[(c * 25 + tap) * mp + f], the
 * filters a[f * lda + c * 25 + tap] filter-last */
static void filter_transform5(int64_t mp, int64_t ch, const float *at, float *u)
{
	for (int64_t f0 = 0; f0 < mp; f0 += LANES)
		for (int64_t c = 0; c < ch; c++) {
			Vec g[25], r[6][5];	/* r = G g, column by column */
#pragma GCC unroll 25
			for (int t = 0; t < 25; t++)
				g[t] = v_load(at + (c * 25 + t) * mp + f0);
#pragma GCC unroll 5
			for (int k = 0; k < 5; k++) {
				Vec col[5] = {g[k], g[5 + k], g[10 + k], g[15 + k], g[20 + k]}, o[6];
				g6(col, o);
#pragma GCC unroll 6
				for (int i = 0; i < 6; i++)
					r[i][k] = o[i];
			}
#pragma GCC unroll 6
			for (int i = 0; i < 6; i++) {
				Vec o[6];
				g6(r[i], o);
#pragma GCC unroll 6
				for (int j = 0; j < 6; j++)
					v_store(u + ((i * 6 + j) * ch + c) * mp + f0, o[j]);
			}
		}
}

/* mt[xi][t][lane] = sum over c of vt[xi][t][c] U[xi][c][f0 + lane], for a
 * vector of filters: TB tiles at a time, so TB sums run side by side */
enum { TB = 8 };
static inline __attribute__((always_inline)) void products5_block(int nt, int64_t ch, int64_t cp, int64_t mp,
								    const float *ux, const float *vx, float *mx)
{
	Vec acc[TB];
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
		acc[i] = v_zero();
	for (int64_t c = 0; c < ch; c++) {
		Vec uc = v_load(ux + c * mp);
#pragma GCC unroll 8
		for (int i = 0; i < nt; i++)
			acc[i] = v_fma(v_set1(vx[i * cp + c]), uc, acc[i]);
	}
#pragma GCC unroll 8
	for (int i = 0; i < nt; i++)
		v_store(mx + i * LANES, acc[i]);
}

static void products5(int64_t tiles, int64_t ch, int64_t cp, int64_t mp, const float *vt, const float *u, float *mt)
{
	for (int xi = 0; xi < XI5; xi++) {
		const float *ux = u + xi * ch * mp, *vx = vt + xi * tiles * cp;
		float *mx = mt + xi * tiles * LANES;
		int64_t t = 0;
		for (; t + TB <= tiles; t += TB)
			products5_block(TB, ch, cp, mp, ux, vx + t * cp, mx + t * LANES);
		for (; t < tiles; t++)
			products5_block(1, ch, cp, mp, ux, vx + t * cp, mx + t * LANES);
	}
}

/* yt[(oy * OW + ox) * LANES ..] = (At M A) of each tile for a vector of filters, the outputs inside OH x OW */
static void output_transform5_cl(const float *mt, int64_t tiles, const int64_t *geom, float *yt)
{
	int64_t oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW], tw = (ow + 1) / 2;
	Vec two = v_set1(2.0f);
	for (int64_t t = 0; t < tiles; t++) {
		int64_t oy = 2 * (t / tw), ox = 2 * (t % tw);
		Vec r[2][6];	/* At M */
#pragma GCC unroll 6
		for (int j = 0; j < 6; j++) {
			Vec mm[6];
#pragma GCC unroll 6
			for (int i = 0; i < 6; i++)
				mm[i] = v_load(mt + ((i * 6 + j) * tiles + t) * LANES);
			r[0][j] = v_add(v_add(v_add(mm[0], mm[1]), v_add(mm[2], mm[3])), mm[4]);
			r[1][j] = v_add(v_fma(two, v_sub(mm[3], mm[4]), v_sub(mm[1], mm[2])), mm[5]);
		}
#pragma GCC unroll 2
		for (int q = 0; q < 2; q++) {
			Vec y0 = v_add(v_add(v_add(r[q][0], r[q][1]), v_add(r[q][2], r[q][3])), r[q][4]);
			Vec y1 = v_add(v_fma(two, v_sub(r[q][3], r[q][4]), v_sub(r[q][1], r[q][2])), r[q][5]);
			if (oy + q >= oh)
				continue;
			v_store(yt + ((oy + q) * ow + ox) * LANES, y0);
			if (ox + 1 < ow)
				v_store(yt + ((oy + q) * ow + ox + 1) * LANES, y1);
		}
	}
}

/* c[(f0 + l) * ldc + p] = alpha * yt[p * LANES + l] + beta * c[..] for l < nf, p < n: channels first again */
static void channels_first(const float *yt, int64_t n, int nf, float alpha, float beta, float *c, int64_t ldc)
{
	Vec va = v_set1(alpha), vb = v_set1(beta);
	for (int64_t p0 = 0; p0 < n; p0 += LANES) {
		Vec r[LANES];
		int64_t np = n - p0 < LANES ? n - p0 : LANES;
#pragma GCC unroll 16
		for (int i = 0; i < LANES; i++)
			r[i] = i < np ? v_load(yt + (p0 + i) * LANES) : v_zero();
		transpose(r);	/* r[l]: positions p0 .. of filter l */
		Lanes in = v_span(0, np);
		for (int l = 0; l < nf; l++) {
			float *out = c + l * ldc + p0;
			Vec y = v_mul(va, r[l]);
			if (np == LANES)
				v_put(out, y, vb, beta);
			else
				v_put_in(out, in, y, vb, beta);
		}
	}
}

int nnrt_winograd_5x5(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc)
{
	int64_t ch = geom[NNRT_CONV_C], oh = geom[NNRT_CONV_OH], ow = geom[NNRT_CONV_OW];
	if (!applies_k(5, m, lda, geom) || ldc < oh * ow)
		return 0;
	int64_t hw = geom[NNRT_CONV_H] * geom[NNRT_CONV_W], tiles = (oh + 1) / 2 * ((ow + 1) / 2), n = oh * ow;
	int64_t cp = channels5(ch), mp = (m + LANES - 1) / LANES * LANES;
	int64_t xs = vectors(hw * cp);	/* the regions start on vectors */
	size_t floats = (size_t)(xs + XI5 * tiles * cp + XI5 * ch * mp + XI5 * tiles * LANES + n * LANES +
				 25 * ch * mp);
	float *xt = scratch(floats);
	if (!xt)
		return 0;
	float *vt = xt + xs, *u = vt + XI5 * tiles * cp, *mt = u + XI5 * ch * mp, *yt = mt + XI5 * tiles * LANES;
	float *at = yt + n * LANES;
	channels_last(x, ch, hw, hw, cp, xt);
	if (pairs_cp(ch))
		input_transform5_pairs(xt, cp, geom, tiles, vt);
	else
		for (int64_t c0 = 0; c0 < cp; c0 += LANES)
			input_transform5_cl(xt + c0, cp, geom, tiles, vt + c0);
	channels_last(a, m, lda, 25 * ch, mp, at);
	filter_transform5(mp, ch, at, u);
	for (int64_t f0 = 0; f0 < m; f0 += LANES) {
		products5(tiles, ch, cp, mp, vt, u + f0, mt);
		output_transform5_cl(mt, tiles, geom, yt);
		channels_first(yt, n, (int)(m - f0 < LANES ? m - f0 : LANES), alpha, beta, c + f0 * ldc, ldc);
	}
	free(xt);
	return 1;
}

#endif

#if !WINO_VEC
int nnrt_winograd_3x3(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc)
{
	(void)m, (void)alpha, (void)a, (void)lda, (void)x, (void)geom, (void)beta, (void)c, (void)ldc;
	return 0;
}
#endif

#if !WINO_VEC
int nnrt_winograd_5x5(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *geom,
		      float beta, float *c, int64_t ldc)
{
	(void)m, (void)alpha, (void)a, (void)lda, (void)x, (void)geom, (void)beta, (void)c, (void)ldc;
	return 0;
}

int nnrt_winograd_5x5_dw(int64_t m, float alpha, const float *a, int64_t lda, const float *x,
			 const int64_t *geom, float beta, float *c, int64_t ldc)
{
	(void)m, (void)alpha, (void)a, (void)lda, (void)x, (void)geom, (void)beta, (void)c, (void)ldc;
	return 0;
}

int nnrt_winograd_3x3_dw(int64_t m, float alpha, const float *a, int64_t lda, const float *x,
			 const int64_t *geom, float beta, float *c, int64_t ldc)
{
	(void)m, (void)alpha, (void)a, (void)lda, (void)x, (void)geom, (void)beta, (void)c, (void)ldc;
	return 0;
}
#endif

/* a kk x kk convolution of stride and dilation 1 whose sizes the scratch indexes take */
static int applies_k(int64_t kk, int64_t m, int64_t lda, const int64_t *g)
{
	return g[NNRT_CONV_KH] == kk && g[NNRT_CONV_KW] == kk && g[NNRT_CONV_SH] == 1 && g[NNRT_CONV_SW] == 1 &&
	       g[NNRT_CONV_DH] == 1 && g[NNRT_CONV_DW] == 1 &&
	       g[NNRT_CONV_OH] == g[NNRT_CONV_H] + 2 * g[NNRT_CONV_PH] - (kk - 1) &&
	       g[NNRT_CONV_OW] == g[NNRT_CONV_W] + 2 * g[NNRT_CONV_PW] - (kk - 1) && g[NNRT_CONV_OH] >= 1 &&
	       g[NNRT_CONV_OW] >= 1 && m >= 1 && m <= 1 << 16 && g[NNRT_CONV_C] >= 1 && g[NNRT_CONV_C] <= 1 << 16 &&
	       lda >= kk * kk * g[NNRT_CONV_C] && lda <= INT32_MAX / 16;
}

/*
 * Weight gradients, one sample's product against nnrt_sgemm_conv's dot
 * products over the image, one thread, AVX-512 (Zen 4): 16 -> 16 channels at
 * 28x28 1.56x, 64 -> 64 1.67x, 48 -> 16 at 16x16 1.34x, 16 -> 16 and
 * 32 -> 16 at 8x8 1.32x and 1.35x; but with 8 channels or 8 filters the
 * transforms cost more than the products save (0.62-0.83x).
 */
int nnrt_winograd_pays_dw(int64_t m, const int64_t *geom)
{
	return applies(m, 9 * geom[NNRT_CONV_C], geom) && m >= 16 && geom[NNRT_CONV_C] >= 16;
}

/*
 * Measured against nnrt_sgemm_conv's direct product, one thread, AVX-512
 * (Zen 4), channels -> filters at the output's size: 16 -> 16 and 64 -> 64
 * at 28x28 1.84x and 1.72x, 24 -> 8 at 32x32 2.0x; at 16x16, two rows of 8
 * tiles a vector, about 1.8x; one channel 0.97x. It pays with a few channels
 * and filters and rows of tiles that fill most of their vectors (70%).
 */
int nnrt_winograd_pays(int64_t m, int64_t lda, const int64_t *geom)
{
	if (!applies(m, lda, geom) || m < 4 || geom[NNRT_CONV_C] < 4)
		return 0;
	int64_t tw = (geom[NNRT_CONV_OW] + 1) / 2, lanes = (tw + LANES - 1) / LANES * LANES;
	return 10 * (narrow(tw) ? 2 * tw : tw) >= 7 * lanes;
}

/*
 * 5x5 weight gradients, one sample, one thread, AVX-512 (Zen 4), us: this
 * against nnrt_sgemm on a column matrix built beforehand (the building not
 * counted), channels -> filters at the image's size and pad: 6 -> 16 at
 * 14x14 (lenet's second layer) 4.7 / 6.4, 8 -> 16 at 28x28 35.7 / 54.8,
 * 16 -> 16 at 14x14 14.8 / 27.7, 16 -> 32 at 28x28 98 / 212, 16 -> 16 at
 * 7x7 7.0 / 11.6. With 8 filters half of each vector idles: 6 -> 8 at
 * 14x14 4.8 / 3.2, 4 -> 8 at 28x28 28 / 13.5; with 4 channels the input
 * transform does: 4 -> 16 at 28x28 29.8 / 27.1.
 */
int nnrt_winograd_pays_5x5_dw(int64_t m, const int64_t *geom)
{
	return applies_k(5, m, 25 * geom[NNRT_CONV_C], geom) && m >= 16 && geom[NNRT_CONV_C] >= 6;
}

/*
 * 5x5 convolutions, one sample, one thread, us: this against nnrt_sgemm on a
 * column matrix built beforehand (the building not counted), channels ->
 * filters at the image's size and pad. AVX-512 (Zen 4): 6 -> 16 at 14x14
 * (lenet's second layer) 4.8 / 5.0, 8 -> 16 at 28x28 34.7 / 45.2, 16 -> 16
 * at 7x7 6.4 / 7.8, 16 -> 32 at 28x28 97 / 186; but 4 -> 16 at 28x28 31.1 /
 * 22.8 and 6 -> 8 at 14x14 5.8 / 2.6. AVX2 (the same machine): 4.9 / 5.6,
 * 36.2 / 53.7, 9.0 / 9.6, 16 -> 16 at 14x14 19.1 / 25.6.
 */
int nnrt_winograd_pays_5x5(int64_t m, int64_t lda, const int64_t *geom)
{
	return applies_k(5, m, lda, geom) && m >= 16 && geom[NNRT_CONV_C] >= 6;
}
