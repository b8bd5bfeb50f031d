//! mprotect_none_keeps: fills pages with a pattern, makes them PROT_NONE, then readable and
//! writable again, and checks the pattern: for an anonymous mapping (all of it, then a few pages
//! in its middle) and for pages of the brk heap.
//!
//! Expected: exit 0 (every mprotect returns 0; every page holds its pattern afterwards).
//! Why: on Linux mprotect changes only the access rights: the pages keep their frames and their
//! contents while inaccessible (guard pages, JITs and garbage collectors rely on it). A kernel
//! that frees the frames on PROT_NONE hands back zero pages afterwards: silent data loss. The
//! brk heap is a mapping like any other, so mprotect applies to it too (musl and garbage
//! collectors protect heap pages).
#![no_std]
#![no_main]

use rt::sys::{self, PROT_NONE, PROT_READ, PROT_WRITE};

rt::entry!(main);

const PAGE: u64 = 4096;
const PAGES: u64 = 8;
const WORDS: usize = (PAGE / 8) as usize;

/// The word every 8 bytes at `at` hold: different in every word and every page.
fn pattern(at: u64) -> u64 {
    at ^ 0x9e37_79b9_7f4a_7c15
}

/// Fills `pages` pages from `base` with the pattern.
///
/// # Safety
/// The pages must be mapped writable and unused by Rust.
unsafe fn fill(base: u64, pages: u64) {
    for i in 0..pages * PAGE / 8 {
        let at = base + i * 8;
        // SAFETY: inside the caller's writable range.
        unsafe { core::ptr::write_volatile(at as *mut u64, pattern(at)) };
    }
}

/// The first word of `pages` pages from `base` that does not hold its pattern, with its value.
///
/// # Safety
/// The pages must be mapped readable.
unsafe fn first_wrong(base: u64, pages: u64) -> Option<(u64, u64)> {
    for page in 0..pages {
        for w in 0..WORDS as u64 {
            let at = base + page * PAGE + w * 8;
            // SAFETY: inside the caller's readable range.
            let got = unsafe { core::ptr::read_volatile(at as *const u64) };
            if got != pattern(at) {
                return Some((at, got));
            }
        }
    }
    None
}

/// Counts and reports a word that lost its pattern.
fn lost(failed: &mut u32, what: &str, wrong: Option<(u64, u64)>) {
    if let Some((at, got)) = wrong {
        rt::eprintln!("FAILED {what}: the word at {at:#x} holds {got:#x}, not {:#x}", pattern(at));
        *failed += 1;
    }
}

fn main(_: &rt::start::Start) -> i32 {
    let mut failed = 0;
    let rw = PROT_READ | PROT_WRITE;
    let len = PAGES * PAGE;

    // An anonymous mapping: all of it PROT_NONE, read-only, then read-write again.
    let map = sys::mmap_anonymous(len, rw).unwrap() as u64;
    // SAFETY: the mapping is ours alone; nothing touches it while it is PROT_NONE.
    unsafe {
        fill(map, PAGES);
        let p = map as *mut u8;
        rt::check!(
            failed,
            sys::mprotect(p, len, PROT_NONE) == Ok(0),
            "mprotect(PROT_NONE) of the mapping"
        );
        rt::check!(
            failed,
            sys::mprotect(p, len, PROT_READ) == Ok(0),
            "mprotect(PROT_READ) of the mapping"
        );
        lost(&mut failed, "mapping after PROT_NONE, read-only", first_wrong(map, PAGES));
        rt::check!(
            failed,
            sys::mprotect(p, len, rw) == Ok(0),
            "mprotect(PROT_READ|PROT_WRITE) of the mapping"
        );
        lost(&mut failed, "mapping after PROT_NONE, read-write", first_wrong(map, PAGES));

        // Pages in the middle only: the area is split in three, then made whole again.
        fill(map, PAGES);
        let middle = p.add(2 * PAGE as usize);
        rt::check!(
            failed,
            sys::mprotect(middle, 4 * PAGE, PROT_NONE) == Ok(0),
            "mprotect(PROT_NONE) of pages 2..6"
        );
        rt::check!(
            failed,
            sys::mprotect(middle, 4 * PAGE, rw) == Ok(0),
            "mprotect(PROT_READ|PROT_WRITE) of pages 2..6"
        );
        lost(&mut failed, "mapping after PROT_NONE of pages 2..6", first_wrong(map, PAGES));
        let _ = sys::munmap(p, len);
    }

    // The brk heap: grown by PAGES pages from a page boundary, filled, protected and back.
    // SAFETY: nothing in this program uses the heap; the break is put back at the end.
    unsafe {
        let old = sys::brk(0);
        let start = old.next_multiple_of(PAGE);
        let grown = sys::brk(start + len);
        rt::ensure!(grown == start + len, "brk({:#x}) gave {grown:#x}", start + len);
        fill(start, PAGES);
        let p = start as *mut u8;
        let none = sys::mprotect(p, len, PROT_NONE);
        rt::check!(
            failed,
            none == Ok(0),
            "mprotect(PROT_NONE) of heap pages {start:#x}..: {none:?}"
        );
        let back = sys::mprotect(p, len, rw);
        rt::check!(failed, back == Ok(0), "mprotect(PROT_READ|PROT_WRITE) of heap pages: {back:?}");
        if back == Ok(0) {
            lost(&mut failed, "heap after PROT_NONE", first_wrong(start, PAGES));
        }
        rt::check!(failed, sys::brk(old) == old, "brk shrinks back to {old:#x}");
    }

    if failed > 0 {
        rt::eprintln!("mprotect_none_keeps: {failed} check(s) failed");
        return 1;
    }
    rt::println!("mprotect_none_keeps: {PAGES} mapped and {PAGES} heap pages kept their contents through PROT_NONE");
    0
}
