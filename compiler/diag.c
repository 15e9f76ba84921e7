/*
 * diag.c: formats diagnostics the way a user reads them:
 *
 *     lenet.nn:6:19: error: dense expects a rank-1 input but got [16, 5, 5]
 *         logits = h -> dense(10)
 *                       ^~~~~~~~~
 *     hint: insert 'flatten' before it
 *
 * Source lines of any length print as a window of at most SHOW_COLS columns
 * around the span; bytes that are not printable print as '?', so binary
 * garbage cannot corrupt a terminal. An error repeated word for word at the
 * same place is shown once. The sink is set by diag_use(): the
 * compiler is single-threaded and the driver owns one Diag per compilation.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { SHOW_COLS = 100 };

static Diag *sink;

void diag_init(Diag *d, FILE *out)
{
	memset(d, 0, sizeof *d);
	d->out = out;
	d->max_errors = DIAG_MAX_ERRORS;
}

void diag_fini(Diag *d)
{
	free(d->first_error);
	free(d->text);
	free(d->seen);
	memset(d, 0, sizeof *d);
}

Diag *diag_use(Diag *d)
{
	Diag *old = sink;
	sink = d;
	return old;
}

int diag_errors(void)
{
	return sink ? sink->nerrors + sink->nrepeats : 0;
}

static void put(const char *s, size_t n)
{
	if (!sink)
		return;
	if (sink->out)
		fwrite(s, 1, n, sink->out);
	if (sink->len + n + 1 > sink->cap) {
		size_t cap = sink->cap ? sink->cap : 256;
		while (cap < sink->len + n + 1)
			cap *= 2;
		char *t = realloc(sink->text, cap);
		if (!t) {
			fprintf(stderr, "nnc: out of memory\n");
			exit(1);
		}
		sink->text = t;
		sink->cap = cap;
	}
	memcpy(sink->text + sink->len, s, n);
	sink->len += n;
	sink->text[sink->len] = 0;
}

static void putf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void putf(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	put(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static const char *line_start(const SrcFile *f, int line, size_t *len)
{
	const char *p = f->text, *end = f->text + f->len;
	for (int l = 1; l < line && p < end; p++)
		if (*p == '\n')
			l++;
	const char *q = p;
	while (q < end && *q != '\n' && *q != '\r')
		q++;
	*len = (size_t)(q - p);
	return p;
}

static bool printable(unsigned char c)
{
	return c == '\t' || (c >= 0x20 && c < 0x7f);
}

/* the length of the UTF-8 character at s[0..n); 0 when the bytes are not valid UTF-8 */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	size_t k = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (k == 0 || k > n)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return k;
}

/* bytes of the character at s[i]: an invalid byte counts as one character */
static size_t char_bytes(const char *s, size_t n, size_t i)
{
	size_t k = utf8_len((const unsigned char *)s + i, n - i);
	return k ? k : 1;
}

/* byte offset of character ci of s[0..n), or n past the end */
static size_t char_offset(const char *s, size_t n, size_t ci)
{
	size_t i = 0;
	for (size_t k = 0; i < n && k < ci; k++)
		i += char_bytes(s, n, i);
	return i < n ? i : n;
}

/*
 * The source line, then spaces and tabs up to the span and ^~~ under it.
 * Columns count characters; a line longer than SHOW_COLS characters shows
 * as a window around the span, cut at character boundaries. An empty line
 * (the end of the file, an empty file) is not shown: there is nothing to
 * point at.
 */
static void show_source(SrcLoc loc)
{
	if (!loc.file || loc.line < 1)
		return;
	size_t n;
	const char *s = line_start(loc.file, loc.line, &n);
	if (n == 0)
		return;
	size_t nchars = 0;
	for (size_t i = 0; i < n; i += char_bytes(s, n, i))
		nchars++;
	size_t col = loc.col > 0 ? (size_t)loc.col - 1 : 0;
	if (col > nchars)
		col = nchars;
	size_t from = 0, to = nchars;
	if (nchars > SHOW_COLS) {
		from = col > SHOW_COLS / 2 ? col - SHOW_COLS / 2 : 0;
		to = from + SHOW_COLS < nchars ? from + SHOW_COLS : nchars;
	}
	size_t bfrom = char_offset(s, n, from), bto = char_offset(s, n, to);
	char line[SHOW_COLS * 4 + 16], mark[SHOW_COLS * 2 + 16];
	size_t a = 0, m = 0, ci = from;
	for (size_t i = bfrom; i < bto && a < sizeof line - 5; ci++) {
		unsigned char c = (unsigned char)s[i];
		size_t k = utf8_len((const unsigned char *)s + i, n - i);
		if (k > 1) {
			memcpy(line + a, s + i, k);	/* a whole, valid UTF-8 character */
			a += k;
			i += k;
		} else {
			line[a++] = printable(c) ? (char)c : '?';
			i++;
		}
		if (ci < col)
			mark[m++] = c == '\t' ? '\t' : ' ';
	}
	line[a] = 0;
	mark[m++] = '^';
	size_t span = loc.len > 1 ? (size_t)loc.len - 1 : 0;
	for (size_t i = 0; i < span && col + 1 + i < to && m < sizeof mark - 1; i++)
		mark[m++] = '~';
	mark[m] = 0;
	putf("    %s%s%s\n", from > 0 ? "..." : "", line, to < nchars ? "..." : "");
	putf("    %s%s\n", from > 0 ? "   " : "", mark);
}

static void say(const char *kind, SrcLoc loc, const char *msg)
{
	if (loc.file)
		putf("%s:%d:%d: %s: %s\n", loc.file->name, loc.line, loc.col, kind, msg);
	else
		putf("nnc: %s: %s\n", kind, msg);
	show_source(loc);
	if (!strcmp(kind, "error") && sink && !sink->first_error)
		sink->first_error = strdup(msg);
}

static void message(const char *kind, SrcLoc loc, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	say(kind, loc, msg);
}

static uint64_t hash_error(SrcLoc loc, const char *msg)
{
	uint64_t h = 1469598103934665603u;
	h = (h ^ (uint64_t)(uintptr_t)loc.file) * 1099511628211u;
	h = (h ^ (uint64_t)(unsigned)loc.line) * 1099511628211u;
	h = (h ^ (uint64_t)(unsigned)loc.col) * 1099511628211u;
	while (*msg)
		h = (h ^ (unsigned char)*msg++) * 1099511628211u;
	return h;
}

/* true when this error was shown before; else remembers it */
static bool repeated(SrcLoc loc, const char *msg)
{
	uint64_t h = hash_error(loc, msg);
	for (int i = 0; i < sink->nseen; i++)
		if (sink->seen[i] == h)
			return true;
	if (sink->nseen == sink->capseen) {
		int cap = sink->capseen ? sink->capseen * 2 : 16;
		uint64_t *t = realloc(sink->seen, sizeof *t * (size_t)cap);
		if (!t) {
			fprintf(stderr, "nnc: out of memory\n");
			exit(1);
		}
		sink->seen = t;
		sink->capseen = cap;
	}
	sink->seen[sink->nseen++] = h;
	return false;
}

/*
 * An error made again at the same place with the same words (a block's body
 * expanded at each call, a shape rule run per instance) is counted for
 * diag_errors() but neither shown nor counted in nerrors: one mistake, one
 * message. Its hints and notes go with it.
 */
void diag_error(SrcLoc loc, const char *fmt, ...)
{
	if (!sink)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (sink->nerrors < sink->max_errors && repeated(loc, msg)) {
		sink->nrepeats++;
		sink->muted = true;
		return;
	}
	sink->nerrors++;
	sink->muted = sink->nerrors > sink->max_errors;
	if (sink->muted) {
		if (sink->nerrors == sink->max_errors + 1)
			putf("nnc: more than %d errors; only the first %d are shown\n", sink->max_errors, sink->max_errors);
		return;
	}
	sink->last = loc;
	say("error", loc, msg);
}

SrcLoc diag_last_error(void)
{
	SrcLoc none = { 0 };
	return sink ? sink->last : none;
}

void diag_warning(SrcLoc loc, const char *fmt, ...)
{
	if (!sink)
		return;
	sink->muted = sink->nerrors > sink->max_errors;
	if (sink->muted)
		return;
	va_list ap;
	va_start(ap, fmt);
	message("warning", loc, fmt, ap);
	va_end(ap);
}

void diag_note(SrcLoc loc, const char *fmt, ...)
{
	if (!sink || sink->muted)
		return;
	va_list ap;
	va_start(ap, fmt);
	message("note", loc, fmt, ap);
	va_end(ap);
}

void diag_hint(const char *fmt, ...)
{
	if (!sink || sink->muted)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	putf("hint: %s\n", msg);
}

/* optimal string alignment distance: a swap of neighbours counts one ("rleu") */
static int distance(const char *a, const char *b, int limit)
{
	int n = (int)strlen(a), m = (int)strlen(b);
	if (n > 64 || m > 64 || abs(n - m) > limit)
		return limit + 1;
	int d[65][65];
	for (int i = 0; i <= n; i++)
		d[i][0] = i;
	for (int j = 0; j <= m; j++)
		d[0][j] = j;
	for (int i = 1; i <= n; i++)
		for (int j = 1; j <= m; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < v)
				v = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < v)
				v = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < v)
				v = d[i - 2][j - 2] + 1;
			d[i][j] = v;
		}
	return d[n][m];
}

const char *diag_closest(const char *word, const char *const *cands, int n)
{
	int len = (int)strlen(word);
	int limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
	const char *best = NULL;
	int bestd = limit + 1;
	for (int i = 0; i < n; i++) {
		if (!cands[i] || !strcmp(cands[i], word))
			continue;
		int d = distance(word, cands[i], limit);
		if (d < bestd) {
			bestd = d;
			best = cands[i];
		}
	}
	return best;
}

void diag_bug(const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "nnc: internal error at %s:%d: ", file, line);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\nThis is a bug in nnc, not in your model; please report it with the input.\n");
	va_end(ap);
	abort();
}
