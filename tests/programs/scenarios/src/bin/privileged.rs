//! privileged: executes `hlt`, a privileged instruction.
//!
//! Expected: killed by #GP.
//! Why: under PV the guest kernel runs in ring 3 too and Xen emulates some privileged
//! instructions for it; for a user program nothing may be emulated, the #GP must reach the
//! kernel and kill the program.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #GP");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: none: hlt in user mode is meant to fault.
    unsafe { core::arch::asm!("hlt") };
    1
}
