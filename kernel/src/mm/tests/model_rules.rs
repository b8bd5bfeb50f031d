//! One test per rule of the model of Xen; each fails if its rule is taken out of the model.
//!
//! The tests drive the model with raw hypercalls (no page-table code), on the machine Xen's
//! domain builder leaves: boot L4/L3/L2/L1 at pfns 4..=7, the first 32 frames mapped at
//! KERNEL_VIRT_BASE (tables read-only).

use crate::mm::addr::{Mfn, Pfn, VirtAddr};
use crate::mm::backend::{BatchFailure, FrameAccess, MmuExtOp, UvmFlush, XenMmu};
use crate::mm::frame::FrameSource;
use crate::mm::model::{
    boot_va, AccessFault, CheckedFrames, PageType, Violation, Xen, BOOT_TABLES,
};
use crate::mm::pte::{Level, Pte, PteFlags};
use crate::xen::abi::MmuUpdate;
use crate::xen::XenError;

const RW: PteFlags = PteFlags::PRESENT.union(PteFlags::WRITABLE);
const RO: PteFlags = PteFlags::PRESENT;
const LINK: PteFlags = PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::USER_ACCESSIBLE);

/// A free frame inside the boot window, mapped RW at boot_va(FREE).
const FREE: u64 = 20;

struct Raw {
    xen: Xen,
}

impl Raw {
    fn boot() -> Raw {
        Raw { xen: Xen::boot(64) }
    }

    fn mfn(&self, pfn: u64) -> Mfn {
        self.xen.machine().mfn_of(Pfn(pfn))
    }

    fn table(&self, level: Level) -> Mfn {
        let pfn = BOOT_TABLES[3 - level as usize];
        self.mfn(pfn.0)
    }

    /// The boot L1 entry that maps boot_va(pfn).
    fn alias_entry(&self, pfn: u64) -> crate::mm::addr::MachineAddr {
        self.table(Level::L1).entry_addr(Level::L1.index_of(boot_va(pfn)))
    }

    fn update(&mut self, updates: &[MmuUpdate]) -> Result<(), BatchFailure> {
        self.xen.mmu_update(updates)
    }

    fn ext(&mut self, op: MmuExtOp) -> Result<(), BatchFailure> {
        self.xen.mmuext_op(&[op])
    }

    fn last_rejection(&self) -> Option<Violation> {
        self.xen.machine().rejections().last().copied()
    }

    fn bugs(&self) -> Vec<Violation> {
        self.xen.machine().bugs().to_vec()
    }

    /// An empty entry of the boot L2 (the boot L1 sits at the index of KERNEL_VIRT_BASE).
    fn free_l2_slot(&self) -> crate::mm::addr::MachineAddr {
        self.table(Level::L2).entry_addr(Level::L2.index_of(boot_va(0)) + 1)
    }

    fn va_under_free_l2_slot(&self) -> VirtAddr {
        boot_va(512)
    }
}

fn rejected(done: usize) -> Result<(), BatchFailure> {
    Err(BatchFailure { done, errno: XenError::EINVAL })
}

#[test]
fn linking_a_table_that_still_has_a_writable_mapping_is_rejected() {
    let mut raw = Raw::boot();
    raw.xen.zero_frame(Pfn(FREE));
    let link = MmuUpdate::normal(raw.free_l2_slot(), Pte::new(raw.mfn(FREE), LINK));
    assert_eq!(raw.update(&[link]), rejected(0));
    assert_eq!(
        raw.last_rejection(),
        Some(Violation::WritableFrameAsTable { mfn: raw.mfn(FREE), level: Level::L1 })
    );
    // The same link is accepted once the alias went read-only earlier in the batch.
    let downgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(raw.mfn(FREE), RO));
    assert_eq!(raw.update(&[downgrade, link]), Ok(()));
    assert_eq!(raw.xen.machine().frame_state(Pfn(FREE)), (PageType::Table(Level::L1), 1, false));
}

#[test]
fn the_downgrade_must_come_before_the_link_in_the_batch() {
    let mut raw = Raw::boot();
    raw.xen.zero_frame(Pfn(FREE));
    let link = MmuUpdate::normal(raw.free_l2_slot(), Pte::new(raw.mfn(FREE), LINK));
    let downgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(raw.mfn(FREE), RO));
    assert_eq!(raw.update(&[link, downgrade]), rejected(0));
}

#[test]
fn mapping_a_live_table_writable_is_rejected() {
    let mut raw = Raw::boot();
    let l4 = BOOT_TABLES[0].0;
    let upgrade = MmuUpdate::normal(raw.alias_entry(l4), Pte::new(raw.mfn(l4), RW));
    assert_eq!(raw.update(&[upgrade]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::TableMappedWritable { mfn: raw.mfn(l4) }));
}

#[test]
fn pinning_at_the_wrong_level_is_rejected() {
    let mut raw = Raw::boot();
    let (l4, l1) = (raw.table(Level::L4), raw.table(Level::L1));
    assert_eq!(raw.ext(MmuExtOp::Pin { level: Level::L2, mfn: l1 }), rejected(0));
    assert_eq!(
        raw.last_rejection(),
        Some(Violation::LevelMismatch { mfn: l1, have: Level::L1, want: Level::L2 })
    );
    assert_eq!(raw.ext(MmuExtOp::Unpin(l4)), Ok(()));
    assert_eq!(raw.xen.machine().frame_state(BOOT_TABLES[0]).1, 1, "still the base pointer");
    assert_eq!(raw.ext(MmuExtOp::Pin { level: Level::L3, mfn: l4 }), rejected(0));
    assert_eq!(
        raw.last_rejection(),
        Some(Violation::LevelMismatch { mfn: l4, have: Level::L4, want: Level::L3 })
    );
}

#[test]
fn a_table_is_pinned_once_and_only_pinned_tables_unpin() {
    let mut raw = Raw::boot();
    let (l4, l1) = (raw.table(Level::L4), raw.table(Level::L1));
    assert_eq!(raw.ext(MmuExtOp::Pin { level: Level::L4, mfn: l4 }), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::AlreadyPinned { mfn: l4 }));
    assert_eq!(raw.ext(MmuExtOp::Unpin(l1)), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::NotPinned { mfn: l1 }));
}

#[test]
fn a_pinned_table_cannot_be_made_writable_until_unpinned() {
    let mut raw = Raw::boot();
    let mfn = raw.mfn(FREE);
    raw.xen.zero_frame(Pfn(FREE));
    let downgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(mfn, RO));
    let upgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(mfn, RW));
    assert_eq!(raw.update(&[downgrade]), Ok(()));
    assert_eq!(raw.ext(MmuExtOp::Pin { level: Level::L4, mfn }), Ok(()));
    assert_eq!(raw.update(&[upgrade]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::TableMappedWritable { mfn }));
    assert_eq!(raw.ext(MmuExtOp::Unpin(mfn)), Ok(()));
    assert_eq!(raw.update(&[upgrade]), Ok(()));
}

#[test]
fn a_linked_table_becomes_ordinary_memory_again_once_unlinked() {
    let mut raw = Raw::boot();
    let mfn = raw.mfn(FREE);
    raw.xen.zero_frame(Pfn(FREE));
    let downgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(mfn, RO));
    let link = MmuUpdate::normal(raw.free_l2_slot(), Pte::new(mfn, LINK));
    let upgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(mfn, RW));
    assert_eq!(raw.update(&[downgrade, link]), Ok(()));
    assert_eq!(raw.update(&[upgrade]), rejected(0));
    let unlink = MmuUpdate::normal(raw.free_l2_slot(), Pte::EMPTY);
    assert_eq!(raw.update(&[unlink, upgrade]), Ok(()));
    assert_eq!(raw.xen.machine().frame_state(Pfn(FREE)).0, PageType::Writable);
}

#[test]
fn giving_a_pinned_or_linked_table_back_to_the_allocator_is_a_bug() {
    let raw = Raw::boot();
    let mut frames = CheckedFrames::new(&raw.xen);
    frames.free_frame(BOOT_TABLES[3]).unwrap();
    assert_eq!(raw.bugs(), [Violation::FreedLiveTable { pfn: BOOT_TABLES[3] }]);
    frames.free_frame(Pfn(FREE)).unwrap_err(); // never allocated: a double free, but not a table
    assert_eq!(raw.bugs().len(), 1);
}

#[test]
fn entries_naming_frames_of_other_domains_are_rejected() {
    let mut raw = Raw::boot();
    let foreign = Mfn(0);
    let entry = raw.table(Level::L1).entry_addr(100);
    assert_eq!(raw.update(&[MmuUpdate::normal(entry, Pte::new(foreign, RO))]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::ForeignFrame { mfn: foreign }));
    // Nor may the entry itself live in a foreign frame.
    assert_eq!(raw.update(&[MmuUpdate::normal(foreign.entry_addr(0), Pte::EMPTY)]), rejected(0));
    assert_eq!(raw.ext(MmuExtOp::Pin { level: Level::L1, mfn: foreign }), rejected(0));
}

#[test]
fn xens_l4_slots_are_off_limits() {
    let mut raw = Raw::boot();
    let entry = raw.table(Level::L4).entry_addr(256);
    assert_eq!(raw.update(&[MmuUpdate::normal(entry, Pte::EMPTY)]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::XenSlot { index: 256 }));
}

#[test]
fn superpages_are_rejected() {
    let mut raw = Raw::boot();
    let entry = raw.free_l2_slot();
    let huge = Pte::new(raw.mfn(32), RW | PteFlags::HUGE_PAGE);
    assert_eq!(raw.update(&[MmuUpdate::normal(entry, huge)]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::Superpage { mfn: raw.mfn(32) }));
}

#[test]
fn non_present_entries_must_be_zero() {
    let mut raw = Raw::boot();
    let entry = raw.table(Level::L1).entry_addr(100);
    assert_eq!(raw.update(&[MmuUpdate { ptr: entry.0, val: 0x1234_5000 }]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::NonPresentNotZero { value: 0x1234_5000 }));
}

#[test]
fn unknown_mmu_update_commands_are_rejected() {
    let mut raw = Raw::boot();
    let entry = raw.table(Level::L1).entry_addr(100);
    assert_eq!(raw.update(&[MmuUpdate { ptr: entry.0 | 2, val: 0 }]), rejected(0));
    assert_eq!(raw.last_rejection(), Some(Violation::BadCommand { ptr: entry.0 | 2 }));
}

#[test]
fn mmu_update_applies_in_order_and_stops_at_the_first_failure() {
    let mut raw = Raw::boot();
    let l1 = raw.table(Level::L1);
    let map = |index: usize, pfn: u64, raw: &Raw| {
        MmuUpdate::normal(l1.entry_addr(index), Pte::new(raw.mfn(pfn), RW))
    };
    let bad = MmuUpdate::normal(l1.entry_addr(102), Pte::new(Mfn(0), RO));
    let batch = [map(100, 40, &raw), map(101, 41, &raw), bad, map(103, 43, &raw)];
    assert_eq!(raw.update(&batch), rejected(2));
    let m = raw.xen.machine();
    let root = m.baseptr();
    assert_eq!(m.translate(root, boot_va(100)).map(|t| t.0), Some(Pfn(40)));
    assert_eq!(m.translate(root, boot_va(101)).map(|t| t.0), Some(Pfn(41)));
    assert_eq!(m.translate(root, boot_va(103)), None, "nothing after the failure is applied");
}

#[test]
fn a_downgrade_used_before_a_tlb_flush_is_a_bug() {
    for (new, what) in [
        (Pte::new(Mfn(0), RO), "read-only"),
        (Pte::EMPTY, "unmapped"),
        (Pte::new(Mfn(1), RW), "moved"),
    ] {
        let mut raw = Raw::boot();
        let root = raw.table(Level::L4);
        let new =
            if new.is_present() { Pte::new(raw.mfn(40 + new.mfn().0), new.flags()) } else { new };
        let entry = raw.alias_entry(FREE);
        assert!(raw.xen.machine().access(root, boot_va(FREE), true).is_ok());
        raw.update(&[MmuUpdate::normal(entry, new)]).unwrap();
        let _ = raw.xen.machine().access(root, boot_va(FREE), false);
        assert_eq!(raw.bugs(), [Violation::StaleTlb { va: boot_va(FREE) }], "{what}");
    }
}

#[test]
fn a_flush_after_the_downgrade_settles_the_debt() {
    let flushes = [MmuExtOp::InvlpgLocal(boot_va(FREE)), MmuExtOp::TlbFlushLocal];
    for flush in flushes {
        let mut raw = Raw::boot();
        let root = raw.table(Level::L4);
        let entry = raw.alias_entry(FREE);
        assert!(raw.xen.machine().access(root, boot_va(FREE), true).is_ok(), "cached RW");
        raw.update(&[MmuUpdate::normal(entry, Pte::new(raw.mfn(FREE), RO))]).unwrap();
        assert!(raw.xen.machine().owes_tlb_flush());
        raw.ext(flush).unwrap();
        assert_eq!(raw.xen.machine().access(root, boot_va(FREE), true), Err(AccessFault::ReadOnly));
        assert_eq!(raw.bugs(), []);
    }
}

#[test]
fn invlpg_only_settles_its_own_page() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    let l2_entry = raw.table(Level::L2).entry_addr(Level::L2.index_of(boot_va(0)));
    for page in [FREE, FREE + 1] {
        raw.xen.machine().access(root, boot_va(page), false).unwrap();
    }
    // Unlinking the boot L1 takes away 2 MiB of translations at once.
    raw.update(&[MmuUpdate::normal(l2_entry, Pte::EMPTY)]).unwrap();
    raw.ext(MmuExtOp::InvlpgLocal(boot_va(FREE))).unwrap();
    let _ = raw.xen.machine().access(root, boot_va(FREE), false);
    assert_eq!(raw.bugs(), []);
    let _ = raw.xen.machine().access(root, boot_va(FREE + 1), false);
    assert_eq!(raw.bugs(), [Violation::StaleTlb { va: boot_va(FREE + 1) }]);
}

#[test]
fn not_present_to_present_and_upgrades_need_no_flush() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    let l1 = raw.table(Level::L1);
    let fresh = MmuUpdate::normal(l1.entry_addr(100), Pte::new(raw.mfn(40), RO));
    let upgrade = MmuUpdate::normal(l1.entry_addr(100), Pte::new(raw.mfn(40), RW));
    raw.update(&[fresh, upgrade]).unwrap();
    assert!(!raw.xen.machine().owes_tlb_flush());
    assert_eq!(raw.xen.machine().access(root, boot_va(100), true), Ok(Pfn(40)));
}

#[test]
fn xens_own_flush_on_type_change_covers_a_new_tables_alias() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    raw.xen.zero_frame(Pfn(FREE));
    let downgrade = MmuUpdate::normal(raw.alias_entry(FREE), Pte::new(raw.mfn(FREE), RO));
    let link = MmuUpdate::normal(raw.free_l2_slot(), Pte::new(raw.mfn(FREE), LINK));
    raw.xen.machine().access(root, boot_va(FREE), true).unwrap();
    raw.update(&[downgrade]).unwrap();
    assert!(raw.xen.machine().owes_tlb_flush(), "a read-only alias alone is a debt");
    raw.update(&[link]).unwrap();
    assert!(!raw.xen.machine().owes_tlb_flush(), "Xen flushed when the frame became a table");
    let _ = raw.xen.machine().access(root, boot_va(FREE), false);
    assert_eq!(raw.bugs(), []);
}

#[test]
fn plain_writes_into_a_live_table_are_bugs() {
    let mut raw = Raw::boot();
    raw.xen.write_entry(BOOT_TABLES[3], 100, 0);
    assert_eq!(raw.bugs(), [Violation::WriteToLiveTable { pfn: BOOT_TABLES[3] }]);
    raw.xen.write_entry(Pfn(FREE), 0, 42);
    assert_eq!(raw.bugs().len(), 1, "ordinary memory is fine");
}

#[test]
fn update_va_mapping_needs_an_l1_and_flushes_as_asked() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    let va = raw.va_under_free_l2_slot();
    assert_eq!(raw.xen.update_va_mapping(va, Pte::EMPTY, UvmFlush::None), Err(XenError::EINVAL));
    assert_eq!(raw.last_rejection(), Some(Violation::NoL1Table { va }));
    let ro = Pte::new(raw.mfn(FREE), RO);
    assert_eq!(raw.xen.update_va_mapping(boot_va(FREE), ro, UvmFlush::InvlpgLocal), Ok(()));
    assert!(!raw.xen.machine().owes_tlb_flush());
    assert_eq!(raw.xen.machine().access(root, boot_va(FREE), true), Err(AccessFault::ReadOnly));
}

#[test]
fn a_stale_hit_serves_the_old_frame_and_survives_base_pointer_changes() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    let entry = raw.table(Level::L1).entry_addr(100);
    raw.update(&[MmuUpdate::normal(entry, Pte::new(raw.mfn(40), RW))]).unwrap();
    assert_eq!(raw.xen.machine().access(root, boot_va(100), true), Ok(Pfn(40)));
    // Move the page to another frame without a flush, then switch user base pointers and reload
    // the kernel's: the cached translation stays (global pages / PCID).
    raw.update(&[MmuUpdate::normal(entry, Pte::new(raw.mfn(41), RW))]).unwrap();
    raw.ext(MmuExtOp::NewUserBaseptr(Mfn(0))).unwrap();
    raw.ext(MmuExtOp::NewBaseptr(root)).unwrap();
    assert_eq!(raw.xen.machine().access(root, boot_va(100), true), Ok(Pfn(40)), "stale frame");
    assert_eq!(raw.bugs(), [Violation::StaleTlb { va: boot_va(100) }]);
    raw.ext(MmuExtOp::InvlpgLocal(boot_va(100))).unwrap();
    assert_eq!(raw.xen.machine().access(root, boot_va(100), true), Ok(Pfn(41)));
    assert_eq!(raw.bugs().len(), 1);
}

#[test]
fn a_read_only_hit_does_not_hide_a_later_upgrade() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    let entry = raw.table(Level::L1).entry_addr(100);
    raw.update(&[MmuUpdate::normal(entry, Pte::new(raw.mfn(40), RO))]).unwrap();
    assert_eq!(raw.xen.machine().access(root, boot_va(100), true), Err(AccessFault::ReadOnly));
    assert!(raw.xen.machine().access(root, boot_va(100), false).is_ok());
    raw.update(&[MmuUpdate::normal(entry, Pte::new(raw.mfn(40), RW))]).unwrap();
    assert_eq!(raw.xen.machine().access(root, boot_va(100), true), Ok(Pfn(40)), "re-walked");
    assert_eq!(raw.bugs(), []);
}

#[test]
fn an_unlinked_table_left_in_the_paging_structure_cache_is_a_bug() {
    let mut raw = Raw::boot();
    let root = raw.table(Level::L4);
    let l2_entry = raw.table(Level::L2).entry_addr(Level::L2.index_of(boot_va(0)));
    // A walk to a mapped page caches the L4, L3 and L2 entries on its way; a faulting one would
    // not keep them (the fault invalidates them).
    assert_eq!(raw.xen.machine().access(root, boot_va(200), false), Err(AccessFault::NotPresent));
    raw.xen.machine().access(root, boot_va(FREE), false).unwrap();
    raw.update(&[MmuUpdate::normal(l2_entry, Pte::EMPTY)]).unwrap();
    assert!(raw.xen.machine().owes_tlb_flush());
    let _ = raw.xen.machine().access(root, boot_va(201), false);
    assert_eq!(raw.bugs(), [Violation::StaleTlb { va: boot_va(201) }]);
}

#[test]
fn user_translations_are_shared_by_every_user_root() {
    let mut raw = Raw::boot();
    let kernel = raw.table(Level::L4);
    // Two user L4s that both reuse the boot L3 (so both map boot_va(FREE)), one of them loaded.
    let l3 = Pte::new(raw.table(Level::L3), LINK);
    let slot = Level::L4.index_of(boot_va(0));
    let mut users = Vec::new();
    for pfn in [FREE, FREE + 1] {
        raw.xen.zero_frame(Pfn(pfn));
        raw.xen.write_entry(Pfn(pfn), slot, l3.0);
        let ro = MmuUpdate::normal(raw.alias_entry(pfn), Pte::new(raw.mfn(pfn), RO));
        raw.update(&[ro]).unwrap();
        raw.ext(MmuExtOp::Pin { level: Level::L4, mfn: raw.mfn(pfn) }).unwrap();
        users.push(raw.mfn(pfn));
    }
    raw.ext(MmuExtOp::NewUserBaseptr(users[0])).unwrap();
    const PAGE: u64 = 24;
    assert!(raw.xen.machine().access(users[0], boot_va(PAGE), true).is_ok());
    // The entry changes behind the user space's back; the other user root hits the same entry.
    let entry = raw.alias_entry(PAGE);
    raw.update(&[MmuUpdate::normal(entry, Pte::new(raw.mfn(PAGE), RO))]).unwrap();
    raw.ext(MmuExtOp::NewUserBaseptr(users[1])).unwrap();
    assert!(raw.xen.machine().access(users[1], boot_va(PAGE), true).is_ok(), "stale RW hit");
    assert_eq!(raw.bugs(), [Violation::StaleTlb { va: boot_va(PAGE) }]);
    // The kernel space has its own entries: its first access walks the tables.
    let kernel_write = raw.xen.machine().access(kernel, boot_va(PAGE), true);
    assert_eq!(kernel_write, Err(AccessFault::ReadOnly));
}

#[test]
fn a_refused_step_fails_its_batch_there_with_the_chosen_errno() {
    let mut raw = Raw::boot();
    let l1 = raw.table(Level::L1);
    let map = |index: usize, raw: &Raw| {
        MmuUpdate::normal(l1.entry_addr(index), Pte::new(raw.mfn(40), RO))
    };
    let batch = [map(100, &raw), map(101, &raw), map(102, &raw)];
    let start = raw.xen.machine().steps();
    raw.xen.machine().refuse_step(1, XenError::ENOMEM);
    assert_eq!(raw.update(&batch), Err(BatchFailure { done: 1, errno: XenError::ENOMEM }));
    assert_eq!(raw.xen.machine().steps() - start, 2, "the refused entry counts, the rest not");
    let m = raw.xen.machine();
    assert!(m.translate(m.baseptr(), boot_va(100)).is_some());
    assert!(m.translate(m.baseptr(), boot_va(101)).is_none());
    assert_eq!(m.rejections(), [], "an injected refusal is not a rule Xen enforced");
    drop(m);
    assert_eq!(raw.update(&batch[1..]), Ok(()), "a refusal is used up once");
}

/// Three vCPUs, each having read boot_va(FREE) through its own TLB, then the entry made
/// read-only: each vCPU owes its own flush.
fn three_vcpus_with_a_downgraded_page() -> Xen {
    let xen =
        Xen(std::rc::Rc::new(std::cell::RefCell::new(crate::mm::model::Machine::boot_smp(64, 3))));
    let va = boot_va(FREE);
    for vcpu in 0..3 {
        let mut m = xen.machine();
        m.set_current(vcpu);
        let root = m.baseptr();
        m.access(root, va, true).unwrap();
    }
    let mut m = xen.machine();
    m.set_current(0);
    let l1 = m.mfn_of(BOOT_TABLES[3]);
    let entry = l1.entry_addr(Level::L1.index_of(va));
    let frame = m.mfn_of(Pfn(FREE));
    drop(m);
    let mut x = xen.clone();
    x.mmu_update(&[MmuUpdate::normal(entry, Pte::new(frame, RO))]).unwrap();
    for vcpu in 0..3 {
        assert_eq!(xen.machine().stale_translations_on(vcpu), [va], "vcpu{vcpu} owes a flush");
    }
    xen
}

#[test]
fn local_flushes_reach_the_current_vcpu_only() {
    for op in [MmuExtOp::InvlpgLocal(boot_va(FREE)), MmuExtOp::TlbFlushLocal] {
        let mut xen = three_vcpus_with_a_downgraded_page();
        xen.machine().set_current(1);
        xen.mmuext_op(&[op]).unwrap();
        let m = xen.machine();
        let stale: Vec<bool> = (0..3).map(|v| !m.stale_translations_on(v).is_empty()).collect();
        assert_eq!(stale, [true, false, true], "{op:?}");
    }
}

#[test]
fn multi_flushes_reach_exactly_the_vcpus_of_their_mask() {
    use crate::mm::backend::VcpuMask;
    let mask = VcpuMask::single(0).with(2).with(40); // 40: no such vCPU, ignored as by Xen
    for op in [MmuExtOp::InvlpgMulti(boot_va(FREE), mask), MmuExtOp::TlbFlushMulti(mask)] {
        let mut xen = three_vcpus_with_a_downgraded_page();
        xen.machine().set_current(1);
        xen.mmuext_op(&[op]).unwrap();
        let m = xen.machine();
        let stale: Vec<bool> = (0..3).map(|v| !m.stale_translations_on(v).is_empty()).collect();
        assert_eq!(stale, [false, true, false], "{op:?}");
        assert_eq!(m.rejections(), &[]);
    }
}

#[test]
fn a_new_user_base_pointer_flushes_no_vcpu() {
    let mut xen = three_vcpus_with_a_downgraded_page();
    let l4 = xen.machine().mfn_of(BOOT_TABLES[0]);
    xen.mmuext_op(&[MmuExtOp::NewUserBaseptr(l4)]).unwrap();
    assert_eq!(xen.machine().user_baseptr_on(0), Some(l4));
    assert_eq!(xen.machine().user_baseptr_on(1), None, "base pointers are per vCPU");
    for vcpu in 0..3 {
        assert!(!xen.machine().stale_translations_on(vcpu).is_empty(), "vcpu{vcpu} not flushed");
    }
}
