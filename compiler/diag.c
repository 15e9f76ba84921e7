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
 * garbage cannot corrupt a terminal. The sink is set by diag_use(): the
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
	return sink ? sink->nerrors : 0;
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
	return c == '\t' || (c >= 0x20 && c < 0x7f) || c >= 0x80;
}

/* the source line, then spaces and tabs up to the span and ^~~ under it */
static void show_source(SrcLoc loc)
{
	if (!loc.file || loc.line < 1)
		return;
	size_t n;
	const char *s = line_start(loc.file, loc.line, &n);
	size_t col = loc.col > 0 ? (size_t)loc.col - 1 : 0;
	if (col > n)
		col = n;
	size_t from = 0, to = n;
	if (n > SHOW_COLS) {
		from = col > SHOW_COLS / 2 ? col - SHOW_COLS / 2 : 0;
		to = from + SHOW_COLS < n ? from + SHOW_COLS : n;
	}
	char line[SHOW_COLS * 2 + 16], mark[SHOW_COLS * 2 + 16];
	size_t a = 0, b = 0;
	const char *dots = from > 0 ? "..." : "";
	for (size_t i = from; i < to; i++) {
		unsigned char c = (unsigned char)s[i];
		line[a++] = printable(c) ? (char)c : '?';
		if (i < col)
			mark[b++] = c == '\t' ? '\t' : (c >= 0x80 && c < 0xc0) ? 0 : ' ';
	}
	line[a] = 0;
	size_t m = 0;
	for (size_t i = 0; i < b; i++)
		if (mark[i])
			mark[m++] = mark[i];
	mark[m++] = '^';
	size_t span = loc.len > 1 ? (size_t)loc.len - 1 : 0;
	for (size_t i = 0; i < span && col + 1 + i < to && m < sizeof mark - 1; i++)
		mark[m++] = '~';
	mark[m] = 0;
	putf("    %s%s%s\n", dots, line, to < n ? "..." : "");
	putf("    %s%s\n", from > 0 ? "   " : "", mark);
}

static void message(const char *kind, SrcLoc loc, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	if (loc.file)
		putf("%s:%d:%d: %s: %s\n", loc.file->name, loc.line, loc.col, kind, msg);
	else
		putf("nnc: %s: %s\n", kind, msg);
	show_source(loc);
	if (!strcmp(kind, "error") && sink && !sink->first_error)
		sink->first_error = strdup(msg);
}

void diag_error(SrcLoc loc, const char *fmt, ...)
{
	if (!sink)
		return;
	sink->nerrors++;
	sink->muted = sink->nerrors > sink->max_errors;
	if (sink->muted) {
		if (sink->nerrors == sink->max_errors + 1)
			putf("nnc: too many errors; stopping after %d\n", sink->max_errors);
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	message("error", loc, fmt, ap);
	va_end(ap);
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
