//! In-guest memory tests: demand paging through new tables, Xen refusing a writable table
//! mapping, heap growth, and the guard page below the kernel stack.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::{read_volatile, write_volatile};

use crate::check;
use crate::mm::kernel::{FaultCounts, DEMAND_TEST_BASE, MM};
use crate::mm::{FrameSource, MmError, MmStats, Pte, PteFlags, UpdateError, VirtAddr, PAGE_SIZE};
use crate::xen::hypercall;

pub fn run_all() {
    let frames_before = snapshot().frames_used;
    demand_paging_builds_each_table_once();
    dense_demand_paging_costs_one_batch_per_fault();
    xen_refuses_a_writable_table_mapping();
    demand_region_is_given_back(frames_before);
    heap_grows_on_demand();
}

/// Pages the demand tests touched: the five sparse ones and the 600 dense ones.
fn demand_test_pages() -> impl Iterator<Item = u64> {
    const SPARSE: [u64; 5] = [0, PAGE_SIZE, 2 << 20, 1 << 30, 512 << 30];
    let dense_start = DEMAND_TEST_BASE + (64 << 30) - 100 * PAGE_SIZE;
    SPARSE
        .into_iter()
        .map(|o| DEMAND_TEST_BASE + o)
        .chain((0..600).map(move |i| dense_start + i * PAGE_SIZE))
}

/// Unmaps every page the demand tests mapped, frees their frames and the tables that became
/// empty: the frame pool must be back where it was (nothing leaked on the kernel's own paths).
fn demand_region_is_given_back(frames_before: u64) {
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    let root = mm.tables.kernel_root();
    let mut pages = 0;
    let mut tables = 0;
    let mut error = None;
    for va in demand_test_pages() {
        let va = VirtAddr::new(va);
        let step = mm.tables.unmap_flushed(root, va).map_err(MmError::from).and_then(|pfn| {
            mm.frames.free_frame(pfn)?;
            pages += 1;
            tables += mm.tables.reclaim_empty_tables(root, va, &mut mm.frames)?;
            Ok(())
        });
        if let Err(e) = step {
            error = Some(e);
            break;
        }
    }
    let frames_after = mm.frames.used_frames();
    drop(guard);
    match error {
        None if frames_after == frames_before => {
            check!(Success, "release: {pages} demand pages and {tables} tables given back, frame pool back to {frames_after} used")
        }
        None => check!(Failure, "release: {pages} pages and {tables} tables given back, but {frames_after} frames used (was {frames_before})"),
        Some(e) => check!(Failure, "release: after {pages} pages: {e:?}"),
    }
}

struct Snapshot {
    stats: MmStats,
    faults: FaultCounts,
    frames_used: u64,
    hypercalls: u64,
}

fn snapshot() -> Snapshot {
    let guard = MM.lock();
    let mm = guard.as_ref().expect("memory manager initialised at boot");
    let snap = Snapshot {
        stats: *mm.tables.stats(),
        faults: mm.faults,
        frames_used: mm.frames.used_frames(),
        hypercalls: 0,
    };
    drop(guard);
    Snapshot { hypercalls: hypercall::total(), ..snap }
}

/// Reads (faulting it in), checks it is zero, writes a pattern and reads it back.
fn touch(va: u64) -> Result<(), (u64, u64)> {
    let p = va as *mut u64;
    // SAFETY: `va` lies in the demand-test region, which the page-fault handler backs with a
    // zeroed, writable frame on first touch; nothing else uses that region.
    unsafe {
        let before = read_volatile(p);
        write_volatile(p, va ^ 0x5a5a);
        let after = read_volatile(p);
        if before != 0 || after != va ^ 0x5a5a {
            return Err((before, after));
        }
    }
    Ok(())
}

/// Five touches in a fresh pair of L4 slots: the first needs a new L3, L2 and L1; +4 KiB none;
/// +2 MiB a new L1; +1 GiB a new L2 and L1; +512 GiB (the next L4 slot) a new L3, L2 and L1.
/// Each fault must cost exactly one hypercall (one mmu_update batch) besides the iret.
fn demand_paging_builds_each_table_once() {
    const OFFSETS: [u64; 5] = [0, 4 << 10, 2 << 20, 1 << 30, 512 << 30];
    let before = snapshot();
    let mut failure = None;
    for offset in OFFSETS {
        if let Err(values) = touch(DEMAND_TEST_BASE + offset) {
            failure = Some((offset, values));
            break;
        }
    }
    let after = snapshot();
    if let Some((offset, (read, back))) = failure {
        check!(Failure, "demand: page at +{offset:#x} read {read:#x} (want 0), then {back:#x}");
        return;
    }
    let faults = after.faults.demand_zero - before.faults.demand_zero;
    let new =
        |level: usize| after.stats.tables_allocated[level] - before.stats.tables_allocated[level];
    let (l1, l2, l3) = (new(0), new(1), new(2));
    let hypercalls = after.hypercalls - before.hypercalls;
    let mmu_calls = after.stats.mmu_update_calls - before.stats.mmu_update_calls;
    let entries = after.stats.mmu_update_entries - before.stats.mmu_update_entries;
    let frames = after.frames_used - before.frames_used;
    let summary = format_args!(
        "demand: {faults} faults, new tables L3={l3} L2={l2} L1={l1}, {hypercalls} hypercalls ({mmu_calls} mmu_update, {entries} entries) = {}.{:02} per fault, {frames} frames",
        hypercalls / faults.max(1),
        hypercalls * 100 / faults.max(1) % 100
    );
    let tables_ok = (l3, l2, l1) == (2, 3, 4);
    if faults == 5 && tables_ok && hypercalls <= faults && frames == faults + l1 + l2 + l3 {
        check!(Success, "{summary}");
    } else {
        check!(Failure, "{summary} (want 5 faults, L3=2 L2=3 L1=4, <= 1 hypercall per fault, frames = faults + tables)");
    }
}

/// 600 consecutive pages from a fresh 2 MiB boundary - 100 pages: crosses into a new L1 once.
fn dense_demand_paging_costs_one_batch_per_fault() {
    const PAGES: u64 = 600;
    let start = DEMAND_TEST_BASE + (64 << 30) - 100 * PAGE_SIZE;
    let before = snapshot();
    let tsc_start = crate::xen::time::rdtsc();
    for i in 0..PAGES {
        if let Err((read, back)) = touch(start + i * PAGE_SIZE) {
            check!(Failure, "dense demand: page {i} read {read:#x} (want 0), then {back:#x}");
            return;
        }
    }
    let cycles = crate::xen::time::rdtsc().wrapping_sub(tsc_start);
    let after = snapshot();
    let faults = after.faults.demand_zero - before.faults.demand_zero;
    let hypercalls = after.hypercalls - before.hypercalls;
    let new_l1 = after.stats.tables_allocated[0] - before.stats.tables_allocated[0];
    // The cycle count is reported, never asserted: under TCG it measures the emulator too.
    let summary = format_args!(
        "dense demand: {faults} faults over {PAGES} pages, {new_l1} new L1 tables, {hypercalls} hypercalls, {} TSC cycles per fault (touch included)",
        cycles / faults.max(1)
    );
    if faults == PAGES && new_l1 == 2 && hypercalls <= faults {
        check!(Success, "{summary}");
    } else {
        check!(Failure, "{summary} (want {PAGES} faults, 2 new L1, <= 1 hypercall per fault)");
    }
}

/// Maps the boot L4's frame writable over a demand-test page with update_va_mapping: Xen must
/// refuse (a page-table frame may never have a writable mapping), the old mapping must survive,
/// and the kernel goes on. The page-table code refuses the same request itself, with no call.
fn xen_refuses_a_writable_table_mapping() {
    let va = DEMAND_TEST_BASE;
    let mut guard = MM.lock();
    let mm = guard.as_mut().expect("memory manager initialised at boot");
    let root = mm.tables.kernel_root();
    let l4_mfn = root.mfn.0;
    let pte = Pte::new(root.mfn, PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE);
    let xen_says = hypercall::update_va_mapping(va, pte.0, crate::xen::abi::UVMF_INVLPG);
    let before_calls = hypercall::total();
    let alias = crate::mm::kernel_space::direct_map_address(root.pfn);
    let ours = mm.tables.protect(
        root,
        alias,
        PteFlags::PRESENT | PteFlags::WRITABLE | PteFlags::NO_EXECUTE,
    );
    let our_calls = hypercall::total() - before_calls;
    drop(guard);
    let still_there = touch_existing(va);
    match (xen_says, ours) {
        (Err(e), Err(UpdateError::TableFrameWritable(pfn))) if our_calls == 0 && still_there => check!(
            Success,
            "writable table: Xen refused mapping L4 mfn {l4_mfn:#x} writable with {e}; the page-table code refused pfn {:#x} itself with 0 hypercalls; old mapping intact",
            pfn.0
        ),
        (xen, ours) => check!(
            Failure,
            "writable table: Xen said {xen:?}, page-table code said {:?} after {our_calls} hypercalls, old mapping intact: {still_there}",
            ours.map(|_| ())
        ),
    }
}

fn touch_existing(va: u64) -> bool {
    // SAFETY: the first demand test mapped this page and wrote `va ^ 0x5a5a` into it.
    unsafe { read_volatile(va as *const u64) == va ^ 0x5a5a }
}

/// Grows the heap by 1 MiB in one vector, then by many small boxes; the pages appear through
/// the fault handler, and memory freed is reused without new faults.
fn heap_grows_on_demand() {
    const WORDS: usize = 128 * 1024; // 1 MiB
    let before = snapshot();
    let mut big: Vec<u64> = Vec::with_capacity(WORDS);
    for i in 0..WORDS {
        big.push(i as u64 * 3);
    }
    let sum_ok = big.iter().enumerate().all(|(i, &v)| v == i as u64 * 3);
    let boxes: Vec<Box<[u8; 100]>> = (0..2000).map(|i| Box::new([i as u8; 100])).collect();
    let boxes_ok = boxes.iter().enumerate().all(|(i, b)| b[99] == i as u8);
    let grown = snapshot();
    drop(big);
    drop(boxes);
    let again: Vec<u64> = alloc::vec![7; WORDS];
    let reused = again.iter().all(|&v| v == 7);
    drop(again);
    let after = snapshot();
    let faults = grown.faults.demand_zero - before.faults.demand_zero;
    let refaults = after.faults.demand_zero - grown.faults.demand_zero;
    let (used, free) = crate::mm::heap::usage();
    let summary = format_args!("heap: 1 MiB vector + 2000 boxes took {faults} demand faults; reuse after free took {refaults}; in use {used} B, free {free} B");
    if sum_ok && boxes_ok && reused && faults >= 256 && refaults == 0 {
        check!(Success, "{summary}");
    } else {
        check!(
            Failure,
            "{summary} (contents ok: {sum_ok}/{boxes_ok}/{reused}; want >= 256 faults then 0)"
        );
    }
}

/// Recurses with 1 KiB frames until it runs into the guard page below the boot stack.
///
/// Under PV an exception is delivered on the stack the kernel is using: if the stack pointer
/// itself were inside the guard page, Xen could not write the exception frame and would kill
/// the domain without a word from us. So each level first probes 12 KiB below its stack
/// pointer, which reaches the guard while there is still room to report it.
pub fn stack_overflow() {
    let depth = recurse(0);
    check!(
        Failure,
        "stack-guard: recursion to depth {depth} returned without reaching the guard page"
    );
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let rsp: u64;
    // SAFETY: reads the stack pointer; no memory access.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    // SAFETY: the probe address is below our stack pointer inside the boot stack or its guard
    // page; a read has no effect, and reaching the guard is the point of the test.
    let _probe = unsafe { read_volatile((rsp - 12 * 1024) as *const u8) };
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    let frame = core::hint::black_box(frame);
    if depth > 100_000 {
        return depth;
    }
    recurse(depth + 1) + u64::from(frame[(depth % 1024) as usize])
}
