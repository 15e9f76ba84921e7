/*
 * shapes.c: writes the synthetic segmentation set that examples/unet_tiny.nn
 * trains on, as NumPy .npy files the runtime's "inputs.npy,targets.npy" loader
 * reads.
 *
 * Each sample is a 32x32 single-channel float32 image [1, 32, 32] and its
 * binary mask [1, 32, 32]: 1 inside any shape, 0 elsewhere. An image holds 1
 * to 4 shapes, each a disc (radius 3 to 8 pixels) or an axis-aligned
 * rectangle (sides 4 to 14), centred anywhere in the image (so shapes may be
 * cut by the border or overlap; a later shape paints over an earlier one).
 * The background is a flat grey in [0, 0.6]; each shape is a flat grey 0.2
 * to 0.4 brighter than its image's background; then every pixel gets mild
 * noise (mean 0, standard deviation 0.05, the sum of four uniforms: close to
 * Gaussian and free of libm). Shape and background levels overlap across
 * images, so no global threshold segments the set (the best one reaches an
 * IoU of 0.41 on the default set): a model has to compare a pixel with its
 * surroundings.
 *
 *   build/shapes [--out DIR] [--train N] [--test N] [--seed S]
 *
 * writes DIR/train-x.npy, DIR/train-y.npy (N samples, default 4000) and
 * DIR/test-x.npy, DIR/test-y.npy (default 1000), all float32 of shape
 * (count, 1, 32, 32). DIR (default "shapes") is created when missing. The
 * test set comes from its own random stream, so it is the same whatever the
 * training count. The output is a function of the flags only: the same seed
 * gives the same bytes on any machine with IEEE float32 arithmetic (the
 * generator is PCG32; there are no library calls, and no multiply and add in
 * one expression a compiler could fuse; the files are written little
 * endian). Each file is written atomically: a temporary file beside it,
 * fsync, rename, fsync of the folder; a failed run leaves no partial file.
 *
 * C99 and POSIX; no dependency but the C library.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { SIDE = 32, PIXELS = SIDE * SIDE, MAX_SHAPES = 4, MAX_COUNT = 1000000 };

/* ---- PCG32 (O'Neill 2014), the same generator as the runtime's ---- */

typedef struct Rng {
	uint64_t state, inc;
} Rng;

static uint32_t rng_u32(Rng *r)
{
	uint64_t old = r->state;
	r->state = old * 6364136223846793005ULL + r->inc;
	uint32_t xs = (uint32_t)(((old >> 18) ^ old) >> 27), rot = (uint32_t)(old >> 59);
	return (xs >> rot) | (xs << ((32 - rot) & 31));
}

static void rng_seed(Rng *r, uint64_t seed, uint64_t stream)
{
	r->state = 0;
	r->inc = stream << 1 | 1;
	rng_u32(r);
	r->state += seed;
	rng_u32(r);
}

/* [0, 1) with 24 random bits: exact in float32 */
static float uniform(Rng *r)
{
	return (float)(rng_u32(r) >> 8) * (1.0f / 16777216.0f);
}

/* an integer in [lo, hi]; the spans here are tiny, so the modulo bias is below 1e-8 */
static int between(Rng *r, int lo, int hi)
{
	return lo + (int)(rng_u32(r) % (uint32_t)(hi - lo + 1));
}

/* ---- one sample ---- */

typedef struct Shape {
	int disc;		/* 1: disc of radius r at (cx, cy); 0: rectangle [x0, x1) x [y0, y1) */
	int cx, cy, r, x0, y0, x1, y1;
	float level;
} Shape;

static Shape random_shape(Rng *r, float background)
{
	Shape s = { 0 };
	s.disc = (int)(rng_u32(r) & 1);
	s.cx = between(r, 0, SIDE - 1);
	s.cy = between(r, 0, SIDE - 1);
	if (s.disc) {
		s.r = between(r, 3, 8);
	} else {
		int w = between(r, 4, 14), h = between(r, 4, 14);
		s.x0 = s.cx - w / 2;
		s.y0 = s.cy - h / 2;
		s.x1 = s.x0 + w;
		s.y1 = s.y0 + h;
	}
	float contrast = 0.2f * uniform(r);	/* own statement: never fused into a multiply-add */
	s.level = background + 0.2f + contrast;	/* 0.2 to 0.4 brighter */
	return s;
}

/* pixel centres (x, y) inside: integer arithmetic, so the masks are exact */
static int inside(const Shape *s, int x, int y)
{
	if (s->disc) {
		int dx = x - s->cx, dy = y - s->cy;
		return dx * dx + dy * dy <= s->r * s->r;
	}
	return x >= s->x0 && x < s->x1 && y >= s->y0 && y < s->y1;
}

/* img, mask: [1, 32, 32] */
static void sample(Rng *r, float *img, float *mask)
{
	float background = 0.6f * uniform(r);
	Shape shapes[MAX_SHAPES];
	int n = between(r, 1, MAX_SHAPES);
	for (int i = 0; i < n; i++)
		shapes[i] = random_shape(r, background);
	for (int y = 0; y < SIDE; y++)
		for (int x = 0; x < SIDE; x++) {
			float v = background, m = 0;
			for (int i = 0; i < n; i++)
				if (inside(&shapes[i], x, y)) {
					v = shapes[i].level;
					m = 1;
				}
			/* four uniforms: mean 2, variance 1/3; scaled to standard deviation 0.05 */
			float noise = uniform(r) + uniform(r) + uniform(r) + uniform(r) - 2.0f;
			noise *= 0.0866025f;
			img[y * SIDE + x] = v + noise;
			mask[y * SIDE + x] = m;
		}
}

/* ---- .npy files, written atomically ---- */

typedef struct Out {
	char path[4096], tmp[4096];
	FILE *f;
} Out;

static int fail_io(const char *what, const char *path)
{
	fprintf(stderr, "shapes: cannot %s '%s': %s\n", what, path, strerror(errno));
	return 1;
}

/* version 1.0: magic, header length (uint16 LE), a dict padded with spaces to a multiple of 64, '\n' */
static int npy_begin(Out *o, const char *dir, const char *name, int64_t count)
{
	snprintf(o->path, sizeof o->path, "%s/%s", dir, name);
	snprintf(o->tmp, sizeof o->tmp, "%s/.%s.tmpXXXXXX", dir, name);
	int fd = mkstemp(o->tmp);
	if (fd >= 0) {	/* mkstemp makes it 0600; a data file is 0666 less the umask */
		mode_t mask = umask(0);
		umask(mask);
		fchmod(fd, 0666 & ~mask);
	}
	o->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
	if (!o->f) {
		if (fd >= 0) {
			close(fd);
			unlink(o->tmp);
		}
		return fail_io("create a file in", dir);
	}
	char dict[128];
	int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, 1, %d, %d), }",
			 (long long)count, SIDE, SIDE);
	int len = (10 + n + 1 + 63) / 64 * 64 - 10;	/* the dict, padding and '\n' */
	unsigned char pre[10] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(len & 0xff),
				  (unsigned char)(len >> 8) };
	fwrite(pre, 1, sizeof pre, o->f);
	fputs(dict, o->f);
	for (int i = n; i < len - 1; i++)
		fputc(' ', o->f);
	fputc('\n', o->f);
	return 0;
}

/* float32, little endian whatever the machine */
static void npy_floats(Out *o, const float *v, int n)
{
	unsigned char buf[4 * PIXELS];
	for (int i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		buf[4 * i] = (unsigned char)u;
		buf[4 * i + 1] = (unsigned char)(u >> 8);
		buf[4 * i + 2] = (unsigned char)(u >> 16);
		buf[4 * i + 3] = (unsigned char)(u >> 24);
	}
	fwrite(buf, 4, (size_t)n, o->f);
}

/* flush, fsync, close, rename over the final name; on failure the temporary goes */
static int npy_end(Out *o, int ok)
{
	ok = ok && !ferror(o->f) && fflush(o->f) == 0 && fsync(fileno(o->f)) == 0;
	ok = (fclose(o->f) == 0) && ok;
	if (!ok || rename(o->tmp, o->path) != 0) {
		int rc = fail_io("write", o->path);
		unlink(o->tmp);
		return rc;
	}
	return 0;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY);
	if (fd < 0)
		return fail_io("open the folder", dir);
	int rc = fsync(fd) == 0 ? 0 : fail_io("sync the folder", dir);
	close(fd);
	return rc;
}

/* DIR/PREFIX-x.npy and DIR/PREFIX-y.npy: count samples from the stream (seed, stream) */
static int write_set(const char *dir, const char *prefix, int64_t count, uint64_t seed, uint64_t stream)
{
	char xname[64], yname[64];
	snprintf(xname, sizeof xname, "%s-x.npy", prefix);
	snprintf(yname, sizeof yname, "%s-y.npy", prefix);
	Out x, y;
	if (npy_begin(&x, dir, xname, count))
		return 1;
	if (npy_begin(&y, dir, yname, count)) {
		fclose(x.f);
		unlink(x.tmp);
		return 1;
	}
	Rng r;
	rng_seed(&r, seed, stream);
	float img[PIXELS], mask[PIXELS];
	for (int64_t i = 0; i < count; i++) {
		sample(&r, img, mask);
		npy_floats(&x, img, PIXELS);
		npy_floats(&y, mask, PIXELS);
	}
	int rc = npy_end(&x, 1);
	rc |= npy_end(&y, !rc);
	if (rc)
		unlink(x.path);	/* a pair or nothing */
	return rc;
}

/* ---- the command line ---- */

static const char usage[] =
	"usage: shapes [--out DIR] [--train N] [--test N] [--seed S]\n"
	"Writes DIR/train-x.npy, train-y.npy, test-x.npy, test-y.npy: 32x32 float32 images\n"
	"of random discs and rectangles [N, 1, 32, 32] and their masks (1 inside a shape).\n"
	"Defaults: --out shapes --train 4000 --test 1000 --seed 1.\n";

static int count_flag(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi) {
		fprintf(stderr, "shapes: %s takes a whole number from %lld to %lld, not '%s'\n", flag, (long long)lo,
			(long long)hi, v);
		return 1;
	}
	*out = x;
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = "shapes";
	int64_t train = 4000, test = 1000, seed = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(usage, stdout);
			return 0;
		}
		if (strcmp(a, "--out") && strcmp(a, "--train") && strcmp(a, "--test") && strcmp(a, "--seed")) {
			fprintf(stderr, "shapes: unknown option '%s'\n%s", a, usage);
			return 1;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "shapes: %s needs a value\n", a);
			return 1;
		}
		const char *v = argv[++i];
		int bad = 0;
		if (!strcmp(a, "--out"))
			dir = v;
		else if (!strcmp(a, "--train"))
			bad = count_flag(a, v, 1, MAX_COUNT, &train);
		else if (!strcmp(a, "--test"))
			bad = count_flag(a, v, 1, MAX_COUNT, &test);
		else
			bad = count_flag(a, v, 0, INT64_MAX, &seed);
		if (bad)
			return 1;
	}
	if (strlen(dir) > 4000) {
		fprintf(stderr, "shapes: the folder name is too long\n");
		return 1;
	}
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return fail_io("create the folder", dir);
	/* streams 1 and 2: the test set does not depend on the training count */
	if (write_set(dir, "train", train, (uint64_t)seed, 1) || write_set(dir, "test", test, (uint64_t)seed, 2))
		return 1;
	if (sync_dir(dir))
		return 1;
	printf("shapes: %lld training and %lld test samples in %s/ (seed %lld)\n", (long long)train, (long long)test,
	       dir, (long long)seed);
	return 0;
}
