//! Processes: test-program archives, ELF images, expectations, user mode.

pub mod archive;
pub mod elf;
pub mod expect;
pub mod initial_stack;
pub mod layout;
pub mod program;
pub mod run_options;
pub mod syscall_abi;
pub mod areas;
pub mod user_fault;
#[cfg(test)]
mod real_programs;
#[cfg(target_os = "none")]
pub mod process;
#[cfg(target_os = "none")]
pub mod suite;
#[cfg(target_os = "none")]
pub mod syscall;
