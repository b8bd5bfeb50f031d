#!/usr/bin/env bash
# Make the per-run payload for the faultline dom0: a small uncompressed cpio
# appended to the cached base initramfs (Linux unpacks concatenated archives).
#
#   scripts/dom0/payload.sh -o OUT [-b BASE] [GUEST-OPTIONS] KERNEL [[GUEST-OPTIONS] KERNEL]...
#   scripts/dom0/payload.sh --print-cfg [GUEST-OPTIONS] KERNEL   # xl cfg with host paths
#
#   -o OUT            file to write
#   -b BASE           base initramfs (dom0-base.cpio.gz from build.sh); OUT = BASE + payload.
#                     Without -b, OUT is the payload cpio alone.
# Guest options apply to the next KERNEL only:
#   --name NAME       domain name (default faultline, faultline-2, ...)
#   --memory MB       default 64
#   --vcpus N         default 1 (run.sh needs DOM0_SMP=N or more)
#   --extra "ARGS"    guest command line (no quotes or backslashes)
#   --ramdisk FILE    guest initrd
#   --timeout SEC     dom0 destroys the guest after SEC seconds (default 60)
#   --console MODE    live (default): `xl create -c`, console streamed as it comes;
#                     log: no -c (~1 s faster a guest), the console log is printed at the end
#   --cfg TEMPLATE    xl config template (default scripts/dom0/faultline.cfg.in)
#
# In the archive: /payload/guests ("<cfg> <timeout> <live|log>" a line, run in order),
# /payload/N.cfg, /payload/N/kernel, /payload/N/ramdisk. The runner writes the
# cpio (`cargo xtask cpio`: newc, mtime 0), so the host needs no cpio tool.
set -euo pipefail
shopt -u patsub_replacement 2>/dev/null || true # keep '&' literal in ${v//x/y}
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "dom0/payload: error: $*" >&2; exit 1; }

. "$here/xtask.sh"

# ---- arguments ---------------------------------------------------------------
out='' base='' print_cfg=0
names=() kernels=() ramdisks=() memories=() vcpus=() extras=() timeouts=() cfgs=() consoles=()
reset() { g_name='' g_ram='' g_mem=64 g_vcpus=1 g_extra='' g_tmo=60 g_cfg=$here/faultline.cfg.in g_con=live; }
reset
while [ $# -gt 0 ]; do
	case $1 in
		-o) out=${2:?-o needs a file}; shift 2 ;;
		-b) base=${2:?-b needs a file}; shift 2 ;;
		--print-cfg) print_cfg=1; shift ;;
		--name) g_name=${2:?}; shift 2 ;;
		--memory) g_mem=${2:?}; shift 2 ;;
		--vcpus) g_vcpus=${2:?}; shift 2 ;;
		--extra) g_extra=${2?}; shift 2 ;;
		--ramdisk) g_ram=${2:?}; shift 2 ;;
		--timeout) g_tmo=${2:?}; shift 2 ;;
		--cfg) g_cfg=${2:?}; shift 2 ;;
		--console) g_con=${2:?}; shift 2 ;;
		-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		-*) die "unknown option $1 (see --help)" ;;
		*)
			[ -r "$1" ] || die "guest kernel $1 not found"
			[ -z "$g_ram" ] || [ -r "$g_ram" ] || die "ramdisk $g_ram not found"
			[ -r "$g_cfg" ] || die "config template $g_cfg not found"
			case $g_extra in *'"'* | *\\*) die "--extra must not contain quotes or backslashes" ;; esac
			[[ $g_mem =~ ^[0-9]+$ && $g_tmo =~ ^[0-9]+$ && $g_vcpus =~ ^[0-9]+$ ]] || die "--memory, --vcpus and --timeout take whole numbers"
			[[ $g_con == live || $g_con == log ]] || die "--console takes live or log"
			n=$(( ${#kernels[@]} + 1 ))
			[ -n "$g_name" ] || { g_name=faultline; [ $n -eq 1 ] || g_name=faultline-$n; }
			names+=("$g_name") kernels+=("$1") ramdisks+=("$g_ram") memories+=("$g_mem") vcpus+=("$g_vcpus")
			extras+=("$g_extra") timeouts+=("$g_tmo") cfgs+=("$g_cfg") consoles+=("$g_con")
			reset; shift ;;
	esac
done
[ ${#kernels[@]} -gt 0 ] || die "no guest kernel given (see --help)"

# render I KERNEL-PATH RAMDISK-PATH: the xl config of guest I.
render() {
	local i=$1 t line
	t=$(<"${cfgs[$i]}")
	while IFS= read -r line; do
		case $line in '##'*) continue ;; esac # template-only comments
		case $line in *@RAMDISK@*) [ -n "$3" ] || continue ;; esac
		case $line in *@EXTRA@*) [ -n "${extras[$i]}" ] || continue ;; esac
		line=${line//@NAME@/${names[$i]}}
		line=${line//@KERNEL@/$2}
		line=${line//@RAMDISK@/$3}
		line=${line//@MEMORY@/${memories[$i]}}
		line=${line//@VCPUS@/${vcpus[$i]}}
		line=${line//@EXTRA@/${extras[$i]}}
		printf '%s\n' "$line"
	done <<<"$t"
}

if [ $print_cfg -eq 1 ]; then
	for i in "${!kernels[@]}"; do
		r=''; [ -z "${ramdisks[$i]}" ] || r=$(realpath "${ramdisks[$i]}")
		render "$i" "$(realpath "${kernels[$i]}")" "$r"
	done
	exit 0
fi
[ -n "$out" ] || die "-o OUT is required"
[ -z "$base" ] || [ -r "$base" ] || die "base initramfs $base not found: run scripts/dom0/build.sh"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A file given for several guests goes into the archive once (dom0 keeps the
# whole archive in RAM): FILES maps its real path to its path in the archive.
declare -A FILES
order=()
ship() { # ship HOST-FILE ARCHIVE-PATH: sets $shipped to the archive path used
	local k; k=$(realpath "$1")
	[ -n "${FILES[$k]:-}" ] || { FILES[$k]=$2; order+=("$k"); }
	shipped=${FILES[$k]}
}
: >"$tmp/guests"
for i in "${!kernels[@]}"; do
	n=$((i + 1)) r=''
	ship "${kernels[$i]}" "payload/$n/kernel"
	k=/$shipped
	[ -z "${ramdisks[$i]}" ] || { ship "${ramdisks[$i]}" "payload/$n/ramdisk"; r=/$shipped; }
	render "$i" "$k" "$r" >"$tmp/$n.cfg"
	echo "/payload/$n.cfg ${timeouts[$i]} ${consoles[$i]}" >>"$tmp/guests"
done
members=(--dir payload --file "payload/guests=$tmp/guests")
for i in "${!kernels[@]}"; do
	n=$((i + 1))
	members+=(--file "payload/$n.cfg=$tmp/$n.cfg" --dir "payload/$n")
done
for f in "${order[@]}"; do members+=(--file "${FILES[$f]}=$f"); done
# With a base, the runner pads it to 4 bytes (the kernel seeks cpio headers at 4-byte offsets).
[ -z "$base" ] || members=(--after "$base" "${members[@]}")
xtask cpio -o "$out" "${members[@]}"
echo "dom0/payload: $out: ${#kernels[@]} guest(s), $(stat -c %s "$out") bytes" >&2
