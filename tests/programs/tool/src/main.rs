//! faultline-programs: checks test programs with the kernel's own parser, packs the test archive,
//! and runs the programs natively on Linux against their declared expectations.
//!
//! ```text
//! faultline-programs check  <elf>...                 load plan and expectation of each program
//! faultline-programs pack   <archive> <elf>...       check, then write the archive (names: file names)
//! faultline-programs native <elf>...                 run each on this Linux host, TAP report
//! ```
//! Every command exits non-zero if any program fails.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use faultline::proc::elf;
use faultline::proc::expectation::{Expectation, Expected};
use faultline::proc::tap::TapPlan;
use faultline_abi::archive::{self, Name};
use faultline_abi::note;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("check") if args.len() > 1 => check(&paths(&args[1..])),
        Some("pack") if args.len() > 2 => pack(Path::new(&args[1]), &paths(&args[2..])),
        Some("native") if args.len() > 1 => native(&paths(&args[1..])),
        _ => Err(
            "usage: faultline-programs check <elf>... | pack <archive> <elf>... | native <elf>..."
                .into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("faultline-programs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn paths(args: &[String]) -> Vec<PathBuf> {
    args.iter().map(PathBuf::from).collect()
}

/// A program file read and checked the way the kernel will.
struct Checked {
    name: String,
    bytes: Vec<u8>,
    plan: elf::LoadPlan,
    expectation: Expectation,
}

fn load(path: &Path) -> Result<Checked, String> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let name = name.strip_suffix(".elf").unwrap_or(name).to_string();
    Name::new(&name).map_err(|e| format!("{}: {e}", path.display()))?;
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let plan = elf::load_plan(&bytes).map_err(|e| format!("{name}: bad ELF: {e}"))?;
    let note = elf::find_note(&bytes, note::NAME, u64::from(note::TYPE_EXPECT))
        .map_err(|e| format!("{name}: bad ELF: {e}"))?;
    let expectation = match note {
        Some(desc) => Expectation::parse(desc).map_err(|e| format!("{name}: {e}"))?,
        None => Expectation::default(),
    };
    Ok(Checked { name, bytes, plan, expectation })
}

fn check(paths: &[PathBuf]) -> Result<(), String> {
    let mut failed = 0;
    for path in paths {
        match load(path) {
            Ok(p) => {
                let segments: Vec<String> = p
                    .plan
                    .segments()
                    .iter()
                    .map(|s| format!("{:#x}+{:#x} {}", s.vaddr, s.mem_size, s.perms))
                    .collect();
                println!(
                    "{}: entry {:#x}, {}; expects {}",
                    p.name,
                    p.plan.entry,
                    segments.join(", "),
                    p.expectation
                );
            }
            Err(e) => {
                println!("{e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {} programs rejected", paths.len()));
    }
    Ok(())
}

fn pack(out: &Path, paths: &[PathBuf]) -> Result<(), String> {
    let programs = paths.iter().map(|p| load(p)).collect::<Result<Vec<_>, _>>()?;
    let entries: Vec<(&str, &[u8])> =
        programs.iter().map(|p| (p.name.as_str(), p.bytes.as_slice())).collect();
    let bytes = archive::pack(&entries).map_err(|e| e.to_string())?;
    std::fs::write(out, &bytes).map_err(|e| format!("{}: {e}", out.display()))?;
    // Read it back with the kernel's reader: the archive must be exactly what the kernel sees.
    let read = archive::Archive::open(&bytes).map_err(|e| e.to_string())?;
    let valid =
        read.entries().filter(|e| e.as_ref().is_ok_and(archive::Entry::is_page_aligned)).count();
    if valid != programs.len() {
        return Err(format!(
            "{}: read back {valid} page-aligned programs of {}",
            out.display(),
            programs.len()
        ));
    }
    println!("{}: {} programs, {} bytes", out.display(), programs.len(), bytes.len());
    Ok(())
}

/// How a program ended on the host.
#[derive(Debug)]
enum Native {
    Exited(i32),
    Signal(i32),
    TimedOut,
}

const SIGILL: i32 = 4;
const SIGTRAP: i32 = 5;
const SIGBUS: i32 = 7;
const SIGFPE: i32 = 8;
const SIGSEGV: i32 = 11;

/// Programs whose expectation only the faultline kernel can meet, and why.
const NATIVE_SKIP: [(&str, &str); 4] = [
    ("write_page_table", "needs AT_FAULTLINE_PAGE_TABLE from the faultline kernel"),
    ("write_p2m", "needs AT_FAULTLINE_P2M from the faultline kernel"),
    ("unknown_syscall", "this host's sandbox kills unassigned system call numbers"),
    ("c_int_0x80", "Linux serves int $0x80 as the 32-bit system call"),
];

/// Whether a host outcome corresponds to the expectation (Linux turns #PF and #GP into SIGSEGV,
/// #UD into SIGILL, #DE into SIGFPE, #BP into SIGTRAP; an `int $n` a program may not use, #OF
/// included, into SIGSEGV).
fn native_matches(expected: &Expected, got: &Native) -> bool {
    match (expected, got) {
        (Expected::Exit(status), Native::Exited(code)) => i32::from(*status) == *code,
        (Expected::PageFault { .. } | Expected::StackOverflow, Native::Signal(s)) => {
            *s == SIGSEGV || *s == SIGBUS
        }
        (Expected::GeneralProtection | Expected::Vector(_), Native::Signal(s)) => *s == SIGSEGV,
        (Expected::InvalidOpcode, Native::Signal(s)) => *s == SIGILL,
        (Expected::DivideError, Native::Signal(s)) => *s == SIGFPE,
        (Expected::Breakpoint, Native::Signal(s)) => *s == SIGTRAP,
        (Expected::Watchdog, Native::TimedOut) => true,
        _ => false,
    }
}

fn run_native(path: &Path, time_limit: Duration) -> Result<(Native, String), String> {
    let mut child = Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if started.elapsed() > time_limit {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut output = String::new();
    child.stdout.take().map(|mut s| s.read_to_string(&mut output));
    child.stderr.take().map(|mut s| s.read_to_string(&mut output));
    let native = match status {
        None => Native::TimedOut,
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Native::Exited(code),
            (None, Some(signal)) => Native::Signal(signal),
            (None, None) => {
                return Err(format!("{}: ended without status or signal", path.display()))
            }
        },
    };
    Ok((native, output))
}

fn native(paths: &[PathBuf]) -> Result<(), String> {
    let programs = paths.iter().map(|p| load(p)).collect::<Result<Vec<_>, _>>()?;
    let lines: usize = programs.iter().map(|p| usize::from(p.expectation.runs)).sum();
    println!("{}", TapPlan(lines));
    let mut number = 0;
    let mut failed = 0;
    for (program, path) in programs.iter().zip(paths) {
        let expected = &program.expectation.outcome;
        for run in 1..=program.expectation.runs {
            number += 1;
            let label = if program.expectation.runs > 1 {
                format!("{} (run {run} of {})", program.name, program.expectation.runs)
            } else {
                program.name.clone()
            };
            if let Some((_, why)) = NATIVE_SKIP.iter().find(|(n, _)| *n == program.name) {
                println!("ok {number} - {label} # SKIP {why}");
                continue;
            }
            if matches!(expected, Expected::OutOfMemory) {
                println!("ok {number} - {label} # SKIP would exhaust the host's memory");
                continue;
            }
            let limit = if matches!(expected, Expected::Watchdog) {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(10)
            };
            let (got, output) = run_native(path, limit)?;
            if native_matches(expected, &got) {
                println!("ok {number} - {label}: {got:?}, as {} expects", program.expectation);
            } else {
                failed += 1;
                println!(
                    "not ok {number} - {label}: expected {}, got {got:?}",
                    program.expectation
                );
                for line in output.lines() {
                    println!("# {line}");
                }
            }
        }
    }
    if failed > 0 {
        return Err(format!("{failed} of {lines} native runs did not match their expectation"));
    }
    Ok(())
}
