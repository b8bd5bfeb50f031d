#!/usr/bin/env bash
# End-to-end check of the dom0 path: build (cached), then one QEMU boot that
# runs four hand-made mini guests (poweroff, crash, fault, hang) and checks
# every per-guest result and the verdict byte. About 20 s when the cache is warm.
#
#   scripts/dom0/selftest.sh [cache-dir] [out-dir] [xen-version]
#       xen-version  4.17 (default) or 4.20: see build.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${FAULTLINE_CACHE:-$HOME/.cache/faultline}}
out=${2:-target/dom0}
"$here/build.sh" "$cache" "$out" "${3:-4.17}"
work=$out/selftest
mkdir -p "$work"
for m in poweroff crash fault hang; do "$here/mini-guest.sh" "$work/$m" "$m"; done
"$here/payload.sh" -b "$out/dom0-base.cpio.gz" -o "$work/run.img" --console log \
	"$work/poweroff" "$work/crash" "$work/fault" --timeout 3 "$work/hang"
set +e
DOM0_TIMEOUT=${DOM0_TIMEOUT:-240} "$here/run.sh" "$out" "$work/run.img" >"$work/console.log" 2>&1
rc=$?
set -e
pass=0 fail=0
check() { # check DESCRIPTION COMMAND...
	if "${@:2}"; then pass=$((pass + 1)); echo "ok   $1"; else fail=$((fail + 1)); echo "FAIL $1"; fi
}
guest() { grep -q "^\(\[ *[0-9.]*\] \)\{0,1\}FAULTLINE-DOM0-GUEST $1 [0-9-]* $2" "$work/console.log"; }
check "guest 1 powers off" guest 1 poweroff
check "guest 2 crashes (SHUTDOWN_crash)" guest 2 crash
check "guest 3 crashes (fault, no trap table)" guest 3 crash
check "guest 4 times out" guest 4 timeout
check "verdict 1 (first non-zero: a crash)" test "$rc" = 1
[ "$fail" = 0 ] || echo "console log: $work/console.log"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
