/* boot/user.S: entering user mode, leaving it for good, and the syscall entry.
 *
 * user_enter(entry: *const UserEntry, saved: *mut KernelContext) -> u64
 *   saves the callee-saved registers, rsp and a resume address in *saved (KernelContext:
 *   rbx, rbp, r12, r13, r14, r15, rsp, rip at offsets 0..56), then builds an iret frame from
 *   *entry (UserEntry: rip, rsp, rflags at 0, 8, 16) with the user selectors and jumps to
 *   HYPERVISOR_iret. A return frame whose cs has RPL 3 makes Xen switch to the user page
 *   tables (MMUEXT_NEW_USER_BASEPTR) and user mode. All general registers start at zero.
 *
 * user_exit(saved: *const KernelContext, value: u64) -> !
 *   called by a trap or syscall handler (on the stack Xen switched to) when the process is
 *   over: restores the saved context so that user_enter returns `value`.
 *
 * syscall_entry: Xen's CALLBACKTYPE_syscall target. The frame is an exception frame without
 *   an error code; rcx/r11 hold what `syscall` put there (user rip and rflags). */

.equ FLAT_USER_CS64, 0xe033
.equ FLAT_USER_SS64, 0xe02b
.equ SYSCALL_VECTOR, {syscall_vector}
.equ HYPERVISOR_IRET_ENTRY, 23

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
    pushq $FLAT_USER_SS64
    pushq 8(%rdi)                  /* rsp */
    pushq 16(%rdi)                 /* rflags */
    pushq $FLAT_USER_CS64
    pushq 0(%rdi)                  /* rip */
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %edi, %edi
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    pushq $0                       /* iret flags */
    jmp hypercall_page + HYPERVISOR_IRET_ENTRY * 32
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
