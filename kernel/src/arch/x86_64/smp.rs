//! Bringing up the domain's other vCPUs: a PV context each (VCPUOP_initialise), VCPUOP_up, and
//! their first Rust code, which arms its own timer, then idles and answers IPIs.
//!
//! vCPU 0 does all of the set-up: it counts the vCPUs (`xen::vcpu::count`), gives each one a
//! stack, an IPI port and a context, starts it, and waits (bounded) until every started vCPU
//! has reported what it did. A started vCPU runs [`secondary_main`] on its own stack with its
//! own `vcpu_info` slot, `%gs` record, timer and trap stack. A program's main thread runs on
//! vCPU 0; another vCPU runs a thread only when its [`Mailbox`] is handed one ([`post`]): it
//! runs the job from its idle loop and acknowledges when the job has returned. What it reports
//! lives in [`SECONDARIES`], written by that vCPU, read by vCPU 0.

use core::ops::Range;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use alloc::boxed::Box;

use super::{traps, user};
use crate::xen::abi::{self, VcpuGuestContext};
use crate::xen::vcpu::{self, MAX_VCPUS};
use crate::xen::{events, hypercall, shared_info, time, XenError};

extern "C" {
    /// A started vCPU's first instruction (boot/head.S): calls [`secondary_main`].
    fn secondary_start();
}

/// Each started vCPU's kernel stack, taken from the heap (its pages faulted in by vCPU 0
/// before the vCPU starts: it never faults, so it never waits for the memory manager's lock),
/// with a guard page below it, as below its trap stack ([`GuardedStack`]).
pub const STACK_BYTES: usize = 32 * 1024;
/// How long vCPU 0 waits for the started vCPUs to report, and for an IPI's answer (Xen system
/// time; generous: QEMU's TCG shares two host cores with other boots).
const REPORT_WAIT_NS: u64 = 20_000_000_000;
/// vCPU 0 re-checks the started vCPUs' reports this often while it waits for them.
const POLL_NS: u64 = 1_000_000;
/// The delay of a started vCPU's first one-shot timer.
const FIRST_TIMER_NS: u64 = 1_000_000;

/// How far a started vCPU got, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Stage {
    /// Not started, or started but it has not run any Rust code yet.
    NotStarted = 0,
    /// It runs [`secondary_main`] on its own stack.
    Entered = 1,
    /// Its timer is bound and armed; it waits for the timer's event.
    TimerArmed = 2,
    /// Its timer fired: it idles, answering IPIs.
    Ready = 3,
    /// A step of its set-up failed (see [`Secondary::failure`]); it idles.
    Failed = 4,
}

impl Stage {
    fn from_u32(value: u32) -> Stage {
        match value {
            1 => Stage::Entered,
            2 => Stage::TimerArmed,
            3 => Stage::Ready,
            4 => Stage::Failed,
            _ => Stage::NotStarted,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Stage::NotStarted => "it never ran any of our code",
            Stage::Entered => "it entered Rust code but did not arm its timer",
            Stage::TimerArmed => "it armed its timer, whose event never came",
            Stage::Ready => "it is ready",
            Stage::Failed => "its set-up failed",
        }
    }
}

/// The step of a started vCPU's own set-up that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SetupStep {
    /// `%gs:0` did not name the vCPU: its `%gs` base is not its own record.
    OwnNumber = 0,
    /// Binding VIRQ_TIMER to itself (VCPUOP_stop_periodic_timer, EVTCHNOP_bind_virq/unmask).
    BindTimer = 1,
    /// VCPUOP_set_singleshot_timer on itself.
    ArmTimer = 2,
    /// SCHEDOP_block while it waited for its timer, or while it idled.
    Block = 3,
    /// EVTCHNOP_send of its answer to vCPU 0.
    Answer = 4,
    /// HYPERVISOR_stack_switch to its own trap stack.
    TrapStack = 5,
}

impl SetupStep {
    fn from_u32(value: u32) -> SetupStep {
        match value {
            0 => SetupStep::OwnNumber,
            1 => SetupStep::BindTimer,
            2 => SetupStep::ArmTimer,
            3 => SetupStep::Block,
            5 => SetupStep::TrapStack,
            _ => SetupStep::Answer,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SetupStep::OwnNumber => "%gs:0 (its own number)",
            SetupStep::BindTimer => "binding VIRQ_TIMER to itself",
            SetupStep::ArmTimer => "VCPUOP_set_singleshot_timer",
            SetupStep::Block => "SCHEDOP_block",
            SetupStep::Answer => "EVTCHNOP_send (its answer to vCPU 0)",
            SetupStep::TrapStack => "HYPERVISOR_stack_switch (its trap stack)",
        }
    }
}

/// What a started vCPU reports to vCPU 0: written by that vCPU only (but `stack`, which vCPU 0
/// sets before starting it), read by vCPU 0.
struct Secondary {
    stage: AtomicU32,
    /// The failed [`SetupStep`] and Xen's errno (or, for `OwnNumber`, the number `%gs:0` gave).
    failed_step: AtomicU32,
    failed_value: AtomicI64,
    /// Its stack's lowest address and top.
    stack_bottom: AtomicU64,
    stack_top: AtomicU64,
    /// The top of its trap stack (where Xen enters the kernel from user mode on it).
    trap_stack_top: AtomicU64,
    /// Its stack pointer in `secondary_main`.
    rsp_seen: AtomicU64,
    /// IPIs it answered.
    answered: AtomicU64,
    /// Failures of its idle loop since they were last taken ([`take_idle_failures`]): a block
    /// or an answer Xen refused once it was ready. The vCPU stays in service; the first one's
    /// step and errno are in `failed_step` and `failed_value`.
    idle_failures: AtomicU64,
}

static SECONDARIES: [Secondary; MAX_VCPUS] = [const {
    Secondary {
        stage: AtomicU32::new(Stage::NotStarted as u32),
        failed_step: AtomicU32::new(0),
        failed_value: AtomicI64::new(0),
        stack_bottom: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
        trap_stack_top: AtomicU64::new(0),
        rsp_seen: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        idle_failures: AtomicU64::new(0),
    }
}; MAX_VCPUS];

impl Secondary {
    fn stage(&self) -> Stage {
        Stage::from_u32(self.stage.load(Ordering::Acquire))
    }

    fn fail(&self, step: SetupStep, value: i64) {
        self.failed_step.store(step as u32, Ordering::Relaxed);
        self.failed_value.store(value, Ordering::Relaxed);
        self.stage.store(Stage::Failed as u32, Ordering::Release);
    }

    /// A failure of the idle loop: counted (and the first one named) for vCPU 0 to report,
    /// without taking the vCPU out of service (a refused answer is a late wake-up for vCPU 0,
    /// whose waits are bounded; a refused block a busier loop).
    fn fail_idle(&self, step: SetupStep, value: i64) {
        if self.idle_failures.load(Ordering::Acquire) == 0 {
            self.failed_step.store(step as u32, Ordering::Relaxed);
            self.failed_value.store(value, Ordering::Relaxed);
        }
        self.idle_failures.fetch_add(1, Ordering::AcqRel);
    }
}

/// How one vCPU other than 0 fared.
#[derive(Clone, Debug)]
pub enum VcpuOutcome {
    /// It ran on its own stack (`rsp` was inside `stack`) and its own timer fired.
    Online { stack: Range<u64>, rsp: u64, timer_events: u64 },
    /// vCPU 0 could not start it: `call` failed. What was set up for it before (its stacks and
    /// their guard pages, its IPI port) was undone, unless `undo` says closing the port failed
    /// or `guards_back` that a guard page did not go back to the heap.
    NotStarted {
        call: &'static str,
        error: XenError,
        undo: Result<(), XenError>,
        guards_back: Result<(), GuardRefused>,
    },
    /// vCPU 0 could not put the guard page `guard` below one of its stacks; its stacks (and the
    /// guard already set, unless `guards_back` says otherwise) went back to the heap.
    Unguarded { guard: &'static str, refused: GuardRefused, guards_back: Result<(), GuardRefused> },
    /// It started, and a step of its own set-up failed with Xen's `error` (or, for
    /// [`SetupStep::OwnNumber`], `%gs:0` gave `value`).
    Failed { step: SetupStep, value: i64 },
    /// It did not report within the wait: how far it got.
    Silent(Stage),
}

impl core::fmt::Display for VcpuOutcome {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VcpuOutcome::Online { stack, rsp, timer_events } => write!(
                f,
                "ran on its own stack ({:#x}..{:#x}, rsp {rsp:#x}), took {timer_events} event(s) of its own timer",
                stack.start, stack.end
            ),
            VcpuOutcome::NotStarted { call, error, undo, guards_back } => {
                write!(f, "{call}: {error}: it stays down")?;
                if let Err(e) = undo {
                    write!(f, " (and EVTCHNOP_close of its IPI port: {e})")?;
                }
                write_guards_back(f, guards_back)
            }
            VcpuOutcome::Unguarded { guard, refused, guards_back } => {
                write!(f, "its guard page {guard}: {refused}: it stays down")?;
                write_guards_back(f, guards_back)
            }
            VcpuOutcome::Failed { step: SetupStep::OwnNumber, value } => {
                write!(f, "%gs:0 names vCPU {value}, not itself")
            }
            VcpuOutcome::Failed { step, value } => write!(f, "{}: {}", step.name(), XenError(*value)),
            VcpuOutcome::Silent(stage) => {
                write!(f, "started but did not report: {}", stage.describe())
            }
        }
    }
}

fn write_guards_back(
    f: &mut core::fmt::Formatter<'_>,
    guards_back: &Result<(), GuardRefused>,
) -> core::fmt::Result {
    match guards_back {
        Ok(()) => Ok(()),
        Err(e) => write!(f, " (and giving a guard page back to the heap: {e})"),
    }
}

/// Keeps a guard page below every stack a started vCPU gets: the memory manager implements it,
/// and start passes it to [`bring_up`] (arch cannot name mm: tests/layers.rs).
pub trait StackGuards {
    /// Unmaps `page`, a mapped heap page right below a stack, and records it as the guard page
    /// `name`: a touch is then reported as an overflow of that stack.
    fn add(&mut self, name: &'static str, page: u64) -> Result<(), GuardRefused>;
    /// Gives the guard page at `page` back to the heap: its record goes, a page is mapped
    /// there again. Called before the stack above it goes back to the heap.
    fn remove(&mut self, page: u64) -> Result<(), GuardRefused>;
}

/// Why the memory manager refused a guard page: what failed, with Xen's errno when Xen said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardRefused {
    pub what: &'static str,
    pub xen: Option<XenError>,
}

impl core::fmt::Display for GuardRefused {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.xen {
            Some(e) => write!(f, "{}: {e}", self.what),
            None => write!(f, "{}", self.what),
        }
    }
}

macro_rules! guard_names {
    ($($n:literal)*) => {
        [$([concat!("vcpu", $n, "-stack-guard"), concat!("vcpu", $n, "-trap-stack-guard")]),*]
    };
}

/// The names of vCPU n's guard pages: `[kernel stack, trap stack]` (the array's type checks
/// that every vCPU up to [`MAX_VCPUS`] has its pair).
const GUARD_NAMES: [[&str; 2]; MAX_VCPUS] = guard_names!(
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
);

/// The vCPUs and how each fared.
pub struct Bringup {
    /// vCPUs the domain has (at most [`MAX_VCPUS`]).
    pub count: usize,
    /// The domain has more than [`MAX_VCPUS`]: the rest are left down.
    pub beyond_max: bool,
    /// `outcomes[n]` for vCPU n, 1 <= n < count.
    pub outcomes: [Option<VcpuOutcome>; MAX_VCPUS],
}

/// Counts the domain's vCPUs and brings up all but vCPU 0, whose kernel page tables they share
/// (`kernel_l4_mfn`, the machine frame of the kernel's L4). `Err` names the hypercall that
/// failed before any vCPU could start; a vCPU that fails alone is in the outcomes.
pub fn bring_up(
    kernel_l4_mfn: u64,
    guards: &mut dyn StackGuards,
) -> Result<Bringup, (&'static str, XenError)> {
    let (count, beyond_max) = vcpu::count().map_err(|e| ("VCPUOP_is_up", e))?;
    let mut bringup = Bringup { count, beyond_max, outcomes: [const { None }; MAX_VCPUS] };
    if count == 1 {
        return Ok(bringup);
    }
    vcpu::use_locals().map_err(|e| ("HYPERVISOR_set_segment_base(SEGBASE_GS_KERNEL)", e))?;
    events::bind_ipi(0).map_err(|e| (e.call, e.error))?;
    for n in 1..count {
        if let Err(not_started) = start(n, kernel_l4_mfn, guards) {
            bringup.outcomes[n] = Some(not_started);
        }
    }
    let started: [bool; MAX_VCPUS] =
        core::array::from_fn(|n| (1..count).contains(&n) && bringup.outcomes[n].is_none());
    let deadline = time::now_ns() + REPORT_WAIT_NS;
    let reported =
        || (1..count).filter(|&n| started[n]).all(|n| SECONDARIES[n].stage() >= Stage::Ready);
    while !reported() && time::now_ns() < deadline {
        let slice = deadline.min(time::now_ns() + POLL_NS);
        events::wait_until(reported, slice).map_err(|e| ("waiting for the vCPUs (timer)", e))?;
    }
    for n in (1..count).filter(|&n| started[n]) {
        bringup.outcomes[n] = Some(outcome_of(n));
    }
    Ok(bringup)
}

/// Gives vCPU `n` its stacks (each with a guard page below it), an IPI port, a masked
/// `vcpu_info` and its context, and starts it. If that fails before Xen took the context, the
/// stacks (their guards first) and the port are given back; once it took it, the vCPU keeps
/// them (Xen holds its context until the domain dies).
fn start(n: usize, kernel_l4_mfn: u64, guards: &mut dyn StackGuards) -> Result<(), VcpuOutcome> {
    let not_started =
        |call, error, undo, guards_back| VcpuOutcome::NotStarted { call, error, undo, guards_back };
    let [stack_guard, trap_stack_guard] = GUARD_NAMES[n];
    let stack = match GuardedStack::new(STACK_BYTES, stack_guard, guards) {
        Ok(stack) => stack,
        Err(StackError::Heap) => {
            return Err(not_started("allocating its stack", XenError::ENOMEM, Ok(()), Ok(())))
        }
        Err(StackError::Guard(refused)) => {
            return Err(VcpuOutcome::Unguarded { guard: stack_guard, refused, guards_back: Ok(()) })
        }
    };
    let trap_stack = match GuardedStack::new(user::TRAP_STACK_BYTES, trap_stack_guard, guards) {
        Ok(stack) => stack,
        Err(failure) => {
            // SAFETY: the stack was never handed out: nothing runs on it.
            let guards_back = unsafe { stack.free(guards) };
            return Err(match failure {
                StackError::Heap => {
                    not_started("allocating its trap stack", XenError::ENOMEM, Ok(()), guards_back)
                }
                StackError::Guard(refused) => {
                    VcpuOutcome::Unguarded { guard: trap_stack_guard, refused, guards_back }
                }
            });
        }
    };
    let mut free_both = |stack: GuardedStack, trap_stack: GuardedStack| {
        // SAFETY: (both) the stacks were never handed to a running vCPU.
        let first = unsafe { stack.free(guards) };
        // SAFETY: as above.
        let second = unsafe { trap_stack.free(guards) };
        first.and(second)
    };
    if let Err(e) = events::bind_ipi(n) {
        let guards_back = free_both(stack, trap_stack);
        return Err(not_started(e.call, e.error, e.undo, guards_back));
    }
    // It starts with events masked (its first code must not take an upcall before it knows
    // its own number); Xen reads the mask from its vcpu_info slot.
    shared_info::set_upcall_mask_of(n, true);
    let context = context(n, stack.range.end, kernel_l4_mfn);
    if let Err(e) = hypercall::vcpu_initialise(n as u32, &context) {
        let undo = events::unbind_ipi(n);
        // Xen refused the context, so no vCPU runs on either stack.
        let guards_back = free_both(stack, trap_stack);
        return Err(not_started("VCPUOP_initialise", e, undo, guards_back));
    }
    let me = &SECONDARIES[n];
    me.stack_bottom.store(stack.range.start, Ordering::Relaxed);
    me.stack_top.store(stack.range.end, Ordering::Relaxed);
    crate::arch::x86_64::crash::register_stack(stack.range);
    crate::arch::x86_64::crash::register_stack(trap_stack.range.clone());
    me.trap_stack_top.store(trap_stack.range.end, Ordering::Release);
    hypercall::vcpu_up(n as u32).map_err(|e| not_started("VCPUOP_up", e, Ok(()), Ok(())))
}

/// A kernel stack from the heap with a guard page right below it: the allocation is one page
/// more than the stack, and its lowest page is the guard.
struct GuardedStack {
    guard: u64,
    range: Range<u64>,
}

/// Why [`GuardedStack::new`] gave nothing (what it had taken went back).
enum StackError {
    Heap,
    Guard(GuardRefused),
}

impl GuardedStack {
    /// A stack of `bytes` and its guard page `name`. Every page is touched here (on vCPU 0) so
    /// that the vCPU that runs on the stack never takes a page fault there, and so that the
    /// guard page is mapped when `guards` unmaps it. Once a vCPU runs on it, it is never freed
    /// (a vCPU stays up).
    fn new(
        bytes: usize,
        name: &'static str,
        guards: &mut dyn StackGuards,
    ) -> Result<GuardedStack, StackError> {
        let layout = stack_layout(bytes).ok_or(StackError::Heap)?;
        // SAFETY: the layout has a non-zero size.
        let bottom = unsafe { alloc::alloc::alloc_zeroed(layout) };
        if bottom.is_null() {
            return Err(StackError::Heap);
        }
        for page in (0..layout.size()).step_by(abi::PAGE_SIZE as usize) {
            // SAFETY: `bottom` is a fresh allocation of `layout.size()` bytes; a volatile write
            // of one byte of each page makes sure the page is mapped now, whatever
            // alloc_zeroed did.
            unsafe { bottom.add(page).write_volatile(0) };
        }
        let guard = bottom as u64;
        if let Err(refused) = guards.add(name, guard) {
            // SAFETY: allocated above with this layout; nothing runs on it, and the memory
            // manager kept no guard record for it (a page it unmapped before it failed is
            // demand-zero heap again).
            unsafe { alloc::alloc::dealloc(bottom, layout) };
            return Err(StackError::Guard(refused));
        }
        let stack_bottom = guard + abi::PAGE_SIZE;
        Ok(GuardedStack { guard, range: stack_bottom..stack_bottom + bytes as u64 })
    }

    /// Gives the guard page back to the heap, then the whole allocation. The allocation goes
    /// back even when the guard did not: the memory manager forgets the guard's record before
    /// anything else, so the heap never faults on it (a page that could not be mapped again is
    /// demand-zero heap again).
    ///
    /// # Safety
    /// Nothing may run on the stack, now or later.
    unsafe fn free(self, guards: &mut dyn StackGuards) -> Result<(), GuardRefused> {
        let back = guards.remove(self.guard);
        if let Some(layout) = stack_layout((self.range.end - self.range.start) as usize) {
            // SAFETY: the allocation starts at the guard and came from `new` with this layout;
            // nothing runs on it.
            unsafe { alloc::alloc::dealloc(self.guard as *mut u8, layout) };
        }
        back
    }
}

/// The allocation of a stack of `bytes`: the stack and its guard page, page-aligned.
fn stack_layout(bytes: usize) -> Option<core::alloc::Layout> {
    let with_guard = bytes.checked_add(abi::PAGE_SIZE as usize)?;
    core::alloc::Layout::from_size_align(with_guard, abi::PAGE_SIZE as usize).ok()
}

/// vCPU `n`'s first state (Xen public/arch-x86/xen.h, `struct vcpu_guest_context`): kernel mode
/// at `secondary_start` with `%rsp` = `stack_top` and `%rdi` = n, the kernel's L4 as its page
/// table base, vCPU 0's trap table and callbacks, and its own `%gs` record. No GDT or LDT: the
/// flat selectors it uses (FLAT_KERNEL_CS/SS) are Xen's own reserved GDT entries, as on vCPU 0,
/// and Xen's pv_set_gdt accepts `gdt_ents = 0`. No FPU state: Xen gives the default control
/// word (the kernel uses no SSE).
fn context(n: usize, stack_top: u64, kernel_l4_mfn: u64) -> Box<VcpuGuestContext> {
    let mut context = Box::new(VcpuGuestContext::zeroed());
    context.flags = u64::from(
        abi::VGCF_in_kernel
            | abi::VGCF_failsafe_disables_events
            | abi::VGCF_syscall_disables_events,
    );
    let regs = &mut context.user_regs;
    regs.rip = secondary_start as *const () as u64;
    regs.rsp = stack_top;
    regs.rdi = n as u64;
    regs.cs = u64::from(abi::FLAT_KERNEL_CS);
    regs.ss = u64::from(abi::FLAT_KERNEL_SS);
    // Only the reserved bit: Xen sets IF itself (events are the upcall mask's business).
    regs.rflags = 0x2;
    context.trap_ctxt = traps::vcpu_context_table();
    context.kernel_ss = u64::from(abi::FLAT_KERNEL_SS);
    context.kernel_sp = stack_top;
    context.ctrlreg[3] = abi::mfn_to_cr3(kernel_l4_mfn);
    context.event_callback_eip = events::upcall_entry();
    context.failsafe_callback_eip = events::failsafe_entry_address();
    context.syscall_callback_eip = user::syscall_entry_address();
    context.gs_base_kernel = vcpu::local_base(n);
    context
}

/// How vCPU `n` (started) fares now, from what it reported.
pub fn outcome_of(n: usize) -> VcpuOutcome {
    let me = &SECONDARIES[n];
    match me.stage() {
        Stage::Ready if me.idle_failures.load(Ordering::Acquire) > 0 => VcpuOutcome::Failed {
            step: SetupStep::from_u32(me.failed_step.load(Ordering::Relaxed)),
            value: me.failed_value.load(Ordering::Relaxed),
        },
        Stage::Ready => VcpuOutcome::Online {
            stack: me.stack_bottom.load(Ordering::Relaxed)..me.stack_top.load(Ordering::Relaxed),
            rsp: me.rsp_seen.load(Ordering::Relaxed),
            timer_events: events::counts_of(n).0,
        },
        Stage::Failed => VcpuOutcome::Failed {
            step: SetupStep::from_u32(me.failed_step.load(Ordering::Relaxed)),
            value: me.failed_value.load(Ordering::Relaxed),
        },
        stage => VcpuOutcome::Silent(stage),
    }
}

/// Sends an IPI from vCPU 0 to vCPU `n` and waits (bounded) for its answer: `n` answers from
/// its idle loop when its upcall has counted the IPI, with an IPI to vCPU 0. `Ok(true)` once
/// vCPU 0's own upcall has counted that answer and `n` says it answered. Only vCPU 0 sends
/// IPIs to vCPU 0, so the count cannot be fooled by another sender.
pub fn ping(n: usize) -> Result<bool, (&'static str, XenError)> {
    let answered_before = SECONDARIES[n].answered.load(Ordering::Acquire);
    let received_before = events::counts_of(0).1;
    events::send_ipi(n).map_err(|e| ("EVTCHNOP_send", e))?;
    let answered = || {
        SECONDARIES[n].answered.load(Ordering::Acquire) > answered_before
            && events::counts_of(0).1 > received_before
    };
    events::wait_until(answered, time::now_ns() + REPORT_WAIT_NS)
        .map_err(|e| ("waiting for the answer (timer)", e))
}

/// A started vCPU's Rust code (from boot/head.S `secondary_start`, `vcpu` in %rdi): checks its
/// own number through `%gs`, binds and arms its own timer and waits for its event, reports,
/// then idles for good, answering each IPI from vCPU 0 with one back.
#[no_mangle]
extern "C" fn secondary_main(vcpu: u64) -> ! {
    let n = vcpu as usize;
    let me = &SECONDARIES[n];
    let rsp: u64;
    // SAFETY: reads the stack pointer into a register; no memory access.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    me.rsp_seen.store(rsp, Ordering::Relaxed);
    me.stage.store(Stage::Entered as u32, Ordering::Release);
    match set_up(n, me) {
        Ok(()) => me.stage.store(Stage::Ready as u32, Ordering::Release),
        Err((step, value)) => me.fail(step, value),
    }
    idle(n, me)
}

/// The set-up of [`secondary_main`]; `Err` is the failed step and Xen's errno (or what `%gs:0`
/// gave).
fn set_up(n: usize, me: &Secondary) -> Result<(), (SetupStep, i64)> {
    let seen = vcpu::current();
    if seen != n {
        return Err((SetupStep::OwnNumber, seen as i64));
    }
    let trap_stack_top = me.trap_stack_top.load(Ordering::Acquire);
    user::set_kernel_stack(trap_stack_top).map_err(|e| (SetupStep::TrapStack, e.0))?;
    events::bind_timer(n).map_err(|e| (SetupStep::BindTimer, e.0))?;
    hypercall::set_singleshot_timer(n as u32, time::now_ns() + FIRST_TIMER_NS)
        .map_err(|e| (SetupStep::ArmTimer, e.0))?;
    me.stage.store(Stage::TimerArmed as u32, Ordering::Release);
    // Masked while checking, so that the event cannot slip in between the check and the block
    // (SCHEDOP_block unmasks and checks for pending events atomically).
    loop {
        // Its own slot by number, not through %gs (which `set_up` may have found wrong).
        shared_info::set_upcall_mask_of(n, true);
        if events::counts_of(n).0 > 0 {
            return Ok(());
        }
        hypercall::sched_block().map_err(|e| (SetupStep::Block, e.0))?;
    }
}

/// Idles with SCHEDOP_block. A job in its mailbox runs first (then it acknowledges); each other
/// IPI its upcall counted gets one IPI back to vCPU 0. A failed block or send is counted (vCPU 0
/// reports it: [`take_idle_failures`]) and the loop goes on, the vCPU still in service.
fn idle(n: usize, me: &Secondary) -> ! {
    let mut answered = 0;
    loop {
        // Its own slot by number, not through %gs (which `set_up` may have found wrong).
        shared_info::set_upcall_mask_of(n, true);
        if let Some(job) = MAILBOXES[n].take() {
            job();
            // The IPIs that came while the job ran were the job's (a wake, an end): none
            // asks for an answer.
            answered = events::counts_of(n).1;
            MAILBOXES[n].acknowledge();
            if let Err(e) = events::send_ipi(0) {
                me.fail_idle(SetupStep::Answer, e.0);
            }
            continue;
        }
        let received = events::counts_of(n).1;
        if received > answered {
            answered = received;
            // Counted before it is sent: vCPU 0 checks the count when the IPI wakes it.
            me.answered.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = events::send_ipi(0) {
                me.fail_idle(SetupStep::Answer, e.0);
            }
            continue;
        }
        if let Err(e) = hypercall::sched_block() {
            me.fail_idle(SetupStep::Block, e.0);
        }
    }
}

/// A vCPU's slot for one job at a time (a thread to run), handed over by [`post`].
pub struct Mailbox {
    /// [`MailboxState`] as a number.
    state: AtomicU32,
    /// The job, as the address of a `fn()`; valid while the state is `Posted`.
    job: AtomicUsize,
}

/// Where a [`Mailbox`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum MailboxState {
    /// No job: the vCPU idles (or is not online).
    Empty = 0,
    /// A job is waiting for the vCPU to take it.
    Posted = 1,
    /// The vCPU runs the job; it acknowledges (back to `Empty`) once the job has returned.
    Running = 2,
    /// [`post`] claimed the mailbox and is writing the job.
    Filling = 3,
}

static MAILBOXES: [Mailbox; MAX_VCPUS] = [const {
    Mailbox { state: AtomicU32::new(MailboxState::Empty as u32), job: AtomicUsize::new(0) }
}; MAX_VCPUS];

impl Mailbox {
    /// The posted job, once: the state becomes `Running`.
    fn take(&self) -> Option<fn()> {
        self.state
            .compare_exchange(
                MailboxState::Posted as u32,
                MailboxState::Running as u32,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .ok()?;
        let address = self.job.load(Ordering::Acquire);
        // SAFETY: `post` stored the address of a `fn()` before it published `Posted`, and
        // nothing else writes `job`.
        Some(unsafe { core::mem::transmute::<usize, fn()>(address) })
    }

    fn acknowledge(&self) {
        self.state.store(MailboxState::Empty as u32, Ordering::Release);
    }
}

/// Why [`post`] handed nothing over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostError {
    /// The vCPU is not online, or is vCPU 0 (which takes no jobs).
    NotOnline,
    /// Its mailbox holds a job already.
    Busy,
    /// The IPI that wakes it failed (the job was taken back).
    Ipi(XenError),
}

/// Whether vCPU `n` is other than 0, online, and its mailbox is empty (it may take a job).
pub fn is_free(n: usize) -> bool {
    (1..MAX_VCPUS).contains(&n)
        && SECONDARIES[n].stage() == Stage::Ready
        && MAILBOXES[n].state.load(Ordering::Acquire) == MailboxState::Empty as u32
}

/// Takes the idle-loop failures of every other vCPU since the last call: `each(vcpu, step, error,
/// count)` for each vCPU that had any (the first one's step and Xen's error).
pub fn take_idle_failures(mut each: impl FnMut(usize, SetupStep, XenError, u64)) {
    for (n, me) in SECONDARIES.iter().enumerate().skip(1) {
        let count = me.idle_failures.swap(0, Ordering::AcqRel);
        if count > 0 {
            let step = SetupStep::from_u32(me.failed_step.load(Ordering::Relaxed));
            each(n, step, XenError(me.failed_value.load(Ordering::Relaxed)), count);
        }
    }
}

/// The guard page below started vCPU `n`'s trap stack (`None` before vCPU 0 gave it one).
pub fn trap_stack_guard(n: usize) -> Option<u64> {
    let top = SECONDARIES.get(n)?.trap_stack_top.load(Ordering::Acquire);
    (top != 0).then(|| top - user::TRAP_STACK_BYTES as u64 - abi::PAGE_SIZE)
}

/// Whether vCPU `n` holds no job (posted or running): it has acknowledged the last one.
pub fn is_idle(n: usize) -> bool {
    MAILBOXES[n].state.load(Ordering::Acquire) == MailboxState::Empty as u32
}

/// How many vCPUs are online: vCPU 0 and every other that reported ready.
pub fn online_count() -> usize {
    1 + (1..MAX_VCPUS).filter(|&n| SECONDARIES[n].stage() == Stage::Ready).count()
}

/// Hands `job` to vCPU `n`'s mailbox and wakes it with an IPI; it runs the job from its idle
/// loop, then acknowledges ([`is_idle`]) and sends vCPU 0 an IPI.
pub fn post(n: usize, job: fn()) -> Result<(), PostError> {
    if !(1..MAX_VCPUS).contains(&n) || SECONDARIES[n].stage() != Stage::Ready {
        return Err(PostError::NotOnline);
    }
    let mailbox = &MAILBOXES[n];
    mailbox
        .state
        .compare_exchange(
            MailboxState::Empty as u32,
            MailboxState::Filling as u32,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .map_err(|_| PostError::Busy)?;
    mailbox.job.store(job as usize, Ordering::Release);
    mailbox.state.store(MailboxState::Posted as u32, Ordering::Release);
    if let Err(e) = events::send_ipi(n) {
        // Taken back unless the vCPU took it meanwhile (it woke for another reason): then it
        // runs, and the IPI was not needed.
        let taken_back = mailbox.state.compare_exchange(
            MailboxState::Posted as u32,
            MailboxState::Empty as u32,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if taken_back.is_ok() {
            return Err(PostError::Ipi(e));
        }
    }
    Ok(())
}
