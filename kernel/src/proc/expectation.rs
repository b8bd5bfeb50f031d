//! What a test program declares should happen to it (the expectation grammar), what did happen
//! ([`Outcome`]), and whether the two match. The TAP line that reports it is in `proc::tap`.
//!
//! The declaration is an ELF note (`faultline_abi::note`: name `"faultline"`, type 1), descriptor the
//! text below (ASCII, trailing NULs ignored). A program without one is expected to `exit 0`.
//!
//! ```text
//! expectation := outcome { ";" option }
//! outcome     := "exit" STATUS                     STATUS: decimal 0..=255
//!              | "killed" cause
//! cause       := "#PF" [access] [presence] [place]
//!              | "#UD" | "#GP" | "#DE" | "#BP"
//!              | "stack-overflow"                  a #PF in the stack guard
//!              | "watchdog"                        ran out of its time budget
//!              | "oom"                             ran out of its memory limit
//! access      := "read" | "write" | "exec"
//! presence    := "not-present" | "protection"
//! place       := "at" ADDRESS | "in" REGION       ADDRESS: 0x-prefixed hex; REGION: see below
//! option      := "runs" N                          run N (1..=8) times in a row, each checked
//!              | "vcpus" N                         needs N (1..=32) online vCPUs (its threads
//!                                                  run on N at once); with fewer it is skipped
//! ```
//! Words are separated by spaces; parts left out of a `#PF` cause match anything. Regions:
//! `null text data heap mmap stack guard unmapped kernel non-canonical` ([`Region`]).
//! Examples: `exit 3`; `killed #PF read not-present at 0x0`; `killed #PF write protection in
//! text`; `killed #UD`; `exit 0; runs 2`; `exit 0; vcpus 2`.

use core::fmt;

pub use crate::arch::x86_64::page_fault::{Access, PageFault};
use crate::mm::user_space::Region;

/// Most runs one program may ask for.
pub const RUNS_MAX: u8 = 8;
/// Most vCPUs one program may ask for: all the kernel runs.
pub const VCPUS_MAX: u8 = faultline_abi::MAX_VCPUS as u8;

/// Why the kernel ended a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A page fault the address space refused, and the region its address lies in.
    PageFault(PageFault, Region),
    InvalidOpcode,
    /// #GP; `int_vector` when an `int $n` through a gate closed to user mode raised it.
    GeneralProtection {
        int_vector: Option<u8>,
    },
    DivideError,
    Breakpoint,
    /// Any other vector; `int_vector` when the program's `int $n` raised it.
    Exception {
        vector: u8,
        int_vector: Option<u8>,
    },
    Watchdog,
    OutOfMemory,
}

/// What happened to one run of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `exit`/`exit_group` with this status (the low 8 bits, as Linux keeps).
    Exited(u8),
    Killed {
        cause: Cause,
        rip: u64,
    },
}

/// What a program declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub outcome: Expected,
    /// How many runs in a row (each gets its own TAP line).
    pub runs: u8,
    /// How many online vCPUs the program needs (with fewer, the kernel skips it).
    pub vcpus: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expected {
    Exit(u8),
    PageFault {
        access: Option<Access>,
        present: Option<bool>,
        place: Option<Place>,
    },
    InvalidOpcode,
    GeneralProtection,
    DivideError,
    Breakpoint,
    StackOverflow,
    Watchdog,
    OutOfMemory,
    /// Any other vector by number (e.g. #OF is 4), whatever raised it.
    Vector(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    At(u64),
    In(Region),
}

impl Default for Expectation {
    /// What a program without a note is expected to do.
    fn default() -> Self {
        Expectation { outcome: Expected::Exit(0), runs: 1, vcpus: 1 }
    }
}

/// Why a note's text is not an expectation; `word` is the offending word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpectError<'a> {
    pub text: &'a str,
    pub problem: Problem<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem<'a> {
    NotAscii,
    Empty,
    UnknownOutcome(&'a str),
    MissingStatus,
    BadStatus(&'a str),
    MissingCause,
    UnknownCause(&'a str),
    /// A word that does not belong where it is.
    Unexpected(&'a str),
    MissingAfter(&'a str),
    BadAddress(&'a str),
    UnknownRegion(&'a str),
    UnknownOption(&'a str),
    BadRuns(&'a str),
    BadVcpus(&'a str),
    RepeatedOption(&'a str),
    BadVector(&'a str),
}

impl fmt::Display for ExpectError<'_> {
    /// The note's text and its words come from the program: shown escaped (`escape_debug`), so
    /// that control characters in them cannot drive a terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad expectation note \"{}\": ", self.text.escape_debug())?;
        match self.problem {
            Problem::NotAscii => f.write_str("not ASCII text"),
            Problem::Empty => f.write_str("empty (say \"exit 0\", or leave the note out)"),
            Problem::UnknownOutcome(w) => {
                write!(f, "'{}' is not an outcome (exit, killed)", w.escape_debug())
            }
            Problem::MissingStatus => f.write_str("'exit' needs a status"),
            Problem::BadStatus(w) => {
                write!(f, "'{}' is not an exit status (0..=255)", w.escape_debug())
            }
            Problem::MissingCause => f.write_str("'killed' needs a cause"),
            Problem::UnknownCause(w) => {
                write!(
                    f,
                    "'{}' is not a cause (#PF #UD #GP #DE #BP stack-overflow watchdog oom)",
                    w.escape_debug()
                )
            }
            Problem::Unexpected(w) => write!(f, "unexpected '{}'", w.escape_debug()),
            Problem::MissingAfter(w) => write!(f, "'{}' needs a value", w.escape_debug()),
            Problem::BadAddress(w) => {
                write!(f, "'{}' is not a 0x-prefixed hex address", w.escape_debug())
            }
            Problem::UnknownRegion(w) => {
                write!(f, "'{}' is not a region (", w.escape_debug())?;
                for (i, r) in Region::ALL.iter().enumerate() {
                    write!(f, "{}{r}", if i == 0 { "" } else { " " })?;
                }
                f.write_str(")")
            }
            Problem::UnknownOption(w) => {
                write!(f, "'{}' is not an option (runs, vcpus)", w.escape_debug())
            }
            Problem::BadVcpus(w) => {
                write!(f, "'{}' is not a vCPU count (1..={VCPUS_MAX})", w.escape_debug())
            }
            Problem::BadRuns(w) => {
                write!(f, "'{}' is not a run count (1..={RUNS_MAX})", w.escape_debug())
            }
            Problem::RepeatedOption(w) => write!(f, "'{}' given twice", w.escape_debug()),
            Problem::BadVector(w) => {
                write!(f, "'{}' is not a vector (0..=255, decimal or 0x hex)", w.escape_debug())
            }
        }
    }
}

impl Expectation {
    /// Parses a note descriptor.
    pub fn parse(desc: &[u8]) -> Result<Expectation, ExpectError<'_>> {
        let end = desc.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let desc = &desc[..end];
        let text = match core::str::from_utf8(desc) {
            Ok(text) if text.is_ascii() => text,
            _ => return Err(ExpectError { text: "", problem: Problem::NotAscii }),
        };
        let error = |problem| ExpectError { text, problem };
        let fail = |problem| Err(error(problem));
        let mut clauses = text.split(';');
        let mut words = clauses.next().unwrap_or("").split_ascii_whitespace();
        let outcome = match words.next() {
            None => return fail(Problem::Empty),
            Some("exit") => match words.next() {
                None => return fail(Problem::MissingStatus),
                Some(w) => match parse_decimal(w).and_then(|v| u8::try_from(v).ok()) {
                    Some(status) => Expected::Exit(status),
                    None => return fail(Problem::BadStatus(w)),
                },
            },
            Some("killed") => match words.next() {
                None => return fail(Problem::MissingCause),
                Some("#PF") => parse_page_fault(&mut words).map_err(error)?,
                Some("#UD") => Expected::InvalidOpcode,
                Some("#GP") => Expected::GeneralProtection,
                Some("#DE") => Expected::DivideError,
                Some("#BP") => Expected::Breakpoint,
                Some("stack-overflow") => Expected::StackOverflow,
                Some("watchdog") => Expected::Watchdog,
                Some("oom") => Expected::OutOfMemory,
                Some(w @ "vector") => match words.next() {
                    None => return fail(Problem::MissingAfter(w)),
                    Some(n) => match parse_vector(n) {
                        Some(vector) => Expected::Vector(vector),
                        None => return fail(Problem::BadVector(n)),
                    },
                },
                Some(w) => return fail(Problem::UnknownCause(w)),
            },
            Some(w) => return fail(Problem::UnknownOutcome(w)),
        };
        if let Some(w) = words.next() {
            return fail(Problem::Unexpected(w));
        }
        let mut runs = None;
        let mut vcpus = None;
        for clause in clauses {
            let mut words = clause.split_ascii_whitespace();
            match words.next() {
                Some(w @ "vcpus") => {
                    vcpus = Some(
                        option_count(w, vcpus, &mut words, VCPUS_MAX, Problem::BadVcpus)
                            .map_err(error)?,
                    );
                }
                Some(w @ "runs") => {
                    runs = Some(
                        option_count(w, runs, &mut words, RUNS_MAX, Problem::BadRuns)
                            .map_err(error)?,
                    );
                }
                Some(w) => return fail(Problem::UnknownOption(w)),
                None => return fail(Problem::Unexpected(";")),
            }
            if let Some(w) = words.next() {
                return fail(Problem::Unexpected(w));
            }
        }
        Ok(Expectation { outcome, runs: runs.unwrap_or(1), vcpus: vcpus.unwrap_or(1) })
    }

    /// Whether `outcome` is what was declared.
    pub fn matches(&self, outcome: &Outcome) -> bool {
        let cause = match (self.outcome, outcome) {
            (Expected::Exit(want), Outcome::Exited(got)) => return want == *got,
            (_, Outcome::Exited(_)) | (Expected::Exit(_), _) => return false,
            (_, Outcome::Killed { cause, .. }) => cause,
        };
        match (self.outcome, cause) {
            (Expected::PageFault { access, present, place }, Cause::PageFault(pf, region)) => {
                access.is_none_or(|a| a == pf.access)
                    && present.is_none_or(|p| p == pf.present)
                    && place.is_none_or(|place| match place {
                        Place::At(address) => address == pf.address,
                        Place::In(want) => want == *region,
                    })
            }
            (Expected::StackOverflow, Cause::PageFault(_, region)) => *region == Region::Guard,
            (Expected::InvalidOpcode, Cause::InvalidOpcode)
            | (Expected::GeneralProtection, Cause::GeneralProtection { .. })
            | (Expected::DivideError, Cause::DivideError)
            | (Expected::Breakpoint, Cause::Breakpoint)
            | (Expected::Watchdog, Cause::Watchdog)
            | (Expected::OutOfMemory, Cause::OutOfMemory) => true,
            (Expected::Vector(want), Cause::Exception { vector, .. }) => want == *vector,
            _ => false,
        }
    }
}

/// The count after option `word` (1..=`max`; `bad` names a count out of range), refused if the
/// option was given before (`seen`).
fn option_count<'a>(
    word: &'a str,
    seen: Option<u8>,
    words: &mut impl Iterator<Item = &'a str>,
    max: u8,
    bad: fn(&'a str) -> Problem<'a>,
) -> Result<u8, Problem<'a>> {
    if seen.is_some() {
        return Err(Problem::RepeatedOption(word));
    }
    let n = words.next().ok_or(Problem::MissingAfter(word))?;
    match parse_decimal(n) {
        Some(v) if (1..=u64::from(max)).contains(&v) => Ok(v as u8),
        _ => Err(bad(n)),
    }
}

/// A vector number: decimal or 0x-prefixed hex, 0..=255.
fn parse_vector(word: &str) -> Option<u8> {
    let value = match word.strip_prefix("0x") {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).ok()
        }
        Some(_) => None,
        None => parse_decimal(word),
    };
    value.and_then(|v| u8::try_from(v).ok())
}

fn parse_decimal(word: &str) -> Option<u64> {
    if word.is_empty()
        || !word.bytes().all(|b| b.is_ascii_digit())
        || (word.len() > 1 && word.starts_with('0'))
    {
        return None;
    }
    word.parse().ok()
}

fn parse_page_fault<'a>(
    words: &mut impl Iterator<Item = &'a str>,
) -> Result<Expected, Problem<'a>> {
    let (mut access, mut present, mut place) = (None, None, None);
    // The parts come in grammar order; each may be left out.
    let mut stage = 0;
    while let Some(w) = words.next() {
        stage = match w {
            "read" | "write" | "exec" if stage < 1 => {
                access = Some(match w {
                    "read" => Access::Read,
                    "write" => Access::Write,
                    _ => Access::Execute,
                });
                1
            }
            "not-present" | "protection" if stage < 2 => {
                present = Some(w == "protection");
                2
            }
            "at" | "in" if stage < 3 => {
                let value = words.next().ok_or(Problem::MissingAfter(w))?;
                place = Some(if w == "at" {
                    Place::At(parse_hex(value).ok_or(Problem::BadAddress(value))?)
                } else {
                    Place::In(Region::from_word(value).ok_or(Problem::UnknownRegion(value))?)
                });
                3
            }
            _ => return Err(Problem::Unexpected(w)),
        };
    }
    Ok(Expected::PageFault { access, present, place })
}

fn parse_hex(word: &str) -> Option<u64> {
    let digits = word.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// The canonical note text (parsing it gives the same expectation back).
impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outcome {
            Expected::Exit(status) => write!(f, "exit {status}")?,
            Expected::PageFault { access, present, place } => {
                f.write_str("killed #PF")?;
                if let Some(access) = access {
                    write!(f, " {}", access.word())?;
                }
                if let Some(present) = present {
                    f.write_str(if present { " protection" } else { " not-present" })?;
                }
                match place {
                    Some(Place::At(address)) => write!(f, " at {address:#x}")?,
                    Some(Place::In(region)) => write!(f, " in {region}")?,
                    None => {}
                }
            }
            Expected::InvalidOpcode => f.write_str("killed #UD")?,
            Expected::GeneralProtection => f.write_str("killed #GP")?,
            Expected::DivideError => f.write_str("killed #DE")?,
            Expected::Breakpoint => f.write_str("killed #BP")?,
            Expected::StackOverflow => f.write_str("killed stack-overflow")?,
            Expected::Watchdog => f.write_str("killed watchdog")?,
            Expected::OutOfMemory => f.write_str("killed oom")?,
            Expected::Vector(vector) => write!(f, "killed vector {vector:#x}")?,
        }
        if self.runs != 1 {
            write!(f, "; runs {}", self.runs)?;
        }
        if self.vcpus != 1 {
            write!(f, "; vcpus {}", self.vcpus)?;
        }
        Ok(())
    }
}

/// What happened, in words: `exited with status 0`, `killed by #PF read not-present at 0x0 in null`.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exited(status) => write!(f, "exited with status {status}"),
            Outcome::Killed { cause, rip } => {
                f.write_str("killed by ")?;
                if let Cause::PageFault(_, Region::Guard) = cause {
                    f.write_str("stack overflow: ")?
                }
                match cause {
                    Cause::PageFault(pf, region) => write!(
                        f,
                        "#PF {} {} at {:#x} in {}",
                        pf.access.word(),
                        if pf.present { "protection" } else { "not-present" },
                        pf.address,
                        region
                    ),
                    Cause::InvalidOpcode => f.write_str("#UD"),
                    Cause::GeneralProtection { int_vector: None } => f.write_str("#GP"),
                    Cause::GeneralProtection { int_vector: Some(n) } => {
                        write!(f, "#GP (int ${n:#x}: a vector closed to user mode)")
                    }
                    Cause::DivideError => f.write_str("#DE"),
                    Cause::Breakpoint => f.write_str("#BP"),
                    Cause::Exception { vector, int_vector } => {
                        let (mnemonic, name) =
                            crate::arch::x86_64::exception::name(u64::from(*vector));
                        write!(f, "{mnemonic} ({name}, vector {vector:#x})")?;
                        match int_vector {
                            Some(n) => write!(f, " raised by int ${n:#x}"),
                            None => Ok(()),
                        }
                    }
                    Cause::Watchdog => f.write_str("the watchdog"),
                    Cause::OutOfMemory => f.write_str("running out of memory"),
                }?;
                write!(f, ", rip {rip:#x}")
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Expectation, String> {
        Expectation::parse(text.as_bytes()).map_err(|e| e.to_string())
    }

    /// A run killed by a user #PF at `address` in `region`, at rip 0x401000.
    pub(crate) fn pf(access: Access, present: bool, address: u64, region: Region) -> Outcome {
        Outcome::Killed {
            cause: Cause::PageFault(PageFault::user(address, access, present), region),
            rip: 0x401000,
        }
    }

    #[test]
    fn the_grammar_round_trips() {
        for text in [
            "exit 0",
            "exit 255",
            "killed #PF",
            "killed #PF read not-present at 0x0",
            "killed #PF write protection in text",
            "killed #PF exec in stack",
            "killed #PF not-present",
            "killed #PF at 0xffff800000000000",
            "killed #UD",
            "killed #GP",
            "killed #DE",
            "killed #BP",
            "killed stack-overflow",
            "killed watchdog",
            "killed oom",
            "killed vector 0x4",
            "killed vector 0x80",
            "exit 0; runs 2",
            "exit 0; vcpus 2",
            "killed #UD; runs 3; vcpus 32",
        ] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn spacing_and_nuls_are_forgiven() {
        assert_eq!(
            parse("  exit   3 \0\0").unwrap(),
            Expectation { outcome: Expected::Exit(3), runs: 1, vcpus: 1 }
        );
        assert_eq!(parse("exit 0 ;runs 3").unwrap().runs, 3);
        assert_eq!(
            parse("killed #PF read at 0x0").unwrap(),
            parse("killed #PF read at 0x0").unwrap()
        );
    }

    #[test]
    fn control_characters_in_a_note_are_shown_escaped() {
        for text in
            ["killed \x1b[32mSUCCESS", "exit \x1b[2J", "exit 0; \r\x1b[1m 2", "killed #PF in \x07"]
        {
            let e = parse(text).unwrap_err();
            assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
            assert!(e.contains("\\u{1b}") || e.contains("\\u{7}"), "{e:?}");
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "empty"),
            ("exit", "'exit' needs a status"),
            ("exit 256", "'256' is not an exit status"),
            ("exit -1", "'-1' is not an exit status"),
            ("exit 007", "'007' is not an exit status"),
            ("exit 0 please", "unexpected 'please'"),
            ("exited 0", "'exited' is not an outcome"),
            ("killed", "'killed' needs a cause"),
            ("killed #pf", "'#pf' is not a cause"),
            ("killed #PF not-present read", "unexpected 'read'"),
            ("killed #PF read read", "unexpected 'read'"),
            ("killed #PF at", "'at' needs a value"),
            ("killed #PF at 0", "'0' is not a 0x-prefixed hex address"),
            ("killed #PF at 0x10000000000000000", "is not a 0x-prefixed hex address"),
            ("killed #PF in attic", "'attic' is not a region (null text data heap mmap stack guard unmapped kernel non-canonical)"),
            ("killed #PF at 0x0 in null", "unexpected 'in'"),
            ("killed #UD at 0x0", "unexpected 'at'"),
            ("exit 0; runs", "'runs' needs a value"),
            ("exit 0; runs 9", "'9' is not a run count (1..=8)"),
            ("exit 0; runs 2; runs 2", "'runs' given twice"),
            ("exit 0; vcpus", "'vcpus' needs a value"),
            ("exit 0; vcpus 0", "'0' is not a vCPU count (1..=32)"),
            ("exit 0; vcpus 33", "'33' is not a vCPU count (1..=32)"),
            ("exit 0; vcpus 2; vcpus 2", "'vcpus' given twice"),
            ("exit 0; twice", "'twice' is not an option"),
            ("exit 0;", "unexpected ';'"),
        ];
        for (text, message) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(message), "{text:?}: {e}");
            assert!(e.starts_with("bad expectation note"), "{e}");
        }
        assert!(Expectation::parse("exit 0 é".as_bytes())
            .unwrap_err()
            .to_string()
            .contains("not ASCII"));
    }

    #[test]
    fn outcomes_compare_part_by_part() {
        let null = pf(Access::Read, false, 0, Region::Null);
        assert!(parse("killed #PF read not-present at 0x0").unwrap().matches(&null));
        assert!(parse("killed #PF").unwrap().matches(&null));
        assert!(parse("killed #PF in null").unwrap().matches(&null));
        assert!(!parse("killed #PF write").unwrap().matches(&null));
        assert!(!parse("killed #PF protection").unwrap().matches(&null));
        assert!(!parse("killed #PF at 0x1").unwrap().matches(&null));
        assert!(!parse("killed #PF in text").unwrap().matches(&null));
        assert!(!parse("exit 0").unwrap().matches(&null));
        assert!(!parse("killed #GP").unwrap().matches(&null));
        assert!(parse("exit 3").unwrap().matches(&Outcome::Exited(3)));
        assert!(!parse("exit 3").unwrap().matches(&Outcome::Exited(0)));
        assert!(!parse("killed #UD").unwrap().matches(&Outcome::Exited(0)));
        let overflow = pf(Access::Write, false, 0x7fff_ffee_0000, Region::Guard);
        assert!(parse("killed stack-overflow").unwrap().matches(&overflow));
        assert!(!parse("killed stack-overflow").unwrap().matches(&null));
        let ud = Outcome::Killed { cause: Cause::InvalidOpcode, rip: 1 };
        assert!(parse("killed #UD").unwrap().matches(&ud));
        assert!(!parse("killed #DE").unwrap().matches(&ud));
        assert!(!parse("killed #UD").unwrap().matches(&Outcome::Killed {
            cause: Cause::Exception { vector: 6, int_vector: None },
            rip: 1
        }));
    }
}
