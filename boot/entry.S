/* boot/entry.S: PV exception entry stubs and the return through HYPERVISOR_iret.
 *
 * Xen delivers an exception to a 64-bit PV kernel by pushing a frame on the kernel stack
 * (Xen public/arch-x86/xen-x86_64.h, "struct iret_context" and the bounce frame) and jumping
 * to the handler registered with set_trap_table:
 *
 *            +--------------------+  <- stack top (16-byte aligned by Xen)
 *            | ss                 |
 *            | rsp                |
 *            | rflags             |
 *            | cs (bits 32-39: saved upcall mask)
 *            | rip                |
 *            | error code         |  only for vectors 8, 10-14, 17
 *            | r11                |
 *  %rsp ->   | rcx                |
 *            +--------------------+
 *
 * Each stub pops rcx/r11 (restoring the interrupted values), pushes a zero error code where the
 * CPU has none and the vector number, and joins trap_common, which saves the general registers
 * into a `TrapFrame` (kernel/src/arch/x86_64/trap_frame.rs; its offsets are asserted there) and
 * calls `trap_dispatch(&mut TrapFrame)`. On return the registers are restored and the stub
 * jumps to the iret entry of the hypercall page with a zero flags word on the stack: Xen's iret
 * pushes rax/r11/rcx itself and restores rip, cs, rflags (IF restores the event mask), rsp, ss. */

.equ HYPERVISOR_IRET, 23

.pushsection .text, "ax", @progbits

/* One stub per vector 0-255, 16 bytes apart (pop, pop, push $0, push $imm32, jmp rel32: at
 * most 15 bytes), so that `trap_stubs + vector * 16` is the stub of `vector`; traps.rs checks
 * the stride against trap_stubs_end and registers them all from that one formula. Which vectors
 * come with an error code is Rust's fact (exception::ERROR_CODE_VECTORS, a bit per vector),
 * handed in by main.rs as the `error_code_vectors` operand. Vectors 20-255 are no exception of
 * the CPU's (Xen forwards none of them), but a guest must be able to report any vector. */
.balign 16
.global trap_stubs
trap_stubs:
.set stub_vector, 0
.rept 256
    .balign 16
    pop %rcx
    pop %r11
.set stub_has_error_code, 0
.if stub_vector < 32
.set stub_has_error_code, (({error_code_vectors}) >> stub_vector) & 1
.endif
.if stub_has_error_code == 0
    push $0
.endif
    push $stub_vector
    jmp trap_common
    .set stub_vector, stub_vector + 1
.endr
.balign 16
.global trap_stubs_end
trap_stubs_end:

trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call trap_dispatch
.global trap_return
trap_return:
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp                  /* vector and error code */
    push $0                        /* iret flags: a full return, not a sysret */
    jmp hypercall_page + HYPERVISOR_IRET * 32

.popsection

/* Event upcall (CALLBACKTYPE_event): the same frame as an exception without an error code.
 * Xen masks events on entry; iret restores the mask from the saved rflags.IF. */
.equ EVENT_UPCALL_VECTOR, {event_upcall_vector}
.equ FAILSAFE_VECTOR, {failsafe_vector}

.pushsection .text, "ax", @progbits
.global event_upcall_entry
event_upcall_entry:
    pop %rcx
    pop %r11
    push $0
    push $EVENT_UPCALL_VECTOR
    jmp trap_common

/* Failsafe callback: Xen could not load the guest's segment state. Its frame has ds, es, fs, gs
 * between r11 and rip; they are dropped and the report shows the rest. */
.global failsafe_entry
failsafe_entry:
    pop %rcx
    pop %r11
    add $32, %rsp
    push $0
    push $FAILSAFE_VECTOR
    jmp trap_common
.popsection
