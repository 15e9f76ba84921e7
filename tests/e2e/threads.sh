#!/bin/sh
# Threads do not change results: both emitters outline parallel loops and run
# them on the runtime's pool, whose chunks differ by thread count while every
# iteration computes the same values. For lenet, resnet_mini and unet_tiny,
# 5 training steps through the JIT with --threads 1 and 2, and through the
# emitted C with --threads 2, must save bit-identical weights (tolerance 0).
#
# usage: sh tests/e2e/threads.sh path/to/nnc path/to/libnnrt.a
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
compare="/usr/bin/python3 $root/tests/e2e/compare_weights.py"
make_shapes 64 8 --seed 3

for ex in lenet resnet_mini unet_tiny; do
	args="$(data_args "$ex") --steps 5 --no-shuffle --quiet --seed 7"
	for t in 1 2; do
		# shellcheck disable=SC2086
		"$nnc" train "$root/examples/$ex.nn" $args --threads $t --save "jit$t.safetensors" >/dev/null 2>err ||
			bad "$ex: nnc train --threads $t failed: $(head -3 err)"
	done
	r=$($compare jit1.safetensors jit2.safetensors 0) && ok "$ex: JIT, 1 thread = 2 threads: $r" ||
		bad "$ex: JIT, 1 and 2 threads differ: $r"
	if "$nnc" "$root/examples/$ex.nn" -o "$ex.c" --main 2>err &&
		cc -std=c99 -O2 -I"$root/runtime" "$ex.c" "$lib" -lz -lm -pthread -o "$ex-c" 2>err; then
		# shellcheck disable=SC2086
		./"$ex-c" $args --threads 2 --save c2.safetensors >/dev/null 2>err || bad "$ex: the C program failed: $(head -3 err)"
		r=$($compare jit1.safetensors c2.safetensors 0) && ok "$ex: C with 2 threads = JIT with 1: $r" ||
			bad "$ex: C with 2 threads and the JIT differ: $r"
	else
		bad "$ex: the emitted C does not build: $(head -3 err)"
	fi
done

echo "threads: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
