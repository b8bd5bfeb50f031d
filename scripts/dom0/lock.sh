#!/usr/bin/env bash
# Regenerate scripts/packages.lock: one section per Debian release.
#
#   scripts/dom0/lock.sh            # writes scripts/packages.lock
#
# Every package faultline uses is pinned there: name, version, SHA-256, size and
# pool path, exactly as `apt-cache show` reports them, under the header of the
# Debian release that ships it:
#   [bookworm]  Debian 12: Xen 4.17, its toolstack and libc, and the dom0's Linux
#               kernel for every Xen version (from the host's apt lists: run
#               `apt-get update` first)
#   [trixie]    Debian 13: Xen 4.20, its toolstack and libc (through
#               scripts/dom0/apt-suite.sh: apt's own lists under the cache)
# Commit the new lock; build.sh and the runner refuse anything else.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lock=$(cd "$here/.." && pwd)/packages.lock # the one lock file, read by the runner too
cache=${FAULTLINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/faultline}

# The toolstack of Xen $1 and the libraries `ldd` lists for it (build.sh checks
# that every one is pinned), from the release that ships that Xen.
toolstack() {
	echo "xen-hypervisor-$1-amd64 busybox-static xen-utils-$1 xenstore-utils"
	echo "libxenmisc$1 libxenstore4 libxencall1 libxenevtchn1 libxenforeignmemory1"
	echo "libxengnttab1 libxentoollog1 libxentoolcore1 libxendevicemodel1 libxenhypfs1"
	echo "libyajl2 libc6 libgcc-s1 libuuid1 liblzma5 libzstd1 zlib1g"
}

# One release's section: "[suite] comment", then one line per package.
section() {
	local suite=$1 comment=$2
	shift 2
	local apt=(bash "$here/apt-suite.sh" "$suite" "$cache" apt-cache)
	echo "[$suite] $comment"
	local p v
	for p in "$@"; do
		v=$("${apt[@]}" policy "$p" | sed -n 's/^ *Candidate: //p')
		if [ -z "$v" ] || [ "$v" = "(none)" ]; then
			echo "lock.sh: no candidate version for $p in $suite; run: apt-get update" >&2
			return 1
		fi
		# One stanza of `apt-cache show p=v` (the same version may be listed twice).
		"${apt[@]}" show "$p=$v" | awk -v p="$p" -v v="$v" '
			/^SHA256: / { sha = $2 } /^Size: / { size = $2 } /^Filename: / { file = $2 }
			/^$/ && sha != "" { exit }
			END { if (sha != "") print p, v, sha, size, file }'
	done
}

# The dom0 kernel: whatever Debian 12's linux-image-amd64 currently depends on.
kernel=$(apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-6\.1\.[^ ]*-amd64\)$/\1/p' | head -n1)
[ -n "$kernel" ] || { echo "lock.sh: linux-image-amd64 has no linux-image-6.1.*-amd64 dependency; run: apt-get update" >&2; exit 1; }
# shellcheck disable=SC2046 # word splitting of the package lists is intended
bookworm=("$kernel" $(toolstack 4.17) xz-utils) # xz-utils: a build tool only (unpacks vmlinuz)
# shellcheck disable=SC2046
trixie=($(toolstack 4.20))

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
{
	echo "# Every Debian (amd64) package faultline uses, one lock for the runner (scripts/xtask) and the"
	echo "# dom0 image (scripts/dom0/build.sh). One section per Debian release, \"[<suite>] ...\", then"
	echo "# <package> <version> <sha256> <size> <pool path>, from apt-cache show. \`cargo xtask run --xen V\`"
	echo "# takes Xen V and its toolstack from the release that ships it (4.17: bookworm, 4.20: trixie);"
	echo "# the dom0's Linux kernel is bookworm's for both. Regenerate it with scripts/dom0/lock.sh (all"
	echo "# packages) or re-pin some with \`cargo xtask lock [--xen V] <package>...\`; don't edit it by hand."
	section bookworm "Debian 12: Xen 4.17 and its toolstack; the dom0 kernel of every Xen version" "${bookworm[@]}"
	section trixie "Debian 13: Xen 4.20 and its toolstack" "${trixie[@]}"
} >"$tmp"
n=$(grep -vc '^[#[]' "$tmp" || true)
want=$((${#bookworm[@]} + ${#trixie[@]}))
[ "$n" -eq "$want" ] || { echo "lock.sh: got $n of $want packages; check apt-cache show output" >&2; exit 1; }
mv "$tmp" "$lock"
trap - EXIT
echo "lock.sh: wrote $lock ($n packages)" >&2
