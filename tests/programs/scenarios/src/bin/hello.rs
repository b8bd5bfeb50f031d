//! hello: writes a line and exits 0.
//!
//! Expected: exit 0 (no note: the default).
//! Why: the smallest program that proves the whole path: archive, ELF load, initial stack,
//! `write` to the console, `exit_group`.
#![no_std]
#![no_main]

rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    rt::println!("hello from faultline user mode");
    0
}
