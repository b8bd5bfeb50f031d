//! Runs the test programs of the boot module one after another and reports each in TAP form.

use core::sync::atomic::Ordering;

use super::archive::Archive;
use super::expectation::Outcome;
use super::process::{self, Image, Limits, COUNTERS};
use super::program::{self, Rejection};
use super::run_options::RunOptions;
use super::tap::{TapLine, TapPlan};
use crate::mm::address_space::Tuning;
use crate::mm::{Pfn, PfnRange, PAGE_SIZE};
use crate::testing::audit::{self, Mismatch};
use crate::testing::inject::{self, Effect, INJECTOR};
use crate::testing::report;
use crate::testing::verdict::Verdict;

/// The boot module: its bytes and the frames they occupy.
pub struct Module {
    pub bytes: &'static mut [u8],
    /// Set when the module starts on a page boundary of the initial mapping.
    pub frames: Option<PfnRange>,
}

/// Runs every selected program; each run prints one TAP line, and a leak prints another.
pub fn run(module: Module, options: &RunOptions<'_>) {
    let len = module.bytes.len();
    // A damaged archive keeps the programs before the damage: they still run.
    let salvaged = Archive::open_salvaging(module.bytes);
    if let Some(e) = &salvaged.error {
        crate::check!(
            Error,
            "test archive ({len} bytes): {e}; running the programs before the damage"
        );
    }
    let Some(archive) = salvaged.archive else { return };
    for missing in options.tests.missing(&archive) {
        crate::check!(Error, "tests=: no program named '{missing}' in the archive");
    }
    let selected = |name: &str| options.tests.selects(name);
    let total: usize = program::programs(&archive)
        .map(|p| match p {
            Ok(p) if selected(p.name()) => usize::from(p.expectation.runs),
            Ok(_) => 0,
            Err(r) if selected(r.name()) => 1,
            Err(_) => 0,
        })
        .sum();
    // A sweep runs each program as often as its calls reach: the plan comes last.
    let sweep = INJECTOR.sweep().copied();
    if sweep.is_none() {
        crate::println!("{}", TapPlan(total));
    }
    if INJECTOR.enabled() {
        // The sweep (`cargo xtask sweep`) learns the programs and their order from these lines.
        for p in program::programs(&archive).flatten().filter(|p| selected(p.name())) {
            crate::println!("inject: program {}", p.name());
        }
    }
    let limits = Limits {
        time_budget_ms: options.time_budget_ms,
        memory_limit_bytes: options.memory_limit_bytes,
        tuning: Tuning {
            fault_around_pages: options.fault_around_pages,
            prefault_pages: options.prefault_pages,
        },
    };
    let mut number = 0;
    for candidate in program::programs(&archive) {
        match candidate {
            Err(rejection) if selected(rejection.name()) => {
                number += 1;
                reject(number, &rejection);
            }
            Err(_) => {}
            Ok(p) if selected(p.name()) => {
                let online = crate::arch::x86_64::smp::online_count();
                if usize::from(p.expectation.vcpus) > online {
                    // A pass in TAP's terms (`ok ... # SKIP`): the boot's verdict stays.
                    for _ in 0..p.expectation.runs {
                        number += 1;
                        let (name, needs) = (p.name(), p.expectation.vcpus);
                        crate::println!(
                            "ok {number} - {name} # SKIP needs {needs} vCPUs, {online} online"
                        );
                        report::record(Verdict::Success);
                    }
                    continue;
                }
                if let Some(vcpu) = process::straggler() {
                    for _ in 0..p.expectation.runs {
                        number += 1;
                        crate::println!(
                            "not ok {number} - {}: not run: vCPU {vcpu} never left an earlier program",
                            p.name()
                        );
                        report::record(Verdict::Error);
                    }
                    continue;
                }
                let image = Image {
                    name: leak_name(p.name()),
                    file: p.file(),
                    plan: p.plan,
                    file_first_pfn: module
                        .frames
                        .filter(|_| p.entry.is_page_aligned())
                        .map(|f| Pfn(f.start.0 + p.entry.offset as u64 / PAGE_SIZE)),
                    module_frames: module
                        .frames
                        .unwrap_or(PfnRange { start: Pfn(0), count_frames: 0 }),
                };
                if let Err(e) = process::load(&image) {
                    number += 1;
                    crate::println!("not ok {number} - {}: could not load: {e}", image.name);
                    report::record(Verdict::Error);
                    process::unload();
                    continue;
                }
                match sweep.filter(|rule| rule.scope.matches(Some(p.name()))) {
                    Some(rule) => {
                        number = sweep_program(number, image, p.expectation, limits, &rule);
                    }
                    None => {
                        for run in 1..=p.expectation.runs {
                            number += 1;
                            let runs = (run, p.expectation.runs);
                            run_once(number, image, p.expectation, limits, runs, None);
                        }
                    }
                }
                process::unload();
            }
            Ok(_) => {}
        }
    }
    if sweep.is_some() {
        crate::println!("{}", TapPlan(number));
    }
    crate::println!(
        "programs: user_faults={} shared_file_maps={} private_file_copies={} cow_copies={} zero_fills={} syscalls={} fault_around_pages={} prefault_pages={} populated_pages={}",
        COUNTERS.user_faults.load(Ordering::Relaxed),
        COUNTERS.shared_file_maps.load(Ordering::Relaxed),
        COUNTERS.private_file_copies.load(Ordering::Relaxed),
        COUNTERS.cow_copies.load(Ordering::Relaxed),
        COUNTERS.zero_fills.load(Ordering::Relaxed),
        COUNTERS.syscalls.load(Ordering::Relaxed),
        COUNTERS.fault_around_pages.load(Ordering::Relaxed),
        COUNTERS.prefault_pages.load(Ordering::Relaxed),
        COUNTERS.populated_pages.load(Ordering::Relaxed),
    );
}

fn reject(number: usize, rejection: &Rejection<'_>) {
    let line = TapLine::rejected(number, rejection.name(), rejection);
    crate::println!("{line}");
    report::record(Verdict::Failure);
}

/// Runs one program once per position of the sweep (`inject=P:sweep=FROM..TO`), the failure at
/// that call, until a run no longer reaches the position; returns the last TAP number.
fn sweep_program(
    mut number: usize,
    image: Image,
    expectation: super::expectation::Expectation,
    limits: Limits,
    rule: &inject::Rule,
) -> usize {
    let Some(sweep) = rule.sweep else { return number };
    let mut nth = Some(sweep.from);
    while let Some(position) = nth {
        INJECTOR.set_position(rule.point, position);
        number += 1;
        if !run_once(number, image, expectation, limits, (1, 1), Some(position)) {
            break;
        }
        nth = sweep.next(position);
    }
    number
}

/// Runs the program once, prints its TAP line and the audit's findings; returns whether an
/// injected failure fired during the run. `swept`: the position of a sweep, printed at the start
/// (the runner needs it if the run never ends).
fn run_once(
    number: usize,
    image: Image,
    expectation: super::expectation::Expectation,
    limits: Limits,
    (run, runs): (u8, u8),
    swept: Option<u64>,
) -> bool {
    let shared_before = COUNTERS.shared_file_maps.load(Ordering::Relaxed);
    let copies_before = COUNTERS.private_file_copies.load(Ordering::Relaxed);
    COUNTERS.first_shared_pfn.store(0, Ordering::Relaxed);
    let before = audit::snapshot();
    match swept {
        Some(nth) => crate::println!("inject: start {} nth={nth}", image.name),
        None if INJECTOR.enabled() => crate::println!("inject: start {}", image.name),
        None => {}
    }
    INJECTOR.enter_program(Some(image.name));
    let result = process::run(image, limits);
    INJECTOR.enter_program(None);
    let after = audit::snapshot();
    let injected = INJECTOR.first_run_failure();
    let errno = ErrnoNote(inject::take_errno());
    let mut mismatches = Mismatches::default();
    audit::check(before, after, |m| mismatches.push(m));
    match result {
        Ok(report) => {
            // A failed kernel call, a leak or an audit mismatch makes this run's one TAP line
            // `not ok` (a line of its own would repeat the test number). After an injected
            // failure, failed kernel calls are its consequence: a comment names them.
            // Another vCPU's idle loop may have failed (a refused answer or block) while the
            // program ran: the run's own failures, though the vCPU stays in service.
            crate::arch::x86_64::smp::take_idle_failures(|_, step, error, count| {
                for _ in 0..count {
                    process::kernel_error(step.name(), Some(error));
                }
            });
            let (errors, first_error) = process::take_kernel_errors();
            let kernel = match (injected, first_error) {
                (Some(_), Some(first)) => {
                    crate::println!("# {}: after the injected failure, {errors} failed kernel call(s), first: {first}", image.name);
                    None
                }
                (_, first) => first.map(|e| (errors, e)),
            };
            if report.leaked_frames != 0 {
                mismatches.drop_frames();
            }
            let problem = Problem { kernel, leaked: report.leaked_frames, audit: mismatches };
            let mut line = TapLine::compared(number, image.name, expectation, report.outcome)
                .with_problem(problem.any().then_some(&problem as &dyn core::fmt::Display));
            if runs > 1 {
                line = line.with_run(run, runs);
            }
            let effect = match (injected, line.outcome_passed(), report.outcome) {
                (None, ..) => None,
                (Some(_), _, _) if errno.0 != 0 => Some(Effect::Errno),
                (Some(_), true, _) => Some(Effect::NoEffect),
                (Some(_), false, Outcome::Killed { .. }) => Some(Effect::Killed),
                (Some(_), false, Outcome::Exited(_)) => None,
            };
            match (effect, injected) {
                (Some(Effect::Killed | Effect::Errno), Some((point, call)))
                    if !line.outcome_passed() =>
                {
                    let not = if problem.any() { "not " } else { "" };
                    let sep = if problem.any() { "; " } else { "" };
                    crate::println!("{not}ok {number} - {}: {} after the injected {} failure at call {call}{errno} (expected without it: {expectation}){sep}{problem}", image.name, report.outcome, point.name());
                    report::record(Verdict::Success);
                }
                _ => {
                    crate::println!("{line}");
                    report::record(if line.outcome_passed() {
                        Verdict::Success
                    } else {
                        Verdict::Failure
                    });
                }
            }
            if problem.kernel.is_some() {
                report::record(Verdict::Error);
            }
            if problem.leaked != 0 || problem.audit.count != 0 {
                report::record(Verdict::Failure);
            }
            let shared = COUNTERS.shared_file_maps.load(Ordering::Relaxed) - shared_before;
            let copies = COUNTERS.private_file_copies.load(Ordering::Relaxed) - copies_before;
            let first = COUNTERS.first_shared_pfn.load(Ordering::Relaxed);
            if swept.is_none() {
                crate::println!("# {}: pages shared from the module {shared} (first pfn {first:#x}), copied {copies}", image.name);
            }
            print_injection(image.name, effect);
        }
        Err(e) => {
            let problem = Problem { kernel: None, leaked: 0, audit: mismatches };
            let (not, sep) = if problem.any() { ("not ", "; ") } else { ("", "") };
            if let Some((point, call)) = injected {
                crate::println!("{not}ok {number} - {}: could not start after the injected {} failure at call {call}: {e}{sep}{problem}", image.name, point.name());
                report::record(Verdict::Success);
                print_injection(image.name, Some(Effect::Errno));
            } else {
                crate::println!(
                    "not ok {number} - {}: could not start: {e}{sep}{problem}",
                    image.name
                );
                report::record(Verdict::Error);
                print_injection(image.name, None);
            }
            if problem.any() {
                report::record(Verdict::Failure);
            }
        }
    }
    injected.is_some()
}

/// What went wrong around one run besides its outcome: the kernel's own failed calls (their
/// count and the first), frames not back in the pool, and what the audit found.
struct Problem {
    kernel: Option<(u64, process::KernelError)>,
    leaked: i64,
    audit: Mismatches,
}

impl Problem {
    fn any(&self) -> bool {
        self.kernel.is_some() || self.leaked != 0 || self.audit.count != 0
    }
}

impl core::fmt::Display for Problem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut sep = "";
        if let Some((count, first)) = self.kernel {
            write!(f, "KERNEL: {count} failed kernel call(s) during the run, first: {first}")?;
            sep = "; ";
        }
        if self.leaked != 0 {
            write!(f, "{sep}LEAK: {} frames not back in the pool after the run", self.leaked)?;
            sep = "; ";
        }
        for mismatch in self.audit.list.iter().flatten() {
            write!(f, "{sep}AUDIT: {mismatch}")?;
            sep = "; ";
        }
        if self.audit.count > self.audit.list.len() {
            write!(f, "{sep}AUDIT: {} more", self.audit.count - self.audit.list.len())?;
        }
        Ok(())
    }
}

/// The audit's findings for one run, kept without the heap (the audit measures the heap).
#[derive(Default)]
struct Mismatches {
    list: [Option<Mismatch>; 6],
    count: usize,
}

impl Mismatches {
    fn push(&mut self, mismatch: Mismatch) {
        if let Some(slot) = self.list.get_mut(self.count) {
            *slot = Some(mismatch);
        }
        self.count += 1;
    }

    /// The frames the LEAK note already counts.
    fn drop_frames(&mut self) {
        let kept = self.list.iter().flatten().filter(|m| !matches!(m, Mismatch::Frames { .. }));
        let mut list = [None; 6];
        let mut count = 0;
        for (slot, m) in list.iter_mut().zip(kept) {
            *slot = Some(*m);
            count += 1;
        }
        let dropped = self.count.min(self.list.len()) - count;
        self.list = list;
        self.count -= dropped;
    }
}

/// `, a syscall returned ENOMEM (12)` after an injected failure, or nothing.
struct ErrnoNote(u64);

impl core::fmt::Display for ErrnoNote {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => Ok(()),
            errno => {
                use super::syscall_abi::Errno as E;
                let known = [E::EPERM, E::EBADF, E::ENOMEM, E::EFAULT, E::EEXIST, E::EINVAL];
                let name = known.iter().find(|e| **e as u64 == errno).map_or("?", |e| e.name());
                write!(f, ", a syscall returned {name} ({errno})")
            }
        }
    }
}

/// One `inject:` line per armed point: how often the program called it, how often it failed,
/// the first failed call and what the failure did (the sweep reads these lines).
fn print_injection(program: &str, effect: Option<Effect>) {
    let Some(config) = INJECTOR.config() else { return };
    for rule in config.rules() {
        let (calls, _, _) = INJECTOR.counts(rule.point);
        let (failed, first) = INJECTOR.run_counts(rule.point);
        let effect = match effect {
            _ if failed == 0 => "not-reached",
            Some(e) => e.word(),
            None => "wrong-result",
        };
        crate::println!(
            "inject: {program}: {} calls={calls} failed={failed} first={first} effect={effect}",
            rule.point.name()
        );
    }
}

/// Program names live in the archive header, which lives as long as the module (forever);
/// this copies the name into a static table so the process can keep a `&'static str`.
fn leak_name(name: &str) -> &'static str {
    alloc::boxed::Box::leak(alloc::string::String::from(name).into_boxed_str())
}
