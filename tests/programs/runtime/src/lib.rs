//! The runtime of faultline's Rust test programs: process entry, Linux system calls, output, expectation notes.
#![no_std]

pub mod bench;
pub mod cpu;
pub mod note;
pub mod out;
mod panic;
pub mod start;
pub mod sys;
