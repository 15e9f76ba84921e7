#!/bin/sh
# nnc train, eval and predict as a user types them (JIT backend unless said):
# results, the C backend, --optimizer, and the errors for bad flags, missing
# paths and wrong files (exit status 1, a message naming the problem).
set -u
nnc=$(realpath "$1")
. "$(dirname "$0")/lib.sh"
mlp="$root/examples/mlp.nn"
fm=/usr/share/datasets/fashion-mnist

"$nnc" train "$mlp" --steps 200 --save w.st --checkpoint w.ckpt --log log.csv --quiet >out 2>err &&
	grep -q "^test: loss .* accuracy" out && [ -s w.st ] && [ -s w.ckpt ] && [ "$(wc -l < log.csv)" -eq 2 ] &&
	ok "nnc train: test accuracy, weights, checkpoint and log" || bad "nnc train: $(cat out err | head -5)"

"$nnc" eval "$mlp" --weights w.st --data "$fm" >out 2>err
acc=$(sed -n 's/.*accuracy \([0-9.]*\)%.*/\1/p' out)
[ -n "$acc" ] && awk "BEGIN { exit !($acc > 70) }" && [ "$(grep -c '^ *[0-9]' out)" -ge 10 ] &&
	ok "nnc eval: accuracy $acc% and a 10x10 confusion matrix" || bad "nnc eval: $(cat out err | head -5)"

/usr/bin/python3 -c "
import gzip, numpy as np
raw = gzip.open('$fm/t10k-images-idx3-ubyte.gz').read()[16:16 + 784 * 7]
np.save('x.npy', np.frombuffer(raw, dtype=np.uint8).reshape(7, 784))"
"$nnc" predict "$mlp" --weights w.st --input x.npy --top 3 >out 2>err &&
	[ "$(wc -l < out)" -eq 8 ] && head -1 out | grep -q "^sample,class1,score1,class2,score2,class3,score3$" &&
	ok "nnc predict --top 3: a header and 7 rows" || bad "nnc predict: $(cat out err | head -5)"
"$nnc" predict "$mlp" --weights w.st --input x.npy --output p.csv >out 2>err &&
	[ "$(head -1 p.csv | tr ',' '\n' | wc -l)" -eq 11 ] && [ "$(wc -l < p.csv)" -eq 8 ] &&
	ok "nnc predict --output: every output, written to a file" || bad "predict --output: $(cat err)"
# the predicted class agrees with eval's argmax: the first image of t10k is class 9 (ankle boot)
sed -n 2p p.csv | /usr/bin/python3 -c "
import sys; v = [float(x) for x in sys.stdin.read().split(',')[1:]]; sys.exit(v.index(max(v)) != 9)" &&
	ok "predict: the first test image is an ankle boot (class 9)" || bad "predict: wrong class for test image 0"

# the same 20 steps through the JIT and through the C backend
"$nnc" train "$mlp" --steps 20 --no-shuffle --save jit.st --checkpoint j.ckpt --quiet >/dev/null 2>err &&
	"$nnc" train "$mlp" --backend c --steps 20 --no-shuffle --save c.st --checkpoint c.ckpt --quiet >/dev/null 2>>err &&
	/usr/bin/python3 "$root/tests/e2e/compare_weights.py" jit.st c.st 1e-5 >cmp 2>&1 &&
	ok "--backend c and the JIT agree after 20 steps" || bad "--backend c: $(cat err cmp | head -5)"

"$nnc" train "$mlp" --steps 20 --optimizer "sgd(lr=0.05, momentum=0.9)" --save o.st --quiet >/dev/null 2>err &&
	ok "--optimizer replaces the train section's" || bad "--optimizer: $(cat err)"

# --bench times steps after a warm-up and writes nothing: no test pass, checkpoint or weights
"$nnc" train "$mlp" --bench --steps 20 --threads 1 --save b.st --checkpoint b.ckpt >out 2>err &&
	grep -q "^bench: 20 steps of batch 64 after 2 warm-up, threads 1: [0-9.]* samples/s" out &&
	! grep -q "^test:" out && [ ! -e b.st ] && [ ! -e b.ckpt ] &&
	ok "--bench: samples/s after 2 warm-up steps, nothing evaluated or written" || bad "--bench: $(cat out err | head -5)"

expect_error() { # what pattern args...
	w=$1 p=$2
	shift 2
	fails_with "$w" "$p" "$nnc" "$@"
}
expect_error "a misspelled optimizer argument" "did you mean 'momentum'" train "$mlp" --optimizer "sgd(lr=0.1, momentm=0.9)"
expect_error "an unknown flag" "unknown option '--epoch'" train "$mlp" --epoch 3
expect_error "a bad number" "--batch takes a whole number" train "$mlp" --batch -4
expect_error "a missing data path" "nowhere" train "$mlp" --data /nowhere
expect_error "weights of another model" "lacks 4 tensors the model needs" eval "$root/examples/lenet.nn" --weights w.st
expect_error "eval without weights" "eval needs --weights" eval "$mlp"
expect_error "predict on a missing file" "missing.npy" predict "$mlp" --weights w.st --input missing.npy
expect_error "an unknown backend" "unknown backend" train "$mlp" --backend gpu
expect_error "a missing model file" "cannot read" train missing.nn
expect_error "resume from plain weights" "not an nnc checkpoint" train "$mlp" --resume w.st
# the memory plan's budget: lenet's training arena is megabytes, far over 1K
expect_error "--mem-budget under the planned arena" "the planned arena needs [0-9]* bytes at batch 64, more than the memory budget of 1024 bytes" \
	"$root/examples/lenet.nn" -o lenet.c --mem-budget 1K
[ ! -e lenet.c ] && ok "--mem-budget: no code written over budget" || bad "--mem-budget: lenet.c written over budget"
ls ./*.tmp* 2>/dev/null && bad "temporary files left" || ok "no temporary files left"
echo "commands: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
