//! exit_status: exits with status 3.
//!
//! Expected: exit 3.
//! Why: proves that the status reaches the report and that the expectation note is read (a
//! kernel that ignored the note would expect 0 and report this program as failed).
#![no_std]
#![no_main]

rt::faultline_expect!("exit 3");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    3
}
