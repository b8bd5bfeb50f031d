//! divide_error: divides by zero with `div`.
//!
//! Expected: killed by #DE.
//! Why: the first exception vector (0) must be routed like the others; Rust's own checks are
//! bypassed with inline assembly so the CPU raises it.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #DE");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let divisor = core::hint::black_box(0u64);
    let quotient: u64;
    // SAFETY: none: the division is meant to fault.
    unsafe {
        core::arch::asm!("div {d}", d = in(reg) divisor, inout("rax") 1u64 => quotient, inout("rdx") 0u64 => _);
    }
    rt::println!("1 / 0 = {quotient}");
    1
}
