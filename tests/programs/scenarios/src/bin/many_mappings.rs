//! many_mappings: makes 4096 one-page anonymous mappings one mmap call at a time, unmaps every
//! other one, maps read-only pages into the holes (4000 mappings at once), unmaps them all one by
//! one; then splits one large PROT_NONE mapping page by page with mprotect until the kernel says
//! ENOMEM, and prints where.
//!
//! Expected: exit 0. Every mmap and munmap succeeds; every 16th read-write page holds what was
//! written to it until it is unmapped; the split stops with ENOMEM (not another error, not a
//! kill) at 4000 areas or later, and one munmap removes them all again.
//! Why: programs make thousands of mappings: musl's malloc maps every large block and many
//! groups of small ones, and language runtimes map guard pages between thread stacks and heaps.
//! Linux merges adjacent compatible mappings (the 4096 read-write pages) and allows
//! vm.max_map_count (65530 by default) that cannot merge (read-write and read-only pages in
//! turn). A kernel with a small fixed table of areas fails such programs with ENOMEM (faultline
//! before issue 9: the 65th mapping). This program asks for 4000 areas that cannot merge, plus
//! the image's and the heap's: under a limit of 4096 areas in all (faultline's `AREAS_MAX`),
//! far under Linux's. The limit itself must end in ENOMEM and leave everything usable.
#![no_std]
#![no_main]

use rt::sys::{self, ENOMEM, PROT_NONE, PROT_READ, PROT_WRITE};

rt::entry!(main);

const PAGE: u64 = 4096;
const COUNT: usize = 4096;
/// Mappings that cannot merge alive at once: COUNT / 2 read-write pages, the rest read-only.
const PEAK: usize = 4000;
/// Every `TOUCH`th read-write page is written and checked (all of them would need 16 MiB).
const TOUCH: usize = 16;
/// The split stops here if the kernel allows more (Linux with a raised vm.max_map_count).
const SPLIT_PAGES: u64 = 2 * 70_000;

fn mark(i: usize) -> u64 {
    0x6d61_7070_0000_0000 | i as u64
}

/// # Safety
/// `page` must be one of this program's read-write mappings.
unsafe fn touch(page: u64, i: usize) {
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::write_volatile(page as *mut u64, mark(i));
        core::ptr::write_volatile((page + PAGE - 8) as *mut u64, !mark(i));
    }
}

/// # Safety
/// `page` must be one of this program's readable mappings.
unsafe fn holds(page: u64, i: usize) -> bool {
    // SAFETY: the caller's contract.
    unsafe {
        core::ptr::read_volatile(page as *const u64) == mark(i)
            && core::ptr::read_volatile((page + PAGE - 8) as *const u64) == !mark(i)
    }
}

fn main(_: &rt::start::Start) -> i32 {
    // 48 KiB of addresses, on the 1 MiB stack.
    let mut pages = [0u64; COUNT];
    let mut holes = [0u64; PEAK - COUNT / 2];
    let rw = PROT_READ | PROT_WRITE;

    let mut adjacent = 0;
    for i in 0..COUNT {
        let got = sys::mmap_anonymous(PAGE, rw);
        rt::ensure!(
            got.is_ok(),
            "mmap number {} of {COUNT} (one page, read-write): {got:?}",
            i + 1
        );
        pages[i] = got.unwrap() as u64;
        if i > 0 && pages[i].abs_diff(pages[i - 1]) == PAGE {
            adjacent += 1;
        }
        if i % TOUCH == 0 {
            // SAFETY: just mapped, read-write, ours alone.
            unsafe { touch(pages[i], i) };
        }
    }
    for i in (0..COUNT).step_by(TOUCH) {
        // SAFETY: mapped above, read-write.
        rt::ensure!(unsafe { holds(pages[i], i) }, "page {i} at {:#x} lost its marks", pages[i]);
    }

    // Every other page unmapped: the rest can no longer merge with each other.
    for i in (1..COUNT).step_by(2) {
        // SAFETY: nothing uses the odd pages.
        let got = unsafe { sys::munmap(pages[i] as *mut u8, PAGE) };
        rt::ensure!(got == Ok(0), "munmap of page {i} at {:#x}: {got:?}", pages[i]);
    }
    // Read-only pages, up to PEAK mappings in all: a read-only page cannot merge with a
    // read-write neighbour.
    for (n, hole) in holes.iter_mut().enumerate() {
        let got = sys::mmap_anonymous(PAGE, PROT_READ);
        rt::ensure!(
            got.is_ok(),
            "read-only mmap number {} of {} (with {} read-write pages mapped): {got:?}",
            n + 1,
            PEAK - COUNT / 2,
            COUNT / 2
        );
        *hole = got.unwrap() as u64;
    }
    for i in (0..COUNT).step_by(TOUCH) {
        // SAFETY: even pages are still mapped, read-write.
        rt::ensure!(
            unsafe { holds(pages[i], i) },
            "page {i} at {:#x} lost its marks next to the read-only pages",
            pages[i]
        );
    }

    for i in (0..COUNT).step_by(2) {
        // SAFETY: nothing uses the pages any more.
        let got = unsafe { sys::munmap(pages[i] as *mut u8, PAGE) };
        rt::ensure!(got == Ok(0), "munmap of page {i}: {got:?}");
    }
    for (n, &hole) in holes.iter().enumerate() {
        // SAFETY: as above.
        let got = unsafe { sys::munmap(hole as *mut u8, PAGE) };
        rt::ensure!(got == Ok(0), "munmap of read-only page {n}: {got:?}");
    }
    rt::println!(
        "many_mappings: {COUNT} one-page mappings ({adjacent} adjacent), every other one unmapped, {} read-only ones between: {PEAK} at once, all unmapped",
        PEAK - COUNT / 2
    );

    // The limit: every other page of one PROT_NONE mapping made readable, each call one more
    // split (two more areas), until ENOMEM.
    let big = sys::mmap_anonymous(SPLIT_PAGES * PAGE, PROT_NONE);
    rt::ensure!(big.is_ok(), "PROT_NONE mmap of {SPLIT_PAGES} pages: {big:?}");
    let big = big.unwrap();
    let mut split = 0;
    let mut refused = None;
    while 2 * split + 1 < SPLIT_PAGES {
        // SAFETY: the pages are untouched; read-only is more than PROT_NONE allowed.
        let got =
            unsafe { sys::mprotect(big.add(((2 * split + 1) * PAGE) as usize), PAGE, PROT_READ) };
        match got {
            Ok(0) => split += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
            Ok(other) => rt::ensure!(false, "mprotect returned {other}"),
        }
    }
    let areas = 2 * split + 1;
    rt::ensure!(
        refused.is_none() || refused == Some(ENOMEM),
        "mprotect split number {}: errno {refused:?}, not ENOMEM",
        split + 1
    );
    rt::ensure!(
        areas >= PEAK as u64,
        "the kernel refused to split a mapping into more than {areas} areas: fewer than {PEAK}"
    );
    // SAFETY: the last page made readable can be read (a zero page); nothing else uses the range.
    unsafe {
        if split > 0 {
            let last = big.add(((2 * split - 1) * PAGE) as usize);
            rt::ensure!(core::ptr::read_volatile(last) == 0, "the last readable page is not zero");
        }
        let got = sys::munmap(big, SPLIT_PAGES * PAGE);
        rt::ensure!(got == Ok(0), "munmap of the split mapping ({areas} areas): {got:?}");
    }
    let after = sys::mmap_anonymous(PAGE, PROT_READ | PROT_WRITE);
    rt::ensure!(after.is_ok(), "mmap after the split mapping is gone: {after:?}");
    match refused {
        Some(_) => rt::println!("many_mappings: one mapping split into {areas} areas, then ENOMEM: the kernel's limit"),
        None => rt::println!("many_mappings: one mapping split into {areas} areas without reaching the kernel's limit"),
    }
    0
}
