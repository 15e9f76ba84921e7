#!/bin/sh
# -fbottleneck end to end (compiler/passes/bottleneck.c): a small conv net on
# Fashion-MNIST whose second 3x3 convolution (16 -> 16) becomes 16->4->4->16
# at R=4. The rewritten model trains through the JIT (the loss drops), the
# emitted C and the JIT agree step for step, -O0 agrees with -O2, the weights
# carry the new names, and train/eval/predict take the compiler's flags
# (-O, --disable-pass, -fbottleneck) without passing them to the driver.
#
# usage: sh tests/e2e/bottleneck.sh path/to/nnc path/to/libnnrt.a
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
fm=/usr/share/datasets/fashion-mnist

cat >tiny.nn <<EOF
model tiny {
    input  x: [1, 28, 28]
    target y: class(10)
    h = x -> conv2d(16, kernel=3, pad=1) -> relu -> maxpool(2)
    h = h -> conv2d(16, kernel=3, pad=1) -> relu -> maxpool(2)
    logits = h -> flatten -> dense(10)
    output logits
    loss cross_entropy(logits, y)
}
train {
    optimizer = adam(lr=0.003)
    batch  = 32
    epochs = 1
    seed   = 1
    data   = "$fm"
}
EOF

# the test loss after one step and after 60 (the same seed, so the same start)
test_loss() { sed -n 's/^test: loss \([0-9.]*\) .*/\1/p' "$1"; }
"$nnc" train tiny.nn -fbottleneck --steps 1 --save w1.st --quiet >out1 2>err &&
	"$nnc" train tiny.nn -fbottleneck --steps 60 --save w60.st --quiet >out60 2>>err
l1=$(test_loss out1) l60=$(test_loss out60)
[ -n "$l1" ] && [ -n "$l60" ] && awk "BEGIN { exit !($l60 < 1.5 && $l60 < $l1 - 0.5) }" &&
	ok "train -fbottleneck: test loss $l1 after 1 step, $l60 after 60" || bad "train -fbottleneck: $l1 -> $l60 $(head -5 err)"

/usr/bin/python3 -c "
import json, struct, sys
raw = open('w60.st', 'rb').read()
names = set(json.loads(raw[8:8 + struct.unpack('<Q', raw[:8])[0]])) - {'__metadata__'}
want = {'conv1.weight', 'conv1.bias', 'conv2.reduce.weight', 'conv2.conv.weight', 'conv2.expand.weight',
        'conv2.expand.bias', 'dense1.weight', 'dense1.bias'}
sys.exit(names != want and print(sorted(names)) is None)" &&
	ok "the weights file names the rewritten layers (conv2.reduce/conv/expand)" || bad "weights file names"

"$nnc" train tiny.nn -fbottleneck --steps 20 --no-shuffle --save jit.st --quiet >/dev/null 2>err &&
	"$nnc" train tiny.nn -fbottleneck --backend c --steps 20 --no-shuffle --save c.st --quiet >/dev/null 2>>err &&
	/usr/bin/python3 "$root/tests/e2e/compare_weights.py" jit.st c.st 1e-4 >cmp 2>&1 &&
	ok "-fbottleneck: the emitted C and the JIT agree after 20 steps" || bad "C vs JIT: $(cat err cmp | head -5)"

"$nnc" train tiny.nn -fbottleneck -O0 --steps 20 --no-shuffle --save o0.st --quiet >/dev/null 2>err &&
	/usr/bin/python3 "$root/tests/e2e/compare_weights.py" jit.st o0.st 1e-4 >cmp 2>&1 &&
	ok "train -O0 -fbottleneck agrees with -O2 after 20 steps" || bad "-O0 vs -O2: $(cat err cmp | head -5)"

"$nnc" tiny.nn -fbottleneck=4 -o m.c --main 2>err && grep -q "conv2.expand.weight" m.c &&
	cc -std=c99 -O1 -Wall -Wextra -Wpedantic -Werror -I"$root/runtime" m.c "$lib" -lz -lm -pthread -o m 2>>err &&
	./m --steps 3 --quiet >/dev/null 2>>err &&
	ok "-fbottleneck -o m.c --main: compiles warning-free and trains" || bad "-o with -fbottleneck: $(head -5 err)"

"$nnc" eval tiny.nn -fbottleneck -O1 --disable-pass=fuse --weights w60.st >out 2>err &&
	grep -q "accuracy" out && ok "eval -fbottleneck -O1 --disable-pass=fuse" || bad "eval: $(head -5 err)"
"$nnc" eval tiny.nn --weights w60.st >out 2>err
[ $? -eq 1 ] && ok "eval without -fbottleneck refuses the rewritten model's weights" || bad "eval without the flag: $(head -3 err)"

/usr/bin/python3 -c "
import gzip, numpy as np
raw = gzip.open('$fm/t10k-images-idx3-ubyte.gz').read()[16:16 + 784 * 5]
np.save('x.npy', np.frombuffer(raw, dtype=np.uint8).reshape(5, 1, 28, 28))"
"$nnc" predict tiny.nn -fbottleneck --disable-pass cse -O2 --weights w60.st --input x.npy >out 2>err &&
	[ "$(wc -l <out)" -eq 6 ] && ok "predict -fbottleneck --disable-pass cse: 5 rows" || bad "predict: $(head -5 err)"

expect_error() { # what pattern args...
	w=$1 p=$2
	shift 2
	fails_with "$w" "$p" "$nnc" "$@"
}
expect_error "train -fbottleneck=0" "takes a positive whole number, not '0'" train tiny.nn -fbottleneck=0
expect_error "eval -fbottleneck=x" "takes a positive whole number, not 'x'" eval tiny.nn -fbottleneck=x --weights w60.st
expect_error "train --disable-pass with a typo" "did you mean 'fuse'" train tiny.nn --disable-pass=fsue
echo "bottleneck: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
