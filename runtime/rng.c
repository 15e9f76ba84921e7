/*
 * rng.c: random numbers and weight initializers. The generator is PCG32
 * (O'Neill 2014: a 64-bit LCG whose output is permuted by XSH-RR), seeded
 * exactly as the reference pcg32_srandom_r, so a seed gives the same stream
 * here, in generated code and in the reference implementation. All state is
 * in the caller's NnrtRng; nothing here allocates or fails.
 */
#include <math.h>

#include "nnrt.h"

static const uint64_t pcg_mult = 6364136223846793005ULL;

static uint32_t rotr32(uint32_t x, uint32_t r)
{
	return (x >> r) | (x << ((-r) & 31));	/* r in [0, 32): the masked shift avoids x << 32 */
}

void nnrt_rng_seed(NnrtRng *r, uint64_t seed, uint64_t stream)
{
	r->state = 0;
	r->inc = (stream << 1) | 1;	/* the increment must be odd for a full period */
	nnrt_rng_u32(r);
	r->state += seed;
	nnrt_rng_u32(r);
}

/* the output permutes the state before the step, as the reference does, so
 * the multiply and the permutation can overlap */
uint32_t nnrt_rng_u32(NnrtRng *r)
{
	uint64_t old = r->state;
	r->state = old * pcg_mult + r->inc;
	uint32_t xorshifted = (uint32_t)(((old >> 18) ^ old) >> 27);
	return rotr32(xorshifted, (uint32_t)(old >> 59));
}

/* the top 24 bits: every value k / 2^24 is exact in a float, and the result
 * can never round up to 1 */
float nnrt_rng_uniform(NnrtRng *r)
{
	return (float)(nnrt_rng_u32(r) >> 8) * 0x1p-24f;
}

/* Rejection as in the reference pcg32_boundedrand_r: draws below 2^32 mod n
 * are thrown away, so the values kept span a whole multiple of n and x % n
 * is uniform. Fewer than half the draws are rejected for any n. n = 0 has
 * no valid answer; it returns 0 rather than dividing by zero. */
uint32_t nnrt_rng_below(NnrtRng *r, uint32_t n)
{
	if (n == 0)
		return 0;
	uint32_t threshold = (uint32_t)(-n) % n;
	for (;;) {
		uint32_t x = nnrt_rng_u32(r);
		if (x >= threshold)
			return x % n;
	}
}

/* 2u - 1 is exact for a 24-bit u, so w lies in [-bound, bound) */
void nnrt_init_uniform(NnrtRng *r, float *w, int64_t n, float bound)
{
	for (int64_t i = 0; i < n; i++)
		w[i] = (2.0f * nnrt_rng_uniform(r) - 1.0f) * bound;
}

void nnrt_init_const(float *w, int64_t n, float v)
{
	for (int64_t i = 0; i < n; i++)
		w[i] = v;
}

/* kaiming_uniform(a = sqrt(5)): gain = sqrt(2 / (1 + a^2)) = sqrt(1/3) and
 * bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in). PyTorch's bias bound is
 * the same expression, and 0 when fan_in is 0. Computed in double so the
 * float is the correctly rounded value. */
float nnrt_fan_in_bound(int64_t fan_in)
{
	if (fan_in <= 0)
		return 0.0f;
	return (float)(1.0 / sqrt((double)fan_in));
}
