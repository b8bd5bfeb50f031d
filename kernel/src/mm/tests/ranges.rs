//! Range unmap and protect: one walk per L1, one batch per 512 entries, one flush per batch, and
//! frames handed back only after their flush.

use super::Fixture;
use crate::mm::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::mm::model::AccessFault;
use crate::mm::page_table::{UpdateError, INVLPG_MAX_PAGES};
use crate::mm::pte::PteFlags;
use crate::xen::XenError;

const HEAP_FLAGS: PteFlags =
    PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);
const RO_FLAGS: PteFlags = PteFlags::PRESENT.union(PteFlags::NO_EXECUTE);
/// Under an L4 slot nothing maps: every table there is new.
const EMPTY_SLOT_VA: u64 = 0xffff_c000_0000_0000;

fn page_va(page: u64) -> VirtAddr {
    VirtAddr::new(EMPTY_SLOT_VA + page * PAGE_SIZE)
}

/// Maps `pages` (page numbers from EMPTY_SLOT_VA) to fresh frames and touches each through the
/// model's TLB (writing), so that a missing flush leaves a cached translation behind.
fn map_and_touch(f: &mut Fixture, pages: &[u64]) -> Vec<Pfn> {
    let root = f.root();
    let mut frames = Vec::new();
    for &page in pages {
        frames.push(f.pt.map_zeroed(root, page_va(page), HEAP_FLAGS, &mut f.frames).unwrap());
        f.xen.machine().access(root.mfn, page_va(page), true).unwrap();
    }
    frames
}

#[test]
fn a_small_unmap_invalidates_each_page_then_hands_the_frames_back() {
    let mut f = Fixture::boot(256);
    let root = f.root();
    let frames = map_and_touch(&mut f, &[1, 2, 4]);
    let before = f.counts();
    let mut released = Vec::new();
    let xen = f.xen.clone();
    let unmapped =
        f.pt.unmap_range(root, page_va(0), 6, &mut |pfn| {
            assert_eq!(xen.machine().stale_translations(), [], "released before its flush");
            released.push(pfn);
        })
        .unwrap();
    assert_eq!(unmapped, 3);
    assert_eq!(released, frames);
    let cost = f.counts() - before;
    // Pages 1..=4: a span of four pages, one INVLPG each, in the same mmuext_op.
    assert_eq!((cost.mmu_update_calls, cost.mmu_update_entries), (1, 3));
    assert_eq!((cost.mmuext_calls, cost.mmuext_ops), (1, 4));
    for page in [1, 2, 4] {
        let access = f.xen.machine().access(root.mfn, page_va(page), false);
        assert_eq!(access, Err(AccessFault::NotPresent));
    }
    f.assert_clean();
}

#[test]
fn an_unmap_wider_than_the_invlpg_limit_is_one_full_flush() {
    let mut f = Fixture::boot(256);
    let root = f.root();
    let pages: Vec<u64> = (0..INVLPG_MAX_PAGES + 1).collect();
    map_and_touch(&mut f, &pages);
    let before = f.counts();
    let mut released = 0;
    let count = pages.len() as u64;
    assert_eq!(f.pt.unmap_range(root, page_va(0), count, &mut |_| released += 1), Ok(count));
    assert_eq!(released, count);
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmuext_calls, cost.mmuext_ops), (1, 1, 1));
    for page in pages {
        let access = f.xen.machine().access(root.mfn, page_va(page), true);
        assert_eq!(access, Err(AccessFault::NotPresent));
    }
    f.assert_clean();
}

#[test]
fn unmapping_32768_pages_costs_at_most_a_hundredth_of_a_hypercall_per_page() {
    const PAGES: u64 = 32768;
    let mut f = Fixture::boot(512);
    let root = f.root();
    // One frame mapped read-only 32768 times: the test needs pages, not memory.
    let frame = f.pt.map_zeroed(root, page_va(0), RO_FLAGS, &mut f.frames).unwrap();
    for page in 1..PAGES {
        f.pt.map(root, page_va(page), frame, RO_FLAGS, &mut f.frames).unwrap();
    }
    for page in (0..PAGES).step_by(1000) {
        f.xen.machine().access(root.mfn, page_va(page), false).unwrap();
    }
    let before = f.counts();
    let mut released = 0;
    let xen = f.xen.clone();
    let unmapped =
        f.pt.unmap_range(root, page_va(0), PAGES, &mut |pfn| {
            assert_eq!(pfn, frame);
            assert!(!xen.machine().owes_tlb_flush(), "released before its flush");
            released += 1;
        })
        .unwrap();
    let cost = f.counts() - before;
    let calls = cost.mmu_update_calls + cost.mmuext_calls + cost.update_va_mapping_calls;
    assert_eq!((unmapped, released), (PAGES, PAGES));
    assert_eq!(cost.mmu_update_calls, PAGES / 512, "one batch per L1");
    assert_eq!(cost.mmuext_calls, PAGES / 512, "one full flush per batch");
    assert!(calls as f64 / PAGES as f64 <= 0.01, "{calls} hypercalls for {PAGES} pages");
    for page in (0..PAGES).step_by(1000) {
        let access = f.xen.machine().access(root.mfn, page_va(page), false);
        assert_eq!(access, Err(AccessFault::NotPresent));
    }
    f.assert_clean();
}

#[test]
fn holes_cost_nothing_and_missing_tables_are_skipped_whole() {
    let mut f = Fixture::boot(256);
    let root = f.root();
    // One page at the start and one 1 GiB + 4 MiB further: between them, missing L2 and L1s.
    let far = (1 << 18) + (4 << 8);
    map_and_touch(&mut f, &[0, far]);
    let before = f.counts();
    let mut released = Vec::new();
    let unmapped = f.pt.unmap_range(root, page_va(0), far + 1, &mut |p| released.push(p)).unwrap();
    assert_eq!((unmapped, released.len()), (2, 2));
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmu_update_entries, cost.mmuext_calls), (1, 2, 1));
    f.assert_clean();
}

#[test]
fn protecting_a_range_read_only_flushes_and_upgrades_cost_no_flush() {
    let mut f = Fixture::boot(256);
    let root = f.root();
    let pages = [0, 1, 2, 600];
    let frames = map_and_touch(&mut f, &pages);
    let before = f.counts();
    assert_eq!(f.pt.protect_range(root, page_va(0), 601, RO_FLAGS), Ok(4));
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmu_update_entries), (1, 4));
    assert_eq!((cost.mmuext_calls, cost.mmuext_ops), (1, 1), "601 pages apart: one full flush");
    for (&page, &pfn) in pages.iter().zip(&frames) {
        let write = f.xen.machine().access(root.mfn, page_va(page), true);
        assert_eq!(write, Err(AccessFault::ReadOnly), "page {page}");
        assert_eq!(f.xen.machine().access(root.mfn, page_va(page), false), Ok(pfn));
    }
    f.assert_clean();
    let before = f.counts();
    assert_eq!(f.pt.protect_range(root, page_va(0), 3, RO_FLAGS), Ok(0), "nothing changes");
    assert_eq!(f.pt.protect_range(root, page_va(0), 3, HEAP_FLAGS), Ok(3));
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.mmuext_calls), (1, 0), "an upgrade owes nothing");
    f.assert_clean();
}

#[test]
fn protecting_a_few_pages_read_only_invalidates_just_those() {
    let mut f = Fixture::boot(256);
    let root = f.root();
    map_and_touch(&mut f, &[3, 5]);
    let before = f.counts();
    assert_eq!(f.pt.protect_range(root, page_va(3), 3, RO_FLAGS), Ok(2));
    let cost = f.counts() - before;
    assert_eq!((cost.mmuext_calls, cost.mmuext_ops), (1, 3), "pages 3..=5");
    for page in [3, 5] {
        let write = f.xen.machine().access(root.mfn, page_va(page), true);
        assert_eq!(write, Err(AccessFault::ReadOnly));
    }
    f.assert_clean();
}

#[test]
fn a_table_frame_is_never_made_writable_by_a_range() {
    let mut f = Fixture::boot(256);
    let root = f.root();
    let table = crate::mm::model::BOOT_TABLES[1];
    f.pt.map(root, page_va(0), table, RO_FLAGS, &mut f.frames).unwrap();
    let result = f.pt.protect_range(root, page_va(0), 1, HEAP_FLAGS);
    assert_eq!(result, Err(UpdateError::TableFrameWritable(table)));
    f.assert_clean();
}

#[test]
fn a_refused_batch_or_flush_leaves_its_pages_mapped_and_hands_nothing_back() {
    // Four entries, then one mmuext_op with four INVLPGs: a refusal at any of the eight steps.
    for step in 0..8 {
        let mut f = Fixture::boot(256);
        let root = f.root();
        let frames = map_and_touch(&mut f, &[0, 1, 2, 3]);
        f.xen.machine().speculate(true);
        f.xen.machine().refuse_step(step, XenError::ENOMEM);
        let mut released = Vec::new();
        let result = f.pt.unmap_range(root, page_va(0), 4, &mut |p| released.push(p));
        assert!(matches!(result, Err(UpdateError::Hypervisor(_))), "step {step}: {result:?}");
        assert_eq!(released, [], "step {step}");
        for (page, &pfn) in frames.iter().enumerate() {
            let access = f.xen.machine().access(root.mfn, page_va(page as u64), true);
            assert_eq!(access, Ok(pfn), "step {step}: page {page} still mapped");
        }
        f.assert_clean();
    }
}
