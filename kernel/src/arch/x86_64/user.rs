//! Running code in user mode: the one-way trip out (`run`) and the way back (`exit_to_kernel`).
//!
//! One process runs at a time. `run` saves the kernel's context and irets to user mode; the
//! process then re-enters the kernel only through Xen (syscall, exception, event) on the stack
//! registered with HYPERVISOR_stack_switch. A handler that decides the process is over calls
//! `exit_to_kernel`, which abandons that stack and makes `run` return.

use core::cell::UnsafeCell;

use super::trap_frame::TrapFrame;
use crate::xen::abi::PAGE_SIZE;
use crate::xen::{abi, hypercall, XenError};

/// Where user mode starts: boot/user.S reads these offsets.
#[repr(C)]
pub struct UserEntry {
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
}

/// The kernel's callee-saved state at `run`, restored by `exit_to_kernel` (boot/user.S).
#[repr(C)]
struct KernelContext {
    rbx: u64,
    rbp: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    rsp: u64,
    rip: u64,
}

const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(UserEntry, rsp) == 8 && offset_of!(UserEntry, rflags) == 16);
    assert!(offset_of!(KernelContext, rsp) == 48 && offset_of!(KernelContext, rip) == 56);
};

struct Saved(UnsafeCell<KernelContext>);
// SAFETY: one vCPU, one process at a time: `run` writes the context before user mode starts
// and `exit_to_kernel` reads it after, never concurrently.
unsafe impl Sync for Saved {}

static SAVED: Saved = Saved(UnsafeCell::new(KernelContext {
    rbx: 0,
    rbp: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    rsp: 0,
    rip: 0,
}));

extern "C" {
    fn user_enter(entry: *const UserEntry, saved: *mut KernelContext) -> u64;
    fn user_exit(saved: *const KernelContext, value: u64) -> !;
    fn syscall_entry();
}

/// The handler for syscalls from user mode: a `fn(&mut TrapFrame)`, or 0 (none installed).
static SYSCALL_HANDLER: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(0);

/// Installs the syscall handler (the process layer's dispatcher).
pub fn set_syscall_handler(handler: fn(&mut TrapFrame)) {
    SYSCALL_HANDLER.store(handler as usize, core::sync::atomic::Ordering::SeqCst);
}

/// Called by `trap_dispatch` for a syscall; false when no handler is installed.
pub fn syscall(frame: &mut TrapFrame) -> bool {
    let handler = SYSCALL_HANDLER.load(core::sync::atomic::Ordering::SeqCst);
    if handler == 0 {
        return false;
    }
    // SAFETY: only `set_syscall_handler` stores here, and only `fn(&mut TrapFrame)` values.
    let handler: fn(&mut TrapFrame) = unsafe { core::mem::transmute(handler) };
    handler(frame);
    true
}

/// IF set (events enabled in user mode), reserved bit 1 set.
pub const USER_RFLAGS: u64 = 0x202;

/// Registers the syscall entry (events masked on entry) with Xen.
pub fn init() -> Result<(), XenError> {
    hypercall::register_callback(
        abi::CALLBACKTYPE_SYSCALL,
        abi::CALLBACKF_MASK_EVENTS,
        syscall_entry as *const () as u64,
    )
}

/// The stack Xen switches to when user mode enters the kernel, with a guard page below it.
#[repr(C, align(4096))]
struct TrapStack {
    guard: [u8; PAGE_SIZE as usize],
    stack: [u8; TRAP_STACK_BYTES],
}
const TRAP_STACK_BYTES: usize = 64 * 1024;
#[link_section = ".bss.page_aligned"]
static mut TRAP_STACK: TrapStack =
    TrapStack { guard: [0; PAGE_SIZE as usize], stack: [0; TRAP_STACK_BYTES] };

/// The kernel stack for entries from user mode: the address of its guard page (to be unmapped)
/// and the stack's range (its top goes to [`set_kernel_stack`]).
pub fn trap_stack() -> (u64, core::ops::Range<u64>) {
    let guard = core::ptr::addr_of!(TRAP_STACK) as u64;
    let bottom = guard + PAGE_SIZE;
    (guard, bottom..bottom + TRAP_STACK_BYTES as u64)
}

/// Sets the stack Xen switches to when user mode enters the kernel (HYPERVISOR_stack_switch).
pub fn set_kernel_stack(top: u64) -> Result<(), XenError> {
    hypercall::stack_switch(u64::from(abi::FLAT_KERNEL_SS), top)
}

/// Runs user mode from `entry` until a handler calls `exit_to_kernel`; returns its value.
/// The user page tables (MMUEXT_NEW_USER_BASEPTR) and the kernel stack must be set first.
/// The program starts with the FPU in its reset state, whatever the one before left there.
pub fn run(entry: &UserEntry) -> u64 {
    super::fpu::reset();
    // SAFETY: `entry` is a valid UserEntry; SAVED is only touched here and in
    // `exit_to_kernel`, never concurrently (see `Saved`). user_enter returns through
    // user_exit with the callee-saved registers and stack it saved.
    unsafe { user_enter(entry, SAVED.0.get()) }
}

/// Ends the running process: resumes the kernel where `run` was called, returning `value`.
/// Must be called from a handler entered from user mode (its stack is abandoned).
pub fn exit_to_kernel(value: u64) -> ! {
    // SAFETY: `run` saved a complete context before entering user mode, and the stack it
    // points into is still live (run has not returned).
    unsafe { user_exit(SAVED.0.get(), value) }
}
