//! The verdict protocol on the console: one line per check, then `Test result: X` last.

use super::verdict::{Tally, Verdict};
use crate::println;
use crate::xen::shutdown::{shutdown, Reason};
use faultline_abi::verdict::RESULT_PREFIX;

static TALLY: spin::Mutex<Tally> = spin::Mutex::new(Tally::new());

/// Records a check and prints its line.
pub fn check(verdict: Verdict, args: core::fmt::Arguments<'_>) {
    TALLY.lock().record(verdict);
    println!("[{}] {args}", verdict.tag());
}

/// Records a verdict whose line the caller printed itself (e.g. a TAP line).
pub fn record(verdict: Verdict) {
    TALLY.lock().record(verdict);
}

/// Prints the final verdict as the last line and powers the domain off.
pub fn finish() -> ! {
    let result = TALLY.lock().result();
    crate::mm::kernel::print_stats();
    println!("{RESULT_PREFIX}{result}");
    shutdown(Reason::Poweroff)
}

#[macro_export]
macro_rules! check {
    ($verdict:ident, $($arg:tt)*) => {
        $crate::testing::report::check($crate::testing::verdict::Verdict::$verdict, format_args!($($arg)*))
    };
}
