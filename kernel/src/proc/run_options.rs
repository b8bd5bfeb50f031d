//! The command-line options of the test-program run: which programs, and each one's time and memory.
//!
//! `tests=all` (default) or `tests=name1,name2`; `test_time=5s` (or `500ms`) per run;
//! `test_memory=16M` (or `512K`, or bytes) of frames per run, page tables included;
//! `fault_around=32` pages mapped around a fault on a shared file page (0: off; a power of two up
//! to 64); `prefault=16` zeroed pages mapped ahead of a sequential zero-fill fault (0: off; up to
//! 64).

use core::fmt;

use super::archive::{Archive, Name};
use crate::mm::PAGE_SIZE;

pub const TIME_BUDGET_MS_DEFAULT: u64 = 5_000;
pub const MEMORY_LIMIT_BYTES_DEFAULT: u64 = 16 << 20;
/// Twice Linux's window (`fault_around_bytes` = 65536). Measured with `cargo xtask bench` (laps
/// of 16 pages under TCG), a file-backed fault costs about 74k ticks plus 2.8k per page it maps:
/// most of it is the round trip through Xen, which a wider window amortises. 16 pages cost 118k
/// a fault (0.53 to 0.57 of Linux's time per page), 32 about 80k per 16 pages (0.0313 faults
/// per page); 64 would save little more and map 64 entries a program may never read.
pub const FAULT_AROUND_PAGES_DEFAULT: u64 = 32;
/// 16 pages ahead: a sequential writer pays 1/17 of a batch per page (under the 0.07 the
/// performance issue asks for), and a sparse one that happens to hit the next page wastes at most
/// 16 zeroed frames, within its own limit.
pub const PREFAULT_PAGES_DEFAULT: u64 = 16;
/// The largest window either takes (`mm::address_space::WINDOW_PAGES_MAX`).
const WINDOW_PAGES_MAX: u64 = crate::mm::address_space::WINDOW_PAGES_MAX;

/// The longest time budget: its deadline, in nanoseconds of system time, must stay a positive
/// `s_time_t` (Xen's signed 64-bit time, public/xen.h) however long the kernel has been up, so
/// half of that range is left for the uptime.
pub const TIME_BUDGET_MS_MAX: u64 = (i64::MAX as u64 / 2) / 1_000_000;

/// Which programs run (in archive order either way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection<'c> {
    All,
    /// A comma-separated list of names, each checked.
    Names(&'c str),
}

impl<'c> Selection<'c> {
    pub fn selects(&self, name: &str) -> bool {
        match self {
            Selection::All => true,
            Selection::Names(list) => list.split(',').any(|n| n == name),
        }
    }

    /// Names asked for that the archive does not have (each deserves a `not ok` line).
    pub fn missing<'s>(&'s self, archive: &'s Archive<'_>) -> impl Iterator<Item = &'c str> + 's {
        let list = match self {
            Selection::All => "",
            Selection::Names(list) => list,
        };
        list.split(',').filter(|n| !n.is_empty()).filter(move |n| archive.find(n).is_none())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOptions<'c> {
    pub tests: Selection<'c>,
    pub time_budget_ms: u64,
    pub memory_limit_bytes: u64,
    pub fault_around_pages: u64,
    pub prefault_pages: u64,
}

impl Default for RunOptions<'_> {
    fn default() -> Self {
        RunOptions {
            tests: Selection::All,
            time_budget_ms: TIME_BUDGET_MS_DEFAULT,
            memory_limit_bytes: MEMORY_LIMIT_BYTES_DEFAULT,
            fault_around_pages: FAULT_AROUND_PAGES_DEFAULT,
            prefault_pages: PREFAULT_PAGES_DEFAULT,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunOptionError<'c> {
    BadName { name: &'c str },
    BadDuration { value: &'c str },
    BadSize { value: &'c str },
    BadWindow { key: &'static str, value: &'c str },
}

impl fmt::Display for RunOptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunOptionError::BadName { name } => {
                write!(f, "tests=: '{name}' is not a program name (tests=all or tests=a,b)")
            }
            RunOptionError::BadDuration { value } => {
                write!(
                    f,
                    "test_time=: '{value}' is not a duration (e.g. 5s, 500ms; at least 1ms, at most {TIME_BUDGET_MS_MAX}ms)"
                )
            }
            RunOptionError::BadSize { value } => {
                write!(f, "test_memory=: '{value}' is not a size (e.g. 16M, 512K, 65536; at least one page)")
            }
            RunOptionError::BadWindow { key: "fault_around", value } => write!(
                f,
                "fault_around=: '{value}' is not a window (0 to turn it off, or 2, 4, ... {WINDOW_PAGES_MAX} pages)"
            ),
            RunOptionError::BadWindow { key, value } => {
                write!(f, "{key}=: '{value}' is not a page count (0 to {WINDOW_PAGES_MAX})")
            }
        }
    }
}

impl<'c> RunOptions<'c> {
    /// Takes `key=value` if the key is one of ours: `Ok(true)`; `Ok(false)` if it is not ours.
    pub fn apply(&mut self, key: &str, value: &'c str) -> Result<bool, RunOptionError<'c>> {
        match key {
            "tests" => {
                self.tests = if value == "all" {
                    Selection::All
                } else {
                    if let Some(name) = value.split(',').find(|n| Name::new(n).is_err()) {
                        return Err(RunOptionError::BadName { name });
                    }
                    Selection::Names(value)
                };
            }
            "test_time" => {
                self.time_budget_ms =
                    parse_duration_ms(value).ok_or(RunOptionError::BadDuration { value })?;
            }
            "test_memory" => {
                self.memory_limit_bytes =
                    parse_size_bytes(value).ok_or(RunOptionError::BadSize { value })?;
            }
            "fault_around" => {
                let key = "fault_around";
                self.fault_around_pages = number(value)
                    .filter(|&n| n <= WINDOW_PAGES_MAX && (n == 0 || n.is_power_of_two()))
                    .ok_or(RunOptionError::BadWindow { key, value })?;
            }
            "prefault" => {
                let key = "prefault";
                self.prefault_pages = number(value)
                    .filter(|&n| n <= WINDOW_PAGES_MAX)
                    .ok_or(RunOptionError::BadWindow { key, value })?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn parse_duration_ms(value: &str) -> Option<u64> {
    let (digits, scale) = if let Some(d) = value.strip_suffix("ms") {
        (d, 1)
    } else if let Some(d) = value.strip_suffix('s') {
        (d, 1000)
    } else {
        return None;
    };
    number(digits)?.checked_mul(scale).filter(|ms| (1..=TIME_BUDGET_MS_MAX).contains(ms))
}

fn parse_size_bytes(value: &str) -> Option<u64> {
    let (digits, scale) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 1 << 10),
        b'M' | b'm' => (&value[..value.len() - 1], 1 << 20),
        b'G' | b'g' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    number(digits)?.checked_mul(scale).filter(|bytes| *bytes >= PAGE_SIZE)
}

fn number(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::archive::pack;

    #[test]
    fn options_parse_and_default() {
        let mut o = RunOptions::default();
        assert_eq!(o.apply("selftest", "none"), Ok(false));
        assert_eq!(o.apply("tests", "null_read,hello"), Ok(true));
        assert!(o.tests.selects("hello") && !o.tests.selects("hell"));
        assert_eq!(o.apply("tests", "all"), Ok(true));
        assert!(o.tests.selects("anything"));
        assert_eq!(o.apply("tests", "a,,b"), Err(RunOptionError::BadName { name: "" }));
        assert_eq!(o.apply("tests", "a b"), Err(RunOptionError::BadName { name: "a b" }));
        o.apply("test_time", "250ms").unwrap();
        assert_eq!(o.time_budget_ms, 250);
        o.apply("test_time", "2s").unwrap();
        assert_eq!(o.time_budget_ms, 2000);
        assert!(o.apply("test_time", "2").is_err());
        assert!(o.apply("test_time", "0s").is_err());
        // 2^58 ms is 2^64 * 15625 ns: it once wrapped to a zero deadline.
        assert_eq!(
            o.apply("test_time", "288230376151711744ms"),
            Err(RunOptionError::BadDuration { value: "288230376151711744ms" })
        );
        assert!(o.apply("test_time", "18446744073709551616ms").is_err());
        let (above, max) =
            (format!("{}ms", TIME_BUDGET_MS_MAX + 1), format!("{TIME_BUDGET_MS_MAX}ms"));
        let mut p = RunOptions::default();
        assert!(p.apply("test_time", &above).is_err());
        p.apply("test_time", &max).unwrap();
        assert!(p.time_budget_ms.checked_mul(1_000_000).is_some());
        o.apply("test_memory", "8M").unwrap();
        assert_eq!(o.memory_limit_bytes, 8 << 20);
        o.apply("test_memory", "512k").unwrap();
        assert_eq!(o.memory_limit_bytes, 512 << 10);
        assert!(o.apply("test_memory", "100").is_err());
        assert!(o.apply("test_memory", "99999999999999999G").is_err());
        assert!(RunOptionError::BadSize { value: "x" }.to_string().contains("16M"));
        assert_eq!((o.fault_around_pages, o.prefault_pages), (32, 16));
        o.apply("fault_around", "0").unwrap();
        o.apply("prefault", "5").unwrap();
        assert_eq!((o.fault_around_pages, o.prefault_pages), (0, 5));
        o.apply("fault_around", "64").unwrap();
        assert_eq!(o.fault_around_pages, 64);
        for bad in ["3", "128", "x", "", "99999999999999999999"] {
            let e = o.apply("fault_around", bad).unwrap_err();
            assert_eq!(e, RunOptionError::BadWindow { key: "fault_around", value: bad });
        }
        assert!(o.apply("prefault", "65").is_err());
        assert!(RunOptionError::BadWindow { key: "prefault", value: "65" }
            .to_string()
            .contains("0 to 64"));
    }

    #[test]
    fn missing_names_are_listed() {
        let bytes = pack(&[("hello", b"x"), ("null_read", b"y")]).unwrap();
        let archive = Archive::open(&bytes).unwrap();
        let s = Selection::Names("hello,nope,null_read,gone");
        assert_eq!(s.missing(&archive).collect::<Vec<_>>(), ["nope", "gone"]);
        assert_eq!(Selection::All.missing(&archive).count(), 0);
    }
}
