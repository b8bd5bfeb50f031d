//! null_read: reads one byte at address 0.
//!
//! Expected: killed by #PF read not-present at 0x0.
//! Why: page 0 is never mapped, so NULL dereferences fault instead of reading something; the
//! kernel must kill the program (not itself) and report the right address and access.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #PF read not-present at 0x0");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: none: this read is meant to fault.
    let value = unsafe { core::ptr::read_volatile(core::ptr::null::<u8>()) };
    rt::println!("read {value} at NULL: the kernel mapped page 0");
    1
}
