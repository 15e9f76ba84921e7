/*
 * test_data.c: the data loaders on files written here, byte by byte, into a
 * scratch folder (mkdtemp, removed at the end): good IDX (raw, .gz, a folder),
 * CSV and .npy (versions 1.0 and 2.0) files whose values are checked, and a
 * corrupt file for every error path, whose exact message is checked. Then
 * the real Fashion-MNIST, against values read independently with Python, and
 * nnrt_shuffle and nnrt_gather.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "nnrt.h"

#define FASHION "/usr/share/datasets/fashion-mnist"

/* the group's scratch folder, passed to every test as its state */
typedef struct Scratch {
	char dir[64];
	char path[8][512];	/* a few paths per test, see at() */
	int next;
} Scratch;

/* dir/name in one of a few rotating buffers, so a test can hold several */
static const char *at(Scratch *s, const char *name)
{
	char *p = s->path[s->next++ % 8];
	assert_true(strlen(s->dir) + strlen(name) + 2 <= sizeof s->path[0]);
	strcat(strcat(strcpy(p, s->dir), "/"), name);
	return p;
}

static const char *fmt(char *buf, size_t cap, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(buf, cap, f, ap);
	va_end(ap);
	return buf;
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[1024];
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct stat st;
		snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
		if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
			remove_tree(p);
		else
			unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

static int setup(void **state)
{
	Scratch *s = calloc(1, sizeof *s);
	if (!s)
		return -1;
	strcpy(s->dir, "/tmp/nnrt-data-XXXXXX");
	if (!mkdtemp(s->dir)) {
		free(s);
		return -1;
	}
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	Scratch *s = *state;
	remove_tree(s->dir);
	free(s);
	return 0;
}

/* ---- writing files ---- */

/* raw bytes, or gzip-compressed when the name ends in .gz */
static void put(const char *path, const void *data, size_t n)
{
	size_t len = strlen(path);
	if (len > 3 && !strcmp(path + len - 3, ".gz")) {
		gzFile gz = gzopen(path, "wb");
		assert_non_null(gz);
		assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
		assert_int_equal(gzclose(gz), Z_OK);
		return;
	}
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void put_text(const char *path, const char *text)
{
	put(path, text, strlen(text));
}

static size_t be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
	return 4;
}

/* an IDX file: magic, nd big-endian sizes, n bytes of data */
static size_t idx(unsigned char *buf, uint32_t magic, const uint32_t *dims, int nd, const unsigned char *data,
		  size_t n)
{
	size_t len = be32(buf, magic);
	for (int i = 0; i < nd; i++)
		len += be32(buf + len, dims[i]);
	memcpy(buf + len, data, n);
	return len + n;
}

/* three 2x2 images with pixels 0, 10, 20, ..., 110, and labels 7, 0, 9 */
static const unsigned char pixels[12] = {0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 255};
static const unsigned char labels3[3] = {7, 0, 9};

static void put_images(const char *path, uint32_t count, size_t nbytes, size_t extra)
{
	unsigned char buf[64] = {0};
	uint32_t dims[3] = {count, 2, 2};
	size_t n = idx(buf, 0x803, dims, 3, pixels, nbytes);
	put(path, buf, n + extra);
}

static void put_labels(const char *path, uint32_t count, const unsigned char *labels)
{
	unsigned char buf[64];
	put(path, buf, idx(buf, 0x801, &count, 1, labels, count));
}

/* A .npy file as numpy.save writes it: the header dict padded with spaces
 * and a \n so the data starts at a multiple of 64. */
static size_t npy(unsigned char *buf, int major, const char *dict, const void *data, size_t n)
{
	size_t pre = major == 1 ? 10 : 12;
	size_t hlen = strlen(dict) + 1;
	hlen += (64 - (pre + hlen) % 64) % 64;
	memcpy(buf, "\x93NUMPY", 6);
	buf[6] = (unsigned char)major, buf[7] = 0;
	for (size_t i = 0; i < pre - 8; i++)
		buf[8 + i] = (unsigned char)(hlen >> (8 * i));
	memset(buf + pre, ' ', hlen);
	memcpy(buf + pre, dict, strlen(dict));
	buf[pre + hlen - 1] = '\n';
	memcpy(buf + pre + hlen, data, n);
	return pre + hlen + n;
}

static void put_npy(const char *path, int major, const char *dict, const void *data, size_t n)
{
	unsigned char buf[4096];
	assert_true(n + 256 < sizeof buf);
	put(path, buf, npy(buf, major, dict, data, n));
}

static void f32le(unsigned char *p, float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(u >> (8 * i));
}

static void i64le(unsigned char *p, int64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)((uint64_t)v >> (8 * i));
}

/* ---- loading ---- */

static NnrtDataSpec class_spec(int64_t in_elems, int64_t classes)
{
	NnrtDataSpec spec = {in_elems, NNRT_TARGET_CLASS, 0, classes, -1, -1};
	return spec;
}

static NnrtDataSpec float_spec(int64_t in_elems, int64_t target_elems)
{
	NnrtDataSpec spec = {in_elems, NNRT_TARGET_FLOAT, target_elems, 0, -1, -1};
	return spec;
}

static void load_ok(const char *path, NnrtSplit split, const NnrtDataSpec *spec, NnrtDataset *d)
{
	NnrtError err = {"untouched"};
	if (nnrt_data_load(path, split, spec, d, &err))
		fail_msg("loading %s failed: %s", path, err.msg);
}

/* the load fails with exactly want and leaves an empty dataset behind */
static void fails_with(const char *path, const NnrtDataSpec *spec, const char *want)
{
	NnrtDataset d;
	NnrtError err = {""};
	memset(&d, 0xab, sizeof d);
	assert_int_equal(nnrt_data_load(path, NNRT_SPLIT_TRAIN, spec, &d, &err), -1);
	assert_string_equal(err.msg, want);
	assert_null(d.x);
	assert_null(d.labels);
	assert_null(d.t);
	assert_int_equal(d.count, 0);
}

/* the three images of put_images with labels 7, 0, 9 */
static void assert_three_images(const NnrtDataset *d)
{
	assert_int_equal(d->count, 3);
	assert_int_equal(d->in_elems, 4);
	assert_int_equal(d->target, NNRT_TARGET_CLASS);
	assert_int_equal(d->target_elems, 1);
	for (int i = 0; i < 12; i++)
		assert_true(d->x[i] == pixels[i] / 255.0f);
	assert_true(d->x[11] == 1.0f);
	for (int i = 0; i < 3; i++)
		assert_int_equal(d->labels[i], labels3[i]);
	assert_null(d->t);
}

/* ---- IDX ---- */

static void test_idx_raw_file(void **state)
{
	Scratch *s = *state;
	const char *images = at(s, "a-images-idx3-ubyte");
	put_images(images, 3, 12, 0);
	put_labels(at(s, "a-labels-idx1-ubyte"), 3, labels3);
	NnrtDataSpec spec = class_spec(4, 10);
	NnrtDataset d;
	load_ok(images, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_three_images(&d);
	nnrt_data_free(&d);
	assert_null(d.x);
	assert_int_equal(d.count, 0);
}

static void test_idx_gz_file(void **state)
{
	Scratch *s = *state;
	const char *images = at(s, "b-images-idx3-ubyte.gz");
	put_images(images, 3, 12, 0);
	put_labels(at(s, "b-labels-idx1-ubyte.gz"), 3, labels3);
	NnrtDataSpec spec = class_spec(4, 10);
	NnrtDataset d;
	load_ok(images, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_three_images(&d);
	nnrt_data_free(&d);
}

/* a folder: train-* raw, t10k-* compressed; the split picks the files */
static void test_idx_folder(void **state)
{
	Scratch *s = *state;
	const char *dir = at(s, "mnist");
	assert_int_equal(mkdir(dir, 0700), 0);
	put_images(at(s, "mnist/train-images-idx3-ubyte"), 3, 12, 0);
	put_labels(at(s, "mnist/train-labels-idx1-ubyte"), 3, labels3);
	put_images(at(s, "mnist/t10k-images-idx3-ubyte.gz"), 2, 8, 0);
	put_labels(at(s, "mnist/t10k-labels-idx1-ubyte.gz"), 2, (const unsigned char *)"\x01\x02");
	NnrtDataSpec spec = class_spec(4, 10);
	NnrtDataset train, test;
	load_ok(dir, NNRT_SPLIT_TRAIN, &spec, &train);
	load_ok(dir, NNRT_SPLIT_TEST, &spec, &test);
	assert_three_images(&train);
	assert_int_equal(test.count, 2);
	assert_true(test.x[7] == 70 / 255.0f);
	assert_int_equal(test.labels[0], 1);
	assert_int_equal(test.labels[1], 2);
	nnrt_data_free(&train);
	nnrt_data_free(&test);
}

static void test_idx_errors_folder(void **state)
{
	Scratch *s = *state;
	const char *dir = at(s, "empty");
	char want[1024];
	assert_int_equal(mkdir(dir, 0700), 0);
	NnrtDataSpec spec = class_spec(4, 10);
	fails_with(dir, &spec,
		   fmt(want, sizeof want,
		       "%s: holds neither train-images-idx3-ubyte nor train-images-idx3-ubyte.gz; a data folder holds "
		       "the train-* and t10k-* IDX files as MNIST ships them",
		       dir));
	const char *images = at(s, "c-images-idx3-ubyte");
	put_images(images, 3, 12, 0);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: no such file, but the labels of %s must lie beside it under this name",
		       at(s, "c-labels-idx1-ubyte"), images));
}

static void test_idx_truncated(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 10);
	const char *images = at(s, "d-images-idx3-ubyte");
	put_labels(at(s, "d-labels-idx1-ubyte"), 3, labels3);
	put_images(images, 3, 10, 0);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: truncated: the 3 images of 2x2 the header describes need 12 bytes but only 10 follow; "
		       "the file is incomplete, fetch or write it again",
		       images));
	put(images, "\0\0\x08\x03\0\0\0", 7);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: truncated: the IDX header fields need 16 bytes but only 7 follow; the file is "
		       "incomplete, fetch or write it again",
		       images));
	const char *gz = at(s, "e-images-idx3-ubyte.gz");
	put_labels(at(s, "e-labels-idx1-ubyte.gz"), 3, labels3);
	put_images(gz, 3, 9, 0);
	fails_with(gz, &spec,
		   fmt(want, sizeof want,
		       "%s: truncated: the 3 images of 2x2 the header describes need 12 bytes but only 9 follow; "
		       "the file is incomplete, fetch or write it again",
		       gz));
}

static void test_idx_trailing_bytes(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 10);
	const char *images = at(s, "f-images-idx3-ubyte.gz");
	const char *labels = at(s, "f-labels-idx1-ubyte.gz");
	put_images(images, 3, 12, 3);
	put_labels(labels, 3, labels3);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: 3 bytes follow the 3 images of 2x2 the header describes; the file is damaged or its "
		       "header is wrong",
		       images));
	unsigned char buf[64];
	uint32_t three = 3;
	size_t n = idx(buf, 0x801, &three, 1, labels3, 3);
	buf[n] = 1;
	put_images(images, 3, 12, 0);
	put(labels, buf, n + 1);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: 1 byte follows the 3 labels the header describes; the file is damaged or its header "
		       "is wrong",
		       labels));
}

static void test_idx_wrong_magic(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 10);
	const char *images = at(s, "g-images-idx3-ubyte");
	const char *labels = at(s, "g-labels-idx1-ubyte");
	put_labels(images, 3, labels3);	/* a labels file in the images' place */
	put_labels(labels, 3, labels3);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: not an IDX images file: magic number 0x00000801, expected 0x00000803; check that this "
		       "is the images file",
		       images));
	put_images(images, 3, 12, 0);
	put_images(labels, 3, 12, 0);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: not an IDX labels file: magic number 0x00000803, expected 0x00000801; check that this "
		       "is the labels file",
		       labels));
	unsigned char buf[64];
	uint32_t dims[3] = {3, 2, 2};
	put(images, buf, idx(buf, 0x0d03, dims, 3, pixels, 12));	/* 0x0d: float32 elements */
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: IDX element type 0x0d is not supported, only unsigned bytes (0x08); convert the data "
		       "to uint8",
		       images));
}

/* compressed data under a plain name, and plain data under a .gz name */
static void test_idx_gzip_mixups(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 10);
	const char *gz = at(s, "h-images-idx3-ubyte.gz");
	const char *images = at(s, "h-images-idx3-ubyte");
	put_labels(at(s, "h-labels-idx1-ubyte"), 3, labels3);
	put_labels(at(s, "h-labels-idx1-ubyte.gz"), 3, labels3);
	put_images(gz, 3, 12, 0);
	assert_int_equal(rename(gz, images), 0);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: the file is gzip-compressed but its name does not end in .gz; add .gz to its name or "
		       "decompress it",
		       images));
	put_images(gz, 3, 12, 0);
	assert_int_equal(rename(images, gz), 0);
	put_images(images, 3, 12, 0);
	assert_int_equal(rename(images, gz), 0);
	fails_with(gz, &spec,
		   fmt(want, sizeof want,
		       "%s: not gzip data (it does not start with the bytes 1f 8b); if the file is uncompressed, "
		       "remove .gz from its name",
		       gz));
}

/* gzip streams cut short or damaged; the IDX inside would be fine */
static void test_gzip_damaged(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 10);
	const char *gz = at(s, "i-images-idx3-ubyte.gz");
	put_labels(at(s, "i-labels-idx1-ubyte.gz"), 3, labels3);
	put_images(gz, 3, 12, 0);
	unsigned char buf[256];
	FILE *f = fopen(gz, "rb");
	assert_non_null(f);
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	assert_true(n > 30 && n < sizeof buf);
	put(at(s, "i.tmp"), buf, n - 10);	/* drops the CRC and the length */
	assert_int_equal(rename(at(s, "i.tmp"), gz), 0);
	fails_with(gz, &spec,
		   fmt(want, sizeof want,
		       "%s: the gzip data ends early (unexpected end of file); the file is incomplete, fetch it "
		       "again",
		       gz));
	buf[n - 8] ^= 0xff;	/* the CRC-32 of the data */
	put(at(s, "i.tmp"), buf, n);
	assert_int_equal(rename(at(s, "i.tmp"), gz), 0);
	fails_with(gz, &spec,
		   fmt(want, sizeof want, "%s: the gzip data is corrupt (incorrect data check); fetch the file again",
		       gz));
}

static void test_idx_labels_checked(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 9);
	const char *images = at(s, "j-images-idx3-ubyte");
	const char *labels = at(s, "j-labels-idx1-ubyte");
	put_images(images, 3, 12, 0);
	put_labels(labels, 3, labels3);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: label 9 of sample 2 is outside 0..8; the model has 9 classes, so every label must be "
		       "below 9",
		       labels));
	spec.classes = 10;
	put_labels(labels, 2, labels3);
	fails_with(images, &spec,
		   fmt(want, sizeof want, "%s: holds 2 labels but %s holds 3 images; use the labels file of these images",
		       labels, images));
	put_labels(labels, 0, labels3);
	fails_with(images, &spec, fmt(want, sizeof want, "%s: holds no samples; use a file with data", labels));
	unsigned char buf[64];
	uint32_t three = 3;
	put(labels, buf, idx(buf, 0x801, &three, 1, labels3, 2));
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: truncated: the 3 labels the header describes need 3 bytes but only 2 follow; the file "
		       "is incomplete, fetch or write it again",
		       labels));
}

static void test_idx_must_fit_model(void **state)
{
	Scratch *s = *state;
	char want[1024];
	const char *images = at(s, "k-images-idx3-ubyte");
	put_images(images, 3, 12, 0);
	put_labels(at(s, "k-labels-idx1-ubyte"), 3, labels3);
	NnrtDataSpec spec = class_spec(5, 10);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: images of 2x2 hold 4 values but the model's input takes 5; use images that fit the "
		       "model or change its input shape",
		       images));
	spec = float_spec(4, 1);
	fails_with(images, &spec,
		   fmt(want, sizeof want,
		       "%s: IDX labels are classes but the model's targets are floats; use a CSV or .npy file with "
		       "float targets",
		       images));
}

/* ---- CSV ---- */

/* header guessed, label last, \r\n, a blank line, spaces around fields */
static void test_csv_basic(void **state)
{
	Scratch *s = *state;
	const char *csv = at(s, "basic.csv");
	put_text(csv, "\xEF\xBB\xBFx0,x1,x2,label\r\n0.5, -1 ,2e-1,3\r\n\r\n4,5,6,0\n7,8,9,1");
	NnrtDataSpec spec = class_spec(3, 4);
	NnrtDataset d;
	load_ok(csv, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, 3);
	const float x[9] = {0.5f, -1, 0.2f, 4, 5, 6, 7, 8, 9};
	for (int i = 0; i < 9; i++)
		assert_true(d.x[i] == x[i]);
	assert_int_equal(d.labels[0], 3);
	assert_int_equal(d.labels[1], 0);
	assert_int_equal(d.labels[2], 1);
	nnrt_data_free(&d);
}

/* label first, no header: a numeric first line is data, even if forced */
static void test_csv_label_first(void **state)
{
	Scratch *s = *state;
	const char *csv = at(s, "first.csv");
	put_text(csv, "1,10,20\n2,30,40\n");
	NnrtDataSpec spec = class_spec(2, 3);
	spec.csv_label_column = 0;
	NnrtDataset d;
	load_ok(csv, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, 2);
	assert_true(d.x[0] == 10 && d.x[1] == 20 && d.x[2] == 30 && d.x[3] == 40);
	assert_int_equal(d.labels[0], 1);
	assert_int_equal(d.labels[1], 2);
	nnrt_data_free(&d);
	spec.csv_header = 1;	/* skips "1,10,20" */
	load_ok(csv, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, 1);
	assert_int_equal(d.labels[0], 2);
	nnrt_data_free(&d);
}

static void test_csv_float_target(void **state)
{
	Scratch *s = *state;
	const char *csv = at(s, "float.csv");
	put_text(csv, "1,0.25,2\n3,-7.5,4\n");
	NnrtDataSpec spec = float_spec(2, 1);
	spec.csv_label_column = 1;
	NnrtDataset d;
	load_ok(csv, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, 2);
	assert_int_equal(d.target, NNRT_TARGET_FLOAT);
	assert_null(d.labels);
	assert_true(d.t[0] == 0.25f && d.t[1] == -7.5f);
	assert_true(d.x[0] == 1 && d.x[1] == 2 && d.x[2] == 3 && d.x[3] == 4);
	nnrt_data_free(&d);
	spec.target_elems = 2;
	char want[1024];
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: a CSV line holds one target but the model's target takes 2 values; save inputs and "
		       "targets as inputs.npy,targets.npy instead",
		       csv));
}

/* a file larger than the first read buffer, so the text grows */
static void test_csv_large(void **state)
{
	Scratch *s = *state;
	enum { ROWS = 3000, COLS = 16 };
	size_t cap = ROWS * (COLS + 1) * 8 + 64, n = 0;
	char *text = malloc(cap);
	assert_non_null(text);
	for (int r = 0; r < ROWS; r++) {
		for (int c = 0; c < COLS; c++)
			n += (size_t)snprintf(text + n, cap - n, "%d.5,", r % 100 + c);
		n += (size_t)snprintf(text + n, cap - n, "%d\n", r % 7);
	}
	assert_true(n > 100000);
	const char *csv = at(s, "large.csv");
	put(csv, text, n);
	free(text);
	NnrtDataSpec spec = class_spec(COLS, 7);
	NnrtDataset d;
	load_ok(csv, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, ROWS);
	for (int r = 0; r < ROWS; r += 997) {
		assert_int_equal(d.labels[r], r % 7);
		for (int c = 0; c < COLS; c++)
			assert_true(d.x[r * COLS + c] == (float)(r % 100 + c) + 0.5f);
	}
	assert_true(d.x[ROWS * COLS - 1] == 99 + 15 + 0.5f);
	nnrt_data_free(&d);
}

static void test_csv_bad_fields(void **state)
{
	Scratch *s = *state;
	char want[1024];
	const char *csv = at(s, "bad.csv");
	NnrtDataSpec spec = class_spec(2, 10);
	put_text(csv, "a,b,label\n1,2,3\n4,x1,5\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 3, column 2: 'x1' is not a number; fields are numbers separated by commas", csv));
	put_text(csv, "1,2,3\n4, ,5\n");
	fails_with(csv, &spec, fmt(want, sizeof want, "%s: line 2, column 2 is empty; every field needs a number", csv));
	put_text(csv, "1,2,3\n4,5,nan\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 2, column 3: 'nan' is not a number; fields are numbers separated by commas", csv));
	put_text(csv, "1,2,3\n4,5 6,7\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 2, column 2: '5 6' is not a number; fields are numbers separated by commas", csv));
	put_text(csv, "1,2,3\n\n4,5,6,7\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 3 has 4 fields but line 1 has 3; every line needs the same number of fields", csv));
	spec.csv_header = 0;
	put_text(csv, "a,b,label\n1,2,3\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 1, column 1: 'a' is not a number; fields are numbers separated by commas", csv));
}

static void test_csv_labels_checked(void **state)
{
	Scratch *s = *state;
	char want[1024];
	const char *csv = at(s, "labels.csv");
	NnrtDataSpec spec = class_spec(2, 10);
	put_text(csv, "1,2,3\n4,5,10\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 2, column 3: label 10 is outside 0..9; the model has 10 classes, so every label "
		       "must be below 10",
		       csv));
	put_text(csv, "1,2,-1\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 1, column 3: label -1 is outside 0..9; the model has 10 classes, so every label "
		       "must be below 10",
		       csv));
	put_text(csv, "1,2,2.5\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 1, column 3: label 2.5 is not a whole number; class labels are 0, 1, 2, ...", csv));
}

static void test_csv_shape_checked(void **state)
{
	Scratch *s = *state;
	char want[1024];
	const char *csv = at(s, "shape.csv");
	NnrtDataSpec spec = class_spec(3, 10);
	put_text(csv, "1,2,3\n");
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: line 1 has 3 fields, so 2 inputs besides the label, but the model's input takes 3; use "
		       "data that fits the model or change its input shape",
		       csv));
	spec.in_elems = 2;
	spec.csv_label_column = 3;
	fails_with(csv, &spec,
		   fmt(want, sizeof want,
		       "%s: the label column is 3 (counting from 0, -1 for the last) but line 1 has 3 fields; "
		       "choose one of them",
		       csv));
	put_text(csv, "a,b,c\n\n");
	fails_with(csv, &spec, fmt(want, sizeof want, "%s: holds no samples; use a file with data", csv));
	put(csv, "1,2\0,3\n", 7);
	fails_with(csv, &spec,
		   fmt(want, sizeof want, "%s: holds a NUL byte at offset 3; it is binary, not CSV text", csv));
}

/* ---- NumPy ---- */

/* version 1.0: float32 [3, 2, 2] inputs, int64 labels */
static void test_npy_v1_float_inputs(void **state)
{
	Scratch *s = *state;
	unsigned char x[48], y[24];
	for (int i = 0; i < 12; i++)
		f32le(x + 4 * i, (float)i * 0.5f - 1.0f);
	i64le(y, 4), i64le(y + 8, 0), i64le(y + 16, 2);
	const char *in = at(s, "x1.npy"), *tg = at(s, "y1.npy");
	put_npy(in, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2, 2), }", x, sizeof x);
	put_npy(tg, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", y, sizeof y);
	char pair[1100];
	snprintf(pair, sizeof pair, "%s,%s", in, tg);
	NnrtDataSpec spec = class_spec(4, 5);
	NnrtDataset d;
	load_ok(pair, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, 3);
	for (int i = 0; i < 12; i++)
		assert_true(d.x[i] == (float)i * 0.5f - 1.0f);
	assert_int_equal(d.labels[0], 4);
	assert_int_equal(d.labels[1], 0);
	assert_int_equal(d.labels[2], 2);
	nnrt_data_free(&d);
}

/* version 2.0: uint8 inputs scaled by 1/255, uint8 labels of shape (3, 1),
 * keys in another order and double quotes */
static void test_npy_v2_uint8_inputs(void **state)
{
	Scratch *s = *state;
	const char *in = at(s, "x2.npy"), *tg = at(s, "y2.npy");
	put_npy(in, 2, "{\"shape\": (3, 4), \"fortran_order\": False, \"descr\": \"|u1\"}", pixels, 12);
	put_npy(tg, 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 1), }", labels3, 3);
	char pair[1100];
	snprintf(pair, sizeof pair, "%s,%s", in, tg);
	NnrtDataSpec spec = class_spec(4, 10);
	NnrtDataset d;
	load_ok(pair, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_three_images(&d);
	nnrt_data_free(&d);
}

static void test_npy_float_targets(void **state)
{
	Scratch *s = *state;
	unsigned char t[24];
	for (int i = 0; i < 6; i++)
		f32le(t + 4 * i, (float)i + 0.25f);
	const char *in = at(s, "x3.npy"), *tg = at(s, "t3.npy");
	put_npy(in, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }", pixels, 12);
	put_npy(tg, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", t, sizeof t);
	char pair[1100];
	snprintf(pair, sizeof pair, "%s,%s", in, tg);
	NnrtDataSpec spec = float_spec(4, 2);
	NnrtDataset d;
	load_ok(pair, NNRT_SPLIT_TRAIN, &spec, &d);
	assert_int_equal(d.count, 3);
	assert_int_equal(d.target_elems, 2);
	assert_null(d.labels);
	for (int i = 0; i < 6; i++)
		assert_true(d.t[i] == (float)i + 0.25f);
	assert_true(d.x[11] == 1.0f);
	nnrt_data_free(&d);
}

/* Writes inputs (the given dict and data) and good uint8 labels (3,), and
 * checks the load fails with want (its %s is the inputs' path). */
static void npy_inputs_fail(Scratch *s, const char *dict, const void *data, size_t n, const char *want_fmt)
{
	char pair[1100], want[1024];
	const char *in = at(s, "bad-x.npy"), *tg = at(s, "good-y.npy");
	put_npy(in, 1, dict, data, n);
	put_npy(tg, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }", labels3, 3);
	snprintf(pair, sizeof pair, "%s,%s", in, tg);
	NnrtDataSpec spec = class_spec(4, 10);
	fails_with(pair, &spec, fmt(want, sizeof want, want_fmt, in));
}

static void test_npy_dtype_checked(void **state)
{
	Scratch *s = *state;
	unsigned char x[96] = {0};
	npy_inputs_fail(s, "{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", x, 96,
			"%s: inputs of dtype '<f8' are not supported; save them as float32 ('<f4') or uint8 ('|u1'), "
			"e.g. x.astype(np.float32)");
	npy_inputs_fail(s, "{'descr': '>f4', 'fortran_order': False, 'shape': (3, 4), }", x, 48,
			"%s: inputs of dtype '>f4' are not supported; save them as float32 ('<f4') or uint8 ('|u1'), "
			"e.g. x.astype(np.float32)");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", x, 48,
			"%s: the array is in Fortran order; save np.ascontiguousarray(a) instead");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 5), }", x, 60,
			"%s: inputs of shape (3, 5) hold 5 values per sample but the model's input takes 4; use data "
			"that fits the model or change its input shape");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", x, 4,
			"%s: holds a single value, not one row per sample; save an array of samples");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4), }", x, 0,
			"%s: holds no samples; use a file with data");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", x, 0,
			"%s: the shape is too large to hold; use a smaller array");
	f32le(x + 20, INFINITY);
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", x, 48,
			"%s: sample 1 holds inf; replace NaN and infinite values");
}

static void test_npy_header_checked(void **state)
{
	Scratch *s = *state;
	unsigned char x[48] = {0};
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4) 'x', }", x, 48,
			"%s: cannot parse the .npy header at \"'x', }\"; save the array with numpy.save");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), 'x': 1}", x, 48,
			"%s: the .npy header has an unknown key 'x'; save the array with numpy.save");
	npy_inputs_fail(s, "{'descr': '<f4', 'shape': (3, 4), }", x, 48,
			"%s: the .npy header lacks 'fortran_order'; save the array with numpy.save");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (3, 4), }", x, 48,
			"%s: cannot parse the .npy header at \"'fortran_order': Maybe, 'sha...\"; save the array "
			"with numpy.save");
	char want[1024];
	const char *in = at(s, "bad-x.npy"), *tg = at(s, "good-y.npy");
	char pair[1100];
	snprintf(pair, sizeof pair, "%s,%s", in, tg);
	NnrtDataSpec spec = class_spec(4, 10);
	put(in, "\x93NUMPX\x01\x00", 8);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: not a NumPy .npy file (it does not start with \\x93NUMPY); save arrays with numpy.save",
		       in));
	unsigned char buf[256];
	size_t n = npy(buf, 3, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", x, 48);
	put(in, buf, n);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: .npy format version 3.0 is not supported, only 1.0 and 2.0; save the array with "
		       "numpy.save",
		       in));
	put(in, "\x93NUMPY\x02\x00\xff\xff\xff\xff", 12);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: the .npy header claims 4294967295 bytes, too many for an array of numbers; save the "
		       "array with numpy.save",
		       in));
	put(in, "\x93NUMPY\x02\x00\x76\x00", 10);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: truncated: the .npy header fields need 12 bytes but only 10 follow; the file is "
		       "incomplete, fetch or write it again",
		       in));
	n = npy(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", x, 0);
	put(in, buf, n - 20);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: truncated: the .npy header fields need 118 bytes but only 98 follow; the file is "
		       "incomplete, fetch or write it again",
		       in));
}

static void test_npy_length_checked(void **state)
{
	Scratch *s = *state;
	unsigned char x[52] = {0};
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", x, 47,
			"%s: truncated: the values of shape (3, 4) need 48 bytes but only 47 follow; the file is "
			"incomplete, fetch or write it again");
	npy_inputs_fail(s, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", x, 52,
			"%s: 4 bytes follow the values of shape (3, 4); the file is damaged or its header is wrong");
}

static void test_npy_targets_checked(void **state)
{
	Scratch *s = *state;
	char pair[1100], want[1024];
	const char *in = at(s, "x4.npy"), *tg = at(s, "y4.npy");
	snprintf(pair, sizeof pair, "%s,%s", in, tg);
	put_npy(in, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }", pixels, 12);
	NnrtDataSpec spec = class_spec(4, 10);
	unsigned char y[24];
	i64le(y, 1), i64le(y + 8, -1), i64le(y + 16, 2);
	put_npy(tg, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", y, 24);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: label -1 of sample 1 is outside 0..9; the model has 10 classes, so every label must be "
		       "below 10",
		       tg));
	put_npy(tg, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", y, 16);
	fails_with(pair, &spec,
		   fmt(want, sizeof want, "%s: holds 2 targets but %s holds 3 samples; both arrays need one row per sample",
		       tg, in));
	put_npy(tg, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", y, 12);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: class labels of dtype '<f4' are not supported; save them as int64 ('<i8') or uint8 "
		       "('|u1'), e.g. y.astype(np.int64)",
		       tg));
	put_npy(tg, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 2), }", y, 6);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: class labels of shape (3, 2) hold 2 values per sample; save one integer label per "
		       "sample, not one-hot rows",
		       tg));
	spec = float_spec(4, 2);
	put_npy(tg, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }", y, 24);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: float targets of dtype '<i8' are not supported; save them as float32 ('<f4'), e.g. "
		       "y.astype(np.float32)",
		       tg));
	put_npy(tg, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", y, 12);
	fails_with(pair, &spec,
		   fmt(want, sizeof want,
		       "%s: targets of shape (3,) hold 1 values per sample but the model's target takes 2; use "
		       "targets that fit the model",
		       tg));
}

/* ---- paths ---- */

static void test_paths_checked(void **state)
{
	Scratch *s = *state;
	char want[1024];
	NnrtDataSpec spec = class_spec(4, 10);
	const char *missing = at(s, "missing.csv");
	fails_with(missing, &spec,
		   fmt(want, sizeof want, "%s: cannot open it: No such file or directory; check the path", missing));
	const char *in = at(s, "x5.npy");
	put_npy(in, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (3, 4), }", pixels, 12);
	fails_with(in, &spec,
		   fmt(want, sizeof want,
		       "%s: a .npy file holds one array; pass inputs and targets as inputs.npy,targets.npy", in));
	char pair[1100];
	snprintf(pair, sizeof pair, "%s,%s", in, at(s, "missing.npy"));
	fails_with(pair, &spec,
		   fmt(want, sizeof want, "%s: cannot open it: No such file or directory; check the path",
		       at(s, "missing.npy")));
	fails_with("a.npy,b.npy,c.npy", &spec,
		   "a.npy,b.npy,c.npy: expected two .npy files separated by one comma, inputs first: "
		   "inputs.npy,targets.npy");
	const char *labels = at(s, "l-labels-idx1-ubyte");
	put_labels(labels, 3, labels3);
	fails_with(labels, &spec,
		   fmt(want, sizeof want,
		       "%s: is an IDX labels file; pass the images file (its labels are found beside it) or the "
		       "folder",
		       labels));
	const char *other = at(s, "data.bin");
	put_text(other, "1,2,3\n");
	fails_with(other, &spec,
		   fmt(want, sizeof want,
		       "%s: unknown data format; pass a folder of IDX files, an IDX images file "
		       "(*-images-idx3-ubyte[.gz]), a .csv file or inputs.npy,targets.npy",
		       other));
	spec.in_elems = 0;
	fails_with(other, &spec,
		   fmt(want, sizeof want,
		       "%s: the data spec needs in_elems > 0 and classes > 0 (class targets) or target_elems > 0 "
		       "(float targets); this is a bug in the caller",
		       other));
}

/* ---- Fashion-MNIST, checked against Python's reading of the same files ---- */

static double pixel_sum(const float *x, int64_t n)
{
	double sum = 0;
	for (int64_t i = 0; i < n; i++)
		sum += (double)lrintf(x[i] * 255.0f);
	return sum;
}

static void test_fashion_mnist(void **state)
{
	(void)state;
	struct stat st;
	if (stat(FASHION, &st) != 0)
		skip();
	NnrtDataSpec spec = class_spec(784, 10);
	NnrtDataset train, test;
	load_ok(FASHION, NNRT_SPLIT_TRAIN, &spec, &train);
	assert_int_equal(train.count, 60000);
	assert_int_equal(train.in_elems, 784);
	assert_int_equal(train.labels[0], 9);	/* an ankle boot */
	assert_int_equal(train.labels[59999], 5);
	int64_t per_class[10] = {0};
	for (int64_t i = 0; i < train.count; i++) {
		assert_in_range(train.labels[i], 0, 9);
		per_class[train.labels[i]]++;
	}
	for (int c = 0; c < 10; c++)
		assert_int_equal(per_class[c], 6000);
	assert_true(train.x[96] == 1 / 255.0f && train.x[99] == 13 / 255.0f && train.x[100] == 73 / 255.0f);
	assert_true(train.x[403] == 0.0f && train.x[404] == 237 / 255.0f && train.x[405] == 226 / 255.0f);
	assert_true(pixel_sum(train.x, 784) == 76247);
	assert_true(pixel_sum(train.x + 59999 * 784, 784) == 16684);
	assert_true(pixel_sum(train.x, 60000 * 784) == 3431114169.0);
	nnrt_data_free(&train);

	char images[256];
	snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", FASHION);
	load_ok(images, NNRT_SPLIT_TRAIN, &spec, &test);	/* the file route; the split is the file's */
	assert_int_equal(test.count, 10000);
	static const int64_t first[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
	for (int i = 0; i < 10; i++)
		assert_int_equal(test.labels[i], first[i]);
	assert_true(pixel_sum(test.x, 784) == 33456);
	assert_true(pixel_sum(test.x + 9999 * 784, 784) == 24390);
	assert_true(test.x[784 + 300] == 1.0f && test.x[784 + 301] == 237 / 255.0f);
	nnrt_data_free(&test);
}

/* ---- batches ---- */

/* the order a Python transcription of the reference PCG32 and the same
 * Fisher-Yates gives for seed 7, stream 1 */
static void test_shuffle_reference(void **state)
{
	(void)state;
	static const int64_t want[10] = {2, 4, 7, 5, 8, 6, 3, 9, 1, 0};
	int64_t order[10];
	NnrtRng r;
	nnrt_rng_seed(&r, 7, 1);
	nnrt_shuffle(&r, order, 10);
	for (int i = 0; i < 10; i++)
		assert_int_equal(order[i], want[i]);
}

/* every one of the 6 orders of 3 equally often (chi-square, 5 degrees of
 * freedom: 99.99th percentile ~25.7), and a large shuffle is a permutation */
static void test_shuffle_uniform(void **state)
{
	(void)state;
	NnrtRng r;
	nnrt_rng_seed(&r, 11, 3);
	int counts[6] = {0};
	int n = 60000;
	for (int t = 0; t < n; t++) {
		int64_t o[3];
		nnrt_shuffle(&r, o, 3);
		counts[o[0] * 2 + (o[1] > o[2])]++;
	}
	double chi = 0;
	for (int i = 0; i < 6; i++)
		chi += (counts[i] - n / 6.0) * (counts[i] - n / 6.0) / (n / 6.0);
	assert_true(chi < 25.7);
	enum { BIG = 5000 };
	static int64_t order[BIG];
	static char seen[BIG];
	nnrt_shuffle(&r, order, BIG);
	int moved = 0;
	for (int i = 0; i < BIG; i++) {
		assert_in_range(order[i], 0, BIG - 1);
		assert_false(seen[order[i]]);
		seen[order[i]] = 1;
		moved += order[i] != i;
	}
	assert_true(moved > BIG - 20);
}

static void test_gather(void **state)
{
	(void)state;
	float x[6] = {0, 1, 10, 11, 20, 21}, t[6] = {0.5f, 0.25f, 1.5f, 1.25f, 2.5f, 2.25f};
	int64_t labels[3] = {7, 8, 9};
	NnrtDataset d = {3, 2, x, NNRT_TARGET_CLASS, 1, labels, NULL};
	int64_t order[4] = {0, 2, 1, 0};
	float bx[4] = {0};
	int64_t by[2] = {0};
	nnrt_gather(&d, order, 1, 2, bx, by);
	assert_true(bx[0] == 20 && bx[1] == 21 && bx[2] == 10 && bx[3] == 11);
	assert_int_equal(by[0], 9);
	assert_int_equal(by[1], 8);
	NnrtDataset f = {3, 2, x, NNRT_TARGET_FLOAT, 2, NULL, t};
	float bt[4] = {0};
	nnrt_gather(&f, order, 2, 2, bx, bt);
	assert_true(bx[0] == 10 && bx[1] == 11 && bx[2] == 0 && bx[3] == 1);
	assert_true(bt[0] == 1.5f && bt[1] == 1.25f && bt[2] == 0.5f && bt[3] == 0.25f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idx_raw_file),
		cmocka_unit_test(test_idx_gz_file),
		cmocka_unit_test(test_idx_folder),
		cmocka_unit_test(test_idx_errors_folder),
		cmocka_unit_test(test_idx_truncated),
		cmocka_unit_test(test_idx_trailing_bytes),
		cmocka_unit_test(test_idx_wrong_magic),
		cmocka_unit_test(test_idx_gzip_mixups),
		cmocka_unit_test(test_gzip_damaged),
		cmocka_unit_test(test_idx_labels_checked),
		cmocka_unit_test(test_idx_must_fit_model),
		cmocka_unit_test(test_csv_basic),
		cmocka_unit_test(test_csv_label_first),
		cmocka_unit_test(test_csv_float_target),
		cmocka_unit_test(test_csv_large),
		cmocka_unit_test(test_csv_bad_fields),
		cmocka_unit_test(test_csv_labels_checked),
		cmocka_unit_test(test_csv_shape_checked),
		cmocka_unit_test(test_npy_v1_float_inputs),
		cmocka_unit_test(test_npy_v2_uint8_inputs),
		cmocka_unit_test(test_npy_float_targets),
		cmocka_unit_test(test_npy_dtype_checked),
		cmocka_unit_test(test_npy_header_checked),
		cmocka_unit_test(test_npy_length_checked),
		cmocka_unit_test(test_npy_targets_checked),
		cmocka_unit_test(test_paths_checked),
		cmocka_unit_test(test_fashion_mnist),
		cmocka_unit_test(test_shuffle_reference),
		cmocka_unit_test(test_shuffle_uniform),
		cmocka_unit_test(test_gather),
	};
	return cmocka_run_group_tests_name("data", tests, setup, teardown);
}
