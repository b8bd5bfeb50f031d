//! invalid_opcode: executes `ud2`.
//!
//! Expected: killed by #UD.
//! Why: an exception raised in user mode is the program's fault, not the kernel's: the trap
//! path must tell user from kernel frames and kill only the program.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #UD");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: none: ud2 is meant to fault.
    unsafe { core::arch::asm!("ud2") };
    1
}
