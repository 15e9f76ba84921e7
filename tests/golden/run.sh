#!/bin/sh
# Golden tests: every tests/golden/NAME.nn with
#   NAME.err  - `nnc check NAME.nn` must exit 1 and print exactly this on stderr
#   NAME.ir   - `nnc NAME.nn --emit=ir --inference` must exit 0 and print exactly this
#   NAME.sum  - `nnc check NAME.nn` must exit 0 and print exactly this summary
#   NAME.gen  - a shell script that prints a NAME.nn too big to commit (a 1 MB
#               line, 100,000 brackets); it is written to a temporary folder and
#               checked there against NAME.err or NAME.sum, as above
#   NAME.flags - flags for `nnc check` in the tests of NAME (-fbottleneck=4)
# Run from the folder itself, so messages name the file as NAME.nn.
# UPDATE=1 rewrites the expected files from what nnc prints (review the diff!).
set -u
nnc=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$(dirname "$0")" || exit 1
pass=0 fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

check() { # name kind expected-rc args...   (run in $rundir, default here)
	name=$1 kind=$2 want=$3
	shift 3
	(cd "${rundir:-.}" && exec timeout 10 "$nnc" "$@") >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$kind" = err ]; then got=$tmp/err; else got=$tmp/out; fi
	if [ "${UPDATE:-0}" = 1 ]; then cp "$got" "$name.$kind"; fi
	if [ "$rc" -ne "$want" ]; then
		echo "FAIL $name.$kind: exit status $rc, expected $want"
		cat "$tmp/err" | head -20
		fail=$((fail + 1))
	elif ! cmp -s "$got" "$name.$kind"; then
		echo "FAIL $name.$kind: output differs"
		diff -u "$name.$kind" "$got" | head -40
		fail=$((fail + 1))
	else
		pass=$((pass + 1))
	fi
}

for f in *.nn; do
	name=${f%.nn}
	flags=$(cat "$name.flags" 2>/dev/null)
	# shellcheck disable=SC2086 # the flags split into words
	[ -f "$name.err" ] && check "$name" err 1 check $flags "$f"
	[ -f "$name.ir" ] && check "$name" ir 0 "$f" --emit=ir --inference $flags
	[ -f "$name.sum" ] && check "$name" sum 0 check $flags "$f"
done

mkdir "$tmp/gen" || exit 1
for g in *.gen; do
	[ -f "$g" ] || continue
	name=${g%.gen}
	if ! sh "$g" >"$tmp/gen/$name.nn"; then
		echo "FAIL $g: the generator failed"
		fail=$((fail + 1))
		continue
	fi
	rundir=$tmp/gen
	[ -f "$name.err" ] && check "$name" err 1 check "$name.nn"
	[ -f "$name.sum" ] && check "$name" sum 0 check "$name.nn"
	rundir=
	rm -f "$tmp/gen/$name.nn"
done
echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
