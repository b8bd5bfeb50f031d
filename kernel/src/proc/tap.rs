//! The TAP report of the test programs: one line per run, comparing what a program declared
//! ([`Expectation`]) with what happened ([`Outcome`]), and the plan line.

use core::fmt;

use super::expectation::{Expectation, Outcome};

/// One line of the TAP report. `Display` writes it without the newline.
#[derive(Clone, Copy)]
pub struct TapLine<'a> {
    pub number: usize,
    pub name: &'a str,
    /// `(this run, of how many)` when the program runs more than once.
    pub run: Option<(u8, u8)>,
    pub verdict: TapVerdict<'a>,
    /// What went wrong around the run (frames leaked, a kernel call that failed): makes the
    /// line `not ok` whatever the outcome, on the same test number.
    pub problem: Option<&'a dyn fmt::Display>,
}

#[derive(Clone, Copy)]
pub enum TapVerdict<'a> {
    Compared {
        expected: Expectation,
        outcome: Outcome,
    },
    /// The program never ran: a bad archive entry, ELF or note.
    Rejected(&'a dyn fmt::Display),
}

impl<'a> TapLine<'a> {
    pub fn compared(
        number: usize,
        name: &'a str,
        expected: Expectation,
        outcome: Outcome,
    ) -> TapLine<'a> {
        TapLine {
            number,
            name,
            run: None,
            verdict: TapVerdict::Compared { expected, outcome },
            problem: None,
        }
    }

    pub fn rejected(number: usize, name: &'a str, reason: &'a dyn fmt::Display) -> TapLine<'a> {
        TapLine { number, name, run: None, verdict: TapVerdict::Rejected(reason), problem: None }
    }

    /// Marks the line as run `this` of `of` (shown only when `of > 1`).
    pub fn with_run(self, this: u8, of: u8) -> TapLine<'a> {
        TapLine { run: (of > 1).then_some((this, of)), ..self }
    }

    /// Marks the line `not ok` for `problem`, which it appends.
    pub fn with_problem(self, problem: Option<&'a dyn fmt::Display>) -> TapLine<'a> {
        TapLine { problem, ..self }
    }

    /// Whether the outcome was the expected one (a problem aside).
    pub fn outcome_passed(&self) -> bool {
        match self.verdict {
            TapVerdict::Compared { expected, outcome } => expected.matches(&outcome),
            TapVerdict::Rejected(_) => false,
        }
    }

    pub fn passed(&self) -> bool {
        self.outcome_passed() && self.problem.is_none()
    }
}

impl fmt::Display for TapLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ok {} - {}", if self.passed() { "" } else { "not " }, self.number, self.name)?;
        if let Some((this, of)) = self.run {
            write!(f, " (run {this} of {of})")?;
        }
        match self.verdict {
            TapVerdict::Compared { expected, outcome } if expected.matches(&outcome) => {
                write!(f, ": {outcome}, as expected")
            }
            TapVerdict::Compared { expected, outcome } => {
                write!(f, ": expected {expected}, got {outcome}")
            }
            TapVerdict::Rejected(reason) => write!(f, ": rejected: {reason}"),
        }?;
        match self.problem {
            Some(problem) => write!(f, "; {problem}"),
            None => Ok(()),
        }
    }
}

/// The TAP plan line for `count` test lines: `1..count`.
pub struct TapPlan(pub usize);

impl fmt::Display for TapPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1..{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::user_space::Region;
    use crate::proc::expectation::tests::pf;
    use crate::proc::expectation::Access;

    fn parse(text: &str) -> Expectation {
        Expectation::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn tap_lines_read_well() {
        let null = pf(Access::Read, false, 0, Region::Null);
        let expected = parse("killed #PF read not-present at 0x0");
        let line = TapLine::compared(3, "null_read", expected, null);
        assert!(line.passed());
        assert_eq!(line.to_string(), "ok 3 - null_read: killed by #PF read not-present at 0x0 in null, rip 0x401000, as expected");
        // A leak turns the same line (same number) into `not ok`.
        let leak = "LEAK: 2 frames not back in the pool after the run";
        let leaked = line.with_problem(Some(&leak));
        assert!(leaked.outcome_passed() && !leaked.passed());
        assert_eq!(leaked.to_string(), "not ok 3 - null_read: killed by #PF read not-present at 0x0 in null, rip 0x401000, as expected; LEAK: 2 frames not back in the pool after the run");
        let line = TapLine::compared(4, "exit_status", parse("exit 3"), null);
        assert!(!line.passed());
        assert_eq!(
            line.to_string(),
            "not ok 4 - exit_status: expected exit 3, got killed by #PF read not-present at 0x0 in null, rip 0x401000"
        );
        let line = TapLine::compared(5, "shared_text", parse("exit 0; runs 2"), Outcome::Exited(0))
            .with_run(2, 2);
        assert_eq!(
            line.to_string(),
            "ok 5 - shared_text (run 2 of 2): exited with status 0, as expected"
        );
        let overflow = pf(Access::Write, false, 0x7fff_ffee_f000, Region::Guard);
        let line = TapLine::compared(6, "stack_overflow", parse("killed stack-overflow"), overflow);
        assert_eq!(
            line.to_string(),
            "ok 6 - stack_overflow: killed by stack overflow: #PF write not-present at 0x7fffffeef000 in guard, rip 0x401000, as expected"
        );
        let reason = "segment 1: both writable and executable";
        let line = TapLine::rejected(7, "rwx", &reason);
        assert!(!line.passed());
        assert_eq!(
            line.to_string(),
            "not ok 7 - rwx: rejected: segment 1: both writable and executable"
        );
        assert_eq!(TapPlan(7).to_string(), "1..7");
    }
}
