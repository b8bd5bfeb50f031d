//! The verdict protocol on the console: one line per check, then `Test result: X` last.

use super::verdict::{Outcome, Verdict};
use crate::println;
use crate::xen::shutdown::{shutdown, Reason};
use faultline_abi::verdict::RESULT_PREFIX;

static OUTCOME: spin::Mutex<Outcome> = spin::Mutex::new(Outcome::new());

/// Records a check and prints its line.
pub fn check(verdict: Verdict, args: core::fmt::Arguments<'_>) {
    OUTCOME.lock().record(verdict);
    println!("[{}] {args}", verdict.tag());
}

/// Records a verdict whose line the caller printed itself (e.g. a TAP line).
pub fn record(verdict: Verdict) {
    OUTCOME.lock().record(verdict);
}

/// Prints the final verdict as the last line and powers the domain off.
pub fn finish() -> ! {
    let result = OUTCOME.lock().result();
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
