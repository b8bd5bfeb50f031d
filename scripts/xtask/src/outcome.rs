//! How a run ended, and the exit status that says so.
//!
//! Exit statuses of `cargo xtask run` (also in its `--help`):
//! 0 SUCCESS and the domain powered off; 1 FAILURE; 2 ERROR; 3 SKIP; 4 crash (no verdict line,
//! crash shutdown, Xen panic); 5 timeout; 6 set-up or build problem, or on the DomU path a
//! toolstack or payload failure.

use std::fmt;
use std::time::Duration;

/// The exit status for a run whose verdict is SUCCESS and whose domain powered off.
pub const EXIT_SUCCESS: i32 = 0;
/// The guest printed `Test result: FAILURE`.
pub const EXIT_FAILURE: i32 = 1;
/// The guest printed `Test result: ERROR` (e.g. a bad command line).
pub const EXIT_ERROR: i32 = 2;
/// The guest printed `Test result: SKIP`.
pub const EXIT_SKIP: i32 = 3;
/// The guest crashed: no verdict line, a crash shutdown, or Xen panicked.
pub const EXIT_CRASH: i32 = 4;
/// The run did not end within the timeout.
pub const EXIT_TIMEOUT: i32 = 5;
/// Something around the guest failed: building, fetching, starting QEMU; on the DomU path, the
/// Linux dom0 or its toolstack (`xl create` could not build the domain, a bad payload).
pub const EXIT_SETUP: i32 = 6;

/// The guest's verdict, ordered as XTF orders them (Success < Skip < Error < Failure): the
/// kernel's own type (faultline-abi), so the word the guest prints and the word the runner reads
/// are one.
pub use faultline_abi::Verdict;

/// Why the run (or, on the DomU path, one guest) stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The domain asked for SHUTDOWN_poweroff (dom0: Xen's "Hardware Dom0 halted"; a DomU: xl's
    /// reason code 0).
    Poweroff,
    /// The domain asked for SHUTDOWN_reboot.
    Reboot,
    /// The domain crashed: SHUTDOWN_crash, or Xen killed it.
    Crash,
    /// A DomU asked for SHUTDOWN_suspend.
    Suspend,
    /// The domain's watchdog fired.
    Watchdog,
    /// dom0 asked for SHUTDOWN_soft_reset, which Xen does not support for dom0.
    SoftReset,
    /// dom0 gave a shutdown reason Xen does not know.
    Unknown(u32),
    /// Xen itself panicked; the text is the reason Xen printed.
    XenPanic(String),
    /// QEMU ended by itself before Xen said why (its exit status, if it had one).
    QemuExited(Option<i32>),
    /// Nothing ended the run within the timeout (or the Linux dom0 destroyed a DomU at its
    /// timeout).
    Timeout(Duration),
    /// The DomU path's dom0 or toolstack failed (xl create, a bad payload, dom0 itself): why.
    Toolstack(String),
}

impl fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShutdownReason::Poweroff => f.write_str("the domain powered off"),
            ShutdownReason::Reboot => f.write_str("the domain rebooted"),
            ShutdownReason::Crash => f.write_str("the domain crashed"),
            ShutdownReason::Suspend => f.write_str("the domain suspended itself"),
            ShutdownReason::Watchdog => f.write_str("the domain's watchdog fired"),
            ShutdownReason::SoftReset => f.write_str("the domain asked for a soft reset"),
            ShutdownReason::Unknown(code) => {
                write!(f, "the domain shut down with unknown reason {code}")
            }
            ShutdownReason::XenPanic(text) if text.is_empty() => f.write_str("Xen panicked"),
            ShutdownReason::XenPanic(text) => write!(f, "Xen panicked: {text}"),
            ShutdownReason::QemuExited(Some(code)) => {
                write!(f, "QEMU exited with status {code} before Xen reported a shutdown")
            }
            ShutdownReason::QemuExited(None) => {
                f.write_str("QEMU was killed by a signal before Xen reported a shutdown")
            }
            ShutdownReason::Timeout(after) => write!(f, "timed out after {} s", after.as_secs()),
            ShutdownReason::Toolstack(why) => write!(f, "toolstack failure: {why}"),
        }
    }
}

/// The exit status and a one-line reason for a run that got as far as booting.
pub fn judge(verdict: Option<Verdict>, shutdown: &ShutdownReason) -> (i32, String) {
    let said = match verdict {
        Some(verdict) => format!("verdict {verdict}"),
        None => "no verdict line".to_string(),
    };
    match (shutdown, verdict) {
        (ShutdownReason::Toolstack(_), _) => (EXIT_SETUP, shutdown.to_string()),
        (ShutdownReason::Timeout(_), _) => (EXIT_TIMEOUT, format!("{shutdown} ({said})")),
        (ShutdownReason::Crash | ShutdownReason::XenPanic(_), _) => {
            (EXIT_CRASH, format!("{shutdown} ({said})"))
        }
        (_, None) => (EXIT_CRASH, format!("{shutdown} without a verdict line")),
        (ShutdownReason::Poweroff, Some(Verdict::Success)) => {
            (EXIT_SUCCESS, "SUCCESS: the domain powered off".to_string())
        }
        (_, Some(Verdict::Success)) => {
            (EXIT_CRASH, format!("verdict SUCCESS, but {shutdown} instead of powering off"))
        }
        (_, Some(verdict)) => {
            let code = match verdict {
                Verdict::Failure => EXIT_FAILURE,
                Verdict::Error => EXIT_ERROR,
                Verdict::Skip | Verdict::Success => EXIT_SKIP,
            };
            (code, format!("{verdict}: {shutdown}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        use ShutdownReason as S;
        let code = |verdict, shutdown: S| judge(verdict, &shutdown).0;
        assert_eq!(code(Some(Verdict::Success), S::Poweroff), 0);
        assert_eq!(code(Some(Verdict::Failure), S::Poweroff), 1);
        assert_eq!(code(Some(Verdict::Error), S::Poweroff), 2);
        assert_eq!(code(Some(Verdict::Skip), S::Poweroff), 3);
        assert_eq!(code(None, S::Poweroff), 4);
        assert_eq!(code(None, S::Crash), 4);
        assert_eq!(code(Some(Verdict::Success), S::Crash), 4);
        assert_eq!(code(Some(Verdict::Success), S::Reboot), 4);
        assert_eq!(code(Some(Verdict::Failure), S::Reboot), 1);
        assert_eq!(code(None, S::XenPanic("x".into())), 4);
        assert_eq!(code(None, S::QemuExited(Some(0))), 4);
        assert_eq!(code(Some(Verdict::Success), S::Timeout(Duration::from_secs(60))), 5);
        assert_eq!(code(None, S::Timeout(Duration::from_secs(60))), 5);
        assert_eq!(code(None, S::Toolstack("xl create failed".into())), 6);
        assert_eq!(code(Some(Verdict::Success), S::Suspend), 4);
    }
}
