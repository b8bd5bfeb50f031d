/* boot/head.S: the Xen ELF notes, the guarded hypercall page and _start.
 *
 * Xen's PV domain builder reads the notes below (Xen public/elfnote.h), maps the image at
 * VIRT_BASE, writes the hypercall page and jumps to ENTRY with %rsi = the virtual address of
 * start_info. We run on our own stack from the first instruction. */

.equ XEN_ELFNOTE_ENTRY, 1
.equ XEN_ELFNOTE_HYPERCALL_PAGE, 2
.equ XEN_ELFNOTE_VIRT_BASE, 3
.equ XEN_ELFNOTE_PADDR_OFFSET, 4
.equ XEN_ELFNOTE_XEN_VERSION, 5
.equ XEN_ELFNOTE_GUEST_OS, 6
.equ XEN_ELFNOTE_GUEST_VERSION, 7
.equ XEN_ELFNOTE_LOADER, 8

/* One note: name "Xen", a type, and a payload emitted by the body given as \payload_kind. */
.macro xen_note_begin type
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 2f - 1f            /* namesz */
    .long 4f - 3f            /* descsz */
    .long \type
1:  .asciz "Xen"
2:  .balign 4
3:
.endm
.macro xen_note_end
4:  .balign 4
    .popsection
.endm
.macro xen_note_string type, text
    xen_note_begin \type
    .asciz "\text"
    xen_note_end
.endm
.macro xen_note_quad type, value
    xen_note_begin \type
    .quad \value
    xen_note_end
.endm

xen_note_string XEN_ELFNOTE_GUEST_OS,      faultline
xen_note_string XEN_ELFNOTE_GUEST_VERSION, 0.1
xen_note_string XEN_ELFNOTE_XEN_VERSION,   xen-3.0
xen_note_string XEN_ELFNOTE_LOADER,        generic
xen_note_quad   XEN_ELFNOTE_VIRT_BASE,      KERNEL_BASE
xen_note_quad   XEN_ELFNOTE_PADDR_OFFSET,   KERNEL_BASE
xen_note_quad   XEN_ELFNOTE_ENTRY,          _start
xen_note_quad   XEN_ELFNOTE_HYPERCALL_PAGE, hypercall_page

/* Poisoned with `ret` so that a call through a page Xen never wrote returns at once with
 * %rax unchanged; boot checks the first byte before the first hypercall (as XTF does). */
.pushsection .text.hypercall_page, "ax", @progbits
.balign 4096
.global hypercall_page
hypercall_page:
    .fill 4096, 1, 0xc3
.popsection

.pushsection .text.boot, "ax", @progbits
.global _start
_start:
    cld
    lea boot_stack_top(%rip), %rsp
    xor %ebp, %ebp                 /* ends the frame-pointer chain for backtraces */
    mov %rsi, %rdi                 /* start_info, first argument */
    call kernel_start              /* never returns */
    ud2

/* Where another vCPU starts (arch/x86_64/smp.rs gives Xen this address in its
 * VCPUOP_initialise context): %rsp is the top of its own stack (16-byte aligned), %rdi its
 * number, events masked. */
.global secondary_start
secondary_start:
    cld
    xor %ebp, %ebp                 /* ends the frame-pointer chain for backtraces */
    call secondary_main            /* never returns */
    ud2
.popsection

/* The boot stack (256 KiB: building the memory manager moves its page tables, ~20 KiB with the
   update queue, by value a few times), with its guard page right below it (unmapped by the
   memory manager once it exists; until then an overflow would run into .data). */
.pushsection .bss.page_aligned, "aw", @nobits
.balign 4096
.global boot_stack_guard
boot_stack_guard:
    .skip 4096
.global boot_stack_bottom
boot_stack_bottom:
    .skip 64 * 4096
.global boot_stack_top
boot_stack_top:
.popsection
