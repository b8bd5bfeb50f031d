#!/usr/bin/env bash
# Regenerate scripts/packages.lock from the host's apt lists (Debian 12).
#
#   scripts/dom0/lock.sh            # writes scripts/packages.lock
#
# Every package the dom0 image is built from is pinned there: name, version,
# SHA-256, size and pool path, exactly as `apt-cache show` reports them. Run
# `apt-get update` first. Commit the new lock; build.sh refuses anything else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lock=$(cd "$here/.." && pwd)/packages.lock # the one lock file, read by the runner too

# What goes into the image. The kernel ABI package is whatever linux-image-amd64
# currently depends on; libraries are those `ldd` lists for the Xen tools.
kernel=$(apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -n1)
[ -n "$kernel" ] || { echo "lock.sh: linux-image-amd64 has no linux-image-6.1.*-amd64 dependency; run: apt-get update" >&2; exit 1; }
packages=(
	xen-hypervisor-4.17-amd64 "$kernel" busybox-static
	xen-utils-4.17 xenstore-utils
	libxenmisc4.17 libxenstore4 libxencall1 libxenevtchn1 libxenforeignmemory1
	libxengnttab1 libxentoollog1 libxentoolcore1 libxendevicemodel1 libxenhypfs1
	libyajl2 libc6 libgcc-s1 libuuid1 liblzma5 libzstd1 zlib1g
	xz-utils # a build tool only: unpacks vmlinuz where the host lacks xz
)

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "# Every Debian 12 (amd64) package faultline uses, one lock for the runner (scripts/xtask) and the"
	echo "# dom0 image (scripts/dom0/build.sh): <package> <version> <sha256> <size> <pool path>, from"
	echo "# apt-cache show. Regenerate it with scripts/dom0/lock.sh (all packages) or re-pin some with"
	echo "# \`cargo xtask lock <package>...\`; don't edit it by hand."
	for p in "${packages[@]}"; do
		v=$(apt-cache policy "$p" | sed -n 's/^ *Candidate: //p')
		if [ -z "$v" ] || [ "$v" = "(none)" ]; then
			echo "lock.sh: no candidate version for $p; run: apt-get update" >&2
			exit 1
		fi
		# One stanza of `apt-cache show p=v` (the same version may be listed twice).
		apt-cache show "$p=$v" | awk -v p="$p" -v v="$v" '
			/^SHA256: / { sha = $2 } /^Size: / { size = $2 } /^Filename: / { file = $2 }
			/^$/ && sha != "" { exit }
			END { if (sha != "") print p, v, sha, size, file }'
	done
} >"$tmp"
n=$(grep -vc '^#' "$tmp" || true)
[ "$n" -eq "${#packages[@]}" ] || { echo "lock.sh: got $n of ${#packages[@]} packages; check apt-cache show output" >&2; exit 1; }
mv "$tmp" "$lock"
trap - EXIT
echo "lock.sh: wrote $lock ($n packages)" >&2
