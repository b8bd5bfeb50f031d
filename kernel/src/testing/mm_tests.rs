//! In-guest memory tests: demand paging through new tables, Xen refusing a writable table
//! mapping, heap growth, the guard page below the kernel stack, and a heap fault that meets
//! another vCPU's hold of the memory manager.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::check;
use crate::mm::kernel::{faults_waited_for_mm, FaultCounts, DEMAND_TEST_BASE, MM};
use crate::mm::{FrameSource, MmError, MmStats, Pte, PteFlags, UpdateError, VirtAddr, PAGE_SIZE};
use crate::xen::{hypercall, time};

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

/// The vCPU that holds the memory manager in `mm-held-elsewhere`.
const MM_HOLDER_VCPU: usize = 1;
/// How long it holds it at least (and at most, if no fault comes to wait).
const MM_HOLD_NS: u64 = 50_000_000;
const MM_HOLD_MAX_NS: u64 = 5_000_000_000;
/// Set by the holder once it holds [`MM`], cleared once it let go.
static MM_HELD: AtomicBool = AtomicBool::new(false);

/// vCPU 1 takes [`MM`] and keeps it while vCPU 0 writes to a heap page nothing has touched (a
/// demand fault, whose handler needs `MM`). The handler must wait for vCPU 1 (it holds `MM`, not
/// the faulting vCPU) and then map the page: one fault that waited, one demand-zero fault, the
/// write in place. Without the wait, the fault is "page fault inside the memory manager" and
/// the crash report ends the domain.
pub fn heap_fault_waits_for_mm_held_elsewhere() {
    use crate::arch::x86_64::smp;
    const NAME: &str = "mm-held-elsewhere";
    const BYTES: usize = 1 << 20;
    const WAIT_NS: u64 = 20_000_000_000;
    let holder = MM_HOLDER_VCPU;
    if !smp::is_free(holder) {
        check!(Skip, "{NAME}: vCPU {holder} is not online (--vcpus 2)");
        return;
    }
    // A fresh 1 MiB allocation: the allocator writes its records around it, never inside, so
    // its last whole page is one nothing touched yet (the demand-fault count says so below).
    let buffer: Vec<u8> = Vec::with_capacity(BYTES);
    let end = buffer.as_ptr() as u64 + BYTES as u64;
    let page = (end - PAGE_SIZE) & !(PAGE_SIZE - 1);
    let before = snapshot();
    let (waiting_before, waited_before) = faults_waited_for_mm();
    MM_HELD.store(false, Ordering::Release);
    if let Err(e) = smp::post(holder, hold_mm_until_a_fault_waits) {
        check!(Error, "{NAME}: handing vCPU {holder} the job: {e:?}");
        return;
    }
    let deadline = time::now_ns() + WAIT_NS;
    while !MM_HELD.load(Ordering::Acquire) && time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    if !MM_HELD.load(Ordering::Acquire) {
        check!(Error, "{NAME}: vCPU {holder} did not take the memory manager");
        return;
    }
    let me = crate::xen::vcpu::current();
    let start = time::now_ns();
    // SAFETY: `page` lies inside `buffer`'s allocation (its capacity, owned here and not yet
    // used by the vector), a demand-zero heap page; a byte written there is read back below and
    // the vector never reads it (its length stays 0).
    let value = unsafe {
        write_volatile(page as *mut u8, 0xa5);
        read_volatile(page as *const u8)
    };
    let waited_ns = time::now_ns().saturating_sub(start);
    match crate::xen::events::wait_until(|| smp::is_idle(holder), time::now_ns() + WAIT_NS) {
        Ok(true) => {}
        Ok(false) => {
            check!(Error, "{NAME}: vCPU {holder} did not end its hold of the memory manager");
            return;
        }
        Err(e) => {
            check!(Error, "{NAME}: waiting for vCPU {holder} (timer): {e}");
            return;
        }
    }
    drop(buffer);
    let after = snapshot();
    let (waiting_after, waited_after) = faults_waited_for_mm();
    let demand = after.faults.demand_zero - before.faults.demand_zero;
    let (waiting, waited) = (waiting_after - waiting_before, waited_after - waited_before);
    if demand == 1 && waiting == 1 && waited == 1 && value == 0xa5 {
        check!(
            Success,
            "{NAME}: vCPU {me}'s heap fault waited {} ms for vCPU {holder}'s hold of MM and was resolved",
            waited_ns / 1_000_000
        );
    } else {
        check!(
            Failure,
            "{NAME}: {demand} demand faults, {waiting} faults began to wait for vCPU {holder}'s hold and {waited} took MM after it, read back {value:#x} (want 1, 1, 1, 0xa5)"
        );
    }
}

/// The job of `mm-held-elsewhere`, on vCPU 1: holds [`MM`] for [`MM_HOLD_NS`], and on until a
/// kernel fault waits for it (so that vCPU 0's fault meets the hold however late it comes),
/// [`MM_HOLD_MAX_NS`] at most.
fn hold_mm_until_a_fault_waits() {
    let (waiting_before, _) = faults_waited_for_mm();
    let guard = MM.lock();
    MM_HELD.store(true, Ordering::Release);
    let start = time::now_ns();
    loop {
        let held = time::now_ns().saturating_sub(start);
        let a_fault_waits = faults_waited_for_mm().0 > waiting_before;
        if held >= MM_HOLD_MAX_NS || (held >= MM_HOLD_NS && a_fault_waits) {
            break;
        }
        core::hint::spin_loop();
    }
    drop(guard);
    MM_HELD.store(false, Ordering::Release);
}
