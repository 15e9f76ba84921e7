#!/bin/sh
# Checkpoints as a user meets them: training killed with SIGKILL in the middle
# of its second epoch, resumed with --resume, ends with exactly the weights of
# a run that was never interrupted; Ctrl-C (SIGINT) finishes the step, saves a
# checkpoint and says how to resume, and resuming from it also ends exactly
# there; a loss that turns NaN stops training with exit status 1, naming the
# step, and leaves the last good checkpoint intact; a checkpoint of another
# model is refused. Uses the MLP through the emitted C on Fashion-MNIST.
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
"$nnc" "$root/examples/mlp.nn" -o mlp.c --main || exit 1
cc -O2 -I"$root/runtime" mlp.c "$lib" -lz -lm -o mlp || exit 1
# 3 epochs of 300 batches of 100 samples (the first 30000 training images):
# long enough that a kill right after epoch 1's checkpoint lands inside epoch 2
python3 - <<'PY' || exit 1
import gzip, struct
src = "/usr/share/datasets/fashion-mnist/"
with gzip.open(src + "train-images-idx3-ubyte.gz") as f: img = f.read(16 + 784 * 30000)
with gzip.open(src + "train-labels-idx1-ubyte.gz") as f: lab = f.read(8 + 30000)
open("small-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, 30000, 28, 28) + img[16:])
open("small-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, 30000) + lab[8:])
PY
flags="--data small-images-idx3-ubyte --epochs 3 --batch 100 --quiet"

./mlp $flags --save whole.st --checkpoint whole.ckpt >/dev/null || bad "uninterrupted run failed"

# SIGKILL during epoch 2: wait for epoch 1's checkpoint, then a little more
./mlp $flags --save killed.st --checkpoint killed.ckpt >/dev/null 2>&1 &
pid=$!
i=0
while [ ! -s killed.ckpt ] && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
epoch=$(/usr/bin/python3 -c "
import json, struct, sys
raw = open('killed.ckpt', 'rb').read(); n = struct.unpack('<Q', raw[:8])[0]
print(json.loads(raw[8:8 + n])['__metadata__']['epoch'])")
if [ -s killed.st ] || [ "$epoch" != 1 ]; then
	bad "the kill did not land in epoch 2 (checkpoint at epoch ${epoch:-?}); the test proves nothing"
fi
./mlp $flags --save killed.st --checkpoint killed.ckpt --resume killed.ckpt >/dev/null 2>err ||
	bad "resume after SIGKILL failed: $(head -3 err)"
cmp -s whole.st killed.st && ok "killed with SIGKILL and resumed: the same weights, byte for byte" ||
	bad "resumed weights differ from the uninterrupted run"

# SIGINT: finishes the step, checkpoints mid-epoch, says how to resume
./mlp $flags --save int.st --checkpoint int.ckpt >/dev/null 2>interrupt.txt &
pid=$!
i=0
while [ ! -s int.ckpt ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
if [ $rc -eq 130 ] && grep -q "resume with:.*--resume int.ckpt" interrupt.txt; then
	ok "Ctrl-C saves a checkpoint and prints the resume command"
	./mlp $flags --save int.st --checkpoint int.ckpt --resume int.ckpt >/dev/null 2>err
	cmp -s whole.st int.st && ok "resumed after Ctrl-C mid-epoch: the same weights" || bad "weights differ after Ctrl-C resume"
elif [ $rc -eq 0 ]; then
	echo "note: the run finished before SIGINT arrived; not checked"
else
	bad "Ctrl-C: status $rc, $(cat interrupt.txt)"
fi

# NaN: the checkpoint of the last good epoch stays as it was
cp whole.ckpt good.ckpt
sum=$(cksum < good.ckpt)
./mlp --data small-images-idx3-ubyte --epochs 4 --batch 100 --quiet --lr 1e30 --resume good.ckpt --checkpoint good.ckpt >out 2>err
rc=$?
if [ $rc -eq 1 ] && grep -q "the loss became .* at step" err && [ "$(cksum < good.ckpt)" = "$sum" ]; then
	ok "a NaN loss stops training at its step, checkpoint intact"
else
	bad "NaN: status $rc, $(head -3 err)"
fi

# a checkpoint of another model
"$nnc" "$root/examples/mlp.nn" -o other.c --main --prefix other 2>/dev/null
sed 's/model mlp/model other/' "$root/examples/mlp.nn" > other.nn
"$nnc" other.nn -o other.c --main && cc -O1 -I"$root/runtime" other.c "$lib" -lz -lm -o other
./other $flags --resume whole.ckpt >out 2>err
rc=$?
[ $rc -eq 1 ] && grep -q "checkpoint of model 'mlp', not of 'other'" err && ok "a checkpoint of another model is refused" ||
	bad "other model's checkpoint: status $rc, $(cat err)"
ls *.tmp* 2>/dev/null && bad "temporary files left behind" || ok "no temporary files left"
echo "resume: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
