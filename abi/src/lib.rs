//! faultline's wire facts: every value that two sides of a boundary must agree on, written once.
//!
//! - The user ABI (kernel and test programs): [`syscall`] numbers, errno, flags and the
//!   `faultline_counters` call; [`auxv`] keys; the expectation [`note`].
//! - The boot module (runner and kernel): the test [`archive`].
//! - The domain (runner and kernel): [`MAX_VCPUS`].
//! - The console (kernel and runner): the [`verdict`] words, the [`trace`] schema, the [`bench`]
//!   line of the measuring programs.
//!
//! The kernel, the test programs' runtime (tests/programs/runtime), their host tool and the
//! runner (scripts/xtask) depend on this crate; the C header tests/programs/c/faultline.h is
//! checked against it by `tests/c_header.rs`. No unsafe code, no state: constants, types and
//! pure functions.
#![no_std]
#![forbid(unsafe_code)]

#[cfg(all(feature = "archive", not(target_os = "none")))]
extern crate alloc;
#[cfg(test)]
extern crate std;

#[cfg(feature = "archive")]
pub mod archive;
pub mod auxv;
pub mod bench;
pub mod note;
pub mod syscall;
pub mod trace;
pub mod verdict;

pub use verdict::Verdict;

/// The most vCPUs faultline runs: those whose `vcpu_info` sits in shared_info (Xen
/// public/arch-x86/xen.h, XEN_LEGACY_MAX_VCPUS). The runner refuses more; the kernel leaves
/// any more down and says so.
pub const MAX_VCPUS: u32 = 32;
