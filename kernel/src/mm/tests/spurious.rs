//! Spurious kernel page faults, against the SMP model: a vCPU that still caches the read-only
//! direct-map alias of a table another vCPU freed (the alias went writable again with no flush,
//! as an upgrade needs none) takes a write fault the tables no longer explain. The #PF handler's
//! check ([`SpuriousCheck`]) must resume after exactly that, with one INVLPG on the faulting vCPU,
//! and leave every real fault to the fatal path.

use super::Fixture;
use crate::arch::x86_64::page_fault::PageFault;
use crate::mm::addr::{Pfn, VirtAddr};
use crate::mm::backend::{FrameAccess, XenMmu};
use crate::mm::frame::FrameSource;
use crate::mm::kernel_fault::SpuriousCheck;
use crate::mm::kernel_space::AliasWindow;
use crate::mm::model::{boot_va, PageType, Xen};
use crate::mm::pte::{Level, Pte, PteFlags};
use crate::xen::abi::MmuUpdate;

const NR_PAGES: u64 = 256;
const HEAP_FLAGS: PteFlags =
    PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);
/// An empty L4 slot: mapping a page there builds a new L3, L2 and L1.
const EMPTY_SLOT_VA: u64 = 0xffff_c000_0000_0000;

/// Error-code bits (Intel SDM vol. 3A, 4.7).
const PRESENT: u64 = 1 << 0;
const WRITE: u64 = 1 << 1;
const USER: u64 = 1 << 2;
const RESERVED_BIT: u64 = 1 << 3;
const FETCH: u64 = 1 << 4;

fn check(f: &Fixture) -> SpuriousCheck<'static, Xen> {
    SpuriousCheck::new(*f.pt.p2m(), f.xen.clone(), f.root())
}

fn alias(f: &Fixture, pfn: Pfn) -> VirtAddr {
    AliasWindow::direct_map(f.nr_pages).virt_of(pfn).unwrap()
}

/// Runs the check for a fault with `error_code` at `va` on `vcpu`: its answer, and the
/// `mmuext_op` calls and ops it cost.
fn resolve_on(f: &Fixture, vcpu: usize, error_code: u64, va: VirtAddr) -> (bool, u64, u64) {
    f.xen.machine().set_current(vcpu);
    let before = f.counts();
    let resolved = check(f)
        .resolve(&PageFault::decode(error_code, va.as_u64()), &mut f.xen.clone())
        .expect("the model accepts an INVLPG");
    let cost = f.counts() - before;
    assert_eq!((cost.mmu_update_calls, cost.update_va_mapping_calls), (0, 0), "no update");
    f.xen.machine().set_current(0);
    (resolved, cost.mmuext_calls, cost.mmuext_ops)
}

/// A kernel read through `va` on `vcpu`, filling its TLB.
fn read_on(f: &Fixture, vcpu: usize, va: VirtAddr) -> Pfn {
    let mut m = f.xen.machine();
    m.set_current(vcpu);
    let base = m.baseptr();
    let pfn = m.access(base, va, false).expect("mapped");
    m.set_current(0);
    pfn
}

/// The state of the defect: vCPU 1 read the three tables of a heap page through the direct
/// map (their read-only aliases are in its TLB); vCPU 0 then unmapped the page and freed the
/// tables, which made their aliases writable again with no flush. Returns the tables.
fn stale_read_only_aliases_on_vcpu_1() -> (Fixture, Vec<Pfn>) {
    let mut f = Fixture::boot_smp(NR_PAGES, 2);
    let root = f.root();
    let va = VirtAddr::new(EMPTY_SLOT_VA);
    let tables_before = f.accounting().tables;
    let page = f.pt.map_zeroed(root, va, HEAP_FLAGS, &mut f.frames).unwrap();
    let tables: Vec<Pfn> =
        f.accounting().tables.into_iter().filter(|t| !tables_before.contains(t)).collect();
    assert_eq!(tables.len(), 3, "a new L3, L2 and L1");
    for &table in &tables {
        assert_eq!(read_on(&f, 1, alias(&f, table)), table);
    }
    assert_eq!(f.pt.unmap_flushed(root, va).unwrap(), page);
    f.frames.free_frame(page).unwrap();
    assert_eq!(f.pt.reclaim_empty_tables(root, va, &mut f.frames).unwrap(), 3);
    let m = f.xen.machine();
    for &table in &tables {
        let (_, now) = m.translate(m.baseptr(), alias(&f, table)).unwrap();
        assert!(now.contains(PteFlags::WRITABLE), "the alias of a freed table is writable");
        let cached = m.cached_kernel_flags(1, alias(&f, table)).expect("vCPU 1 still caches it");
        assert!(!cached.contains(PteFlags::WRITABLE), "as read-only");
    }
    drop(m);
    f.assert_clean();
    (f, tables)
}

#[test]
fn a_write_through_a_stale_read_only_alias_is_spurious_and_invalidated_on_the_faulting_vcpu() {
    let (f, tables) = stale_read_only_aliases_on_vcpu_1();
    for table in tables {
        let va = alias(&f, table);
        assert_eq!(resolve_on(&f, 1, PRESENT | WRITE, va), (true, 1, 1), "one INVLPG");
        assert_eq!(f.xen.machine().cached_kernel_flags(1, va), None, "the stale entry is gone");
        // The write, retried, goes through (and the frame is free memory again).
        let mut m = f.xen.machine();
        m.set_current(1);
        let base = m.baseptr();
        assert_eq!(m.access(base, va, true), Ok(table));
        m.set_current(0);
    }
    f.assert_clean();
}

#[test]
fn a_write_to_a_live_tables_read_only_alias_is_a_real_fault() {
    let (mut f, _) = stale_read_only_aliases_on_vcpu_1();
    let root = f.root();
    // A table that is live now: its alias is read-only in the tables too.
    f.pt.map_zeroed(root, VirtAddr::new(EMPTY_SLOT_VA), HEAP_FLAGS, &mut f.frames).unwrap();
    let live: Vec<Pfn> = f.accounting().tables;
    for table in live {
        assert_eq!(resolve_on(&f, 1, PRESENT | WRITE, alias(&f, table)), (false, 0, 0));
        assert_eq!(resolve_on(&f, 0, PRESENT | WRITE, alias(&f, table)), (false, 0, 0));
    }
    f.assert_clean();
}

#[test]
fn only_present_kernel_writes_and_fetches_can_be_spurious() {
    let (f, tables) = stale_read_only_aliases_on_vcpu_1();
    let va = alias(&f, tables[0]);
    // The page is writable now; what the error code says decides.
    for code in [WRITE, PRESENT, PRESENT | WRITE | USER, PRESENT | WRITE | RESERVED_BIT] {
        assert_eq!(resolve_on(&f, 1, code, va), (false, 0, 0), "error code {code:#b}");
    }
    // Not mapped at all (the heap page and its tables are gone).
    let unmapped = VirtAddr::new(EMPTY_SLOT_VA);
    assert_eq!(resolve_on(&f, 1, PRESENT | WRITE, unmapped), (false, 0, 0));
    // Xen's hole is not ours to walk: a real fault.
    let hole = VirtAddr::new(0xffff_8000_0000_0000);
    assert_eq!(resolve_on(&f, 1, PRESENT | WRITE, hole), (false, 0, 0));
    let cached = f.xen.machine().cached_kernel_flags(1, va);
    assert!(cached.is_some_and(|c| !c.contains(PteFlags::WRITABLE)), "nothing invalidated");
    f.assert_clean();
}

#[test]
fn a_fetch_is_spurious_only_where_no_level_forbids_execution() {
    let f = Fixture::boot_smp(NR_PAGES, 2);
    // The image (Xen's boot mapping) is executable; the direct map never is.
    assert_eq!(resolve_on(&f, 1, PRESENT | FETCH, boot_va(1)), (true, 1, 1));
    assert_eq!(resolve_on(&f, 1, PRESENT | FETCH, alias(&f, Pfn(20))), (false, 0, 0));
    f.assert_clean();
}

#[test]
fn a_read_only_entry_above_the_leaf_makes_a_write_fault_real() {
    let mut f = Fixture::boot_smp(NR_PAGES, 2);
    let root = f.root();
    let va = VirtAddr::new(EMPTY_SLOT_VA);
    f.pt.map_zeroed(root, va, HEAP_FLAGS, &mut f.frames).unwrap();
    assert_eq!(resolve_on(&f, 1, PRESENT | WRITE, va), (true, 1, 1), "writable at every level");
    // The L2 entry that links the page's L1 loses its write permission; the leaf keeps it.
    let mut l2 = root.pfn;
    for level in [Level::L4, Level::L3] {
        let link = Pte(f.xen.read_entry(l2, level.index_of(va)));
        l2 = f.pt.p2m().mfn_to_pfn(link.mfn()).unwrap();
    }
    assert_eq!(f.xen.machine().frame_state(l2).0, PageType::Table(Level::L2));
    let index = Level::L2.index_of(va);
    let link = Pte(f.xen.read_entry(l2, index));
    let read_only = Pte(link.0 & !PteFlags::WRITABLE.bits());
    let entry = f.xen.machine().mfn_of(l2).entry_addr(index);
    f.xen.clone().mmu_update(&[MmuUpdate::normal(entry, read_only)]).unwrap();
    assert_eq!(resolve_on(&f, 1, PRESENT | WRITE, va), (false, 0, 0));
    f.assert_clean();
}
