#!/usr/bin/env bash
# Take the ELF vmlinux out of an x86 bzImage (vmlinuz).
#
#   scripts/dom0/vmlinux.sh <vmlinuz> <vmlinux-out>
#
# The x86 boot protocol (2.08+) records where the compressed kernel lies: the
# setup code is (setup_sects + 1) * 512 bytes (setup_sects at 0x1f1, 0 means 4),
# and payload_offset (0x248) / payload_length (0x24c) locate the payload inside
# the protected-mode part. The payload is gzip/xz/zstd/lz4/lzma/bzip2 data; the
# build appends the 4-byte uncompressed size to most formats, so each
# decompressor is tried on the whole payload and on the payload minus 4 bytes.
# (head -c under pipefail would SIGPIPE the reader: dd cuts the bytes.)
# Needs only coreutils and the matching decompressor (xz for Debian's kernels).
set -euo pipefail
in=${1:?usage: vmlinux.sh <vmlinuz> <vmlinux-out>}
out=${2:?usage: vmlinux.sh <vmlinuz> <vmlinux-out>}

u8() { od -An -tu1 -j "$2" -N1 "$1" | tr -d ' '; }
u32() { od -An -tu4 -j "$2" -N4 "$1" | tr -d ' '; }
die() { echo "vmlinux.sh: $*" >&2; exit 1; }

[ "$(od -An -c -j 0x202 -N4 "$in" | tr -d ' ')" = HdrS ] || die "$in is not a bzImage (no HdrS at 0x202)"
setup_sects=$(u8 "$in" $((0x1f1)))
[ "$setup_sects" -ne 0 ] || setup_sects=4
off=$(( (setup_sects + 1) * 512 + $(u32 "$in" $((0x248))) ))
len=$(u32 "$in" $((0x24c)))
[ "$len" -gt 0 ] || die "$in has no payload_length (boot protocol older than 2.08?)"

magic=$(od -An -tx1 -j "$off" -N6 "$in" | tr -d ' \n')
case $magic in
	1f8b*)         tool="gzip -dc" ;;
	fd377a585a00)  tool="xz -dc --single-stream" ;;
	28b52ffd*)     tool="zstd -dc -q" ;;
	02214c18*)     tool="lz4 -dc -q" ;;
	5d0000*)       tool="xz -dc --format=lzma" ;;
	425a68*)       tool="bzip2 -dc" ;;
	*) die "unknown payload magic $magic at offset $off in $in" ;;
esac
command -v "${tool%% *}" >/dev/null || die "'${tool%% *}' is needed to unpack $in (apt-get install ${tool%% *})"

tmp=$out.tmp.$$
trap 'rm -f "$tmp"' EXIT
for cut in 0 4; do
	if dd if="$in" iflag=skip_bytes,count_bytes skip="$off" count="$((len - cut))" bs=1M status=none |
		$tool >"$tmp" 2>/dev/null &&
		[ "$(od -An -c -N4 "$tmp" | tr -d ' ')" = '177ELF' ]; then
		mv "$tmp" "$out"
		trap - EXIT
		exit 0
	fi
done
die "could not decompress the payload of $in with '$tool'"
