//! bench_text: a shared-text fault storm for `cargo xtask bench`: every run reads one byte of
//! each page of a 256-page block of this program's text, so each run faults on the same text
//! pages, which the kernel maps from the same frames of the boot module every time.
//!
//! Expected: exit 0 in each of its 4 runs (`runs 4`), each printing one `BENCH text_storm` line
//! (rt::bench). On Linux the bench's /init runs it 4 times.
//! Why: issue 11. Text is the most shared file-backed memory there is; with fault-around a run
//! should take one fault per window, not one per page.
#![no_std]
#![no_main]

use core::ptr::read_volatile;

use rt::bench::{Kernel, Probe};

rt::faultline_expect!("exit 0; runs 4");
rt::entry!(main);

const PAGE: usize = 4096;
const TEXT_PAGES: usize = 256;

// 1 MiB of int3 in the text segment, aligned to 64 KiB: only read, never executed.
core::arch::global_asm!(
    ".pushsection .text.bench_text_block, \"ax\", @progbits",
    ".balign 65536",
    ".globl bench_text_block",
    "bench_text_block:",
    ".fill {size}, 1, 0xcc",
    ".popsection",
    size = const TEXT_PAGES * PAGE,
);

unsafe extern "C" {
    static bench_text_block: [u8; TEXT_PAGES * PAGE];
}

fn main(start: &rt::start::Start) -> i32 {
    let kernel = Kernel::detect(start);
    let block = (&raw const bench_text_block).cast::<u8>();
    let mut sum = 0u64;
    let mut probe = Probe::start(kernel);
    for page in 0..TEXT_PAGES {
        // SAFETY: inside the block, which is mapped readable (text is r-x).
        sum += u64::from(unsafe { read_volatile(block.add(page * PAGE)) });
        probe.page_done(page as u64);
    }
    probe.stop("text_storm", TEXT_PAGES as u64);
    rt::ensure!(sum == 0xcc * TEXT_PAGES as u64, "text pages read {sum:#x}");
    0
}
