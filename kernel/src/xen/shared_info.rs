//! The shared_info page: mapped once at boot, read and written only through raw pointers.
//!
//! Xen updates this page behind our back (event bits, time, cr2), so nothing here ever copies
//! it or holds a Rust reference into it: every access is a volatile read or write. Each vCPU
//! uses its own `vcpu_info` slot (`vcpu_info[n]` for vCPU n, [`vcpu::MAX_VCPUS`] of them).

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use super::abi::{self, shared_info, vcpu_info};
use super::slots::{self, Slot};
use super::{vcpu, XenError};

static SHARED_INFO: AtomicPtr<shared_info> = AtomicPtr::new(core::ptr::null_mut());

/// Maps shared_info (a machine address from start_info) over its slot.
pub fn map(machine_addr: u64) -> Result<(), XenError> {
    let va = slots::map(Slot::SharedInfo, machine_addr)?;
    SHARED_INFO.store(va.cast(), Ordering::Release);
    Ok(())
}

/// `vcpu_info[n]`, once shared_info is mapped.
fn vcpu_info_of(n: usize) -> Option<*mut vcpu_info> {
    let shared = SHARED_INFO.load(Ordering::Acquire);
    if shared.is_null() || n >= VCPU_SLOTS {
        return None;
    }
    // SAFETY: `shared` points at the mapped shared_info page; vcpu_info[n] is inside it.
    Some(unsafe { addr_of_mut!((*shared).vcpu_info[n]) })
}

/// The running vCPU's `vcpu_info`.
fn own() -> Option<*mut vcpu_info> {
    vcpu_info_of(vcpu::current())
}

/// The running vCPU's cr2: Xen stores the faulting address there before delivering #PF (the
/// guest cannot read %cr2 itself). `None` before shared_info is mapped.
pub fn cr2() -> Option<u64> {
    let vcpu = own()?;
    // SAFETY: `vcpu` points into the mapped shared_info page; the read is volatile because
    // Xen writes the field.
    Some(unsafe { core::ptr::read_volatile(addr_of!((*vcpu).arch.cr2)) })
}

/// Masks (true) or unmasks (false) event delivery on the running vCPU; returns the previous
/// mask.
pub fn set_upcall_mask(masked: bool) -> Option<bool> {
    set_upcall_mask_of(vcpu::current(), masked)
}

/// Whether an event waits for the running vCPU (`evtchn_upcall_pending`): Xen delivers it at the
/// next return to the guest with events unmasked.
pub fn upcall_pending() -> bool {
    let Some(vcpu) = own() else { return false };
    // SAFETY: as in `cr2`.
    unsafe { core::ptr::read_volatile(addr_of!((*vcpu).evtchn_upcall_pending)) != 0 }
}

/// Sets the event mask of vCPU `n` (e.g. of a vCPU not started yet, so that it starts masked);
/// returns the previous mask.
pub fn set_upcall_mask_of(n: usize, masked: bool) -> Option<bool> {
    let vcpu = vcpu_info_of(n)?;
    // SAFETY: as in `cr2`; the byte is ours to write (Xen public/xen.h, evtchn_upcall_mask).
    unsafe {
        let mask = addr_of_mut!((*vcpu).evtchn_upcall_mask);
        let old = core::ptr::read_volatile(mask);
        core::ptr::write_volatile(mask, u8::from(masked));
        core::sync::atomic::compiler_fence(Ordering::SeqCst);
        Some(old != 0)
    }
}

/// Number of vcpu_info slots Xen reserves in shared_info.
pub const VCPU_SLOTS: usize = abi::LEGACY_MAX_VCPUS;

/// The running vCPU's time record (`vcpu_info.time`), for `time::now_ns`.
pub fn own_time() -> Option<*const abi::vcpu_time_info> {
    let vcpu = own()?;
    // SAFETY: `vcpu` points into the mapped shared_info page.
    Some(unsafe { addr_of!((*vcpu).time) })
}

/// Takes the pending events of the running vCPU: clears its upcall-pending flag, then for each
/// word named in its selector, atomically takes the pending and unmasked bits of the ports
/// `owned` says are delivered to it and calls `each` with their port numbers (Xen public/xen.h,
/// two-level event channel ABI). A word holds ports of every vCPU: Xen names it in the selector
/// of the port's vCPU only, and the bits of another vCPU's ports are left for that one.
pub fn take_pending(owned: impl Fn(usize) -> u64, mut each: impl FnMut(u32)) {
    use core::sync::atomic::AtomicU64;
    let shared = SHARED_INFO.load(Ordering::Acquire);
    let Some(vcpu) = own() else { return };
    // SAFETY: all pointers are into the mapped shared_info page; the words are 8-byte
    // aligned and Xen updates them with atomic operations, so viewing them as atomics is
    // the documented protocol.
    unsafe {
        core::ptr::write_volatile(addr_of_mut!((*vcpu).evtchn_upcall_pending), 0);
        let sel =
            AtomicU64::from_ptr(addr_of_mut!((*vcpu).evtchn_pending_sel)).swap(0, Ordering::AcqRel);
        for word in 0..64 {
            if sel & (1 << word) == 0 {
                continue;
            }
            let pending = AtomicU64::from_ptr(addr_of_mut!((*shared).evtchn_pending[word]));
            let mask = core::ptr::read_volatile(addr_of!((*shared).evtchn_mask[word]));
            let ours = owned(word) & !mask;
            let taken = pending.fetch_and(!ours, Ordering::AcqRel) & ours;
            for bit in 0..64 {
                if taken & (1 << bit) != 0 {
                    each((word * 64 + bit) as u32);
                }
            }
        }
    }
}

/// The wall-clock time of system time 0, in ns since the Unix epoch (shared_info wc_*; read
/// with the version protocol, public/xen.h).
pub fn wallclock_ns() -> Option<u64> {
    let shared = SHARED_INFO.load(Ordering::Acquire);
    if shared.is_null() {
        return None;
    }
    loop {
        // SAFETY: `shared` is the mapped shared_info page; fields are read volatile because
        // Xen updates them, and the version check detects a torn read.
        let (v1, sec, nsec, sec_hi, v2) = unsafe {
            let v1 = core::ptr::read_volatile(addr_of!((*shared).wc_version));
            core::sync::atomic::fence(Ordering::Acquire);
            let sec = core::ptr::read_volatile(addr_of!((*shared).wc_sec));
            let nsec = core::ptr::read_volatile(addr_of!((*shared).wc_nsec));
            let sec_hi = core::ptr::read_volatile(addr_of!((*shared).wc_sec_hi));
            core::sync::atomic::fence(Ordering::Acquire);
            (v1, sec, nsec, sec_hi, core::ptr::read_volatile(addr_of!((*shared).wc_version)))
        };
        if v1 % 2 == 0 && v1 == v2 {
            let secs = (u64::from(sec_hi) << 32) | u64::from(sec);
            return Some(secs * 1_000_000_000 + u64::from(nsec));
        }
    }
}
