//! Ending the domain: drain the console, then SCHEDOP_shutdown with a reason.

use super::{abi, console, hypercall};

/// Why the domain ends; Xen reports it to the toolstack (`xl`) or, for dom0, on its console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Poweroff,
    Crash,
}

/// Drains the console and asks Xen to end the domain. If Xen refuses, says so and yields
/// forever: the runner's timeout then ends the machine.
pub fn shutdown(reason: Reason) -> ! {
    console::drain();
    let code = match reason {
        Reason::Poweroff => abi::SHUTDOWN_poweroff,
        Reason::Crash => abi::SHUTDOWN_crash,
    };
    let err = hypercall::shutdown(code);
    crate::println!("faultline: SCHEDOP_shutdown({reason:?}) refused: {err}");
    console::drain();
    loop {
        let _ = hypercall::sched_yield();
    }
}
