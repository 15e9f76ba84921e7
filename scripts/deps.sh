#!/bin/sh
# Installs the Debian packages nnc needs, when they are missing. Quiet and
# quick when everything is there; clear about what to do when it cannot
# install (not root and no sudo, or no apt-get).
set -u
PKGS="flex bison make gcc llvm-14-dev libcmocka-dev zlib1g-dev python3-torch python3-numpy dataset-fashion-mnist"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "nnc: installing missing Debian packages:$missing"
if ! command -v apt-get >/dev/null 2>&1; then
	echo "nnc: error: apt-get is not available on this machine." >&2
	echo "hint: install these packages with your system's package manager:$missing" >&2
	exit 1
fi
if [ "$(id -u)" = 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO="sudo -n"
else
	echo "nnc: error: installing packages needs root, and sudo is not available without a password." >&2
	echo "hint: run as root:  apt-get update && apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || { echo "nnc: error: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null || {
	echo "nnc: error: apt-get install failed for:$missing" >&2
	echo "hint: run it yourself to see why:  apt-get install$missing" >&2
	exit 1
}
echo "nnc: installed:$missing"
