//! Bringing up the domain's other vCPUs: a PV context each (VCPUOP_initialise), VCPUOP_up, and
//! their first Rust code, which arms its own timer, then idles and answers IPIs.
//!
//! vCPU 0 does all of the set-up: it counts the vCPUs (`xen::vcpu::count`), gives each one a
//! stack, an IPI port and a context, starts it, and waits (bounded) until every started vCPU
//! has reported what it did. A started vCPU runs [`secondary_main`] on its own stack with its
//! own `vcpu_info` slot, `%gs` record and timer, and never runs a program (programs run on
//! vCPU 0 only at this stage). What it reports lives in [`SECONDARIES`], written by that vCPU,
//! read by vCPU 0.

use core::ops::Range;
use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

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
/// before the vCPU starts: it never faults, so it never waits for the memory manager's lock).
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
}

impl SetupStep {
    fn from_u32(value: u32) -> SetupStep {
        match value {
            0 => SetupStep::OwnNumber,
            1 => SetupStep::BindTimer,
            2 => SetupStep::ArmTimer,
            3 => SetupStep::Block,
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
    /// Its stack pointer in `secondary_main`.
    rsp_seen: AtomicU64,
    /// IPIs it answered.
    answered: AtomicU64,
}

static SECONDARIES: [Secondary; MAX_VCPUS] = [const {
    Secondary {
        stage: AtomicU32::new(Stage::NotStarted as u32),
        failed_step: AtomicU32::new(0),
        failed_value: AtomicI64::new(0),
        stack_bottom: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
        rsp_seen: AtomicU64::new(0),
        answered: AtomicU64::new(0),
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
}

/// How one vCPU other than 0 fared.
#[derive(Clone, Debug)]
pub enum VcpuOutcome {
    /// It ran on its own stack (`rsp` was inside `stack`) and its own timer fired.
    Online { stack: Range<u64>, rsp: u64, timer_events: u64 },
    /// vCPU 0 could not start it: `call` failed. What was set up for it before (its stack, its
    /// IPI port) was undone, unless `undo` says closing the port failed.
    NotStarted { call: &'static str, error: XenError, undo: Result<(), XenError> },
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
            VcpuOutcome::NotStarted { call, error, undo } => {
                write!(f, "{call}: {error}: it stays down")?;
                match undo {
                    Ok(()) => Ok(()),
                    Err(e) => write!(f, " (and EVTCHNOP_close of its IPI port: {e})"),
                }
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
pub fn bring_up(kernel_l4_mfn: u64) -> Result<Bringup, (&'static str, XenError)> {
    let (count, beyond_max) = vcpu::count().map_err(|e| ("VCPUOP_is_up", e))?;
    let mut bringup = Bringup { count, beyond_max, outcomes: [const { None }; MAX_VCPUS] };
    if count == 1 {
        return Ok(bringup);
    }
    vcpu::use_locals().map_err(|e| ("HYPERVISOR_set_segment_base(SEGBASE_GS_KERNEL)", e))?;
    events::bind_ipi(0).map_err(|e| (e.call, e.error))?;
    for n in 1..count {
        if let Err(not_started) = start(n, kernel_l4_mfn) {
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

/// Gives vCPU `n` a stack, an IPI port, a masked `vcpu_info` and its context, and starts it.
/// If that fails before Xen took the context, the stack and the port are given back; once it
/// took it, the vCPU keeps both (Xen holds its context until the domain dies).
fn start(n: usize, kernel_l4_mfn: u64) -> Result<(), VcpuOutcome> {
    let not_started = |call, error, undo| VcpuOutcome::NotStarted { call, error, undo };
    let Some(stack) = new_stack() else {
        return Err(not_started("allocating its stack", XenError::ENOMEM, Ok(())));
    };
    if let Err(e) = events::bind_ipi(n) {
        // SAFETY: the stack was never handed out: nothing runs on it.
        unsafe { free_stack(stack.clone()) };
        return Err(not_started(e.call, e.error, e.undo));
    }
    // It starts with events masked (its first code must not take an upcall before it knows
    // its own number); Xen reads the mask from its vcpu_info slot.
    shared_info::set_upcall_mask_of(n, true);
    let context = context(n, stack.end, kernel_l4_mfn);
    if let Err(e) = hypercall::vcpu_initialise(n as u32, &context) {
        let undo = events::unbind_ipi(n);
        // SAFETY: Xen refused the context, so no vCPU runs on the stack.
        unsafe { free_stack(stack) };
        return Err(not_started("VCPUOP_initialise", e, undo));
    }
    let me = &SECONDARIES[n];
    me.stack_bottom.store(stack.start, Ordering::Relaxed);
    me.stack_top.store(stack.end, Ordering::Relaxed);
    hypercall::vcpu_up(n as u32).map_err(|e| not_started("VCPUOP_up", e, Ok(())))
}

/// A kernel stack from the heap, every page touched here (on vCPU 0) so that the vCPU that
/// runs on it never takes a page fault. Once a vCPU runs on it, it is never freed (a vCPU stays
/// up).
fn new_stack() -> Option<Range<u64>> {
    let layout = stack_layout()?;
    // SAFETY: the layout has a non-zero size.
    let bottom = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if bottom.is_null() {
        return None;
    }
    for page in (0..STACK_BYTES).step_by(abi::PAGE_SIZE as usize) {
        // SAFETY: `bottom` is a fresh allocation of STACK_BYTES bytes; a volatile write of one
        // byte of each page makes sure the page is mapped now, whatever alloc_zeroed did.
        unsafe { bottom.add(page).write_volatile(0) };
    }
    let bottom = bottom as u64;
    Some(bottom..bottom + STACK_BYTES as u64)
}

fn stack_layout() -> Option<core::alloc::Layout> {
    core::alloc::Layout::from_size_align(STACK_BYTES, abi::PAGE_SIZE as usize).ok()
}

/// Gives back a stack of [`new_stack`].
///
/// # Safety
/// Nothing may run on the stack, now or later.
unsafe fn free_stack(stack: Range<u64>) {
    if let Some(layout) = stack_layout() {
        // SAFETY: `stack` came from `new_stack`, allocated with this layout, and is unused.
        unsafe { alloc::alloc::dealloc(stack.start as *mut u8, layout) };
    }
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

/// Idles with SCHEDOP_block; each IPI its upcall counted gets one IPI back to vCPU 0. A failed
/// block or send is recorded (vCPU 0 reports it) and the loop goes on.
fn idle(n: usize, me: &Secondary) -> ! {
    let mut answered = 0;
    loop {
        // Its own slot by number, not through %gs (which `set_up` may have found wrong).
        shared_info::set_upcall_mask_of(n, true);
        let received = events::counts_of(n).1;
        if received > answered {
            answered = received;
            // Counted before it is sent: vCPU 0 checks the count when the IPI wakes it.
            me.answered.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = events::send_ipi(0) {
                me.fail(SetupStep::Answer, e.0);
            }
            continue;
        }
        if let Err(e) = hypercall::sched_block() {
            me.fail(SetupStep::Block, e.0);
        }
    }
}
