//! munmap_read: maps a page, writes it, unmaps it, reads it.
//!
//! Expected: killed by #PF read not-present in unmapped.
//! Why: munmap must remove the page-table entry, flush the TLB and free the frame; a read that
//! still succeeds would read a frame that may belong to someone else by now.
#![no_std]
#![no_main]

use rt::sys;

rt::faultline_expect!("killed #PF read not-present in unmapped");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let page = sys::mmap_anonymous(4096, sys::PROT_READ | sys::PROT_WRITE).unwrap();
    // SAFETY: the page is ours until munmap; the last read is meant to fault.
    unsafe {
        core::ptr::write_volatile(page, 7);
        rt::ensure!(sys::munmap(page, 4096) == Ok(0), "munmap");
        let value = core::ptr::read_volatile(page);
        rt::println!("read {value} after munmap at {page:p}");
    }
    1
}
