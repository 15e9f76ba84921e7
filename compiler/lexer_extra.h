/*
 * lexer_extra.h: the state the flex scanner carries (its "extra"): where it
 * is in the file, and where to put identifiers.
 */
#ifndef NNC_LEXER_EXTRA_H
#define NNC_LEXER_EXTRA_H

#include "arena.h"
#include "ast.h"
#include "diag.h"

typedef struct LexExtra {
	Arena *arena;
	const SrcFile *src;
	int line, col;
	int bad_line;		/* the last line with a lexical error: the parser keeps quiet about it */
} LexExtra;

#endif
