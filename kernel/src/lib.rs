//! faultline: a Xen PV guest kernel that handles page faults the PV way and runs fault-injection tests.
#![cfg_attr(target_os = "none", no_std)]

extern crate alloc;

pub mod arch;
pub mod cmdline;
pub mod fmt_buf;
pub mod mm;
pub mod proc;
pub mod testing;
pub mod trace;
pub mod xen;

#[cfg(target_os = "none")]
pub mod start;
