//! This domain's vCPUs: how many Xen gave it, and which one runs the code asking (`%gs`).
//!
//! Each vCPU's kernel `%gs` base points at its own [`VcpuLocal`] record, whose first word is the
//! vCPU's number, so `mov %gs:0` names the running vCPU without a hypercall (Xen keeps a PV
//! kernel's `%gs` base apart from user mode's and swaps the two on every kernel/user switch).
//! Until a second vCPU is started nothing reads `%gs`: every vCPU question answers 0, and a boot
//! with one vCPU never sets a base.

use core::sync::atomic::{AtomicBool, Ordering};

use super::{abi, hypercall, XenError};

/// The most vCPUs this kernel runs: those whose `vcpu_info` sits in shared_info (Xen
/// public/arch-x86/xen.h, XEN_LEGACY_MAX_VCPUS). A vCPU past them would need
/// VCPUOP_register_vcpu_info before VCPUOP_initialise, which Xen otherwise refuses.
pub const MAX_VCPUS: usize = faultline_abi::MAX_VCPUS as usize;
const _: () = assert!(MAX_VCPUS == abi::LEGACY_MAX_VCPUS);

/// The record a vCPU's `%gs` base points at (a cache line each, so that vCPUs do not share one).
#[repr(C, align(64))]
pub struct VcpuLocal {
    /// This vCPU's number: `%gs:0`.
    id: u64,
}

const _: () = assert!(core::mem::offset_of!(VcpuLocal, id) == 0);

static LOCALS: [VcpuLocal; MAX_VCPUS] = {
    let mut locals = [const { VcpuLocal { id: 0 } }; MAX_VCPUS];
    let mut i = 0;
    while i < MAX_VCPUS {
        locals[i].id = i as u64;
        i += 1;
    }
    locals
};

/// Set once vCPU 0's `%gs` base points at its record, before any other vCPU starts.
static LOCALS_IN_USE: AtomicBool = AtomicBool::new(false);

/// The number of the vCPU running this code.
pub fn current() -> usize {
    if !LOCALS_IN_USE.load(Ordering::Acquire) {
        return 0;
    }
    let id: u64;
    // SAFETY: once LOCALS_IN_USE is set every vCPU's kernel %gs base points at its entry of
    // LOCALS (vCPU 0 by `use_locals`, the others from their first instruction, see
    // `local_base`); an 8-byte read of a static that is never written after start-up.
    unsafe {
        core::arch::asm!(
            "mov {id}, qword ptr gs:[0]",
            id = out(reg) id,
            options(nostack, readonly, preserves_flags)
        );
    }
    id as usize
}

/// Whether more than one vCPU may run this kernel's code (the `%gs` records are in use): a
/// report then names the vCPU it comes from.
pub fn several() -> bool {
    LOCALS_IN_USE.load(Ordering::Acquire)
}

/// The `%gs` base for `vcpu` (its [`VcpuLocal`]): for vCPU 0 through [`use_locals`], for the
/// others in their VCPUOP_initialise context.
pub fn local_base(vcpu: usize) -> u64 {
    core::ptr::from_ref(&LOCALS[vcpu]) as u64
}

/// Points vCPU 0's kernel `%gs` base at its record (HYPERVISOR_set_segment_base), then lets
/// [`current`] read `%gs`. Must run on vCPU 0 before any other vCPU starts.
pub fn use_locals() -> Result<(), XenError> {
    hypercall::set_segment_base(abi::SEGBASE_GS_KERNEL, local_base(0))?;
    LOCALS_IN_USE.store(true, Ordering::Release);
    Ok(())
}

/// How many vCPUs the domain has: VCPUOP_is_up answers for every vCPU the domain has (up or
/// down) and ENOENT past the last one (Xen's x86 do_vcpu_op, xen/arch/x86/domain.c; Linux's PV
/// SMP set-up counts them the same way). vCPU 0 runs this code, so the probe starts at 1.
/// Returns the count, and whether the domain has more than [`MAX_VCPUS`] (the rest unused).
pub fn count() -> Result<(usize, bool), XenError> {
    for vcpu in 1..=MAX_VCPUS {
        match hypercall::vcpu_is_up(vcpu as u32) {
            Ok(_) => {}
            Err(XenError::ENOENT) => return Ok((vcpu, false)),
            Err(e) => return Err(e),
        }
    }
    Ok((MAX_VCPUS, true))
}
