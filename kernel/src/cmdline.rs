//! The guest command line: `key=value` words, parsed strictly so that typos are reported.

use core::fmt;

use crate::proc::run_options::{RunOptionError, RunOptions};
pub use crate::testing::choice::SelfTest;

/// What `trace=` asks the kernel to print (see `crate::trace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trace {
    /// Nothing (the default).
    Off,
    /// `trace=fault`: every step of the first user fault that needs new page tables.
    Fault,
}

impl Trace {
    pub const ALL: [(&'static str, Trace); 1] = [("fault", Trace::Fault)];
}

/// What the command line asked for. Without `selftest=`, the memory tests run and then the
/// test programs of the boot module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    pub selftest: SelfTest,
    /// Whether `selftest=` was given (then only that self-test runs).
    pub selftest_chosen: bool,
    pub run: RunOptions<'a>,
    pub trace: Trace,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            selftest: SelfTest::Mm,
            selftest_chosen: false,
            run: RunOptions::default(),
            trace: Trace::Off,
        }
    }
}

/// A command line this kernel cannot follow; the words are borrowed from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdlineError<'a> {
    UnknownOption(&'a str),
    MissingValue(&'a str),
    UnknownSelfTest(&'a str),
    UnknownTrace(&'a str),
    Run(RunOptionError<'a>),
    Inject(crate::testing::inject::InjectError<'a>),
}

impl fmt::Display for CmdlineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOption(word) => {
                write!(f, "unknown option '{word}' (known: selftest=<name>, tests=all|a,b, test_time=5s, test_memory=16M, fault_around=32, prefault=16, trace=fault, inject=POINT:nth=N[@program], inject_seed=S)")
            }
            Self::Run(e) => write!(f, "{e}"),
            Self::Inject(e) => write!(f, "{e}"),
            Self::MissingValue(key) => write!(f, "option '{key}' needs a value ({key}=...)"),
            Self::UnknownSelfTest(name) => {
                write!(f, "unknown self-test '{name}' (known:")?;
                for (known, _) in SelfTest::ALL {
                    write!(f, " {known}")?;
                }
                write!(f, ")")
            }
            Self::UnknownTrace(what) => {
                write!(f, "unknown trace '{what}' (known:")?;
                for (known, _) in Trace::ALL {
                    write!(f, " {known}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Parses the whole command line; the first word that cannot be followed is the error.
pub fn parse(cmdline: &str) -> Result<Options<'_>, CmdlineError<'_>> {
    let mut options = Options::default();
    for word in cmdline.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((key, value)) => (key, value),
            None => (word, ""),
        };
        match key {
            "selftest" => {
                if value.is_empty() {
                    return Err(CmdlineError::MissingValue(key));
                }
                options.selftest = SelfTest::ALL
                    .iter()
                    .find(|(name, _)| *name == value)
                    .map(|(_, t)| *t)
                    .ok_or(CmdlineError::UnknownSelfTest(value))?;
                options.selftest_chosen = true;
            }
            "trace" => {
                if value.is_empty() {
                    return Err(CmdlineError::MissingValue(key));
                }
                options.trace = Trace::ALL
                    .iter()
                    .find(|(name, _)| *name == value)
                    .map(|(_, t)| *t)
                    .ok_or(CmdlineError::UnknownTrace(value))?;
            }
            "inject" | "inject_seed" => crate::testing::inject::Config::parse(word)
                .map(drop)
                .map_err(CmdlineError::Inject)?,
            _ => match options.run.apply(key, value) {
                Ok(true) => {}
                Ok(false) => return Err(CmdlineError::UnknownOption(word)),
                Err(e) => return Err(CmdlineError::Run(e)),
            },
        }
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_defaults() {
        assert_eq!(parse(""), Ok(Options::default()));
        assert_eq!(parse("   "), Ok(Options::default()));
    }

    #[test]
    fn selftests_by_name() {
        for (name, t) in SelfTest::ALL {
            assert_eq!(parse(&format!("selftest={name}")).unwrap().selftest, t);
            assert_eq!(t.name(), name);
        }
    }

    #[test]
    fn run_options_travel_with_the_self_test_choice() {
        let o = parse("tests=hello,null_read test_time=2s").unwrap();
        assert!(!o.selftest_chosen);
        assert!(o.run.tests.selects("hello") && !o.run.tests.selects("other"));
        assert_eq!(o.run.time_budget_ms, 2000);
        assert!(parse("selftest=int3").unwrap().selftest_chosen);
        assert!(matches!(parse("test_time=soon"), Err(CmdlineError::Run(_))));
    }

    #[test]
    fn errors_name_the_bad_word() {
        assert_eq!(parse("selftest=nonsense"), Err(CmdlineError::UnknownSelfTest("nonsense")));
        assert_eq!(parse("selftest="), Err(CmdlineError::MissingValue("selftest")));
        assert_eq!(parse("selftest=none bogus=1"), Err(CmdlineError::UnknownOption("bogus=1")));
        let msg = CmdlineError::UnknownSelfTest("x").to_string();
        assert!(msg.contains("int3") && msg.contains("panic"), "{msg}");
    }

    #[test]
    fn inject_words_are_checked_here_and_taken_by_the_injector() {
        assert!(parse("inject=frame:nth=3@hello inject_seed=7 tests=hello").is_ok());
        assert!(matches!(
            parse("inject=frames:nth=1"),
            Err(CmdlineError::Inject(crate::testing::inject::InjectError::UnknownPoint("frames")))
        ));
        let msg = parse("inject=frame:nth=0").unwrap_err().to_string();
        assert!(msg.contains("bad rule 'nth=0'"), "{msg}");
    }

    #[test]
    fn trace_fault_is_the_one_trace() {
        assert_eq!(parse("").unwrap().trace, Trace::Off);
        let o = parse("trace=fault tests=hello").unwrap();
        assert_eq!(o.trace, Trace::Fault);
        assert!(!o.selftest_chosen && o.run.tests.selects("hello"));
        assert_eq!(parse("trace=faults"), Err(CmdlineError::UnknownTrace("faults")));
        assert_eq!(parse("trace="), Err(CmdlineError::MissingValue("trace")));
        assert_eq!(parse("trace"), Err(CmdlineError::MissingValue("trace")));
        let msg = CmdlineError::UnknownTrace("all").to_string();
        assert_eq!(msg, "unknown trace 'all' (known: fault)");
        assert!(CmdlineError::UnknownOption("x").to_string().contains("trace=fault"));
    }
}
