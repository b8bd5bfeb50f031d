#!/usr/bin/env bash
# Write a minimal Xen PV guest kernel: a hand-assembled 8 KiB ELF64 with the
# Xen ELF notes, for testing the dom0 path the way faultline will use it.
#
#   scripts/dom0/mini-guest.sh <out> poweroff|crash|fault|hang
#     poweroff  SCHEDOP_shutdown(SHUTDOWN_poweroff)  -> xl reason code 0
#     crash     SCHEDOP_shutdown(SHUTDOWN_crash)     -> reason code 3
#     fault     ud2 with no trap table: Xen kills it -> reason code 3
#     hang      jmp . (for dom0's guest timeout)
# It prints nothing (a DomU's console_io is dropped; no console ring here).
#
# Layout: one PT_LOAD maps the whole file at VIRT_BASE (0xffffffff80000000,
# PADDR_OFFSET the same); page 0 holds the headers, the notes (PT_NOTE) and
# the code at +0x200; page 1 is the hypercall page that Xen fills in.
set -euo pipefail
out=${1:?usage: mini-guest.sh <out> poweroff|crash|fault|hang}
mode=${2:?usage: mini-guest.sh <out> poweroff|crash|fault|hang}
base=$((0xffffffff80000000))
code_off=$((0x200)) hpage_off=$((0x1000)) size=$((0x2000))

le() { # le VALUE BYTES: VALUE little-endian as \x escapes
	local v=$1 i s=''
	for ((i = 0; i < $2; i++)); do s+=$(printf '\\x%02x' $(((v >> (8 * i)) & 0xff))); done
	printf '%s' "$s"
}
note() { # note TYPE DESC-ESCAPES DESC-LEN: one "Xen" ELF note
	local pad=$(( (4 - $3 % 4) % 4 ))
	notes+=$(le 4 4)$(le "$3" 4)$(le "$1" 4)'Xen\x00'$2
	for ((; pad > 0; pad--)); do notes+='\x00'; done
	notes_len=$((notes_len + 16 + $3 + (4 - $3 % 4) % 4))
}
str() { printf '%s' "$1" | od -An -tx1 -v | tr -s ' \n' ' ' | sed 's/ \([0-9a-f][0-9a-f]\)/\\x\1/g; s/ $//'; printf '\\x00'; }
notes='' notes_len=0
note 6 "$(str faultline-mini)" 15          # GUEST_OS
note 5 "$(str xen-3.0)" 8                  # XEN_VERSION
note 8 "$(str generic)" 8                  # LOADER
note 3 "$(le $base 8)" 8                   # VIRT_BASE
note 4 "$(le $base 8)" 8                   # PADDR_OFFSET
note 1 "$(le $((base + code_off)) 8)" 8    # ENTRY
note 2 "$(le $((base + hpage_off)) 8)" 8   # HYPERCALL_PAGE
note 10 "$(str '!writable_page_tables')" 22 # FEATURES

# Code at +0x200. shutdown: lea reason(%rip),%rsi; mov $2,%edi (SCHEDOP_shutdown);
# call hypercall_page + 29*32 (__HYPERVISOR_sched_op); ud2. reason: u32 at +0x220.
shutdown() {
	code='\x48\x8d\x35'$(le $((0x220 - 0x207)) 4)'\xbf\x02\x00\x00\x00\xe8'$(le $((hpage_off + 29 * 32 - 0x211)) 4)'\x0f\x0b'
	code+=$(printf '\\x00%.0s' {1..13})$(le "$1" 4) # pad 0x213..0x220, then the reason
}
case $mode in
	poweroff) shutdown 0 ;;
	crash) shutdown 3 ;;
	fault) code='\x0f\x0b' ;;
	hang) code='\xeb\xfe' ;;
	*) echo "mini-guest: unknown mode $mode" >&2; exit 1 ;;
esac

phoff=64 notes_off=$((64 + 2 * 56))
[ $((notes_off + notes_len)) -le $code_off ] || { echo "mini-guest: notes overflow" >&2; exit 1; }
{
	# ELF header: ELFCLASS64, little-endian, ET_EXEC, EM_X86_64, 2 phdrs, no sections.
	printf '\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00'
	printf "$(le 2 2)$(le 62 2)$(le 1 4)$(le $((base + code_off)) 8)$(le $phoff 8)$(le 0 8)"
	printf "$(le 0 4)$(le 64 2)$(le 56 2)$(le 2 2)$(le 64 2)$(le 0 2)$(le 0 2)"
	# PT_LOAD, RWX, the whole file at VIRT_BASE.
	printf "$(le 1 4)$(le 7 4)$(le 0 8)$(le $base 8)$(le $base 8)$(le $size 8)$(le $size 8)$(le 4096 8)"
	# PT_NOTE
	printf "$(le 4 4)$(le 4 4)$(le $notes_off 8)$(le $((base + notes_off)) 8)$(le $((base + notes_off)) 8)"
	printf "$(le $notes_len 8)$(le $notes_len 8)$(le 4 8)"
	printf "$notes"
	head -c $((code_off - notes_off - notes_len)) /dev/zero
	printf "$code"
} >"$out.tmp"
cur=$(stat -c %s "$out.tmp")
head -c $((hpage_off - cur)) /dev/zero >>"$out.tmp"
head -c 4096 /dev/zero | tr '\0' '\303' >>"$out.tmp" # hypercall page: ret until Xen fills it
mv "$out.tmp" "$out"
