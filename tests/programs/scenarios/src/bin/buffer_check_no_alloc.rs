//! buffer_check_no_alloc: writev of two iovecs: 32 MiB of a large untouched read-only mapping,
//! then one byte in the kernel's half; twice (each half of a 64 MiB mapping); then uses 1 MiB of
//! fresh memory.
//!
//! Expected: exit 0. Each writev returns EFAULT and writes nothing; the program keeps its memory
//! and touches the 1 MiB without being killed.
//! Why: a bad buffer must cost nothing. Linux checks every iovec's range before it reads a
//! byte, so the kernel address fails the call at once; and even reading untouched anonymous
//! memory maps Linux's shared zero page, never a frame per page. A kernel that makes each page
//! of the first buffer present (a zero frame each) before it looks at the second spends 8192
//! frames on a call that fails: more than the per-program limit (`test_memory`, 16 MiB by
//! default) and more than a small guest has, so the program is out of memory afterwards (killed
//! `oom` at its next page fault), for a call that should have had no effect.
#![no_std]
#![no_main]

use rt::sys::{self, Iovec, EFAULT, PROT_READ, PROT_WRITE};

rt::entry!(main);

const MIB: u64 = 1 << 20;
/// An address in the kernel's half: no iovec may point there.
const KERNEL: u64 = 0xffff_8000_0000_0000;

fn main(_: &rt::start::Start) -> i32 {
    let big = sys::mmap_anonymous(64 * MIB, PROT_READ).unwrap() as u64;
    for half in [big, big + 32 * MIB] {
        let iov = [Iovec { base: half, len: 32 * MIB }, Iovec { base: KERNEL, len: 1 }];
        let got = sys::writev(1, &iov);
        rt::ensure!(
            got == Err(EFAULT),
            "writev of 32 MiB at {half:#x} and a kernel byte: {got:?}, Linux says EFAULT"
        );
    }

    // The memory the program had before is still there to use.
    let fresh = sys::mmap_anonymous(MIB, PROT_READ | PROT_WRITE).unwrap();
    for off in (0..MIB).step_by(4096) {
        // SAFETY: inside the mapping just made, which nothing else uses.
        unsafe {
            let at = fresh.add(off as usize) as *mut u64;
            core::ptr::write_volatile(at, off ^ 0x5a5a);
            rt::ensure!(
                core::ptr::read_volatile(at) == off ^ 0x5a5a,
                "page at {at:p} lost its word"
            );
        }
    }
    rt::println!("buffer_check_no_alloc: two writev calls with 32 MiB untouched buffers failed with EFAULT at no cost; 1 MiB touched afterwards");
    0
}
