//! Measuring a workload the same way on faultline and on Linux (the bench programs,
//! `cargo xtask bench`).
//!
//! A [`Probe`] reads the counters and the TSC before the workload and again after it, and prints
//! one `BENCH` line the runner parses (`faultline_abi::bench`).
//!
//! On faultline the counts come from `faultline_counters` (0x66610001, docs/abi.md): `hypercalls`
//! are the hypercalls of every kind but the iret (a fault's iret, a syscall's, an event
//! upcall's: the console's events make the irets of a window vary by one or two on a DomU);
//! `faults` are the page faults the kernel took from user mode. On Linux (no faultline auxv entries) there are
//! no hypercalls to count; `minflt` is the minor faults `getrusage` reports. `tsc` is `rdtsc`
//! after an `lfence` at each end.
//!
//! A workload that goes page by page calls [`Probe::page_done`] after each page; every
//! [`LAP_PAGES`] pages it takes the TSC again. The line then ends in `laps=<n>`, and `n` lap
//! times follow on lines of their own (the kernel cuts a program's lines at 160 bytes):
//!
//! ```text
//! LAPS <workload> <first lap's number> <ticks> <ticks> ...
//! ```
//!
//! Under QEMU TCG the TSC follows the host's clock, so a host that runs other work stretches
//! whatever the guest is doing at that moment. A lap is short (one fault-around window, one
//! prefault run): the runner keeps, for each lap, the fastest of the runs, and adds those up.

use core::sync::atomic::{AtomicU64, Ordering};

use faultline_abi::bench::{Counts, Line, Measured, LAPS_WORD};
use faultline_abi::syscall::counters::{self, COUNT as COUNTERS};

use crate::start::{Start, AT_FAULTLINE_KERNEL_ADDRESS};
use crate::sys::{self, SYS_FAULTLINE_COUNTERS, SYS_GETRUSAGE};

/// The kernel's counters since boot (indices: `sys::counters`); `Err(0)` if it gives fewer.
pub fn read_counters() -> Result<[u64; COUNTERS], u64> {
    let mut out = [0u64; COUNTERS];
    // SAFETY: the call writes at most COUNTERS words into `out`.
    let n = unsafe {
        sys::syscall(
            SYS_FAULTLINE_COUNTERS,
            [out.as_mut_ptr() as u64, COUNTERS as u64, 0, 0, 0, 0],
        )?
    };
    if n < COUNTERS as u64 {
        return Err(0);
    }
    Ok(out)
}

/// Minor faults of this process so far (Linux's `getrusage(RUSAGE_SELF).ru_minflt`).
fn minor_faults() -> Result<u64, u64> {
    let mut usage = [0u64; 18];
    // SAFETY: struct rusage is 144 bytes; the kernel writes it into `usage`.
    unsafe { sys::syscall(SYS_GETRUSAGE, [0, usage.as_mut_ptr() as u64, 0, 0, 0, 0])? };
    Ok(usage[8])
}

/// The time stamp counter, after the instructions before it are done.
#[inline(always)]
pub fn tsc() -> u64 {
    // SAFETY: lfence and rdtsc have no memory effects; a PV guest's user mode may run rdtsc.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// Where the program runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Faultline,
    Linux,
}

impl Kernel {
    pub fn detect(start: &Start) -> Kernel {
        if start.aux(AT_FAULTLINE_KERNEL_ADDRESS).is_some() {
            Kernel::Faultline
        } else {
            Kernel::Linux
        }
    }
}

enum Before {
    Faultline([u64; COUNTERS]),
    Linux(u64),
}

/// Pages per lap: Linux's `fault_around_bytes` (64 KiB) and faultline's default window.
pub const LAP_PAGES: u64 = 16;
/// Laps a probe keeps; a longer workload prints none (`laps=0`).
const MAX_LAPS: usize = 512;
/// The lap times of the probe running now (one at a time: each `start` clears them). Static, not
/// in the probe: a 4 KiB probe would be copied onto stack pages the workload's window has not
/// touched yet, a fault counted in the window.
static LAPS: [AtomicU64; MAX_LAPS] = [const { AtomicU64::new(0) }; MAX_LAPS];
/// Lap times per `LAPS` line.
const LAPS_PER_LINE: usize = 10;

/// One measurement window.
pub struct Probe {
    before: Before,
    tsc: u64,
    /// The TSC at the end of the last lap.
    lap_tsc: u64,
    /// Laps taken; past MAX_LAPS the probe counts on but keeps none.
    count_laps: usize,
}

impl Probe {
    /// Reads the counters, then the TSC. Exits the program with status 2 if the counters cannot
    /// be read (a faultline without `faultline_counters`).
    pub fn start(kernel: Kernel) -> Probe {
        // Clearing touches the laps' pages before the window: no fault of their own inside it.
        LAPS.iter().for_each(|lap| lap.store(0, Ordering::Relaxed));
        let before = match kernel {
            Kernel::Faultline => {
                Before::Faultline(read_counters().unwrap_or_else(|e| no_counters(e)))
            }
            Kernel::Linux => Before::Linux(minor_faults().unwrap_or(0)),
        };
        let now = tsc();
        Probe { before, tsc: now, lap_tsc: now, count_laps: 0 }
    }

    /// Marks page `page` (0-based) of the workload done: ends a lap after every [`LAP_PAGES`].
    #[inline(always)]
    pub fn page_done(&mut self, page: u64) {
        if (page + 1).is_multiple_of(LAP_PAGES) {
            let now = tsc();
            if let Some(slot) = LAPS.get(self.count_laps) {
                slot.store(now - self.lap_tsc, Ordering::Relaxed);
            }
            self.count_laps += 1;
            self.lap_tsc = now;
        }
    }

    /// Reads the TSC, then the counters, and prints the `BENCH` line.
    pub fn stop(self, workload: &str, pages: u64) {
        let ticks = tsc() - self.tsc;
        let laps = if self.count_laps <= MAX_LAPS { &LAPS[..self.count_laps] } else { &[] };
        let measured = match self.before {
            Before::Faultline(b) => {
                let a = read_counters().unwrap_or_else(|e| no_counters(e));
                let d = |i: usize| a[i] - b[i];
                let counts = Counts {
                    faults: d(counters::USER_FAULTS),
                    hypercalls: d(counters::HYPERCALLS) - d(counters::IRETS),
                    mmu_update: d(counters::MMU_UPDATE_CALLS),
                    entries: d(counters::MMU_UPDATE_ENTRIES),
                    mmuext: d(counters::MMUEXT_CALLS),
                    uva: d(counters::UPDATE_VA_MAPPING_CALLS),
                    // One thread: nothing to shoot down (tests/programs/c/bench_threads.c
                    // measures them).
                    shootdowns: None,
                    ipis: None,
                };
                Measured::Faultline(counts)
            }
            Before::Linux(b) => Measured::Linux { minflt: minor_faults().unwrap_or(b) - b },
        };
        crate::println!(
            "{}",
            Line { workload, pages, measured, tsc: ticks, laps: laps.len() as u64 }
        );
        for (line, chunk) in laps.chunks(LAPS_PER_LINE).enumerate() {
            crate::println!("{LAPS_WORD} {workload} {}{}", line * LAPS_PER_LINE, Spaced(chunk));
        }
    }
}

/// Lap times, each after a space.
struct Spaced<'a>(&'a [AtomicU64]);

impl core::fmt::Display for Spaced<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|n| write!(f, " {}", n.load(Ordering::Relaxed)))
    }
}

fn no_counters(errno: u64) -> ! {
    crate::eprintln!(
        "bench: faultline_counters ({SYS_FAULTLINE_COUNTERS:#x}) failed (errno {errno}): this kernel cannot be measured"
    );
    sys::exit(2)
}

/// The number after the last `-` of argv[0]'s file name (`bench_faults-1024` -> 1024), if any:
/// the runner sets a program's size through the name it packs it under.
pub fn size_from_name(start: &Start) -> Option<u64> {
    let name = start.arg(0)?;
    let base = name.rsplit(|&b| b == b'/').next()?;
    let digits = base.rsplit(|&b| b == b'-').next()?;
    if digits.is_empty() || digits.len() == base.len() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}
