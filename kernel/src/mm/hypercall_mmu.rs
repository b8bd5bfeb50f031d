//! The memory manager's hypervisor seam implemented with real hypercalls.
//!
//! The fault-injection points `mmu_update`, `mmuext_op` and `update_va_mapping`
//! (`testing::inject`) live here, and an injected failure is a real refusal by Xen: the
//! entries before a position drawn from the seed are sent as they are, then one deliberately
//! invalid request (an entry, a pin or a mapping of a frame or address that no guest may use),
//! which Xen refuses with its own errno. The caller sees exactly what a refusal looks like.

use core::sync::atomic::{AtomicI64, Ordering};

use super::backend::{BatchFailure, MmuExtOp, UvmFlush, XenMmu};
use super::pte::Pte;
use crate::testing::inject::{self, Point, INJECTOR};
use crate::xen::abi::{self, MmuUpdate};
use crate::xen::{hypercall, XenError};
use x86_64::VirtAddr;

/// `XenMmu` through HYPERVISOR_mmu_update / mmuext_op / update_va_mapping on DOMID_SELF.
pub struct HypercallMmu;

/// mmuext_op entries converted per hypercall: a stack array, so no allocation.
const EXT_CHUNK: usize = 16;

/// A machine frame no domain owns (40 bits of ones, far above any host's memory): Xen finds no
/// page for it and refuses the request with EINVAL.
const INVALID_MFN: u64 = (1 << 40) - 1;

/// An address inside Xen's own hole (L4 slot 256): `update_va_mapping` refuses it (EINVAL).
const XEN_HOLE_VA: u64 = 0xffff_8000_0000_0000;

/// What an injected failure reports if Xen ever accepted the invalid request (never seen): not
/// an errno Xen uses, so that a test matching Xen's EINVAL proves the refusal was Xen's.
const NOT_REFUSED: XenError = XenError(4095);

/// Tables pinned through this seam minus tables unpinned (the audit compares it across a run).
static PINS_LIVE: AtomicI64 = AtomicI64::new(0);

/// Pins minus unpins that Xen accepted since boot.
pub fn pins_live() -> i64 {
    PINS_LIVE.load(Ordering::Relaxed)
}

fn count_pins(ops: &[MmuExtOp]) {
    for op in ops {
        match op {
            MmuExtOp::Pin { .. } => PINS_LIVE.fetch_add(1, Ordering::Relaxed),
            MmuExtOp::Unpin(_) => PINS_LIVE.fetch_sub(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// Where an injected batch failure stops: a position in `0..len` drawn from the seed.
fn injected_position(len: usize) -> usize {
    (INJECTOR.draw() % len.max(1) as u64) as usize
}

impl XenMmu for HypercallMmu {
    fn vcpu(&self) -> usize {
        crate::xen::vcpu::current()
    }

    fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
        if !updates.is_empty() && inject::fail(Point::MmuUpdate) {
            let done = injected_position(updates.len());
            send_updates(&updates[..done])?;
            let invalid = [MmuUpdate { ptr: INVALID_MFN << abi::PAGE_SHIFT, val: 0 }];
            return match hypercall::mmu_update(&invalid) {
                Err((_, errno)) => Err(BatchFailure { done, errno }),
                Ok(()) => Err(BatchFailure { done, errno: NOT_REFUSED }),
            };
        }
        send_updates(updates)
    }

    fn mmuext_op(&mut self, ops: &[MmuExtOp]) -> Result<(), BatchFailure> {
        if !ops.is_empty() && inject::fail(Point::MmuextOp) {
            let done = injected_position(ops.len());
            send_ext(&ops[..done])?;
            let mut invalid = [empty_ext()];
            invalid[0].cmd = abi::MMUEXT_UNPIN_TABLE;
            invalid[0].arg1 = abi::mmuext_op__bindgen_ty_1 { mfn: INVALID_MFN };
            return match hypercall::mmuext_op(&invalid) {
                Err((_, errno)) => Err(BatchFailure { done, errno }),
                Ok(()) => Err(BatchFailure { done, errno: NOT_REFUSED }),
            };
        }
        send_ext(ops)
    }

    fn update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: Pte,
        flush: UvmFlush,
    ) -> Result<(), XenError> {
        let va = if inject::fail(Point::UpdateVaMapping) { XEN_HOLE_VA } else { va.as_u64() };
        hypercall::update_va_mapping(va, pte.0, flush.flags())
    }
}

fn send_updates(updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
    hypercall::mmu_update(updates)
        .map_err(|(done, errno)| BatchFailure { done: done as usize, errno })
}

fn send_ext(ops: &[MmuExtOp]) -> Result<(), BatchFailure> {
    let mut base = 0;
    for chunk in ops.chunks(EXT_CHUNK) {
        // The MULTI ops' `arg2.vcpumask` is a guest handle: Xen copies the bitmap from this
        // address while it runs the op (copy_from_guest_offset in vcpumask_to_pcpumask,
        // xen/arch/x86/mm.c; a bad address is EINVAL). The words live on this stack frame until
        // the hypercall below has returned, one per op.
        let mut masks = [0u64; EXT_CHUNK];
        for (word, op) in masks.iter_mut().zip(chunk) {
            *word = op.vcpu_mask().map_or(0, |mask| mask.word());
        }
        let mut raw = [empty_ext(); EXT_CHUNK];
        for ((slot, op), word) in raw.iter_mut().zip(chunk).zip(&masks) {
            slot.cmd = op.command();
            slot.arg1 = abi::mmuext_op__bindgen_ty_1 { mfn: op.arg1() };
            if op.vcpu_mask().is_some() {
                let bitmap: *const u64 = word;
                slot.arg2 = abi::mmuext_op__bindgen_ty_2 { vcpumask: bitmap.cast() };
            }
        }
        hypercall::mmuext_op(&raw[..chunk.len()]).map_err(|(done, errno)| {
            count_pins(&chunk[..(done as usize).min(chunk.len())]);
            BatchFailure { done: base + done as usize, errno }
        })?;
        count_pins(chunk);
        base += chunk.len();
    }
    Ok(())
}

const fn empty_ext() -> abi::mmuext_op {
    abi::mmuext_op {
        cmd: 0,
        arg1: abi::mmuext_op__bindgen_ty_1 { mfn: 0 },
        arg2: abi::mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    }
}
