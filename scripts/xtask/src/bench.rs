//! `cargo xtask bench`: the page-fault workloads of tests/programs (`bench_faults`, `bench_text`,
//! and the two-thread `c_bench_threads`) on faultline and in a Linux PV DomU, in turn, in one
//! boot; the counts, the ratios and a plot.
//!
//! Every workload prints one `BENCH` line (tests/programs/runtime/src/bench.rs). On faultline the
//! line carries the kernel's counters (faults, hypercalls but the iret, mmu_update calls and
//! entries): deterministic, so the boot tests assert them. On Linux it carries the minor faults.
//! Both carry the TSC ticks of the workload, and of its laps of 16 pages (`LAPS` lines); a time
//! is only ever shown as the ratio of faultline's to Linux's in the same boot. A kernel's time for
//! a workload is the sum, over its laps, of each lap's fastest run ([`fastest`]): under TCG the
//! TSC follows the host's clock, and a host busy with other work stretches some laps of some
//! runs, never the same lap in every run.
//!
//! One boot: the Linux dom0 (scripts/dom0) runs, one after another, faultline (its kernel, the
//! bench archive as its ramdisk) and Debian's Linux 6.1 `vmlinuz` (the dom0's own kernel package)
//! with a small initramfs whose `/init` runs the same static binaries, prints their lines on hvc0
//! and powers off; `--runs N` times each, alternating. Each run also boots both kernels once more
//! with 2 vCPUs for the two-thread workloads ([`THREAD_WORKLOADS`]; QEMU has 2 CPUs for the whole
//! boot, the other guests keep 1 vCPU). Then faultline once more per fault-around window of
//! [`SWEEP`] (the counts of the file-backed workloads against the window).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use faultline_abi::archive::pack;
use faultline_abi::bench as bench_line;
use faultline_abi::verdict;

use crate::error::{Context, Error, Result};
use crate::kernel::{build_kernel, Profile};
use crate::packages::{Lock, HOST_SUITE};
use crate::run::{run, Mode, Payload, RunOptions, RunOutcome};
use crate::xen::XenVersion;
use crate::xl::{render_cfg, GuestConfig, XlConsole};
use crate::{cpio, dom0_image, workspace};

/// Pages per workload of a full run.
pub const FULL_PAGES: u64 = 4096;
/// Pages per workload with `--quick` (and in the boot tests).
pub const QUICK_PAGES: u64 = 1024;
/// The workloads, in the order of the table.
pub const WORKLOADS: [&str; 9] = [
    "seq_write",
    "rand_write",
    "sparse_write",
    "retouch",
    "munmap",
    "file_read",
    "text_storm",
    "cow_write",
    "populate",
];
/// The two-thread workloads (tests/programs/c/bench_threads.c), each on its own 2-vCPU guests, in
/// the order of their table.
pub const THREAD_WORKLOADS: [&str; 4] = ["fault_1t", "fault_2t", "munmap_1t", "munmap_2t"];
/// The vCPUs of the two-thread guests (and QEMU's CPUs for the bench boot).
pub const THREAD_VCPUS: u32 = 2;
/// The fault-around windows of the sweep (the default comes from the main runs).
pub const SWEEP: [u32; 5] = [0, 4, 16, 32, 64];
/// The default fault-around window (kernel/src/proc/run_options.rs: `fault_around=32`).
pub const DEFAULT_WINDOW: u32 = 32;
/// Runs of bench_text per boot (its note says `runs 4`; Linux's /init runs it as often).
const TEXT_RUNS: u32 = 4;

/// faultline's guest: memory, and the program limit inside it.
const FAULTLINE_MIB: u32 = 96;
const FAULTLINE_CMDLINE: &str = "test_memory=64M test_time=60s";
/// The Linux guest needs 128 MiB (scripts/dom0/README.md), and the dom0 256 MiB: xl inflates
/// the bzImage in dom0's memory.
const LINUX_MIB: u32 = 128;
const DOM0_MIB: u32 = 256;
/// Added to both guests' xl config. Xen's default for a PV guest emulates `rdtsc` (a trap into
/// Xen, ~17k ticks under TCG: measured, `rdtsc` 1000 times) unless the host's TSC is invariant,
/// which QEMU's TCG CPU does not claim; the bench reads the TSC once per lap of 16 pages.
/// "native": never emulate (xl.cfg(5), `tsc_mode`).
const TSC_MODE: &str = "tsc_mode = \"native\"\n";
const LINUX_CMDLINE: &str = "console=hvc0 quiet";

/// What `cargo xtask bench` does.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// faultline and Linux runs, alternating (best of these).
    pub runs: u32,
    /// Small workloads (QUICK_PAGES), no sweep.
    pub quick: bool,
    /// Run the Linux guests too.
    pub linux: bool,
    /// Where results.md, results.json and faults.svg go.
    pub out: PathBuf,
    pub quiet: bool,
    /// The command line, for the report's header.
    pub command: String,
}

/// One `BENCH` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub workload: String,
    pub pages: u64,
    /// faultline's counts (None on Linux).
    pub counts: Option<Counts>,
    /// Linux's minor faults (None on faultline).
    pub minflt: Option<u64>,
    pub tsc: u64,
    /// The ticks of each lap of 16 pages (from its `LAPS` lines).
    pub laps: Vec<u64>,
    /// How many laps the `BENCH` line announced.
    pub count_laps: u64,
}

/// What faultline counted in a workload's window (the `BENCH` line is faultline-abi's).
pub use faultline_abi::bench::Counts;

/// Parses the `BENCH` line in `line` (anywhere in it: faultline prefixes `# <program>: `).
pub fn parse_line(line: &str) -> Option<Result<Sample>> {
    let parsed = match bench_line::Line::find(line)? {
        Ok(parsed) => parsed,
        Err(e) => return Some(Err(Error::new(format!("{e} in {line:?}")))),
    };
    let (counts, minflt) = match parsed.measured {
        bench_line::Measured::Faultline(counts) => (Some(counts), None),
        bench_line::Measured::Linux { minflt } => (None, Some(minflt)),
    };
    Some(Ok(Sample {
        workload: parsed.workload.to_string(),
        pages: parsed.pages,
        counts,
        minflt,
        tsc: parsed.tsc,
        laps: Vec::new(),
        count_laps: parsed.laps,
    }))
}

/// Every `BENCH` line of a console log, each with the laps of the `LAPS` lines after it.
pub fn parse_samples(log: &str) -> Result<Vec<Sample>> {
    let mut samples: Vec<Sample> = Vec::new();
    for line in log.lines() {
        if let Some(sample) = parse_line(line) {
            samples.push(sample?);
            continue;
        }
        let Some(at) = line
            .find(bench_line::LAPS_WORD)
            .filter(|&at| line[at + bench_line::LAPS_WORD.len()..].starts_with(' '))
        else {
            continue;
        };
        let bad = || Error::new(format!("a bad LAPS line: {line:?}"));
        let mut words = line[at + bench_line::LAPS_WORD.len()..].split_whitespace();
        let workload = words.next().ok_or_else(bad)?;
        let first: usize = words.next().and_then(|w| w.parse().ok()).ok_or_else(bad)?;
        let sample = samples
            .iter_mut()
            .rev()
            .find(|s| s.workload == workload)
            .filter(|s| s.laps.len() == first)
            .ok_or_else(|| Error::new(format!("LAPS out of place: {line:?}")))?;
        for word in words {
            sample.laps.push(word.parse().map_err(|_| bad())?);
        }
    }
    if let Some(s) = samples.iter().find(|s| s.laps.len() as u64 != s.count_laps) {
        return Err(Error::new(format!(
            "{}: {} laps announced, {} read",
            s.workload,
            s.count_laps,
            s.laps.len()
        )));
    }
    Ok(samples)
}

/// A kernel's time for one workload over its runs: with the same number of laps in every run,
/// the sum of each lap's fastest run (a lap is one fault-around window or less, short enough
/// that the host's other work leaves it alone in some run); without laps, the fastest run.
pub fn fastest(runs: &[&Sample]) -> Option<u64> {
    let first = runs.first()?;
    let fastest_run = runs.iter().map(|s| s.tsc).min();
    if first.laps.is_empty() || runs.iter().any(|s| s.laps.len() != first.laps.len()) {
        return fastest_run;
    }
    let laps = (0..first.laps.len()).map(|i| runs.iter().map(|s| s.laps[i]).min().unwrap_or(0));
    Some(laps.sum())
}

/// The name bench_faults runs under for `pages` pages (it reads its size from it).
pub fn faults_program(pages: u64) -> String {
    format!("bench_faults-{pages}")
}

/// The name the two-thread workloads run under for `pages` pages (they read their size from it).
pub fn threads_program(pages: u64) -> String {
    format!("c_bench_threads-{pages}")
}

/// The bench programs, built with the catalogue (tests/programs/build.sh), as
/// (name to run under, bytes); the two-thread one last.
fn programs(pages: u64, quiet: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let catalogue = crate::programs::build_archive(&[], quiet)?;
    let bin = catalogue.with_file_name("bin");
    let read = |name: &str| {
        let path = bin.join(name);
        std::fs::read(&path).context(|| format!("cannot read {}", path.display()))
    };
    Ok(vec![
        (faults_program(pages), read("bench_faults")?),
        ("bench_text".into(), read("bench_text")?),
        (threads_program(pages), read("c_bench_threads")?),
    ])
}

/// The bench archive for `pages` (faultline's ramdisk): `target/bench/bench-<pages>.tar`.
pub fn bench_archive(pages: u64, quiet: bool) -> Result<PathBuf> {
    let programs = programs(pages, quiet)?;
    let refs: Vec<(&str, &[u8])> =
        programs.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())).collect();
    let bytes = pack(&refs).map_err(|e| Error::new(format!("packing the bench archive: {e}")))?;
    let dir = workspace::target_dir().join("bench");
    std::fs::create_dir_all(&dir).context(|| format!("cannot create {}", dir.display()))?;
    // A file of its own per call: boots in other threads may be reading an earlier one.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("bench-{pages}-{}-{n}.tar", std::process::id()));
    std::fs::write(&path, bytes).context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// faultline's guest command line for the bench, with `extra` (e.g. `fault_around=0`).
pub fn faultline_cmdline(pages: u64, extra: &str) -> String {
    format!("tests={},bench_text {FAULTLINE_CMDLINE} {extra}", faults_program(pages))
        .trim()
        .to_string()
}

/// faultline's guest command line for the two-thread workloads.
pub fn threads_cmdline(pages: u64) -> String {
    format!("tests={} {FAULTLINE_CMDLINE}", threads_program(pages))
}

/// The bench on faultline alone, on the fast dom0 path: the counts (the boot tests use this).
pub fn run_dom0(
    kernel: Option<PathBuf>,
    pages: u64,
    extra: &str,
) -> Result<(RunOutcome, Vec<Sample>)> {
    run_dom0_with(kernel, pages, faultline_cmdline(pages, extra), 1)
}

/// The two-thread workloads on faultline alone, on the fast dom0 path with 2 vCPUs.
pub fn run_dom0_threads(kernel: Option<PathBuf>, pages: u64) -> Result<(RunOutcome, Vec<Sample>)> {
    run_dom0_with(kernel, pages, threads_cmdline(pages), THREAD_VCPUS)
}

fn run_dom0_with(
    kernel: Option<PathBuf>,
    pages: u64,
    cmdline: String,
    vcpus: u32,
) -> Result<(RunOutcome, Vec<Sample>)> {
    let archive = bench_archive(pages, true)?;
    let outcome = run(&RunOptions {
        mode: Mode::Dom0,
        kernel,
        cmdline,
        vcpus,
        memory_mib: FAULTLINE_MIB,
        module: Some(archive.clone()),
        timeout: Duration::from_secs(180),
        quiet: true,
        ..RunOptions::default()
    });
    let _ = std::fs::remove_file(&archive);
    let outcome = outcome?;
    let samples = parse_samples(&outcome.guest_log)?;
    Ok((outcome, samples))
}

/// Which guest of the boot is which.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Guest {
    /// faultline with this fault-around window.
    Faultline(u32),
    Linux,
    /// faultline with 2 vCPUs, the two-thread workloads.
    FaultlineThreads,
    /// Linux with 2 vCPUs, the two-thread workloads.
    LinuxThreads,
}

impl Guest {
    /// Whether this guest runs the two-thread workloads (and nothing else).
    fn threads(&self) -> bool {
        matches!(self, Guest::FaultlineThreads | Guest::LinuxThreads)
    }
}

/// The word on the Linux guest's command line that makes its /init run the two-thread program
/// alone.
const LINUX_THREADS_WORD: &str = "bench=threads";

/// The cpio of the Linux guest's initramfs: busybox, the bench programs and `/init`. With
/// [`LINUX_THREADS_WORD`] on its command line, /init runs the two-thread program (the last of
/// `programs`) alone; without, the others.
fn linux_initramfs(busybox: &[u8], programs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut init = format!(
        "#!/bin/busybox sh\n\
         # The bench's Linux guest (scripts/xtask/src/bench.rs): run each program, print its\n\
         # BENCH lines on hvc0, power off.\n\
         /bin/busybox mount -t proc proc /proc\n\
         echo \"bench-linux: Linux $(/bin/busybox uname -r), $(/bin/busybox nproc) CPUs\"\n\
         result={}\n\
         if /bin/busybox grep -qw {LINUX_THREADS_WORD} /proc/cmdline; then threads=1; else threads=0; fi\n",
        verdict::Verdict::Success.word()
    );
    let threads = programs.last().map(|(name, _)| name.clone()).unwrap_or_default();
    for (name, _) in programs {
        let times = if name == "bench_text" { TEXT_RUNS } else { 1 };
        let when = if *name == threads { 1 } else { 0 };
        for _ in 0..times {
            let _ = writeln!(
                init,
                "[ $threads = {when} ] && {{ /bench/{name} || {{ echo \"bench-linux: {name} failed with status $?\"; result={}; }}; }}",
                verdict::Verdict::Failure.word()
            );
        }
    }
    // The verdict line the runner reads from every guest, faultline or Linux.
    let _ = writeln!(init, "echo \"{}$result\"\n/bin/busybox poweroff -f", verdict::RESULT_PREFIX);
    let mut writer = cpio::Writer::after(Vec::new());
    for dir in ["bin", "dev", "proc", "bench"] {
        writer.directory(dir);
    }
    writer.char_device("dev/console", 5, 1);
    writer.executable("bin/busybox", busybox);
    writer.executable("init", init.as_bytes());
    for (name, bytes) in programs {
        writer.executable(&format!("bench/{name}"), bytes);
    }
    writer.finish()
}

/// The Debian 12 package folder scripts/dom0/build.sh unpacked for `prefix` (`linux-image-`,
/// `busybox-static`): `$FAULTLINE_CACHE/pkgs/<name>_<version>`.
fn unpacked(prefix: &str) -> Result<(PathBuf, String)> {
    let lock = Lock::load()?;
    let pin = lock
        .pins()
        .find(|pin| pin.suite == HOST_SUITE && pin.package.starts_with(prefix))
        .ok_or_else(|| Error::new(format!("scripts/packages.lock pins no {prefix}* package")))?;
    let dir = workspace::cache_dir().join("pkgs").join(format!(
        "{}_{}",
        pin.package,
        pin.version.replace(':', "%3a")
    ));
    Ok((dir, format!("{} {}", pin.package, pin.version)))
}

/// The files of the boot and its guest list.
struct Plan {
    payload: Payload,
    guests: Vec<Guest>,
    linux_version: Option<String>,
}

fn plan(kernel: &Path, options: &BenchOptions, pages: u64) -> Result<Plan> {
    let programs = programs(pages, options.quiet)?;
    let refs: Vec<(&str, &[u8])> =
        programs.iter().map(|(name, bytes)| (name.as_str(), bytes.as_slice())).collect();
    let archive = pack(&refs).map_err(|e| Error::new(format!("packing the bench archive: {e}")))?;
    let kernel_bytes =
        std::fs::read(kernel).context(|| format!("cannot read {}", kernel.display()))?;

    let mut guests = Vec::new();
    for _ in 0..options.runs {
        guests.push(Guest::Faultline(DEFAULT_WINDOW));
        if options.linux {
            guests.push(Guest::Linux);
        }
        guests.push(Guest::FaultlineThreads);
        if options.linux {
            guests.push(Guest::LinuxThreads);
        }
    }
    if !options.quick {
        guests.extend(SWEEP.iter().filter(|&&w| w != DEFAULT_WINDOW).map(|&w| Guest::Faultline(w)));
    }

    let mut writer = cpio::Writer::after(Vec::new());
    writer.directory("payload");
    writer.directory("payload/fl");
    writer.file("payload/fl/faultline", &kernel_bytes);
    writer.file("payload/fl/bench.tar", &archive);
    let timeout = 300;
    let mut list = String::new();
    let mut windows: Vec<u32> = guests
        .iter()
        .filter_map(|g| if let Guest::Faultline(w) = g { Some(*w) } else { None })
        .collect();
    windows.sort_unstable();
    windows.dedup();
    for window in &windows {
        let extra = faultline_cmdline(pages, &format!("fault_around={window}"));
        let cfg = render_cfg(&GuestConfig {
            name: "faultline",
            kernel: "faultline",
            ramdisk: Some("bench.tar"),
            memory_mib: FAULTLINE_MIB,
            vcpus: 1,
            cmdline: &extra,
        })? + TSC_MODE;
        writer.file(&format!("payload/fl/fa{window}.cfg"), cfg.as_bytes());
    }
    let threads_cfg = render_cfg(&GuestConfig {
        name: "faultline-threads",
        kernel: "faultline",
        ramdisk: Some("bench.tar"),
        memory_mib: FAULTLINE_MIB,
        vcpus: THREAD_VCPUS,
        cmdline: &threads_cmdline(pages),
    })? + TSC_MODE;
    writer.file("payload/fl/threads.cfg", threads_cfg.as_bytes());
    let mut linux_version = None;
    if options.linux {
        let (kdir, kversion) = unpacked("linux-image-")?;
        let vmlinuz = std::fs::read_dir(kdir.join("boot"))
            .context(|| format!("cannot list {}/boot", kdir.display()))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-"))
            })
            .ok_or_else(|| Error::new(format!("no vmlinuz in {}/boot", kdir.display())))?;
        let (bdir, _) = unpacked("busybox-static")?;
        let busybox_path = bdir.join("bin/busybox");
        let busybox = std::fs::read(&busybox_path)
            .context(|| format!("cannot read {}", busybox_path.display()))?;
        let vmlinuz_bytes =
            std::fs::read(&vmlinuz).context(|| format!("cannot read {}", vmlinuz.display()))?;
        writer.directory("payload/linux");
        writer.file("payload/linux/vmlinuz", &vmlinuz_bytes);
        writer.file("payload/linux/initrd", &linux_initramfs(&busybox, &programs));
        let cfg = render_cfg(&GuestConfig {
            name: "linux-bench",
            kernel: "vmlinuz",
            ramdisk: Some("initrd"),
            memory_mib: LINUX_MIB,
            vcpus: 1,
            cmdline: LINUX_CMDLINE,
        })? + TSC_MODE;
        writer.file("payload/linux/linux.cfg", cfg.as_bytes());
        let threads_cmdline = format!("{LINUX_CMDLINE} {LINUX_THREADS_WORD}");
        let cfg = render_cfg(&GuestConfig {
            name: "linux-bench-threads",
            kernel: "vmlinuz",
            ramdisk: Some("initrd"),
            memory_mib: LINUX_MIB,
            vcpus: THREAD_VCPUS,
            cmdline: &threads_cmdline,
        })? + TSC_MODE;
        writer.file("payload/linux/linux-threads.cfg", cfg.as_bytes());
        linux_version = Some(kversion);
    }
    for guest in &guests {
        let cfg = match guest {
            Guest::Faultline(w) => format!("/payload/fl/fa{w}.cfg"),
            Guest::Linux => "/payload/linux/linux.cfg".to_string(),
            Guest::FaultlineThreads => "/payload/fl/threads.cfg".to_string(),
            Guest::LinuxThreads => "/payload/linux/linux-threads.cfg".to_string(),
        };
        let _ = writeln!(list, "{cfg} {timeout} {}", XlConsole::Log.as_str());
    }
    writer.file("payload/guests", list.as_bytes());
    let description = format!(
        "{} guests: faultline ({FAULTLINE_MIB} MiB){}, each with 1 and with {THREAD_VCPUS} vCPUs, x{}{}",
        guests.len(),
        if options.linux { format!(" and Linux ({LINUX_MIB} MiB) in turn") } else { String::new() },
        options.runs,
        if options.quick {
            String::new()
        } else {
            ", then faultline per fault-around window".into()
        }
    );
    Ok(Plan {
        payload: Payload {
            cpio: writer.finish(),
            dom0_mib: if options.linux { DOM0_MIB } else { 192 },
            guest_mib: if options.linux { LINUX_MIB } else { FAULTLINE_MIB },
            description,
        },
        guests,
        linux_version,
    })
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub pages: u64,
    pub counts: Counts,
    pub faultline_tsc_per_page: f64,
    pub linux_tsc_per_page: Option<f64>,
    pub linux_faults_per_page: Option<f64>,
    /// The ratio of the fastest whole runs (what the bench reported before laps).
    pub ratio_of_fastest_runs: Option<f64>,
}

impl Row {
    pub fn faults_per_page(&self) -> f64 {
        self.counts.faults as f64 / self.pages as f64
    }
    pub fn hypercalls_per_page(&self) -> f64 {
        self.counts.hypercalls as f64 / self.pages as f64
    }
    pub fn ratio(&self) -> Option<f64> {
        self.linux_tsc_per_page.map(|linux| self.faultline_tsc_per_page / linux)
    }
}

/// What a bench run measured.
#[derive(Clone, Debug)]
pub struct Report {
    pub rows: Vec<Row>,
    /// The two-thread workloads ([`THREAD_WORKLOADS`]), on 2-vCPU guests.
    pub thread_rows: Vec<Row>,
    /// (window, workload, hypercalls per page, faults per page).
    pub sweep: Vec<(u32, String, f64, f64)>,
    pub header: Vec<(String, String)>,
    pub command: String,
    pub elapsed: Duration,
}

/// A guest's samples must hold each of its workloads once (bench_text: TEXT_RUNS times).
fn check_guest(samples: &[Sample], what: &str, workloads: &[&str]) -> Result<()> {
    for &workload in workloads {
        let n = samples.iter().filter(|s| s.workload == workload).count();
        let want = if workload == "text_storm" { TEXT_RUNS as usize } else { 1 };
        if n != want {
            return Err(Error::new(format!("{what}: {n} BENCH lines for {workload}, want {want}")));
        }
    }
    Ok(())
}

/// Folds the guests' samples of `workloads` into rows: faultline's counts must agree across runs.
fn rows(workloads: &[&str], faultline: &[Sample], linux: &[Sample]) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for &workload in workloads {
        let ours: Vec<&Sample> = faultline.iter().filter(|s| s.workload == workload).collect();
        let first =
            ours.first().ok_or_else(|| Error::new(format!("no faultline sample of {workload}")))?;
        let counts = first.counts.ok_or_else(|| Error::new(format!("{workload}: no counts")))?;
        if let Some(other) =
            ours.iter().find(|s| s.counts != Some(counts) || s.pages != first.pages)
        {
            return Err(Error::new(format!(
                "{workload}: faultline's counts differ between runs: {:?} and {:?}",
                first, other
            )));
        }
        let best = fastest(&ours).unwrap_or(0);
        let theirs: Vec<&Sample> = linux.iter().filter(|s| s.workload == workload).collect();
        let linux_best = fastest(&theirs);
        let linux_faults = theirs.iter().filter_map(|s| s.minflt).min();
        let run = |samples: &[&Sample]| samples.iter().map(|s| s.tsc).min();
        let pages = first.pages as f64;
        rows.push(Row {
            name: workload.to_string(),
            pages: first.pages,
            counts,
            faultline_tsc_per_page: best as f64 / pages,
            linux_tsc_per_page: linux_best.map(|t| t as f64 / pages),
            linux_faults_per_page: linux_faults.map(|f| f as f64 / pages),
            ratio_of_fastest_runs: run(&ours)
                .zip(run(&theirs))
                .map(|(ours, theirs)| ours as f64 / theirs as f64),
        });
    }
    Ok(rows)
}

/// Runs the bench: one boot, faultline and Linux in turn; returns the report (not yet written).
pub fn run_bench(options: &BenchOptions) -> Result<Report> {
    let started = Instant::now();
    let commit = git_describe();
    let pages = if options.quick { QUICK_PAGES } else { FULL_PAGES };
    let kernel = build_kernel(Profile::Release)?;
    // First: scripts/dom0/build.sh fetches and unpacks the Linux and busybox packages the Linux
    // guest is made of.
    let image = dom0_image::ensure_dom0_image(XenVersion::default(), options.quiet)?;
    let plan = plan(&kernel, options, pages)?;
    let outcome = run(&RunOptions {
        mode: Mode::Xl,
        kernel: Some(kernel.clone()),
        // QEMU's CPUs: enough for the two-thread guests (the dom0 keeps one vCPU).
        vcpus: THREAD_VCPUS,
        timeout: Duration::from_secs(600),
        quiet: options.quiet,
        guests: plan.guests.len() as u32,
        xl_console: XlConsole::Log,
        payload: Some(plan.payload.clone()),
        ..RunOptions::default()
    })?;
    if outcome.guests.len() != plan.guests.len() || !outcome.passed() {
        return Err(Error::new(format!(
            "the bench boot failed: {} ({} of {} guests ran; log {})",
            outcome.reason,
            outcome.guests.len(),
            plan.guests.len(),
            outcome.log_path.display()
        )));
    }
    let mut faultline = Vec::new();
    let mut linux = Vec::new();
    let mut faultline_threads = Vec::new();
    let mut linux_threads = Vec::new();
    let mut sweep = Vec::new();
    for (guest, result) in plan.guests.iter().zip(&outcome.guests) {
        let samples = parse_samples(&result.log)?;
        let what = format!("guest {} ({guest:?})", result.number);
        let workloads: &[&str] = if guest.threads() { &THREAD_WORKLOADS } else { &WORKLOADS };
        check_guest(&samples, &what, workloads)?;
        match guest {
            Guest::Faultline(w) => {
                if samples.iter().any(|s| s.counts.is_none()) {
                    return Err(Error::new(format!("{what}: a BENCH line without counts")));
                }
                for s in &samples {
                    if (s.workload == "file_read" || s.workload == "text_storm")
                        && !sweep.iter().any(|(sw, name, _, _): &(u32, String, f64, f64)| {
                            sw == w && *name == s.workload
                        })
                    {
                        let c = s.counts.unwrap_or_default();
                        let p = s.pages as f64;
                        sweep.push((
                            *w,
                            s.workload.clone(),
                            c.hypercalls as f64 / p,
                            c.faults as f64 / p,
                        ));
                    }
                }
                if *w == DEFAULT_WINDOW {
                    faultline.extend(samples);
                }
            }
            Guest::Linux | Guest::LinuxThreads => {
                if samples.iter().any(|s| s.minflt.is_none()) {
                    return Err(Error::new(format!(
                        "{what}: a BENCH line with faultline's counts"
                    )));
                }
                if guest.threads() { &mut linux_threads } else { &mut linux }.extend(samples);
            }
            Guest::FaultlineThreads => {
                if samples.iter().any(|s| s.counts.is_none_or(|c| c.shootdowns.is_none())) {
                    return Err(Error::new(format!("{what}: a BENCH line without shootdowns")));
                }
                faultline_threads.extend(samples);
            }
        }
    }
    sweep.sort_by(|a, b| (a.1.as_str(), a.0).cmp(&(b.1.as_str(), b.0)));
    let thread_rows = rows(&THREAD_WORKLOADS, &faultline_threads, &linux_threads)?;
    let rows = rows(&WORKLOADS, &faultline, &linux)?;
    let size = image_size(&kernel)?;
    let mut header = vec![
        ("faultline".to_string(), commit),
        ("Xen".to_string(), image.xen_version.clone()),
        ("dom0".to_string(), format!("Linux {} ({DOM0_MIB} MiB)", image.kernel_version)),
        (
            "Linux guest".to_string(),
            plan.linux_version.clone().map_or_else(
                || "not run (--no-linux)".to_string(),
                |v| format!("{v}, {LINUX_MIB} MiB, `{LINUX_CMDLINE}`"),
            ),
        ),
        (
            "faultline guest".to_string(),
            format!("{FAULTLINE_MIB} MiB, `{}`", faultline_cmdline(pages, &format!("fault_around={DEFAULT_WINDOW}"))),
        ),
        (
            "two-thread guests".to_string(),
            format!(
                "faultline and Linux with {THREAD_VCPUS} vCPUs (QEMU `-smp {THREAD_VCPUS}` for the whole boot), `{}`",
                threads_cmdline(pages)
            ),
        ),
        ("QEMU".to_string(), crate::host::ensure_qemu()?.version),
        ("kernel image".to_string(), size),
        (
            "runs".to_string(),
            format!(
                "{} of each guest, alternating; times are each 16-page lap's fastest run, added up; bench_text {TEXT_RUNS} times per guest",
                options.runs
            ),
        ),
        ("log".to_string(), outcome.log_path.display().to_string()),
    ];
    header.push(("boot".to_string(), format!("{:.0} s", outcome.elapsed.as_secs_f64())));
    Ok(Report {
        rows,
        thread_rows,
        sweep,
        header,
        command: options.command.clone(),
        elapsed: started.elapsed(),
    })
}

/// `git describe`-like: the commit and whether the tree is dirty.
fn git_describe() -> String {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(workspace::root())
        .output();
    match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    }
}

/// The kernel image's size: the ELF file, and stripped (`strip`, binutils), if it is there.
pub fn image_size(kernel: &Path) -> Result<String> {
    let file = std::fs::metadata(kernel).context(|| format!("cannot stat {}", kernel.display()))?;
    let stripped = workspace::target_dir().join("bench").join("faultline.stripped");
    let status = std::process::Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(&stripped)
        .arg(kernel)
        .status();
    let stripped_len = match status {
        Ok(s) if s.success() => std::fs::metadata(&stripped).ok().map(|m| m.len()),
        _ => None,
    };
    Ok(match stripped_len {
        Some(len) => {
            format!("{len} bytes stripped (`strip --strip-all`), {} with symbols", file.len())
        }
        None => format!("{} bytes with symbols (no `strip` here to strip it)", file.len()),
    })
}

fn fmt_opt(value: Option<f64>, digits: usize) -> String {
    value.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

/// results.md.
pub fn markdown(report: &Report) -> String {
    let mut md = String::from("# faultline page-fault bench\n\n");
    let _ = writeln!(md, "Command: `{}`\n", report.command);
    for (key, value) in &report.header {
        let _ = writeln!(md, "- {key}: {value}");
    }
    md.push_str(
        "\nCounts are faultline's own (`faultline_counters`), exact and the same in every run; \
         hypercalls leave out the iret. Times are guest TSC ticks per page under QEMU TCG, each lap \
         of 16 pages at its fastest run, added up: only the ratio of faultline's to Linux's in the \
         same boot means anything. The last column is the ratio of the fastest whole runs.\n\n",
    );
    md.push_str("| workload | pages | faults/page | hypercalls/page | entries/call | faultline ticks/page | Linux ticks/page | Linux faults/page | ratio faultline/Linux | ratio of fastest runs |\n");
    md.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for row in &report.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {:.3} | {:.1} | {:.0} | {} | {} | {} | {} |",
            row.name,
            row.pages,
            row.faults_per_page(),
            row.hypercalls_per_page(),
            row.counts.entries_per_call(),
            row.faultline_tsc_per_page,
            fmt_opt(row.linux_tsc_per_page, 0),
            fmt_opt(row.linux_faults_per_page, 3),
            fmt_opt(row.ratio(), 2),
            fmt_opt(row.ratio_of_fastest_runs, 2),
        );
    }
    if !report.thread_rows.is_empty() {
        md.push_str(&thread_table(report));
    }
    if !report.sweep.is_empty() {
        md.push_str("\nFault-around window (`fault_around=`), faultline's counts:\n\n");
        md.push_str(
            "| workload | window | faults/page | hypercalls/page |\n| --- | ---: | ---: | ---: |\n",
        );
        for (window, name, hypercalls, faults) in &report.sweep {
            let _ = writeln!(md, "| {name} | {window} | {faults:.4} | {hypercalls:.4} |");
        }
    }
    md.push_str("\nThe plot: `faults.svg` (ticks per page, log scale; hypercalls per page against the window).\n");
    md
}

/// The two-thread table of results.md: per page for the fault workloads, per munmap call for the
/// munmap ones; then what the second thread changed.
fn thread_table(report: &Report) -> String {
    let mut md = format!(
        "\nTwo threads (`c_bench_threads`, guests with {THREAD_VCPUS} vCPUs): `fault_2t` is `fault_1t`'s \
         pages written by two threads at once, each its half; the munmap rows are per call (of a \
         page one thread, or both, touched), and `shootdowns` are the TLB flushes faultline sent to \
         other vCPUs, `IPIs` the event-channel IPIs it sent.\n\n"
    );
    md.push_str("| workload | pages or calls | faults/page | hypercalls/page | shootdowns/page | IPIs/page | faultline ticks/page | Linux ticks/page | Linux faults/page | ratio faultline/Linux |\n");
    md.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for row in &report.thread_rows {
        let per = |count: Option<u64>| fmt_opt(count.map(|c| c as f64 / row.pages as f64), 3);
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {:.3} | {} | {} | {:.0} | {} | {} | {} |",
            row.name,
            row.pages,
            row.faults_per_page(),
            row.hypercalls_per_page(),
            per(row.counts.shootdowns),
            per(row.counts.ipis),
            row.faultline_tsc_per_page,
            fmt_opt(row.linux_tsc_per_page, 0),
            fmt_opt(row.linux_faults_per_page, 3),
            fmt_opt(row.ratio(), 2),
        );
    }
    let row = |name: &str| report.thread_rows.iter().find(|r| r.name == name);
    if let (Some(one), Some(two)) = (row("fault_1t"), row("fault_2t")) {
        let linux = one.linux_tsc_per_page.zip(two.linux_tsc_per_page).map(|(a, b)| b / a);
        let _ = writeln!(
            md,
            "\nTwo threads against one, time for the same pages: faultline {:.2}, Linux {}.",
            two.faultline_tsc_per_page / one.faultline_tsc_per_page,
            fmt_opt(linux, 2)
        );
    }
    md
}

/// A row as results.json writes it.
fn row_json(row: &Row) -> serde_json::Value {
    serde_json::json!({
        "name": row.name,
        "pages": row.pages,
        "faults_per_page": row.faults_per_page(),
        "hypercalls_per_page": row.hypercalls_per_page(),
        "entries_per_call": row.counts.entries_per_call(),
        "faultline_tsc_per_page": row.faultline_tsc_per_page,
        "linux_tsc_per_page": row.linux_tsc_per_page,
        "ratio": row.ratio(),
        "ratio_of_fastest_runs": row.ratio_of_fastest_runs,
        "linux_faults_per_page": row.linux_faults_per_page,
        "faults": row.counts.faults,
        "hypercalls": row.counts.hypercalls,
        "mmu_update_calls": row.counts.mmu_update,
        "mmu_update_entries": row.counts.entries,
        "mmuext_op_calls": row.counts.mmuext,
        "update_va_mapping_calls": row.counts.uva,
        "tlb_shootdowns": row.counts.shootdowns,
        "ipis": row.counts.ipis,
    })
}

/// results.json.
pub fn json(report: &Report) -> String {
    let workloads: Vec<serde_json::Value> = report.rows.iter().map(row_json).collect();
    let two_threads: Vec<serde_json::Value> = report.thread_rows.iter().map(row_json).collect();
    let sweep: Vec<serde_json::Value> = report
        .sweep
        .iter()
        .map(|(window, name, hypercalls, faults)| {
            serde_json::json!({ "workload": name, "fault_around": window, "hypercalls_per_page": hypercalls, "faults_per_page": faults })
        })
        .collect();
    let header: serde_json::Map<String, serde_json::Value> = report
        .header
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
        .collect();
    let value = serde_json::json!({
        "command": report.command,
        "header": header,
        "workloads": workloads,
        "two_threads": two_threads,
        "fault_around_sweep": sweep,
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

/// faults.svg: ticks per page per workload (faultline and Linux, log scale), and hypercalls per
/// page against the fault-around window.
pub fn svg(report: &Report) -> String {
    const W: f64 = 980.0;
    const H: f64 = 420.0;
    const FAULTLINE: &str = "#1f77b4";
    const LINUX: &str = "#ff7f0e";
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"11\">\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n"
    );
    // Left: bars, log10 scale.
    let (x0, y0, pw, ph) = (60.0, 40.0, 560.0, 300.0);
    let values: Vec<f64> = report
        .rows
        .iter()
        .flat_map(|r| [Some(r.faultline_tsc_per_page), r.linux_tsc_per_page])
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min).max(1.0).log10().floor();
    let hi = values.iter().copied().fold(1.0, f64::max).log10().ceil().max(lo + 1.0);
    let y_of = |v: f64| y0 + ph - (v.max(1.0).log10() - lo) / (hi - lo) * ph;
    let _ = writeln!(s, "<text x=\"{x0}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">TSC ticks per page (best run, log scale)</text>");
    let mut decade = lo;
    while decade <= hi {
        let y = y_of(10f64.powf(decade));
        let _ = writeln!(s, "<line x1=\"{x0}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">1e{decade}</text>", x0 + pw, x0 - 4.0, y + 4.0);
        decade += 1.0;
    }
    let n = report.rows.len().max(1) as f64;
    let slot = pw / n;
    for (i, row) in report.rows.iter().enumerate() {
        let x = x0 + i as f64 * slot;
        let bar = slot * 0.35;
        let mut draw = |offset: f64, value: f64, color: &str| {
            let y = y_of(value);
            let _ = writeln!(s, "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{:.1}\" fill=\"{color}\"><title>{} {value:.0}</title></rect>", x + offset, y0 + ph - y, row.name);
        };
        draw(slot * 0.12, row.faultline_tsc_per_page, FAULTLINE);
        if let Some(linux) = row.linux_tsc_per_page {
            draw(slot * 0.12 + bar, linux, LINUX);
        }
        let _ = writeln!(
            s,
            "<text transform=\"translate({:.1},{:.1}) rotate(35)\">{}</text>",
            x + slot * 0.3,
            y0 + ph + 12.0,
            row.name
        );
    }
    let _ = writeln!(s, "<rect x=\"{x0}\" y=\"{y0}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>");
    let _ = writeln!(s, "<rect x=\"{}\" y=\"28\" width=\"10\" height=\"10\" fill=\"{FAULTLINE}\"/><text x=\"{}\" y=\"37\">faultline</text><rect x=\"{}\" y=\"28\" width=\"10\" height=\"10\" fill=\"{LINUX}\"/><text x=\"{}\" y=\"37\">Linux 6.1 PV DomU</text>", x0 + pw - 210.0, x0 + pw - 196.0, x0 + pw - 130.0, x0 + pw - 116.0);

    // Right: hypercalls per page against the window.
    let (x1, pw2) = (700.0, 250.0);
    let _ = writeln!(s, "<text x=\"{x1}\" y=\"20\" font-size=\"13\" font-weight=\"bold\">hypercalls/page vs fault_around</text>");
    let _ = writeln!(s, "<rect x=\"{x1}\" y=\"{y0}\" width=\"{pw2}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>");
    let windows: Vec<u32> = {
        let mut w: Vec<u32> = report.sweep.iter().map(|(w, ..)| *w).collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    let ymax = report.sweep.iter().map(|(_, _, h, _)| *h).fold(0.0, f64::max).max(0.1);
    let wx = |w: u32| {
        let i = windows.iter().position(|&x| x == w).unwrap_or(0) as f64;
        x1 + 20.0 + i * (pw2 - 40.0) / (windows.len().max(2) - 1) as f64
    };
    let wy = |h: f64| y0 + ph - h / ymax * (ph - 10.0);
    for w in &windows {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{w}</text>",
            wx(*w),
            y0 + ph + 14.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">window (pages)</text>",
        x1 + pw2 / 2.0,
        y0 + ph + 30.0
    );
    for tick in [0.0, ymax / 2.0, ymax] {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick:.2}</text>",
            x1 - 4.0,
            wy(tick) + 4.0
        );
    }
    // The two lines often coincide: file_read wide and solid, text_storm dashed on top.
    for (name, color, style) in [
        ("file_read", FAULTLINE, "stroke-width=\"4\""),
        ("text_storm", "#2ca02c", "stroke-width=\"2\" stroke-dasharray=\"6,4\""),
    ] {
        let points: Vec<String> = report
            .sweep
            .iter()
            .filter(|(_, n, _, _)| n == name)
            .map(|(w, _, h, _)| format!("{:.1},{:.1}", wx(*w), wy(*h)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" {style}/>",
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(s, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{color}\"/>");
        }
    }
    let _ = writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{FAULTLINE}\"/><text x=\"{}\" y=\"{}\">file_read</text><rect x=\"{}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"#2ca02c\"/><text x=\"{}\" y=\"{}\">text_storm</text>", x1 + 120.0, y0 + 8.0, x1 + 134.0, y0 + 17.0, x1 + 120.0, y0 + 24.0, x1 + 134.0, y0 + 33.0);
    s.push_str("</svg>\n");
    s
}

/// Writes results.md, results.json and faults.svg into `dir`; returns their paths.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    let files = [
        ("results.md", markdown(report)),
        ("results.json", json(report)),
        ("faults.svg", svg(report)),
    ];
    let mut paths = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).context(|| format!("cannot write {}", path.display()))?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bench_lines_of_both_kernels() {
        let line = "# bench_faults-1024: BENCH seq_write pages=1024 faults=63 hypercalls=63 mmu_update=63 entries=1012 mmuext=0 uva=0 tsc=196786156";
        let sample = parse_line(line).unwrap().unwrap();
        assert_eq!(sample.workload, "seq_write");
        assert_eq!(sample.pages, 1024);
        assert_eq!(sample.counts.unwrap().entries, 1012);
        assert_eq!(sample.minflt, None);
        let linux = parse_line("BENCH file_read pages=512 minflt=32 tsc=821632").unwrap().unwrap();
        assert_eq!((linux.minflt, linux.counts, linux.tsc), (Some(32), None, 821632));
        assert!(parse_line("ok 1 - hello").is_none());
        assert!(parse_line("BENCH x pages=1 tsc=oops").unwrap().is_err());
        assert!(parse_line("BENCH x pages=1 tsc=5").unwrap().is_err(), "neither counts nor minflt");
    }

    #[test]
    fn laps_follow_their_line_and_each_lap_takes_its_fastest_run() {
        let log = "# bench_text: BENCH text_storm pages=32 faults=2 hypercalls=2 mmu_update=2 entries=32 mmuext=0 uva=0 tsc=900 laps=2\n\
                   # bench_text: LAPS text_storm 0 500 400\n\
                   BENCH text_storm pages=32 minflt=2 tsc=700 laps=2\n\
                   LAPS text_storm 0 100 600\n\
                   BENCH munmap pages=32 minflt=0 tsc=50 laps=0\n";
        let samples = parse_samples(log).unwrap();
        assert_eq!(samples[0].laps, [500, 400]);
        assert_eq!(samples[1].laps, [100, 600]);
        let both: Vec<&Sample> = samples[..2].iter().collect();
        // Lap 0 at its fastest in the second run, lap 1 in the first: 100 + 400.
        assert_eq!(fastest(&both), Some(500));
        assert_eq!(fastest(&[&samples[2]]), Some(50), "no laps: the fastest run");
        let short = log.replace("LAPS text_storm 0 100 600", "LAPS text_storm 0 100");
        assert!(parse_samples(&short).is_err(), "a lap missing");
        let stray = log.replace("LAPS text_storm 0 100 600", "LAPS text_storm 5 100 600");
        assert!(parse_samples(&stray).is_err(), "laps out of place");
    }

    #[test]
    fn rows_take_the_best_time_and_insist_on_equal_counts() {
        let s = |w: &str, tsc: u64, faults: u64| Sample {
            workload: w.into(),
            pages: 100,
            counts: Some(Counts {
                faults,
                hypercalls: faults,
                mmu_update: faults,
                entries: 100,
                ..Counts::default()
            }),
            minflt: None,
            tsc,
            laps: Vec::new(),
            count_laps: 0,
        };
        let l = |w: &str, tsc: u64| Sample {
            workload: w.into(),
            pages: 100,
            counts: None,
            minflt: Some(100),
            tsc,
            laps: Vec::new(),
            count_laps: 0,
        };
        let mut ours: Vec<Sample> =
            WORKLOADS.iter().flat_map(|w| [s(w, 500, 10), s(w, 400, 10)]).collect();
        let theirs: Vec<Sample> = WORKLOADS.iter().flat_map(|w| [l(w, 900), l(w, 800)]).collect();
        let table = rows(&WORKLOADS, &ours, &theirs).unwrap();
        assert_eq!(table[0].faultline_tsc_per_page, 4.0);
        assert_eq!(table[0].linux_tsc_per_page, Some(8.0));
        assert_eq!(table[0].ratio(), Some(0.5));
        assert_eq!(table[0].counts.entries_per_call(), 10.0);
        ours.push(s("seq_write", 300, 11));
        assert!(rows(&WORKLOADS, &ours, &theirs).is_err());
        // The two-thread rows: shootdowns and IPIs per call, and two threads against one.
        let mut threads: Vec<Sample> = THREAD_WORKLOADS.iter().map(|w| s(w, 400, 10)).collect();
        threads[1].tsc = 300; // fault_2t
        for sample in &mut threads[2..] {
            sample.counts =
                sample.counts.map(|c| Counts { shootdowns: Some(100), ipis: Some(0), ..c });
        }
        let theirs: Vec<Sample> = THREAD_WORKLOADS.iter().map(|w| l(w, 800)).collect();
        let thread_rows = rows(&THREAD_WORKLOADS, &threads, &theirs).unwrap();
        let report = Report {
            rows: table,
            thread_rows,
            sweep: vec![
                (0, "file_read".into(), 1.0, 1.0),
                (16, "file_read".into(), 0.0625, 0.0625),
            ],
            header: vec![],
            command: "cargo xtask bench".into(),
            elapsed: Duration::ZERO,
        };
        assert!(markdown(&report)
            .contains("| seq_write | 100 | 0.100 | 0.100 | 10.0 | 4 | 8 | 1.000 | 0.50 | 0.50 |"));
        let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(json["workloads"][0]["ratio"], 0.5);
        let md = markdown(&report);
        assert!(
            md.contains(
                "| munmap_2t | 100 | 0.100 | 0.100 | 1.000 | 0.000 | 4 | 8 | 1.000 | 0.50 |"
            ),
            "{md}"
        );
        assert!(md.contains("| fault_1t | 100 | 0.100 | 0.100 | n/a | n/a | 4 | 8 |"), "{md}");
        assert!(md.contains("time for the same pages: faultline 0.75, Linux 1.00."), "{md}");
        assert_eq!(json["two_threads"][3]["tlb_shootdowns"], 100);
        assert!(svg(&report).ends_with("</svg>\n"));
    }
}
