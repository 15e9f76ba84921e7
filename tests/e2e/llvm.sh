#!/bin/sh
# The LLVM backend against the C backend, on every example that lowers:
#  - `nnc train` (the JIT) and the emitted C, built with cc, train 20 steps
#    from the same seed on the same batches (--no-shuffle): the weights they
#    save must agree within 1e-5 of each tensor's scale (they are expected
#    bit-identical: same float operations in the same order, no fast-math);
#  - --emit=obj --main links with libnnrt.a alone (no C compiler sees the
#    model) into a program that trains to the same weights;
#  - --emit=llvm is text that llvm-as accepts;
#  - the object file implements model.h: a C program built against the C
#    emitter's header and the LLVM object agrees with one built from model.c.
# Then it prints how long `nnc train examples/lenet.nn` takes from launch to
# its first training step (the JIT's --verbose report; informative, not a
# timed test).
#
# usage: sh tests/e2e/llvm.sh path/to/nnc path/to/libnnrt.a
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
py=/usr/bin/python3
compare="$py $root/tests/e2e/compare_weights.py"
llvm_as=$(command -v llvm-as-14 || command -v llvm-as)
make_shapes 64 8 --seed 3	# a small set for unet_tiny (data_args: 20 steps, no test set)

for ex in mlp lenet resnet_mini unet_tiny; do
	if ! "$nnc" "$root/examples/$ex.nn" -o "$ex.c" --main 2>err; then
		echo "note: skipping $ex: it does not lower yet ($(head -1 err))"
		continue
	fi
	args="$(data_args $ex) --steps 20 --no-shuffle --quiet --seed 5"
	r=""
	if ! cc -std=c99 -O2 -I"$root/runtime" "$ex.c" "$lib" -lz -lm -o "$ex-c" 2>err; then
		bad "$ex: the emitted C does not build: $(head -3 err)"
		continue
	fi
	# shellcheck disable=SC2086
	./"$ex-c" $args --save c.safetensors >/dev/null 2>err || bad "$ex: the C program failed: $(head -3 err)"
	# shellcheck disable=SC2086
	if "$nnc" train "$root/examples/$ex.nn" $args --save jit.safetensors >/dev/null 2>err; then
		r=$($compare c.safetensors jit.safetensors 1e-5) && ok "$ex: JIT = C after 20 steps: $r" ||
			bad "$ex: JIT and C differ after 20 steps: $r"
	else
		bad "$ex: nnc train failed: $(head -3 err)"
	fi

	if "$nnc" "$root/examples/$ex.nn" --emit=llvm -o "$ex.ll" 2>err && "$llvm_as" "$ex.ll" -o /dev/null 2>err; then
		ok "$ex: --emit=llvm is valid LLVM IR ($(wc -l <"$ex.ll") lines)"
	else
		bad "$ex: --emit=llvm: $(head -3 err)"
	fi

	# the object alone: cc only links it
	if "$nnc" "$root/examples/$ex.nn" --emit=obj --main -o "$ex.o" 2>err && cc "$ex.o" "$lib" -lz -lm -o "$ex-obj" 2>err; then
		# shellcheck disable=SC2086
		./"$ex-obj" $args --save obj.safetensors >/dev/null 2>err &&
			r=$($compare c.safetensors obj.safetensors 1e-5) && ok "$ex: the --emit=obj program = C: $r" ||
			bad "$ex: the --emit=obj program: $(head -3 err) $r"
	else
		bad "$ex: --emit=obj --main does not link: $(head -3 err)"
	fi
	rm -f c.safetensors jit.safetensors obj.safetensors ./*.ckpt
done

# model.h's API from the LLVM object: prefixed symbols, the same results as model.c
"$nnc" "$root/examples/mlp.nn" -o one.c --prefix one && "$nnc" "$root/examples/mlp.nn" --emit=obj -o two.o --prefix two &&
	"$nnc" "$root/examples/mlp.nn" -o two.c --prefix two	# for two.h only
cat >api.c <<'C'
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
	float x[4 * ONE_IN_ELEMS], oa[4 * ONE_OUT_ELEMS], ob[4 * TWO_OUT_ELEMS];
	int64_t y[4] = { 1, 2, 3, 4 };
	for (int i = 0; i < 4 * ONE_IN_ELEMS; i++)
		x[i] = (float)(i % 7) / 7;
	int same = 1;
	for (int s = 0; s < 3; s++) {
		one_set_lr(&a, 0.01 / (s + 1));
		two_set_lr(&b, 0.01 / (s + 1));
		same &= one_train_step(&a, 4, x, y, NULL) == two_train_step(&b, 4, x, y, NULL);
	}
	same &= one_eval(&a, 4, x, y, oa) == two_eval(&b, 4, x, y, ob);
	one_forward(&a, 4, x, oa);
	two_forward(&b, 4, x, ob);
	for (int i = 0; i < 4 * ONE_OUT_ELEMS; i++)
		same &= oa[i] == ob[i];
	NnrtError err;
	same &= two_save(&b, "two.safetensors", &err) == 0 && one_load(&a, "two.safetensors", &err) == 0;
	free(ma);
	free(mb);
	printf("%s\n", same ? "same" : "different");
	return !same;
}
C
if cc -std=c11 -Wall -Wextra -Werror -I"$root/runtime" api.c one.c two.o "$lib" -lz -lm -o api 2>err && ./api >out 2>&1; then
	ok "the LLVM object implements model.h: a C program gets the same results as from model.c"
else
	bad "model.h over the LLVM object: $(head -3 err) $(cat out 2>/dev/null)"
fi

# from launch to the first training step (the runtime's report) and to the
# moment train_step's code is there (nnc's), twice for a warm cache
for i in 1 2; do
	"$nnc" train "$root/examples/lenet.nn" --steps 1 --quiet --verbose 2>timing >/dev/null
done
echo "lenet, nnc train --verbose (not a timed test):"
sed 's/^/    /' timing

echo "llvm: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
