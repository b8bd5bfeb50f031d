//! Reading the serial console: Xen's own lines, the guest's verdict, shutdown messages, backtraces.
//!
//! Everything here is pure text handling, so the host unit tests cover it without booting anything.
//! The Xen strings come from Xen 4.17's `xen/common/shutdown.c` (`hwdom_shutdown`) and
//! `xen/drivers/char/console.c` (`panic`), checked against the strings in the Debian 4.17.7 binary.

use crate::outcome::Verdict;

/// The prefix Xen's `printk` puts on each of its own console lines.
pub const XEN_PREFIX: &str = "(XEN)";

/// Whether a console line was printed by Xen itself (not written by the guest through console_io).
pub fn is_xen_line(line: &str) -> bool {
    line.starts_with(XEN_PREFIX)
}

/// The text of a Xen line after `(XEN) ` and an optional `[timestamp] `.
fn xen_message(line: &str) -> Option<&str> {
    let rest = line.strip_prefix(XEN_PREFIX)?;
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if let Some(after_bracket) = rest.strip_prefix('[') {
        if let Some(end) = after_bracket.find("] ") {
            return Some(&after_bracket[end + 2..]);
        }
    }
    Some(rest)
}

/// The guest's verdict if `line` is a verdict line: `Test result: SUCCESS|SKIP|ERROR|FAILURE`.
///
/// Only the exact form counts (leading spaces and a trailing `\r` are tolerated), so a line that
/// merely mentions a verdict, or one of Xen's lines, is never taken for one.
pub fn parse_verdict(line: &str) -> Option<Verdict> {
    if is_xen_line(line) {
        return None;
    }
    let word = line.trim().strip_prefix("Test result: ")?;
    match word {
        "SUCCESS" => Some(Verdict::Success),
        "SKIP" => Some(Verdict::Skip),
        "ERROR" => Some(Verdict::Error),
        "FAILURE" => Some(Verdict::Failure),
        _ => None,
    }
}

/// What one of Xen's lines says about the end of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XenEvent {
    /// `Hardware Dom0 halted: halting machine`: dom0 asked for SHUTDOWN_poweroff.
    DomainPoweredOff,
    /// `Hardware Dom0 shutdown: rebooting machine`: SHUTDOWN_reboot.
    DomainRebooted,
    /// `Hardware Dom0 crashed: ...`: SHUTDOWN_crash (or Xen killed dom0 for a fault it could not
    /// deliver).
    DomainCrashed,
    /// `Hardware Dom0 shutdown: watchdog rebooting machine`: SHUTDOWN_watchdog.
    DomainWatchdog,
    /// `Hardware domain 0 did unsupported soft reset, rebooting.`: SHUTDOWN_soft_reset.
    DomainSoftReset,
    /// `Hardware Dom0 shutdown (unknown reason N): ...`.
    DomainUnknownShutdown(u32),
    /// `Panic on CPU N:`: Xen itself panicked; the reason follows on the next lines.
    XenPanic,
}

/// Recognises Xen's messages about the hardware domain shutting down and Xen's own panic.
pub fn parse_xen_event(line: &str) -> Option<XenEvent> {
    let message = xen_message(line)?;
    if message.starts_with("Panic on CPU ") {
        return Some(XenEvent::XenPanic);
    }
    if let Some(rest) = message.strip_prefix("Hardware domain ") {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        return rest
            .starts_with(" did unsupported soft reset")
            .then_some(XenEvent::DomainSoftReset);
    }
    let rest = message.strip_prefix("Hardware Dom")?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    if rest.starts_with(" halted:") {
        Some(XenEvent::DomainPoweredOff)
    } else if rest.starts_with(" crashed:") {
        Some(XenEvent::DomainCrashed)
    } else if rest.starts_with(" shutdown: watchdog") {
        Some(XenEvent::DomainWatchdog)
    } else if rest.starts_with(" shutdown: rebooting") {
        Some(XenEvent::DomainRebooted)
    } else if let Some(reason) = rest.strip_prefix(" shutdown (unknown reason ") {
        let digits: String = reason.chars().take_while(char::is_ascii_digit).collect();
        Some(XenEvent::DomainUnknownShutdown(
            digits.parse().unwrap_or(u32::MAX),
        ))
    } else {
        None
    }
}

/// Whether a Xen line closes the panic report that `Panic on CPU N:` opened.
pub fn ends_xen_panic(line: &str) -> bool {
    xen_message(line).is_some_and(|message| {
        message.starts_with("Reboot in five seconds")
            || message.starts_with("Manual reset required")
    })
}

/// The reason line inside a Xen panic report: not the `****` banners, not blank.
pub fn xen_panic_detail(line: &str) -> Option<&str> {
    let message = xen_message(line)?.trim();
    let is_banner = message.chars().all(|c| c == '*');
    (!is_banner && !message.starts_with("Panic on CPU")).then_some(message)
}

/// A backtrace line the kernel prints: `    #<n> 0x<16 lowercase hex digits>`, nothing else.
///
/// Returns the frame number and the address. This is the regex `^\s*#(\d+) 0x([0-9a-f]{16})$`
/// written out by hand (a trailing `\r` from the serial line is dropped first).
pub fn parse_backtrace_line(line: &str) -> Option<(u32, u64)> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let rest = line.trim_start().strip_prefix('#')?;
    let digits_end = rest.find(|c: char| !c.is_ascii_digit())?;
    if digits_end == 0 {
        return None;
    }
    let frame = rest[..digits_end].parse().ok()?;
    let hex = rest[digits_end..].strip_prefix(" 0x")?;
    let is_address = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !is_address {
        return None;
    }
    Some((frame, u64::from_str_radix(hex, 16).ok()?))
}

/// The address in a `rip=0x...` field of a guest line (the crash report's faulting instruction).
pub fn find_rip(line: &str) -> Option<u64> {
    let start = line.find("rip=0x")? + "rip=0x".len();
    let hex: String = line[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_lines() {
        assert_eq!(
            parse_verdict("Test result: SUCCESS"),
            Some(Verdict::Success)
        );
        assert_eq!(parse_verdict("Test result: SKIP\r"), Some(Verdict::Skip));
        assert_eq!(parse_verdict("  Test result: ERROR"), Some(Verdict::Error));
        assert_eq!(
            parse_verdict("Test result: FAILURE"),
            Some(Verdict::Failure)
        );
        assert_eq!(parse_verdict("Test result: success"), None);
        assert_eq!(parse_verdict("Test result: SUCCESSFUL"), None);
        assert_eq!(parse_verdict("expecting Test result: SUCCESS"), None);
        assert_eq!(parse_verdict("(XEN) Test result: SUCCESS"), None);
    }

    #[test]
    fn xen_shutdown_lines() {
        let cases = [
            (
                "(XEN) Hardware Dom0 halted: halting machine",
                XenEvent::DomainPoweredOff,
            ),
            (
                "(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.",
                XenEvent::DomainCrashed,
            ),
            (
                "(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting.",
                XenEvent::DomainCrashed,
            ),
            (
                "(XEN) Hardware Dom0 shutdown: rebooting machine",
                XenEvent::DomainRebooted,
            ),
            (
                "(XEN) Hardware Dom0 shutdown: watchdog rebooting machine",
                XenEvent::DomainWatchdog,
            ),
            (
                "(XEN) Hardware domain 0 did unsupported soft reset, rebooting.",
                XenEvent::DomainSoftReset,
            ),
            (
                "(XEN) Hardware Dom0 shutdown (unknown reason 7): ",
                XenEvent::DomainUnknownShutdown(7),
            ),
            ("(XEN) Panic on CPU 0:", XenEvent::XenPanic),
            (
                "(XEN) [    3.141592] Hardware Dom0 halted: halting machine",
                XenEvent::DomainPoweredOff,
            ),
        ];
        for (line, event) in cases {
            assert_eq!(parse_xen_event(line), Some(event), "{line}");
        }
        assert_eq!(
            parse_xen_event("Hardware Dom0 halted: halting machine"),
            None
        );
        assert_eq!(parse_xen_event("(XEN) *** Building a PV Dom0 ***"), None);
        assert_eq!(parse_xen_event("(XEN) Hardware Dom0 is alive"), None);
    }

    #[test]
    fn xen_panic_report() {
        assert!(ends_xen_panic("(XEN) Reboot in five seconds..."));
        assert!(ends_xen_panic(
            "(XEN) Manual reset required ('noreboot' specified)"
        ));
        assert!(!ends_xen_panic("Reboot in five seconds..."));
        assert_eq!(
            xen_panic_detail("(XEN) ****************************************"),
            None
        );
        assert_eq!(xen_panic_detail("(XEN) "), None);
        assert_eq!(
            xen_panic_detail("(XEN) Could not construct domain 0"),
            Some("Could not construct domain 0")
        );
    }

    #[test]
    fn backtrace_lines() {
        assert_eq!(
            parse_backtrace_line("    #0 0xffffffff80001234"),
            Some((0, 0xffff_ffff_8000_1234))
        );
        assert_eq!(
            parse_backtrace_line("#12 0x0000000000401000\r"),
            Some((12, 0x40_1000))
        );
        assert_eq!(
            parse_backtrace_line("\t#3 0xffffffff80001234"),
            Some((3, 0xffff_ffff_8000_1234))
        );
        // Not the exact form: upper case, short, extra text, missing number.
        assert_eq!(parse_backtrace_line("    #0 0xFFFFFFFF80001234"), None);
        assert_eq!(parse_backtrace_line("    #0 0xffffffff8000123"), None);
        assert_eq!(parse_backtrace_line("    #0 0xffffffff80001234 foo"), None);
        assert_eq!(parse_backtrace_line("    # 0xffffffff80001234"), None);
        assert_eq!(parse_backtrace_line("    #0  0xffffffff80001234"), None);
        assert_eq!(parse_backtrace_line("x   #0 0xffffffff80001234"), None);
    }

    #[test]
    fn rip_field() {
        assert_eq!(
            find_rip("#PF rip=0xffffffff80001234 rsp=0x10"),
            Some(0xffff_ffff_8000_1234)
        );
        assert_eq!(find_rip("rip=0x"), None);
        assert_eq!(find_rip("no register here"), None);
    }
}
