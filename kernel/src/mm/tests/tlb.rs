//! Flushes checked through the model's TLB: each test touches pages first (filling the TLB as a
//! CPU would), changes the tables, and then touches them again; a missing flush shows up as a
//! stale hit ([`Violation::StaleTlb`]) or a flush still owed.

use super::Fixture;
use crate::mm::addr::{Pfn, VirtAddr};
use crate::mm::frame::FrameSource;
use crate::mm::model::{AccessFault, Violation};
use crate::mm::page_table::Root;
use crate::mm::pte::PteFlags;
use crate::xen::XenError;

const NR_PAGES: u64 = 256;
const USER_FLAGS: PteFlags = PteFlags::PRESENT
    .union(PteFlags::WRITABLE)
    .union(PteFlags::NO_EXECUTE)
    .union(PteFlags::USER_ACCESSIBLE);
const HEAP_FLAGS: PteFlags =
    PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);
const EMPTY_SLOT_VA: u64 = 0xffff_c000_0000_0000;
const USER_VA: u64 = 0x40_0000;

fn va(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// A user root with one page mapped at USER_VA.
fn user_with_a_page(f: &mut Fixture) -> (Root, Pfn) {
    let user = f.pt.new_user_root(&mut f.frames).unwrap();
    let pfn = f.pt.map_zeroed(user, va(USER_VA), USER_FLAGS, &mut f.frames).unwrap();
    (user, pfn)
}

#[test]
fn switching_to_another_user_root_does_not_leave_the_previous_ones_pages_usable() {
    let mut f = Fixture::boot(NR_PAGES);
    let (a, a_page) = user_with_a_page(&mut f);
    let (b, b_page) = user_with_a_page(&mut f);
    f.pt.set_user_root(Some(a)).unwrap();
    assert_eq!(f.xen.machine().access(a.mfn, va(USER_VA), true), Ok(a_page));
    let before = f.counts();
    f.pt.set_user_root(Some(b)).unwrap();
    let cost = f.counts() - before;
    assert_eq!((cost.mmuext_calls, cost.mmuext_ops), (1, 2), "base pointer and flush together");
    assert_eq!(f.xen.machine().access(b.mfn, va(USER_VA), true), Ok(b_page));
    // Back to the same root: nothing to flush.
    let before = f.counts();
    f.pt.set_user_root(Some(b)).unwrap();
    assert_eq!((f.counts() - before).mmuext_ops, 1);
    f.assert_clean();
}

#[test]
fn a_refused_flush_on_a_switch_keeps_the_previous_user_root() {
    let mut f = Fixture::boot(NR_PAGES);
    let (a, a_page) = user_with_a_page(&mut f);
    let (b, b_page) = user_with_a_page(&mut f);
    f.pt.set_user_root(Some(a)).unwrap();
    assert_eq!(f.xen.machine().access(a.mfn, va(USER_VA), true), Ok(a_page));
    f.xen.machine().refuse_step(1, XenError::ENOMEM);
    assert!(f.pt.set_user_root(Some(b)).is_err());
    assert_eq!(f.xen.machine().user_baseptr(), Some(a.mfn), "not switched without the flush");
    f.pt.set_user_root(Some(b)).unwrap();
    assert_eq!(f.xen.machine().access(b.mfn, va(USER_VA), true), Ok(b_page));
    f.assert_clean();
}

#[test]
fn a_torn_down_address_space_leaves_nothing_cached_for_the_next() {
    let mut f = Fixture::boot(NR_PAGES);
    let (a, a_page) = user_with_a_page(&mut f);
    f.pt.set_user_root(Some(a)).unwrap();
    assert_eq!(f.xen.machine().access(a.mfn, va(USER_VA), true), Ok(a_page));
    f.pt.set_user_root(None).unwrap();
    f.pt.destroy_user_root(a, &mut f.frames, &|_| false).unwrap();
    // Someone else gets A's page; the next process maps another frame at the same address.
    let mut taken = Vec::new();
    while !taken.contains(&a_page) {
        taken.push(f.frames.allocate_frame().unwrap());
    }
    for &pfn in taken.iter().filter(|&&p| p != a_page) {
        f.frames.free_frame(pfn).unwrap();
    }
    let (b, b_page) = user_with_a_page(&mut f);
    assert_ne!(b_page, a_page);
    f.pt.set_user_root(Some(b)).unwrap();
    assert_eq!(f.xen.machine().access(b.mfn, va(USER_VA), true), Ok(b_page));
    f.assert_clean();
}

#[test]
fn a_reclaimed_table_is_not_left_in_the_paging_structure_caches() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    let next_door = va(EMPTY_SLOT_VA + 0x1000);
    f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    f.xen.machine().access(root.mfn, page, true).unwrap();
    let (pfn, flush) = f.pt.unmap(root, page).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    f.frames.free_frame(pfn).unwrap();
    // Speculative walks may cache the way down to the (empty) L1 at any time.
    f.xen.machine().speculate(true);
    f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + (1 << 30)), HEAP_FLAGS, &mut f.frames).unwrap();
    assert_eq!(f.pt.reclaim_empty_tables(root, page, &mut f.frames), Ok(2), "L1 and L2");
    assert!(!f.xen.machine().owes_tlb_flush());
    // The freed L1 becomes a data page somewhere else, and the walk must not go through it.
    let reused = f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + (2 << 39)), HEAP_FLAGS, &mut f.frames);
    assert!(reused.is_ok());
    let _ = f.xen.machine().access(root.mfn, next_door, false);
    assert_eq!(f.xen.machine().bugs(), [] as [Violation; 0]);
    f.assert_clean();
}

#[test]
fn replace_and_protect_owe_flushes_that_the_tlb_needs() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    let first = f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    assert_eq!(f.xen.machine().access(root.mfn, page, true), Ok(first));
    let read_only = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
    let flush = f.pt.protect(root, page, read_only).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    assert_eq!(f.xen.machine().access(root.mfn, page, true), Err(AccessFault::ReadOnly));
    let copy = f.frames.allocate_frame().unwrap();
    let (old, flush) = f.pt.replace(root, page, copy, HEAP_FLAGS).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    assert_eq!(old, first);
    assert_eq!(f.xen.machine().access(root.mfn, page, false), Ok(copy));
    let (pfn, flush) = f.pt.unmap(root, page).unwrap();
    f.pt.flush_tlb(flush).unwrap();
    assert_eq!(pfn, copy);
    assert_eq!(f.xen.machine().access(root.mfn, page, false), Err(AccessFault::NotPresent));
    f.assert_clean();
}

#[test]
fn unmap_and_protect_flushed_invalidate_in_both_address_spaces() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let page = va(EMPTY_SLOT_VA);
    let pfn = f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
    assert_eq!(f.xen.machine().access(root.mfn, page, true), Ok(pfn));
    f.pt.protect_flushed(root, page, PteFlags::PRESENT | PteFlags::NO_EXECUTE).unwrap();
    assert_eq!(f.xen.machine().access(root.mfn, page, true), Err(AccessFault::ReadOnly));
    assert_eq!(f.pt.unmap_flushed(root, page), Ok(pfn));
    assert_eq!(f.xen.machine().access(root.mfn, page, false), Err(AccessFault::NotPresent));
    // In a user root, the fallback path: an mmu_update then an mmuext flush.
    let (user, user_page) = user_with_a_page(&mut f);
    f.pt.set_user_root(Some(user)).unwrap();
    assert_eq!(f.xen.machine().access(user.mfn, va(USER_VA), true), Ok(user_page));
    f.pt.protect_flushed(user, va(USER_VA), PteFlags::PRESENT | PteFlags::USER_ACCESSIBLE).unwrap();
    let write = f.xen.machine().access(user.mfn, va(USER_VA), true);
    assert_eq!(write, Err(AccessFault::ReadOnly));
    assert_eq!(f.pt.unmap_flushed(user, va(USER_VA)), Ok(user_page));
    let read = f.xen.machine().access(user.mfn, va(USER_VA), false);
    assert_eq!(read, Err(AccessFault::NotPresent));
    f.assert_clean();
}
