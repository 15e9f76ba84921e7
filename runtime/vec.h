/*
 * vec.h: the vector operations winograd.c and direct.c share, for the
 * runtime's two vector widths. NNRT_VEC is the floats a vector holds: 16
 * with AVX-512 (F and VL), 8 with AVX2 and FMA, 0 in a portable build
 * (NNRT_GEMM_PORTABLE, or neither ISA), where the files that include this
 * compute nothing and their callers take the GEMM. Lanes is a mask of lanes;
 * masked loads never touch, and read as 0, the lanes outside it.
 */
#ifndef NNRT_VEC_H
#define NNRT_VEC_H

#include <stdint.h>

#if defined(__AVX512F__) && defined(__AVX512VL__) && !defined(NNRT_GEMM_PORTABLE)
#define NNRT_VEC 16
#elif defined(__AVX2__) && defined(__FMA__) && !defined(NNRT_GEMM_PORTABLE)
#define NNRT_VEC 8
#else
#define NNRT_VEC 0
#endif

#if NNRT_VEC
#include <immintrin.h>

#if NNRT_VEC == 16
typedef __m512 Vec;
typedef __mmask16 Lanes;
static inline Vec v_zero(void) { return _mm512_setzero_ps(); }
static inline Vec v_set1(float x) { return _mm512_set1_ps(x); }
static inline Vec v_add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
static inline Vec v_sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
static inline Vec v_mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
static inline Vec v_fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline Vec v_load(const float *p) { return _mm512_load_ps(p); }
static inline void v_store(float *p, Vec v) { _mm512_store_ps(p, v); }
static inline Vec v_loadu(const float *p) { return _mm512_loadu_ps(p); }
static inline void v_storeu(float *p, Vec v) { _mm512_storeu_ps(p, v); }
static inline int v_none(Lanes k) { return k == 0; }
static inline Vec v_load_in(Lanes k, const float *p) { return _mm512_maskz_loadu_ps(k, p); }
static inline void v_store_in(float *p, Lanes k, Vec v) { _mm512_mask_storeu_ps(p, k, v); }

/* lanes l with lo <= l < hi */
static inline Lanes v_span(int64_t lo, int64_t hi)
{
	return hi <= lo ? 0 : (Lanes)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

#else
typedef __m256 Vec;
typedef __m256i Lanes;
static inline Vec v_zero(void) { return _mm256_setzero_ps(); }
static inline Vec v_set1(float x) { return _mm256_set1_ps(x); }
static inline Vec v_add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
static inline Vec v_sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
static inline Vec v_mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
static inline Vec v_fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline Vec v_load(const float *p) { return _mm256_load_ps(p); }
static inline void v_store(float *p, Vec v) { _mm256_store_ps(p, v); }
static inline Vec v_loadu(const float *p) { return _mm256_loadu_ps(p); }
static inline void v_storeu(float *p, Vec v) { _mm256_storeu_ps(p, v); }
static inline int v_none(Lanes k) { return _mm256_testz_si256(k, k); }
static inline Vec v_load_in(Lanes k, const float *p) { return _mm256_maskload_ps(p, k); }
static inline void v_store_in(float *p, Lanes k, Vec v) { _mm256_maskstore_ps(p, k, v); }

static inline Lanes v_span(int64_t lo, int64_t hi)
{
	__m256i l = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
	lo = lo < 0 ? 0 : lo > 8 ? 8 : lo;
	hi = hi < 0 ? 0 : hi > 8 ? 8 : hi;
	return _mm256_and_si256(_mm256_cmpgt_epi32(l, _mm256_set1_epi32((int)lo - 1)),
				_mm256_cmpgt_epi32(_mm256_set1_epi32((int)hi), l));
}

#endif

/* the lower half of v's lanes to p (any alignment) */
static inline void v_store_half(float *p, Vec v)
{
#if NNRT_VEC == 16
	_mm256_storeu_ps(p, _mm512_castps512_ps256(v));
#else
	_mm_storeu_ps(p, _mm256_castps256_ps128(v));
#endif
}

/* out = y + beta out, in the lanes of k (y is alpha times the result); beta 0 reads nothing */
static inline void v_put_in(float *out, Lanes k, Vec y, Vec vb, float beta)
{
	if (beta != 0.0f)
		y = v_fma(vb, v_load_in(k, out), y);
	v_store_in(out, k, y);
}

/* the same for a whole vector, anywhere in memory */
static inline void v_put(float *out, Vec y, Vec vb, float beta)
{
	if (beta != 0.0f)
		y = v_fma(vb, v_loadu(out), y);
	v_storeu(out, y);
}

#endif /* NNRT_VEC */
#endif
