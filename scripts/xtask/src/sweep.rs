//! `cargo xtask sweep`: every kernel injection point failed at call 1, 2, ..., N of every
//! program, with as few boots as the programs allow.
//!
//! One boot injects into every program at once: the guest command line
//! `inject=POINT:nth=N@programs` counts each program's calls from 1, so one boot fails call N
//! of every program (see `kernel/src/testing/inject.rs`). The next boot of that point (N + 1)
//! runs only the programs whose call count reached N + 1 (`tests=`); the point is done when no
//! program reaches the next call, or at `--max`. A boot that ends in a crash or a hang is booted
//! again for the programs after the one that was running. The guest prints, per program,
//! `inject: start NAME`, the run's TAP line (`not ok` with `LEAK:` or `AUDIT:` when the audit
//! found something) and then `inject: NAME: POINT calls=C failed=F first=N effect=E`; those make
//! the table.

use std::collections::BTreeMap;
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
    pub timeout: Duration,
    /// Where the table goes (`target/sweep`).
    pub out_dir: PathBuf,
}

/// One program run of one boot, as the guest reported it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub program: String,
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
        } else if let Some(name) = line.strip_prefix("inject: start ") {
            report.runs.push(Run { program: name.to_string(), ..Run::default() });
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

/// The guest command line of one boot.
pub fn cmdline(
    options: &SweepOptions,
    point: &str,
    nth: u64,
    programs: Option<&[String]>,
) -> String {
    let mut line = format!(
        "inject={point}:nth={nth}@programs inject_seed={} test_time={}",
        options.seed, options.test_time
    );
    if let Some(programs) = programs {
        let _ = write!(line, " tests={}", programs.join(","));
    } else if let Some(tests) = &options.tests {
        let _ = write!(line, " tests={tests}");
    }
    line
}

/// The one command that replays a case.
pub fn replay_command(options: &SweepOptions, case: &Case) -> String {
    format!(
        "cargo xtask run --dom0 -- inject={}:nth={}@{} inject_seed={} test_time={} tests={}",
        case.point, case.nth, case.program, options.seed, options.test_time, case.program
    )
}

/// Boots once and reports; a crash or a hang is booted again for the programs after the one
/// that was running, so every selected program is judged.
fn boot_all(
    options: &SweepOptions,
    point: &'static str,
    nth: u64,
    programs: Option<Vec<String>>,
    boots: &mut u64,
) -> Result<(Vec<Run>, Vec<Case>)> {
    let mut runs = Vec::new();
    let mut cases = Vec::new();
    let mut selection = programs;
    loop {
        let run_options = RunOptions {
            mode: Mode::Dom0,
            kernel: Some(options.kernel.clone()),
            module: Some(options.module.clone()),
            cmdline: cmdline(options, point, nth, selection.as_deref()),
            memory_mib: options.memory_mib,
            timeout: options.timeout,
            quiet: true,
            ..RunOptions::default()
        };
        let outcome = run(&run_options)?;
        *boots += 1;
        let report = parse_boot(outcome.guest_lines(), point);
        for r in &report.runs {
            if let Some((outcome_kind, detail)) = judge(r, outcome.exit_code) {
                let detail = if outcome_kind.is_clean() {
                    detail
                } else {
                    format!("{detail} (log: {})", outcome.log_path.display())
                };
                cases.push(Case {
                    point,
                    nth,
                    program: r.program.clone(),
                    outcome: outcome_kind,
                    detail,
                });
            }
        }
        runs.extend(report.runs.iter().cloned());
        let ended_early = report.runs.last().is_some_and(|r| !r.finished)
            || (outcome.exit_code == EXIT_CRASH || outcome.exit_code == EXIT_TIMEOUT)
                && report.runs.is_empty();
        if !ended_early {
            return Ok((runs, cases));
        }
        // The programs after the one that was running, in the boot's order.
        let order = if report.programs.is_empty() {
            selection.clone().unwrap_or_default()
        } else {
            report.programs.clone()
        };
        let Some(last) = report.runs.last() else {
            return Err(Error::new(format!(
                "{point} nth={nth}: the boot ended before any program ran: {} (log: {})",
                outcome.reason,
                outcome.log_path.display()
            )));
        };
        let position = order.iter().position(|p| *p == last.program);
        let rest: Vec<String> = position.map(|i| order[i + 1..].to_vec()).unwrap_or_default();
        if rest.is_empty() {
            return Ok((runs, cases));
        }
        selection = Some(rest);
    }
}

/// The results of one point.
#[derive(Clone, Debug, Default)]
struct PointResult {
    cases: Vec<Case>,
    boots: u64,
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
    let run_options = RunOptions {
        mode: Mode::Dom0,
        kernel: Some(options.kernel.clone()),
        module: Some(options.module.clone()),
        cmdline: line,
        memory_mib: options.memory_mib,
        timeout: options.timeout,
        quiet: true,
        ..RunOptions::default()
    };
    let outcome = run(&run_options)?;
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

/// Sweeps one point: nth = the shard's positions up to `max`, each boot with the programs that
/// reach that call without failures.
fn sweep_point(
    options: &SweepOptions,
    point: &'static str,
    baseline: &[(String, u64)],
) -> Result<PointResult> {
    let mut result = PointResult::default();
    let (k, n) = options.shard;
    let mut nth = k;
    while nth <= options.max {
        let reaching: Vec<String> =
            baseline.iter().filter(|(_, calls)| *calls >= nth).map(|(p, _)| p.clone()).collect();
        if reaching.is_empty() {
            break;
        }
        let (_, cases) = boot_all(options, point, nth, Some(reaching), &mut result.boots)?;
        result.cases.extend(cases);
        nth += n;
    }
    Ok(result)
}

/// Runs the sweep: `jobs` points at a time, each point's boots one after another.
pub fn sweep(options: &SweepOptions) -> Result<Vec<Case>> {
    let started = Instant::now();
    let mut baseline_boots = 0;
    let baseline = baseline(options, &mut baseline_boots)?;
    for (point, calls) in &baseline {
        let most = calls.iter().map(|(_, c)| *c).max().unwrap_or(0);
        eprintln!(
            "xtask: sweep {point}: up to {most} calls a program without failures; positions 1..={}",
            most.min(options.max)
        );
    }
    let queue = Mutex::new(options.points.clone());
    let results: Mutex<BTreeMap<usize, (PointResult, Duration)>> = Mutex::new(BTreeMap::new());
    let errors: Mutex<Vec<Error>> = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            scope.spawn(|| loop {
                let Some(point) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                    return;
                };
                let point_started = Instant::now();
                let calls = baseline.get(point).map_or(&[][..], Vec::as_slice);
                match sweep_point(options, point, calls) {
                    Ok(result) => {
                        eprintln!(
                            "xtask: sweep {point}: {} cases in {} boots ({:.0} s)",
                            result.cases.len(),
                            result.boots,
                            point_started.elapsed().as_secs_f64()
                        );
                        let index = POINTS.iter().position(|p| *p == point).unwrap_or(0);
                        results
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(index, (result, point_started.elapsed()));
                    }
                    Err(error) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(error),
                }
            });
        }
    });
    if let Some(error) = errors.into_inner().unwrap_or_else(|p| p.into_inner()).pop() {
        return Err(error);
    }
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let boots: u64 = baseline_boots + results.values().map(|(r, _)| r.boots).sum::<u64>();
    let cases: Vec<Case> = results.into_values().flat_map(|(r, _)| r.cases).collect();
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
        options.max,
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
inject: start hello
ok 1 - hello: could not start after the injected frame failure at call 3: copying its initial stack failed
inject: hello: frame calls=3 failed=1 first=3 effect=errno
inject: start cow_data
ok 2 - cow_data: exited with status 0, as expected
inject: cow_data: frame calls=2 failed=0 first=0 effect=not-reached
inject: start leaky
not ok 3 - leaky: killed by running out of memory after the injected frame failure at call 3 (expected without it: exit 0); LEAK: 1 frames not back in the pool after the run; AUDIT: table pages live 9 -> 10
inject: leaky: frame calls=9 failed=1 first=3 effect=killed
inject: start looper
ok 4 - looper: killed by the watchdog, rip 0x400100 after the injected frame failure at call 2 (expected without it: exit 0)
inject: looper: frame calls=2 failed=1 first=2 effect=killed
inject: start crashy
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

    #[test]
    fn shards_and_replays() {
        assert_eq!(parse_shard("2/4"), Some((2, 4)));
        assert_eq!(parse_shard("0/4"), None);
        assert_eq!(parse_shard("5/4"), None);
        let options = SweepOptions {
            points: POINTS.to_vec(),
            max: 3,
            jobs: 1,
            shard: (1, 1),
            junit: None,
            seed: 7,
            test_time: "3s".into(),
            tests: None,
            kernel: PathBuf::new(),
            module: PathBuf::new(),
            memory_mib: 8,
            timeout: Duration::from_secs(60),
            out_dir: PathBuf::new(),
        };
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
        assert_eq!(
            cmdline(&options, "heap", 4, Some(&["a".into(), "b".into()])),
            "inject=heap:nth=4@programs inject_seed=7 test_time=3s tests=a,b"
        );
        let text = table(&options, &[case], 5, Duration::from_secs(9));
        assert!(text
            .contains("sweep: 1 cases, 0 killed, 0 errno, 0 no-effect, 0 crash, 1 leak, 0 hang"));
        assert!(text.contains("replay: cargo xtask run --dom0"));
    }
}
