//! The page-table code against the model: behaviour, hypercall counts, table accounting.

use super::Fixture;
use crate::mm::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::mm::frame::{FrameError, FrameSource};
use crate::mm::kernel_space::{AliasWindow, DIRECT_MAP_BASE};
use crate::mm::model::{boot_va, PageType, Violation, BOOT_TABLES, BOOT_WINDOW_FRAMES};
use crate::mm::page_table::{MapToError, TableError, UpdateError};
use crate::mm::pte::{Level, PteFlags};

const NR_PAGES: u64 = 256;
const HEAP_FLAGS: PteFlags =
    PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);
/// An address under an L4 slot nothing maps yet: a fault there needs L3, L2 and L1.
const EMPTY_SLOT_VA: u64 = 0xffff_c000_0000_0000;

fn va(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// The frames the page-table code knows as tables.
fn tables(f: &Fixture) -> Vec<Pfn> {
    (0..NR_PAGES).map(Pfn).filter(|&p| f.pt.is_table(p)).collect()
}

/// How many writable aliases a frame has: the direct map, plus Xen's boot mapping for low frames.
fn aliases(pfn: Pfn) -> u64 {
    1 + u64::from(pfn.0 < BOOT_WINDOW_FRAMES)
}

fn direct_va(pfn: Pfn) -> VirtAddr {
    AliasWindow::direct_map(NR_PAGES).virt_of(pfn).unwrap()
}

#[test]
fn boot_takes_over_xens_tables_and_maps_every_frame_in_the_direct_map() {
    let f = Fixture::boot(NR_PAGES);
    for pfn in (0..NR_PAGES).map(Pfn) {
        let mapping =
            f.pt.translate(f.root(), direct_va(pfn))
                .unwrap()
                .expect("direct map covers every frame");
        assert_eq!(mapping.pfn, pfn);
        assert_eq!(mapping.flags.contains(PteFlags::WRITABLE), !f.pt.is_table(pfn), "{pfn:?}");
        assert!(mapping.flags.contains(PteFlags::NO_EXECUTE));
    }
    for table in BOOT_TABLES {
        assert!(f.pt.is_table(table));
    }
    assert_eq!(f.pt.stats().tables_allocated, [1, 1, 1, 0], "one L1 covers 256 frames");
    assert_eq!(f.xen.machine().live_tables(), [2, 2, 2, 1]);
}

#[test]
fn the_direct_map_costs_one_batch_per_512_entries() {
    let f = Fixture::boot(NR_PAGES);
    let s = f.pt.stats();
    assert_eq!(f.counts().mmu_update_calls, s.mmu_update_calls);
    assert_eq!(f.counts().mmu_update_entries, s.mmu_update_entries);
    // 3 new tables: link + their boot-window aliases (they are pfns 16..=18) made read-only.
    // Their direct-map aliases were written read-only while the new L1 was still fresh.
    assert_eq!((s.mmu_update_calls, s.mmu_update_entries), (1, 1 + 3));
    assert_eq!(s.mmuext_calls, 0);
}

#[test]
fn a_fault_needing_l3_l2_and_l1_costs_exactly_one_mmu_update() {
    let mut f = Fixture::boot(NR_PAGES);
    let (before, used_before) = (f.counts(), f.frames.inner.used_frames());
    let (root, tables_before) = (f.root(), tables(&f));
    let pfn =
        f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + 0x123_4000), HEAP_FLAGS, &mut f.frames).unwrap();
    let cost = f.counts() - before;
    assert_eq!(cost.mmu_update_calls, 1);
    assert_eq!(cost.mmuext_calls + cost.update_va_mapping_calls, 0);
    // One link plus, per new table, its direct-map alias (and boot alias, if in the boot window).
    let new_tables: Vec<Pfn> =
        tables(&f).into_iter().filter(|t| !tables_before.contains(t)).collect();
    assert_eq!(new_tables.len(), 3);
    assert_eq!(cost.mmu_update_entries, 1 + new_tables.iter().map(|&t| aliases(t)).sum::<u64>());
    assert_eq!(f.frames.inner.used_frames() - used_before, 4, "three tables and the page");
    assert_eq!(f.pt.stats().tables_allocated, [2, 2, 2, 0]);
    assert_eq!(f.xen.machine().live_tables(), [3, 3, 3, 1]);
    let mapping = f.pt.translate(root, va(EMPTY_SLOT_VA + 0x123_4000)).unwrap().unwrap();
    assert_eq!(mapping.pfn, pfn);
    f.assert_clean();
}

#[test]
fn a_fault_needing_only_an_l1_or_nothing_costs_one_mmu_update_too() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    let (before, tables_before) = (f.counts(), tables(&f));
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + (2 << 20)), HEAP_FLAGS, &mut f.frames).unwrap();
    let cost = f.counts() - before;
    let new_l1 = *tables(&f).iter().find(|t| !tables_before.contains(t)).unwrap();
    let expected = (1, 1 + aliases(new_l1), 0);
    assert_eq!(
        (cost.mmu_update_calls, cost.mmu_update_entries, cost.mmuext_calls),
        expected,
        "link + aliases"
    );
    let before = f.counts();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + PAGE_SIZE), HEAP_FLAGS, &mut f.frames).unwrap();
    let cost = f.counts() - before;
    assert_eq!(
        (cost.mmu_update_calls, cost.mmu_update_entries, cost.mmuext_calls),
        (1, 1, 0),
        "the leaf alone"
    );
    f.assert_clean();
}

#[test]
fn new_tables_lose_every_writable_alias_before_they_are_linked() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    let m = f.xen.machine();
    let all = tables(&f);
    assert_eq!(all.len(), 4 + 3 + 3);
    for pfn in all {
        let (_, flags) = m.translate(m.baseptr(), direct_va(pfn)).unwrap();
        assert!(!flags.contains(PteFlags::WRITABLE), "direct-map alias of {pfn:?}");
        if pfn.0 < BOOT_WINDOW_FRAMES {
            let (_, flags) = m.translate(m.baseptr(), boot_va(pfn.0)).unwrap();
            assert!(!flags.contains(PteFlags::WRITABLE), "boot alias of {pfn:?}");
        }
        assert!(matches!(m.frame_state(pfn), (PageType::Table(_), 1.., _)));
    }
}

#[test]
fn only_downgrades_owe_a_tlb_flush() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    f.pt.map_zeroed(root, page, PteFlags::PRESENT | PteFlags::NO_EXECUTE, &mut f.frames).unwrap();
    assert!(!f.xen.machine().owes_tlb_flush(), "not-present -> present");
    let upgrade = f.pt.protect(root, page, HEAP_FLAGS).unwrap();
    assert!(!upgrade.is_needed(), "RO -> RW");
    f.pt.flush_tlb(upgrade).unwrap();
    f.xen.machine().access(root.mfn, page, true).unwrap();
    let before = f.counts();
    let downgrade = f.pt.protect(root, page, PteFlags::PRESENT | PteFlags::NO_EXECUTE).unwrap();
    assert!(downgrade.is_needed());
    assert_eq!(downgrade, crate::mm::page_table::TlbFlush::page(page).of(root));
    assert!(f.xen.machine().owes_tlb_flush());
    f.pt.flush_tlb(downgrade).unwrap();
    assert!(!f.xen.machine().owes_tlb_flush());
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmuext_calls, cost.mmuext_ops), (1, 1, 1));
    let (pfn, flush) = f.pt.unmap(root, page).unwrap();
    assert!(flush.is_needed());
    f.pt.flush_tlb(flush).unwrap();
    f.frames.free_frame(pfn).unwrap();
    assert_eq!(f.pt.translate(root, page).unwrap(), None);
    f.assert_clean();
}

#[test]
fn replacing_a_frame_costs_one_entry_and_owes_a_flush() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    let first =
        f.pt.map_zeroed(root, page, PteFlags::PRESENT | PteFlags::NO_EXECUTE, &mut f.frames)
            .unwrap();
    let copy = f.frames.allocate_frame().unwrap();
    f.xen.machine().access(root.mfn, page, false).unwrap();
    let before = f.counts();
    let (old, flush) = f.pt.replace(root, page, copy, HEAP_FLAGS).unwrap();
    assert_eq!(old, first);
    assert!(flush.is_needed());
    assert!(f.xen.machine().owes_tlb_flush(), "the old frame may still be in the TLB");
    f.pt.flush_tlb(flush).unwrap();
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmu_update_entries, cost.mmuext_calls), (1, 1, 1));
    assert_eq!(f.pt.translate(root, page).unwrap().map(|m| m.pfn), Some(copy));
    f.frames.free_frame(old).unwrap();
    assert!(matches!(
        f.pt.replace(root, page, BOOT_TABLES[1], HEAP_FLAGS),
        Err(UpdateError::TableFrameWritable(_))
    ));
    let (pfn, flush) = f.pt.unmap(root, page).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    f.frames.free_frame(pfn).unwrap();
    f.assert_clean();
}

#[test]
fn a_forgotten_flush_is_caught_by_the_model() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    f.xen.machine().access(root.mfn, page, true).unwrap();
    let (_pfn, flush) = f.pt.unmap(root, page).unwrap();
    let _ = f.xen.machine().access(root.mfn, page, false);
    assert_eq!(f.xen.machine().bugs(), [Violation::StaleTlb { va: page }]);
    f.pt.flush_tlb(flush).unwrap();
}

#[test]
fn table_frames_are_never_mapped_writable() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let before = f.counts();
    let err = f.pt.map(root, va(EMPTY_SLOT_VA), BOOT_TABLES[1], HEAP_FLAGS, &mut f.frames);
    assert_eq!(err, Err(MapToError::TableFrameWritable(BOOT_TABLES[1])));
    let err = f.pt.protect(root, direct_va(BOOT_TABLES[1]), HEAP_FLAGS);
    assert_eq!(err, Err(UpdateError::TableFrameWritable(BOOT_TABLES[1])));
    assert_eq!(f.counts(), before, "refused before Xen was asked");
    f.pt.map(root, va(EMPTY_SLOT_VA), BOOT_TABLES[1], PteFlags::PRESENT, &mut f.frames).unwrap();
    f.assert_clean();
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let xen_hole = va(0xffff_8000_0000_0000);
    assert_eq!(
        f.pt.map_zeroed(root, xen_hole, HEAP_FLAGS, &mut f.frames),
        Err(MapToError::XenSlot(xen_hole))
    );
    assert_eq!(f.pt.unmap(root, va(EMPTY_SLOT_VA)), Err(UpdateError::NotMapped(va(EMPTY_SLOT_VA))));
    assert_eq!(
        f.pt.protect(root, va(EMPTY_SLOT_VA), HEAP_FLAGS),
        Err(UpdateError::NotMapped(va(EMPTY_SLOT_VA)))
    );
    let existing = direct_va(Pfn(100));
    assert_eq!(
        f.pt.map(root, existing, Pfn(100), HEAP_FLAGS, &mut f.frames),
        Err(MapToError::AlreadyMapped(existing))
    );
    let beyond = Pfn(NR_PAGES);
    assert!(matches!(
        f.pt.map(root, va(EMPTY_SLOT_VA), beyond, HEAP_FLAGS, &mut f.frames),
        Err(MapToError::Translation(_))
    ));
    f.assert_clean();
}

#[test]
fn running_out_of_frames_mid_fault_gives_everything_back() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    // Leave two free frames: the page and one table, but the fault needs three tables.
    while f.frames.inner.free_frames() > 2 {
        f.frames.allocate_frame().unwrap();
    }
    let before = f.counts();
    let result = f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames);
    assert_eq!(result, Err(MapToError::Frame(FrameError::Exhausted)));
    assert_eq!(f.frames.inner.free_frames(), 2);
    assert_eq!(f.counts(), before, "nothing reached Xen");
    assert_eq!(f.pt.translate(root, va(EMPTY_SLOT_VA)).unwrap(), None);
    assert_eq!(tables(&f).len(), 7);
    f.assert_clean();
}

#[test]
fn emptied_tables_are_unlinked_flushed_made_writable_and_freed() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let free_before = f.frames.inner.free_frames();
    let page = va(EMPTY_SLOT_VA);
    f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    let new_tables: Vec<Pfn> = tables(&f).into_iter().skip(7).collect();
    assert_eq!(new_tables.len(), 3);
    let (pfn, flush) = f.pt.unmap(root, page).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    f.frames.free_frame(pfn).unwrap();
    let before = f.counts();
    assert_eq!(f.pt.reclaim_empty_tables(root, page, &mut f.frames), Ok(3));
    let cost = f.counts() - before;
    assert_eq!(
        (cost.mmu_update_calls, cost.mmuext_calls),
        (2, 1),
        "unlinks; flush; aliases writable"
    );
    assert_eq!(f.frames.inner.free_frames(), free_before);
    assert_eq!(f.pt.stats().tables_freed, [1, 1, 1, 0]);
    assert_eq!(f.xen.machine().live_tables(), [2, 2, 2, 1]);
    for table in new_tables {
        assert!(!f.pt.is_table(table));
        let mapping = f.pt.translate(root, direct_va(table)).unwrap().unwrap();
        assert!(mapping.flags.contains(PteFlags::WRITABLE), "alias of {table:?} writable again");
    }
    f.assert_clean();
    // The frames are ordinary memory again: the next fault can reuse them as tables.
    f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    f.assert_clean();
}

#[test]
fn tables_still_in_use_are_not_reclaimed() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + (2 << 20)), HEAP_FLAGS, &mut f.frames).unwrap();
    let (_, flush) = f.pt.unmap(root, va(EMPTY_SLOT_VA)).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    assert_eq!(
        f.pt.reclaim_empty_tables(root, va(EMPTY_SLOT_VA), &mut f.frames),
        Ok(1),
        "only the empty L1"
    );
    assert_eq!(
        f.pt.reclaim_empty_tables(root, va(EMPTY_SLOT_VA + (2 << 20)), &mut f.frames),
        Ok(0)
    );
    assert!(f.pt.translate(root, va(EMPTY_SLOT_VA + (2 << 20))).unwrap().is_some());
    f.assert_clean();
}

#[test]
fn a_user_address_space_is_pinned_used_and_torn_down() {
    let mut f = Fixture::boot(NR_PAGES);
    let free_before = f.frames.inner.free_frames();
    let before = f.counts();
    let user = f.pt.new_user_root(&mut f.frames).unwrap();
    let cost = f.counts() - before;
    assert_eq!(
        (cost.mmu_update_calls, cost.mmuext_calls),
        (1, 1),
        "alias downgrade batch, then pin"
    );
    assert_eq!(f.xen.machine().frame_state(user.pfn), (PageType::Table(Level::L4), 1, true));
    let user_flags = HEAP_FLAGS | PteFlags::USER_ACCESSIBLE;
    for i in 0..3 {
        f.pt.map_zeroed(user, va(0x40_0000 + i * PAGE_SIZE), user_flags, &mut f.frames).unwrap();
    }
    assert!(
        f.pt.translate(f.root(), va(0x40_0000)).unwrap().is_none(),
        "not in the kernel's space"
    );
    f.pt.set_user_root(Some(user)).unwrap();
    assert_eq!(f.xen.machine().access(user.mfn, va(0x40_1000), true).map(|_| ()), Ok(()));
    f.pt.set_user_root(None).unwrap();
    f.pt.destroy_user_root(user, &mut f.frames, &|_| false).unwrap();
    assert_eq!(f.frames.inner.free_frames(), free_before, "tables and pages all returned");
    assert_eq!(f.xen.machine().live_tables(), [2, 2, 2, 1]);
    f.assert_clean();
}

#[test]
fn xen_refuses_to_free_the_user_root_in_use() {
    let mut f = Fixture::boot(NR_PAGES);
    let user = f.pt.new_user_root(&mut f.frames).unwrap();
    f.pt.set_user_root(Some(user)).unwrap();
    let result = f.pt.destroy_user_root(user, &mut f.frames, &|_| false);
    assert!(matches!(result, Err(TableError::Hypervisor(_))), "{result:?}");
    assert_eq!(f.xen.machine().rejections(), [Violation::TableMappedWritable { mfn: user.mfn }]);
    assert_eq!(f.xen.machine().bugs(), [], "and nothing was handed back to the allocator");
}

#[test]
fn a_large_range_is_batched_512_entries_at_a_time() {
    let mut f = Fixture::boot(2048);
    let root = f.root();
    let first = Pfn(1024);
    let pages = 700;
    for pfn in first.0..first.0 + pages {
        assert!(!f.pt.is_table(Pfn(pfn)));
    }
    let before = f.counts();
    f.pt.map_range(
        root,
        va(EMPTY_SLOT_VA),
        first,
        pages,
        PteFlags::PRESENT | PteFlags::NO_EXECUTE,
        &mut f.frames,
    )
    .unwrap();
    let cost = f.counts() - before;
    // 512 pages land in a fresh L1 by plain writes; the second L1 is fresh too: only links and
    // alias downgrades are hypercall entries.
    assert_eq!(cost.mmu_update_calls, 1);
    for i in (0..pages).step_by(97) {
        let m = f.pt.translate(root, va(EMPTY_SLOT_VA + i * PAGE_SIZE)).unwrap().unwrap();
        assert_eq!(m.pfn, Pfn(first.0 + i));
    }
    f.assert_clean();
}

#[test]
fn pages_added_to_an_existing_l1_are_queued_and_sent_together() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    let before = f.counts();
    f.pt.map_range(
        root,
        va(EMPTY_SLOT_VA + PAGE_SIZE),
        Pfn(200),
        40,
        PteFlags::PRESENT,
        &mut f.frames,
    )
    .unwrap();
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmu_update_entries), (1, 40));
    f.assert_clean();
}

#[test]
fn the_stats_line_agrees_with_what_xen_saw() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    let (_, flush) = f.pt.unmap(root, va(EMPTY_SLOT_VA)).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    let (s, c) = (*f.pt.stats(), f.counts());
    assert_eq!(
        (s.mmu_update_calls, s.mmu_update_entries),
        (c.mmu_update_calls, c.mmu_update_entries)
    );
    assert_eq!((s.mmuext_calls, s.mmuext_ops), (c.mmuext_calls, c.mmuext_ops));
    let line = format!("{}", s.line(f.frames.inner.free_frames(), f.frames.inner.used_frames()));
    assert!(line.starts_with("stats: mmu_update_calls=3 "), "{line}");
    assert!(line.contains(" tables_l1=2 ") && line.contains(" tlb_flushes=1 "), "{line}");
}

#[test]
fn the_direct_map_base_is_where_the_window_starts() {
    assert_eq!(direct_va(Pfn(3)), va(DIRECT_MAP_BASE + 3 * PAGE_SIZE));
}

#[test]
fn unmap_or_protect_with_their_flush_cost_one_update_va_mapping_in_the_kernel_space() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    let pfn = f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    let before = f.counts();
    f.pt.protect_flushed(root, page, PteFlags::PRESENT | PteFlags::NO_EXECUTE).unwrap();
    assert_eq!(f.pt.unmap_flushed(root, page), Ok(pfn));
    let cost = f.counts() - before;
    assert_eq!((cost.update_va_mapping_calls, cost.mmu_update_calls, cost.mmuext_calls), (2, 0, 0));
    assert!(!f.xen.machine().owes_tlb_flush());
    let _ = f.xen.machine().access(root.mfn, page, false);
    assert_eq!(f.pt.unmap_flushed(root, page), Err(UpdateError::NotMapped(page)));
    assert_eq!(f.pt.stats().update_va_mapping_calls, 2);
    f.assert_clean();
}

#[test]
fn unmap_flushed_in_another_address_space_falls_back_to_two_calls() {
    let mut f = Fixture::boot(NR_PAGES);
    let user = f.pt.new_user_root(&mut f.frames).unwrap();
    let page = va(0x40_0000);
    let pfn =
        f.pt.map_zeroed(user, page, HEAP_FLAGS | PteFlags::USER_ACCESSIBLE, &mut f.frames).unwrap();
    f.pt.set_user_root(Some(user)).unwrap();
    let before = f.counts();
    assert_eq!(f.pt.unmap_flushed(user, page), Ok(pfn));
    let cost = f.counts() - before;
    assert_eq!((cost.update_va_mapping_calls, cost.mmu_update_calls, cost.mmuext_calls), (0, 1, 1));
    assert!(!f.xen.machine().owes_tlb_flush());
    f.assert_clean();
}
