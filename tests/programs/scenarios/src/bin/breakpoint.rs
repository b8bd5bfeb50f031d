//! breakpoint: executes `int3`.
//!
//! Expected: killed by #BP.
//! Why: #BP is a trap (rip is past the instruction) raised from ring 3 through a gate the
//! kernel must open to user mode (DPL 3); without it the CPU raises #GP instead.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #BP");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: none: int3 is meant to trap.
    unsafe { core::arch::asm!("int3") };
    1
}
