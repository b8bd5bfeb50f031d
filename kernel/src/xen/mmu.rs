//! The memory manager's hypervisor seam implemented with real hypercalls.

use super::abi;
use super::hypercall;
use crate::mm::backend::{BatchFailure, MmuExtOp, MmuUpdate, UvmFlush, XenErrno, XenMmu};
use crate::mm::pte::Pte;
use x86_64::VirtAddr;

/// `XenMmu` through HYPERVISOR_mmu_update / mmuext_op / update_va_mapping on DOMID_SELF.
pub struct HypercallMmu;

/// mmuext_op entries converted per hypercall: a stack array, so no allocation.
const EXT_CHUNK: usize = 16;

impl XenMmu for HypercallMmu {
    fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
        hypercall::mmu_update(updates)
            .map_err(|(done, e)| BatchFailure { done: done as usize, errno: XenErrno(-e.0) })
    }

    fn mmuext_op(&mut self, ops: &[MmuExtOp]) -> Result<(), BatchFailure> {
        let mut base = 0;
        for chunk in ops.chunks(EXT_CHUNK) {
            let mut raw = [empty_ext(); EXT_CHUNK];
            for (slot, op) in raw.iter_mut().zip(chunk) {
                slot.cmd = op.command();
                slot.arg1 = abi::mmuext_op__bindgen_ty_1 { mfn: op.arg1() };
            }
            hypercall::mmuext_op(&raw[..chunk.len()]).map_err(|(done, e)| BatchFailure {
                done: base + done as usize,
                errno: XenErrno(-e.0),
            })?;
            base += chunk.len();
        }
        Ok(())
    }

    fn update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: Pte,
        flush: UvmFlush,
    ) -> Result<(), XenErrno> {
        hypercall::update_va_mapping(va.as_u64(), pte.0, flush.flags()).map_err(|e| XenErrno(-e.0))
    }
}

const fn empty_ext() -> abi::mmuext_op {
    abi::mmuext_op {
        cmd: 0,
        arg1: abi::mmuext_op__bindgen_ty_1 { mfn: 0 },
        arg2: abi::mmuext_op__bindgen_ty_2 { nr_ents: 0 },
    }
}
