/*
 * weights.c: safetensors files, the weight format PyTorch and Hugging Face
 * users already read and write. nnrt_st_save writes float tensors as F32,
 * atomically; nnrt_st_load fills the model's tensors from a file, converting
 * F64, F16 and BF16 to float.
 *
 * A file is an 8-byte little-endian header size N, N bytes of UTF-8 JSON
 * mapping each name to {"dtype", "shape", "data_offsets": [begin, end]} (plus
 * an optional "__metadata__" object of strings), then the data, little-endian
 * and row-major, with offsets counted from byte 8 + N.
 *
 * nnc may depend on no JSON library, so the header is read by a small, strict
 * parser written here for exactly what the format needs: objects, arrays,
 * strings (escapes, \uXXXX and surrogate pairs included, UTF-8 checked) and
 * non-negative integers. Anything else is an error naming the file byte where
 * it starts. The format's nesting is fixed, so the parser never recurses and a
 * hostile file cannot exhaust the stack.
 *
 * Files are untrusted: every size, offset and shape product is checked before
 * it is used, and nothing is written to the caller's tensors until the whole
 * header has been checked (a read error after that may leave them partly
 * filled). Failures fill NnrtError and return -1; nothing prints or aborts.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnrt.h"

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

enum {
	ST_MAX_RANK = 8,		/* ranks accepted in a file; models use up to NNRT_MAX_RANK */
	CHUNK = 16384,			/* bytes converted per read or write; a multiple of 8 */
	SHAPE_STR = 8 * 22 + 4,		/* "[" + ST_MAX_RANK int64s with ", " + "]" */
};

/* a header over 100 MB is not a weight file: refusing it bounds what a hostile file can make us allocate */
static const uint64_t max_header = (uint64_t)100 << 20;

static const char corrupt[] = "the file is corrupt or not safetensors";

/* Every dtype the format defines, so a file holding integer tensors (a
 * batchnorm's num_batches_tracked) can be checked too. The first four are the
 * ones nnc converts to float. */
enum { DT_F32, DT_F64, DT_F16, DT_BF16, DT_NFLOAT = 4 };

static const struct {
	const char *name;
	int size;			/* bytes per element */
} dtypes[] = {
	{ "F32", 4 }, { "F64", 8 }, { "F16", 2 }, { "BF16", 2 },
	{ "BOOL", 1 }, { "U8", 1 }, { "I8", 1 }, { "F8_E5M2", 1 }, { "F8_E4M3", 1 },
	{ "U16", 2 }, { "I16", 2 }, { "U32", 4 }, { "I32", 4 }, { "U64", 8 }, { "I64", 8 },
};
enum { N_DTYPES = (int)(sizeof dtypes / sizeof dtypes[0]) };

/* ---------------------------------------------------------------- errors */

static int fail(NnrtError *err, const char *path, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* "PATH: what is wrong; what to do" into err, and -1 for the caller to return */
static int fail(NnrtError *err, const char *path, const char *fmt, ...)
{
	if (!err)
		return -1;
	int k = snprintf(err->msg, sizeof err->msg, "%s: ", path ? path : "(null)");
	if (k < 0 || (size_t)k >= sizeof err->msg)
		return -1;	/* the path alone filled the buffer; truncated is the best we can do */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg + k, sizeof err->msg - (size_t)k, fmt, ap);
	va_end(ap);
	return -1;
}

/* "[256, 784]"; out holds SHAPE_STR bytes */
static const char *shape_str(char *out, const int64_t *d, int rank)
{
	size_t k = 0;
	out[k++] = '[';
	for (int i = 0; i < rank; i++)
		k += (size_t)snprintf(out + k, SHAPE_STR - k, "%s%" PRId64, i ? ", " : "", d[i]);
	snprintf(out + k, SHAPE_STR - k, "]");
	return out;
}

static const char *plural(int64_t n)
{
	return n == 1 ? "" : "s";
}

/* ------------------------------------------------------- bytes and UTF-8 */

/* the unsigned little-endian integer in p[0..n) */
static uint64_t load_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

static void store_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++, v >>= 8)
		p[i] = (unsigned char)v;
}

/* the length of the UTF-8 sequence at s (at most n bytes), or 0 when it is
 * not valid RFC 3629 UTF-8: no overlong forms, surrogates or code points past
 * U+10FFFF */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp, min;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xE0) == 0xC0)
		len = 2, cp = s[0] & 0x1F, min = 0x80;
	else if ((s[0] & 0xF0) == 0xE0)
		len = 3, cp = s[0] & 0x0F, min = 0x800;
	else if ((s[0] & 0xF8) == 0xF0)
		len = 4, cp = s[0] & 0x07, min = 0x10000;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000))
		return 0;
	return len;
}

static int utf8_valid(const char *s)
{
	size_t n = strlen(s), len;
	for (size_t i = 0; i < n; i += len)
		if (!(len = utf8_len((const unsigned char *)s + i, n - i)))
			return 0;
	return 1;
}

/* writes code point u (a scalar value, not a surrogate) as UTF-8; returns the bytes written */
static size_t utf8_put(char *d, uint32_t u)
{
	if (u < 0x80) {
		d[0] = (char)u;
		return 1;
	}
	if (u < 0x800) {
		d[0] = (char)(0xC0 | u >> 6);
		d[1] = (char)(0x80 | (u & 0x3F));
		return 2;
	}
	if (u < 0x10000) {
		d[0] = (char)(0xE0 | u >> 12);
		d[1] = (char)(0x80 | (u >> 6 & 0x3F));
		d[2] = (char)(0x80 | (u & 0x3F));
		return 3;
	}
	d[0] = (char)(0xF0 | u >> 18);
	d[1] = (char)(0x80 | (u >> 12 & 0x3F));
	d[2] = (char)(0x80 | (u >> 6 & 0x3F));
	d[3] = (char)(0x80 | (u & 0x3F));
	return 4;
}

/* ----------------------------------------------------------- JSON reader */

/* The header being parsed. The first error stops everything: its text and
 * the header offset where it was found are kept for the message. */
typedef struct Json {
	const unsigned char *s;
	size_t n, pos;
	int failed, oom;
	size_t at;			/* header offset of the error */
	size_t key_at;			/* header offset of the last object key read */
	char why[200];
	const char *hint;		/* what to do; NULL: the file is corrupt */
} Json;

static int jerr(Json *j, const char *fmt, ...) PRINTF_LIKE(2, 3);

static int jerr(Json *j, const char *fmt, ...)
{
	if (j->failed)
		return -1;
	j->failed = 1;
	j->at = j->pos;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(j->why, sizeof j->why, fmt, ap);
	va_end(ap);
	return -1;
}

static int joom(Json *j)
{
	j->oom = 1;
	return jerr(j, "out of memory");
}

/* the next byte after whitespace, or -1 at the end of the header */
static int peek(Json *j)
{
	while (j->pos < j->n) {
		unsigned char c = j->s[j->pos];
		if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
			return c;
		j->pos++;
	}
	return -1;
}

/* what peek found, for messages */
static const char *found(Json *j, char *buf, size_t cap)
{
	int c = peek(j);
	if (c < 0)
		snprintf(buf, cap, "the end of the header");
	else if (c >= 0x20 && c < 0x7F)
		snprintf(buf, cap, "'%c'", c);
	else
		snprintf(buf, cap, "byte 0x%02x", c);
	return buf;
}

static int expect(Json *j, char c)
{
	char buf[32];
	if (peek(j) != (unsigned char)c)
		return jerr(j, "expected '%c' but found %s", c, found(j, buf, sizeof buf));
	j->pos++;
	return 0;
}

/* the 4 hex digits at s[at..at+4) */
static int hex4(Json *j, size_t at, uint32_t *u)
{
	*u = 0;
	for (size_t i = at; i < at + 4; i++) {
		int c = i < j->n ? j->s[i] : -1, d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			d = (c | 0x20) - 'a' + 10;
		else
			return jerr(j, "\\u needs 4 hex digits");
		*u = *u << 4 | (uint32_t)d;
	}
	return 0;
}

/* \uXXXX at j->pos, with its low surrogate when it is a high one; returns
 * the code point. JSON spells characters past U+FFFF as UTF-16 pairs. */
static int unescape_u(Json *j, uint32_t *cp)
{
	uint32_t lo;
	if (hex4(j, j->pos + 2, cp) < 0)
		return -1;
	if (*cp >= 0xDC00 && *cp < 0xE000)
		return jerr(j, "\\u%04" PRIX32 " is a low surrogate without a high one", *cp);
	if (*cp >= 0xD800 && *cp < 0xDC00) {
		size_t p = j->pos + 6;
		if (p + 1 >= j->n || j->s[p] != '\\' || j->s[p + 1] != 'u')
			return jerr(j, "\\u%04" PRIX32 " is a high surrogate without a low one", *cp);
		if (hex4(j, p + 2, &lo) < 0)
			return -1;
		if (lo < 0xDC00 || lo >= 0xE000)
			return jerr(j, "\\u%04" PRIX32 " is a high surrogate without a low one", *cp);
		*cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
		j->pos += 6;
	}
	if (*cp == 0)
		return jerr(j, "\\u0000 is not allowed: names are C strings");
	j->pos += 6;
	return 0;
}

/* the escape at j->pos (a backslash) decoded into d + *k */
static int unescape(Json *j, char *d, size_t *k)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	char c = (char)j->s[j->pos + 1];	/* the string's end scan saw a byte here */
	const char *p = c ? strchr(from, c) : NULL;
	uint32_t cp;
	if (p) {
		d[(*k)++] = to[p - from];
		j->pos += 2;
		return 0;
	}
	if (c != 'u')
		return jerr(j, "invalid escape in a string");
	if (unescape_u(j, &cp) < 0)
		return -1;
	*k += utf8_put(d + *k, cp);
	return 0;
}

/* the string's characters up to its closing quote at s[end], into d */
static int string_body(Json *j, size_t end, char *d)
{
	size_t k = 0, len;
	while (j->pos < end) {
		unsigned char c = j->s[j->pos];
		if (c == '\\') {
			if (unescape(j, d, &k) < 0)
				return -1;
		} else if (c < 0x20) {
			return jerr(j, "control character 0x%02x in a string", c);
		} else if (!(len = utf8_len(j->s + j->pos, end - j->pos))) {
			return jerr(j, "invalid UTF-8 in a string");
		} else {
			memcpy(d + k, j->s + j->pos, len);
			k += len;
			j->pos += len;
		}
	}
	d[k] = '\0';
	j->pos = end + 1;
	return 0;
}

/* a string into a malloc'd UTF-8 copy. Its closing quote is found first, so
 * the copy is sized by the string rather than by the rest of the header;
 * decoding only shrinks (an escape is never shorter than its UTF-8). */
static int json_string(Json *j, char **out)
{
	char buf[32];
	*out = NULL;
	if (peek(j) != '"')
		return jerr(j, "expected a string but found %s", found(j, buf, sizeof buf));
	size_t end = j->pos + 1;
	while (end < j->n && j->s[end] != '"')
		end += j->s[end] == '\\' ? 2 : 1;
	if (end >= j->n)
		return jerr(j, "string not terminated");
	j->pos++;
	char *d = malloc(end - j->pos + 1);
	if (!d)
		return joom(j);
	if (string_body(j, end, d) < 0) {
		free(d);
		return -1;
	}
	*out = d;
	return 0;
}

/* a non-negative integer: the only numbers the format has */
static int json_uint(Json *j, int64_t *out)
{
	char buf[32];
	int c = peek(j);
	size_t start = j->pos;
	int64_t v = 0;
	if (c == '-')
		return jerr(j, "negative number where a size or offset belongs");
	if (c < '0' || c > '9')
		return jerr(j, "expected an integer but found %s", found(j, buf, sizeof buf));
	for (; j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9'; j->pos++) {
		int d = j->s[j->pos] - '0';
		if (v > (INT64_MAX - d) / 10)
			return jerr(j, "integer does not fit in 64 bits");
		v = v * 10 + d;
	}
	if (j->s[start] == '0' && j->pos - start > 1) {
		j->pos = start;
		return jerr(j, "integer with a leading zero");
	}
	if (j->pos < j->n && (j->s[j->pos] == '.' || (j->s[j->pos] | 0x20) == 'e'))
		return jerr(j, "expected an integer but found a fraction or exponent");
	*out = v;
	return 0;
}

/* [int, ...] with at most max entries into v[0 .. *count) */
static int json_uint_array(Json *j, int64_t *v, int max, int *count, const char *what)
{
	char buf[32];
	*count = 0;
	if (expect(j, '[') < 0)
		return -1;
	if (peek(j) == ']') {
		j->pos++;
		return 0;
	}
	for (;;) {
		if (*count == max)
			return jerr(j, "%s has more than %d entries", what, max);
		if (json_uint(j, &v[(*count)++]) < 0)
			return -1;
		int c = peek(j);
		if (c != ',' && c != ']')
			return jerr(j, "expected ',' or ']' but found %s", found(j, buf, sizeof buf));
		j->pos++;
		if (c == ']')
			return 0;
	}
}

/* The next member of an object whose '{' is consumed: 1 with its key in *key
 * (malloc'd) and the ':' consumed, 0 after the closing '}', -1 on error.
 * *count is the caller's member count, starting at 0. */
static int object_next(Json *j, int *count, char **key)
{
	char buf[32];
	int c = peek(j);
	*key = NULL;
	if (c == '}') {
		j->pos++;
		return 0;
	}
	if (*count > 0) {
		if (c != ',')
			return jerr(j, "expected ',' or '}' but found %s", found(j, buf, sizeof buf));
		j->pos++;
	}
	peek(j);
	j->key_at = j->pos;
	if (json_string(j, key) < 0)
		return -1;
	if (expect(j, ':') < 0) {
		free(*key);
		*key = NULL;
		return -1;
	}
	(*count)++;
	return 1;
}

/* -------------------------------------------------- the header's content */

typedef struct Entry {
	char *name;
	int dtype;			/* index in dtypes[] */
	int rank;
	int64_t shape[ST_MAX_RANK];
	int64_t begin, end;		/* data_offsets, from the first data byte */
	int used;			/* asked for by the caller */
} Entry;

typedef struct Header {
	Entry *e;
	size_t n, cap;
	char **meta;		/* "__metadata__" as key, value, key, value, ... */
	size_t nmeta, capmeta;
} Header;

static void header_free(Header *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->e[i].name);
	free(h->e);
	for (size_t i = 0; i < h->nmeta; i++)
		free(h->meta[i]);
	free(h->meta);
	memset(h, 0, sizeof *h);
}

/* keeps a key or value of the metadata; takes ownership of s */
static int meta_add(Header *h, char *s)
{
	if (h->nmeta == h->capmeta) {
		size_t cap = h->capmeta ? h->capmeta * 2 : 8;
		char **m = realloc(h->meta, cap * sizeof *m);
		if (!m) {
			free(s);
			return -1;
		}
		h->meta = m;
		h->capmeta = cap;
	}
	h->meta[h->nmeta++] = s;
	return 0;
}

/* a new entry owning name, or NULL (name freed) when memory runs out */
static Entry *header_add(Header *h, char *name)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? 2 * h->cap : 16;	/* entries are bounded by the header's size */
		Entry *e = realloc(h->e, cap * sizeof *e);
		if (!e) {
			free(name);
			return NULL;
		}
		h->e = e;
		h->cap = cap;
	}
	Entry *e = &h->e[h->n++];
	memset(e, 0, sizeof *e);
	e->name = name;
	return e;
}

static int parse_dtype(Json *j, Entry *e)
{
	char *s;
	peek(j);
	size_t at = j->pos;	/* the string's opening quote */
	if (json_string(j, &s) < 0)
		return -1;
	for (e->dtype = 0; e->dtype < N_DTYPES && strcmp(s, dtypes[e->dtype].name); e->dtype++)
		;
	if (e->dtype == N_DTYPES) {
		j->pos = at;
		j->hint = "nnc reads weights stored as F32, F64, F16 or BF16";
		jerr(j, "tensor %.100s has unknown dtype \"%.20s\"", e->name, s);
	}
	free(s);
	return j->failed ? -1 : 0;
}

static int parse_offsets(Json *j, Entry *e)
{
	int64_t off[2] = { 0, 0 };
	int k;
	if (json_uint_array(j, off, 2, &k, "data_offsets") < 0)
		return -1;
	if (k != 2) {
		j->pos--;	/* at the ']' */
		return jerr(j, "data_offsets needs 2 integers, [begin, end]");
	}
	e->begin = off[0];
	e->end = off[1];
	return 0;
}

/* one member of a tensor's entry; *seen has a bit per key already read */
static int entry_member(Json *j, Entry *e, const char *key, int *seen)
{
	static const char *const keys[] = { "dtype", "shape", "data_offsets" };
	int i = 0;
	while (i < 3 && strcmp(key, keys[i]))
		i++;
	if (i == 3 || *seen & 1 << i) {
		j->pos = j->key_at;	/* point at the key, not at its value */
		if (i == 3)
			return jerr(j, "unknown key \"%.40s\" in the entry of %.100s", key, e->name);
		return jerr(j, "key \"%s\" appears twice in the entry of %.100s", key, e->name);
	}
	*seen |= 1 << i;
	if (i == 0)
		return parse_dtype(j, e);
	if (i == 1)
		return json_uint_array(j, e->shape, ST_MAX_RANK, &e->rank, "shape");
	return parse_offsets(j, e);
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, each key once */
static int parse_entry(Json *j, Entry *e)
{
	static const char *const keys[] = { "dtype", "shape", "data_offsets" };
	int count = 0, seen = 0, r;
	char *key;
	if (expect(j, '{') < 0)
		return -1;
	while ((r = object_next(j, &count, &key)) == 1) {
		r = entry_member(j, e, key, &seen);
		free(key);
		if (r < 0)
			return -1;
	}
	if (r < 0)
		return -1;
	for (int i = 0; i < 3; i++)
		if (!(seen & 1 << i)) {
			j->pos--;	/* at the '}' */
			return jerr(j, "the entry of %.100s lacks \"%s\"", e->name, keys[i]);
		}
	return 0;
}

/* "__metadata__": strings to strings, kept for nnrt_st_metadata (checkpoints) */
static int parse_metadata(Json *j, Header *h)
{
	int count = 0, r;
	char *key, *val;
	if (expect(j, '{') < 0)
		return -1;
	while ((r = object_next(j, &count, &key)) == 1) {
		if (json_string(j, &val) < 0) {
			free(key);
			return -1;
		}
		if (meta_add(h, key) < 0 || meta_add(h, val) < 0)
			return joom(j);
	}
	return r;
}

/* the whole header: one object of entries and at most one "__metadata__",
 * then nothing but whitespace (writers pad with spaces) */
static int parse_header(Json *j, Header *h)
{
	int count = 0, meta = 0, r;
	char *key;
	if (expect(j, '{') < 0)
		return -1;
	while ((r = object_next(j, &count, &key)) == 1) {
		if (!strcmp(key, "__metadata__")) {
			free(key);
			if (meta++) {
				j->pos = j->key_at;
				return jerr(j, "\"__metadata__\" appears twice");
			}
			r = parse_metadata(j, h);
		} else {
			Entry *e = header_add(h, key);
			r = e ? parse_entry(j, e) : joom(j);
		}
		if (r < 0)
			return -1;
	}
	if (r < 0)
		return -1;
	if (peek(j) >= 0)
		return jerr(j, "unexpected text after the header's closing '}'");
	return 0;
}

/* ------------------------------------------------- checking the entries */

/* the data's byte size, or -1 when the shape's product overflows */
static int64_t entry_bytes(const Entry *e)
{
	int64_t bytes = dtypes[e->dtype].size;
	for (int i = 0; i < e->rank; i++) {
		if (e->shape[i] && bytes > INT64_MAX / e->shape[i])
			return -1;
		bytes *= e->shape[i];
	}
	return bytes;
}

/* shape, dtype and offsets agree, and the data lies inside the file */
static int check_entry(const Entry *e, int64_t data_size, const char *path, NnrtError *err)
{
	char s[SHAPE_STR];
	int64_t bytes = entry_bytes(e);
	const char *dt = dtypes[e->dtype].name;
	if (bytes < 0)
		return fail(err, path, "%.100s has shape %s, whose size overflows 64 bits; %s", e->name,
			    shape_str(s, e->shape, e->rank), corrupt);
	if (e->end < e->begin)
		return fail(err, path, "%.100s has data_offsets [%" PRId64 ", %" PRId64 "], which end before they begin; %s",
			    e->name, e->begin, e->end, corrupt);
	if (e->end - e->begin != bytes)
		return fail(err, path,
			    "%.100s: shape %s of %s needs %" PRId64 " bytes but data_offsets [%" PRId64 ", %" PRId64
			    "] hold %" PRId64 "; %s",
			    e->name, shape_str(s, e->shape, e->rank), dt, bytes, e->begin, e->end, e->end - e->begin,
			    corrupt);
	if (e->end > data_size)
		return fail(err, path,
			    "%.100s has data_offsets [%" PRId64 ", %" PRId64 "] past the end of the data (%" PRId64
			    " bytes); the file is truncated or corrupt",
			    e->name, e->begin, e->end, data_size);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const Entry *)a)->name, ((const Entry *)b)->name);
}

static int by_offset(const void *a, const void *b)
{
	const Entry *x = *(const Entry *const *)a, *y = *(const Entry *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	if (x->end != y->end)
		return x->end < y->end ? -1 : 1;
	return strcmp(x->name, y->name);	/* the same order on every libc, for the message */
}

/* sorts the entries by name (for lookups) and refuses a name given twice */
static int check_names(Header *h, const char *path, NnrtError *err)
{
	if (h->n > 1)
		qsort(h->e, h->n, sizeof *h->e, by_name);
	for (size_t i = 1; i < h->n; i++)
		if (!strcmp(h->e[i - 1].name, h->e[i].name))
			return fail(err, path, "%.100s appears twice in the header; %s", h->e[i].name, corrupt);
	return 0;
}

/* no two tensors share a data byte: sorted by offset, each non-empty range
 * must begin at or after the furthest end seen so far */
static int check_overlap(const Header *h, const char *path, NnrtError *err)
{
	const Entry **o = malloc((h->n ? h->n : 1) * sizeof *o), *last = NULL;
	if (!o)
		return fail(err, path, "out of memory reading the header; free some memory");
	for (size_t i = 0; i < h->n; i++)
		o[i] = &h->e[i];
	qsort(o, h->n, sizeof *o, by_offset);
	int r = 0;
	for (size_t i = 0; i < h->n && !r; i++) {
		if (o[i]->begin == o[i]->end)
			continue;
		if (last && o[i]->begin < last->end)
			r = fail(err, path,
				 "%.100s [%" PRId64 ", %" PRId64 "] and %.100s [%" PRId64 ", %" PRId64
				 "] overlap in the data; %s",
				 last->name, last->begin, last->end, o[i]->name, o[i]->begin, o[i]->end, corrupt);
		if (!last || o[i]->end > last->end)
			last = o[i];
	}
	free(o);
	return r;
}

static int check_header(Header *h, int64_t data_size, const char *path, NnrtError *err)
{
	for (size_t i = 0; i < h->n; i++)
		if (check_entry(&h->e[i], data_size, path, err) < 0)
			return -1;
	if (check_names(h, path, err) < 0)
		return -1;
	return check_overlap(h, path, err);
}

/* ------------------------------------------------------ reading the file */

typedef struct StFile {
	int fd;
	int64_t size;			/* of the whole file */
	int64_t data_start, data_size;
	Header h;
} StFile;

/* n bytes at offset off, or -1 with errno set (0 when the file ended early) */
static int read_at(int fd, void *buf, size_t n, int64_t off)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t k = pread(fd, p, n, (off_t)off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = 0;
			return -1;
		}
		p += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

static int read_fail(const char *path, NnrtError *err)
{
	if (errno == 0)
		return fail(err, path, "the file ended early (was it truncated while being read?); try again");
	return fail(err, path, "cannot read: %s; check the file", strerror(errno));
}

/* opens a regular file. O_NONBLOCK keeps a FIFO given by mistake from
 * blocking the open; it changes nothing for a regular file. */
static int open_file(StFile *f, const char *path, NnrtError *err)
{
	struct stat st;
	f->fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (f->fd < 0)
		return fail(err, path, "cannot open: %s; check the path", strerror(errno));
	if (fstat(f->fd, &st) < 0)
		return fail(err, path, "cannot stat: %s; check the file", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, path, "is not a regular file; give the path of a .safetensors file");
	f->size = (int64_t)st.st_size;
	return 0;
}

/* the header size, checked against the file before anything is allocated */
static int read_header_size(StFile *f, const char *path, NnrtError *err, uint64_t *n)
{
	unsigned char b[8];
	if (f->size < 8)
		return fail(err, path, "is %" PRId64 " byte%s long, too short for a safetensors header; %s", f->size,
			    plural(f->size), corrupt);
	if (read_at(f->fd, b, 8, 0) < 0)
		return read_fail(path, err);
	*n = load_le(b, 8);
	if (*n > max_header)
		return fail(err, path, "header size %" PRIu64 " is over the 100 MB limit; %s", *n, corrupt);
	if (*n > (uint64_t)(f->size - 8))
		return fail(err, path,
			    "header size %" PRIu64 " runs past the end of the file (%" PRId64
			    " bytes); the file is truncated or not safetensors",
			    *n, f->size);
	return 0;
}

static int json_fail(const Json *j, const char *path, NnrtError *err)
{
	if (j->oom)
		return fail(err, path, "out of memory reading the header; free some memory");
	return fail(err, path, "bad header at byte %zu: %s; %s", 8 + j->at, j->why, j->hint ? j->hint : corrupt);
}

/* reads, parses and checks the header; the entries end up sorted by name */
static int st_open(StFile *f, const char *path, NnrtError *err)
{
	uint64_t n = 0;
	if (open_file(f, path, err) < 0 || read_header_size(f, path, err, &n) < 0)
		return -1;
	unsigned char *text = malloc(n + 1);
	if (!text)
		return fail(err, path, "out of memory reading the header; free some memory");
	if (read_at(f->fd, text, n, 8) < 0) {
		free(text);
		return read_fail(path, err);
	}
	Json j = { .s = text, .n = n };
	int r = parse_header(&j, &f->h);
	free(text);
	if (r < 0)
		return json_fail(&j, path, err);
	f->data_start = 8 + (int64_t)n;
	f->data_size = f->size - f->data_start;
	return check_header(&f->h, f->data_size, path, err);
}

static void st_close(StFile *f)
{
	if (f->fd >= 0)
		close(f->fd);
	header_free(&f->h);
}

/* ------------------------------------------- matching the model's tensors */

static Entry *find(const StFile *f, const char *name)
{
	Entry key = { .name = (char *)name };
	return f->h.n ? bsearch(&key, f->h.e, f->h.n, sizeof key, by_name) : NULL;
}

/* Appends name to a comma-separated list while it fits in cap bytes, so a
 * message can name as many as room allows; returns 0 when it did not fit. */
static int list_add(char *list, size_t cap, const char *name)
{
	size_t k = strlen(list), need = strlen(name) + (k ? 2 : 0);
	if (k + need + 1 > cap)
		return 0;
	snprintf(list + k, cap - k, "%s%s", k ? ", " : "", name);
	return 1;
}

/* " (and 3 more)" when some names did not fit */
static const char *more_str(char *out, size_t cap, int64_t more)
{
	if (more)
		snprintf(out, cap, " (and %" PRId64 " more)", more);
	else
		out[0] = '\0';
	return out;
}

/* every asked-for name is in the file; marks the entries found */
static int check_missing(StFile *f, const NnrtTensor *t, int n, const char *path, NnrtError *err)
{
	char list[300] = "", more[40];
	int64_t missing = 0, unlisted = 0;
	for (int i = 0; i < n; i++) {
		Entry *e = find(f, t[i].name);
		if (e) {
			e->used = 1;
			continue;
		}
		missing++;
		if (!list_add(list, sizeof list, t[i].name))
			unlisted++;
	}
	if (!missing)
		return 0;
	return fail(err, path, "the file lacks %" PRId64 " tensor%s the model needs: %s%s; load a file saved from this model",
		    missing, plural(missing), list, more_str(more, sizeof more, unlisted));
}

static int ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), m = strlen(tail);
	return n >= m && !strcmp(s + n - m, tail);
}

/* the file holds nothing the model lacks, except PyTorch's batchnorm counters */
static int check_extra(const StFile *f, const char *path, NnrtError *err)
{
	char list[300] = "", more[40];
	int64_t extra = 0, unlisted = 0;
	for (size_t i = 0; i < f->h.n; i++) {
		const Entry *e = &f->h.e[i];
		if (e->used || ends_with(e->name, ".num_batches_tracked"))
			continue;
		extra++;
		if (!list_add(list, sizeof list, e->name))
			unlisted++;
	}
	if (!extra)
		return 0;
	return fail(err, path,
		    "the file holds %" PRId64 " tensor%s the model does not have: %s%s; load a file saved from this model",
		    extra, plural(extra), list, more_str(more, sizeof more, unlisted));
}

static int check_match(const Entry *e, const NnrtTensor *t, const char *path, NnrtError *err)
{
	char fs[SHAPE_STR], ms[SHAPE_STR];
	int same = e->rank == t->rank;
	for (int i = 0; same && i < t->rank; i++)
		same = e->shape[i] == t->shape[i];
	if (!same)
		return fail(err, path, "%.100s has shape %s in the file but the model needs %s; load a file saved from this model",
			    t->name, shape_str(fs, e->shape, e->rank), shape_str(ms, t->shape, t->rank));
	if (e->dtype >= DT_NFLOAT)
		return fail(err, path, "%.100s is stored as %s; nnc reads weights stored as F32, F64, F16 or BF16", t->name,
			    dtypes[e->dtype].name);
	return 0;
}

/* ------------------------------------------------------- the conversions */

static float f32_from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof f);
	return f;
}

static double f64_from_bits(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof d);
	return d;
}

/* IEEE half to float, exactly: every half is a float. Subnormal halves
 * become normal floats; NaN payloads move up with the mantissa. */
static float f16_to_float(uint32_t h)
{
	uint32_t sign = (h >> 15) << 31, exp = h >> 10 & 0x1F, man = h & 0x3FF;
	if (exp == 0x1F)
		return f32_from_bits(sign | 0x7F800000 | man << 13);
	if (exp)
		return f32_from_bits(sign | (exp + 127 - 15) << 23 | man << 13);
	if (!man)
		return f32_from_bits(sign);
	/* man * 2^-24: shift the leading one up to the implicit bit */
	uint32_t e = 127 - 15 + 1;
	while (!(man & 0x400)) {
		man <<= 1;
		e--;
	}
	return f32_from_bits(sign | e << 23 | (man & 0x3FF) << 13);
}

/* n elements of dtype dt in little-endian bytes b, as floats. F64 rounds to
 * nearest, and values beyond float's range become infinities (IEEE 754). */
static void decode(const unsigned char *b, int64_t n, int dt, float *out)
{
	switch (dt) {
	case DT_F32:
		for (int64_t i = 0; i < n; i++)
			out[i] = f32_from_bits((uint32_t)load_le(b + 4 * i, 4));
		break;
	case DT_F64:
		for (int64_t i = 0; i < n; i++)
			out[i] = (float)f64_from_bits(load_le(b + 8 * i, 8));
		break;
	case DT_F16:
		for (int64_t i = 0; i < n; i++)
			out[i] = f16_to_float((uint32_t)load_le(b + 2 * i, 2));
		break;
	default:	/* DT_BF16: the top half of a float */
		for (int64_t i = 0; i < n; i++)
			out[i] = f32_from_bits((uint32_t)load_le(b + 2 * i, 2) << 16);
		break;
	}
}

/* one tensor's data, read and converted a chunk at a time */
static int read_tensor(const StFile *f, const Entry *e, float *out, const char *path, NnrtError *err)
{
	unsigned char buf[CHUNK];
	int size = dtypes[e->dtype].size;
	int64_t left = e->end - e->begin, off = f->data_start + e->begin;
	while (left > 0) {
		size_t want = left < CHUNK ? (size_t)left : CHUNK;	/* CHUNK holds whole elements */
		if (read_at(f->fd, buf, want, off) < 0)
			return read_fail(path, err);
		decode(buf, (int64_t)want / size, e->dtype, out);
		out += want / (size_t)size;
		left -= (int64_t)want;
		off += (int64_t)want;
	}
	return 0;
}

/* ------------------------------------------------------- the caller's side */

/* numel of a caller's tensor, or -1 when it is not a valid tensor */
static int64_t tensor_numel(const NnrtTensor *t)
{
	int64_t numel = 1;
	if (!t->name || t->rank < 0 || t->rank > NNRT_MAX_RANK)
		return -1;
	for (int i = 0; i < t->rank; i++) {
		if (t->shape[i] < 0 || (t->shape[i] && numel > INT64_MAX / 4 / t->shape[i]))
			return -1;
		numel *= t->shape[i];
	}
	if (numel && !t->data)
		return -1;
	return numel;
}

/* the caller's tensors are well formed: a bug of the caller, reported rather than crashed on */
static int check_tensors(const char *path, const NnrtTensor *t, int n, NnrtError *err)
{
	if (!path)
		return fail(err, path, "no path given; pass the weights file's path");
	if (n < 0 || (n > 0 && !t))
		return fail(err, path, "invalid tensor list (n = %d); this is a bug in the caller", n);
	for (int i = 0; i < n; i++)
		if (tensor_numel(&t[i]) < 0)
			return fail(err, path,
				    "tensor %d (%.100s) has no name, a rank outside 0..%d, a negative or "
				    "overflowing shape, or no data; this is a bug in the caller",
				    i, t[i].name ? t[i].name : "unnamed", NNRT_MAX_RANK);
	return 0;
}

int nnrt_st_load(const char *path, NnrtTensor *t, int n, NnrtError *err)
{
	StFile f = { .fd = -1 };
	if (check_tensors(path, t, n, err) < 0)
		return -1;
	int r = st_open(&f, path, err);
	if (r == 0)
		r = check_missing(&f, t, n, path, err);
	if (r == 0)
		r = check_extra(&f, path, err);
	for (int i = 0; r == 0 && i < n; i++)
		r = check_match(find(&f, t[i].name), &t[i], path, err);
	for (int i = 0; r == 0 && i < n; i++)
		r = read_tensor(&f, find(&f, t[i].name), t[i].data, path, err);
	st_close(&f);
	return r;
}

int nnrt_st_metadata(const char *path, const char *key, char *out, size_t cap, NnrtError *err)
{
	StFile f = { .fd = -1 };
	if (st_open(&f, path, err) < 0) {
		st_close(&f);
		return -1;
	}
	int found = 0;
	/* the first of duplicate keys wins */
	for (size_t i = 0; i + 1 < f.h.nmeta && !found; i += 2)
		if (!strcmp(f.h.meta[i], key)) {
			snprintf(out, cap, "%s", f.h.meta[i + 1]);
			found = 1;
		}
	st_close(&f);
	return found;
}

/* ------------------------------------------------------------- writing */

/* a growing string; oom sticks, so appends need no checks until the end */
typedef struct Buf {
	char *s;
	size_t len, cap;
	int oom;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->s, cap);
		if (!p) {
			b->oom = 1;
			return;
		}
		b->s = p;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void buf_str(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

static void buf_int(Buf *b, int64_t v)
{
	char num[24];
	snprintf(num, sizeof num, "%" PRId64, v);
	buf_str(b, num);
}

/* s as a JSON string: quotes, backslashes and control characters escaped,
 * other UTF-8 (checked by the caller) copied as it is */
static void buf_json_string(Buf *b, const char *s)
{
	buf_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		if (*p == '"' || *p == '\\' || *p < 0x20) {
			snprintf(esc, sizeof esc, *p < 0x20 ? "\\u%04x" : "\\%c", *p);
			buf_str(b, esc);
		} else {
			buf_add(b, (const char *)p, 1);
		}
	}
	buf_add(b, "\"", 1);
}

static void buf_metadata(Buf *b, const char *const *meta, int n_meta)
{
	buf_str(b, "\"__metadata__\":{");
	for (int i = 0; i < n_meta; i++) {
		buf_str(b, i ? "," : "");
		buf_json_string(b, meta[2 * i]);
		buf_str(b, ":");
		buf_json_string(b, meta[2 * i + 1]);
	}
	buf_str(b, "}");
}

/* "name":{"dtype":"F32","shape":[..],"data_offsets":[begin,end]} */
static void buf_entry(Buf *b, const NnrtTensor *t, int64_t begin, int64_t end)
{
	buf_json_string(b, t->name);
	buf_str(b, ":{\"dtype\":\"F32\",\"shape\":[");
	for (int i = 0; i < t->rank; i++) {
		buf_str(b, i ? "," : "");
		buf_int(b, t->shape[i]);
	}
	buf_str(b, "],\"data_offsets\":[");
	buf_int(b, begin);
	buf_str(b, ",");
	buf_int(b, end);
	buf_str(b, "]}");
}

/* The header, its tensors' data laid out in the order given, padded with
 * spaces so the data starts 8-aligned in the file. Returns -1 on overflow. */
static int build_header(Buf *b, const NnrtTensor *t, int n, const char *const *meta, int n_meta)
{
	int64_t off = 0;
	buf_str(b, "{");
	if (n_meta > 0)
		buf_metadata(b, meta, n_meta);
	for (int i = 0; i < n; i++) {
		int64_t bytes = 4 * tensor_numel(&t[i]);	/* checked: no overflow */
		if (off > INT64_MAX - bytes)
			return -1;
		buf_str(b, i || n_meta > 0 ? "," : "");
		buf_entry(b, &t[i], off, off + bytes);
		off += bytes;
	}
	buf_str(b, "}");
	while (!b->oom && b->len % 8)
		buf_str(b, " ");
	return 0;
}

/* names a tensor may not have: none, the same as another, or the metadata key */
static int check_save_names(const char *path, const NnrtTensor *t, int n, NnrtError *err)
{
	for (int i = 0; i < n; i++) {
		if (!utf8_valid(t[i].name) || !strcmp(t[i].name, "__metadata__"))
			return fail(err, path, "tensor %d has an invalid name (not UTF-8, or \"__metadata__\"); rename it", i);
		/* quadratic, but a model has hundreds of tensors, not millions */
		for (int k = 0; k < i; k++)
			if (!strcmp(t[i].name, t[k].name))
				return fail(err, path, "two tensors are named %.100s; give each its own name", t[i].name);
	}
	return 0;
}

static int check_metadata(const char *path, const char *const *meta, int n_meta, NnrtError *err)
{
	if (n_meta < 0 || (n_meta > 0 && !meta))
		return fail(err, path, "invalid metadata (n_meta = %d); this is a bug in the caller", n_meta);
	for (int i = 0; i < 2 * n_meta; i++)
		if (!meta[i] || !utf8_valid(meta[i]))
			return fail(err, path, "metadata string %d is NULL or not UTF-8; this is a bug in the caller", i);
	for (int i = 0; i < n_meta; i++)
		for (int k = 0; k < i; k++)
			if (!strcmp(meta[2 * i], meta[2 * k]))
				return fail(err, path, "metadata key \"%.100s\" is given twice; give it once", meta[2 * i]);
	return 0;
}

/* the data of every tensor as little-endian F32, a chunk at a time */
static int write_data(FILE *fp, const NnrtTensor *t, int n)
{
	unsigned char buf[CHUNK];
	for (int i = 0; i < n; i++) {
		int64_t numel = tensor_numel(&t[i]);
		for (int64_t at = 0; at < numel;) {
			size_t k = 0;
			for (; k < CHUNK / 4 && at < numel; k++, at++) {
				uint32_t u;
				memcpy(&u, &t[i].data[at], sizeof u);
				store_le(buf + 4 * k, u, 4);
			}
			if (fwrite(buf, 4, k, fp) != k)
				return -1;
		}
	}
	return 0;
}

static int write_file(FILE *fp, const Buf *hdr, const NnrtTensor *t, int n)
{
	unsigned char size[8];
	store_le(size, hdr->len, 8);
	if (fwrite(size, 1, 8, fp) != 8 || fwrite(hdr->s, 1, hdr->len, fp) != hdr->len)
		return -1;
	return write_data(fp, t, n);
}

/* "dir/.name.XXXXXX" beside path, for mkstemp; the leading dot keeps a
 * half-written file out of listings. NULL when memory runs out. */
static char *temp_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t dir = slash ? (size_t)(slash - path + 1) : 0, n = strlen(path);
	char *tmp = malloc(n + 10);
	if (!tmp)
		return NULL;
	memcpy(tmp, path, dir);
	snprintf(tmp + dir, n + 10 - dir, ".%s.XXXXXX", path + dir);
	return tmp;
}

/* The mode the file ends up with: an existing file's, else 0644, what the
 * usual umask gives (mkstemp makes 0600, and reading the umask would mean
 * setting it, which is process-wide). */
static mode_t file_mode(const char *path)
{
	struct stat st;
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
		return st.st_mode & 0777;
	return 0644;
}

/* fsync of the folder makes the rename itself durable. Some file systems
 * cannot sync a folder (EINVAL); there is nothing more to do on those. */
static int sync_folder(const char *path, NnrtError *err)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
	if (!dir)
		return fail(err, path, "written, but out of memory syncing its folder; the file may not survive a crash");
	int fd = open(dir, O_RDONLY | O_CLOEXEC), r = 0;
	free(dir);
	if (fd < 0 || (fsync(fd) < 0 && errno != EINVAL))
		r = fail(err, path, "written, but syncing its folder failed: %s; the file may not survive a crash",
			 strerror(errno));
	if (fd >= 0)
		close(fd);
	return r;
}

/* writes the temporary; on failure says which step failed in *step */
static int write_temp(int fd, const char *path, const Buf *hdr, const NnrtTensor *t, int n, const char **step)
{
	FILE *fp = fdopen(fd, "wb");
	int e;
	*step = "cannot write the temporary file beside it";
	if (!fp) {
		e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	int ok = fchmod(fd, file_mode(path)) == 0 && write_file(fp, hdr, t, n) == 0 && fflush(fp) == 0;
	if (ok && fsync(fd) != 0) {
		ok = 0;
		*step = "cannot sync the temporary file beside it";
	}
	e = errno;
	if (fclose(fp) != 0 && ok) {
		ok = 0;
		e = errno;
	}
	errno = e;
	return ok ? 0 : -1;
}

/* temporary, write, fsync, rename, fsync of the folder: a crash or a failure
 * leaves either the old file or the new one, never a part of either */
static int write_atomically(const char *path, const Buf *hdr, const NnrtTensor *t, int n, NnrtError *err)
{
	const char *step;
	char *tmp = temp_name(path);
	if (!tmp)
		return fail(err, path, "out of memory; free some memory");
	int fd = mkstemp(tmp);
	if (fd < 0) {
		int e = errno;
		free(tmp);
		return fail(err, path, "cannot create a temporary file beside it: %s; check that the folder exists and is writable",
			    strerror(e));
	}
	int r = write_temp(fd, path, hdr, t, n, &step);
	if (r == 0 && rename(tmp, path) != 0) {
		r = -1;
		step = "cannot rename the temporary file to it";
	}
	if (r < 0) {
		int e = errno;
		unlink(tmp);
		free(tmp);
		return fail(err, path, "%s: %s; nothing was changed, check the path and the free space", step, strerror(e));
	}
	free(tmp);
	return sync_folder(path, err);
}

int nnrt_st_save(const char *path, const NnrtTensor *t, int n, const char *const *metadata, int n_meta,
		 NnrtError *err)
{
	Buf hdr = { 0 };
	if (check_tensors(path, t, n, err) < 0 || check_save_names(path, t, n, err) < 0 ||
	    check_metadata(path, metadata, n_meta, err) < 0)
		return -1;
	const char *slash = strrchr(path, '/');
	if (!*(slash ? slash + 1 : path))
		return fail(err, path, "names a folder, not a file; give a file name such as model.safetensors");
	int r = build_header(&hdr, t, n, metadata, n_meta);
	if (r < 0 || hdr.oom)
		r = fail(err, path, "%s; save fewer or smaller tensors",
			 hdr.oom ? "out of memory building the header" : "the tensors' total size overflows 64 bits");
	else
		r = write_atomically(path, &hdr, t, n, err);
	free(hdr.s);
	return r;
}
