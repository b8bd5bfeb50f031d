//! Threads of a test program on several vCPUs: musl's pthreads on faultline's clone, futex,
//! set_tid_address, gettid, exit and exit_group, and the whole program's end.
//!
//! What each proves, from lines only working threads print (the programs are
//! tests/programs/c/threads_*.c, each with `vcpus 2` in its expectation):
//! - two threads run at once on two vCPUs: the worker's tid differs from the main thread's (1,
//!   the pid), the main thread's FUTEX_WAKE wakes the worker sleeping in FUTEX_WAIT on the other
//!   vCPU, FUTEX_WAIT answers EAGAIN and ETIMEDOUT, pthread_join returns the worker's result
//!   (it waits for the kernel's clear-tid store and wake at the worker's exit), a second thread
//!   gets the vCPU the first one left, and the leak audit finds nothing (a leak makes the
//!   TAP line `not ok`);
//! - a kill (#UD) on the worker ends the main thread asleep in pthread_join; the worker's
//!   exit_group(5) takes the main thread out of a user-mode spin (only an IPI can); the main
//!   thread's `exit` leaves the program to its worker, whose status is the program's (as on
//!   Linux); the watchdog ends a thread spinning on vCPU 1 and its joiner on vCPU 0; the main
//!   thread's exit_group takes a worker out of a user-mode spin on vCPU 1 (only the IPI of the
//!   program's end can, before vCPU 0 gives up waiting for it with an `[ERROR]` line); a kill
//!   on the main thread cuts a worker's minute-long nanosleep short (the same `[ERROR]` line
//!   otherwise);
//! - with three vCPUs a thread on vCPU 1 starts and joins one on vCPU 2, and once both other
//!   vCPUs hold threads, pthread_create fails with EAGAIN (threads_nested.c, `vcpus 3`); a
//!   pthread_cond_broadcast wakes two waiters (musl moves the second to the mutex with
//!   FUTEX_REQUEUE; threads_cond_broadcast.c, `vcpus 3`);
//! - a vCPU whose acknowledgement IPI Xen refused (injected) stays online for the next threaded
//!   program, and the failure is reported with the run, never turned into a SKIP;
//! - with one vCPU the same programs are skipped with a TAP SKIP line and the boot passes;
//! - the same programs pass as a DomU with two vCPUs.

use faultline_tests::{boot_with, domu_options, Boot, Verdict, EXIT_SUCCESS};
use xtask::RunOptions;

const THREADED: &str = "c_threads_basic,c_threads_kill,c_threads_exit_group,c_threads_main_exit,\
                        c_threads_watchdog,c_threads_spin_exit_group,c_threads_kill_sleeper";

/// Fails unless some TAP line passes `name` with exactly `verdict` (nothing after it: a leak,
/// an audit mismatch or a failed kernel call would follow it on the same line, as `not ok`).
#[track_caller]
fn assert_passed(run: &Boot, name: &str, verdict: &str) {
    let lines = run.guest_lines();
    let found = lines.iter().any(|line| {
        line.starts_with("ok ")
            && line.split_once(" - ").is_some_and(|(_, rest)| {
                rest.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(": "))
                    .is_some_and(|r| r == verdict)
            })
    });
    assert!(found, "no `ok N - {name}: {verdict}` in:\n{}", lines.join("\n"));
}

/// Fails unless some TAP line says `name` was `killed by <cause>, rip 0x...` as expected.
#[track_caller]
fn assert_killed(run: &Boot, name: &str, cause: &str) {
    let killed = run.guest_lines().into_iter().any(|line| {
        line.starts_with("ok ")
            && line.contains(&format!(" - {name}: killed by {cause}, rip 0x"))
            && line.ends_with(", as expected")
    });
    assert!(killed, "{name} was not killed by {cause} as expected");
}

/// What the threaded programs print and end with, on any path with two vCPUs.
fn assert_threads_work(run: &Boot) {
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    run.assert_no_error_line();
    let basic = "# c_threads_basic: threads_basic: ";
    run.assert_line(&format!("{basic}main tid 1 pid 1"));
    run.assert_line(&format!(
        "{basic}FUTEX_WAIT on another value: EAGAIN, on the value with 10 ms: ETIMEDOUT"
    ));
    run.assert_line(&format!("{basic}worker tid 2 (first)"));
    run.assert_line(&format!("{basic}main's FUTEX_WAKE woke 1 waiter(s)"));
    run.assert_line(&format!("{basic}pthread_join: 0, result 207, main's tls tid still 1"));
    run.assert_line(&format!("{basic}a second thread: 0, tid 3"));
    assert_passed(run, "c_threads_basic", "exited with status 0, as expected");
    assert_killed(run, "c_threads_kill", "#UD");
    assert_killed(run, "c_threads_kill_sleeper", "#UD");
    run.assert_line(
        "# c_threads_main_exit: threads_main_exit: the worker outlived the main thread",
    );
    assert_passed(run, "c_threads_exit_group", "exited with status 5, as expected");
    assert_passed(run, "c_threads_main_exit", "exited with status 5, as expected");
    assert_passed(run, "c_threads_spin_exit_group", "exited with status 6, as expected");
    assert_killed(run, "c_threads_watchdog", "the watchdog");
}

#[test]
fn threads_run_on_two_vcpus_as_dom0() {
    let run = boot_with(RunOptions {
        vcpus: 2,
        programs: true,
        cmdline: format!("tests={THREADED}"),
        ..RunOptions::default()
    });
    assert_threads_work(&run);
}

#[test]
fn threaded_programs_are_skipped_with_one_vcpu() {
    let run = boot_with(RunOptions {
        programs: true,
        cmdline: format!("tests={THREADED}"),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    for (n, name) in THREADED.split(',').enumerate() {
        run.assert_line(&format!("ok {} - {name} # SKIP needs 2 vCPUs, 1 online", n + 1));
    }
    let ran = run.guest_lines().into_iter().any(|line| line.starts_with("# c_threads_"));
    assert!(!ran, "a skipped program ran");
}

#[test]
fn threads_run_on_two_vcpus_as_a_domu() {
    let xl_dir = xtask::workspace::target_dir().join("xl-threads");
    let run = boot_with(RunOptions {
        vcpus: 2,
        xl_dir: Some(xl_dir),
        ..domu_options(&format!("tests={THREADED}"))
    });
    run.assert_guest_line_starts_with("domain: DomU");
    assert_threads_work(&run);
}

#[test]
fn a_crash_report_names_its_vcpu_when_there_are_several() {
    let run = boot_with(RunOptions {
        vcpus: 2,
        cmdline: "selftest=expect-elsewhere".into(),
        ..RunOptions::default()
    });
    run.assert_crash_report("unexpected exception #UD (invalid opcode, vector 6) in kernel mode");
    run.assert_line("    on vCPU 0");
}

#[test]
fn a_thread_starts_a_thread_and_the_vcpus_run_out_with_eagain() {
    let run = boot_with(RunOptions {
        vcpus: 3,
        programs: true,
        cmdline: "tests=c_threads_nested,c_threads_basic".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    run.assert_no_error_line();
    let nested = "# c_threads_nested: threads_nested: ";
    run.assert_line(&format!("{nested}thread 2 started and joined thread 3: 0"));
    run.assert_line(&format!("{nested}three pthread_create with two free vCPUs: 0 0 EAGAIN"));
    assert_passed(&run, "c_threads_nested", "exited with status 0, as expected");
    // Needs 2, runs with 3.
    assert_passed(&run, "c_threads_basic", "exited with status 0, as expected");
}

#[test]
fn a_condition_broadcast_wakes_both_waiters() {
    // musl hands the second waiter to the mutex with FUTEX_REQUEUE: without it, that waiter
    // sleeps until the watchdog.
    let run = boot_with(RunOptions {
        vcpus: 3,
        programs: true,
        cmdline: "tests=c_threads_cond_broadcast".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    run.assert_no_error_line();
    run.assert_line(
        "# c_threads_cond_broadcast: threads_cond_broadcast: both waiters woke: 0 a, 0 b",
    );
    assert_passed(&run, "c_threads_cond_broadcast", "exited with status 0, as expected");
}

#[test]
fn a_vcpu_whose_answer_failed_still_runs_the_next_threads() {
    // In c_threads_main_exit the event-channel sends are the post of the worker (vCPU 0, call
    // 1) and the worker's vCPU's acknowledgement to vCPU 0 (call 2): the second fails here. The
    // next threaded program (later in the catalogue) must still find vCPU 1 online.
    let run = boot_with(RunOptions {
        vcpus: 2,
        programs: true,
        cmdline: "tests=c_threads_main_exit,c_threads_spin_exit_group \
                  inject=evtchn:nth=2@c_threads_main_exit"
            .into(),
        ..RunOptions::default()
    });
    let skipped = run.guest_lines().into_iter().any(|line| line.contains("# SKIP"));
    assert!(
        !skipped,
        "a failed send took vCPU 1 out of service:\n{}",
        run.guest_lines().join("\n")
    );
    run.assert_line(
        "inject: c_threads_main_exit: evtchn calls=2 failed=1 first=2 effect=no-effect",
    );
    // Reported with the run (the consequence of the injected failure), not hidden.
    run.assert_line(
        "# c_threads_main_exit: after the injected failure, 1 failed kernel call(s), first: \
         EVTCHNOP_send (its answer to vCPU 0) (Xen: EINVAL (-22))",
    );
    assert_passed(&run, "c_threads_spin_exit_group", "exited with status 6, as expected");
}

#[test]
fn no_program_runs_after_a_vcpu_that_never_left_one() {
    // In c_threads_spin_exit_group the event-channel sends are the post of the spinning worker
    // (call 1) and main's stop IPI at exit_group (call 2): the second fails, so vCPU 1 spins on
    // until its own timer (the 5 s deadline), past vCPU 0's 2 s wait. Its thread could still
    // fault into the shared process slot, so the next program must not run in it.
    let run = boot_with(RunOptions {
        vcpus: 2,
        programs: true,
        cmdline: "tests=c_threads_spin_exit_group,c_threads_kill_sleeper \
                  inject=evtchn:nth=2@c_threads_spin_exit_group"
            .into(),
        ..RunOptions::default()
    });
    run.assert_guest_line_starts_with(
        "[ERROR] c_threads_spin_exit_group: vCPU 1 did not leave the program within ",
    );
    run.assert_line(
        "not ok 2 - c_threads_kill_sleeper: not run: vCPU 1 never left an earlier program",
    );
    run.assert_last_line_is_verdict(Verdict::Failure);
}
