//! Processes: test-program archives, ELF images, expectations, user mode.
