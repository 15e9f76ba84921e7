#!/bin/sh
# Golden tests: every tests/golden/NAME.nn with
#   NAME.err  - `nnc check NAME.nn` must exit 1 and print exactly this on stderr
#   NAME.ir   - `nnc NAME.nn --emit=ir` must exit 0 and print exactly this
#   NAME.out  - `nnc check NAME.nn` must exit 0 and print exactly this
# Run from the folder itself, so messages name the file as NAME.nn.
# UPDATE=1 rewrites the expected files from what nnc prints (review the diff!).
set -u
nnc=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$(dirname "$0")" || exit 1
pass=0 fail=0
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

check() { # name kind expected-rc args...
	name=$1 kind=$2 want=$3
	shift 3
	timeout 10 "$nnc" "$@" >"$tmp/out" 2>"$tmp/err"
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
	[ -f "$name.err" ] && check "$name" err 1 check "$f"
	[ -f "$name.ir" ] && check "$name" ir 0 "$f" --emit=ir
	[ -f "$name.out" ] && check "$name" out 0 check "$f"
done
echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
