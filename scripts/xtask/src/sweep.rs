//! `cargo xtask sweep`: every kernel injection point failed at call 1, 2, ..., N of every
//! program, with as few boots as the programs allow.
//!
//! A baseline boot arms every point at a call no program reaches and reads how many calls of
//! each point each program makes. Then each boot sweeps one point over many positions inside
//! the guest: `inject=POINT:sweep=FROM..TO,step=S@programs tests=a,b` runs each listed program
//! once per position, the failure at that call, and moves on to the next program after the
//! first run that no longer reaches its position (see `kernel/src/proc/suite.rs`). The work is
//! cut into boots of about [`POSITIONS_PER_BOOT`] positions (a program with thousands of calls
//! is split into ranges) that `--jobs` QEMUs take from one queue. A boot that crashes or hangs
//! is booted again from the next position of the program that was running, and once more for
//! the programs after it. The guest prints, per run, `inject: start NAME nth=N`, the run's TAP
//! line (`not ok` with `LEAK:` or `AUDIT:` when the audit found something) and then
//! `inject: NAME: POINT calls=C failed=F first=N effect=E`; those make the table. A case
//! replays with `nth=` in a single boot ([`replay_command`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::junit::{self, CaseStatus};
use crate::outcome::{EXIT_CRASH, EXIT_TIMEOUT};
use crate::run::{run, Mode, RunOptions};
use crate::xl::XlConsole;

/// The kernel's injection points, in the kernel's order.
pub const POINTS: [&str; 8] =
    ["frame", "table", "heap", "mmu_update", "mmuext_op", "update_va_mapping", "evtchn", "console"];

/// What one injected failure did to one program run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Killed,
    Errno,
    NoEffect,
    Crash,
    Leak,
    Hang,
    /// The program ended otherwise than declared and neither a kill nor an errno explains it.
    Wrong,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Killed,
        Outcome::Errno,
        Outcome::NoEffect,
        Outcome::Crash,
        Outcome::Leak,
        Outcome::Hang,
        Outcome::Wrong,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Outcome::Killed => "killed",
            Outcome::Errno => "errno",
            Outcome::NoEffect => "no-effect",
            Outcome::Crash => "crash",
            Outcome::Leak => "leak",
            Outcome::Hang => "hang",
            Outcome::Wrong => "wrong",
        }
    }

    /// Killed cleanly, an errno, or nothing at all.
    pub fn is_clean(self) -> bool {
        matches!(self, Outcome::Killed | Outcome::Errno | Outcome::NoEffect)
    }
}

/// One injection: a point failed at call `nth` of one program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub point: &'static str,
    pub nth: u64,
    pub program: String,
    pub outcome: Outcome,
    /// The guest lines that decided the outcome.
    pub detail: String,
}

/// What the sweep was asked for.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    pub points: Vec<&'static str>,
    /// The last position (`u64::MAX`: as far as the programs reach).
    pub max: u64,
    pub jobs: usize,
    /// `(k, n)`: this machine runs the k-th (1-based) of n slices.
    pub shard: (u64, u64),
    pub junit: Option<PathBuf>,
    pub seed: u64,
    /// Each program's time budget (`test_time=`).
    pub test_time: String,
    /// Only these programs (`tests=`), or the whole catalogue.
    pub tests: Option<String>,
    pub kernel: PathBuf,
    pub module: PathBuf,
    pub memory_mib: u32,
    /// A boot is judged hung when its console stays silent this long.
    pub timeout: Duration,
    /// Where the table goes (`target/sweep`).
    pub out_dir: PathBuf,
    /// Boot on the DomU path (a Linux dom0 runs `xl create`), not as dom0.
    pub domu: bool,
}

/// One program run of one boot, as the guest reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub program: String,
    /// The position of a sweep boot (`inject: start NAME nth=N`).
    pub nth: Option<u64>,
    pub calls: u64,
    pub failed: u64,
    pub effect: String,
    /// The `inject: NAME: ...` line came (the run finished).
    pub finished: bool,
    pub leak_lines: Vec<String>,
    pub failed_lines: Vec<String>,
    /// The run was killed by the watchdog after the injected failure (a program that hangs).
    pub watchdog: bool,
}

/// A boot's report: the programs it selected (in order) and each run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootReport {
    pub programs: Vec<String>,
    pub runs: Vec<Run>,
}

/// Reads the guest's lines of one sweep boot.
pub fn parse_boot<'a>(lines: impl IntoIterator<Item = &'a str>, point: &str) -> BootReport {
    let mut report = BootReport::default();
    for line in lines {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix("inject: program ") {
            report.programs.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("inject: start ") {
            let (name, nth) = match rest.split_once(" nth=") {
                Some((name, nth)) => (name, nth.parse().ok()),
                None => (rest, None),
            };
            report.runs.push(Run { program: name.to_string(), nth, ..Run::default() });
        } else if let Some(rest) = line.strip_prefix("inject: ") {
            let Some(run) = report.runs.last_mut() else { continue };
            let Some(fields) = rest
                .strip_prefix(run.program.as_str())
                .and_then(|r| r.strip_prefix(": "))
                .and_then(|r| r.strip_prefix(point))
                .and_then(|r| r.strip_prefix(' '))
            else {
                continue;
            };
            for field in fields.split(' ') {
                match field.split_once('=') {
                    Some(("calls", v)) => run.calls = v.parse().unwrap_or(0),
                    Some(("failed", v)) => run.failed = v.parse().unwrap_or(0),
                    Some(("effect", v)) => run.effect = v.to_string(),
                    _ => {}
                }
            }
            run.finished = true;
        } else if let Some(rest) = line.strip_prefix("ok ") {
            let Some(run) = report.runs.last_mut() else { continue };
            if rest.contains(": killed by the watchdog") && rest.contains(" after the injected ") {
                run.watchdog = true;
            }
        } else if let Some(rest) = line.strip_prefix("not ok ") {
            let Some(run) = report.runs.last_mut() else { continue };
            let Some((_, text)) = rest.split_once(" - ") else { continue };
            if !text.starts_with(&format!("{}:", run.program)) {
                continue;
            }
            if text.contains("LEAK: ") || text.contains("AUDIT: ") {
                run.leak_lines.push(line.to_string());
            } else {
                run.failed_lines.push(line.to_string());
            }
        }
    }
    report
}

/// The outcome of one run (`None`: the failure was never injected, nothing to count).
pub fn judge(run: &Run, boot_exit: i32) -> Option<(Outcome, String)> {
    if !run.finished {
        let outcome = if boot_exit == EXIT_TIMEOUT { Outcome::Hang } else { Outcome::Crash };
        return Some((outcome, format!("the boot ended while {} ran", run.program)));
    }
    if !run.leak_lines.is_empty() {
        return Some((Outcome::Leak, run.leak_lines.join("; ")));
    }
    if run.failed == 0 {
        return None;
    }
    if !run.failed_lines.is_empty() {
        return Some((Outcome::Wrong, run.failed_lines.join("; ")));
    }
    let outcome = match run.effect.as_str() {
        "killed" if run.watchdog => Outcome::Hang,
        "killed" => Outcome::Killed,
        "errno" => Outcome::Errno,
        "no-effect" => Outcome::NoEffect,
        _ => Outcome::Wrong,
    };
    Some((outcome, format!("effect={}", run.effect)))
}

/// The run options of one boot of job `job` (each DomU job writes its own xl folder).
fn run_options(options: &SweepOptions, cmdline: String, job: usize) -> RunOptions {
    let common = RunOptions {
        kernel: Some(options.kernel.clone()),
        module: Some(options.module.clone()),
        cmdline,
        memory_mib: options.memory_mib,
        quiet: true,
        ..RunOptions::default()
    };
    // Either path: the console streams as the guest writes it, and a silent console is a hang.
    if options.domu {
        RunOptions {
            mode: Mode::Xl,
            timeout: BOOT_LIMIT,
            silence_timeout: Some(options.timeout),
            xl_console: XlConsole::Live,
            xl_dir: Some(options.out_dir.join(format!("xl-{job}"))),
            ..common
        }
    } else {
        RunOptions {
            mode: Mode::Dom0,
            timeout: BOOT_LIMIT,
            silence_timeout: Some(options.timeout),
            ..common
        }
    }
}

/// The command that boots like the sweep: `--dom0` unless it sweeps the DomU path.
fn run_command(options: &SweepOptions) -> &'static str {
    if options.domu {
        "cargo xtask run --"
    } else {
        "cargo xtask run --dom0 --"
    }
}

/// One boot's work: `point` swept over positions `from`, `from + step`, ... up to `to` in each
/// of `programs`, in order (`step` is the shard count).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    pub point: &'static str,
    pub programs: Vec<String>,
    pub from: u64,
    pub to: u64,
    pub step: u64,
}

/// About this many positions a boot (a boot costs ~2 s of Xen and kernel start; shorter
/// boots spread a long program over the jobs).
pub const POSITIONS_PER_BOOT: u64 = 300;

/// The guest command line of one sweep boot.
pub fn cmdline(options: &SweepOptions, work: &Work) -> String {
    format!(
        "inject={}:sweep={}..{},step={}@programs inject_seed={} test_time={} tests={}",
        work.point,
        work.from,
        work.to,
        work.step,
        options.seed,
        options.test_time,
        work.programs.join(",")
    )
}

/// The one command that replays a case: one boot, one `nth=`.
pub fn replay_command(options: &SweepOptions, case: &Case) -> String {
    format!(
        "{} inject={}:nth={}@{} inject_seed={} test_time={} tests={}",
        run_command(options),
        case.point,
        case.nth,
        case.program,
        options.seed,
        options.test_time,
        case.program
    )
}

/// Positions of `calls` a shard `(k, n)` takes: k, k + n, ... up to `calls` and `max`.
fn positions(calls: u64, (k, n): (u64, u64), max: u64) -> u64 {
    let last = calls.min(max);
    if last < k {
        0
    } else {
        (last - k) / n + 1
    }
}

/// Cuts one point's sweep into boots: a program with more than [`POSITIONS_PER_BOOT`]
/// positions gets boots of its own, each a range of them (the last open up to `max`, in case a
/// run reaches further than the baseline's); the others share boots of up to that many
/// positions.
pub fn plan(options: &SweepOptions, point: &'static str, baseline: &[(String, u64)]) -> Vec<Work> {
    let (k, n) = options.shard;
    let mut split = Vec::new();
    let mut shared: Vec<Work> = Vec::new();
    let mut shared_positions = 0;
    for (program, calls) in baseline {
        let count = positions(*calls, options.shard, options.max);
        if count == 0 {
            continue;
        }
        if count > POSITIONS_PER_BOOT {
            let mut from = k;
            let mut left = count;
            while left > 0 {
                let take = left.min(POSITIONS_PER_BOOT);
                left -= take;
                let to = if left == 0 { options.max } else { from + (take - 1) * n };
                split.push(Work { point, programs: vec![program.clone()], from, to, step: n });
                from = to.saturating_add(n);
            }
            continue;
        }
        match shared.last_mut() {
            Some(work) if shared_positions + count <= POSITIONS_PER_BOOT => {
                work.programs.push(program.clone());
                shared_positions += count;
            }
            _ => {
                let programs = vec![program.clone()];
                shared.push(Work { point, programs, from: k, to: options.max, step: n });
                shared_positions = count;
            }
        }
    }
    split.extend(shared);
    split
}

/// What a boot costs, roughly: a run goes as far as its position, so the sum of the positions
/// it runs (each up to the program's calls in the baseline), plus a fixed cost a run.
pub fn cost(work: &Work, baseline: &[(String, u64)]) -> u64 {
    const RUN: u64 = 50;
    let calls = |program: &String| baseline.iter().find(|(p, _)| p == program).map_or(0, |c| c.1);
    work.programs
        .iter()
        .map(|program| {
            let last = calls(program).min(work.to);
            if last < work.from {
                return 0;
            }
            let count = (last - work.from) / work.step + 1;
            let end = work.from + (count - 1) * work.step;
            count * (work.from + end) / 2 + count * RUN
        })
        .sum()
}

/// A sweep boot's whole limit; a hang is found by the silence timeout long before.
const BOOT_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// Boots one piece of work and judges its runs. A boot that ended early (a crash or a hang)
/// returns the work that is left: the program that was running, from its next position, and
/// the programs after it.
fn boot_work(options: &SweepOptions, work: &Work, job: usize) -> Result<(Vec<Case>, Vec<Work>)> {
    let outcome = run(&run_options(options, cmdline(options, work), job))?;
    let report = parse_boot(outcome.guest_lines(), work.point);
    let log = outcome.log_path.display();
    let mut cases = Vec::new();
    for r in &report.runs {
        let Some(nth) = r.nth else { continue };
        if let Some((outcome_kind, detail)) = judge(r, outcome.exit_code) {
            let detail =
                if outcome_kind.is_clean() { detail } else { format!("{detail} (log: {log})") };
            let program = r.program.clone();
            cases.push(Case { point: work.point, nth, program, outcome: outcome_kind, detail });
        }
    }
    let boot_failed = outcome.exit_code == EXIT_CRASH || outcome.exit_code == EXIT_TIMEOUT;
    let Some(last) = report.runs.last() else {
        if boot_failed || !outcome.passed() {
            return Err(Error::new(format!(
                "{}: the boot ended before any program ran: {} (log: {log})",
                cmdline(options, work),
                outcome.reason,
            )));
        }
        return Ok((cases, Vec::new()));
    };
    if last.finished {
        if boot_failed {
            // Every run ended, and still the kernel crashed or hung afterwards: the last run's
            // injection is the suspect.
            let outcome_kind =
                if outcome.exit_code == EXIT_TIMEOUT { Outcome::Hang } else { Outcome::Crash };
            cases.push(Case {
                point: work.point,
                nth: last.nth.unwrap_or(0),
                program: last.program.clone(),
                outcome: outcome_kind,
                detail: format!(
                    "the boot ended after {} ran: {} (log: {log})",
                    last.program, outcome.reason
                ),
            });
        }
        return Ok((cases, Vec::new()));
    }
    Ok((cases, resume(work, &report.programs, last)))
}

/// The work left after a boot ended during run `last`: that program from its next position,
/// then the programs after it (in the boot's order, `order`, or the work's) from the start.
pub fn resume(work: &Work, order: &[String], last: &Run) -> Vec<Work> {
    let mut rest = Vec::new();
    if let Some(next) = last.nth.and_then(|nth| nth.checked_add(work.step)) {
        if next <= work.to {
            rest.push(Work { programs: vec![last.program.clone()], from: next, ..work.clone() });
        }
    }
    let order = if order.is_empty() { &work.programs } else { order };
    if let Some(i) = order.iter().position(|p| *p == last.program) {
        if i + 1 < order.len() {
            rest.push(Work { programs: order[i + 1..].to_vec(), ..work.clone() });
        }
    }
    rest
}

/// Each program's calls of each point in a run without failures, in the catalogue's order.
pub type Baseline = BTreeMap<&'static str, Vec<(String, u64)>>;

/// A rule that never fires: the guest counts the calls of every point and fails none.
const NEVER: u64 = u64::MAX;

/// One boot with every point armed at a call no program reaches: how far each program gets.
fn baseline(options: &SweepOptions, boots: &mut u64) -> Result<Baseline> {
    let mut line: String =
        options.points.iter().map(|p| format!("inject={p}:nth={NEVER}@programs ")).collect();
    let _ = write!(line, "inject_seed={} test_time={}", options.seed, options.test_time);
    if let Some(tests) = &options.tests {
        let _ = write!(line, " tests={tests}");
    }
    let outcome = run(&run_options(options, line, 0))?;
    *boots += 1;
    if !outcome.passed() {
        return Err(Error::new(format!(
            "the baseline boot (no failure injected) did not pass: {} (log: {})",
            outcome.reason,
            outcome.log_path.display()
        )));
    }
    Ok(baseline_of(outcome.guest_lines().collect::<Vec<_>>(), &options.points))
}

/// The baseline from a boot's lines.
pub fn baseline_of(lines: Vec<&str>, points: &[&'static str]) -> Baseline {
    let mut baseline = Baseline::new();
    for point in points {
        let report = parse_boot(lines.iter().copied(), point);
        let mut calls: Vec<(String, u64)> = Vec::new();
        for r in report.runs {
            match calls.iter_mut().find(|(p, _)| *p == r.program) {
                Some((_, c)) => *c = (*c).max(r.calls),
                None => calls.push((r.program, r.calls)),
            }
        }
        baseline.insert(point, calls);
    }
    baseline
}

/// The queue the jobs share: work not yet taken, and how many boots are running (a boot that
/// ends early puts work back).
#[derive(Default)]
struct Queue {
    work: VecDeque<Work>,
    running: usize,
}

/// Runs the sweep: `jobs` QEMUs at a time take boots from one queue.
pub fn sweep(options: &SweepOptions) -> Result<Vec<Case>> {
    let started = Instant::now();
    let mut baseline_boots = 0;
    let baseline = baseline(options, &mut baseline_boots)?;
    let mut planned = Vec::new();
    for point in &options.points {
        let calls = baseline.get(point).map_or(&[][..], Vec::as_slice);
        let most = calls.iter().map(|(_, c)| *c).max().unwrap_or(0);
        let plan = plan(options, point, calls);
        let count: u64 = calls.iter().map(|(_, c)| positions(*c, options.shard, options.max)).sum();
        eprintln!(
            "xtask: sweep {point}: up to {most} calls a program without failures; {count} positions in {} boots",
            plan.len()
        );
        planned.extend(plan.into_iter().map(|work| (cost(&work, calls), work)));
    }
    // The costliest boots first, so that the jobs end together.
    planned.sort_by_key(|(cost, _)| std::cmp::Reverse(*cost));
    let mut queue = Queue::default();
    queue.work.extend(planned.into_iter().map(|(_, work)| work));
    let planned = queue.work.len();
    let queue = Mutex::new(queue);
    let cases: Mutex<Vec<Case>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<Error>> = Mutex::new(Vec::new());
    let boots = Mutex::new(baseline_boots);
    thread::scope(|scope| {
        for job in 0..options.jobs.max(1) {
            let (queue, cases, errors, boots) = (&queue, &cases, &errors, &boots);
            scope.spawn(move || loop {
                let work = {
                    let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                    match queue.work.pop_front() {
                        Some(work) => {
                            queue.running += 1;
                            work
                        }
                        None if queue.running == 0 => return,
                        None => {
                            drop(queue);
                            thread::sleep(Duration::from_millis(200));
                            continue;
                        }
                    }
                };
                let boot_started = Instant::now();
                let result = boot_work(options, &work, job);
                let mut queue = queue.lock().unwrap_or_else(|p| p.into_inner());
                queue.running -= 1;
                let done = {
                    let mut boots = boots.lock().unwrap_or_else(|p| p.into_inner());
                    *boots += 1;
                    *boots - baseline_boots
                };
                match result {
                    Ok((found, rest)) => {
                        let to = match work.to {
                            u64::MAX => "end".to_string(),
                            to => to.to_string(),
                        };
                        eprintln!(
                            "xtask: sweep {} {}..{to} in {} program(s): {} cases, {:.0} s (boot {done}; {planned} planned, {} queued)",
                            work.point,
                            work.from,
                            work.programs.len(),
                            found.len(),
                            boot_started.elapsed().as_secs_f64(),
                            queue.work.len() + rest.len(),
                        );
                        for rest in rest.into_iter().rev() {
                            queue.work.push_front(rest);
                        }
                        cases.lock().unwrap_or_else(|p| p.into_inner()).extend(found);
                    }
                    Err(error) => {
                        // A boot that cannot be judged stops the sweep; the running ones finish.
                        queue.work.clear();
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push(error);
                    }
                }
            });
        }
    });
    if let Some(error) = errors.into_inner().unwrap_or_else(|p| p.into_inner()).pop() {
        return Err(error);
    }
    let boots = boots.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut cases = cases.into_inner().unwrap_or_else(|p| p.into_inner());
    let point_index = |p: &str| POINTS.iter().position(|q| *q == p).unwrap_or(POINTS.len());
    cases.sort_by(|a, b| {
        (point_index(a.point), &a.program, a.nth).cmp(&(point_index(b.point), &b.program, b.nth))
    });
    let text = table(options, &cases, boots, started.elapsed());
    print!("{text}");
    fs::create_dir_all(&options.out_dir)
        .context(|| format!("cannot create {}", options.out_dir.display()))?;
    let path = options.out_dir.join(format!(
        "sweep-{}-shard{}of{}.txt",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        options.shard.0,
        options.shard.1
    ));
    fs::write(&path, &text).context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: sweep table saved to {}", path.display());
    if let Some(junit_path) = &options.junit {
        write_junit(junit_path, &cases, started.elapsed())?;
        eprintln!("xtask: JUnit report: {}", junit_path.display());
    }
    Ok(cases)
}

/// The table of point x outcome, the cases that are not clean with their replay commands, and
/// the summary line.
pub fn table(options: &SweepOptions, cases: &[Case], boots: u64, elapsed: Duration) -> String {
    let mut text = String::new();
    let _ = write!(text, "{:<18}", "point");
    for outcome in Outcome::ALL {
        let _ = write!(text, " {:>9}", outcome.word());
    }
    let _ = writeln!(text, " {:>9}", "cases");
    for point in &options.points {
        let of_point: Vec<&Case> = cases.iter().filter(|c| c.point == *point).collect();
        let _ = write!(text, "{point:<18}");
        for outcome in Outcome::ALL {
            let count = of_point.iter().filter(|c| c.outcome == outcome).count();
            let _ = write!(text, " {count:>9}");
        }
        let _ = writeln!(text, " {:>9}", of_point.len());
    }
    for case in cases.iter().filter(|c| !c.outcome.is_clean()) {
        let _ = writeln!(
            text,
            "{} {} nth={} in {}: {}\n  replay: {}",
            case.outcome.word().to_uppercase(),
            case.point,
            case.nth,
            case.program,
            case.detail,
            replay_command(options, case)
        );
    }
    let count = |o: Outcome| cases.iter().filter(|c| c.outcome == o).count();
    let _ = writeln!(
        text,
        "sweep: {} cases, {} killed, {} errno, {} no-effect, {} crash, {} leak, {} hang",
        cases.len(),
        count(Outcome::Killed),
        count(Outcome::Errno),
        count(Outcome::NoEffect),
        count(Outcome::Crash),
        count(Outcome::Leak),
        count(Outcome::Hang),
    );
    let _ = writeln!(
        text,
        "sweep: {} wrong results, {boots} boots, {:.0} s, --max {}, shard {}/{}, seed {}",
        count(Outcome::Wrong),
        elapsed.as_secs_f64(),
        if options.max == u64::MAX { "all".to_string() } else { options.max.to_string() },
        options.shard.0,
        options.shard.1,
        options.seed
    );
    text
}

fn write_junit(path: &Path, cases: &[Case], elapsed: Duration) -> Result<()> {
    let junit_cases: Vec<junit::Case> = cases
        .iter()
        .map(|case| junit::Case {
            class: case.point,
            name: format!("{} nth={}", case.program, case.nth),
            status: if case.outcome.is_clean() { CaseStatus::Passed } else { CaseStatus::Failed },
            line: format!("{}: {}", case.outcome.word(), case.detail),
        })
        .collect();
    let xml = junit::render("faultline-sweep", &junit_cases, elapsed.as_secs_f64());
    fs::write(path, xml).context(|| format!("cannot write {}", path.display()))
}

/// Parses `--shard K/N`.
pub fn parse_shard(text: &str) -> Option<(u64, u64)> {
    let (k, n) = text.split_once('/')?;
    let (k, n) = (k.parse().ok()?, n.parse().ok()?);
    (n >= 1 && (1..=n).contains(&k)).then_some((k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
inject: program hello
inject: program cow_data
inject: program leaky
inject: start hello nth=3
ok 1 - hello: could not start after the injected frame failure at call 3: copying its initial stack failed
inject: hello: frame calls=3 failed=1 first=3 effect=errno
inject: start cow_data nth=3
ok 2 - cow_data: exited with status 0, as expected
inject: cow_data: frame calls=2 failed=0 first=0 effect=not-reached
inject: start leaky nth=3
not ok 3 - leaky: killed by running out of memory after the injected frame failure at call 3 (expected without it: exit 0); LEAK: 1 frames not back in the pool after the run; AUDIT: table pages live 9 -> 10
inject: leaky: frame calls=9 failed=1 first=3 effect=killed
inject: start looper nth=2
ok 4 - looper: killed by the watchdog, rip 0x400100 after the injected frame failure at call 2 (expected without it: exit 0)
inject: looper: frame calls=2 failed=1 first=2 effect=killed
inject: start crashy nth=7
";

    #[test]
    fn a_boot_report_gives_each_run_its_outcome() {
        let report = parse_boot(LOG.lines(), "frame");
        assert_eq!(report.programs, ["hello", "cow_data", "leaky"]);
        assert_eq!(report.runs.len(), 5);
        let judged: Vec<_> =
            report.runs.iter().map(|r| judge(r, EXIT_CRASH).map(|(o, _)| o)).collect();
        let expected = [Outcome::Errno, Outcome::Leak, Outcome::Hang, Outcome::Crash];
        let expected =
            [Some(expected[0]), None, Some(expected[1]), Some(expected[2]), Some(expected[3])];
        assert_eq!(judged, expected);
        assert_eq!(report.runs[2].leak_lines.len(), 1);
        assert_eq!(report.runs[2].calls, 9);
        assert_eq!(
            report.runs.iter().map(|r| r.nth).collect::<Vec<_>>(),
            [3, 3, 3, 2, 7].map(Some)
        );
        let hang = judge(&report.runs[4], EXIT_TIMEOUT).unwrap().0;
        assert_eq!(hang, Outcome::Hang);
        let baseline = baseline_of(LOG.lines().collect(), &["frame", "heap"]);
        assert_eq!(baseline["frame"][2], ("leaky".to_string(), 9));
        assert!(baseline["heap"].iter().all(|(_, calls)| *calls == 0));
    }

    #[test]
    fn the_echoed_command_line_is_no_result() {
        let report = parse_boot(["cmdline: \"inject=frame:nth=1@programs\""], "frame");
        assert_eq!(report, BootReport::default());
    }

    fn options(max: u64, shard: (u64, u64)) -> SweepOptions {
        SweepOptions {
            points: POINTS.to_vec(),
            max,
            jobs: 1,
            shard,
            junit: None,
            seed: 7,
            test_time: "3s".into(),
            tests: None,
            kernel: PathBuf::new(),
            module: PathBuf::new(),
            memory_mib: 8,
            timeout: Duration::from_secs(60),
            out_dir: PathBuf::new(),
            domu: false,
        }
    }

    #[test]
    fn shards_and_replays() {
        assert_eq!(parse_shard("2/4"), Some((2, 4)));
        assert_eq!(parse_shard("0/4"), None);
        assert_eq!(parse_shard("5/4"), None);
        let options = options(3, (1, 1));
        let case = Case {
            point: "table",
            nth: 2,
            program: "cow_data".into(),
            outcome: Outcome::Leak,
            detail: String::new(),
        };
        assert_eq!(
            replay_command(&options, &case),
            "cargo xtask run --dom0 -- inject=table:nth=2@cow_data inject_seed=7 test_time=3s tests=cow_data"
        );
        let work =
            Work { point: "heap", programs: vec!["a".into(), "b".into()], from: 4, to: 9, step: 2 };
        assert_eq!(
            cmdline(&options, &work),
            "inject=heap:sweep=4..9,step=2@programs inject_seed=7 test_time=3s tests=a,b"
        );
        let text = table(&options, &[case], 5, Duration::from_secs(9));
        assert!(text
            .contains("sweep: 1 cases, 0 killed, 0 errno, 0 no-effect, 0 crash, 1 leak, 0 hang"));
        assert!(text.contains("replay: cargo xtask run --dom0"));
    }

    #[test]
    fn a_boot_that_ended_early_resumes_after_the_case_that_ended_it() {
        let names = |n: &[&str]| n.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let work =
            Work { point: "frame", programs: names(&["a", "b", "c"]), from: 2, to: 50, step: 3 };
        let report = parse_boot(LOG.lines(), "frame");
        let crashy = report.runs.last().unwrap();
        assert_eq!(
            (crashy.program.as_str(), crashy.nth, crashy.finished),
            ("crashy", Some(7), false)
        );
        let order = names(&["hello", "crashy", "leaky"]);
        let baseline = vec![("crashy".to_string(), 12), ("leaky".to_string(), 100)];
        // crashy: 2, 5, 8, 11; leaky: 2, 5, ..., 50 (17 positions); 50 a run.
        assert_eq!(
            cost(&Work { programs: order.clone(), ..work.clone() }, &baseline),
            26 + 200 + 442 + 850
        );
        assert_eq!(
            resume(&work, &order, crashy),
            [
                Work { programs: names(&["crashy"]), from: 10, ..work.clone() },
                Work { programs: names(&["leaky"]), ..work.clone() },
            ]
        );
        let last = Run { program: "c".into(), nth: Some(48), ..Run::default() };
        assert_eq!(resume(&work, &[], &last), [], "51 is past the range; c was the last program");
    }

    #[test]
    fn a_plan_covers_every_position_once_in_boots_of_bounded_size() {
        let baseline: Vec<(String, u64)> = [("big", 700), ("none", 0), ("a", 200), ("b", 150)]
            .iter()
            .map(|(p, c)| (p.to_string(), *c))
            .collect();
        let whole = plan(&options(u64::MAX, (1, 1)), "frame", &baseline);
        let ranges: Vec<_> =
            whole.iter().map(|w| (w.programs.join(","), w.from, w.to, w.step)).collect();
        let expected = [
            ("big", 1, 300, 1),
            ("big", 301, 600, 1),
            ("big", 601, u64::MAX, 1),
            ("a", 1, u64::MAX, 1),
            ("b", 1, u64::MAX, 1),
        ];
        let expected: Vec<_> =
            expected.iter().map(|(p, f, t, s)| (p.to_string(), *f, *t, *s)).collect();
        assert_eq!(ranges, expected, "a and b together would be 350 positions");
        // A shard takes every Nth position; --max bounds the last.
        let sharded = plan(&options(650, (2, 3)), "frame", &baseline);
        let ranges: Vec<_> =
            sharded.iter().map(|w| (w.programs.join(","), w.from, w.to, w.step)).collect();
        let expected = [("big,a", 2, 650, 3), ("b", 2, 650, 3)];
        let expected: Vec<_> =
            expected.iter().map(|(p, f, t, s)| (p.to_string(), *f, *t, *s)).collect();
        assert_eq!(ranges, expected, "217 + 67 positions in one boot; 50 more would pass 300");
        assert_eq!(positions(650, (2, 3), 650), 217);
    }
}
