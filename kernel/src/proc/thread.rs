//! The threads of the running program: one per vCPU, pinned (the main thread on vCPU 0, each
//! `clone`d one on a free online vCPU), their tids, clear-tid addresses, segment bases and
//! signal masks, and how a thread's end becomes the program's end.
//!
//! A thread ends alone with `exit`: its clear-tid address gets 0 and a futex wake (how musl's
//! pthread_join and its thread-list lock learn of it), and the program ends, with that status,
//! when its last thread has ended. `exit_group`, a kill and the watchdog end the program at
//! once ([`process::end`]), which sends an IPI to every other vCPU that runs one of its
//! threads ([`stop_others`]). vCPU 0 waits (bounded) for every other vCPU to have left user
//! mode, dropped the user page tables and acknowledged its job before the address space goes.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use super::expectation::{Cause, Outcome};
use super::futex;
use super::process::{self, SegmentBase};
use super::syscall_abi::{CloneRequest, Errno, SysResult};
use crate::arch::x86_64::smp::{self, PostError};
use crate::arch::x86_64::trap_frame::TrapFrame;
use crate::xen::vcpu::{self, MAX_VCPUS};
use crate::xen::{events, time};

/// The pid every program sees, and its main thread's tid.
pub const PID: u64 = 1;

/// One vCPU's thread of the running program.
struct ThreadSlot {
    /// Whether a thread of the program lives on this vCPU (claimed by `clone`, freed when the
    /// thread has ended).
    live: AtomicBool,
    tid: AtomicU64,
    /// Where 0 is stored at the thread's end (0: nowhere).
    clear_tid: AtomicU64,
    fs_base: AtomicU64,
    gs_base: AtomicU64,
    signal_mask: AtomicU64,
    /// Set by `exit`: the thread ended alone, with this status.
    exited: AtomicBool,
    exit_status: AtomicU32,
    /// The registers a new thread starts with, until its vCPU takes them.
    start: spin::Mutex<Option<TrapFrame>>,
}

static THREADS: [ThreadSlot; MAX_VCPUS] = [const {
    ThreadSlot {
        live: AtomicBool::new(false),
        tid: AtomicU64::new(0),
        clear_tid: AtomicU64::new(0),
        fs_base: AtomicU64::new(0),
        gs_base: AtomicU64::new(0),
        signal_mask: AtomicU64::new(0),
        exited: AtomicBool::new(false),
        exit_status: AtomicU32::new(0),
        start: spin::Mutex::new(None),
    }
}; MAX_VCPUS];

/// Threads of the running program that have not ended.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The tid the next thread gets.
static NEXT_TID: AtomicU64 = AtomicU64::new(PID + 1);

/// How long vCPU 0 waits, once the program is over, for every other vCPU to acknowledge
/// (Xen system time; generous: QEMU's TCG shares two host cores with other boots).
const ACKNOWLEDGE_WAIT_NS: u64 = 2_000_000_000;
/// How long past the deadline vCPU 0 lets another vCPU's own watchdog end its thread (which
/// names the thread's rip) before it ends the program itself.
const WATCHDOG_GRACE_NS: u64 = 50_000_000;
/// How often a `clone` that waits for a vCPU looks again.
const POLL_NS: u64 = 1_000_000;

/// Makes the main thread (on vCPU 0, tid [`PID`]) the program's only thread.
pub fn begin_program() {
    for slot in &THREADS {
        slot.live.store(false, Ordering::SeqCst);
        *slot.start.lock() = None;
    }
    claim(&THREADS[0], PID, None, 0, 0, 0);
    THREADS[0].live.store(true, Ordering::SeqCst);
    LIVE.store(1, Ordering::SeqCst);
    NEXT_TID.store(PID + 1, Ordering::SeqCst);
}

fn claim(slot: &ThreadSlot, tid: u64, clear_tid: Option<u64>, fs: u64, gs: u64, mask: u64) {
    slot.tid.store(tid, Ordering::SeqCst);
    slot.clear_tid.store(clear_tid.unwrap_or(0), Ordering::SeqCst);
    slot.fs_base.store(fs, Ordering::SeqCst);
    slot.gs_base.store(gs, Ordering::SeqCst);
    slot.signal_mask.store(mask, Ordering::SeqCst);
    slot.exited.store(false, Ordering::SeqCst);
    slot.exit_status.store(0, Ordering::SeqCst);
}

fn mine() -> &'static ThreadSlot {
    &THREADS[vcpu::current()]
}

/// The calling thread's tid.
pub fn tid() -> u64 {
    mine().tid.load(Ordering::SeqCst)
}

/// set_tid_address: the calling thread's clear-tid address; returns its tid.
pub fn set_clear_tid(addr: u64) -> u64 {
    let me = mine();
    me.clear_tid.store(addr, Ordering::SeqCst);
    me.tid.load(Ordering::SeqCst)
}

/// The calling thread's FS and GS bases (what arch_prctl set on its vCPU).
pub fn segment_bases() -> (u64, u64) {
    let me = mine();
    (me.fs_base.load(Ordering::SeqCst), me.gs_base.load(Ordering::SeqCst))
}

/// Records the calling thread's FS or GS base (set on its vCPU by the caller).
pub fn record_segment_base(which: SegmentBase, base: u64) {
    let me = mine();
    match which {
        SegmentBase::Fs => &me.fs_base,
        SegmentBase::Gs => &me.gs_base,
    }
    .store(base, Ordering::SeqCst);
}

/// rt_sigprocmask on the calling thread's mask: `change` makes the new mask of the old (or
/// leaves it, given `None`); returns the old mask. No signal is ever delivered (faultline has
/// none to send); the mask is kept and reported as Linux would.
pub fn change_signal_mask(
    change: impl FnOnce(u64) -> Result<Option<u64>, Errno>,
) -> Result<u64, Errno> {
    let me = mine();
    let old = me.signal_mask.load(Ordering::SeqCst);
    if let Some(new) = change(old)? {
        me.signal_mask.store(new, Ordering::SeqCst);
    }
    Ok(old)
}

/// `clone` of a thread: claims a free online vCPU (none: EAGAIN, what Linux answers at
/// RLIMIT_NPROC and musl's pthread_create returns), stores the tid where asked, and hands the
/// vCPU the caller's registers with rax 0 and rsp the new stack. Returns the new tid. The
/// stores of PARENT_SETTID and CHILD_SETTID ignore a bad address, as Linux's put_user there
/// does.
pub fn clone(parent: &TrapFrame, request: CloneRequest) -> SysResult {
    let Some(n) = claim_vcpu() else { return Err(Errno::EAGAIN) };
    let tid = NEXT_TID.fetch_add(1, Ordering::SeqCst);
    let me = mine();
    let fs = request.tls.unwrap_or(me.fs_base.load(Ordering::SeqCst));
    let (gs, mask) = (me.gs_base.load(Ordering::SeqCst), me.signal_mask.load(Ordering::SeqCst));
    let slot = &THREADS[n];
    claim(slot, tid, request.clear_tid, fs, gs, mask);
    for at in [request.parent_tid, request.child_tid].into_iter().flatten() {
        let _ = process::copy_to_user(at, &(tid as u32).to_le_bytes());
    }
    let mut registers = *parent;
    registers.rax = 0;
    if request.stack != 0 {
        registers.rsp = request.stack;
    }
    *slot.start.lock() = Some(registers);
    LIVE.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = smp::post(n, run_posted_thread) {
        *slot.start.lock() = None;
        LIVE.fetch_sub(1, Ordering::SeqCst);
        slot.live.store(false, Ordering::SeqCst);
        if let PostError::Ipi(xen) = e {
            process::kernel_error("waking a vCPU for a new thread (EVTCHNOP_send)", Some(xen));
        }
        return Err(Errno::EAGAIN);
    }
    Ok(tid)
}

/// A free online vCPU for a new thread, its slot claimed. A vCPU whose thread has ended but
/// that has not acknowledged yet (it is dropping the page tables: a pthread_join can return
/// before that) is waited for, in slices, for at most [`ACKNOWLEDGE_WAIT_NS`]; none: `None`.
fn claim_vcpu() -> Option<usize> {
    let try_claim = || {
        (1..MAX_VCPUS).find(|&n| {
            smp::is_free(n)
                && THREADS[n]
                    .live
                    .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
        })
    };
    let finishing =
        || (1..MAX_VCPUS).any(|n| !smp::is_idle(n) && !THREADS[n].live.load(Ordering::SeqCst));
    if let Some(n) = try_claim() {
        return Some(n);
    }
    let give_up = time::now_ns().saturating_add(ACKNOWLEDGE_WAIT_NS);
    let mut waited = false;
    while finishing() && time::now_ns() < give_up && !process::is_over() {
        waited = true;
        let slice = time::now_ns() + POLL_NS;
        if let Err(e) = events::wait_until(|| (1..MAX_VCPUS).any(smp::is_free), slice) {
            process::kernel_error("waiting for a vCPU to finish a thread (timer)", Some(e));
            break;
        }
        if let Some(n) = try_claim() {
            rearm_watchdog(waited);
            return Some(n);
        }
    }
    rearm_watchdog(waited);
    None
}

/// After a wait (which cancels this vCPU's timer): the watchdog's deadline again.
fn rearm_watchdog(waited: bool) {
    if waited {
        let rearmed = events::set_timer(process::deadline_ns());
        if let Err(e) = rearmed {
            process::kernel_error("re-arming the watchdog timer", Some(e));
        }
    }
}

/// The job a vCPU runs for a new thread (from its idle loop, see `smp::post`).
fn run_posted_thread() {
    let n = vcpu::current();
    let slot = &THREADS[n];
    let Some(registers) = slot.start.lock().take() else { return };
    process::run_thread(
        &registers,
        slot.fs_base.load(Ordering::SeqCst),
        slot.gs_base.load(Ordering::SeqCst),
    );
}

/// `exit` of the calling thread: records its status; the run on this vCPU then ends and
/// [`ended`] does the rest.
pub fn exit(status: u8) {
    let me = mine();
    me.exit_status.store(u32::from(status), Ordering::SeqCst);
    me.exited.store(true, Ordering::SeqCst);
}

/// After the run of the thread on this vCPU returned: a thread that ended alone (`exit`) while
/// others live gets its clear-tid store and wake (Linux's mm_release does them only while the
/// memory has other users, so a program's last thread writes nothing); the last thread to end
/// alone ends the program with its status. Called once per thread, on its vCPU.
pub fn ended() {
    let me = mine();
    if !me.live.load(Ordering::SeqCst) {
        return;
    }
    let alone = me.exited.load(Ordering::SeqCst) && !process::is_over();
    let clear_tid = me.clear_tid.load(Ordering::SeqCst);
    if alone
        && clear_tid != 0
        && LIVE.load(Ordering::SeqCst) > 1
        && process::copy_to_user(clear_tid, &0u32.to_le_bytes()).is_ok()
    {
        futex::wake(clear_tid, 1);
    }
    me.live.store(false, Ordering::SeqCst);
    let last = LIVE.fetch_sub(1, Ordering::SeqCst) == 1;
    if alone && last {
        let status = me.exit_status.load(Ordering::SeqCst) as u8;
        process::record_end(Outcome::Exited(status));
    }
}

/// Sends an IPI to every other vCPU that runs a thread of the program, so that it looks at the
/// program's end: a thread in user mode leaves it, one blocked in the kernel wakes.
pub fn stop_others() {
    let me = vcpu::current();
    for n in (0..MAX_VCPUS).filter(|&n| n != me && THREADS[n].live.load(Ordering::SeqCst)) {
        if let Err(e) = events::send_ipi(n) {
            process::kernel_error("stopping a thread (EVTCHNOP_send)", Some(e));
        }
    }
}

/// Another vCPU that had not acknowledged the end of the program in time.
#[derive(Clone, Copy, Debug)]
pub struct Straggler {
    pub vcpu: usize,
    pub waited_ms: u64,
}

/// On vCPU 0, after the main thread's run returned: waits until the program is over (every
/// thread ended, or the program was ended; past the deadline, the watchdog ends it), then until
/// every thread has ended and every other vCPU has acknowledged its job (left user mode,
/// dropped the page tables). Blocks between looks, woken by IPIs; without other threads it
/// returns at once, with no hypercall. `Err` names the first vCPU that did not acknowledge within
/// [`ACKNOWLEDGE_WAIT_NS`].
pub fn wait_for_the_others(deadline_ns: u64) -> Result<(), Straggler> {
    let over = || LIVE.load(Ordering::SeqCst) == 0 || process::is_over();
    if !over() {
        let limit = deadline_ns.saturating_add(WATCHDOG_GRACE_NS);
        match events::wait_until(over, limit) {
            Ok(true) => {}
            Ok(false) => {
                let outcome = Outcome::Killed { cause: Cause::Watchdog, rip: 0 };
                let _ = process::end(outcome);
            }
            Err(e) => {
                process::kernel_error("waiting for the other threads (timer)", Some(e));
                let _ = process::end(Outcome::Killed { cause: Cause::Watchdog, rip: 0 });
            }
        }
    }
    // Every thread ended first: a thread on another vCPU that was still starting one (its
    // `clone` posts to a vCPU this loop may already have found idle) is live until after the
    // post, and the new thread until its vCPU is done with it. Reading LIVE 0 makes every post
    // before the last thread's end visible here, so a mailbox read after it cannot be stale.
    let acknowledged = || LIVE.load(Ordering::SeqCst) == 0 && (1..MAX_VCPUS).all(smp::is_idle);
    if acknowledged() {
        return Ok(());
    }
    let started = time::now_ns();
    let waited = events::wait_until(acknowledged, started + ACKNOWLEDGE_WAIT_NS);
    if let Err(e) = waited {
        process::kernel_error("waiting for the other vCPUs (timer)", Some(e));
    }
    match (1..MAX_VCPUS).find(|&n| !smp::is_idle(n)) {
        None => Ok(()),
        Some(vcpu) => {
            Err(Straggler { vcpu, waited_ms: time::now_ns().saturating_sub(started) / 1_000_000 })
        }
    }
}
