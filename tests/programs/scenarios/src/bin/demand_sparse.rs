//! demand_sparse: touches one word in pages far apart: one per 2 MiB over 64 MiB, one per GiB
//! over 8 GiB, one per 512 GiB over 2 TiB.
//!
//! Expected: exit 0.
//! Why: sparse touches make the kernel build a fresh page-table path for almost every fault
//! (many L1, L2 and L3 tables holding one entry each), which is where a PV kernel gets the
//! pin/validate order or the table accounting wrong.
#![no_std]
#![no_main]

use rt::sys;

rt::entry!(main);

/// (first address, stride, count).
const PATTERNS: [(u64, u64, u64); 3] =
    [(0x10_0000_0000, 2 << 20, 32), (0x20_0000_0000, 1 << 30, 8), (0x100_0000_0000, 512 << 30, 4)];

fn main(_: &rt::start::Start) -> i32 {
    for (first, stride, count) in PATTERNS {
        for i in 0..count {
            let page = first + i * stride;
            let got = sys::mmap_at(page, 4096, sys::PROT_READ | sys::PROT_WRITE);
            rt::ensure!(got.is_ok(), "mmap at {page:#x}: errno {:?}", got.err());
            // SAFETY: the page was just mapped for this program.
            unsafe { core::ptr::write_volatile((page + 8 * i) as *mut u64, page) };
        }
    }
    for (first, stride, count) in PATTERNS {
        for i in 0..count {
            let page = first + i * stride;
            // SAFETY: mapped above.
            let value = unsafe { core::ptr::read_volatile((page + 8 * i) as *const u64) };
            rt::ensure!(value == page, "page {page:#x} reads {value:#x}");
        }
    }
    rt::println!("demand_sparse: 44 sparse pages kept their words");
    0
}
