//! mprotect_write: maps a page read-write, writes it, makes it read-only with mprotect, writes again.
//!
//! Expected: killed by #PF write protection in mmap.
//! Why: mprotect must downgrade the existing page-table entry (and flush the TLB); a write that
//! still lands means a stale writable mapping.
#![no_std]
#![no_main]

use rt::sys;

rt::faultline_expect!("killed #PF write protection in mmap");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let page = sys::mmap_anonymous(4096, sys::PROT_READ | sys::PROT_WRITE).unwrap();
    // SAFETY: the page is ours; the second write is meant to fault.
    unsafe {
        core::ptr::write_volatile(page, 1);
        rt::ensure!(sys::mprotect(page, 4096, sys::PROT_READ) == Ok(0), "mprotect");
        rt::ensure!(core::ptr::read_volatile(page) == 1, "the page kept its contents");
        core::ptr::write_volatile(page, 2);
    }
    rt::println!("wrote to a read-only page at {page:p}");
    1
}
