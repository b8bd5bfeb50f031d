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
    drain(reason);
    let code = match reason {
        Reason::Poweroff => abi::SHUTDOWN_poweroff,
        Reason::Crash => abi::SHUTDOWN_crash,
    };
    let err = hypercall::shutdown(code);
    match reason {
        Reason::Poweroff => {
            crate::println!("faultline: SCHEDOP_shutdown({reason:?}) refused: {err}")
        }
        Reason::Crash => {
            use core::fmt::Write;
            let mut con = console::emergency();
            let _ = writeln!(con, "faultline: SCHEDOP_shutdown({reason:?}) refused: {err}");
        }
    }
    drain(reason);
    loop {
        let _ = hypercall::sched_yield();
    }
}

/// Waits until the console's lines are out. A crash drains through the crash path's console
/// ([`console::emergency`]): the normal lock may be held by another vCPU that never lets go
/// (seen: vCPU 1's crash report printed, then its shutdown waited for vCPU 0's hold of the
/// console, `selftest=vcpu-crash-console-held`).
fn drain(reason: Reason) {
    match reason {
        Reason::Poweroff => console::drain(),
        Reason::Crash => console::emergency().drain(),
    }
}
