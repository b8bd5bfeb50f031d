//! Running code in user mode: the one-way trip out (`run`) and the way back (`exit_to_kernel`).
//!
//! Each vCPU runs at most one user thread at a time, and keeps its own run state: the kernel
//! context `run` saved, the run's handlers, and the trap stack. `run` saves the kernel's
//! context and irets to user mode; the thread then re-enters the kernel only through Xen
//! (syscall, exception, event) on that vCPU's stack registered with HYPERVISOR_stack_switch,
//! and the trap path hands each trap to the run's [`UserHandlers`]. A handler that decides the
//! run is over returns [`AfterTrap::EndRun`]; once it has returned, the trap path calls
//! `exit_to_kernel`, which abandons that stack and makes `run` return on the same vCPU.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, Ordering};

use super::trap_frame::TrapFrame;
use crate::xen::abi::PAGE_SIZE;
use crate::xen::vcpu::{self, MAX_VCPUS};
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
// SAFETY: each vCPU touches only its own entry of SAVED: `run` writes it before user mode
// starts and `exit_to_kernel` reads it after, on the same vCPU, never concurrently.
unsafe impl Sync for Saved {}

static SAVED: [Saved; MAX_VCPUS] = [const {
    Saved(UnsafeCell::new(KernelContext {
        rbx: 0,
        rbp: 0,
        r12: 0,
        r13: 0,
        r14: 0,
        r15: 0,
        rsp: 0,
        rip: 0,
    }))
}; MAX_VCPUS];

extern "C" {
    fn user_enter(frame: *const TrapFrame, saved: *mut KernelContext) -> u64;
    fn user_exit(saved: *const KernelContext, value: u64) -> !;
    fn syscall_entry();
}

/// What a handler of a trap during a run decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterTrap {
    /// Return to the interrupted code (through HYPERVISOR_iret, with the frame as it is now).
    Resume,
    /// End the run: `run` returns this value. Only a trap taken from user mode may end it.
    EndRun(u64),
}

/// Who serves user mode during one [`run`]: a program's kernel side, or a self-test's probe.
#[derive(Clone, Copy)]
pub struct UserHandlers {
    /// A `syscall` from user mode.
    pub syscall: fn(&mut TrapFrame) -> AfterTrap,
    /// An exception from user mode.
    pub exception: fn(&mut TrapFrame) -> AfterTrap,
    /// A timer event or an IPI for this vCPU during the run, in user mode or while the kernel
    /// works for it (the frame says which).
    pub event: fn(&mut TrapFrame) -> AfterTrap,
}

/// Each vCPU's handlers of the run in progress on it; null between runs.
static RUNNING: [AtomicPtr<UserHandlers>; MAX_VCPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_VCPUS];

/// The handlers of the run in progress on the running vCPU, for the trap path.
pub fn running() -> Option<&'static UserHandlers> {
    let handlers = RUNNING[vcpu::current()].load(Ordering::SeqCst);
    // SAFETY: only `run` stores here: null, or a pointer made from a `&'static UserHandlers`,
    // which is never written through.
    unsafe { handlers.as_ref() }
}

/// IF set (events enabled in user mode), reserved bit 1 set.
pub const USER_RFLAGS: u64 = 0x202;

/// Registers the syscall entry (events masked on entry) with Xen.
pub fn init() -> Result<(), XenError> {
    hypercall::register_callback(
        abi::CALLBACKTYPE_SYSCALL,
        abi::CALLBACKF_MASK_EVENTS,
        syscall_entry_address(),
    )
}

/// Where Xen enters for a `syscall` from user mode (boot/user.S), for vCPU 0's callback_op and
/// the other vCPUs' VCPUOP_initialise context.
pub fn syscall_entry_address() -> u64 {
    syscall_entry as *const () as u64
}

/// Pages used as a stack by the CPU and Xen: only their addresses are handed out, no Rust
/// reference to their contents is ever made.
#[repr(C, align(4096))]
pub struct StackPages<const BYTES: usize>(UnsafeCell<[u8; BYTES]>);

// SAFETY: the contents are never read or written as Rust data (only through the addresses
// `range` gives, by the CPU and Xen, on one vCPU), so sharing the static is sound.
unsafe impl<const BYTES: usize> Sync for StackPages<BYTES> {}

impl<const BYTES: usize> StackPages<BYTES> {
    pub const fn new() -> Self {
        StackPages(UnsafeCell::new([0; BYTES]))
    }

    /// The addresses the pages span.
    pub fn range(&self) -> core::ops::Range<u64> {
        let start = self.0.get() as u64;
        start..start + BYTES as u64
    }
}

impl<const BYTES: usize> Default for StackPages<BYTES> {
    fn default() -> Self {
        Self::new()
    }
}

/// The size of a trap stack (vCPU 0's below, the other vCPUs' from the heap, see smp.rs).
pub const TRAP_STACK_BYTES: usize = 64 * 1024;
/// vCPU 0's stack Xen switches to when user mode enters the kernel, with a guard page below it.
#[link_section = ".bss.page_aligned"]
static TRAP_STACK: StackPages<{ PAGE_SIZE as usize + TRAP_STACK_BYTES }> = StackPages::new();

/// vCPU 0's kernel stack for entries from user mode: the address of its guard page (to be unmapped)
/// and the stack's range (its top goes to [`set_kernel_stack`]).
pub fn trap_stack() -> (u64, core::ops::Range<u64>) {
    let pages = TRAP_STACK.range();
    (pages.start, pages.start + PAGE_SIZE..pages.end)
}

/// Sets the stack Xen switches to when user mode enters the kernel on the calling vCPU
/// (HYPERVISOR_stack_switch acts on the vCPU that makes it).
pub fn set_kernel_stack(top: u64) -> Result<(), XenError> {
    hypercall::stack_switch(u64::from(abi::FLAT_KERNEL_SS), top)
}

/// Runs user mode from `entry` with every other register zero; see [`run_registers`].
pub fn run(entry: &UserEntry, handlers: &'static UserHandlers) -> u64 {
    let frame =
        TrapFrame { rip: entry.rip, rsp: entry.rsp, rflags: entry.rflags, ..TrapFrame::default() };
    run_registers(&frame, handlers)
}

/// The rflags bits user mode may carry into an iret: the arithmetic flags, TF, DF, OF, AC, ID
/// (IOPL, NT, VM, RF and the other system bits stay clear); IF and the reserved bit 1 are set.
const USER_RFLAGS_KEPT: u64 = 0x0024_0dd5;

/// Runs user mode with the general registers, rip, rsp and rflags of `registers` (a new
/// thread resumes with its parent's registers at the parent's system call), its traps on this
/// vCPU served by `handlers`, until one of them returns [`AfterTrap::EndRun`]; returns its
/// value. The selectors are user mode's and rflags keeps only what user mode may set, whatever
/// `registers` holds. The user page tables (MMUEXT_NEW_USER_BASEPTR) and this vCPU's kernel
/// stack must be set first. The thread starts with the FPU in its reset state, whatever the one
/// before left there.
pub fn run_registers(registers: &TrapFrame, handlers: &'static UserHandlers) -> u64 {
    super::fpu::reset();
    let me = vcpu::current();
    let frame = TrapFrame {
        cs: u64::from(abi::FLAT_USER_CS64),
        ss: u64::from(abi::FLAT_USER_SS64),
        rflags: (registers.rflags & USER_RFLAGS_KEPT) | USER_RFLAGS,
        vector: 0,
        error_code: 0,
        ..*registers
    };
    let handlers = core::ptr::from_ref(handlers).cast_mut();
    let outer = RUNNING[me].compare_exchange(
        core::ptr::null_mut(),
        handlers,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    assert!(outer.is_ok(), "user::run inside a run");
    // SAFETY: `frame` is a complete TrapFrame; this vCPU's SAVED entry is only touched here and
    // in `exit_to_kernel` on this vCPU, never concurrently (see `Saved`). user_enter returns
    // through user_exit with the callee-saved registers and stack it saved.
    let value = unsafe { user_enter(&frame, SAVED[me].0.get()) };
    RUNNING[me].store(core::ptr::null_mut(), Ordering::SeqCst);
    value
}

/// Ends the run in progress on this vCPU: resumes the kernel where `run` was called on it,
/// returning `value`.
///
/// # Safety
/// Only the trap path may call this, for a trap taken from user mode while `run` runs on this
/// vCPU (so that its `SAVED` entry holds `run`'s live context), once every frame on the trap's
/// stack that owns something to drop has returned: the stack is abandoned, nothing on it is
/// dropped.
pub(super) unsafe fn exit_to_kernel(value: u64) -> ! {
    // SAFETY: the caller guarantees a run is in progress on this vCPU, so `run` saved a
    // complete context before entering user mode and the stack it points into is still live.
    unsafe { user_exit(SAVED[vcpu::current()].0.get(), value) }
}
