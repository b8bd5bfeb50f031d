//! Processes: test-program archives, ELF images, expectations, user mode.

/// The test archive's format lives in faultline-abi: the runner writes it, the kernel reads it.
pub use faultline_abi::archive;
pub mod elf;
pub mod expectation;
#[cfg(target_os = "none")]
pub mod futex;
pub mod initial_stack;
#[cfg(target_os = "none")]
pub mod process;
pub mod program;
#[cfg(test)]
mod real_programs;
pub mod run_options;
#[cfg(target_os = "none")]
pub mod suite;
#[cfg(target_os = "none")]
pub mod syscall;
pub mod syscall_abi;
pub mod tap;
#[cfg(target_os = "none")]
pub mod thread;
