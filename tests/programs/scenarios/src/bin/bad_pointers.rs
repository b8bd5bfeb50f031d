//! bad_pointers: hands write, writev and clock_gettime pointers to NULL, to the kernel, to
//! unmapped user memory and past the end of the address space.
//!
//! Expected: exit 0 (every call returns -EFAULT; the program is not killed).
//! Why: the kernel reads and writes user memory on the program's behalf; a bad pointer must come
//! back as EFAULT, never fault in the kernel or leak kernel memory to the console.
#![no_std]
#![no_main]

use rt::sys::{self, Iovec, EFAULT};

rt::entry!(main);

/// Never mapped: well inside the mmap area, which nothing uses here.
const UNMAPPED: u64 = 0x0000_5000_0000_0000;
const KERNEL: u64 = 0xffff_ffff_8000_0000;

fn main(_: &rt::start::Start) -> i32 {
    for (what, ptr, len) in [
        ("NULL", 0, 5),
        ("kernel image", KERNEL, 5),
        ("Xen's m2p", 0xffff_8000_0000_0000, 5),
        ("unmapped user page", UNMAPPED, 5),
        ("last user page and beyond", 0x0000_7fff_ffff_fff0, 64),
        ("wrapping around", u64::MAX - 2, 5),
    ] {
        let got = sys::write_raw(1, ptr, len);
        rt::ensure!(got == Err(EFAULT), "write from {what} ({ptr:#x}) gave {got:?}");
    }
    let bad = [Iovec { base: KERNEL, len: 8 }];
    let got = sys::writev(1, &bad);
    rt::ensure!(got == Err(EFAULT), "writev of a kernel buffer gave {got:?}");
    // SAFETY: the iovec array pointer itself is bad; the kernel must not read through it.
    let got = unsafe { sys::syscall(sys::SYS_WRITEV, [1, UNMAPPED, 1, 0, 0, 0]) };
    rt::ensure!(got == Err(EFAULT), "writev with an unmapped iovec array gave {got:?}");
    // SAFETY: the output pointer is bad; the kernel must not write through it.
    let got =
        unsafe { sys::syscall(sys::SYS_CLOCK_GETTIME, [sys::CLOCK_MONOTONIC, KERNEL, 0, 0, 0, 0]) };
    rt::ensure!(got == Err(EFAULT), "clock_gettime into the kernel gave {got:?}");
    rt::println!("bad_pointers: every bad pointer came back as EFAULT");
    0
}
