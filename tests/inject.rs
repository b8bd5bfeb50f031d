//! Kernel fault injection under Xen: an injected failure inside one program is survived (the
//! program is killed or refused, the kernel runs on and the audit finds nothing), Xen's own
//! refusal comes back through the real error path, a boot-critical failure ends in a clean
//! report, and a small sweep judges every case clean.

use std::time::Duration;

use faultline_tests::{boot, boot_with, ShutdownReason, Verdict, EXIT_CRASH, EXIT_SUCCESS};
use xtask::sweep::{self, Outcome, SweepOptions};
use xtask::RunOptions;

fn with_programs(cmdline: &str) -> faultline_tests::Boot {
    boot_with(RunOptions { cmdline: cmdline.to_string(), programs: true, ..RunOptions::default() })
}

/// The `inject: NAME: POINT ...` lines the suite prints after each run (never the echo of the
/// command line, which is `cmdline: "..."`).
fn inject_lines<'a>(lines: &[&'a str], program: &str) -> Vec<&'a str> {
    let prefix = format!("inject: {program}: ");
    lines.iter().copied().filter(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn a_frame_failure_in_one_program_is_survived_and_audited() {
    let run = with_programs("inject=frame:nth=5@cow_data inject_seed=1 tests=hello,cow_data");
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    let lines = run.guest_lines();
    assert!(lines.iter().any(|l| l.starts_with("inject: armed frame scope cow_data")));
    let cow = inject_lines(&lines, "cow_data");
    assert_eq!(cow.len(), 2, "one line per run of cow_data: {cow:#?}");
    for line in cow {
        assert!(line.starts_with("inject: cow_data: frame calls=5 failed=1 first=5 effect="));
        assert!(line.ends_with("effect=errno") || line.ends_with("effect=killed"), "{line}");
    }
    assert_eq!(
        inject_lines(&lines, "hello"),
        ["inject: hello: frame calls=0 failed=0 first=0 effect=not-reached"],
        "the scope is one program"
    );
    assert!(lines.iter().any(|l| l.starts_with("ok 1 - hello: exited with status 0, as expected")));
    assert!(lines.iter().any(|l| l.starts_with("ok 2 - cow_data: ")
        && l.contains("after the injected frame failure at call 5")));
    let bad: Vec<_> = lines.iter().filter(|l| l.starts_with("not ok")).collect();
    assert!(bad.is_empty(), "no LEAK, no AUDIT, no failed program: {bad:#?}");
}

#[test]
fn xen_itself_refuses_the_injected_entry_and_the_kernel_runs_on() {
    let run = with_programs("inject=mmu_update:nth=5@c_hello inject_seed=1 tests=c_hello,hello");
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    let lines = run.guest_lines();
    // The kernel's record of the failed call carries Xen's errno: EINVAL from Xen's
    // do_mmu_update for a machine frame no domain owns (a refusal the kernel only simulated
    // would not be -22: see NOT_REFUSED in kernel/src/xen/mmu.rs).
    assert!(
        lines.contains(
            &"# c_hello: after the injected failure, 1 failed kernel call(s), first: mapping a user page (Xen: EINVAL (-22))"
        ),
        "Xen's EINVAL"
    );
    assert_eq!(
        inject_lines(&lines, "c_hello"),
        ["inject: c_hello: mmu_update calls=6 failed=1 first=5 effect=killed"]
    );
    assert!(
        lines.iter().any(|l| l.starts_with("ok ") && l.contains(" - hello: exited with status 0")),
        "the kernel runs on"
    );
    let bad: Vec<_> = lines.iter().filter(|l| l.starts_with("not ok")).collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A boot-critical failure (README: the points whose boot-time calls cannot be survived) ends
/// in the kernel's crash report naming the injected failure, and a crash shutdown.
#[track_caller]
fn assert_boot_critical_crash(run: &faultline_tests::Boot, boot_line: &str, injected: &str) {
    run.assert_exit(EXIT_CRASH);
    assert_eq!(run.outcome.shutdown, ShutdownReason::Crash, "SHUTDOWN_crash");
    assert_eq!(run.outcome.verdict, None, "a crash prints no verdict");
    let lines = run.guest_lines();
    let panic = lines
        .iter()
        .position(|l| l.starts_with("*** faultline: PANIC: "))
        .unwrap_or_else(|| panic!("no crash report: {lines:#?}"));
    let report = &lines[panic..];
    assert_eq!(
        report.get(1).copied(),
        Some(format!("{boot_line}: the boot cannot go on after an injected failure").as_str())
    );
    assert_eq!(report.get(2).copied(), Some(injected), "the report names the failure");
    assert!(report.iter().any(|l| l.contains("faultline::start::boot_error")), "{report:#?}");
    assert_eq!(report.last().copied(), Some("*** faultline: crashing the domain"));
    assert!(!lines.iter().any(|l| l.starts_with("[ERROR] boot:")), "not the ERROR report");
}

#[test]
fn a_boot_critical_failure_ends_in_a_crash_report_naming_it() {
    let run = boot("inject=evtchn:nth=1 selftest=none");
    assert_boot_critical_crash(
        &run,
        "boot: event channels (callbacks, VIRQ_TIMER): EINVAL (-22)",
        "    injected: evtchn failure at call 1",
    );
    // The direct map's first batch: entries before the drawn position applied, then Xen's EINVAL.
    let run = boot("inject=mmu_update:nth=1 inject_seed=3 selftest=none");
    assert_boot_critical_crash(
        &run,
        "boot: memory manager: building the direct map: Hypervisor(BatchFailure { done: 3, errno: EINVAL (-22) })",
        "    injected: mmu_update failure at call 1",
    );
}

#[test]
fn one_boot_sweeps_a_program_until_it_no_longer_reaches_the_position() {
    // hello makes 8 frame calls: positions 1..=8 fail one each, 9 is not reached and ends the
    // loop; cow_data is outside the scope and runs as always, twice.
    let run = with_programs("inject=frame:sweep=1..100@hello inject_seed=1 tests=hello,cow_data");
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    let lines = run.guest_lines();
    let starts: Vec<&str> =
        lines.iter().copied().filter(|l| l.starts_with("inject: start hello")).collect();
    let expected: Vec<String> = (1..=9).map(|n| format!("inject: start hello nth={n}")).collect();
    assert_eq!(starts, expected);
    let hello = inject_lines(&lines, "hello");
    for (n, line) in hello.iter().enumerate().take(8) {
        let n = n + 1;
        assert!(line.starts_with(&format!("inject: hello: frame calls={n} failed=1 first={n} ")));
    }
    assert_eq!(hello[8], "inject: hello: frame calls=8 failed=0 first=0 effect=not-reached");
    assert_eq!(hello.len(), 9);
    assert_eq!(inject_lines(&lines, "cow_data").len(), 2, "out of scope: its two runs");
    assert!(lines.contains(&"1..11"), "the plan comes last: 9 + 2 runs");
    run.assert_tap_parses();
    let bad: Vec<_> = lines.iter().filter(|l| l.starts_with("not ok")).collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn a_small_sweep_finds_every_case_clean() {
    let kernel = faultline_tests::kernel().to_path_buf();
    let module = xtask::programs::build_archive(&[], true).expect("the test programs build");
    let options = SweepOptions {
        points: vec!["frame", "table", "heap"],
        max: 16,
        jobs: 2,
        // Positions 1, 5, 9 and 13 of each point: a slice, as one machine of a CI matrix runs.
        shard: (1, 4),
        junit: None,
        seed: 1,
        test_time: "5s".into(),
        tests: Some("hello,cow_data,demand_sparse,mprotect_write".into()),
        kernel,
        module,
        memory_mib: xtask::DEFAULT_MEMORY_MIB,
        timeout: Duration::from_secs(120),
        out_dir: xtask::workspace::target_dir().join("sweep-tests"),
        domu: false,
    };
    let cases = sweep::sweep(&options).expect("the sweep boots");
    let not_clean: Vec<_> = cases.iter().filter(|c| !c.outcome.is_clean()).collect();
    assert!(not_clean.is_empty(), "{not_clean:#?}");
    for point in ["frame", "table", "heap"] {
        assert!(cases.iter().any(|c| c.point == point), "no case of {point}");
    }
    assert!(cases.iter().any(|c| c.outcome == Outcome::Killed), "a fault's failure kills");
    assert!(cases.iter().any(|c| c.outcome == Outcome::Errno), "a start's failure refuses");
}
