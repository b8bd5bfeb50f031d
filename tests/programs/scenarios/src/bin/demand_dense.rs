//! demand_dense: maps ranges that straddle page-table boundaries and touches every page.
//!
//! Expected: exit 0.
//! Why: each demand fault may need new page-table pages: an L1 table per 2 MiB, an L2 per GiB,
//! an L3 per 512 GiB. The ranges cross a 2 MiB and 1 GiB boundary (at 4 GiB) and a 512 GiB
//! boundary, so faults on both sides of each need tables of every level. Every page must read
//! as zero first, then hold what was written to it.
#![no_std]
#![no_main]

use rt::sys;

rt::entry!(main);

const PAGE: u64 = 4096;
/// (start, length): 1 MiB either side of 4 GiB; 64 KiB either side of 512 GiB.
const RANGES: [(u64, u64); 2] =
    [((4 << 30) - (1 << 20), 2 << 20), ((512 << 30) - (64 << 10), 128 << 10)];

fn main(_: &rt::start::Start) -> i32 {
    for (start, len) in RANGES {
        let base = sys::mmap_at(start, len, sys::PROT_READ | sys::PROT_WRITE);
        rt::ensure!(base.is_ok(), "mmap at {start:#x}: errno {:?}", base.err());
        let pages = len / PAGE;
        for i in 0..pages {
            let at = (start + i * PAGE) as *mut u64;
            // SAFETY: inside the mapping just made, which nothing else uses.
            unsafe {
                rt::ensure!(
                    core::ptr::read_volatile(at) == 0,
                    "page {:#x} is not zero-filled",
                    at as u64
                );
                core::ptr::write_volatile(at, at as u64 ^ 0x5a5a);
                core::ptr::write_volatile(at.add(511), !(at as u64));
            }
        }
        for i in 0..pages {
            let at = (start + i * PAGE) as *mut u64;
            // SAFETY: as above.
            unsafe {
                rt::ensure!(
                    core::ptr::read_volatile(at) == at as u64 ^ 0x5a5a,
                    "page {:#x} lost its first word",
                    at as u64
                );
                rt::ensure!(
                    core::ptr::read_volatile(at.add(511)) == !(at as u64),
                    "page {:#x} lost its last word",
                    at as u64
                );
            }
        }
    }
    rt::println!("demand_dense: every page of both ranges zero-filled and kept");
    0
}
