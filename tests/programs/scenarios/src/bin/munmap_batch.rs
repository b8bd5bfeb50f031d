//! munmap_batch: touches 32768 pages (128 MiB) of one mapping, unmaps them all with one munmap
//! call, and prints how many hypercalls that call cost, as the kernel counts them.
//!
//! Expected: exit 0, with the line `munmap_batch: munmap of 32768 pages: N hypercalls (...)`.
//! A boot test (tests/programs.rs) asserts N <= 327: at most one hypercall per 100 pages.
//! Needs: 128 MiB of frames plus tables, so it is not in the default archive (build.sh builds
//! it and runs it natively; see tests/programs/README.md). Under faultline:
//!   cargo xtask run --dom0 --memory 256 --program OUT/bin/munmap_batch \
//!     -- tests=munmap_batch test_memory=160M test_time=30s
//! Why: a range operation must be batched (issue 9): one walk per L1 table, one mmu_update per up
//! to 512 entries and one flush per batch, not a hypercall (and a flush) per page. The count
//! of one munmap call is deterministic, so it can be asserted.
//!
//! The count comes from a faultline call that issue 9 asks the kernel to provide (it is not in
//! docs/abi.md yet): `faultline_counters(u64 *out, u64 count)`, number 0x66610001 (outside
//! Linux's numbers, next to faultline's auxv entries). It copies up to `count` counters since
//! boot into `out` and returns how many the kernel has:
//!   0 hypercalls of every kind, the iret back to user mode included; 1 mmu_update calls;
//!   2 mmu_update entries; 3 mmuext_op calls; 4 mmuext ops; 5 update_va_mapping calls.
//! The difference between a call just before and just after the munmap is the munmap's cost
//! (plus the two irets back from the calls). On a kernel without the call (ENOSYS) the program
//! exits 2: it cannot prove anything there. On Linux (no AT_FAULTLINE_* auxv entries: no
//! hypercalls to count) it only unmaps and checks, and exits 0.
#![no_std]
#![no_main]

use rt::bench::read_counters;
use rt::start::AT_FAULTLINE_KERNEL_ADDRESS;
use rt::sys::{self, counters, ENOSYS, PROT_READ, PROT_WRITE, SYS_FAULTLINE_COUNTERS};

rt::entry!(main);

const PAGE: u64 = 4096;
const PAGES: u64 = 32768;

fn main(start: &rt::start::Start) -> i32 {
    let on_faultline = start.aux(AT_FAULTLINE_KERNEL_ADDRESS).is_some();
    let len = PAGES * PAGE;
    let base = sys::mmap_anonymous(len, PROT_READ | PROT_WRITE).unwrap();
    for page in 0..PAGES {
        // SAFETY: inside the mapping just made, which nothing else uses.
        unsafe {
            core::ptr::write_volatile(base.add((page * PAGE) as usize) as *mut u64, page | 1)
        };
    }
    for page in (0..PAGES).step_by(4099) {
        // SAFETY: as above.
        let got =
            unsafe { core::ptr::read_volatile(base.add((page * PAGE) as usize) as *const u64) };
        rt::ensure!(got == page | 1, "page {page} holds {got:#x}");
    }

    let before = if on_faultline { Some(read_counters()) } else { None };
    // SAFETY: nothing uses the mapping any more.
    let unmapped = unsafe { sys::munmap(base, len) };
    let after = if on_faultline { Some(read_counters()) } else { None };
    rt::ensure!(unmapped == Ok(0), "munmap of {PAGES} pages: {unmapped:?}");

    // The range is free again: a mapping that may not replace anything fits there, zero-filled.
    let again = sys::mmap_at(base as u64, len, PROT_READ | PROT_WRITE);
    rt::ensure!(again == Ok(base), "the unmapped range is not free: {again:?}");
    for page in [0, PAGES - 1] {
        // SAFETY: inside the new mapping.
        let got =
            unsafe { core::ptr::read_volatile(base.add((page * PAGE) as usize) as *const u64) };
        rt::ensure!(got == 0, "page {page} of the new mapping holds {got:#x}: the old frame");
    }

    match (before, after) {
        (None, _) | (_, None) => {
            rt::println!("munmap_batch: munmap of {PAGES} touched pages in one call; no hypercalls to count on this kernel (not faultline)");
            0
        }
        (Some(Ok(b)), Some(Ok(a))) => {
            let d = |i: usize| a[i] - b[i];
            rt::println!(
                "munmap_batch: munmap of {PAGES} pages: {} hypercalls (mmu_update {} calls, {} entries; mmuext_op {} calls, {} ops; update_va_mapping {})",
                d(counters::HYPERCALLS),
                d(counters::MMU_UPDATE_CALLS),
                d(counters::MMU_UPDATE_ENTRIES),
                d(counters::MMUEXT_CALLS),
                d(counters::MMUEXT_OPS),
                d(counters::UPDATE_VA_MAPPING_CALLS)
            );
            0
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            let why = if e == ENOSYS { "ENOSYS" } else { "failed" };
            rt::eprintln!("munmap_batch: the kernel gives no hypercall count: faultline_counters ({SYS_FAULTLINE_COUNTERS:#x}) {why} (errno {e}); see issue 9");
            2
        }
    }
}
