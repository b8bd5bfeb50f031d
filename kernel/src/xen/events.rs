//! Event channels: the upcall Xen enters on a pending event, VIRQ_TIMER, blocking until an event.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{abi, hypercall, shared_info, XenError};

extern "C" {
    fn event_upcall_entry();
    fn failsafe_entry();
}

const NO_PORT: u32 = u32::MAX;

static TIMER_PORT: AtomicU32 = AtomicU32::new(NO_PORT);
static TIMER_EVENTS: AtomicU64 = AtomicU64::new(0);
static UPCALLS: AtomicU64 = AtomicU64::new(0);

/// Registers the event and failsafe callbacks and binds VIRQ_TIMER. Events stay masked until
/// someone unmasks them (or blocks).
pub fn init() -> Result<(), XenError> {
    hypercall::register_callback(
        abi::CALLBACKTYPE_EVENT,
        0,
        event_upcall_entry as *const () as u64,
    )?;
    hypercall::register_callback(
        abi::CALLBACKTYPE_FAILSAFE,
        abi::CALLBACKF_MASK_EVENTS,
        failsafe_entry as *const () as u64,
    )?;
    // Xen starts every vCPU with a periodic timer (public/vcpu.h); stop it so that a timer
    // event means the one-shot deadline we set.
    hypercall::stop_periodic_timer()?;
    let port = hypercall::bind_virq(abi::VIRQ_TIMER)?;
    TIMER_PORT.store(port, Ordering::SeqCst);
    hypercall::evtchn_unmask(port)
}

/// The timer's event channel, once bound.
pub fn timer_port() -> Option<u32> {
    let port = TIMER_PORT.load(Ordering::SeqCst);
    (port != NO_PORT).then_some(port)
}

/// Timer events handled and upcalls taken since boot.
pub fn counts() -> (u64, u64) {
    (TIMER_EVENTS.load(Ordering::SeqCst), UPCALLS.load(Ordering::SeqCst))
}

/// Arms the one-shot timer for `deadline_ns` (Xen system time).
pub fn set_timer(deadline_ns: u64) -> Result<(), XenError> {
    hypercall::set_timer_op(deadline_ns)
}

/// Sleeps until an event arrives: masks events, then SCHEDOP_block unmasks them atomically
/// with its check, so an event that is already pending returns at once. The upcall runs on
/// the way back (events are then unmasked).
pub fn block() -> Result<(), XenError> {
    shared_info::set_upcall_mask(true);
    hypercall::sched_block()?;
    // Xen left events unmasked; deliver anything pending now, then leave them as found.
    Ok(())
}

/// Called by the trap path for the event upcall: takes the pending events and says whether the
/// timer's was among them (the trap path then runs the timer's handler). Must not print: it may
/// have interrupted a console write.
pub fn upcall() -> bool {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    let timer = TIMER_PORT.load(Ordering::Relaxed);
    let mut timer_fired = false;
    shared_info::take_pending(|port| {
        if port == timer {
            timer_fired = true;
        }
    });
    if timer_fired {
        TIMER_EVENTS.fetch_add(1, Ordering::Relaxed);
    }
    timer_fired
}
