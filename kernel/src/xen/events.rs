//! Event channels: the upcall Xen enters on a pending event, each vCPU's VIRQ_TIMER and IPI
//! port, blocking until an event.
//!
//! Ports are delivered to vCPU 0 unless they were bound here for another vCPU (its timer, its
//! IPI port): [`PORT_OWNERS`] records those, and an upcall takes only the ports of the vCPU it
//! runs on.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::port_owners::PortOwners;
use super::vcpu::{self, MAX_VCPUS};
use super::{abi, hypercall, shared_info, XenError};

extern "C" {
    fn event_upcall_entry();
    fn failsafe_entry();
}

const NO_PORT: u32 = u32::MAX;

/// One vCPU's event state.
struct VcpuEvents {
    timer_port: AtomicU32,
    ipi_port: AtomicU32,
    timer_events: AtomicU64,
    ipis: AtomicU64,
    upcalls: AtomicU64,
}

static VCPUS: [VcpuEvents; MAX_VCPUS] = [const {
    VcpuEvents {
        timer_port: AtomicU32::new(NO_PORT),
        ipi_port: AtomicU32::new(NO_PORT),
        timer_events: AtomicU64::new(0),
        ipis: AtomicU64::new(0),
        upcalls: AtomicU64::new(0),
    }
}; MAX_VCPUS];

/// The ports bound for a vCPU other than 0.
static PORT_OWNERS: PortOwners = PortOwners::new();

/// Registers the event and failsafe callbacks and binds vCPU 0's VIRQ_TIMER. Events stay
/// masked until someone unmasks them (or blocks).
pub fn init() -> Result<(), XenError> {
    hypercall::register_callback(abi::CALLBACKTYPE_EVENT, 0, upcall_entry())?;
    hypercall::register_callback(
        abi::CALLBACKTYPE_FAILSAFE,
        abi::CALLBACKF_MASK_EVENTS,
        failsafe_entry as *const () as u64,
    )?;
    bind_timer(0)
}

/// Where Xen enters for an event (boot/entry.S), for vCPU 0's callback_op and the others'
/// VCPUOP_initialise context.
pub fn upcall_entry() -> u64 {
    event_upcall_entry as *const () as u64
}

/// Where Xen enters when it cannot load the guest's segments (boot/entry.S); events masked.
pub fn failsafe_entry_address() -> u64 {
    failsafe_entry as *const () as u64
}

/// Binds VIRQ_TIMER to `vcpu` and unmasks it. Xen starts every vCPU with a periodic timer
/// (public/vcpu.h); it is stopped first, so that a timer event means the one-shot deadline set.
pub fn bind_timer(vcpu: usize) -> Result<(), XenError> {
    hypercall::stop_periodic_timer(vcpu as u32)?;
    let port = hypercall::bind_virq(abi::VIRQ_TIMER, vcpu as u32)?;
    PORT_OWNERS.own(port, vcpu);
    VCPUS[vcpu].timer_port.store(port, Ordering::SeqCst);
    hypercall::evtchn_unmask(port)
}

/// Why [`bind_ipi`] failed: the call Xen refused, its answer, and, when the port was already
/// bound, how closing it again went (`Ok` also when there was nothing to close).
#[derive(Clone, Copy, Debug)]
pub struct IpiError {
    pub call: &'static str,
    pub error: XenError,
    pub undo: Result<(), XenError>,
}

/// Binds an IPI port that delivers to `vcpu` (EVTCHNOP_bind_ipi) and unmasks it. If the unmask
/// fails, the port is closed again, so a failure leaves nothing bound.
pub fn bind_ipi(vcpu: usize) -> Result<u32, IpiError> {
    let port = hypercall::bind_ipi(vcpu as u32).map_err(|error| IpiError {
        call: "EVTCHNOP_bind_ipi",
        error,
        undo: Ok(()),
    })?;
    PORT_OWNERS.own(port, vcpu);
    VCPUS[vcpu].ipi_port.store(port, Ordering::SeqCst);
    if let Err(error) = hypercall::evtchn_unmask(port) {
        return Err(IpiError { call: "EVTCHNOP_unmask", error, undo: unbind_ipi(vcpu) });
    }
    Ok(port)
}

/// Closes the IPI port [`bind_ipi`] bound for `vcpu` (undoing a bring-up that failed).
pub fn unbind_ipi(vcpu: usize) -> Result<(), XenError> {
    let port = VCPUS[vcpu].ipi_port.swap(NO_PORT, Ordering::SeqCst);
    if port == NO_PORT {
        return Ok(());
    }
    hypercall::evtchn_close(port)?;
    PORT_OWNERS.release(port);
    Ok(())
}

/// IPIs Xen accepted from [`send_ipi`], on every vCPU, since boot.
static IPIS_SENT: AtomicU64 = AtomicU64::new(0);

/// Sends an IPI to `vcpu` through the port [`bind_ipi`] bound for it.
pub fn send_ipi(vcpu: usize) -> Result<(), XenError> {
    match VCPUS[vcpu].ipi_port.load(Ordering::SeqCst) {
        NO_PORT => Err(XenError::ENOENT),
        port => {
            hypercall::evtchn_send(port)?;
            IPIS_SENT.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
    }
}

/// IPIs sent since boot (every vCPU's sends).
pub fn ipis_sent() -> u64 {
    IPIS_SENT.load(Ordering::Relaxed)
}

/// The running vCPU's timer port, once bound.
pub fn timer_port() -> Option<u32> {
    let port = VCPUS[vcpu::current()].timer_port.load(Ordering::SeqCst);
    (port != NO_PORT).then_some(port)
}

/// The running vCPU's timer events handled and upcalls taken since boot.
pub fn counts() -> (u64, u64) {
    let own = &VCPUS[vcpu::current()];
    (own.timer_events.load(Ordering::SeqCst), own.upcalls.load(Ordering::SeqCst))
}

/// `vcpu`'s timer events and IPIs received since boot.
pub fn counts_of(vcpu: usize) -> (u64, u64) {
    let events = &VCPUS[vcpu];
    (events.timer_events.load(Ordering::SeqCst), events.ipis.load(Ordering::SeqCst))
}

/// Arms the running vCPU's one-shot timer for `deadline_ns` (Xen system time).
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

/// Blocks until `done()` holds or Xen system time passes `deadline_ns`; says whether `done()`
/// held. `done` is checked with events masked, so an event that makes it true between the
/// check and SCHEDOP_block wakes the block at once (Xen checks for pending events with the
/// unmask). The running vCPU's timer is armed for the deadline and cancelled after; the event
/// mask is left as it was found.
pub fn wait_until(done: impl Fn() -> bool, deadline_ns: u64) -> Result<bool, XenError> {
    let was_masked = shared_info::set_upcall_mask(true).unwrap_or(true);
    let outcome = loop {
        shared_info::set_upcall_mask(true);
        if done() {
            break Ok(true);
        }
        if super::time::now_ns() >= deadline_ns {
            break Ok(false);
        }
        if let Err(e) = set_timer(deadline_ns).and_then(|()| hypercall::sched_block()) {
            break Err(e);
        }
    };
    let cancelled = set_timer(0);
    shared_info::set_upcall_mask(was_masked);
    if !was_masked && shared_info::upcall_pending() {
        // Unmasking delivers nothing by itself: a hypercall's return does (Linux's PV
        // xen_force_evtchn_callback does the same).
        hypercall::xen_version(abi::XENVER_VERSION)?;
    }
    let done = outcome?;
    cancelled.map(|()| done)
}

/// What one upcall took for the running vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fired {
    /// Its VIRQ_TIMER was pending.
    pub timer: bool,
    /// Its IPI port was pending.
    pub ipi: bool,
}

/// Called by the trap path for the event upcall: takes the running vCPU's pending events,
/// counts its timer events and IPIs, and says which of the two were among them (the trap path
/// then runs the user handlers' event handler). Must not print: it may have interrupted a
/// console write.
pub fn upcall() -> Fired {
    let vcpu = vcpu::current();
    let own = &VCPUS[vcpu];
    own.upcalls.fetch_add(1, Ordering::Relaxed);
    let timer = own.timer_port.load(Ordering::Relaxed);
    let ipi = own.ipi_port.load(Ordering::Relaxed);
    let mut fired = Fired::default();
    shared_info::take_pending(
        |word| PORT_OWNERS.ports_of(vcpu, word),
        |port| {
            if port == timer {
                fired.timer = true;
            } else if port == ipi {
                fired.ipi = true;
                own.ipis.fetch_add(1, Ordering::Relaxed);
            }
        },
    );
    if fired.timer {
        own.timer_events.fetch_add(1, Ordering::Relaxed);
    }
    fired
}
