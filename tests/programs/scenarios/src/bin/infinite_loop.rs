//! infinite_loop: spins forever without a system call.
//!
//! Expected: killed by watchdog (the per-program time budget, `test_time=`).
//! Why: a program that never enters the kernel must still be stopped, by the timer interrupt,
//! and the runs after it must go on.
#![no_std]
#![no_main]

rt::faultline_expect!("killed watchdog");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    loop {
        core::hint::spin_loop();
    }
}
