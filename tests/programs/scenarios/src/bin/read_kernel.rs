//! read_kernel: reads the first byte of the kernel image, 0xffffffff80000000.
//!
//! Expected: killed by #PF read at 0xffffffff80000000.
//! Why: user mode must not see the kernel; under Xen PV the kernel also runs in ring 3, so it
//! is the separate user page tables, not the U/S bit, that hide it.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #PF read at 0xffffffff80000000");
rt::entry!(main);

const KERNEL_IMAGE: usize = 0xffff_ffff_8000_0000;

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: none: this read is meant to fault.
    let value = unsafe { core::ptr::read_volatile(KERNEL_IMAGE as *const u8) };
    rt::println!("read {value:#x} from the kernel image");
    1
}
