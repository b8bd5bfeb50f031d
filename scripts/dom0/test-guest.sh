#!/usr/bin/env bash
# A throw-away Linux test guest for the dom0, until faultline runs as a DomU:
# Debian's vmlinuz (libxenguest unpacks the bzImage itself) booted as a PV DomU
# with a tiny initrd (busybox-static from the dom0 cache). Not the ELF vmlinux:
# 66 MB in the payload makes Xen panic "Domain 0 allocation is too small". The guest command line picks what it does:
#   faultline.test=poweroff (default)  print a line, power off   -> reason 0
#   faultline.test=crash                panic via sysrq          -> reason 3
#   faultline.test=hang                 loop until dom0's timeout
#
#   scripts/dom0/test-guest.sh <cache-dir> <dir>   # writes dir/test-vmlinuz, dir/test-initrd.gz
# then e.g.
#   scripts/dom0/payload.sh -b OUT/dom0-base.cpio.gz -o run.img --ramdisk dir/test-initrd.gz \
#     --extra "console=hvc0 quiet faultline.test=crash" dir/test-vmlinuz
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:?usage: test-guest.sh <cache-dir> <dir>}
dir=${2:?usage: test-guest.sh <cache-dir> <dir>}
bb=$(ls "$cache"/pkgs/busybox-static_*/bin/busybox 2>/dev/null | head -n1)
kernel=$(ls "$cache"/pkgs/linux-image-*/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -x "$bb" ] && [ -r "$kernel" ] || { echo "test-guest: no busybox or vmlinuz in $cache: run scripts/dom0/build.sh $cache first" >&2; exit 1; }
mkdir -p "$dir"
cp "$kernel" "$dir/test-vmlinuz"
out=$dir/test-initrd.gz
. "$here/cpio.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
read -r cmdline </proc/cmdline
echo "test-guest: alive (cmdline: $cmdline)"
case " $cmdline " in
	*" faultline.test=crash "*) echo "test-guest: crashing"; echo c >/proc/sysrq-trigger ;;
	*" faultline.test=hang "*) echo "test-guest: hanging"; while :; do /bin/busybox sleep 1; done ;;
esac
echo "test-guest: powering off"
/bin/busybox poweroff -f
INIT
chmod 755 "$tmp/init"
{
	for d in bin dev proc; do cpio_entry $d 0040755; done
	cpio_chardev dev/console 5 1
	cpio_entry bin/busybox 0100755 "$bb"
	cpio_entry init 0100755 "$tmp/init"
	cpio_trailer
} | gzip -n >"$out"
echo "test-guest: $out ($(stat -c %s "$out") bytes)" >&2
