//! Futexes: FUTEX_WAIT, FUTEX_WAKE and FUTEX_(CMP_)REQUEUE between the threads of the running
//! program.
//!
//! One waiter per vCPU at most (a thread is pinned to its vCPU and blocks it while it waits).
//! [`FUTEX_LOCK`] makes a WAIT's look at the value and its queueing one step against WAKE,
//! so that a waker that changed the value and then wakes cannot slip in between (Linux's
//! hash-bucket lock does the same, kernel/futex/waitwake.c). The waiting vCPU blocks in
//! SCHEDOP_block with no lock held; a wake sets its flag and sends it an IPI. A requeue moves a
//! waiter by changing the address it waits on, under the same lock: a later wake on the new
//! address finds it.
//!
//! Lock order: [`FUTEX_LOCK`], then the process (`CURRENT`), then `MM`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::syscall_abi::Errno;
use crate::xen::vcpu::{self, MAX_VCPUS};
use crate::xen::{events, time};

static FUTEX_LOCK: spin::Mutex<()> = spin::Mutex::new(());

/// What a vCPU's thread waits on.
struct FutexWaiter {
    /// The futex's user address (0: not waiting).
    addr: AtomicU64,
    /// Set by a wake.
    woken: AtomicBool,
}

static WAITERS: [FutexWaiter; MAX_VCPUS] =
    [const { FutexWaiter { addr: AtomicU64::new(0), woken: AtomicBool::new(false) } }; MAX_VCPUS];

/// How a wait ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    Woken,
    /// The timeout passed (ETIMEDOUT for the program).
    TimedOut,
    /// The program's end or its deadline came first: the caller ends the call.
    Interrupted,
}

/// FUTEX_WAIT: if the u32 at `addr` holds `expected` (EAGAIN if not, EFAULT if it cannot be
/// read), sleeps until a [`wake`] on `addr`, `wake_at_ns` (Xen system time), or until the
/// program is over or `deadline_ns` passes.
pub fn wait(
    addr: u64,
    expected: u32,
    wake_at_ns: Option<u64>,
    deadline_ns: u64,
) -> Result<WaitEnd, Errno> {
    let me = &WAITERS[vcpu::current()];
    {
        let _queue = FUTEX_LOCK.lock();
        let mut value = [0u8; 4];
        super::process::copy_from_user(addr, &mut value)?;
        if u32::from_le_bytes(value) != expected {
            return Err(Errno::EAGAIN);
        }
        me.woken.store(false, Ordering::SeqCst);
        me.addr.store(addr, Ordering::SeqCst);
    }
    let limit = wake_at_ns.unwrap_or(u64::MAX).min(deadline_ns);
    let waited =
        events::wait_until(|| me.woken.load(Ordering::SeqCst) || super::process::is_over(), limit);
    let woken = {
        let _queue = FUTEX_LOCK.lock();
        me.addr.store(0, Ordering::SeqCst);
        me.woken.load(Ordering::SeqCst)
    };
    // wait_until cancelled this vCPU's timer: the watchdog's deadline again.
    let rearmed = events::set_timer(deadline_ns);
    for (what, result) in [
        ("sleeping on a futex (set_timer_op / SCHEDOP_block)", waited.map(|_| ())),
        ("re-arming the watchdog timer", rearmed),
    ] {
        if let Err(e) = result {
            super::process::kernel_error(what, Some(e));
        }
    }
    if woken {
        return Ok(WaitEnd::Woken);
    }
    let now = time::now_ns();
    if super::process::is_over() || now >= deadline_ns {
        return Ok(WaitEnd::Interrupted);
    }
    if wake_at_ns.is_some_and(|at| now >= at) {
        return Ok(WaitEnd::TimedOut);
    }
    // The timer failed (recorded above): the call fails rather than sleep without bound.
    Err(Errno::EINTR)
}

/// FUTEX_WAKE: wakes up to `count` waiters on `addr` (at least one, as Linux does for 0 or less);
/// returns how many.
pub fn wake(addr: u64, count: u32) -> u64 {
    // Linux reads the count as an int: 0 or less wakes one.
    let most = u64::try_from(count as i32).unwrap_or(0).max(1);
    let _queue = FUTEX_LOCK.lock();
    wake_locked(addr, most)
}

/// FUTEX_REQUEUE (and FUTEX_CMP_REQUEUE, given `expected`: EAGAIN unless the u32 at `addr`
/// holds it, EFAULT if it cannot be read): wakes up to `wake` waiters on `addr`, then moves up to
/// `requeue` of the others to `to`; returns how many were woken or moved, as Linux's
/// futex_requeue does (kernel/futex/requeue.c).
pub fn requeue(
    addr: u64,
    wake: u32,
    requeue: u32,
    to: u64,
    expected: Option<u32>,
) -> Result<u64, Errno> {
    let _queue = FUTEX_LOCK.lock();
    if let Some(expected) = expected {
        let mut value = [0u8; 4];
        super::process::copy_from_user(addr, &mut value)?;
        if u32::from_le_bytes(value) != expected {
            return Err(Errno::EAGAIN);
        }
    }
    let woken = wake_locked(addr, u64::from(wake));
    let mut moved = 0;
    for waiter in &WAITERS {
        if moved == u64::from(requeue) {
            break;
        }
        if waiter.addr.load(Ordering::SeqCst) == addr && !waiter.woken.load(Ordering::SeqCst) {
            waiter.addr.store(to, Ordering::SeqCst);
            moved += 1;
        }
    }
    Ok(woken + moved)
}

/// Wakes up to `most` waiters on `addr` (the caller holds [`FUTEX_LOCK`]); returns how many.
fn wake_locked(addr: u64, most: u64) -> u64 {
    let mut woken = 0;
    for (n, waiter) in WAITERS.iter().enumerate() {
        if woken == most {
            break;
        }
        if waiter.addr.load(Ordering::SeqCst) != addr || waiter.woken.load(Ordering::SeqCst) {
            continue;
        }
        waiter.woken.store(true, Ordering::SeqCst);
        woken += 1;
        if let Err(e) = events::send_ipi(n) {
            super::process::kernel_error("waking a futex waiter (EVTCHNOP_send)", Some(e));
        }
    }
    woken
}
