/*
 * emit_c.h: loop IR -> C99 (emit_c.c).
 */
#ifndef NNC_EMIT_C_H
#define NNC_EMIT_C_H

#include <stdbool.h>
#include <stdio.h>

#include "loop.h"

/* model.h: the API; hname is the header's file name, prefix starts every symbol */
void emitc_header(FILE *o, const LoopModule *m, const char *prefix, const char *hname);
/* model.c; with_main adds main() running the runtime's training driver */
void emitc_source(FILE *o, const LoopModule *m, const char *prefix, const char *hname, bool with_main);

#endif
