//! Reading the serial console: Xen's own lines, the guest's verdict, shutdown messages, backtraces,
//! and on the DomU path the Linux dom0's progress and verdict lines.
//!
//! Everything here is pure text handling, so the host unit tests cover it without booting anything.
//! The Xen strings come from Xen 4.17's `xen/common/shutdown.c` (`hwdom_shutdown`) and
//! `xen/drivers/char/console.c` (`panic`), checked against the strings in the Debian 4.17.7 binary.
//! The dom0's lines are those of scripts/dom0/init.

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
    Verdict::from_result_line(line)
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
        Some(XenEvent::DomainUnknownShutdown(digits.parse().unwrap_or(u32::MAX)))
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
    let hex: String = line[start..].chars().take_while(char::is_ascii_hexdigit).collect();
    if hex.is_empty() || hex.len() > 16 {
        return None;
    }
    u64::from_str_radix(&hex, 16).ok()
}

/// The prefix of the Linux dom0's progress lines (scripts/dom0/init).
pub const DOM0_PREFIX: &str = "faultline-dom0: ";
/// The prefix the dom0 puts on xl's own messages (printed once xl has ended).
pub const XL_PREFIX: &str = "xl: ";

/// What one of the Linux dom0's lines says, on the DomU path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dom0Line<'a> {
    /// `faultline-dom0: [uptime] guest N: xl create ...`: guest N starts; its console follows.
    GuestStarts(u32),
    /// `FAULTLINE-DOM0-GUEST N DOMID|- HOW`: guest N is gone.
    GuestEnded { number: u32, domid: Option<u32>, end: GuestEnd },
    /// `FAULTLINE-DOM0-VERDICT B`: dom0 is about to exit QEMU with status `(B << 1) | 1`.
    Verdict(u8),
    /// Any other `faultline-dom0:` line: its message, after the uptime stamp.
    Progress(&'a str),
    /// `xl: ...`: one of xl's messages.
    Xl(&'a str),
}

/// How xl saw a guest end (the last word of `FAULTLINE-DOM0-GUEST`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// xl's shutdown reason code 0: SHUTDOWN_poweroff.
    Poweroff,
    /// Reason 3: SHUTDOWN_crash, or a fault Xen could not deliver.
    Crash,
    /// Reason 1.
    Reboot,
    /// Reason 2.
    Suspend,
    /// Reason 4.
    Watchdog,
    /// Reason 5.
    SoftReset,
    /// The guest ran past its timeout and dom0 destroyed it.
    Timeout,
    /// xl ended without a shutdown line: the domain was never built or never ran.
    ToolstackError,
    /// A word this runner does not know.
    Other(String),
}

/// Recognises the dom0's own lines; `None` for anything else (Xen's, the guests', Linux's).
pub fn parse_dom0_line(line: &str) -> Option<Dom0Line<'_>> {
    let line = line.trim_end();
    if let Some(message) = line.strip_prefix(DOM0_PREFIX) {
        let message = match message.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(rest, |(_, message)| message),
            None => message,
        };
        let starts = message
            .strip_prefix("guest ")
            .and_then(|rest| rest.split_once(": xl create"))
            .and_then(|(number, _)| number.parse().ok());
        return Some(starts.map_or(Dom0Line::Progress(message), Dom0Line::GuestStarts));
    }
    if let Some(message) = line.strip_prefix(XL_PREFIX) {
        return Some(Dom0Line::Xl(message));
    }
    if let Some(byte) = line.strip_prefix("FAULTLINE-DOM0-VERDICT ") {
        return byte.trim().parse().ok().map(Dom0Line::Verdict);
    }
    let rest = line.strip_prefix("FAULTLINE-DOM0-GUEST ")?;
    let mut words = rest.split_whitespace();
    let number = words.next()?.parse().ok()?;
    let domid = words.next()?.parse().ok();
    let end = match words.next()? {
        "poweroff" => GuestEnd::Poweroff,
        "crash" => GuestEnd::Crash,
        "reboot" => GuestEnd::Reboot,
        "suspend" => GuestEnd::Suspend,
        "watchdog" => GuestEnd::Watchdog,
        "soft_reset" => GuestEnd::SoftReset,
        "timeout" => GuestEnd::Timeout,
        "toolstack-error" => GuestEnd::ToolstackError,
        other => GuestEnd::Other(other.to_string()),
    };
    Some(Dom0Line::GuestEnded { number, domid, end })
}

/// The meaning of the dom0's verdict byte (scripts/dom0/init; QEMU exits with `(B << 1) | 1`).
pub fn dom0_verdict_meaning(byte: u8) -> &'static str {
    match byte {
        0 => "every guest powered off",
        1 => "a guest crashed",
        2 => "dom0 or toolstack failure",
        3 => "a guest stopped for another reason",
        4 => "a guest ran past its timeout",
        5 => "no or bad payload",
        _ => "an unknown verdict",
    }
}

/// A console line as it may be written to a terminal: every control character (C0 but tab,
/// DEL, C1) becomes `\xNN` or `\u{NN}`, so that nothing the guest, the dom0 or Xen printed can
/// move the cursor, erase lines or recolour the screen. The runner adds its own colours around
/// the result. Unchanged (borrowed) when there is nothing to escape.
pub fn for_terminal(line: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() && c != '\t';
    if !line.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut shown = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            c if !unsafe_char(c) => shown.push(c),
            c if (c as u32) < 0x100 => shown.push_str(&format!("\\x{:02x}", c as u32)),
            c => shown.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(
            for_terminal("ok 1 - hello: exited\twith status 0"),
            "ok 1 - hello: exited\twith status 0"
        );
        assert!(matches!(for_terminal("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            for_terminal("\x1b[2K\r\x1b[1;32mTest result: SUCCESS\x1b[0m"),
            "\\x1b[2K\\x0d\\x1b[1;32mTest result: SUCCESS\\x1b[0m"
        );
        assert_eq!(for_terminal("a\u{9b}2Jb\u{7f}\0"), "a\\x9b2Jb\\x7f\\x00");
        assert!(!for_terminal("\u{1}\u{1f}\u{85}").chars().any(char::is_control));
    }

    #[test]
    fn verdict_lines() {
        assert_eq!(parse_verdict("Test result: SUCCESS"), Some(Verdict::Success));
        assert_eq!(parse_verdict("Test result: SKIP\r"), Some(Verdict::Skip));
        assert_eq!(parse_verdict("  Test result: ERROR"), Some(Verdict::Error));
        assert_eq!(parse_verdict("Test result: FAILURE"), Some(Verdict::Failure));
        assert_eq!(parse_verdict("Test result: success"), None);
        assert_eq!(parse_verdict("Test result: SUCCESSFUL"), None);
        assert_eq!(parse_verdict("expecting Test result: SUCCESS"), None);
        assert_eq!(parse_verdict("(XEN) Test result: SUCCESS"), None);
    }

    #[test]
    fn xen_shutdown_lines() {
        let cases = [
            ("(XEN) Hardware Dom0 halted: halting machine", XenEvent::DomainPoweredOff),
            (
                "(XEN) Hardware Dom0 crashed: rebooting machine in 5 seconds.",
                XenEvent::DomainCrashed,
            ),
            (
                "(XEN) Hardware Dom0 crashed: 'noreboot' set - not rebooting.",
                XenEvent::DomainCrashed,
            ),
            ("(XEN) Hardware Dom0 shutdown: rebooting machine", XenEvent::DomainRebooted),
            ("(XEN) Hardware Dom0 shutdown: watchdog rebooting machine", XenEvent::DomainWatchdog),
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
        assert_eq!(parse_xen_event("Hardware Dom0 halted: halting machine"), None);
        assert_eq!(parse_xen_event("(XEN) *** Building a PV Dom0 ***"), None);
        assert_eq!(parse_xen_event("(XEN) Hardware Dom0 is alive"), None);
    }

    #[test]
    fn xen_panic_report() {
        assert!(ends_xen_panic("(XEN) Reboot in five seconds..."));
        assert!(ends_xen_panic("(XEN) Manual reset required ('noreboot' specified)"));
        assert!(!ends_xen_panic("Reboot in five seconds..."));
        assert_eq!(xen_panic_detail("(XEN) ****************************************"), None);
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
        assert_eq!(parse_backtrace_line("#12 0x0000000000401000\r"), Some((12, 0x40_1000)));
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
        assert_eq!(find_rip("#PF rip=0xffffffff80001234 rsp=0x10"), Some(0xffff_ffff_8000_1234));
        assert_eq!(find_rip("rip=0x"), None);
        assert_eq!(find_rip("no register here"), None);
    }

    #[test]
    fn dom0_lines() {
        assert_eq!(
            parse_dom0_line("faultline-dom0: [4.85] guest 1: xl create -F -c /payload/xl/faultline.cfg (in /payload/xl/, timeout 60s)"),
            Some(Dom0Line::GuestStarts(1))
        );
        assert_eq!(
            parse_dom0_line("faultline-dom0: [4.18] init"),
            Some(Dom0Line::Progress("init"))
        );
        assert_eq!(
            parse_dom0_line("faultline-dom0: [13.11] guest 12: domain 1 ended: poweroff (reason 0, xl status 0)"),
            Some(Dom0Line::Progress("guest 12: domain 1 ended: poweroff (reason 0, xl status 0)"))
        );
        assert_eq!(
            parse_dom0_line("FAULTLINE-DOM0-GUEST 2 7 crash"),
            Some(Dom0Line::GuestEnded { number: 2, domid: Some(7), end: GuestEnd::Crash })
        );
        assert_eq!(
            parse_dom0_line("FAULTLINE-DOM0-GUEST 1 - toolstack-error"),
            Some(Dom0Line::GuestEnded { number: 1, domid: None, end: GuestEnd::ToolstackError })
        );
        assert_eq!(parse_dom0_line("FAULTLINE-DOM0-VERDICT 4"), Some(Dom0Line::Verdict(4)));
        assert_eq!(
            parse_dom0_line("xl: Parsing config from faultline.cfg"),
            Some(Dom0Line::Xl("Parsing config from faultline.cfg"))
        );
        assert_eq!(parse_dom0_line("Test result: SUCCESS"), None);
        assert_eq!(parse_dom0_line("(XEN) faultline-dom0: x"), None);
        assert_eq!(parse_dom0_line("FAULTLINE-DOM0-GUEST x"), None);
    }
}
