#!/usr/bin/env bash
# Checks the release artefacts `make dist` puts in dist/: each is a static executable
# (ldd: "not a dynamic executable") and runs (--version, or -v for the shim).
#   bash scripts/check-dist.sh [DIST_DIR]     (default: dist/ of the checkout)
# Exit status 1 if one fails; missing urunc, urunc-pack or urunit is a failure, a
# missing shim only a note (it is included when its crate builds).
set -uo pipefail
DIST=${1:-$(cd "$(dirname "$0")/.." && pwd)/dist}
ARCH=$(uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
fail=0
check() { # FILE FLAG REQUIRED
	local f=$DIST/$1 out
	if [[ ! -f $f ]]; then
		if [[ $3 == required ]]; then
			echo "FAIL $1: missing (run make dist)"
			fail=1
		else
			echo "note $1: missing (not built)"
		fi
		return
	fi
	out=$(ldd "$f" 2>&1)
	if ! grep -qE 'not a dynamic executable|statically linked' <<<"$out"; then
		echo "FAIL $1: not static: $out"
		fail=1
		return
	fi
	if ! out=$("$f" "$2" 2>&1); then
		echo "FAIL $1 $2: $out"
		fail=1
		return
	fi
	echo "ok   $1: static, $2: $(head -n1 <<<"$out")"
}
check "urunc_static_$ARCH" --version required
check "urunc-pack_static_$ARCH" --help required
check "urunit_static_$ARCH" --version required
check "urunc-deploy_static_$ARCH" --version required
check "containerd-shim-urunc-v2_$ARCH" -v optional
exit $fail
