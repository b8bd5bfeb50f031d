//! The faultline host runner: builds the kernel, fetches Xen and QEMU, boots, judges the run.
//!
//! `cargo xtask run` is the command-line face of [`run`]; the boot tests in `tests/` call the same
//! functions with [`RunOptions::quiet`] set. The command line boots the DomU path ([`Mode::Xl`]:
//! a Linux dom0 runs `xl create` on our kernel); the library's default is the fast dom0 path.

pub mod bench;
pub mod console;
pub mod cpio;
pub mod dom0_image;
pub mod error;
pub mod guests;
pub mod host;
pub mod junit;
pub mod kernel;
pub mod log;
pub mod outcome;
pub mod packages;
pub mod programs;
pub mod qemu;
pub mod run;
pub mod sweep;
pub mod symbolize;
pub mod trace;
pub mod workspace;
pub mod xen;
pub mod xl;

pub use error::{Error, Result};
pub use guests::GuestOutcome;
pub use kernel::{build_kernel, Profile};
pub use outcome::{
    ShutdownReason, Verdict, EXIT_CRASH, EXIT_ERROR, EXIT_FAILURE, EXIT_SETUP, EXIT_SKIP,
    EXIT_SUCCESS, EXIT_TIMEOUT,
};
pub use run::{
    run, Mode, Payload, RunOptions, RunOutcome, DEFAULT_DOMU_MEMORY_MIB, DEFAULT_MEMORY_MIB,
    DEFAULT_TIMEOUT, MAX_VCPUS,
};
pub use xl::XlConsole;
