/*
 * direct.c: convolutions of few taps (channels x KH x KW at most 32: a first
 * layer on one to three channels) and few filters (at most 16) of stride
 * and dilation 1, summed tap by tap, for nnrt_sgemm_conv.
 *
 * With so few taps, the column matrix a GEMM reads is the image copied once
 * a tap (lenet's first layer: 25 copies of 28x28, written and read back for
 * a product of 6 rows). Here the image is copied once, into a scratch with
 * the padding's zeros around it and rows wide enough that every vector of
 * columns can be read whole. Each output row is then a few vectors of
 * columns: per tap, one (unaligned) load of the padded row shifted by the
 * tap, multiplied into one register per filter (up to FB filters, XV
 * vectors: 16 accumulators). The filters are laid out tap-major first, so
 * a tap's weights are FB floats side by side.
 *
 * The sums run tap by tap from 0 in the column matrix's row order, with the
 * GEMM's fused multiply-adds and its store (alpha * sum + beta * C): C is
 * bitwise what nnrt_sgemm computes on the built column matrix, whose taps
 * outside the image are the zeros read here. Results do not depend on
 * threads: a call runs on its caller's thread.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nnrt.h"
#include "vec.h"

/* taps at most, filters a block, vectors of columns a block, floats of scratch on the stack */
enum { DIRECT_TAPS = 32, FB = 8, XV = 2, STACK_FLOATS = 4096 };

static int64_t ceil_to(int64_t v, int64_t q)
{
	return (v + q - 1) / q * q;
}

/* the geometries of nnrt_conv_direct, whatever the ISA (lower.c's conv_direct_sum mirrors it) */
static int applies(int64_t m, int64_t lda, const int64_t *g)
{
	int64_t taps = g[NNRT_CONV_C] * g[NNRT_CONV_KH] * g[NNRT_CONV_KW];
	return m >= 1 && lda >= taps && taps >= 1 && taps <= DIRECT_TAPS && g[NNRT_CONV_SH] == 1 &&
	       g[NNRT_CONV_SW] == 1 && g[NNRT_CONV_DH] == 1 && g[NNRT_CONV_DW] == 1 && g[NNRT_CONV_PH] >= 0 &&
	       g[NNRT_CONV_PW] >= 0 && g[NNRT_CONV_PH] < g[NNRT_CONV_KH] && g[NNRT_CONV_PW] < g[NNRT_CONV_KW] &&
	       g[NNRT_CONV_OH] == g[NNRT_CONV_H] + 2 * g[NNRT_CONV_PH] - g[NNRT_CONV_KH] + 1 &&
	       g[NNRT_CONV_OW] == g[NNRT_CONV_W] + 2 * g[NNRT_CONV_PW] - g[NNRT_CONV_KW] + 1 &&
	       g[NNRT_CONV_OH] >= 1 && g[NNRT_CONV_OW] >= 1;
}

int nnrt_conv_direct_pays(int64_t m, int64_t lda, const int64_t *geom)
{
	/* below 8 columns most of a vector's lanes would be wasted; past 16 filters the GEMM on
	 * the built columns is as fast or faster (AVX-512, 9 taps on 28x28: 32 filters 5.65 us
	 * against 5.08 and the im2col, 64 filters 11.3 against 10.4; 16: 2.88 against 2.59 and
	 * an im2col of about 0.4) */
	return NNRT_VEC && applies(m, lda, geom) && m <= 16 && geom[NNRT_CONV_OW] >= 8;
}

#if NNRT_VEC

enum { LANES = NNRT_VEC, BLOCK = XV * LANES };

/* the lanes of vector v of a block that fall inside its cols columns */
static inline Lanes block_lanes(int64_t cols, int v)
{
	return v_span(0, cols - (int64_t)v * LANES);
}

/*
 * One block of F filters over V vectors of output: src is the padded image
 * at the block's first output, off[t] tap t's offset from it, wt the block's
 * weights (tap t's F at wt + t * FB), c the output at filter 0 (filters ldc
 * apart), cols the block's outputs. Row by row (mk NULL), a block is part
 * of one output row. Flat (below), it is any V vectors of the output, whose
 * rows are as wide as the image's: mk[v * taps + t] are the lanes of vector
 * v that tap t reads inside the image, the others load as 0. F, V and flat
 * are constants where this is inlined: acc lives in registers.
 */
static inline __attribute__((always_inline)) void block(int F, int V, int flat, const float *src, const int64_t *off,
							const Lanes *mk, int64_t taps, const float *wt, float *c,
							int64_t ldc, int64_t cols, float alpha, float beta)
{
	Vec acc[FB][XV];
#pragma GCC unroll 8
	for (int f = 0; f < F; f++)
#pragma GCC unroll 2
		for (int v = 0; v < V; v++)
			acc[f][v] = v_zero();
	for (int64_t t = 0; t < taps; t++) {
		const float *s = src + off[t];
		Vec x[XV];
#pragma GCC unroll 2
		for (int v = 0; v < V; v++)
			x[v] = flat ? v_load_in(mk[v * taps + t], s + v * LANES) : v_loadu(s + v * LANES);
#pragma GCC unroll 8
		for (int f = 0; f < F; f++) {
			Vec w = v_set1(wt[t * FB + f]);
#pragma GCC unroll 2
			for (int v = 0; v < V; v++)
				acc[f][v] = v_fma(w, x[v], acc[f][v]);
		}
	}
	Vec va = v_set1(alpha), vb = v_set1(beta);
#pragma GCC unroll 8
	for (int f = 0; f < F; f++)
#pragma GCC unroll 2
		for (int v = 0; v < V; v++) {
			Vec y = alpha != 1.0f ? v_mul(acc[f][v], va) : acc[f][v];
			float *out = c + f * ldc + v * LANES;
			if (cols >= (int64_t)(v + 1) * LANES)
				v_put(out, y, vb, beta);
			else
				v_put_in(out, block_lanes(cols, v), y, vb, beta);
		}
}

typedef void BlockFn(const float *src, const int64_t *off, const Lanes *mk, int64_t taps, const float *wt, float *c,
		     int64_t ldc, int64_t cols, float alpha, float beta);

#define BLOCKS(F, V)                                                                                             \
	static void row_##F##x##V(const float *src, const int64_t *off, const Lanes *mk, int64_t taps,           \
				  const float *wt, float *c, int64_t ldc, int64_t cols, float alpha, float beta)  \
	{                                                                                                        \
		block(F, V, 0, src, off, mk, taps, wt, c, ldc, cols, alpha, beta);                               \
	}                                                                                                        \
	static void flat_##F##x##V(const float *src, const int64_t *off, const Lanes *mk, int64_t taps,          \
				   const float *wt, float *c, int64_t ldc, int64_t cols, float alpha, float beta) \
	{                                                                                                        \
		block(F, V, 1, src, off, mk, taps, wt, c, ldc, cols, alpha, beta);                               \
	}
BLOCKS(1, 1) BLOCKS(2, 1) BLOCKS(3, 1) BLOCKS(4, 1) BLOCKS(5, 1) BLOCKS(6, 1) BLOCKS(7, 1) BLOCKS(8, 1)
BLOCKS(1, 2) BLOCKS(2, 2) BLOCKS(3, 2) BLOCKS(4, 2) BLOCKS(5, 2) BLOCKS(6, 2) BLOCKS(7, 2) BLOCKS(8, 2)
_Static_assert(FB == 8 && XV == 2, "one function per block shape");

/* [flat][vectors - 1][filters - 1] */
static BlockFn *const blocks[2][XV][FB] = {
	{{row_1x1, row_2x1, row_3x1, row_4x1, row_5x1, row_6x1, row_7x1, row_8x1},
	 {row_1x2, row_2x2, row_3x2, row_4x2, row_5x2, row_6x2, row_7x2, row_8x2}},
	{{flat_1x1, flat_2x1, flat_3x1, flat_4x1, flat_5x1, flat_6x1, flat_7x1, flat_8x1},
	 {flat_1x2, flat_2x2, flat_3x2, flat_4x2, flat_5x2, flat_6x2, flat_7x2, flat_8x2}},
};

/*
 * With AVX-512, a convolution whose output rows are as wide as the image's
 * ("same" padding across) runs flat: position p = oy * W + ox reads tap
 * (c, ky, kx) at c * plane + (oy + ky) * W + ox + kx - PW = p + off[t], so
 * the output is one run of vectors, none of them partly past a row's end
 * (lenet's 28 columns: 49 vectors where rows of two take 56); a mask per
 * vector and tap zeroes the lanes whose column + kx - PW leaves the row.
 * The image gets the padding's rows only, and a vector of slack either side.
 */
static int flat_pays(const int64_t *g)
{
	return NNRT_VEC == 16 && g[NNRT_CONV_OW] == g[NNRT_CONV_W];
}

#if NNRT_VEC == 16
/* the masks of the last geometry a thread ran flat, when they fit: lenet's are 1225 */
enum { KEPT_MASKS = 4096 };
static _Thread_local struct {
	int64_t n, w, kw, pw, taps;
	Lanes mk[KEPT_MASKS];
} kept;

/* mk[j * taps + t]: the lanes of vector j whose column + kx - pw stays in its row (kx = t % kw),
 * inside the n outputs; from kept, else made in room (or in kept, when they fit) */
static const Lanes *flat_masks(int64_t n, int64_t w, int64_t kw, int64_t pw, int64_t taps, Lanes *room)
{
	int64_t vecs = (n + LANES - 1) / LANES;
	if (kept.n == n && kept.w == w && kept.kw == kw && kept.pw == pw && kept.taps == taps)
		return kept.mk;
	int keep = vecs * taps <= KEPT_MASKS;
	Lanes *mk = keep ? kept.mk : room;
	for (int64_t j = 0, ox0 = 0; j < vecs; j++, ox0 = (ox0 + LANES) % w)
		for (int64_t kx = 0; kx < kw; kx++) {
			uint32_t bits = 0;
			for (int64_t l = 0, ox = ox0; l < LANES; l++, ox = ox + 1 == w ? 0 : ox + 1)
				if (j * LANES + l < n && ox + kx - pw >= 0 && ox + kx - pw < w)
					bits |= 1u << l;
			for (int64_t t = kx; t < taps; t += kw)	/* every tap of this column */
				mk[j * taps + t] = (Lanes)bits;
		}
	if (keep)
		kept.n = n, kept.w = w, kept.kw = kw, kept.pw = pw, kept.taps = taps;
	return mk;
}

/* the flat convolution: wt the filters laid out, img and room room for the image and the masks */
static void run_flat(int64_t m, float alpha, const float *x, const int64_t *g, float beta, float *c, int64_t ldc,
		     const float *wt, float *img, Lanes *room)
{
	int64_t ch = g[NNRT_CONV_C], h = g[NNRT_CONV_H], w = g[NNRT_CONV_W], kh = g[NNRT_CONV_KH];
	int64_t kw = g[NNRT_CONV_KW], ph = g[NNRT_CONV_PH], pw = g[NNRT_CONV_PW], oh = g[NNRT_CONV_OH];
	int64_t n = oh * w, taps = ch * kh * kw, plane = (oh + kh - 1) * w + 2 * LANES;
	memset(img, 0, (size_t)(ch * plane) * sizeof *img);
	for (int64_t ci = 0; ci < ch; ci++)
		memcpy(img + ci * plane + LANES + ph * w, x + ci * h * w, (size_t)(h * w) * sizeof *x);
	int64_t off[DIRECT_TAPS];
	for (int64_t ci = 0, t = 0; ci < ch; ci++)
		for (int64_t ky = 0; ky < kh; ky++)
			for (int64_t kx = 0; kx < kw; kx++)
				off[t++] = ci * plane + LANES + ky * w + kx - pw;
	const Lanes *mk = flat_masks(n, w, kw, pw, taps, room);
	for (int64_t p0 = 0; p0 < n; p0 += BLOCK) {
		int64_t cols = n - p0 < BLOCK ? n - p0 : BLOCK;
		for (int64_t f0 = 0; f0 < m; f0 += FB) {
			int64_t fs = m - f0 < FB ? m - f0 : FB;
			blocks[1][cols > LANES][fs - 1](img + p0, off, mk + p0 / LANES * taps, taps, wt + f0 * taps,
							c + f0 * ldc + p0, ldc, cols, alpha, beta);
		}
	}
}
#endif

int nnrt_conv_direct(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *g,
		     float beta, float *c, int64_t ldc)
{
	if (!nnrt_conv_direct_pays(m, lda, g) || ldc < g[NNRT_CONV_OH] * g[NNRT_CONV_OW])
		return 0;
	int64_t ch = g[NNRT_CONV_C], h = g[NNRT_CONV_H], w = g[NNRT_CONV_W], kh = g[NNRT_CONV_KH];
	int64_t kw = g[NNRT_CONV_KW], ph = g[NNRT_CONV_PH], pw = g[NNRT_CONV_PW], oh = g[NNRT_CONV_OH];
	int64_t ow = g[NNRT_CONV_OW], taps = ch * kh * kw, filters = ceil_to(m, FB), flat = flat_pays(g);
	/* the padded image, row by row: rows -ph .. oh + kh - 1 - ph, columns -pw .. past the last
	 * block's last vector; flat: the rows at their width, a vector of slack either side, and the
	 * masks (Lanes, in floats) */
	int64_t hp = oh + kh - 1, wp = ceil_to(ow, BLOCK) + kw - 1;
	int64_t plane = flat ? hp * w + 2 * LANES : hp * wp, vecs = (oh * ow + LANES - 1) / LANES;
	int64_t masks = flat ? ceil_to(vecs * taps * (int64_t)sizeof(Lanes), 64) / (int64_t)sizeof(float) : 0;
	int64_t wts = ceil_to(filters * taps, 16), need = wts + masks + ch * plane;
	_Alignas(64) float stack[STACK_FLOATS];
	float *buf = stack;
	if (need > STACK_FLOATS && !(buf = aligned_alloc(64, (size_t)ceil_to(need, 16) * sizeof *buf)))
		return 0;
	float *wt = buf, *img = buf + wts + masks;
	/* block b's weights: tap t's FB filters at wt + (b * taps + t) * FB */
	for (int64_t f = 0; f < filters; f++)
		for (int64_t t = 0; t < taps; t++)
			wt[((f / FB) * taps + t) * FB + f % FB] = f < m ? a[f * lda + t] : 0.0f;
#if NNRT_VEC == 16
	if (flat) {
		run_flat(m, alpha, x, g, beta, c, ldc, wt, img, (Lanes *)(buf + wts));
		if (buf != stack)
			free(buf);
		return 1;
	}
#endif
	memset(img, 0, (size_t)(ch * plane) * sizeof *img);
	for (int64_t ci = 0; ci < ch; ci++)
		for (int64_t y = 0; y < h; y++)
			memcpy(img + ci * plane + (y + ph) * wp + pw, x + (ci * h + y) * w, (size_t)w * sizeof *x);
	int64_t off[DIRECT_TAPS];
	for (int64_t ci = 0, t = 0; ci < ch; ci++)
		for (int64_t ky = 0; ky < kh; ky++)
			for (int64_t kx = 0; kx < kw; kx++)
				off[t++] = ci * plane + ky * wp + kx;
	for (int64_t oy = 0; oy < oh; oy++)
		for (int64_t x0 = 0; x0 < ow; x0 += BLOCK) {
			int64_t cols = ow - x0 < BLOCK ? ow - x0 : BLOCK;
			for (int64_t f0 = 0; f0 < m; f0 += FB) {
				int64_t fs = m - f0 < FB ? m - f0 : FB;
				blocks[0][cols > LANES][fs - 1](img + oy * wp + x0, off, NULL, taps, wt + f0 * taps,
								c + f0 * ldc + oy * ow + x0, ldc, cols, alpha, beta);
			}
		}
	if (buf != stack)
		free(buf);
	return 1;
}

#else

int nnrt_conv_direct(int64_t m, float alpha, const float *a, int64_t lda, const float *x, const int64_t *g,
		     float beta, float *c, int64_t ldc)
{
	(void)m, (void)alpha, (void)a, (void)lda, (void)x, (void)g, (void)beta, (void)c, (void)ldc;
	return 0;
}

#endif
