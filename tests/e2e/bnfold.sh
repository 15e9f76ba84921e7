#!/bin/sh
# Inference rewrites (docs/passes.md): batchnorm folding (pass bnfold) and
# --embed-weights. For resnet_mini, unet_tiny and small models with dense,
# conv2d without bias, conv_transpose2d and two batchnorms in a row, from one
# weights file with running statistics far from init's:
#  - -O2 (folded at load time) and --disable-pass=bnfold agree within 1e-5 of
#    the output's scale, and so does the --embed-weights program (folded at
#    compile time, no weights file); init followed by load must refold;
#  - the folded and the embedded C compile warning-free under gcc and clang
#    with -std=c99 -Wall -Wextra -Wpedantic -Werror; embedding is
#    byte-identical between runs;
#  - --emit=loops: forward reads no running statistics and has one kernel
#    fewer per folded batchnorm;
#  - a missing, truncated, mismatched or non-finite weights file is an error
#    naming the file, exit status 1, and no output written.
set -u
nnc=$(realpath "$1")
lib=$(realpath "$2")
. "$(dirname "$0")/lib.sh"
py=/usr/bin/python3

cat > densebn.nn <<'NN'
model densebn {
    input x: [24]
    a = x -> dense(32) -> batchnorm -> relu
    b = a -> dense(16, bias=false) -> batchnorm -> batchnorm(eps=0.01) -> tanh
    o = b -> dense(5)
    output o
}
NN
cat > convbn.nn <<'NN'
model convbn {
    input x: [3, 8, 8]
    a = x -> conv2d(6, kernel=3, pad=1, bias=false) -> batchnorm -> relu
    b = a -> conv2d(8, kernel=3, stride=2, pad=1, groups=2) -> batchnorm -> relu
    c = b -> conv_transpose2d(5, kernel=2, stride=2) -> batchnorm -> relu
    d = c -> conv_transpose2d(4, kernel=3, pad=1, bias=false) -> batchnorm
    o = d -> flatten -> dense(3)
    output o
}
NN

# out[i] of three models on the same random batch: fo (folded, loaded), un
# (unfolded, loaded), em (embedded); prints the largest differences of fo
# and em from un relative to un's largest magnitude
cat > drive.c <<'C'
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "fo.h"
#include "un.h"
#include "em.h"
enum { N = 5 };
int main(int argc, char **argv)
{
	(void)argc;
	fo_ctx a;
	un_ctx b;
	em_ctx c;
	NnrtError err;
	void *ma = aligned_alloc(64, fo_arena_size(N)), *mb = aligned_alloc(64, un_arena_size(N));
	void *mc = aligned_alloc(64, em_arena_size(N) + 64);
	fo_init(&a, ma, N, 7);	/* init folds its own weights: load must fold again */
	un_init(&b, mb, N, 7);
	em_init(&c, mc, N, 7);
	if (fo_load(&a, argv[1], &err) || un_load(&b, argv[1], &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 2;
	}
	static float x[N * FO_IN_ELEMS], oa[N * FO_OUT_ELEMS], ob[N * FO_OUT_ELEMS], oc[N * FO_OUT_ELEMS];
	unsigned s = 12345;
	for (int i = 0; i < N * FO_IN_ELEMS; i++) {
		s = s * 1103515245u + 12345u;
		x[i] = (float)((s >> 8) & 0xffff) / 32768.0f - 1.0f;
	}
	fo_forward(&a, N, x, oa);
	un_forward(&b, N, x, ob);
	em_forward(&c, N, x, oc);
	double scale = 0, dfo = 0, dem = 0;
	for (int i = 0; i < N * FO_OUT_ELEMS; i++)
		scale = fmax(scale, fabs(ob[i]));
	for (int i = 0; i < N * FO_OUT_ELEMS; i++) {
		dfo = fmax(dfo, fabs(oa[i] - ob[i]) / scale);
		dem = fmax(dem, fabs(oc[i] - ob[i]) / scale);
	}
	printf("%.3g %.3g %.3g\n", dfo, dem, scale);
	free(ma);
	free(mb);
	free(mc);
	return !(dfo <= 1e-5 && dem <= 1e-5 && scale > 0);
}
C

strict="-std=c99 -Wall -Wextra -Wpedantic -Werror"
for m in "$root/examples/resnet_mini.nn" "$root/examples/unet_tiny.nn" "$tmp/densebn.nn" "$tmp/convbn.nn"; do
	name=$(basename "$m" .nn)
	mkdir "$name" && cd "$name" || exit 1
	"$nnc" check "$m" --params | $py "$root/tests/e2e/random_weights.py" w.safetensors 3
	if "$nnc" "$m" -o fo.c --inference --prefix fo 2>err && "$nnc" "$m" -o un.c --inference --prefix un --disable-pass=bnfold 2>>err &&
		"$nnc" "$m" -o em.c --inference --prefix em --embed-weights w.safetensors 2>>err &&
		cc -std=c11 -O1 -I. -I"$root/runtime" ../drive.c fo.c un.c em.c "$lib" -lz -lm -pthread -o drive 2>>err; then
		if ./drive w.safetensors >out 2>>err; then
			ok "$name: folded, unfolded and embedded agree (max difference / scale: $(cut -d' ' -f1-2 out))"
		else
			bad "$name: outputs differ: $(cat out err | head -3)"
		fi
	else
		bad "$name: cannot build: $(head -5 err)"
	fi
	for cc in gcc clang; do
		command -v $cc >/dev/null || continue
		$cc $strict -I"$root/runtime" -c fo.c -o fo.o 2>err && $cc $strict -I"$root/runtime" -c em.c -o em.o 2>>err &&
			ok "$name: $cc compiles the folded and the embedded C warning-free" || bad "$name: $cc: $(head -5 err)"
	done
	"$nnc" "$m" -o em2.c --inference --prefix em --embed-weights w.safetensors 2>/dev/null
	sed 's/em2\.h/em.h/' em2.c | cmp -s em.c - && sed 's/em2\.h/em.h/' em2.h | cmp -s em.h - && ok "$name: embedding twice gives the same bytes" ||
		bad "$name: embedded C differs between runs"
	grep -q "needs no weights file" em.h && ! grep -q "int em_load(" em.h && ok "$name: the embedded header says it needs no weights file" ||
		bad "$name: em.h does not say the weights are compiled in"
	cd .. || exit 1
done

# --emit=loops: the running statistics' buffers are not read by forward
# (their batchnorm kernels are gone), and forward has 10 kernels fewer
loops() { "$nnc" "$root/examples/resnet_mini.nn" --emit=loops --inference "$@"; }
stats=$(loops | grep "running_var" | cut -d: -f1 | tr '\n' ' ')
fwd=$(loops | sed -n '/^fn forward/,/^}/p')
hit=0
for b in $stats; do echo "$fwd" | grep -q "$b\[" && hit=1; done
[ -n "$stats" ] && [ $hit -eq 0 ] && ok "--emit=loops: forward reads no running_var after folding" ||
	bad "--emit=loops: forward still reads running statistics"
k1=$(loops | sed -n 's/^fn forward (\([0-9]*\) kernels.*/\1/p')
k0=$(loops --disable-pass=bnfold | sed -n 's/^fn forward (\([0-9]*\) kernels.*/\1/p')
[ "$k0" -eq $((k1 + 10)) ] && ok "resnet_mini forward: $k0 kernels unfolded, $k1 folded" || bad "forward kernels $k0 -> $k1"
"$nnc" check "$root/examples/resnet_mini.nn" --inference --stats | grep -q "bnfold  *10, 0" &&
	ok "check --stats counts 10 folds" || bad "check --stats: $("$nnc" check "$root/examples/resnet_mini.nn" --inference --stats | grep bnfold)"

# bad weights files: exit 1, a message naming the file, no output
m=$root/examples/resnet_mini.nn
cp resnet_mini/w.safetensors good.safetensors
expect_error() { # what pattern file
	"$nnc" "$m" -o bad.c --inference --embed-weights "$3" >out 2>err
	rc=$?
	if [ $rc -eq 1 ] && grep -q -e "$2" err && [ ! -e bad.c ] && [ ! -e bad.h ]; then ok "$1"; else
		bad "$1: status $rc, $(head -3 err)"; fi
}
expect_error "missing weights file" "missing.safetensors: cannot open" missing.safetensors
head -c 20000 good.safetensors > trunc.safetensors
expect_error "truncated weights file" "trunc.safetensors" trunc.safetensors
"$nnc" check "$root/examples/lenet.nn" --params | $py "$root/tests/e2e/random_weights.py" other.safetensors
expect_error "another model's weights" "other.safetensors: the file lacks" other.safetensors
"$nnc" check "$m" --params | sed 's/^conv1.weight \[32, 1, 3, 3\]/conv1.weight [32, 1, 3, 2]/' |
	$py "$root/tests/e2e/random_weights.py" shape.safetensors
expect_error "wrong tensor shape" "shape.safetensors: conv1.weight has shape \[32, 1, 3, 2\]" shape.safetensors
$py - good.safetensors nan.safetensors <<'PY'
import json, struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
at = 8 + n + h["bn1.running_var"]["data_offsets"][0]
data[at:at + 4] = struct.pack("<f", -2.0)  # a negative variance: its folded scale is NaN
open(sys.argv[2], "wb").write(data)
PY
expect_error "negative running_var" "nan.safetensors: the folded weights" nan.safetensors
"$nnc" "$m" -o bad.c --embed-weights good.safetensors >out 2>err
[ $? -eq 1 ] && grep -q "goes with --inference" err && ok "--embed-weights without --inference" || bad "--embed-weights without --inference: $(cat err)"

echo "bnfold: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
