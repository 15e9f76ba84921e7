/*
 * test_rng.c: PCG32 against the published output of the reference pcg32-demo
 * (seed 42, stream 54: its numbers, coin flips and dice rolls), then the
 * properties the initializers promise: ranges, exact mapping and bounds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "nnrt.h"

/* pcg32_srandom_r(42, 54) leaves state 1753877967969059832 and inc 109 */
static void test_seed_matches_reference(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 42, 54);
	assert_true(r.state == 1753877967969059832ULL);
	assert_true(r.inc == 109);
}

static void test_u32_matches_reference(void **state)
{
	(void)state;
	static const uint32_t want[] = {0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e};
	NnrtRng r;
	nnrt_rng_seed(&r, 42, 54);
	for (int i = 0; i < 6; i++)
		assert_int_equal(nnrt_rng_u32(&r), want[i]);
}

/* pcg32-demo goes on with 65 coins (boundedrand(2), 1 = H) and 33 rolls
 * (boundedrand(6) + 1) from the same generator */
static void test_below_matches_reference(void **state)
{
	(void)state;
	static const char coins[] = "HHTTTHTHHHTHTTTHHHHHTTTHHHTHTHTHTTHTTTHHHHHHTTTTHHTTTTTHTTTTTTTHT";
	static const int rolls[] = {3, 4, 1, 1, 2, 2, 3, 2, 4, 3, 2, 4, 3, 3, 5, 2, 3,
				    1, 3, 1, 5, 1, 4, 1, 5, 6, 4, 6, 6, 2, 6, 3, 3};
	NnrtRng r;
	nnrt_rng_seed(&r, 42, 54);
	for (int i = 0; i < 6; i++)
		nnrt_rng_u32(&r);
	for (int i = 0; coins[i]; i++)
		assert_int_equal(nnrt_rng_below(&r, 2) ? 'H' : 'T', coins[i]);
	for (int i = 0; i < 33; i++)
		assert_int_equal(nnrt_rng_below(&r, 6) + 1, rolls[i]);
}

/* streams are independent sequences: same seed, other stream, other numbers */
static void test_streams_differ(void **state)
{
	(void)state;
	NnrtRng a, b;
	nnrt_rng_seed(&a, 42, 54);
	nnrt_rng_seed(&b, 42, 55);
	int same = 0;
	for (int i = 0; i < 100; i++)
		same += nnrt_rng_u32(&a) == nnrt_rng_u32(&b);
	assert_true(same < 3);
}

/* uniform is the top 24 bits of u32 over 2^24: checked on the known stream */
static void test_uniform_is_top_24_bits(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 42, 54);
	assert_true(nnrt_rng_uniform(&r) == (float)0xa15c02 / 16777216.0f);
	assert_true(nnrt_rng_uniform(&r) == (float)0x7b47f4 / 16777216.0f);
	double sum = 0;
	int n = 100000;
	for (int i = 0; i < n; i++) {
		float u = nnrt_rng_uniform(&r);
		assert_true(u >= 0.0f && u < 1.0f);
		assert_true(u * 16777216.0f == floorf(u * 16777216.0f));
		sum += u;
	}
	assert_true(fabs(sum / n - 0.5) < 0.005);	/* sd of the mean is 0.0009 */
}

/* a bound of 3 rejects draws below 2^32 mod 3 = 1; every value appears about
 * equally often (chi-square with 2 degrees of freedom, 99.99th percentile ~18) */
static void test_below_is_uniform(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 1, 2);
	int counts[3] = {0};
	int n = 300000;
	for (int i = 0; i < n; i++) {
		uint32_t x = nnrt_rng_below(&r, 3);
		assert_true(x < 3);
		counts[x]++;
	}
	double chi = 0;
	for (int i = 0; i < 3; i++)
		chi += (counts[i] - n / 3.0) * (counts[i] - n / 3.0) / (n / 3.0);
	assert_true(chi < 18.0);
	assert_int_equal(nnrt_rng_below(&r, 1), 0);
	assert_int_equal(nnrt_rng_below(&r, 0), 0);
}

/* n = 3 * 2^30 rejects the draws below 2^30. Plain x % n would fold the top
 * quarter onto the bottom third and return values below 2^30 half the time;
 * uniform values fall there a third of the time (sd of the count: 82) */
static void test_below_large_bound(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 3, 4);
	uint32_t n = 0xc0000000u;
	int low = 0;
	for (int i = 0; i < 30000; i++) {
		uint32_t x = nnrt_rng_below(&r, n);
		assert_true(x < n);
		low += x < 0x40000000u;
	}
	assert_in_range(low, 9600, 10400);
}

/* w = (2u - 1) * bound for the known first draws, and never outside [-b, b) */
static void test_init_uniform(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 42, 54);
	enum { N = 10000 };
	static float w[N];
	nnrt_init_uniform(&r, w, N, 0.25f);
	assert_true(w[0] == (2.0f * ((float)0xa15c02 / 16777216.0f) - 1.0f) * 0.25f);
	assert_true(w[1] == (2.0f * ((float)0x7b47f4 / 16777216.0f) - 1.0f) * 0.25f);
	float lo = 1, hi = -1;
	double sum = 0;
	for (int i = 0; i < N; i++) {
		assert_true(w[i] >= -0.25f && w[i] < 0.25f);
		lo = fminf(lo, w[i]);
		hi = fmaxf(hi, w[i]);
		sum += w[i];
	}
	assert_true(lo < -0.24f && hi > 0.24f);	/* it fills the range, not a corner */
	assert_true(fabs(sum / N) < 0.01);
}

static void test_init_const(void **state)
{
	(void)state;
	float w[7] = {1, 2, 3, 4, 5, 6, 7};
	nnrt_init_const(w, 6, -0.5f);
	for (int i = 0; i < 6; i++)
		assert_true(w[i] == -0.5f);
	assert_true(w[6] == 7.0f);	/* exactly n elements */
}

static void test_fan_in_bound(void **state)
{
	(void)state;
	assert_true(nnrt_fan_in_bound(784) == 1.0f / 28.0f);
	assert_true(nnrt_fan_in_bound(1) == 1.0f);
	assert_true(nnrt_fan_in_bound(4) == 0.5f);
	assert_true(nnrt_fan_in_bound(75) == (float)(1.0 / sqrt(75.0)));	/* conv 3 x 5 x 5 */
	assert_true(nnrt_fan_in_bound(0) == 0.0f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seed_matches_reference),
		cmocka_unit_test(test_u32_matches_reference),
		cmocka_unit_test(test_below_matches_reference),
		cmocka_unit_test(test_streams_differ),
		cmocka_unit_test(test_uniform_is_top_24_bits),
		cmocka_unit_test(test_below_is_uniform),
		cmocka_unit_test(test_below_large_bound),
		cmocka_unit_test(test_init_uniform),
		cmocka_unit_test(test_init_const),
		cmocka_unit_test(test_fan_in_bound),
	};
	return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
