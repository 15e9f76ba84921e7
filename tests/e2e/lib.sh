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
