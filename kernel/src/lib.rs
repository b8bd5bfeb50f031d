//! faultline: a Xen PV guest kernel that handles page faults the PV way and runs fault-injection tests.
#![cfg_attr(target_os = "none", no_std)]

pub mod mm;
