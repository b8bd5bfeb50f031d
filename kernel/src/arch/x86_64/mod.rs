//! x86_64 PV: the trap frame, exception names and error codes, the trap table, backtraces.

pub mod backtrace;
pub mod exception;
pub mod page_fault;
pub mod trap_frame;

#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod crash;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod fpu;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod smp;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod traps;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod user;
