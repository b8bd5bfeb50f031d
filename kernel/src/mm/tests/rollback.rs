//! Xen refusing any entry of a batch: every operation leaves the frames, tables and aliases as
//! they were (nothing leaked, pinned, typed or read-only that should not be) and breaks no rule.
//!
//! Each test counts the fallible steps of the operation (mmu_update entries, mmuext ops) on a
//! dry run, then refuses each step in turn on a fresh machine. The model caches every present
//! translation after each batch (speculative walks), so a rollback that forgets its flush leaves
//! a stale translation behind and fails the final check.

use super::Fixture;
use crate::mm::addr::{Pfn, VirtAddr};
use crate::mm::frame::FrameSource;
use crate::mm::page_table::{MapToError, MmError, Root};
use crate::mm::pte::PteFlags;
use crate::xen::XenError;

const NR_PAGES: u64 = 256;
const HEAP_FLAGS: PteFlags =
    PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);
/// Under an L4 slot nothing maps: a fault there needs L3, L2 and L1.
const EMPTY_SLOT_VA: u64 = 0xffff_c000_0000_0000;

fn va(addr: u64) -> VirtAddr {
    VirtAddr::new(addr)
}

/// How many fallible steps `op` takes on a fresh fixture prepared by `setup`.
fn steps_of<T>(setup: impl Fn(&mut Fixture) -> T, op: impl Fn(&mut Fixture, &T)) -> u64 {
    let mut f = Fixture::boot(NR_PAGES);
    let state = setup(&mut f);
    let before = f.xen.machine().steps();
    op(&mut f, &state);
    f.assert_clean();
    let after = f.xen.machine().steps();
    after - before
}

/// Refuses each step of `op` in turn; `op` must fail with the injected errno and leave the
/// accounting as it was; then `op` must succeed on the same machine.
fn refuse_each_step<T, R: core::fmt::Debug, E: Into<MmError> + core::fmt::Debug>(
    setup: impl Fn(&mut Fixture) -> T,
    op: impl Fn(&mut Fixture, &T) -> Result<R, E>,
) -> u64 {
    let steps = steps_of(&setup, |f, state| {
        op(f, state).unwrap();
    });
    assert!(steps > 0);
    for step in 0..steps {
        let mut f = Fixture::boot(NR_PAGES);
        let state = setup(&mut f);
        let before = f.accounting();
        f.xen.machine().speculate(true);
        f.xen.machine().refuse_step(step, XenError::ENOMEM);
        let result = op(&mut f, &state).map_err(Into::into);
        match result {
            Err(MmError::Hypervisor(failure)) => assert_eq!(failure.errno, XenError::ENOMEM),
            Err(MmError::HypervisorCall(errno)) => assert_eq!(errno, XenError::ENOMEM),
            other => panic!("step {step}: {other:?}"),
        }
        assert_eq!(f.accounting(), before, "step {step}: everything as it was");
        f.assert_tables_agree();
        let m = f.xen.machine();
        assert_eq!(m.stale_translations(), [], "step {step}: no stale translation left");
        drop(m);
        f.assert_clean();
        op(&mut f, &state).unwrap_or_else(|e| panic!("step {step}: retry failed: {e:?}"));
        f.assert_tables_agree();
        f.assert_clean();
    }
    steps
}

#[test]
fn a_refused_fault_needing_l3_l2_and_l1_gives_every_frame_back() {
    let steps = refuse_each_step(
        |_| (),
        |f, ()| {
            let root = f.root();
            f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames)
        },
    );
    // The new tables are low frames, inside Xen's boot mapping too: two aliases each.
    assert_eq!(steps, 1 + 3 * 2, "the link and three tables' alias downgrades");
}

#[test]
fn a_refused_fault_in_a_fresh_l1_gives_every_frame_back() {
    refuse_each_step(
        |f| {
            let root = f.root();
            f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
        },
        |f, ()| {
            let root = f.root();
            f.pt.map_zeroed(root, va(EMPTY_SLOT_VA + (2 << 20)), HEAP_FLAGS, &mut f.frames)
        },
    );
}

#[test]
fn a_refused_range_map_over_two_new_l1s_gives_every_table_back() {
    // Two pages on either side of a 2 MiB boundary of an existing L2: two new L1s, two links in
    // one batch. Refusing the second link means undoing the first (and flushing what it mapped).
    let steps = refuse_each_step(
        |f| {
            let root = f.root();
            f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
        },
        |f, ()| {
            let root = f.root();
            let flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
            let start = va(EMPTY_SLOT_VA + (4 << 20) - 0x1000);
            f.pt.map_range(root, start, Pfn(100), 2, flags, &mut f.frames)
        },
    );
    assert_eq!(steps, 2 + 2 * 2, "two links, two tables' alias downgrades");
}

#[test]
fn a_refused_new_user_root_gives_its_frame_back() {
    let steps = refuse_each_step(|_| (), |f, ()| f.pt.new_user_root(&mut f.frames));
    assert_eq!(steps, 2 + 1, "the two alias downgrades, then the pin");
}

#[test]
fn a_refused_reclaim_leaves_the_tables_linked_and_a_retry_frees_them() {
    let page = va(EMPTY_SLOT_VA);
    let steps = refuse_each_step(
        |f| {
            let root = f.root();
            f.pt.map_zeroed(root, page, HEAP_FLAGS, &mut f.frames).unwrap();
            f.xen.machine().access(root.mfn, page, true).unwrap();
            let (pfn, flush) = f.pt.unmap(root, page).unwrap();
            f.pt.flush_tlb(flush).unwrap();
            f.frames.free_frame(pfn).unwrap();
            // A fault next door caches the walk down to the L1 again.
            let _ = f.xen.machine().access(root.mfn, va(EMPTY_SLOT_VA + 0x1000), false);
        },
        |f, ()| {
            let root = f.root();
            f.pt.reclaim_empty_tables(root, page, &mut f.frames)
        },
    );
    assert_eq!(steps, 3 + 1 + 3 * 2, "unlinks; flush; aliases writable");
}

#[test]
fn a_refused_teardown_keeps_the_root_pinned_and_a_retry_frees_everything() {
    let user_flags = HEAP_FLAGS | PteFlags::USER_ACCESSIBLE;
    refuse_each_step(
        |f| {
            let user = f.pt.new_user_root(&mut f.frames).unwrap();
            for i in 0..3 {
                f.pt.map_zeroed(user, va(0x40_0000 + (i << 12)), user_flags, &mut f.frames)
                    .unwrap();
            }
            f.pt.set_user_root(Some(user)).unwrap();
            f.xen.machine().access(user.mfn, va(0x40_1000), true).unwrap();
            f.pt.set_user_root(None).unwrap();
            user
        },
        |f, &user: &Root| f.pt.destroy_user_root(user, &mut f.frames, &|_| false),
    );
}

#[test]
fn running_out_of_frames_mid_batch_keeps_the_pages_before_and_frees_the_failing_pages_tables() {
    let mut f = Fixture::boot(NR_PAGES);
    let root = f.root();
    let flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
    // Page 0 needs L3, L2 and L1; page 1, in the next 1 GiB, an L2 and an L1: one frame short.
    while f.frames.inner.free_frames() > 3 + 1 {
        f.frames.allocate_frame().unwrap();
    }
    let pages =
        [(va(EMPTY_SLOT_VA), Pfn(100), flags), (va(EMPTY_SLOT_VA + (1 << 30)), Pfn(101), flags)];
    let result = f.pt.map_batch(root, pages, &mut f.frames);
    assert!(matches!(result, Err((1, MapToError::Frame(_)))), "{result:?}");
    assert_eq!(f.pt.translate(root, va(EMPTY_SLOT_VA)).unwrap().map(|m| m.pfn), Some(Pfn(100)));
    assert_eq!(f.pt.translate(root, va(EMPTY_SLOT_VA + (1 << 30))).unwrap(), None);
    assert_eq!(f.frames.inner.free_frames(), 1, "the failing page's L2 went back");
    f.assert_tables_agree();
    f.assert_clean();
}

#[test]
fn a_refused_map_batch_gives_its_new_tables_back() {
    let flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
    let pages =
        [(va(EMPTY_SLOT_VA), Pfn(100), flags), (va(EMPTY_SLOT_VA + (1 << 30)), Pfn(101), flags)];
    refuse_each_step(
        |_| (),
        |f, ()| {
            let root = f.root();
            f.pt.map_batch(root, pages, &mut f.frames).map_err(|(_, e)| e)
        },
    );
}

#[test]
fn a_refused_undo_or_undo_flush_is_resent() {
    // The batch of a_refused_range_map_over_two_new_l1s_gives_every_table_back, refused at its
    // second link (step 5): the first link is undone, then a flush. Refuse the undo's first
    // entry and its flush too; the rollback must still end with everything as it was.
    let setup = |f: &mut Fixture| {
        let root = f.root();
        f.pt.map_zeroed(root, va(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    };
    let op = |f: &mut Fixture| {
        let root = f.root();
        let flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
        let start = va(EMPTY_SLOT_VA + (4 << 20) - 0x1000);
        f.pt.map_range(root, start, Pfn(100), 2, flags, &mut f.frames)
    };
    let steps_with = |refusals: &[u64]| {
        let mut f = Fixture::boot(NR_PAGES);
        setup(&mut f);
        for &step in refusals {
            f.xen.machine().refuse_step(step, XenError::ENOMEM);
        }
        let before = f.xen.machine().steps();
        assert!(op(&mut f).is_err());
        let after = f.xen.machine().steps();
        after - before
    };
    let flush_step = steps_with(&[5, 6]) - 1;
    let mut f = Fixture::boot(NR_PAGES);
    setup(&mut f);
    let before = f.accounting();
    f.xen.machine().speculate(true);
    for step in [5, 6, flush_step] {
        f.xen.machine().refuse_step(step, XenError::ENOMEM);
    }
    let result = op(&mut f).map_err(MmError::from);
    assert!(matches!(result, Err(MmError::Hypervisor(_))), "{result:?}");
    assert_eq!(f.xen.machine().pending_refusals(), 0, "all three refusals were reached");
    assert_eq!(f.accounting(), before);
    assert_eq!(f.xen.machine().stale_translations(), []);
    f.assert_tables_agree();
    f.assert_clean();
}
