#!/usr/bin/env bash
# Build the Linux dom0 that runs `xl create` on faultline as a Xen PV DomU.
#
#   scripts/dom0/build.sh [cache-dir] [out-dir] [xen-version]
#       cache-dir    default: $FAULTLINE_CACHE, else ~/.cache/faultline
#       out-dir      default: target/dom0
#       xen-version  4.17 (default: Debian 12's) or 4.20 (Debian 13's)
#
# Fetches the Debian packages pinned in scripts/packages.lock with
# `apt-get download` (checked against the lock's SHA-256), unpacks them with
# `dpkg-deb` under cache-dir, and writes to out-dir:
#   xen                  Xen 4.17 or 4.20 (gunzipped ELF, for QEMU -kernel)
#   vmlinux              dom0 Linux as an ELF (out of the Debian vmlinuz)
#   dom0-base.cpio.gz    dom0 initramfs: busybox, Xen tools, libraries, modules, /init
#   dom0.env             the paths above and the suggested command lines (sh syntax)
# Xen, its toolstack, busybox and every library come from the lock's section of
# the Debian release that ships that Xen ([bookworm] for 4.17, [trixie] for
# 4.20: fetched with scripts/dom0/apt-suite.sh, apt's own lists under
# cache-dir/apt); the dom0's Linux kernel (and xz-utils) always from [bookworm].
# The built set is cached in cache-dir/dom0/<key>, key = hash of the pins used,
# the Xen version and these scripts, so a second run only re-links it. Per-run guests are added
# by payload.sh (or by the runner: scripts/xtask/src/xl.rs). Exit status: 0; 3
# when apt-get download failed (stale package lists?); 1 on any other error.
# Needs: apt-get (with `apt-get update` done), dpkg-deb, tar, gzip, coreutils,
# findutils (xz: the host's or the locked xz-utils), and cargo (the runner packs the cpio). No root needed except for
# apt-get update.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-${FAULTLINE_CACHE:-$HOME/.cache/faultline}}
out=${2:-target/dom0}
xv=${3:-4.17}
lock=$(cd "$here/.." && pwd)/packages.lock # shared with the runner (scripts/xtask)
case $xv in
	4.17) suite=bookworm ;;
	4.20) suite=trixie ;;
	*) echo "dom0/build: error: Xen $xv is not supported: 4.17 (Debian 12) or 4.20 (Debian 13)" >&2; exit 1 ;;
esac
modules=(xen-evtchn xen-privcmd xenfs xen-gntdev) # insmod order; no modules.dep
xen_tools=(xl xenstored xenconsoled xen-init-dom0 xenconsole)
xenstore_cmds=(read write ls list exists rm watch chmod)

say() { echo "dom0/build: $*" >&2; }
die() { echo "dom0/build: error: $*" >&2; exit 1; }

for t in apt-get dpkg-deb tar gzip sha256sum od find sort; do
	command -v "$t" >/dev/null || die "'$t' not found (Debian 12 is expected; apt-get install it)"
done
[ -r "$lock" ] || die "$lock missing: run scripts/dom0/lock.sh"
# The pins this build uses, "<suite> <package> <version> <sha256> <size> <pool>": the whole
# section of $suite, and the dom0 kernel and xz-utils from [bookworm] (lines before the first
# section header are [bookworm]'s).
pins=$(awk -v suite="$suite" '
	/^#/ || NF == 0 { next }
	/^\[/ { s = substr($1, 2, length($1) - 2); next }
	{ if (s == "") s = "bookworm" }
	s == suite || (s == "bookworm" && ($1 ~ /^linux-image-/ || $1 == "xz-utils")) { print s, $0 }
' "$lock")
[ -n "$pins" ] || die "packages.lock has no [$suite] section: refresh it with scripts/dom0/lock.sh"
mkdir -p "$cache/debs" "$cache/pkgs" "$cache/dom0" "$out"
cache=$(cd "$cache" && pwd)
out=$(cd "$out" && pwd)

# ---- 1. cache key: everything that shapes the image -------------------------
key=$({ echo "xen $xv"; echo "$pins"; cat "$here/build.sh" "$here/vmlinux.sh" "$here/xtask.sh" "$here/../xtask/src/cpio.rs" "$here/init"; } | sha256sum | cut -c1-16)
dst=$cache/dom0/$key

publish() {
	local f
	for f in xen vmlinux dom0-base.cpio.gz; do
		ln -f "$dst/$f" "$out/$f" 2>/dev/null || cp -f "$dst/$f" "$out/$f"
	done
	{
		echo "# Written by scripts/dom0/build.sh (key $key). Paths are absolute."
		echo "DOM0_KEY=$key"
		echo "XEN=$out/xen"
		echo "XEN_VERSION=$xv"
		echo "DOM0_KERNEL=$out/vmlinux"
		echo "DOM0_INITRAMFS=$out/dom0-base.cpio.gz"
		echo "XEN_ARGS='console=com1 dom0_mem=192M,max:192M dom0_max_vcpus=1'"
		echo "DOM0_ARGS='console=hvc0 quiet swiotlb=1024 cryptomgr.notests'"
		cat "$dst/versions"
	} >"$out/dom0.env"
	say "ready in $out ($(du -sh "$dst" | cut -f1), key $key)"
}
if [ -s "$dst/dom0-base.cpio.gz" ] && [ -s "$dst/versions" ]; then
	say "cached build $key"
	publish
	exit 0
fi

# ---- 2. fetch and verify every pinned package -------------------------------
deb_of() { echo "$cache/debs/${1}_${2//:/%3a}_amd64.deb"; } # apt-get download's own name
apt_suite() { bash "$here/apt-suite.sh" "$1" "$cache" "${@:2}"; }
for s in bookworm "$suite"; do
	want=() want_bytes=0
	while read -r from name ver sha size _; do
		[ "$from" = "$s" ] || continue
		deb=$(deb_of "$name" "$ver")
		[ -s "$deb" ] && echo "$sha  $deb" | sha256sum -c --status || { rm -f "$deb"; want+=("$name=$ver"); want_bytes=$((want_bytes + ${size:-0})); }
	done <<<"$pins"
	[ ${#want[@]} -gt 0 ] || continue
	# First use: ~80 MB, most of it the dom0 kernel. apt prints one "Get:" line per package.
	say "fetching ${#want[@]} package(s) of $s, $((want_bytes / 1048576)) MiB, into $cache/debs"
	download() { (cd "$cache/debs" && apt_suite "$s" apt-get download -o APT::Sandbox::User=root "${want[@]}" >&2); }
	# Another release's lists (apt-suite.sh keeps them under the cache) may be stale: update once.
	download || { [ "$s" = bookworm ] || { apt_suite "$s" update && download; }; } || {
		echo "dom0/build: error: apt-get download failed (see above). Run 'apt-get update' (for $s: scripts/dom0/apt-suite.sh $s $cache update) and retry; if a version is gone from the archive, refresh the lock with scripts/dom0/lock.sh and commit it" >&2
		exit 3 # the runner runs apt-get update and tries again on this status
	}
done
declare -A ROOT # package name -> unpacked tree
while read -r _ name ver sha _; do
	deb=$(deb_of "$name" "$ver")
	[ -s "$deb" ] || die "apt-get download $name=$ver did not produce $deb"
	echo "$sha  $deb" | sha256sum -c --status ||
		die "SHA-256 of $deb differs from packages.lock ($sha): the archive changed; refresh the lock with scripts/dom0/lock.sh"
	dir=$cache/pkgs/${name}_${ver//:/%3a}
	if ! [ -e "$dir/.unpacked" ]; then
		say "unpacking $name"
		rm -rf "$dir" && mkdir -p "$dir"
		case $name in
			linux-image-*) # 70 MB of modules: take only what dom0 needs
				dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --wildcards \
					'*/boot/vmlinuz-*' '*/drivers/xen/*.ko*' ;;
			*) dpkg-deb -x "$deb" "$dir" ;;
		esac
		touch "$dir/.unpacked"
	fi
	ROOT[$name]=$dir
	case $name in linux-image-*) KPKG=$name ;; esac
done <<<"$pins"
for p in "xen-hypervisor-$xv-amd64" "xen-utils-$xv" xenstore-utils busybox-static libc6 libgcc-s1; do
	[ -n "${ROOT[$p]:-}" ] || die "packages.lock lacks $p: refresh it with scripts/dom0/lock.sh"
done
# xz unpacks Debian's vmlinuz; without xz-utils on the host, use the fetched one.
command -v xz >/dev/null || [ -z "${ROOT[xz-utils]:-}" ] || PATH=${ROOT[xz-utils]}/usr/bin:$PATH
command -v xz >/dev/null || die "no xz: apt-get install xz-utils (or refresh the lock: it should list xz-utils)"
[ -n "${KPKG:-}" ] || die "packages.lock lacks linux-image-6.1.*-amd64: refresh it with scripts/dom0/lock.sh"

tmp=$cache/dom0/.tmp.$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp" && mkdir -p "$tmp"
versions=$tmp/versions
awk '{ gsub(/[^A-Za-z0-9]/, "_", $2); print "PKG_" $2 "='\''" $3 "'\''" }' <<<"$pins" >"$versions"
echo "XEN_PACKAGE_VERSION='$(awk -v p="xen-hypervisor-$xv-amd64" '$2 == p { print $3 }' <<<"$pins")'" >>"$versions"

# ---- 3. Xen and the dom0 kernel ----------------------------------------------
say "xen: gunzip"
gzip -dc "${ROOT[xen-hypervisor-$xv-amd64]}/boot/xen-$xv-amd64.gz" >"$tmp/xen"
vmlinuz=$(find "${ROOT[$KPKG]}" -path '*/boot/vmlinuz-*' | head -n1)
[ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $KPKG"
kver=${vmlinuz##*/vmlinuz-}
echo "DOM0_KVER=$kver" >>"$versions"
say "vmlinux: extracting from $vmlinuz"
"$here/vmlinux.sh" "$vmlinuz" "$tmp/vmlinux"

# ---- 4. the initramfs tree ---------------------------------------------------
r=$tmp/root
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,lib/x86_64-linux-gnu,lib64,lib/modules,etc/xen} \
	"$r"/{proc,sys,dev,run,tmp,root,var/lib/xen,var/lib/xenstored,var/log/xen/console} \
	"$r/usr/lib/xen-$xv/bin"
ln -s ../run "$r/var/run"
ln -s ../run/lock "$r/var/lock"
ln -s ../../lib/x86_64-linux-gnu "$r/usr/lib/x86_64-linux-gnu"

# Debian 13 moved /bin and /lib into /usr: look in both places.
in_pkg() { local f; for f in "${ROOT[$1]}/$2" "${ROOT[$1]}/usr/$2"; do [ -e "$f" ] && { echo "$f"; return; }; done; echo "${ROOT[$1]}/$2"; }
bb=$(in_pkg busybox-static bin/busybox)
cp "$bb" "$r/bin/busybox"
"$bb" --list-full | while read -r applet; do
	[ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
done

say "modules: ${modules[*]} (kernel $kver)"
for m in "${modules[@]}"; do
	ko=$(find "${ROOT[$KPKG]}" -name "$m.ko*" | head -n1)
	[ -n "$ko" ] || die "module $m not found in $KPKG"
	case $ko in
		*.ko) cp "$ko" "$r/lib/modules/$m.ko" ;;
		*.ko.xz) xz -dc "$ko" >"$r/lib/modules/$m.ko" ;;
		*.ko.zst) zstd -dcq "$ko" >"$r/lib/modules/$m.ko" ;;
		*) die "module $ko: unknown compression" ;;
	esac
done

bins=()
for t in "${xen_tools[@]}"; do
	f=${ROOT[xen-utils-$xv]}/usr/lib/xen-$xv/bin/$t
	[ -x "$f" ] || die "$f missing from xen-utils-$xv"
	cp "$f" "$r/usr/lib/xen-$xv/bin/$t"
	bins+=("$f")
done
f=${ROOT[xenstore-utils]}/usr/bin/xenstore
[ -x "$f" ] || die "$f missing from xenstore-utils"
cp "$f" "$r/usr/bin/xenstore"
bins+=("$f")
for c in "${xenstore_cmds[@]}"; do ln -s xenstore "$r/usr/bin/xenstore-$c"; done # argv[0] picks the command

# Libraries: ask the packaged loader (what ldd does) with the unpacked lib dirs first.
libpath=$(for d in "${ROOT[@]}"; do
	for s in lib/x86_64-linux-gnu usr/lib/x86_64-linux-gnu; do [ -d "$d/$s" ] && echo "$d/$s"; done
done | sort | paste -sd:)
loader=$(in_pkg libc6 lib/x86_64-linux-gnu/ld-linux-x86-64.so.2)
[ -x "$loader" ] || die "$loader missing from libc6"
declare -A LIBS
for b in "${bins[@]}"; do
	listing=$("$loader" --library-path "$libpath" --list "$b") || die "the loader cannot list $b"
	while read -r soname arrow path _; do
		[ "$arrow" = "=>" ] || continue
		case $soname in /*) continue ;; esac # the loader itself, copied below
		[ "$path" != not ] || die "$b needs $soname, found in no package of packages.lock: add its package to lock.sh and rerun it"
		case $path in
			"$cache"/pkgs/*) ;;
			*) say "warning: $soname for ${b##*/} comes from the host ($path): add its package to lock.sh" ;;
		esac
		LIBS[$soname]=$path
	done <<<"$listing"
done
LIBS[libgcc_s.so.1]=$(in_pkg libgcc-s1 lib/x86_64-linux-gnu/libgcc_s.so.1) # glibc dlopens it (xl aborts without)
for soname in "${!LIBS[@]}"; do
	cp -L "${LIBS[$soname]}" "$r/lib/x86_64-linux-gnu/$soname"
done
cp -L "$loader" "$r/lib64/ld-linux-x86-64.so.2"
say "libraries: $(echo "${!LIBS[@]}" | tr ' ' '\n' | sort | paste -sd' ')"

# xl warns without a global config; dom0's memory is fixed (dom0_mem=...,max:...).
printf '# faultline dom0\nautoballoon="off"\n' >"$r/etc/xen/xl.conf"
cp "$here/init" "$r/init"
chmod 755 "$r/init"
cp "$versions" "$r/etc/faultline-dom0.versions"

# ---- 5. pack it: sorted newc cpio (mtime 0: reproducible), gzip -n, 4-byte pad
# The runner writes the cpio (`cargo xtask cpio`, scripts/xtask/src/cpio.rs).
# Padding lets an uncompressed payload cpio follow: the kernel only looks for a
# cpio header at 4-byte offsets, and skips the zero bytes in between.
say "packing the initramfs"
. "$here/xtask.sh"
# dev/console: the kernel opens it for init before /init runs.
xtask cpio -o "$tmp/dom0-base.cpio" --tree "$r" --char-device dev/console=5:1
gzip -n -9 <"$tmp/dom0-base.cpio" >"$tmp/dom0-base.cpio.gz"
rm -f "$tmp/dom0-base.cpio"
sz=$(stat -c %s "$tmp/dom0-base.cpio.gz")
[ $((sz % 4)) -eq 0 ] || head -c $((4 - sz % 4)) /dev/zero >>"$tmp/dom0-base.cpio.gz"

rm -rf "$r" "$dst"
mv "$tmp" "$dst"
trap - EXIT
# Keep the three newest builds (37 MB each); out-dirs keep their hard links anyway.
(cd "$cache/dom0" && ls -t | grep -E '^[0-9a-f]{16}$' | tail -n +4 | xargs -r rm -rf)
say "built: xen $(stat -c %s "$dst/xen"), vmlinux $(stat -c %s "$dst/vmlinux"), initramfs $(stat -c %s "$dst/dom0-base.cpio.gz") bytes"
publish
