//! The shared_info page: mapped once at boot, read and written only through raw pointers.
//!
//! Xen updates this page behind our back (event bits, time, cr2), so nothing here ever copies
//! it or holds a Rust reference into it: every access is a volatile read or write.

use core::ptr::{addr_of, addr_of_mut};
use core::sync::atomic::{AtomicPtr, Ordering};

use super::abi::{self, shared_info, vcpu_info};
use super::slots::{self, Slot};
use super::XenError;

static SHARED_INFO: AtomicPtr<shared_info> = AtomicPtr::new(core::ptr::null_mut());

/// Maps shared_info (a machine address from start_info) over its slot.
pub fn map(machine_addr: u64) -> Result<(), XenError> {
    let va = slots::map(Slot::SharedInfo, machine_addr)?;
    SHARED_INFO.store(va.cast(), Ordering::Release);
    Ok(())
}

fn vcpu0() -> Option<*mut vcpu_info> {
    let shared = SHARED_INFO.load(Ordering::Acquire);
    if shared.is_null() {
        return None;
    }
    // SAFETY: `shared` points at the mapped shared_info page; vcpu_info[0] is inside it.
    Some(unsafe { addr_of_mut!((*shared).vcpu_info[0]) })
}

/// vcpu 0's cr2: Xen stores the faulting address there before delivering #PF (the guest
/// cannot read %cr2 itself). `None` before shared_info is mapped.
pub fn cr2() -> Option<u64> {
    let vcpu = vcpu0()?;
    // SAFETY: `vcpu` points into the mapped shared_info page; the read is volatile because
    // Xen writes the field.
    Some(unsafe { core::ptr::read_volatile(addr_of!((*vcpu).arch.cr2)) })
}

/// Masks (true) or unmasks (false) event delivery on vcpu 0; returns the previous mask.
pub fn set_upcall_mask(masked: bool) -> Option<bool> {
    let vcpu = vcpu0()?;
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
