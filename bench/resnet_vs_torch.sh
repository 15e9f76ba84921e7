#!/bin/sh
# resnet_mini (examples/resnet_mini.nn) trained for one epoch on Fashion-MNIST
# with adam lr=1e-3, batch 64, through nnc's emitted C and through PyTorch 1.13
# on one thread (torch.set_num_threads(1), OPENBLAS_NUM_THREADS=1) with the
# same architecture (tests/torch/param_counts.py's ResNetMini, whose names and
# shapes param_counts.py checks against nnc) and the same data, scaled by
# 1/255 as torchvision's ToTensor. Prints each run's test accuracy and time,
# the mean of each side and the difference of the means. The issue's bar:
# the two within 1.5 points.
#
# One epoch leaves resnet_mini far from converged, and its test accuracy then
# depends on the initial weights and the data order by many points (PyTorch
# alone, seeds 1 to 6: 73.9%, 78.5%, 78.8%, 70.7%, 64.1%, 80.1%). So by default
# the runs are paired: for each seed PyTorch draws the initial weights, nnc
# starts from them (--init, as safetensors), and both sides take the batches
# in file order (--no-shuffle), so what differs is the implementation alone.
# OWN_INIT=1 lets each side initialize and shuffle with its own generator
# instead (the same distributions), as a user would run them.
# SEEDS (default "1 2") names the seeds, one run per side each.
# SIDE_BY_SIDE=1 runs the two sides at once, one thread each (both cores busy;
# the accuracies do not depend on it, the times do).
#
# Measured (2 cores, Nov 2026), paired, seeds 1 and 2: nnc 75.19% and 79.15%
# (236 s per epoch), PyTorch float32 71.91% and 77.50% (150 s, 1 thread):
# +2.47 points on the mean, outside the bar. For scale, PyTorch float64 from
# the same init and order (not run here) reaches 75.99% and 77.20%: PyTorch
# float32 and float64 differ by -4.1 and +0.3 points, more than the bar, so
# after one epoch rounding alone moves this figure by several points, and
# only a mean over many seeds can resolve 1.5.
#
# Measured again after the fusion and threading work (28 Nov 2026, SIDE_BY_SIDE=1,
# seeds 1-6, nnc's C at 1 thread ~110 s per epoch): nnc 74.25 78.10 71.44
# 74.85 80.27 77.38 (mean 76.05%), PyTorch 71.91 77.50 75.86 77.41 71.63 79.73
# (mean 75.67%): +0.38 points, within the bar. The per-seed differences
# (+2.3 +0.6 -4.4 -2.6 +8.6 -2.4) spread over 13 points: the mean's standard
# error is about 1.8 points, so this says the two agree within the noise of
# six seeds, no more.
#
# Not a test: it takes minutes per run and the machine is shared. The exit
# status is 1 when the means differ by more than the bar.
#
# usage: sh bench/resnet_vs_torch.sh [path/to/nnc] [path/to/libnnrt.a]
#        (defaults: ./nnc and runtime/libnnrt.a; CFLAGS for cc, default -O2 -march=native)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
nnc=$(realpath "${1:-$root/nnc}")
lib=$(realpath "${2:-$root/runtime/libnnrt.a}")
seeds=${SEEDS:-1 2}
both=${SIDE_BY_SIDE:-0}
own=${OWN_INIT:-0}
data=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1

"$nnc" "$root/examples/resnet_mini.nn" -o "$tmp/resnet.c" --main
cc -std=c99 ${CFLAGS:--O2 -march=native} -I"$root/runtime" "$tmp/resnet.c" "$lib" -lz -lm -o "$tmp/resnet"

# PyTorch: trains one epoch per seed; in paired mode it first writes the initial weights init-SEED.safetensors
cat > "$tmp/torch_side.py" <<'PY'
import gzip, json, os, struct, sys, time
import numpy as np
import torch
import torch.nn.functional as F
root, data, out, own = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
sys.path.insert(0, os.path.join(root, "tests", "torch"))
from param_counts import ResNetMini
from parity import write_safetensors

def idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)

def model_for(seed):
    torch.manual_seed(seed)
    return ResNetMini()

def state(m):
    return {k: v for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}

torch.set_num_threads(1)
if sys.argv[5] == "init":
    for seed in map(int, sys.argv[6:]):
        write_safetensors(os.path.join(out, f"init-{seed}.safetensors"), state(model_for(seed)))
    sys.exit(0)
xtr = torch.from_numpy(idx(f"{data}/train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
ytr = torch.from_numpy(idx(f"{data}/train-labels-idx1-ubyte.gz", 8).astype(np.int64))
xte = torch.from_numpy(idx(f"{data}/t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255)
yte = torch.from_numpy(idx(f"{data}/t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
for seed in map(int, sys.argv[6:]):
    model = model_for(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.time()
    model.train()
    order = torch.randperm(len(xtr)) if own else torch.arange(len(xtr))
    for at in range(0, len(xtr), 64):
        i = order[at:at + 64]
        opt.zero_grad()
        F.cross_entropy(model(xtr[i]), ytr[i]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        right = sum((model(xte[a:a + 1000]).argmax(1) == yte[a:a + 1000]).sum().item()
                    for a in range(0, len(xte), 1000))
    print(f"torch seed {seed}: {100 * right / len(xte):.2f} {time.time() - start:.0f}", flush=True)
PY
# shellcheck disable=SC2086
[ "$own" = 1 ] || /usr/bin/python3 "$tmp/torch_side.py" "$root" "$data" "$tmp" "$own" init $seeds

: > "$tmp/nnc.acc"
threads=
if [ "$both" = 1 ]; then
	threads="--threads 1"
	# shellcheck disable=SC2086
	/usr/bin/python3 "$tmp/torch_side.py" "$root" "$data" "$tmp" "$own" train $seeds > "$tmp/torch.acc" &
fi
for s in $seeds; do
	echo "nnc: resnet_mini, 1 epoch, seed $s (emitted C)..."
	if [ "$own" = 1 ]; then how="--seed $s"; else how="--init $tmp/init-$s.safetensors --no-shuffle"; fi
	t0=$(date +%s)
	# shellcheck disable=SC2086
	"$tmp/resnet" --data "$data" --epochs 1 --batch 64 --lr 0.001 $how $threads --checkpoint "$tmp/ckpt" | tee "$tmp/nnc.log"
	t1=$(date +%s)
	acc=$(sed -n 's/^test: .*accuracy \([0-9.]*\)%.*/\1/p' "$tmp/nnc.log")
	echo "nnc seed $s: ${acc:-0} $((t1 - t0))" >> "$tmp/nnc.acc"
done

if [ "$both" = 1 ]; then
	wait
	cat "$tmp/torch.acc"
else
	echo "PyTorch: the same model, 1 epoch per seed (1 thread)..."
	# shellcheck disable=SC2086
	/usr/bin/python3 "$tmp/torch_side.py" "$root" "$data" "$tmp" "$own" train $seeds | tee "$tmp/torch.acc"
fi

echo
echo "resnet_mini, 1 epoch of Fashion-MNIST, adam lr=1e-3, batch 64," \
	"$([ "$own" = 1 ] && echo "each side's own init and order" || echo "same init and order per seed"):"
cat "$tmp/nnc.acc" "$tmp/torch.acc" | awk '
	{ sub(":", "", $3); acc[$1] += $4; n[$1]++; printf "  %-5s seed %-3s %6.2f%% test accuracy  %4d s\n", $1, $3, $4, $5 }
	END {
		a = n["nnc"] ? acc["nnc"] / n["nnc"] : 0; b = n["torch"] ? acc["torch"] / n["torch"] : 0
		d = a - b; m = d < 0 ? -d : d
		printf "  mean: nnc %.2f%%, PyTorch %.2f%% (%d seeds)\n", a, b, n["nnc"]
		printf "  difference: %+.2f points (bar: within 1.5): %s\n", d, m <= 1.5 ? "ok" : "OUTSIDE THE BAR"
		exit m > 1.5 }'
