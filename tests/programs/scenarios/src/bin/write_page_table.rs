//! write_page_table: writes to a page-table page, at the address the kernel passes in auxv
//! entry AT_FAULTLINE_PAGE_TABLE.
//!
//! Expected: killed by #PF write in kernel.
//! Why: under PV, page tables are read-only to the guest and validated by Xen; user mode must not
//! even reach the kernel's read-only view. A write that succeeded would be a hole in isolation.
//! Natively (no faultline auxv) it exits 2.
#![no_std]
#![no_main]

use rt::start::AT_FAULTLINE_PAGE_TABLE;

rt::faultline_expect!("killed #PF write in kernel");
rt::entry!(main);

fn main(start: &rt::start::Start) -> i32 {
    let Some(page_table) = start.aux(AT_FAULTLINE_PAGE_TABLE) else {
        rt::eprintln!("no AT_FAULTLINE_PAGE_TABLE in auxv: not running under faultline");
        return 2;
    };
    // SAFETY: none: this write is meant to fault.
    unsafe { core::ptr::write_volatile(page_table as *mut u64, 0) };
    rt::println!("wrote to the page table at {page_table:#x}");
    1
}
