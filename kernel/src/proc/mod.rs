//! Processes: test-program archives, ELF images, expectations, user mode.

pub mod archive;
pub mod elf;
pub mod expect;
pub mod layout;
