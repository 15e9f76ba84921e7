/*
 * diag.h: user-facing diagnostics. Every message names file:line:col, shows
 * the source line with a caret under the span and may carry a hint. Errors
 * are counted, never fatal: a stage reports all it finds and the driver stops
 * after the first stage that reported any.
 */
#ifndef NNC_DIAG_H
#define NNC_DIAG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct SrcFile {
	const char *name;	/* as the user gave it */
	const char *text;	/* whole file, NUL-terminated (may hold NULs too) */
	size_t len;
} SrcFile;

/* A span on one line; line and col count from 1, col and len in characters
 * (UTF-8 sequences count one, as an editor counts them). */
typedef struct SrcLoc {
	const SrcFile *file;	/* NULL: made by the compiler, not from source */
	int line, col, len;
} SrcLoc;

typedef struct Diag {
	FILE *out;		/* where messages go as they are made; NULL to only capture */
	int nerrors;		/* errors shown (or counted past the cap) */
	int nrepeats;		/* errors dropped as exact repeats of one shown */
	int max_errors;		/* after this many, one last line and silence */
	bool muted;		/* the last error was past the cap: drop its hints */
	char *first_error;	/* message of the first error, without location */
	char *text;		/* everything printed, for tests */
	size_t len, cap;
	uint64_t *seen;		/* hashes of the errors shown, to drop repeats */
	int nseen, capseen;
	SrcLoc last;		/* where the last error shown points */
} Diag;

enum { DIAG_MAX_ERRORS = 50 };

void diag_init(Diag *d, FILE *out);
void diag_fini(Diag *d);
/* makes d the sink of the calls below; returns the previous one */
Diag *diag_use(Diag *d);

void diag_error(SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_warning(SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* attaches to the last error or warning */
void diag_hint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void diag_note(SrcLoc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* every error reported so far, repeats included: "did this step fail?" */
int diag_errors(void);
/* where the last error shown points; file NULL when none */
SrcLoc diag_last_error(void);

/* the closest candidate by edit distance, or NULL when none is close */
const char *diag_closest(const char *word, const char *const *cands, int n);

/* a compiler invariant broke: our bug, not the user's */
#define NNC_BUG(...) diag_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void diag_bug(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
