#!/bin/sh
# The emitted C as a product: byte-identical for the same input, every
# example's C warning-free under gcc and clang with -std=c99 -Wall -Wextra
# -Wpedantic -Werror, symbols prefixed so two models link into one program,
# and the --main program's errors for bad flags and bad files (exit status 1,
# a message naming the problem, no partial weights file).
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"

"$nnc" "$root/examples/mlp.nn" -o a.c --main && "$nnc" "$root/examples/mlp.nn" -o b.c --main
sed 's/b\.h/a.h/g' b.c | cmp -s a.c - && sed 's/b\.h/a.h/g' b.h | cmp -s a.h - && ok "same input, same bytes" || bad "output differs between runs"

# every example's C, under both compilers
for f in "$root"/examples/*.nn; do
	m=$(basename "$f" .nn)
	if ! "$nnc" "$f" -o "ex_$m.c" --main 2>err; then
		bad "nnc cannot compile $m.nn to C: $(head -5 err)"
		continue
	fi
	for cc in gcc clang; do
		command -v $cc >/dev/null || continue
		if $cc -std=c99 -Wall -Wextra -Wpedantic -Werror -I"$root/runtime" -c "ex_$m.c" -o "ex_$m.o" 2>err; then
			ok "$cc compiles $m.c warning-free"
		else
			bad "$cc on $m.c: $(head -5 err)"
		fi
	done
done

# two models in one program: prefixes keep their symbols apart
"$nnc" "$root/examples/mlp.nn" -o one.c --prefix one && "$nnc" "$root/examples/mlp.nn" -o two.c --prefix two
cat > both.c <<'C'
#include <stdio.h>
#include <stdlib.h>
#include "one.h"
#include "two.h"
int main(void)
{
	one_ctx a;
	two_ctx b;
	void *ma = aligned_alloc(64, one_arena_size(4)), *mb = aligned_alloc(64, two_arena_size(4));
	one_init(&a, ma, 4, 1);
	two_init(&b, mb, 4, 1);
	float x[4 * ONE_IN_ELEMS] = { 0 }, oa[4 * ONE_OUT_ELEMS], ob[4 * TWO_OUT_ELEMS];
	int64_t y[4] = { 1, 2, 3, 4 };
	for (int i = 0; i < 4 * ONE_IN_ELEMS; i++)
		x[i] = (float)(i % 7) / 7;
	float la = one_train_step(&a, 4, x, y, NULL);
	float lb = two_train_step(&b, 4, x, y, NULL);
	one_forward(&a, 4, x, oa);
	two_forward(&b, 4, x, ob);
	int same = la == lb;
	for (int i = 0; i < 4 * ONE_OUT_ELEMS; i++)
		same &= oa[i] == ob[i];
	free(ma);
	free(mb);
	printf("%s\n", same ? "same" : "different");
	return !same;
}
C
if cc -std=c11 -Wall -Wextra -Werror -I"$root/runtime" both.c one.c two.c "$lib" -lz -lm -o both 2>err && ./both >/dev/null; then
	ok "two prefixed models link into one program and agree from the same seed"
else
	bad "two models in one program: $(head -5 err)"
fi

# maxpool keeps PyTorch's NaN: a window with a NaN anywhere is NaN, one of
# -inf is -inf (the emitted C's "above or NaN" test, written with | since
# 2026-11-28; gcc branched on ||)
cat > pool.nn <<'NN'
model pool {
    input x: [1, 4, 6]
    target t: [6]
    h = x -> maxpool(2) -> flatten
    output h
    loss mse(h, t)
}
NN
cat > pool_main.c <<'C'
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "pool.h"
int main(void)
{
	pool_ctx c;
	void *mem = aligned_alloc(64, pool_arena_size(1));
	pool_init(&c, mem, 1, 1);
	float x[24], out[6];
	for (int i = 0; i < 24; i++)
		x[i] = (float)((i * 7) % 11) - 5;
	x[0] = NAN;			/* window 0: NaN in its first cell */
	x[9] = NAN;			/* window 1: NaN in its last (row 1, column 3) */
	x[16] = x[17] = x[22] = x[23] = -INFINITY;	/* window 5: all -inf */
	pool_forward(&c, 1, x, out);
	int ok = isnan(out[0]) && isnan(out[1]) && out[5] == -INFINITY;
	for (int w = 2; w < 5; w++) {	/* the others: their largest cell */
		const float *p = x + (w / 3) * 12 + (w % 3) * 2;
		ok &= out[w] == fmaxf(fmaxf(p[0], p[1]), fmaxf(p[6], p[7]));
	}
	for (int i = 0; i < 6; i++)
		printf("%g ", out[i]);
	printf("\n");
	free(mem);
	return !ok;
}
C
if "$nnc" pool.nn -o pool.c 2>err && cc -std=c11 -O2 -march=native -I"$root/runtime" pool_main.c pool.c "$lib" -lz -lm -o pool 2>>err &&
   ./pool >out 2>>err; then
	ok "maxpool in the emitted C: NaN and -inf as PyTorch"
else
	bad "maxpool with NaN in the emitted C: $(cat out err | head -5)"
fi

# the --main program's errors
cc -std=c99 -O1 -I"$root/runtime" a.c "$lib" -lz -lm -o mlp 2>/dev/null
expect_error() { # what pattern args...
	w=$1 p=$2
	shift 2
	fails_with "$w" "$p" ./mlp "$@"
}
expect_error "unknown flag" "unknown option '--epoch'" --epoch 3
expect_error "bad number" "--batch takes a whole number" --batch x
expect_error "missing data" "missing.idx" --data missing.idx
printf 'P6 not an idx' > bad-images-idx3-ubyte
expect_error "corrupt IDX" "bad-images-idx3-ubyte" --data bad-images-idx3-ubyte
printf '\001\002' > w.safetensors
expect_error "corrupt weights" "w.safetensors" --init w.safetensors --data /usr/share/datasets/fashion-mnist --steps 1
./mlp --data /usr/share/datasets/fashion-mnist --steps 1 --save /nonexistent-folder/w.safetensors >out 2>err
[ $? -eq 1 ] && grep -q "nonexistent-folder" err && ok "unwritable --save" || bad "unwritable --save: $(cat err)"
ls /nonexistent-folder 2>/dev/null && bad "partial file left" || true

echo "codegen: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
