#!/bin/sh
# Every example's emitted C under AddressSanitizer and UBSan: each of
# examples/*.nn is compiled with --main, built with -fsanitize=address,undefined
# against the sanitized runtime (`make SAN=1 build-san/libnnrt.a`), and trained
# for 3 steps of batches of 8 on a small slice of its data (the first 256
# training and 60 test images of Fashion-MNIST, as IDX files; for unet_tiny
# the shapes set, 128 and 30 samples), then evaluated on the test slice (whose
# last batch is a partial one) and its weights saved. Each run must exit with
# status 0 and print no sanitizer report (leak checks on).
#
# usage: sh tests/e2e/asan_examples.sh path/to/nnc path/to/build-san/libnnrt.a
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
fm=/usr/share/datasets/fashion-mnist

be32() { # a big-endian 32-bit number as 4 bytes (IDX headers)
	for shift in 24 16 8 0; do
		printf "\\$(printf %03o $(($1 >> shift & 255)))"
	done
}
# idx_slice SRC-PREFIX DST-PREFIX N: the first N images and labels as IDX files
idx_slice() {
	{ be32 2051; be32 "$3"; be32 28; be32 28; gzip -dc "$fm/$1-images-idx3-ubyte.gz" | tail -c +17 | head -c $(($3 * 784)); } \
		> "fm/$2-images-idx3-ubyte"
	{ be32 2049; be32 "$3"; gzip -dc "$fm/$1-labels-idx1-ubyte.gz" | tail -c +9 | head -c "$3"; } > "fm/$2-labels-idx1-ubyte"
}
mkdir fm
idx_slice train train 256
idx_slice t10k t10k 60
make_shapes 128 30

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for f in "$root"/examples/*.nn; do
	m=$(basename "$f" .nn)
	if [ "$m" = unet_tiny ]; then
		data="--data shapes/train-x.npy,shapes/train-y.npy --test shapes/test-x.npy,shapes/test-y.npy"
	else
		data="--data fm"
	fi
	if ! "$nnc" "$f" -o "$m.c" --main 2>err ||
		! cc -std=c99 -O1 -g1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
			-I"$root/runtime" "$m.c" "$lib" -lz -lm -o "$m" 2>err; then
		bad "$m: does not build: $(head -5 err)"
		continue
	fi
	# shellcheck disable=SC2086
	./"$m" $data --steps 3 --batch 8 --save "$m.safetensors" --checkpoint "$m.ckpt" >out 2>err
	rc=$?
	if [ $rc -ne 0 ]; then
		bad "$m: exit status $rc: $(grep -m 3 -E 'ERROR|runtime error|error' err || head -3 err)"
	elif grep -q -E 'Sanitizer|runtime error' err; then
		bad "$m: sanitizer report: $(grep -m 3 -E 'Sanitizer|runtime error' err)"
	elif ! grep -q '^trained 3 steps' out || [ ! -s "$m.safetensors" ]; then
		bad "$m: did not train 3 steps and save: $(tail -2 out)"
	else
		ok "$m: 3 steps, evaluation and save under ASan+UBSan, no report"
	fi
done

echo "asan_examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
