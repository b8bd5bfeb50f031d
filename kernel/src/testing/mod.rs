//! Test support inside the guest: verdicts, expected faults, the boot self-tests.

pub mod expect;
pub mod verdict;

#[cfg(target_os = "none")]
pub mod mm_tests;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
pub mod selftest;
