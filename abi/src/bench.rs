//! The `BENCH` line of the measuring programs (tests/programs/runtime/src/bench.rs), which
//! `cargo xtask bench` reads from the console of faultline and of Linux:
//!
//! ```text
//! BENCH <workload> pages=<n> faults=<f> hypercalls=<h> mmu_update=<c> entries=<e> mmuext=<m> uva=<u> [shootdowns=<s> ipis=<i>] tsc=<t> laps=<l>
//! BENCH <workload> pages=<n> minflt=<f> tsc=<t> laps=<l>                                   (on Linux)
//! ```
//! On faultline the counts come from `faultline_counters` ([`crate::syscall::counters`]):
//! `hypercalls` are those of every kind but the iret. On Linux `minflt` is the minor faults
//! `getrusage` reports. `shootdowns` (TLB flushes sent to other vCPUs) and `ipis` (event-channel
//! IPIs the kernel sent) are on the lines of the two-thread workloads (tests/programs/c/
//! bench_threads.c) only: absent, they were not measured. `tsc` is the ticks of the window. `laps` is how many lap
//! times follow on `LAPS` lines of their own (0 if absent; tests/programs/runtime/src/bench.rs).

use core::fmt;

/// The word that starts a line (anywhere in a console line: faultline prefixes a program's
/// output with `# <program>: `).
pub const WORD: &str = "BENCH";

/// The word that starts each line of lap times after a `BENCH` line with `laps=<n>`:
/// `LAPS <workload> <number of the line's first lap> <ticks> <ticks> ...`.
pub const LAPS_WORD: &str = "LAPS";

/// What faultline counted in a workload's window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Page faults from user mode.
    pub faults: u64,
    /// Hypercalls of every kind but the iret.
    pub hypercalls: u64,
    /// `mmu_update` calls.
    pub mmu_update: u64,
    /// `mmu_update` entries.
    pub entries: u64,
    /// `mmuext_op` calls.
    pub mmuext: u64,
    /// `update_va_mapping` calls.
    pub uva: u64,
    /// TLB shootdowns (`MMUEXT_*_MULTI` ops) sent, if the workload measured them.
    pub shootdowns: Option<u64>,
    /// Event-channel IPIs the kernel sent, if the workload measured them.
    pub ipis: Option<u64>,
}

impl Counts {
    /// Entries per mmu_update call (0 without calls).
    pub fn entries_per_call(&self) -> f64 {
        if self.mmu_update == 0 {
            0.0
        } else {
            self.entries as f64 / self.mmu_update as f64
        }
    }
}

/// What the kernel counted: faultline's counters, or Linux's minor faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measured {
    Faultline(Counts),
    Linux { minflt: u64 },
}

/// One `BENCH` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line<'a> {
    pub workload: &'a str,
    pub pages: u64,
    pub measured: Measured,
    pub tsc: u64,
    /// How many lap times the `LAPS` lines after this one give.
    pub laps: u64,
}

/// Why a `BENCH` line does not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineError<'a> {
    /// No workload name after the word.
    NoWorkload,
    /// A word that is not `key=<decimal>`.
    NotKeyValue(&'a str),
    /// A key the line needs is missing.
    Missing(&'static str),
}

impl fmt::Display for LineError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::NoWorkload => write!(f, "no workload after {WORD}"),
            LineError::NotKeyValue(word) => write!(f, "not key=<number>: {word:?}"),
            LineError::Missing(key) => write!(f, "no {key}="),
        }
    }
}

impl<'a> Line<'a> {
    /// The `BENCH` line in `text`, if there is one (`None`), and whether it reads.
    pub fn find(text: &'a str) -> Option<Result<Line<'a>, LineError<'a>>> {
        let (at, _) =
            text.match_indices(WORD).find(|(at, _)| text[at + WORD.len()..].starts_with(' '))?;
        Some(Line::parse(&text[at + WORD.len() + 1..]))
    }

    /// Parses what follows `BENCH `.
    fn parse(rest: &'a str) -> Result<Line<'a>, LineError<'a>> {
        let mut words = rest.split_whitespace();
        let workload = words.next().ok_or(LineError::NoWorkload)?;
        const KEYS: [&str; 12] = [
            "pages",
            "faults",
            "hypercalls",
            "mmu_update",
            "entries",
            "mmuext",
            "uva",
            "minflt",
            "tsc",
            "laps",
            "shootdowns",
            "ipis",
        ];
        let mut values: [Option<u64>; 12] = [None; 12];
        for word in words {
            let (key, value) = word.split_once('=').ok_or(LineError::NotKeyValue(word))?;
            let value = value.parse::<u64>().map_err(|_| LineError::NotKeyValue(word))?;
            if let Some(i) = KEYS.iter().position(|k| *k == key) {
                values[i] = Some(value);
            }
        }
        let optional = |key: &'static str| {
            let i = KEYS.iter().position(|k| *k == key).unwrap_or(0);
            values[i]
        };
        let get = |key: &'static str| optional(key).ok_or(LineError::Missing(key));
        let measured = if values[1].is_some() {
            Measured::Faultline(Counts {
                faults: get("faults")?,
                hypercalls: get("hypercalls")?,
                mmu_update: get("mmu_update")?,
                entries: get("entries")?,
                mmuext: get("mmuext")?,
                uva: get("uva")?,
                shootdowns: optional("shootdowns"),
                ipis: optional("ipis"),
            })
        } else {
            Measured::Linux { minflt: get("minflt")? }
        };
        let laps = get("laps").unwrap_or(0);
        Ok(Line { workload, pages: get("pages")?, measured, tsc: get("tsc")?, laps })
    }
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{WORD} {} pages={}", self.workload, self.pages)?;
        match self.measured {
            Measured::Faultline(c) => {
                write!(
                    f,
                    " faults={} hypercalls={} mmu_update={} entries={} mmuext={} uva={}",
                    c.faults, c.hypercalls, c.mmu_update, c.entries, c.mmuext, c.uva
                )?;
                if let Some(shootdowns) = c.shootdowns {
                    write!(f, " shootdowns={shootdowns}")?;
                }
                if let Some(ipis) = c.ipis {
                    write!(f, " ipis={ipis}")?;
                }
            }
            Measured::Linux { minflt } => write!(f, " minflt={minflt}")?,
        }
        write!(f, " tsc={} laps={}", self.tsc, self.laps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn lines_read_back() {
        let counts = Counts {
            faults: 63,
            hypercalls: 63,
            mmu_update: 63,
            entries: 1012,
            mmuext: 0,
            uva: 0,
            shootdowns: None,
            ipis: None,
        };
        let ours = Line {
            workload: "seq_write",
            pages: 1024,
            measured: Measured::Faultline(counts),
            tsc: 196786156,
            laps: 64,
        };
        let text = ours.to_string();
        assert_eq!(text, "BENCH seq_write pages=1024 faults=63 hypercalls=63 mmu_update=63 entries=1012 mmuext=0 uva=0 tsc=196786156 laps=64");
        let prefixed = std::format!("# bench_faults-1024: {text}");
        assert_eq!(Line::find(&prefixed), Some(Ok(ours)));
        let linux = Line {
            workload: "file_read",
            pages: 512,
            measured: Measured::Linux { minflt: 32 },
            tsc: 821632,
            laps: 0,
        };
        assert_eq!(Line::find(&linux.to_string()), Some(Ok(linux)));
        // The two-thread workloads add the shootdowns and IPIs (tests/programs/c/bench_threads.c
        // prints this line with printf: the same words in the same order).
        let threads = "BENCH munmap_2t pages=256 faults=0 hypercalls=512 mmu_update=256 entries=256 mmuext=256 uva=0 shootdowns=256 ipis=0 tsc=99 laps=0";
        let read = Line::find(threads).unwrap().unwrap();
        let Measured::Faultline(c) = read.measured else { panic!("{read:?}") };
        assert_eq!((c.shootdowns, c.ipis, c.mmuext), (Some(256), Some(0), 256));
        assert_eq!(read.to_string(), threads);
        assert_eq!(Line::find("BENCH x pages=1 tsc=2"), Some(Err(LineError::Missing("minflt"))));
        assert_eq!(Line::find("BENCH x pages=one"), Some(Err(LineError::NotKeyValue("pages=one"))));
        assert_eq!(Line::find("no bench here"), None);
    }
}
