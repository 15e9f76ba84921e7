/*
 * data.c: loads a training or test set into memory as float inputs and class
 * or float targets (NnrtDataset) from MNIST-style IDX files (raw or gzip), CSV
 * text or a pair of NumPy .npy files, and draws shuffled batches from it.
 *
 * Nothing in a file is trusted: magic numbers, element types, sizes, the exact
 * length, label ranges and the fit with the model's NnrtDataSpec are checked
 * before a value is used. A failure fills NnrtError with "FILE: what is wrong;
 * what to do" and releases everything: each loader writes into a dataset that
 * nnrt_data_load frees on failure, and closes or frees its own temporaries.
 * Files are read as streams (Src), so a .gz file is decompressed chunk by
 * chunk straight into the float arrays. Multi-byte values are decoded byte by
 * byte (IDX is big-endian, .npy little-endian), whatever the host's order.
 * CSV positions in messages count lines and columns from 1, as editors do.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zlib.h>

#include "nnrt.h"

enum {
	CHUNK = 1 << 16,		/* bytes decoded per read */
	PATH_CAP = 4096,		/* longest path we build */
	NPY_HEADER_MAX = 1 << 20,	/* a plain array's header is ~100 bytes */
	NPY_MAX_RANK = 16,
};

/* ---- errors ---- */

static int fail(NnrtError *err, const char *path, const char *fmt, ...)
{
	if (!err)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	int n = snprintf(err->msg, sizeof err->msg, "%s: ", path);
	if (n >= 0 && n < (int)sizeof err->msg)
		vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int truncated(NnrtError *err, const char *path, const char *what, int64_t want, int64_t got)
{
	return fail(err, path, "truncated: %s need %lld bytes but only %lld follow; the file is incomplete, "
			       "fetch or write it again",
		    what, (long long)want, (long long)got);
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && !strcmp(s + n - k, suffix);
}

/* src[0..n) made printable into dst, cut with "..." when longer than cap allows */
static void quote(char *dst, size_t cap, const char *src, size_t n)
{
	size_t k = 0;
	for (; k < n && k + 4 < cap; k++)
		dst[k] = src[k] >= ' ' && src[k] < 127 ? src[k] : '?';
	if (k < n)
		memcpy(dst + k, "...", 3), k += 3;
	dst[k] = '\0';
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

static int is_file(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* a * b, or -1 when it would not fit in int64 (both are >= 0) */
static int64_t mul(int64_t a, int64_t b)
{
	if (a < 0 || b < 0 || (b && a > INT64_MAX / b))
		return -1;
	return a * b;
}

/* ---- Src: a file read front to back, plain or gzip ---- */

typedef struct Src {
	const char *path;
	FILE *f;		/* an uncompressed file, or */
	gzFile gz;		/* a .gz file, decompressed as it is read */
} Src;

/* A name ending in .gz must hold gzip data: zlib would otherwise read it
 * unchanged, and a file that merely claims to be compressed is a mistake
 * worth naming. */
static int src_check_gzip(const char *path, NnrtError *err)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return fail(err, path, "cannot open it: %s; check the path", strerror(errno));
	unsigned char m[2] = {0, 0};
	size_t got = fread(m, 1, 2, f);
	fclose(f);
	if (got < 2 || m[0] != 0x1f || m[1] != 0x8b)
		return fail(err, path, "not gzip data (it does not start with the bytes 1f 8b); if the file is "
				       "uncompressed, remove .gz from its name");
	return 0;
}

static int src_open(Src *s, const char *path, NnrtError *err)
{
	memset(s, 0, sizeof *s);
	s->path = path;
	if (ends_with(path, ".gz")) {
		if (src_check_gzip(path, err))
			return -1;
		s->gz = gzopen(path, "rb");
		if (!s->gz)
			return fail(err, path, "cannot open it: %s; check the path", strerror(errno));
		return 0;
	}
	s->f = fopen(path, "rb");
	if (!s->f)
		return fail(err, path, "cannot open it: %s; check the path", strerror(errno));
	return 0;
}

static void src_close(Src *s)
{
	if (s->f)
		fclose(s->f);
	if (s->gz)
		gzclose(s->gz);
	s->f = NULL;
	s->gz = NULL;
}

/* A gzip stream that stops early is not an error to gzread (the file might
 * still be growing): it returns what it has and records Z_BUF_ERROR. */
static int64_t gz_fail(Src *s, NnrtError *err)
{
	int code;
	const char *why = gzerror(s->gz, &code);
	size_t n = strlen(s->path);
	if (!strncmp(why, s->path, n) && !strncmp(why + n, ": ", 2))
		why += n + 2;	/* zlib prefixes the path, which fail() writes already */
	if (code == Z_BUF_ERROR)
		return fail(err, s->path, "the gzip data ends early (%s); the file is incomplete, fetch it again",
			    why);
	if (code == Z_ERRNO)
		return fail(err, s->path, "cannot read it: %s", strerror(errno));
	return fail(err, s->path, "the gzip data is corrupt (%s); fetch the file again", why);
}

/* reads up to n bytes; fewer only at the end of the data; -1 on an error */
static int64_t src_read(Src *s, void *buf, int64_t n, NnrtError *err)
{
	int64_t got = 0;
	while (got < n) {
		unsigned want = n - got > (1 << 30) ? 1u << 30 : (unsigned)(n - got);
		int64_t r;
		if (s->gz) {
			r = gzread(s->gz, (char *)buf + got, want);
			if (r < 0)
				return gz_fail(s, err);
		} else {
			r = (int64_t)fread((char *)buf + got, 1, want, s->f);
			if (r < want && ferror(s->f))
				return fail(err, s->path, "cannot read it: %s", strerror(errno));
		}
		if (r == 0)
			break;
		got += r;
	}
	if (got < n && s->gz) {
		int code;
		gzerror(s->gz, &code);
		if (code != Z_OK)
			return gz_fail(s, err);
	}
	return got;
}

/* the data must end where its header says: counts the bytes that follow */
static int src_end(Src *s, const char *what, NnrtError *err)
{
	unsigned char buf[4096];
	int64_t extra = 0, r;
	while ((r = src_read(s, buf, sizeof buf, err)) > 0)
		extra += r;
	if (r < 0)
		return -1;
	if (extra)
		return fail(err, s->path, "%lld byte%s follow%s %s; the file is damaged or its header is wrong",
			    (long long)extra, extra == 1 ? "" : "s", extra == 1 ? "s" : "", what);
	return 0;
}

/* the whole (decompressed) file, NUL-terminated, in a malloc'd buffer */
static int src_slurp(const char *path, char **text, int64_t *len, NnrtError *err)
{
	Src s;
	if (src_open(&s, path, err))
		return -1;
	int64_t cap = CHUNK, n = 0, r = 0;
	char *buf = malloc((size_t)cap + 1);
	while (buf && (r = src_read(&s, buf + n, cap - n, err)) > 0) {
		n += r;
		if (n == cap) {
			char *bigger = realloc(buf, (size_t)(cap *= 2) + 1);
			if (!bigger)
				free(buf);
			buf = bigger;
		}
	}
	src_close(&s);
	if (!buf)
		return fail(err, path, "out of memory reading %lld bytes; use a smaller file", (long long)cap);
	if (r < 0) {
		free(buf);
		return -1;
	}
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
}

/* ---- element types and decoding ---- */

typedef enum { DT_NONE, DT_U8, DT_F32, DT_I64 } Dtype;

static int64_t dt_size(Dtype t)
{
	return t == DT_U8 ? 1 : t == DT_F32 ? 4 : 8;
}

static float le_f32(const unsigned char *p)
{
	uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static int64_t le_i64(const unsigned char *p)
{
	uint64_t u = 0;
	for (int i = 7; i >= 0; i--)
		u = u << 8 | p[i];
	int64_t v;
	memcpy(&v, &u, sizeof v);	/* two's complement, without an implementation-defined cast */
	return v;
}

static uint32_t be_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads count samples of per elements of type t as floats into x [count,
 * per]; uint8 is scaled by 1/255 as torchvision's ToTensor does, float32 must
 * be finite. what names the data for a truncation message. */
static int read_floats(Src *s, Dtype t, int64_t count, int64_t per, float *x, const char *what, NnrtError *err)
{
	unsigned char buf[CHUNK];
	int64_t size = dt_size(t), n = count * per, step = CHUNK / size;
	for (int64_t i = 0; i < n; i += step) {
		int64_t m = n - i < step ? n - i : step;
		int64_t got = src_read(s, buf, m * size, err);
		if (got < 0)
			return -1;
		if (got < m * size)
			return truncated(err, s->path, what, n * size, i * size + got);
		for (int64_t j = 0; j < m; j++)
			x[i + j] = t == DT_U8 ? buf[j] / 255.0f : le_f32(buf + 4 * j);
		for (int64_t j = 0; t == DT_F32 && j < m; j++)
			if (!isfinite(x[i + j]))
				return fail(err, s->path, "sample %lld holds %g; replace NaN and infinite values",
					    (long long)((i + j) / per), x[i + j]);
	}
	return 0;
}

/* Reads n class labels of type t (uint8 or int64) into y and checks that
 * each lies in [0, classes). */
static int read_labels(Src *s, Dtype t, int64_t n, int64_t classes, int64_t *y, const char *what, NnrtError *err)
{
	unsigned char buf[CHUNK];
	int64_t size = dt_size(t), step = CHUNK / size;
	for (int64_t i = 0; i < n; i += step) {
		int64_t m = n - i < step ? n - i : step;
		int64_t got = src_read(s, buf, m * size, err);
		if (got < 0)
			return -1;
		if (got < m * size)
			return truncated(err, s->path, what, n * size, i * size + got);
		for (int64_t j = 0; j < m; j++) {
			y[i + j] = t == DT_U8 ? buf[j] : le_i64(buf + 8 * j);
			if (y[i + j] < 0 || y[i + j] >= classes)
				return fail(err, s->path, "label %lld of sample %lld is outside 0..%lld; the model "
							  "has %lld classes, so every label must be below %lld",
					    (long long)y[i + j], (long long)(i + j), (long long)(classes - 1),
					    (long long)classes, (long long)classes);
		}
	}
	return 0;
}

/* ---- the dataset ---- */

/* Allocates d for count samples as the spec describes. The count stays
 * below 2^32 so nnrt_shuffle's draws (32-bit) reach every sample. */
static int ds_alloc(NnrtDataset *d, const NnrtDataSpec *spec, int64_t count, const char *path, NnrtError *err)
{
	d->count = count;
	d->in_elems = spec->in_elems;
	d->target = spec->target;
	d->target_elems = spec->target == NNRT_TARGET_CLASS ? 1 : spec->target == NNRT_TARGET_NONE ? 0 : spec->target_elems;
	int64_t nx = mul(mul(count, d->in_elems), (int64_t)sizeof(float));
	int64_t ny = mul(mul(count, d->target_elems), 8);
	if (count > (int64_t)UINT32_MAX || nx < 0 || ny < 0 || (uint64_t)nx > SIZE_MAX)
		return fail(err, path, "%lld samples of %lld values are too many to hold; use a smaller data set",
			    (long long)count, (long long)d->in_elems);
	d->x = malloc(nx ? (size_t)nx : 1);
	if (spec->target == NNRT_TARGET_CLASS)
		d->labels = malloc((size_t)count * sizeof *d->labels + 1);
	else if (spec->target == NNRT_TARGET_FLOAT)
		d->t = malloc((size_t)(count * d->target_elems) * sizeof *d->t + 1);
	if (!d->x || (spec->target != NNRT_TARGET_NONE && !d->labels && !d->t))
		return fail(err, path, "out of memory for %lld samples (%.0f MB); use a smaller data set",
			    (long long)count, (double)(nx + ny) / 1e6);
	return 0;
}

void nnrt_data_free(NnrtDataset *d)
{
	if (!d)
		return;
	free(d->x);
	free(d->labels);
	free(d->t);
	memset(d, 0, sizeof *d);
}

/* ---- IDX (the format of MNIST and Fashion-MNIST) ----
 * A big-endian magic number 0x0000TTNN (TT the element type, 0x08 for
 * unsigned bytes; NN the number of dimensions), NN big-endian uint32 sizes,
 * then the elements in row-major order and nothing else. */

enum { IDX_IMAGES = 0x00000803, IDX_LABELS = 0x00000801 };

static int idx_bad_magic(const char *path, const unsigned char *h, uint32_t want, const char *kind,
			 NnrtError *err)
{
	if (h[0] == 0x1f && h[1] == 0x8b)
		return fail(err, path, "the file is gzip-compressed but its name does not end in .gz; add .gz to "
				       "its name or decompress it");
	if (h[0] == 0 && h[1] == 0 && h[2] != 0x08)
		return fail(err, path, "IDX element type 0x%02x is not supported, only unsigned bytes (0x08); "
				       "convert the data to uint8",
			    h[2]);
	return fail(err, path, "not an IDX %s file: magic number 0x%08x, expected 0x%08x; check that this is "
			       "the %s file",
		    kind, be_u32(h), want, kind);
}

/* reads the magic number and the ndims sizes of an IDX file */
static int idx_header(Src *s, uint32_t magic, const char *kind, int64_t *dims, NnrtError *err)
{
	int ndims = magic & 0xff;
	unsigned char h[16];
	int64_t len = 4 + 4 * ndims;
	int64_t got = src_read(s, h, len, err);
	if (got < 0)
		return -1;
	if (got >= 4 && be_u32(h) != magic)
		return idx_bad_magic(s->path, h, magic, kind, err);
	if (got < len)
		return truncated(err, s->path, "the IDX header fields", len, got);
	for (int i = 0; i < ndims; i++)
		dims[i] = be_u32(h + 4 + 4 * i);
	if (dims[0] == 0)
		return fail(err, s->path, "holds no samples; use a file with data");
	return 0;
}

static int idx_images(const char *path, const NnrtDataSpec *spec, NnrtDataset *d, NnrtError *err)
{
	Src s;
	int64_t dims[3] = {0, 0, 0};
	char what[96];
	if (src_open(&s, path, err))
		return -1;
	int rc = idx_header(&s, IDX_IMAGES, "images", dims, err);
	uint64_t pixels = (uint64_t)dims[1] * (uint64_t)dims[2];	/* < 2^64: both sizes are 32-bit */
	if (!rc && pixels != (uint64_t)spec->in_elems)
		rc = fail(err, path, "images of %lldx%lld hold %llu values but the model's input takes %lld; use "
				     "images that fit the model or change its input shape",
			  (long long)dims[1], (long long)dims[2], (unsigned long long)pixels,
			  (long long)spec->in_elems);
	if (!rc)
		rc = ds_alloc(d, spec, dims[0], path, err);
	snprintf(what, sizeof what, "the %lld images of %lldx%lld the header describes", (long long)dims[0],
		 (long long)dims[1], (long long)dims[2]);
	if (!rc)
		rc = read_floats(&s, DT_U8, d->count, d->in_elems, d->x, what, err);
	if (!rc)
		rc = src_end(&s, what, err);
	src_close(&s);
	return rc;
}

static int idx_labels(const char *path, const char *images, const NnrtDataSpec *spec, NnrtDataset *d,
		      NnrtError *err)
{
	Src s;
	int64_t dims[1] = {0};
	char what[96];
	if (src_open(&s, path, err))
		return -1;
	int rc = idx_header(&s, IDX_LABELS, "labels", dims, err);
	if (!rc && dims[0] != d->count)
		rc = fail(err, path, "holds %lld labels but %s holds %lld images; use the labels file of these "
				     "images",
			  (long long)dims[0], images, (long long)d->count);
	snprintf(what, sizeof what, "the %lld labels the header describes", (long long)dims[0]);
	if (!rc)
		rc = read_labels(&s, DT_U8, d->count, spec->classes, d->labels, what, err);
	if (!rc)
		rc = src_end(&s, what, err);
	src_close(&s);
	return rc;
}

static int idx_load(const char *images, const char *labels, const NnrtDataSpec *spec, NnrtDataset *d,
		    NnrtError *err)
{
	if (spec->target == NNRT_TARGET_NONE)
		return idx_images(images, spec, d, err);
	if (spec->target != NNRT_TARGET_CLASS)
		return fail(err, images, "IDX labels are classes but the model's targets are floats; use a CSV "
					 "or .npy file with float targets");
	if (idx_images(images, spec, d, err))
		return -1;
	return idx_labels(labels, images, spec, d, err);
}

/* the labels of "x-images-idx3-ubyte[.gz]" are "x-labels-idx1-ubyte[.gz]" */
static int idx_file(const char *images, const NnrtDataSpec *spec, NnrtDataset *d, NnrtError *err)
{
	char labels[PATH_CAP];
	const char *base = base_name(images);
	const char *at = strstr(base, "images-idx3");
	if (spec->target == NNRT_TARGET_NONE)
		return idx_load(images, NULL, spec, d, err);	/* inputs only: no labels needed */
	if (strlen(images) >= sizeof labels)
		return fail(err, images, "the path is too long; move the files to a shorter one");
	snprintf(labels, sizeof labels, "%.*slabels-idx1%s", (int)(at - images), images, at + strlen("images-idx3"));
	if (!is_file(labels))
		return fail(err, labels, "no such file, but the labels of %s must lie beside it under this name",
			    images);
	return idx_load(images, labels, spec, d, err);
}

/* dir/name, or dir/name.gz when only that exists; fails naming both */
static int find_idx(const char *dir, const char *name, char *out, NnrtError *err)
{
	int n = snprintf(out, PATH_CAP, "%s/%s", dir, name);
	if (n < 0 || n + 3 >= PATH_CAP)
		return fail(err, dir, "the path is too long; move the files to a shorter one");
	if (is_file(out))
		return 0;
	strcat(out, ".gz");
	if (is_file(out))
		return 0;
	return fail(err, dir, "holds neither %s nor %s.gz; a data folder holds the train-* and t10k-* IDX "
			      "files as MNIST ships them",
		    name, name);
}

static int idx_folder(const char *dir, NnrtSplit split, const NnrtDataSpec *spec, NnrtDataset *d,
		      NnrtError *err)
{
	const char *set = split == NNRT_SPLIT_TEST ? "t10k" : "train";
	char name[32], images[PATH_CAP], labels[PATH_CAP];
	snprintf(name, sizeof name, "%s-images-idx3-ubyte", set);
	if (find_idx(dir, name, images, err))
		return -1;
	snprintf(name, sizeof name, "%s-labels-idx1-ubyte", set);
	if (find_idx(dir, name, labels, err))
		return -1;
	return idx_load(images, labels, spec, d, err);
}


/* ---- CSV ----
 * One sample per line: numbers separated by commas, the label or target in
 * one column and the inputs, in order, in the others. Blank lines are
 * skipped; a \r before the \n and a UTF-8 byte order mark are ignored. */

typedef struct Csv {
	const char *path;
	const NnrtDataSpec *spec;
	NnrtDataset *d;
	NnrtError *err;
	int64_t line;		/* the current line, from 1 */
	int64_t ncols;		/* fields per line, set by the first data line */
	int64_t label;		/* the label's column, from 0 */
	int64_t first;		/* the line that set ncols */
} Csv;

/* Parses the field at *p (up to ',' or the end of the line) into v and
 * moves *p past its comma; -1 when it is not a finite number. strtod reads
 * the decimal point of LC_NUMERIC, which is "C" unless the host changes it. */
static int csv_number(char **p, double *v)
{
	char *s = *p, *end;
	while (*s == ' ' || *s == '\t')
		s++;
	*v = strtod(s, &end);
	if (end == s || !isfinite(*v) || !isfinite((float)*v))
		return -1;
	while (*end == ' ' || *end == '\t')
		end++;
	if (*end != ',' && *end != '\0')
		return -1;
	*p = *end == ',' ? end + 1 : end;
	return 0;
}

static int csv_bad_field(Csv *c, const char *field, int64_t col)
{
	size_t n = strcspn(field, ",");
	char text[32];
	if (strspn(field, " \t") == n)
		return fail(c->err, c->path, "line %lld, column %lld is empty; every field needs a number",
			    (long long)c->line, (long long)col);
	quote(text, sizeof text, field, n);
	return fail(c->err, c->path, "line %lld, column %lld: '%s' is not a number; fields are numbers "
				     "separated by commas",
		    (long long)c->line, (long long)col, text);
}

static int64_t csv_fields(const char *line)
{
	int64_t n = 1;
	for (; *line; line++)
		n += *line == ',';
	return n;
}

/* The first data line fixes the number of fields; it must fit the model.
 * max_rows bounds the samples (the lines left), so one allocation serves. */
static int csv_setup(Csv *c, const char *line, int64_t max_rows)
{
	const NnrtDataSpec *spec = c->spec;
	c->ncols = csv_fields(line);
	c->first = c->line;
	if (spec->target == NNRT_TARGET_NONE) {	/* inputs only: every field is an input */
		c->label = -1;
		if (c->ncols != spec->in_elems)
			return fail(c->err, c->path, "line %lld has %lld fields but the model's input takes %lld; "
						     "use data that fits the model",
				    (long long)c->line, (long long)c->ncols, (long long)spec->in_elems);
		return ds_alloc(c->d, spec, max_rows, c->path, c->err);
	}
	c->label = spec->csv_label_column < 0 ? c->ncols - 1 : spec->csv_label_column;
	if (spec->csv_label_column < -1 || c->label >= c->ncols)
		return fail(c->err, c->path, "the label column is %d (counting from 0, -1 for the last) but line "
					     "%lld has %lld fields; choose one of them",
			    spec->csv_label_column, (long long)c->line, (long long)c->ncols);
	if (c->ncols - 1 != spec->in_elems)
		return fail(c->err, c->path, "line %lld has %lld fields, so %lld inputs besides the label, but "
					     "the model's input takes %lld; use data that fits the model or "
					     "change its input shape",
			    (long long)c->line, (long long)c->ncols, (long long)(c->ncols - 1),
			    (long long)spec->in_elems);
	return ds_alloc(c->d, spec, max_rows, c->path, c->err);
}

/* the label field: a whole number in [0, classes), or any float target */
static int csv_target(Csv *c, double v, int64_t row, int64_t col)
{
	const NnrtDataSpec *spec = c->spec;
	if (spec->target == NNRT_TARGET_FLOAT) {
		c->d->t[row] = (float)v;
		return 0;
	}
	if (v != floor(v))
		return fail(c->err, c->path, "line %lld, column %lld: label %g is not a whole number; class "
					     "labels are 0, 1, 2, ...",
			    (long long)c->line, (long long)col, v);
	if (v < 0 || v >= (double)spec->classes)
		return fail(c->err, c->path, "line %lld, column %lld: label %.0f is outside 0..%lld; the model "
					     "has %lld classes, so every label must be below %lld",
			    (long long)c->line, (long long)col, v, (long long)(spec->classes - 1),
			    (long long)spec->classes, (long long)spec->classes);
	c->d->labels[row] = (int64_t)v;
	return 0;
}

static int csv_row(Csv *c, char *p, int64_t row)
{
	int64_t n = csv_fields(p);
	if (n != c->ncols)
		return fail(c->err, c->path, "line %lld has %lld fields but line %lld has %lld; every line needs "
					     "the same number of fields",
			    (long long)c->line, (long long)n, (long long)c->first, (long long)c->ncols);
	float *x = c->d->x + row * c->d->in_elems;
	for (int64_t col = 0; col < c->ncols; col++) {
		char *field = p;
		double v;
		if (csv_number(&p, &v))
			return csv_bad_field(c, field, col + 1);
		if (col != c->label)
			*x++ = (float)v;
		else if (csv_target(c, v, row, col + 1))
			return -1;
	}
	return 0;
}

/* the line at *p, NUL-terminated without its \r\n; *p moves to the next */
static char *next_line(char **p)
{
	char *line = *p, *eol = strchr(line, '\n');
	*p = eol ? eol + 1 : line + strlen(line);
	if (eol)
		*eol = '\0';
	size_t n = strlen(line);
	if (n && line[n - 1] == '\r')
		line[n - 1] = '\0';
	return line;
}

/* 1 when the first non-blank line is a header, as the spec asks or guesses */
static int csv_is_header(Csv *c, char *line)
{
	double v;
	if (c->spec->csv_header >= 0)
		return c->spec->csv_header;
	return csv_number(&line, &v) != 0;
}

static int csv_parse(Csv *c, char *text)
{
	int64_t lines = 1, rows = 0;
	for (const char *q = text; *q; q++)
		lines += *q == '\n';
	if (!strncmp(text, "\xEF\xBB\xBF", 3))
		text += 3;
	int seen = 0;
	for (c->line = 1; *text; c->line++) {
		char *line = next_line(&text);
		if (strspn(line, " \t") == strlen(line))
			continue;
		if (!seen) {
			seen = 1;
			if (csv_is_header(c, line))
				continue;
		}
		if (!c->ncols && csv_setup(c, line, lines - c->line + 1))
			return -1;
		if (csv_row(c, line, rows++))
			return -1;
	}
	if (!rows)
		return fail(c->err, c->path, "holds no samples; use a file with data");
	c->d->count = rows;
	return 0;
}

static int csv_load(const char *path, const NnrtDataSpec *spec, NnrtDataset *d, NnrtError *err)
{
	if (spec->target == NNRT_TARGET_FLOAT && spec->target_elems != 1)
		return fail(err, path, "a CSV line holds one target but the model's target takes %lld values; "
				       "save inputs and targets as inputs.npy,targets.npy instead",
			    (long long)spec->target_elems);
	char *text = NULL;
	int64_t len = 0;
	if (src_slurp(path, &text, &len, err))
		return -1;
	const char *nul = memchr(text, '\0', (size_t)len);
	Csv c = {path, spec, d, err, 0, 0, 0, 0};
	int rc = nul ? fail(err, path, "holds a NUL byte at offset %lld; it is binary, not CSV text",
			    (long long)(nul - text))
		     : csv_parse(&c, text);
	free(text);
	return rc;
}

/* ---- NumPy .npy ----
 * "\x93NUMPY", a major and a minor version byte, the header's length
 * (little-endian: 2 bytes in version 1.0, 4 in 2.0), the header (a Python
 * dict literal such as {'descr': '<f4', 'fortran_order': False, 'shape':
 * (60000, 28, 28), } padded with spaces and a \n), then the raw elements. */

typedef struct Npy {
	const char *path;
	char descr[16];
	Dtype dtype;
	int fortran;
	int rank;
	int64_t shape[NPY_MAX_RANK];
	int64_t count, per;	/* shape[0] and the product of the rest */
} Npy;

static void lex_ws(const char **p)
{
	while (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r')
		(*p)++;
}

static int lex_char(const char **p, char ch)
{
	lex_ws(p);
	if (**p != ch)
		return -1;
	(*p)++;
	return 0;
}

/* a quoted string without escapes, as numpy writes keys and dtypes */
static int lex_string(const char **p, char *out, size_t cap)
{
	lex_ws(p);
	char q = **p;
	if (q != '\'' && q != '"')
		return -1;
	const char *s = *p + 1, *e = strchr(s, q);
	if (!e || (size_t)(e - s) >= cap || memchr(s, '\\', (size_t)(e - s)))
		return -1;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	*p = e + 1;
	return 0;
}

static int lex_bool(const char **p, int *v)
{
	lex_ws(p);
	if (!strncmp(*p, "True", 4) || !strncmp(*p, "False", 5)) {
		*v = **p == 'T';
		*p += *v ? 4 : 5;
		return 0;
	}
	return -1;
}

/* a non-negative integer; Python 2's numpy wrote a trailing L */
static int lex_int(const char **p, int64_t *v)
{
	lex_ws(p);
	if (**p < '0' || **p > '9')
		return -1;
	for (*v = 0; **p >= '0' && **p <= '9'; (*p)++) {
		if (*v > (INT64_MAX - 9) / 10)
			return -1;
		*v = *v * 10 + (**p - '0');
	}
	if (**p == 'L')
		(*p)++;
	return 0;
}

/* a tuple of integers: (), (5,), (5, 3) */
static int lex_shape(const char **p, int64_t *shape, int *rank)
{
	*rank = 0;
	if (lex_char(p, '('))
		return -1;
	for (;;) {
		if (!lex_char(p, ')'))
			return 0;
		if (*rank == NPY_MAX_RANK || lex_int(p, &shape[(*rank)++]))
			return -1;
		if (!lex_char(p, ')'))
			return 0;
		if (lex_char(p, ','))
			return -1;
	}
}

static int npy_bad_header(Npy *h, const char *at, NnrtError *err)
{
	char text[32];
	size_t n = strlen(at);
	while (n && strchr(" \t\r\n", at[n - 1]))
		n--;	/* the padding */
	quote(text, sizeof text, at, n);
	return fail(err, h->path, "cannot parse the .npy header at \"%s\"; save the array with numpy.save", text);
}

/* one key and its value; seen collects the keys met so far */
static int npy_entry(Npy *h, const char **p, int *seen, NnrtError *err)
{
	char key[32];
	const char *at = *p;
	int bit, bad;
	if (lex_string(p, key, sizeof key) || lex_char(p, ':'))
		return npy_bad_header(h, at, err);
	if (!strcmp(key, "descr"))
		bit = 1, bad = lex_string(p, h->descr, sizeof h->descr);
	else if (!strcmp(key, "fortran_order"))
		bit = 2, bad = lex_bool(p, &h->fortran);
	else if (!strcmp(key, "shape"))
		bit = 4, bad = lex_shape(p, h->shape, &h->rank);
	else
		return fail(err, h->path, "the .npy header has an unknown key '%s'; save the array with numpy.save",
			    key);
	if (bad || (*seen & bit))
		return npy_bad_header(h, at, err);
	*seen |= bit;
	return 0;
}

static int npy_dict(Npy *h, const char *text, NnrtError *err)
{
	const char *p = text;
	int seen = 0;
	if (lex_char(&p, '{'))
		return npy_bad_header(h, p, err);
	while (lex_char(&p, '}')) {
		if (npy_entry(h, &p, &seen, err))
			return -1;
		if (lex_char(&p, ',') && *p != '}')
			return npy_bad_header(h, p, err);
	}
	lex_ws(&p);
	if (*p)
		return npy_bad_header(h, p, err);
	if (seen != 7)
		return fail(err, h->path, "the .npy header lacks '%s'; save the array with numpy.save",
			    !(seen & 1) ? "descr" : !(seen & 2) ? "fortran_order" : "shape");
	return 0;
}

/* the element type, the layout and the sample count and size */
static int npy_check(Npy *h, NnrtError *err)
{
	if (!strcmp(h->descr, "<f4"))
		h->dtype = DT_F32;
	else if (!strcmp(h->descr, "|u1") || !strcmp(h->descr, "<u1") || !strcmp(h->descr, ">u1"))
		h->dtype = DT_U8;
	else if (!strcmp(h->descr, "<i8"))
		h->dtype = DT_I64;
	else
		h->dtype = DT_NONE;	/* each role names what it accepts */
	if (h->fortran)
		return fail(err, h->path, "the array is in Fortran order; save np.ascontiguousarray(a) instead");
	if (h->rank == 0)
		return fail(err, h->path, "holds a single value, not one row per sample; save an array of samples");
	h->count = h->shape[0];
	h->per = 1;
	for (int i = 1; i < h->rank; i++)
		h->per = mul(h->per, h->shape[i]);
	if (h->per < 0 || mul(mul(h->count, h->per), 8) < 0)
		return fail(err, h->path, "the shape is too large to hold; use a smaller array");
	if (h->count == 0)
		return fail(err, h->path, "holds no samples; use a file with data");
	return 0;
}

/* reads the magic, the version and the header's length */
static int npy_prefix(Src *s, int64_t *len, NnrtError *err)
{
	unsigned char pre[12];
	int64_t got = src_read(s, pre, 10, err);
	if (got < 0)
		return -1;
	if (got < 8 || memcmp(pre, "\x93NUMPY", 6))
		return fail(err, s->path, "not a NumPy .npy file (it does not start with \\x93NUMPY); save arrays "
					  "with numpy.save");
	if ((pre[6] != 1 && pre[6] != 2) || pre[7] != 0)
		return fail(err, s->path, ".npy format version %d.%d is not supported, only 1.0 and 2.0; save "
					  "the array with numpy.save",
			    pre[6], pre[7]);
	int wide = pre[6] == 2;
	if (got == 10 && wide) {
		int64_t more = src_read(s, pre + 10, 2, err);
		if (more < 0)
			return -1;
		got += more;
	}
	if (got < 10 + 2 * wide)
		return truncated(err, s->path, "the .npy header fields", 10 + 2 * wide, got);
	*len = pre[8] | pre[9] << 8 | (wide ? (int64_t)pre[10] << 16 | (int64_t)pre[11] << 24 : 0);
	if (*len > NPY_HEADER_MAX)
		return fail(err, s->path, "the .npy header claims %lld bytes, too many for an array of numbers; "
					  "save the array with numpy.save",
			    (long long)*len);
	return 0;
}

/* the prefix, then the header dict, parsed and checked */
static int npy_header(Src *s, Npy *h, NnrtError *err)
{
	int64_t len = 0;
	if (npy_prefix(s, &len, err))
		return -1;
	char *text = malloc((size_t)len + 1);
	if (!text)
		return fail(err, s->path, "out of memory for the .npy header");
	int64_t got = src_read(s, text, len, err);
	int rc = got < 0 ? -1 : got < len ? truncated(err, s->path, "the .npy header fields", len, got) : 0;
	if (!rc) {
		text[len] = '\0';
		size_t n = strlen(text);	/* a NUL inside the header stops the parse there */
		rc = n < (size_t)len ? npy_bad_header(h, text + n, err) : npy_dict(h, text, err);
	}
	free(text);
	return rc ? rc : npy_check(h, err);
}

/* opens path and reads its header; on failure nothing stays open */
static int npy_open(Src *s, const char *path, Npy *h, NnrtError *err)
{
	memset(h, 0, sizeof *h);
	h->path = path;
	if (src_open(s, path, err))
		return -1;
	if (npy_header(s, h, err)) {
		src_close(s);
		return -1;
	}
	return 0;
}

/* "(60000, 28, 28)" or "(5,)", as Python prints a shape */
static const char *shape_str(const Npy *h, char *buf, size_t cap)
{
	size_t n = (size_t)snprintf(buf, cap, "(");
	for (int i = 0; i < h->rank && n < cap; i++)
		n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)h->shape[i]);
	if (n < cap)
		snprintf(buf + n, cap - n, h->rank == 1 ? ",)" : ")");
	return buf;
}

static int npy_inputs(const Npy *h, const NnrtDataSpec *spec, NnrtError *err)
{
	char shape[160];
	if (h->dtype != DT_F32 && h->dtype != DT_U8)
		return fail(err, h->path, "inputs of dtype '%s' are not supported; save them as float32 ('<f4') "
					  "or uint8 ('|u1'), e.g. x.astype(np.float32)",
			    h->descr);
	if (h->per != spec->in_elems)
		return fail(err, h->path, "inputs of shape %s hold %lld values per sample but the model's input "
					  "takes %lld; use data that fits the model or change its input shape",
			    shape_str(h, shape, sizeof shape), (long long)h->per, (long long)spec->in_elems);
	return 0;
}

static int npy_targets(const Npy *h, const Npy *in, const NnrtDataSpec *spec, NnrtError *err)
{
	char shape[160];
	int cls = spec->target == NNRT_TARGET_CLASS;
	if (cls && h->dtype != DT_I64 && h->dtype != DT_U8)
		return fail(err, h->path, "class labels of dtype '%s' are not supported; save them as int64 "
					  "('<i8') or uint8 ('|u1'), e.g. y.astype(np.int64)",
			    h->descr);
	if (!cls && h->dtype != DT_F32)
		return fail(err, h->path, "float targets of dtype '%s' are not supported; save them as float32 "
					  "('<f4'), e.g. y.astype(np.float32)",
			    h->descr);
	if (cls && h->per != 1)
		return fail(err, h->path, "class labels of shape %s hold %lld values per sample; save one integer "
					  "label per sample, not one-hot rows",
			    shape_str(h, shape, sizeof shape), (long long)h->per);
	if (!cls && h->per != spec->target_elems)
		return fail(err, h->path, "targets of shape %s hold %lld values per sample but the model's target "
					  "takes %lld; use targets that fit the model",
			    shape_str(h, shape, sizeof shape), (long long)h->per, (long long)spec->target_elems);
	if (h->count != in->count)
		return fail(err, h->path, "holds %lld targets but %s holds %lld samples; both arrays need one row "
					  "per sample",
			    (long long)h->count, in->path, (long long)in->count);
	return 0;
}

/* the elements after the header, then the end of the file */
static int npy_data(Src *s, const Npy *h, const NnrtDataSpec *spec, float *x, int64_t *labels, NnrtError *err)
{
	char what[220], shape[160];
	snprintf(what, sizeof what, "the values of shape %s", shape_str(h, shape, sizeof shape));
	int rc = labels ? read_labels(s, h->dtype, h->count, spec->classes, labels, what, err)
			: read_floats(s, h->dtype, h->count, h->per, x, what, err);
	return rc ? rc : src_end(s, what, err);
}

static int npy_load(const char *inputs, const char *targets, const NnrtDataSpec *spec, NnrtDataset *d,
		    NnrtError *err)
{
	Src si, st;
	Npy hi, ht;
	if (npy_open(&si, inputs, &hi, err))
		return -1;
	if (npy_open(&st, targets, &ht, err)) {
		src_close(&si);
		return -1;
	}
	int rc = npy_inputs(&hi, spec, err);
	if (!rc)
		rc = npy_targets(&ht, &hi, spec, err);
	if (!rc)
		rc = ds_alloc(d, spec, hi.count, inputs, err);
	if (!rc)
		rc = npy_data(&si, &hi, spec, d->x, NULL, err);
	if (!rc)
		rc = npy_data(&st, &ht, spec, d->t, d->labels, err);
	src_close(&si);
	src_close(&st);
	return rc;
}

/* inputs only, for predictions */
static int npy_single(const char *path, const NnrtDataSpec *spec, NnrtDataset *d, NnrtError *err)
{
	Src s;
	Npy h;
	if (npy_open(&s, path, &h, err))
		return -1;
	int rc = npy_inputs(&h, spec, err);
	if (!rc)
		rc = ds_alloc(d, spec, h.count, path, err);
	if (!rc)
		rc = npy_data(&s, &h, spec, d->x, NULL, err);
	src_close(&s);
	return rc;
}

/* "inputs.npy,targets.npy" */
static int npy_pair(const char *path, const NnrtDataSpec *spec, NnrtDataset *d, NnrtError *err)
{
	char inputs[PATH_CAP], targets[PATH_CAP];
	const char *comma = strchr(path, ',');
	size_t n = (size_t)(comma - path);
	if (strchr(comma + 1, ',') || n == 0 || !comma[1])
		return fail(err, path, "expected two .npy files separated by one comma, inputs first: "
				       "inputs.npy,targets.npy");
	if (n >= sizeof inputs || strlen(comma + 1) >= sizeof targets)
		return fail(err, path, "the path is too long; move the files to a shorter one");
	memcpy(inputs, path, n);
	inputs[n] = '\0';
	strcpy(targets, comma + 1);
	return npy_load(inputs, targets, spec, d, err);
}

/* ---- the public API ---- */

/* which loader a path asks for, by what it is and how it is named */
static int load_any(const char *path, NnrtSplit split, const NnrtDataSpec *spec, NnrtDataset *d, NnrtError *err)
{
	struct stat st;
	const char *base = base_name(path);
	if (stat(path, &st) != 0) {
		if (strchr(path, ','))
			return npy_pair(path, spec, d, err);
		return fail(err, path, "cannot open it: %s; check the path", strerror(errno));
	}
	if (S_ISDIR(st.st_mode))
		return idx_folder(path, split, spec, d, err);
	if (ends_with(path, ".csv"))
		return csv_load(path, spec, d, err);
	if (strstr(base, "images-idx3"))
		return idx_file(path, spec, d, err);
	if (strstr(base, "labels-idx1"))
		return fail(err, path, "is an IDX labels file; pass the images file (its labels are found beside "
				       "it) or the folder");
	if (ends_with(path, ".npy") && spec->target == NNRT_TARGET_NONE)
		return npy_single(path, spec, d, err);
	if (ends_with(path, ".npy"))
		return fail(err, path, "a .npy file holds one array; pass inputs and targets as "
				       "inputs.npy,targets.npy");
	return fail(err, path, "unknown data format; pass a folder of IDX files, an IDX images file "
			       "(*-images-idx3-ubyte[.gz]), a .csv file or inputs.npy,targets.npy");
}

static int spec_ok(const NnrtDataSpec *spec)
{
	if (!spec || spec->in_elems <= 0)
		return 0;
	if (spec->target == NNRT_TARGET_CLASS)
		return spec->classes > 0;
	return spec->target == NNRT_TARGET_NONE || (spec->target == NNRT_TARGET_FLOAT && spec->target_elems > 0);
}

int nnrt_data_load(const char *path, NnrtSplit split, const NnrtDataSpec *spec, NnrtDataset *out,
		   NnrtError *err)
{
	NnrtDataset d;
	memset(&d, 0, sizeof d);
	memset(out, 0, sizeof *out);
	if (!spec_ok(spec))
		return fail(err, path, "the data spec needs in_elems > 0 and classes > 0 (class targets) or "
				       "target_elems > 0 (float targets); this is a bug in the caller");
	if (load_any(path, split, spec, &d, err)) {
		nnrt_data_free(&d);
		return -1;
	}
	*out = d;
	return 0;
}

/* Fisher-Yates, from the back: position i takes a uniform pick of the i + 1
 * not yet placed. The loaders keep n below 2^32, the range of the draws. */
void nnrt_shuffle(NnrtRng *r, int64_t *order, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		order[i] = i;
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = nnrt_rng_below(r, (uint32_t)(i + 1));
		int64_t t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
}

/* x: [n, in_elems]; y: int64 [n] for class labels, float [n, target_elems]
 * otherwise, or NULL when only the inputs are wanted */
void nnrt_gather(const NnrtDataset *d, const int64_t *order, int64_t first, int64_t n, float *x, void *y)
{
	size_t xrow = (size_t)d->in_elems * sizeof *x, trow = (size_t)d->target_elems * sizeof(float);
	for (int64_t i = 0; i < n; i++) {
		int64_t s = order[first + i];
		memcpy(x + i * d->in_elems, d->x + s * d->in_elems, xrow);
		if (y && d->target == NNRT_TARGET_CLASS)
			((int64_t *)y)[i] = d->labels[s];
		else if (y)
			memcpy((float *)y + i * d->target_elems, d->t + s * d->target_elems, trow);
	}
}
