#!/usr/bin/env bash
# Boot Xen + the faultline dom0 in QEMU (TCG) and report the dom0's verdict.
#
#   scripts/dom0/run.sh <out-dir> <initramfs> [xen args...]
#       out-dir    build.sh's output (reads dom0.env: xen, vmlinux, arguments)
#       initramfs  dom0-base.cpio.gz with a payload appended (payload.sh -b)
# Environment: DOM0_TIMEOUT (default 300 s, whole QEMU run), DOM0_QEMU_MEM (MiB,
# default 384), DOM0_SMP (QEMU CPUs, default 1; more get multi-threaded TCG: at
# least the vCPUs of the largest guest, payload.sh --vcpus), DOM0_STAMP=0 to
# print the serial output without the host-side "[seconds since QEMU start]".
# Exit status: the verdict byte (see scripts/dom0/init), 124 on timeout, 125
# when QEMU ended without a verdict (e.g. Xen rebooted after a dom0 panic).
set -euo pipefail
out=${1:?usage: run.sh <out-dir> <initramfs> [xen args...]}
initrd=${2:?usage: run.sh <out-dir> <initramfs> [xen args...]}
shift 2
[ -r "$out/dom0.env" ] || { echo "dom0/run: $out/dom0.env missing: run scripts/dom0/build.sh" >&2; exit 2; }
. "$out/dom0.env"
command -v qemu-system-x86_64 >/dev/null || { echo "dom0/run: qemu-system-x86_64 missing: apt-get install qemu-system-x86" >&2; exit 2; }

smp=${DOM0_SMP:-1} accel=tcg
[ "$smp" -le 1 ] || accel=tcg,thread=multi
cmd=(qemu-system-x86_64 -accel "$accel" -cpu max,-smap -m "${DOM0_QEMU_MEM:-384}" -smp "$smp"
	-kernel "$XEN" -append "$XEN_ARGS $*"
	-initrd "$DOM0_KERNEL ${DOM0_ARGS//,/,,},$initrd"
	-serial stdio -display none -monitor none -no-reboot
	-device isa-debug-exit,iobase=0xf4,iosize=0x04)
echo "dom0/run: ${cmd[*]}" >&2
start=$EPOCHREALTIME
set +e
if [ "${DOM0_STAMP:-1}" = 1 ]; then
	timeout "${DOM0_TIMEOUT:-300}" "${cmd[@]}" </dev/null | while IFS= read -r line || [ -n "$line" ]; do
		us=$(( ${EPOCHREALTIME/./} - ${start/./} ))
		printf '[%3d.%03d] %s\n' $((us / 1000000)) $((us / 1000 % 1000)) "${line%$'\r'}"
	done
	rc=${PIPESTATUS[0]}
else
	timeout "${DOM0_TIMEOUT:-300}" "${cmd[@]}" </dev/null
	rc=$?
fi
set -e
end=$EPOCHREALTIME
us=$(( ${end/./} - ${start/./} ))
secs=$((us / 1000000)).$(printf %02d $((us / 10000 % 100)))
if [ "$rc" = 124 ]; then
	echo "dom0/run: timed out after ${DOM0_TIMEOUT:-300} s" >&2; exit 124
elif [ $((rc & 1)) = 1 ]; then
	echo "dom0/run: verdict $((rc >> 1)) after $secs s" >&2; exit $((rc >> 1))
fi
echo "dom0/run: QEMU exited with $rc after $secs s and no verdict" >&2
exit 125
