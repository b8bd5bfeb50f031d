//! Random map/unmap/protect/range/translate/reclaim sequences, with Xen refusing random steps,
//! against the model and a plain map of intentions.
//!
//! The property: after every operation (and its owed TLB flush) Xen rejected nothing, the model
//! caught no guest bug and no flush is owed; every intended mapping is what a CPU access through
//! the model reaches, with the intended write permission; translate agrees with the intentions;
//! and every table and frame is accounted for. An operation Xen refused (an injected -ENOMEM)
//! fails with that errno and changes nothing.

use std::collections::HashMap;

use proptest::prelude::*;

use super::Fixture;
use crate::mm::addr::{Pfn, VirtAddr, PAGE_SIZE};
use crate::mm::backend::BatchFailure;
use crate::mm::frame::{FrameError, FrameSource};
use crate::mm::model::{AccessFault, BOOT_RESERVED_FRAMES, BOOT_TABLES};
use crate::mm::page_table::{MapToError, MmError, TlbFlush, UpdateError};
use crate::mm::pte::PteFlags;
use crate::xen::XenError;

/// Few enough frames that a long sequence can run out.
const NR_PAGES: u64 = 160;

#[derive(Clone, Copy, Debug)]
enum Op {
    Map {
        page: u8,
        writable: bool,
    },
    Unmap {
        page: u8,
    },
    Protect {
        page: u8,
        writable: bool,
    },
    Translate {
        page: u8,
    },
    Reclaim {
        page: u8,
    },
    UnmapRange {
        page: u8,
        count: u8,
    },
    ProtectRange {
        page: u8,
        count: u8,
        writable: bool,
    },
    /// Xen refuses the `step`-th fallible step from now (it may land in a later operation), if
    /// no other refusal is pending.
    Refuse {
        step: u8,
    },
}

/// 128 pages spread so that they share or need L1, L2, L3 and L4 entries: 64 in two empty L4
/// slots (every table new), 64 next to the kernel image (only L1s new).
fn page_va(page: u8) -> VirtAddr {
    let i = u64::from(page);
    let spread = ((i & 3) << 12) + (((i >> 2) & 3) << 21);
    if i < 64 {
        VirtAddr::new(
            0xffff_c000_0000_0000 + spread + (((i >> 4) & 1) << 30) + (((i >> 5) & 1) << 39),
        )
    } else {
        VirtAddr::new(0xffff_ffff_8040_0000 + spread + (((i >> 4) & 3) << 23))
    }
}

fn flags(writable: bool) -> PteFlags {
    let mut flags = PteFlags::PRESENT | PteFlags::NO_EXECUTE;
    if writable {
        flags |= PteFlags::WRITABLE;
    }
    flags
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0u8..128;
    prop_oneof![
        4 => (page.clone(), any::<bool>()).prop_map(|(page, writable)| Op::Map { page, writable }),
        2 => page.clone().prop_map(|page| Op::Unmap { page }),
        2 => (page.clone(), any::<bool>()).prop_map(|(page, writable)| Op::Protect { page, writable }),
        1 => page.clone().prop_map(|page| Op::Translate { page }),
        1 => page.clone().prop_map(|page| Op::Reclaim { page }),
        1 => (page.clone(), 1u8..40).prop_map(|(page, count)| Op::UnmapRange { page, count }),
        1 => (page, 1u8..40, any::<bool>())
            .prop_map(|(page, count, writable)| Op::ProtectRange { page, count, writable }),
        1 => (0u8..8).prop_map(|step| Op::Refuse { step }),
    ]
}

/// Whether `e` is the refusal a test injected.
fn refused(e: impl Into<MmError>) -> bool {
    matches!(
        e.into(),
        MmError::Hypervisor(BatchFailure { errno: XenError::ENOMEM, .. })
            | MmError::HypervisorCall(XenError::ENOMEM)
    )
}

/// Issues an owed flush; if Xen refused it, the caller still owes it: a full flush, again.
fn flush(f: &mut Fixture, owed: TlbFlush) -> Result<(), TestCaseError> {
    let mut result = f.pt.flush_tlb(owed);
    for _ in 0..8 {
        match result {
            Ok(()) => return Ok(()),
            Err(e) => prop_assert!(refused(e), "flush failed: {:?}", e),
        }
        result = f.pt.flush_tlb(TlbFlush::everything());
    }
    prop_assert!(result.is_ok(), "flush failed: {:?}", result);
    Ok(())
}

/// The intended pages whose address lies in the `count` pages from `page_va(page)`.
fn pages_in_range(intended: &HashMap<u8, (Pfn, bool)>, page: u8, count: u8) -> Vec<u8> {
    let start = page_va(page).as_u64();
    let end = start + u64::from(count) * PAGE_SIZE;
    let mut pages: Vec<u8> =
        intended.keys().copied().filter(|&p| (start..end).contains(&page_va(p).as_u64())).collect();
    pages.sort_unstable();
    pages
}

/// Runs one operation on the page tables and on the intentions; checks the immediate result.
fn apply(
    f: &mut Fixture,
    intended: &mut HashMap<u8, (Pfn, bool)>,
    op: Op,
) -> Result<(), TestCaseError> {
    let root = f.root();
    match op {
        Op::Map { page, writable } => {
            let result = f.pt.map_zeroed(root, page_va(page), flags(writable), &mut f.frames);
            match (intended.get(&page), result) {
                (Some(_), result) => {
                    prop_assert_eq!(result, Err(MapToError::AlreadyMapped(page_va(page))))
                }
                (None, Ok(pfn)) => {
                    intended.insert(page, (pfn, writable));
                }
                (None, Err(MapToError::Frame(FrameError::Exhausted))) => {}
                (None, Err(e)) if refused(e) => {}
                (None, Err(e)) => prop_assert!(false, "map failed: {:?}", e),
            }
        }
        Op::Unmap { page } => match (intended.get(&page).copied(), f.pt.unmap(root, page_va(page)))
        {
            (Some((pfn, _)), Ok((got, owed))) => {
                prop_assert_eq!(got, pfn);
                intended.remove(&page);
                flush(f, owed)?;
                f.frames.free_frame(pfn).unwrap();
            }
            (None, result) => {
                prop_assert_eq!(result.map(|_| ()), Err(UpdateError::NotMapped(page_va(page))))
            }
            (Some(_), Err(e)) if refused(e) => {}
            (Some(_), Err(e)) => prop_assert!(false, "unmap failed: {:?}", e),
        },
        Op::Protect { page, writable } => {
            match (intended.get_mut(&page), f.pt.protect(root, page_va(page), flags(writable))) {
                (Some(entry), Ok(owed)) => {
                    prop_assert_eq!(
                        owed.is_needed(),
                        entry.1 && !writable,
                        "a flush is owed exactly for RW -> RO"
                    );
                    entry.1 = writable;
                    flush(f, owed)?;
                }
                (None, result) => {
                    prop_assert_eq!(result.map(|_| ()), Err(UpdateError::NotMapped(page_va(page))))
                }
                (Some(_), Err(e)) if refused(e) => {}
                (Some(_), Err(e)) => prop_assert!(false, "protect failed: {:?}", e),
            }
        }
        Op::Translate { page } => {
            let got =
                f.pt.translate(root, page_va(page))
                    .unwrap()
                    .map(|m| (m.pfn, m.flags.contains(PteFlags::WRITABLE)));
            prop_assert_eq!(got, intended.get(&page).copied());
        }
        Op::Reclaim { page } => {
            if let Err(e) = f.pt.reclaim_empty_tables(root, page_va(page), &mut f.frames) {
                prop_assert!(refused(e), "reclaim failed: {:?}", e);
            }
        }
        Op::UnmapRange { page, count } => {
            let covered = pages_in_range(intended, page, count);
            let mut released = Vec::new();
            let result = f
                .pt
                .unmap_range(root, page_va(page), u64::from(count), &mut |pfn| released.push(pfn));
            match result {
                Ok(unmapped) => {
                    prop_assert_eq!(unmapped, covered.len() as u64);
                    let mut expected: Vec<Pfn> = covered.iter().map(|p| intended[p].0).collect();
                    expected.sort_unstable();
                    released.sort_unstable();
                    prop_assert_eq!(&released, &expected);
                    for p in covered {
                        intended.remove(&p);
                    }
                    for pfn in released {
                        f.frames.free_frame(pfn).unwrap();
                    }
                }
                // Fewer than 512 entries: one batch, undone whole.
                Err(e) if refused(e) => prop_assert_eq!(released, []),
                Err(e) => prop_assert!(false, "unmap_range failed: {:?}", e),
            }
        }
        Op::ProtectRange { page, count, writable } => {
            let covered = pages_in_range(intended, page, count);
            match f.pt.protect_range(root, page_va(page), u64::from(count), flags(writable)) {
                Ok(changed) => {
                    let expected = covered.iter().filter(|p| intended[p].1 != writable).count();
                    prop_assert_eq!(changed, expected as u64);
                    for p in covered {
                        intended.get_mut(&p).unwrap().1 = writable;
                    }
                }
                Err(e) if refused(e) => {}
                Err(e) => prop_assert!(false, "protect_range failed: {:?}", e),
            }
        }
        // One refusal at a time: a rollback resends its undo a few times, not indefinitely.
        Op::Refuse { step } => {
            let mut m = f.xen.machine();
            if m.pending_refusals() == 0 {
                m.refuse_step(u64::from(step), XenError::ENOMEM);
            }
        }
    }
    Ok(())
}

/// The invariants that hold between operations.
fn check(f: &Fixture, intended: &HashMap<u8, (Pfn, bool)>) -> Result<(), TestCaseError> {
    let root = f.root();
    let mut m = f.xen.machine();
    for (&page, &(pfn, writable)) in intended {
        prop_assert_eq!(m.access(root.mfn, page_va(page), false), Ok(pfn));
        let write = m.access(root.mfn, page_va(page), true);
        prop_assert_eq!(write, if writable { Ok(pfn) } else { Err(AccessFault::ReadOnly) });
    }
    prop_assert_eq!(m.rejections(), &[] as &[_], "Xen rejected something");
    prop_assert_eq!(m.bugs(), &[] as &[_], "the model caught a guest bug");
    prop_assert!(!m.owes_tlb_flush());
    let live: u64 = m.live_tables().iter().sum();
    prop_assert_eq!(
        live,
        f.pt.stats().tables_live() + BOOT_TABLES.len() as u64,
        "every table is accounted"
    );
    let used = BOOT_RESERVED_FRAMES + f.pt.stats().tables_live() + intended.len() as u64;
    prop_assert_eq!(f.frames.inner.used_frames(), used, "every frame is accounted");
    drop(m);
    f.assert_tables_agree();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_xen_happy_and_translations_right(ops in prop::collection::vec(op(), 1..80)) {
        let mut f = Fixture::boot(NR_PAGES);
        let mut intended = HashMap::new();
        for op in ops {
            apply(&mut f, &mut intended, op)?;
            check(&f, &intended)?;
        }
        let root = f.root();
        for page in 0..128u8 {
            let got = f.pt.translate(root, page_va(page)).unwrap().map(|m| (m.pfn, m.flags.contains(PteFlags::WRITABLE)));
            prop_assert_eq!(got, intended.get(&page).copied());
            let model = f.xen.machine().translate(root.mfn, page_va(page)).map(|(p, fl)| (p, fl.contains(PteFlags::WRITABLE)));
            prop_assert_eq!(model, intended.get(&page).copied());
        }
    }
}
