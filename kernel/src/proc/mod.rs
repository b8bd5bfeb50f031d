//! Processes: test-program archives, ELF images, expectations, user mode.

pub mod archive;
