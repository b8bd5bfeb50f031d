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

use faultline_abi::bench::{Counts, Line, Measured};
use faultline_abi::syscall::counters::{self, COUNT as COUNTERS};

use crate::start::{Start, AT_FAULTLINE_KERNEL_ADDRESS};
use crate::sys::{self, SYS_FAULTLINE_COUNTERS, SYS_GETRUSAGE};

/// The kernel's counters since boot (indices: `sys::counters`); `Err(0)` if it gives fewer.
pub fn read_counters() -> Result<[u64; COUNTERS], u64> {
    let mut out = [0u64; COUNTERS];
    // SAFETY: the call writes at most COUNTERS words into `out`.
    let n = unsafe {
        sys::syscall(SYS_FAULTLINE_COUNTERS, [out.as_mut_ptr() as u64, COUNTERS as u64, 0, 0, 0, 0])?
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
        if start.aux(AT_FAULTLINE_KERNEL_ADDRESS).is_some() { Kernel::Faultline } else { Kernel::Linux }
    }
}

enum Before {
    Faultline([u64; COUNTERS]),
    Linux(u64),
}

/// One measurement window.
pub struct Probe {
    before: Before,
    tsc: u64,
}

impl Probe {
    /// Reads the counters, then the TSC. Exits the program with status 2 if the counters cannot
    /// be read (a faultline without `faultline_counters`).
    pub fn start(kernel: Kernel) -> Probe {
        let before = match kernel {
            Kernel::Faultline => Before::Faultline(read_counters().unwrap_or_else(|e| no_counters(e))),
            Kernel::Linux => Before::Linux(minor_faults().unwrap_or(0)),
        };
        Probe { before, tsc: tsc() }
    }

    /// Reads the TSC, then the counters, and prints the `BENCH` line.
    pub fn stop(self, workload: &str, pages: u64) {
        let ticks = tsc() - self.tsc;
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
                };
                Measured::Faultline(counts)
            }
            Before::Linux(b) => Measured::Linux { minflt: minor_faults().unwrap_or(b) - b },
        };
        crate::println!("{}", Line { workload, pages, measured, tsc: ticks });
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
