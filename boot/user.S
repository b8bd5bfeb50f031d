/* boot/user.S: entering user mode, leaving it for good, and the syscall entry.
 *
 * user_enter(frame: *const TrapFrame, saved: *mut KernelContext) -> u64
 *   saves the callee-saved registers, rsp and a resume address in *saved (KernelContext:
 *   rbx, rbp, r12, r13, r14, r15, rsp, rip at offsets 0..56), then copies *frame (a complete
 *   TrapFrame, TRAP_FRAME_SIZE bytes, its selectors user mode's) onto the stack and leaves
 *   through boot/entry.S's trap_return, as a trap from user mode would: the general registers
 *   are popped and HYPERVISOR_iret takes rip, cs, rflags, rsp, ss. A return frame whose cs has
 *   RPL 3 makes Xen switch to the user page tables (MMUEXT_NEW_USER_BASEPTR) and user mode.
 *
 * user_exit(saved: *const KernelContext, value: u64) -> !
 *   called by a trap or syscall handler (on the stack Xen switched to) when the process is
 *   over: restores the saved context so that user_enter returns `value`.
 *
 * syscall_entry: Xen's CALLBACKTYPE_syscall target. The frame is an exception frame without
 *   an error code; rcx/r11 hold what `syscall` put there (user rip and rflags). */

.equ SYSCALL_VECTOR, {syscall_vector}
.equ TRAP_FRAME_SIZE, {trap_frame_size}

.pushsection .text, "ax", @progbits
.global user_enter
user_enter:
    mov %rbx, 0(%rsi)
    mov %rbp, 8(%rsi)
    mov %r12, 16(%rsi)
    mov %r13, 24(%rsi)
    mov %r14, 32(%rsi)
    mov %r15, 40(%rsi)
    mov %rsp, 48(%rsi)
    lea user_resume(%rip), %rax
    mov %rax, 56(%rsi)
    sub $TRAP_FRAME_SIZE, %rsp
    mov %rdi, %rsi                 /* from the frame */
    mov %rsp, %rdi                 /* to the stack */
    mov $(TRAP_FRAME_SIZE / 8), %ecx
    rep movsq
    jmp trap_return
user_resume:
    ret

.global user_exit
user_exit:
    mov 0(%rdi), %rbx
    mov 8(%rdi), %rbp
    mov 16(%rdi), %r12
    mov 24(%rdi), %r13
    mov 32(%rdi), %r14
    mov 40(%rdi), %r15
    mov 48(%rdi), %rsp
    mov %rsi, %rax
    jmp *56(%rdi)

.global syscall_entry
syscall_entry:
    pop %rcx
    pop %r11
    push $0
    push $SYSCALL_VECTOR
    jmp trap_common
.popsection
