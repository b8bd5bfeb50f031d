//! unknown_syscall: calls system call 335 (unassigned on x86_64) and rt_sigaction (13, which
//! faultline does not implement).
//!
//! Expected: exit 0 (both return -ENOSYS; the kernel prints one "unknown syscall" line each).
//! Why: musl probes optional calls and copes with ENOSYS; killing the program or returning
//! garbage instead would break ordinary C programs.
#![no_std]
#![no_main]

use rt::sys;

rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: 335 is not a system call on x86_64: nothing happens.
    let unassigned = unsafe { sys::syscall(335, [0; 6]) };
    rt::ensure!(unassigned == Err(sys::ENOSYS), "syscall 335: {unassigned:?}");
    // SAFETY: rt_sigaction(SIGUSR1, NULL, NULL) changes nothing even where it exists.
    let sigaction = unsafe { sys::syscall(13, [10, 0, 0, 8, 0, 0]) };
    rt::ensure!(sigaction == Err(sys::ENOSYS), "rt_sigaction: {sigaction:?}");
    rt::println!("unknown_syscall: ENOSYS for both");
    0
}
