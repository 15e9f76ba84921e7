/*
 * arena.h: bump allocation for one compilation. The AST, the graph IR and
 * interned strings live in one arena and are freed together; no stage frees
 * a single object.
 */
#ifndef NNC_ARENA_H
#define NNC_ARENA_H

#include <stddef.h>

typedef struct Arena Arena;

Arena *arena_new(void);
void *arena_alloc(Arena *a, size_t n);	/* zeroed, 16-byte aligned; exits on out-of-memory */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* grows an array of elem-sized items held in the arena; the old block is abandoned */
void *arena_grow(Arena *a, void *old, size_t old_n, size_t new_n, size_t elem);
void arena_free(Arena *a);

#endif
