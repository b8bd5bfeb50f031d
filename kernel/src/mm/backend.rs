//! The hypervisor seam: Xen's PV MMU operations as a trait, plus raw access to frame contents.
//!
//! A PV guest never writes a live page table: it asks Xen to, with `mmu_update` batches (each entry
//! checked, applied in order, stopping at the first failure), `mmuext_op` (pin, unpin, switch base
//! pointer, flush) and `update_va_mapping` (one L1 entry of the current address space, with an
//! optional flush). [`XenMmu`] mirrors exactly those calls; the kernel implements it with
//! hypercalls, host tests with a model of Xen that rejects what Xen rejects. [`FrameAccess`] is the
//! other half: reading any frame and writing frames that are still ordinary writable memory
//! (a new table before Xen validates it), through the direct map in the kernel.

use super::addr::{MachineAddr, Mfn, Pfn, VirtAddr, PAGE_SIZE};
use super::pte::{Level, Pte};
use crate::xen::abi::{self, MmuUpdate};
use crate::xen::XenError;

/// A batched call stopped at entry `done`: entries `0..done` took effect, the rest did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchFailure {
    pub done: usize,
    pub errno: XenError,
}

/// The wire struct is xen::abi's; what its fields mean in mm's terms is said here.
impl MmuUpdate {
    /// Set the page-table entry at machine address `entry` to `pte`.
    pub(crate) const fn normal(entry: MachineAddr, pte: Pte) -> Self {
        MmuUpdate { ptr: entry.0 | abi::MMU_NORMAL_PT_UPDATE as u64, val: pte.0 }
    }

    /// The machine address of the entry this update writes.
    pub(crate) const fn entry_addr(&self) -> MachineAddr {
        MachineAddr(self.ptr & !7)
    }

    /// The command in the low bits of `ptr`.
    #[cfg(test)]
    pub(in crate::mm) const fn command(&self) -> u64 {
        self.ptr & 3
    }
}

/// A set of vCPUs by number: bit `n` is vCPU `n`. Xen reads `MMUEXT_*_MULTI`'s mask as a bitmap of
/// `unsigned long` words, as many as the domain's vCPUs need (`vcpumask_to_pcpumask`,
/// xen/arch/x86/mm.c); with at most [`abi::LEGACY_MAX_VCPUS`] (32) vCPUs that is one word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuMask(pub u64);

const _: () = assert!(abi::LEGACY_MAX_VCPUS <= u64::BITS as usize);

impl VcpuMask {
    /// No vCPU.
    pub const EMPTY: VcpuMask = VcpuMask(0);

    /// Only `vcpu`.
    pub const fn single(vcpu: usize) -> VcpuMask {
        VcpuMask(1 << vcpu)
    }

    pub const fn contains(self, vcpu: usize) -> bool {
        self.0 & (1 << vcpu) != 0
    }

    pub const fn with(self, vcpu: usize) -> VcpuMask {
        VcpuMask(self.0 | (1 << vcpu))
    }

    pub const fn without(self, vcpu: usize) -> VcpuMask {
        VcpuMask(self.0 & !(1 << vcpu))
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The vCPUs in the mask, lowest first.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..u64::BITS as usize).filter(move |&v| self.contains(v))
    }

    /// The bitmap words Xen reads behind `arg2.vcpumask` (one `unsigned long`).
    pub(crate) const fn word(self) -> u64 {
        self.0
    }
}

/// The `mmuext_op` commands faultline uses (xen.h `MMUEXT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuExtOp {
    /// `MMUEXT_PIN_L{1..4}_TABLE`: validate the frame as a table of `level` and keep it so.
    Pin { level: Level, mfn: Mfn },
    /// `MMUEXT_UNPIN_TABLE`.
    Unpin(Mfn),
    /// `MMUEXT_NEW_BASEPTR`: the kernel's L4.
    NewBaseptr(Mfn),
    /// `MMUEXT_NEW_USER_BASEPTR`: the L4 used while in user mode.
    NewUserBaseptr(Mfn),
    /// `MMUEXT_TLB_FLUSH_LOCAL`.
    TlbFlushLocal,
    /// `MMUEXT_INVLPG_LOCAL`.
    InvlpgLocal(VirtAddr),
    /// `MMUEXT_TLB_FLUSH_MULTI`: the whole TLB of every vCPU in the mask. Xen flushes the
    /// physical CPUs those vCPUs last ran on and waits for them (`flush_tlb_mask`), global
    /// entries included (`flush_area_local` -> `do_tlb_flush`, xen/arch/x86/flushtlb.c).
    TlbFlushMulti(VcpuMask),
    /// `MMUEXT_INVLPG_MULTI`: one linear address on every vCPU in the mask.
    InvlpgMulti(VirtAddr, VcpuMask),
}

impl MmuExtOp {
    /// The `cmd` field of `struct mmuext_op`.
    pub(crate) const fn command(&self) -> u32 {
        match self {
            MmuExtOp::Pin { level: Level::L1, .. } => abi::MMUEXT_PIN_L1_TABLE,
            MmuExtOp::Pin { level: Level::L2, .. } => abi::MMUEXT_PIN_L2_TABLE,
            MmuExtOp::Pin { level: Level::L3, .. } => abi::MMUEXT_PIN_L3_TABLE,
            MmuExtOp::Pin { level: Level::L4, .. } => abi::MMUEXT_PIN_L4_TABLE,
            MmuExtOp::Unpin(_) => abi::MMUEXT_UNPIN_TABLE,
            MmuExtOp::NewBaseptr(_) => abi::MMUEXT_NEW_BASEPTR,
            MmuExtOp::TlbFlushLocal => abi::MMUEXT_TLB_FLUSH_LOCAL,
            MmuExtOp::InvlpgLocal(_) => abi::MMUEXT_INVLPG_LOCAL,
            MmuExtOp::NewUserBaseptr(_) => abi::MMUEXT_NEW_USER_BASEPTR,
            MmuExtOp::TlbFlushMulti(_) => abi::MMUEXT_TLB_FLUSH_MULTI,
            MmuExtOp::InvlpgMulti(..) => abi::MMUEXT_INVLPG_MULTI,
        }
    }

    /// The `arg1` field: an mfn or a linear address (0 when unused).
    pub(crate) const fn arg1(&self) -> u64 {
        match self {
            MmuExtOp::Pin { mfn, .. } | MmuExtOp::Unpin(mfn) => mfn.0,
            MmuExtOp::NewBaseptr(mfn) | MmuExtOp::NewUserBaseptr(mfn) => mfn.0,
            MmuExtOp::InvlpgLocal(va) | MmuExtOp::InvlpgMulti(va, _) => va.as_u64(),
            MmuExtOp::TlbFlushLocal | MmuExtOp::TlbFlushMulti(_) => 0,
        }
    }

    /// The vCPUs an `arg2.vcpumask` must name (the MULTI ops only): the caller points `arg2` at
    /// this mask's word, which must stay in place until the hypercall returns.
    pub(crate) const fn vcpu_mask(&self) -> Option<VcpuMask> {
        match self {
            MmuExtOp::TlbFlushMulti(mask) | MmuExtOp::InvlpgMulti(_, mask) => Some(*mask),
            _ => None,
        }
    }
}

/// The flush `update_va_mapping` performs after its update (`UVMF_*`, local CPU only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UvmFlush {
    None,
    InvlpgLocal,
    TlbFlushLocal,
}

impl UvmFlush {
    /// The `flags` argument.
    pub(crate) const fn flags(self) -> u64 {
        match self {
            UvmFlush::None => abi::UVMF_NONE,
            UvmFlush::TlbFlushLocal => abi::UVMF_TLB_FLUSH | abi::UVMF_LOCAL,
            UvmFlush::InvlpgLocal => abi::UVMF_INVLPG | abi::UVMF_LOCAL,
        }
    }
}

/// Xen's PV MMU hypercalls, one method per hypercall.
pub trait XenMmu {
    /// The vCPU making the calls (what the LOCAL flushes reach).
    fn vcpu(&self) -> usize;
    /// `HYPERVISOR_mmu_update(reqs, count, &done, DOMID_SELF)`.
    fn mmu_update(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure>;
    /// `HYPERVISOR_mmuext_op(ops, count, &done, DOMID_SELF)`.
    fn mmuext_op(&mut self, ops: &[MmuExtOp]) -> Result<(), BatchFailure>;
    /// `HYPERVISOR_update_va_mapping(va, pte, flags)`: the L1 entry of `va` in the current tables.
    fn update_va_mapping(
        &mut self,
        va: VirtAddr,
        pte: Pte,
        flush: UvmFlush,
    ) -> Result<(), XenError>;
}

/// Plain access to the contents of this domain's frames (in the kernel: through the direct map).
///
/// Reads work on any frame of ours. Writes are only for frames that have a writable alias, i.e.
/// that are not page tables Xen has validated: a new table while it is being prepared. Writing a
/// live table this way would fault in the kernel; the model flags it.
pub trait FrameAccess {
    /// Entry `index` (0..512) of frame `pfn` read as a table.
    fn read_entry(&self, pfn: Pfn, index: usize) -> u64;
    /// Writes entry `index` of frame `pfn`, which must be ordinary writable memory.
    fn write_entry(&mut self, pfn: Pfn, index: usize, value: u64);
    /// Fills frame `pfn`, which must be ordinary writable memory, with zeros.
    fn zero_frame(&mut self, pfn: Pfn);
    /// Reads `out.len()` bytes of frame `pfn` from byte `offset` (within the page).
    fn read_bytes(&self, pfn: Pfn, offset: usize, out: &mut [u8]);
    /// Writes `bytes` into frame `pfn`, which must be ordinary writable memory, at byte `offset`
    /// (within the page).
    fn write_bytes(&mut self, pfn: Pfn, offset: usize, bytes: &[u8]);
    /// Copies all of frame `from` into frame `to`, which must be ordinary writable memory.
    fn copy_frame(&mut self, from: Pfn, to: Pfn) {
        let mut chunk = [0u8; 512];
        for offset in (0..PAGE_SIZE as usize).step_by(chunk.len()) {
            self.read_bytes(from, offset, &mut chunk);
            self.write_bytes(to, offset, &chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::pte::PteFlags;

    #[test]
    fn mmu_update_matches_the_c_layout() {
        assert_eq!(core::mem::size_of::<MmuUpdate>(), 16);
        let u = MmuUpdate::normal(Mfn(3).entry_addr(5), Pte::new(Mfn(9), PteFlags::PRESENT));
        assert_eq!((u.ptr, u.val), (0x3028, 0x9001));
        assert_eq!(u.entry_addr(), MachineAddr(0x3028));
        assert_eq!(u.command(), u64::from(abi::MMU_NORMAL_PT_UPDATE));
    }

    #[test]
    fn mmuext_commands_match_xen_h() {
        let mfn = Mfn(1);
        assert_eq!(MmuExtOp::Pin { level: Level::L1, mfn }.command(), 0);
        assert_eq!(MmuExtOp::Pin { level: Level::L4, mfn }.command(), 3);
        assert_eq!(MmuExtOp::Unpin(mfn).command(), 4);
        assert_eq!(MmuExtOp::NewBaseptr(mfn).command(), 5);
        assert_eq!(MmuExtOp::TlbFlushLocal.command(), 6);
        assert_eq!(MmuExtOp::InvlpgLocal(VirtAddr::new(0x1000)).arg1(), 0x1000);
        assert_eq!(MmuExtOp::NewUserBaseptr(mfn).command(), 15);
        assert_eq!(UvmFlush::InvlpgLocal.flags(), 2);
        let mask = VcpuMask::single(1).with(2);
        let flush = MmuExtOp::TlbFlushMulti(mask);
        assert_eq!((flush.command(), flush.arg1(), flush.vcpu_mask()), (8, 0, Some(mask)));
        let invlpg = MmuExtOp::InvlpgMulti(VirtAddr::new(0x5000), mask);
        assert_eq!((invlpg.command(), invlpg.arg1(), invlpg.vcpu_mask()), (9, 0x5000, Some(mask)));
        assert_eq!(MmuExtOp::InvlpgLocal(VirtAddr::new(0x5000)).vcpu_mask(), None);
    }

    #[test]
    fn a_vcpu_mask_is_the_bitmap_xen_reads() {
        // Bit n of the first unsigned long is vCPU n (vcpumask_to_pcpumask, xen/arch/x86/mm.c).
        let mask = VcpuMask::EMPTY.with(0).with(3).with(31);
        assert_eq!(mask.word(), 0x8000_0009);
        assert_eq!(mask.iter().collect::<Vec<_>>(), [0, 3, 31]);
        assert_eq!(mask.without(3), VcpuMask(0x8000_0001));
        assert!(mask.contains(31) && !mask.contains(1) && VcpuMask::EMPTY.is_empty());
        // arg2 is one pointer wide: the handle to that word.
        assert_eq!(core::mem::size_of::<abi::mmuext_op__bindgen_ty_2>(), 8);
    }
}
