//! The verdict words on the console: what the kernel prints and the runner reads.
//!
//! One line per self-test check, `[<tag>] <text>` (tags `ok`, `skip`, `ERROR`, `FAILURE`), and the
//! last line of a run, `Test result: <word>` (words `SUCCESS`, `SKIP`, `ERROR`, `FAILURE`), as
//! XTF prints them.

use core::fmt;

/// A verdict, ordered by severity as XTF orders them: the most severe one seen wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Success,
    Skip,
    Error,
    Failure,
}

/// What the last line of a run starts with, before the verdict's [`Verdict::word`].
pub const RESULT_PREFIX: &str = "Test result: ";

impl Verdict {
    /// Every verdict, least severe first.
    pub const ALL: [Verdict; 4] =
        [Verdict::Success, Verdict::Skip, Verdict::Error, Verdict::Failure];

    /// The word on the `Test result:` line.
    pub const fn word(self) -> &'static str {
        match self {
            Verdict::Success => "SUCCESS",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
            Verdict::Failure => "FAILURE",
        }
    }

    /// The tag of a self-test check line, `[<tag>] <text>`.
    pub const fn tag(self) -> &'static str {
        match self {
            Verdict::Success => "ok",
            Verdict::Skip => "skip",
            Verdict::Error => "ERROR",
            Verdict::Failure => "FAILURE",
        }
    }

    /// The verdict whose [`word`](Verdict::word) is exactly `word`.
    pub fn from_word(word: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.word() == word)
    }

    /// The verdict of a result line: exactly `Test result: <word>`, leading and trailing white
    /// space (a `\r`) aside. A line that only mentions a verdict is none.
    pub fn from_result_line(line: &str) -> Option<Verdict> {
        Verdict::from_word(line.trim().strip_prefix(RESULT_PREFIX)?)
    }

    /// A check line's verdict and text: `[<tag>] <text>`.
    pub fn from_check_line(line: &str) -> Option<(Verdict, &str)> {
        let rest = line.strip_prefix('[')?;
        Verdict::ALL.into_iter().find_map(|v| {
            let text = rest.strip_prefix(v.tag())?.strip_prefix("] ")?;
            Some((v, text))
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;

    #[test]
    fn ordered_like_xtf() {
        assert!(Verdict::Success < Verdict::Skip);
        assert!(Verdict::Skip < Verdict::Error);
        assert!(Verdict::Error < Verdict::Failure);
    }

    #[test]
    fn result_lines_read_back() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_result_line(&format!("{RESULT_PREFIX}{v}\r")), Some(v));
            assert_eq!(
                Verdict::from_check_line(&format!("[{}] a check", v.tag())),
                Some((v, "a check"))
            );
        }
        assert_eq!(Verdict::from_result_line("Test result: success"), None);
        assert_eq!(Verdict::from_result_line("Test result: SUCCESSFUL"), None);
        assert_eq!(Verdict::from_result_line("expecting Test result: SUCCESS"), None);
        assert_eq!(Verdict::from_check_line("[okay] x"), None);
    }
}
