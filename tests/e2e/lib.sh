# tests/e2e/lib.sh: sourced by the end-to-end scripts (after they resolve their
# arguments: the directory changes here). Sets root (the repository), makes a
# scratch directory, removed on exit, the current one, and defines the ok/bad
# counters each script reports at its end.
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
pass=0 fail=0
ok() { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
fashion=/usr/share/datasets/fashion-mnist

# fails_with WHAT PATTERN COMMAND...: COMMAND exits with status 1 and says PATTERN on stderr
fails_with() {
	what=$1 pattern=$2
	shift 2
	"$@" >out 2>err
	rc=$?
	if [ $rc -eq 1 ] && grep -q -e "$pattern" err; then ok "$what"; else bad "$what: status $rc, $(head -3 err)"; fi
}

# make_shapes TRAIN TEST [GENERATOR FLAGS]: unet_tiny's synthetic data in ./shapes,
# from the project's generator (examples/shapes.c)
make_shapes() {
	n=$1 t=$2
	shift 2
	cc -std=c99 -O2 "$root/examples/shapes.c" -o gen-shapes && ./gen-shapes --out shapes --train "$n" --test "$t" "$@" >/dev/null ||
		bad "cannot make the shapes data"
}

# the training flags of an example for a few steps: a data file rather than a
# folder, so that no test set is evaluated (needs make_shapes for unet_tiny)
data_args() {
	case $1 in
	unet_tiny) echo "--data shapes/train-x.npy,shapes/train-y.npy --test shapes/test-x.npy,shapes/test-y.npy --batch 16" ;;
	*) echo "--data $fashion/train-images-idx3-ubyte.gz --batch 32" ;;
	esac
}
