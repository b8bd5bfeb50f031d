//! Test support inside the guest: verdicts, expected faults, the boot self-tests, fault injection.

pub mod choice;
pub mod expected_trap;
pub mod inject;
pub mod verdict;

#[cfg(target_os = "none")]
pub mod audit;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod mm_tests;
#[cfg(target_os = "none")]
pub mod report;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod selftest;
