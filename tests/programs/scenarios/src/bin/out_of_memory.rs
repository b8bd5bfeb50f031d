//! out_of_memory: maps 1 GiB and touches it page by page, far beyond the per-program memory limit.
//!
//! Expected: killed by oom.
//! Why: demand paging defers allocation to the fault; when frames run out the kernel must kill
//! this program cleanly, give all its frames back, and run the next program as usual (the
//! program after this one in the archive checks that).
#![no_std]
#![no_main]

use rt::sys;

rt::faultline_expect!("killed oom");
rt::entry!(main);

const SIZE: u64 = 1 << 30;

fn main(_: &rt::start::Start) -> i32 {
    let Ok(base) = sys::mmap_anonymous(SIZE, sys::PROT_READ | sys::PROT_WRITE) else {
        rt::eprintln!("mmap of 1 GiB failed");
        return 2;
    };
    for page in 0..SIZE / 4096 {
        // SAFETY: inside the mapping just made.
        unsafe { core::ptr::write_volatile(base.add((page * 4096) as usize), 1) };
    }
    rt::println!("touched 1 GiB without running out of memory");
    1
}
