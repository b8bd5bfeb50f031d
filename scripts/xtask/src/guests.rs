//! The DomU path's console: whose each line is (Xen's, the Linux dom0's, a guest's), and how each
//! guest and the whole run ended.
//!
//! The dom0 (scripts/dom0/init) runs the guests one after another. A guest's console sits between
//! `faultline-dom0: ... guest N: xl create` and `FAULTLINE-DOM0-GUEST N <domid> <how>`; xl's own
//! messages follow the console, each prefixed `xl: `; `FAULTLINE-DOM0-VERDICT B` closes the run
//! and QEMU exits. Lines of the dom0 kernel itself (Linux's boot lines) carry no prefix: they are
//! the ones outside any guest's section.

use std::time::Duration;

use crate::console::{dom0_verdict_meaning, parse_dom0_line, parse_verdict, Dom0Line, GuestEnd};
use crate::outcome::{judge, ShutdownReason, Verdict, EXIT_SETUP, EXIT_SUCCESS};

/// Whose a console line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Xen's own `(XEN)` lines.
    Xen,
    /// The Linux dom0: its init's progress and protocol lines, xl's messages, kernel lines.
    Dom0,
    /// The running guest's console.
    Guest,
}

/// How one guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestOutcome {
    /// 1 for the first guest the dom0 ran.
    pub number: u32,
    /// The domain id xl gave it, if it got that far.
    pub domid: Option<u32>,
    /// Its last `Test result:` line.
    pub verdict: Option<Verdict>,
    pub shutdown: ShutdownReason,
    /// The exit status this guest alone would give (see [`crate::outcome`]).
    pub exit_code: i32,
    /// One line saying why.
    pub reason: String,
    /// Its console lines (backtraces symbolized), `\n`-terminated.
    pub log: String,
}

/// A guest seen so far.
#[derive(Clone, Debug, Default)]
struct GuestRecord {
    number: u32,
    domid: Option<u32>,
    end: Option<GuestEnd>,
    verdict: Option<Verdict>,
    log: String,
    xl_messages: Vec<String>,
}

/// Follows the dom0's console line by line.
#[derive(Debug, Default)]
pub struct Follower {
    guests: Vec<GuestRecord>,
    /// The index of the guest whose console is streaming.
    current: Option<usize>,
    dom0_verdict: Option<u8>,
    /// The dom0's last progress message (`FAILED: insmod ...`, ...), for a failure's reason.
    last_progress: Option<String>,
}

/// How the whole run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub exit_code: i32,
    pub reason: String,
    /// The first failing guest's (or the last guest's) shutdown, or what stopped the run.
    pub shutdown: ShutdownReason,
    /// The first failing guest's (or the last guest's) verdict.
    pub verdict: Option<Verdict>,
    pub guests: Vec<GuestOutcome>,
}

impl Follower {
    /// Classifies a line that is not Xen's and takes note of what it says. A [`Source::Guest`]
    /// line is not kept yet: the caller symbolizes it and hands it to [`Follower::guest_line`].
    pub fn line(&mut self, line: &str) -> Source {
        match parse_dom0_line(line) {
            Some(Dom0Line::GuestStarts(number)) => {
                self.guests.push(GuestRecord { number, ..GuestRecord::default() });
                self.current = Some(self.guests.len() - 1);
            }
            Some(Dom0Line::GuestEnded { number, domid, end }) => {
                if let Some(guest) = self.guests.iter_mut().rev().find(|g| g.number == number) {
                    guest.domid = domid;
                    guest.end = Some(end);
                }
                self.current = None;
            }
            Some(Dom0Line::Verdict(byte)) => self.dom0_verdict = Some(byte),
            Some(Dom0Line::Progress(message)) => self.last_progress = Some(message.to_string()),
            Some(Dom0Line::Xl(message)) => {
                if let Some(index) = self.current {
                    self.guests[index].xl_messages.push(message.to_string());
                }
            }
            None if self.current.is_some() => return Source::Guest,
            None => {}
        }
        Source::Dom0
    }

    /// Keeps a line of the running guest (after [`Follower::line`] said it is one).
    pub fn guest_line(&mut self, line: &str) {
        if let Some(index) = self.current {
            let guest = &mut self.guests[index];
            if let Some(verdict) = parse_verdict(line) {
                guest.verdict = Some(verdict);
            }
            guest.log.push_str(line);
            guest.log.push('\n');
        }
    }

    /// The dom0's verdict byte, once it printed it (QEMU exits right after).
    pub fn dom0_verdict(&self) -> Option<u8> {
        self.dom0_verdict
    }

    /// The number of the guest whose console is streaming.
    pub fn running_guest(&self) -> Option<u32> {
        self.current.map(|index| self.guests[index].number)
    }

    /// Judges the run: `end` is what stopped it (QEMU's exit, a timeout, a Xen panic, or Xen
    /// reporting that the Linux dom0 itself shut down); `expected` guests were asked for, each with
    /// `guest_timeout`.
    pub fn judge(self, end: &ShutdownReason, expected: u32, guest_timeout: Duration) -> Judgement {
        let running = self.running_guest();
        let last_progress = self.last_progress.clone().unwrap_or_default();
        let guests: Vec<GuestOutcome> =
            self.guests.into_iter().map(|guest| judge_guest(guest, end, guest_timeout)).collect();
        let stopped = |exit_code: i32, reason: String, shutdown: ShutdownReason| Judgement {
            exit_code,
            reason,
            verdict: None,
            shutdown,
            guests: guests.clone(),
        };
        // The run stopped before the dom0's verdict: say so, and which guest was running.
        let during = match running {
            Some(number) => format!(" while guest {number} ran"),
            None if guests.is_empty() => {
                format!(" before dom0 ran a guest (its last word: {last_progress:?})")
            }
            None => String::new(),
        };
        match end {
            ShutdownReason::Timeout(_) | ShutdownReason::XenPanic(_) => {
                let (exit_code, reason) = judge(running_verdict(&guests, running), end);
                return stopped(exit_code, format!("{reason}{during}"), end.clone());
            }
            _ => {}
        }
        let byte = match (self.dom0_verdict, end) {
            (Some(byte), _) => byte,
            (None, ShutdownReason::QemuExited(Some(status))) if status & 1 == 1 => {
                (status >> 1) as u8
            }
            _ => {
                let why = format!("the Linux dom0 stopped without a verdict ({end}){during}");
                return stopped(
                    EXIT_SETUP,
                    format!("toolstack failure: {why}"),
                    ShutdownReason::Toolstack(why),
                );
            }
        };
        if byte == 5 || (byte == 2 && guests.is_empty()) {
            let why =
                format!("dom0 verdict {byte}, {}: {last_progress}", dom0_verdict_meaning(byte));
            return stopped(
                EXIT_SETUP,
                format!("toolstack failure: {why}"),
                ShutdownReason::Toolstack(why),
            );
        }
        for number in 1..=expected {
            let Some(guest) = guests.iter().find(|guest| guest.number == number) else {
                let why = format!("dom0 never started guest {number} of {expected}");
                return stopped(
                    EXIT_SETUP,
                    format!("toolstack failure: {why}"),
                    ShutdownReason::Toolstack(why),
                );
            };
            if guest.exit_code != EXIT_SUCCESS {
                let prefix = if expected > 1 {
                    format!("guest {number} of {expected}: ")
                } else {
                    String::new()
                };
                return Judgement {
                    exit_code: guest.exit_code,
                    reason: format!("{prefix}{}", guest.reason),
                    shutdown: guest.shutdown.clone(),
                    verdict: guest.verdict,
                    guests,
                };
            }
        }
        if byte != 0 {
            let why = format!(
                "every guest passed, yet dom0 said {byte} ({})",
                dom0_verdict_meaning(byte)
            );
            return stopped(
                EXIT_SETUP,
                format!("toolstack failure: {why}"),
                ShutdownReason::Toolstack(why),
            );
        }
        let reason = match expected {
            1 => "SUCCESS: the domain powered off".to_string(),
            n => format!("SUCCESS: all {n} guests powered off"),
        };
        Judgement {
            exit_code: EXIT_SUCCESS,
            reason,
            shutdown: ShutdownReason::Poweroff,
            verdict: Some(Verdict::Success),
            guests,
        }
    }
}

/// The verdict of the guest that was running when the run stopped.
fn running_verdict(guests: &[GuestOutcome], running: Option<u32>) -> Option<Verdict> {
    let running = running?;
    guests.iter().rev().find(|g| g.number == running)?.verdict
}

fn judge_guest(guest: GuestRecord, run_end: &ShutdownReason, timeout: Duration) -> GuestOutcome {
    let shutdown = match &guest.end {
        None => run_end.clone(),
        Some(GuestEnd::Poweroff) => ShutdownReason::Poweroff,
        Some(GuestEnd::Crash) => ShutdownReason::Crash,
        Some(GuestEnd::Reboot) => ShutdownReason::Reboot,
        Some(GuestEnd::Suspend) => ShutdownReason::Suspend,
        Some(GuestEnd::Watchdog) => ShutdownReason::Watchdog,
        Some(GuestEnd::SoftReset) => ShutdownReason::SoftReset,
        Some(GuestEnd::Timeout) => ShutdownReason::Timeout(timeout),
        Some(GuestEnd::ToolstackError) => {
            ShutdownReason::Toolstack(format!("xl create failed: {}", xl_error(&guest.xl_messages)))
        }
        Some(GuestEnd::Other(word)) => {
            ShutdownReason::Toolstack(format!("dom0 reported {word:?} for guest {}", guest.number))
        }
    };
    let (exit_code, mut reason) = judge(guest.verdict, &shutdown);
    if guest.end == Some(GuestEnd::Timeout) {
        reason.push_str(", dom0 destroyed it");
    }
    GuestOutcome {
        number: guest.number,
        domid: guest.domid,
        verdict: guest.verdict,
        shutdown,
        exit_code,
        reason,
        log: guest.log,
    }
}

/// The line that says why xl failed: its first error, else its last message.
fn xl_error(messages: &[String]) -> String {
    messages
        .iter()
        .find(|message| message.contains("error"))
        .or(messages.last())
        .cloned()
        .unwrap_or_else(|| "xl printed nothing".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{EXIT_CRASH, EXIT_TIMEOUT};

    const MINUTE: Duration = Duration::from_secs(60);

    fn follow(text: &str) -> Follower {
        let mut follower = Follower::default();
        for line in text.lines() {
            if line.starts_with("(XEN)") {
                continue;
            }
            if follower.line(line) == Source::Guest {
                follower.guest_line(line);
            }
        }
        follower
    }

    const TWO_GUESTS: &str = "\
mapping kernel into physical memory
faultline-dom0: [4.99] init
faultline-dom0: [6.09] toolstack up (MemTotal: 140 MiB)
faultline-dom0: [6.13] guest 1: xl create -F -c /payload/xl/faultline.cfg (in /payload/xl/, timeout 60s)
faultline 0.1.0: Xen PV guest kernel
xenstore: name \"faultline\", domid 1
Test result: SUCCESS
xl: Parsing config from faultline.cfg
xl: Domain 1 has shut down, reason code 0 0x0
faultline-dom0: [8.71] guest 1: domain 1 ended: poweroff (reason 0, xl status 0)
FAULTLINE-DOM0-GUEST 1 1 poweroff
faultline-dom0: [8.75] guest 2: xl create -F  /payload/xl/faultline.cfg (in /payload/xl/, timeout 60s)
faultline 0.1.0: Xen PV guest kernel
*** faultline: unexpected exception #PF (page fault, vector 14) in kernel mode
xl: Domain 2 has shut down, reason code 3 0x3
FAULTLINE-DOM0-GUEST 2 2 crash
faultline-dom0: [10.15] verdict 1
FAULTLINE-DOM0-VERDICT 1
";

    #[test]
    fn lines_are_told_apart() {
        let mut follower = Follower::default();
        let sources: Vec<Source> = TWO_GUESTS.lines().take(8).map(|l| follower.line(l)).collect();
        use Source::{Dom0, Guest};
        assert_eq!(sources, [Dom0, Dom0, Dom0, Dom0, Guest, Guest, Guest, Dom0]);
    }

    #[test]
    fn each_guest_is_judged_and_the_first_failure_wins() {
        let judgement = follow(TWO_GUESTS).judge(&ShutdownReason::QemuExited(Some(3)), 2, MINUTE);
        assert_eq!(judgement.guests.len(), 2);
        let first = &judgement.guests[0];
        assert_eq!((first.number, first.domid, first.exit_code), (1, Some(1), EXIT_SUCCESS));
        assert!(first.log.starts_with("faultline 0.1.0"), "{}", first.log);
        assert!(first.log.ends_with("Test result: SUCCESS\n"), "{}", first.log);
        assert!(!first.log.contains("xl:"));
        let second = &judgement.guests[1];
        assert_eq!((second.domid, second.exit_code), (Some(2), EXIT_CRASH));
        assert_eq!(second.shutdown, ShutdownReason::Crash);
        assert_eq!(judgement.exit_code, EXIT_CRASH);
        assert!(judgement.reason.starts_with("guest 2 of 2: "), "{}", judgement.reason);
    }

    #[test]
    fn one_passing_guest_passes() {
        let one: String = TWO_GUESTS.lines().take(11).map(|l| format!("{l}\n")).collect();
        let text = one + "FAULTLINE-DOM0-VERDICT 0\n";
        let judgement = follow(&text).judge(&ShutdownReason::QemuExited(Some(1)), 1, MINUTE);
        assert_eq!(judgement.exit_code, EXIT_SUCCESS, "{}", judgement.reason);
        assert_eq!(judgement.shutdown, ShutdownReason::Poweroff);
        // Asked for two, got one.
        let short = follow(&text).judge(&ShutdownReason::QemuExited(Some(1)), 2, MINUTE);
        assert_eq!(short.exit_code, EXIT_SETUP);
    }

    #[test]
    fn toolstack_failures_say_why() {
        let text = "\
faultline-dom0: [5.45] guest 1: xl create -F  /payload/xl/faultline.cfg (in /payload/xl/, timeout 60s)
xl: Parsing config from faultline.cfg
xl: xc: error: panic: xg_dom_boot.c:119: xc_dom_boot_mem_init: can't allocate low memory for domain: Out of memory
xl: libxl: error: libxl_create.c:1640:domcreate_rebuild_done: Domain 1:cannot (re-)build domain: -3
FAULTLINE-DOM0-GUEST 1 - toolstack-error
FAULTLINE-DOM0-VERDICT 2
";
        let judgement = follow(text).judge(&ShutdownReason::QemuExited(Some(5)), 1, MINUTE);
        assert_eq!(judgement.exit_code, EXIT_SETUP);
        assert!(judgement.reason.contains("can't allocate low memory"), "{}", judgement.reason);

        let insmod =
            "faultline-dom0: [4.1] init\nfaultline-dom0: [4.2] FAILED: insmod xen-evtchn\n";
        let judgement = follow(insmod).judge(&ShutdownReason::QemuExited(Some(5)), 1, MINUTE);
        assert_eq!(judgement.exit_code, EXIT_SETUP);
        assert!(judgement.reason.contains("FAILED: insmod xen-evtchn"), "{}", judgement.reason);

        let crashed =
            follow("faultline-dom0: [4.1] init\n").judge(&ShutdownReason::Crash, 1, MINUTE);
        assert_eq!(crashed.exit_code, EXIT_SETUP);
        assert!(crashed.reason.contains("without a verdict"), "{}", crashed.reason);
    }

    #[test]
    fn timeouts() {
        let text = "\
faultline-dom0: [5.45] guest 1: xl create -F  /payload/xl/faultline.cfg (in /payload/xl/, timeout 3s)
faultline-dom0: [8.5] guest 1: timeout after 3s, destroying it
FAULTLINE-DOM0-GUEST 1 1 timeout
FAULTLINE-DOM0-VERDICT 4
";
        let judgement =
            follow(text).judge(&ShutdownReason::QemuExited(Some(9)), 1, Duration::from_secs(3));
        assert_eq!(judgement.exit_code, EXIT_TIMEOUT);
        assert!(judgement.reason.contains("dom0 destroyed it"), "{}", judgement.reason);

        let stuck = follow("faultline-dom0: [5.45] guest 1: xl create -F x.cfg\nfaultline 0.1.0\n");
        let judgement = stuck.judge(&ShutdownReason::Timeout(MINUTE), 1, MINUTE);
        assert_eq!(judgement.exit_code, EXIT_TIMEOUT);
        assert!(judgement.reason.ends_with("while guest 1 ran"), "{}", judgement.reason);
    }
}
