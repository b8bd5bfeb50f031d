//! The faultline host runner: builds the kernel, fetches Xen and QEMU, boots, judges the run.
//!
//! `cargo xtask run` is the command-line face of [`run`]; the boot tests in `tests/` call the same
//! functions with [`RunOptions::quiet`] set.

pub mod console;
pub mod error;
pub mod host;
pub mod kernel;
pub mod log;
pub mod outcome;
pub mod packages;
pub mod programs;
pub mod qemu;
pub mod run;
pub mod symbolize;
pub mod workspace;
pub mod xen;

pub use error::{Error, Result};
pub use kernel::{build_kernel, Profile};
pub use outcome::{
    ShutdownReason, Verdict, EXIT_CRASH, EXIT_ERROR, EXIT_FAILURE, EXIT_SETUP, EXIT_SKIP,
    EXIT_SUCCESS, EXIT_TIMEOUT,
};
pub use run::{run, Mode, RunOptions, RunOutcome, DEFAULT_MEMORY_MIB, DEFAULT_TIMEOUT};
