//! SMP, first slice: the domain's other vCPUs come up and the boot summary names them.
//!
//! What each proves: with `--vcpus N` (QEMU `-smp N` with multi-threaded TCG, `dom0_max_vcpus=N`
//! or xl's `vcpus = N`) the kernel finds the N vCPUs, starts vCPUs 1..N-1 with VCPUOP_initialise
//! and VCPUOP_up, and each one runs our code on its own stack, reads its own number through
//! `%gs`, takes an event of its own timer and answers an IPI from vCPU 0. The `vcpus:` line is
//! printed by vCPU 0 only after that, and names only the vCPUs that did all of it (a vCPU that
//! failed a step is an `[ERROR]` line and is left out). The whole suite still passes with two
//! vCPUs on both paths (its programs run on vCPU 0), and Xen 4.20 starts vCPUs the same way. A
//! vCPU Xen refuses to set up is an `[ERROR]` line, what was set up for it is undone, and the
//! others still come up, on the heap the refused vCPU's stacks gave back (their guard pages
//! mapped again: a stale guard would crash the next vCPU's stack set-up). The guard page below
//! a vCPU's trap stack is unmapped: vCPU 1 reading it is reported from vCPU 1 as an overflow of
//! that stack. A kernel heap fault on vCPU 0 while vCPU 1 holds the memory manager's lock waits
//! for vCPU 1 and is resolved (`selftest=mm-held-elsewhere`). One vCPU stays the default and
//! starts nothing.
//!
//! Threads on two vCPUs (tests/programs/c): a thread that spins in user mode on the other vCPU
//! faults on its very next access after munmap or mprotect returns (`c_shootdown`,
//! `c_shootdown_protect`: a TLB shootdown reached its vCPU; without one it goes on through its
//! stale translation and the program ends `STALE`, exit 1, which scripts/check-shootdown.sh
//! shows); two threads faulting at once on the same missing L2 and L1 build each table once and
//! lose no write (`c_concurrent_fault`, by the kernel's TABLES_BUILT counter), and the leak audit
//! finds nothing; on both paths. With one vCPU they are skipped by name.

use faultline_tests::{boot, boot_with, domu_options, Boot, Verdict, EXIT_ERROR, EXIT_SUCCESS};
use xtask::xen::XenVersion;
use xtask::RunOptions;

/// Fails unless the guest printed exactly `line`.
fn assert_line(run: &Boot, line: &str) {
    let lines = run.guest_lines();
    assert!(
        lines.contains(&line),
        "no line {line:?} in the guest's console:\n{}",
        lines.join("\n")
    );
}

/// Fails if the guest reported an error (a vCPU that did not come up is one).
fn assert_no_error(run: &Boot) {
    let errors: Vec<&str> =
        run.guest_lines().into_iter().filter(|line| line.starts_with("[ERROR]")).collect();
    assert!(errors.is_empty(), "errors: {errors:#?}");
}

/// The `vcpu N: up: ...` line of each vCPU but 0, printed once it answered vCPU 0's IPI.
fn assert_up(run: &Boot, vcpus: usize) {
    for n in 1..vcpus {
        run.assert_guest_line_starts_with(&format!("vcpu {n}: up: ran on its own stack ("));
    }
    assert!(
        !run.guest_lines().iter().any(|l| l.starts_with(&format!("vcpu {vcpus}: "))),
        "a vCPU past the domain's {vcpus}"
    );
}

#[test]
fn two_vcpus_come_up_and_the_catalogue_passes_as_dom0() {
    let run = boot_with(RunOptions { vcpus: 2, programs: true, ..RunOptions::default() });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    assert_up(&run, 2);
    assert_line(&run, "vcpus: 2 online (0, 1)");
    assert_no_error(&run);
    run.assert_every_program_passed();
}

#[test]
fn three_vcpus_come_up_as_dom0() {
    let run = boot_with(RunOptions {
        vcpus: 3,
        cmdline: "selftest=none".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    assert_up(&run, 3);
    assert_line(&run, "vcpus: 3 online (0, 1, 2)");
    assert_no_error(&run);
}

#[test]
fn two_vcpus_come_up_as_dom0_of_xen_420() {
    let run = boot_with(RunOptions {
        xen: XenVersion::V4_20,
        vcpus: 2,
        cmdline: "selftest=none".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_guest_line_starts_with("xen: version 4.20.");
    assert_up(&run, 2);
    assert_line(&run, "vcpus: 2 online (0, 1)");
    assert_no_error(&run);
}

#[test]
fn a_vcpu_xen_refuses_is_reported_and_the_others_come_up() {
    // The evtchn calls of a dom0 boot (no console ring): vCPU 0's VIRQ_TIMER bind and unmask
    // (1, 2), vCPU 0's IPI port bind and unmask (3, 4), then vCPU 1's IPI port (5): the injected
    // failure asks Xen to bind it for a vCPU that does not exist, and Xen's ENOENT comes back.
    let run = boot_with(RunOptions {
        vcpus: 3,
        cmdline: "selftest=none inject=evtchn:nth=5".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_ERROR).assert_last_line_is_verdict(Verdict::Error);
    assert_line(&run, "[ERROR] vcpu 1: EVTCHNOP_bind_ipi: ENOENT (-2): it stays down");
    run.assert_guest_line_starts_with("vcpu 2: up: ran on its own stack (");
    assert_line(&run, "vcpus: 2 online (0, 2) of 3");
    let errors = run.guest_lines().iter().filter(|l| l.starts_with("[ERROR]")).count();
    assert_eq!(errors, 1, "only vCPU 1's refusal");
}

#[test]
fn a_vcpu_whose_ipi_port_cannot_be_unmasked_gives_the_port_back() {
    // Call 6 is the unmask of vCPU 1's IPI port (see above): the port is already bound, so the
    // bring-up closes it again (EVTCHNOP_close; a failed close would be named on the line).
    let run = boot_with(RunOptions {
        vcpus: 3,
        cmdline: "selftest=none inject=evtchn:nth=6".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_ERROR).assert_last_line_is_verdict(Verdict::Error);
    let lines = run.guest_lines();
    let refused: Vec<&str> =
        lines.iter().copied().filter(|l| l.starts_with("[ERROR] vcpu 1: ")).collect();
    assert_eq!(refused.len(), 1, "{lines:#?}");
    assert!(refused[0].starts_with("[ERROR] vcpu 1: EVTCHNOP_unmask: "), "{refused:?}");
    assert!(refused[0].ends_with(": it stays down"), "the port was closed again: {refused:?}");
    run.assert_guest_line_starts_with("vcpu 2: up: ran on its own stack (");
    assert_line(&run, "vcpus: 2 online (0, 2) of 3");
}

#[test]
fn a_read_of_the_guard_below_vcpu_1s_trap_stack_is_reported_as_its_stack_overflow() {
    // vCPU 1's trap stack comes from the heap; the page below it is its guard, unmapped by
    // vCPU 0 before vCPU 1 started. vCPU 1 reads it from a job: the crash report must come from
    // vCPU 1, name that guard, and give the address read (the top word of the guard page).
    let run = boot_with(RunOptions {
        vcpus: 2,
        cmdline: "selftest=vcpu-stack-guard".into(),
        ..RunOptions::default()
    });
    run.assert_crash_report("#PF")
        .assert_guest_contains("kernel stack overflow: hit the guard page vcpu1-trap-stack-guard");
    let lines = run.guest_lines();
    assert!(lines.iter().any(|l| l.trim() == "on vCPU 1"), "{lines:#?}");
    let guard = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix(
                "vcpu-stack-guard: vCPU 1 reads the guard page below its trap stack at 0x",
            )
        })
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .expect("the guard's address");
    assert!(
        lines.iter().any(|l| l.trim() == format!("cr2={:#x}", guard + 4096 - 8)),
        "cr2 is not the word read below the stack: {lines:#?}"
    );
}

#[test]
fn a_vcpu_that_crashes_while_another_holds_the_console_is_still_heard_and_ends_the_domain() {
    // vCPU 0 holds the console's lock (as a print stuck on it would) while vCPU 1 crashes on its
    // trap stack's guard. The crash path may not break a lock another vCPU holds; after a
    // bounded wait it reports through its own console, and its shutdown must not wait for the
    // lock again: the domain ends before vCPU 0's 30 s wait does (which would print FAILURE).
    let run = boot_with(RunOptions {
        vcpus: 2,
        cmdline: "selftest=vcpu-crash-console-held".into(),
        ..RunOptions::default()
    });
    run.assert_crash_report("#PF")
        .assert_guest_contains("kernel stack overflow: hit the guard page vcpu1-trap-stack-guard");
    let lines = run.guest_lines();
    assert!(lines.iter().any(|l| l.trim() == "on vCPU 1"), "{lines:#?}");
    assert!(
        !lines.iter().any(|l| l.starts_with("[FAILURE] vcpu-crash-console-held")),
        "the crashed vCPU's shutdown waited for the console vCPU 0 held: {lines:#?}"
    );
}

#[test]
fn a_heap_fault_waits_for_the_memory_manager_held_by_the_other_vcpu() {
    // vCPU 1 holds MM for 50 ms and on until a fault waits; vCPU 0 writes to a heap page nothing
    // touched. The line comes only once the fault waited (the handler's count), was served as
    // one demand-zero fault and the write is in place; a handler that only tries MM reports
    // "page fault inside the memory manager" in a crash report instead.
    let run = boot_with(RunOptions {
        vcpus: 2,
        cmdline: "selftest=mm-held-elsewhere".into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    let lines = run.guest_lines();
    let ok = lines.iter().find_map(|l| {
        l.strip_prefix("[ok] mm-held-elsewhere: vCPU 0's heap fault waited ")?
            .strip_suffix(" ms for vCPU 1's hold of MM and was resolved")
    });
    assert!(ok.is_some_and(|ms| ms.parse::<u64>().is_ok()), "{lines:#?}");
    assert_no_error(&run);
}

#[test]
fn one_vcpu_is_the_default_and_starts_nothing() {
    let run = boot("selftest=none");
    run.assert_exit(EXIT_SUCCESS);
    assert_line(&run, "vcpus: 1 online (0)");
    assert_up(&run, 1);
}

#[test]
fn two_vcpus_come_up_and_the_suite_passes_as_a_domu() {
    let xl_dir = xtask::workspace::target_dir().join("xl-smp");
    let run = boot_with(RunOptions { vcpus: 2, xl_dir: Some(xl_dir.clone()), ..domu_options("") });
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("domain: DomU")
        .assert_last_line_is_verdict(Verdict::Success);
    assert_up(&run, 2);
    assert_line(&run, "vcpus: 2 online (0, 1)");
    assert_no_error(&run);
    run.assert_every_program_passed();
    let cfg = std::fs::read_to_string(xl_dir.join("faultline.cfg")).expect("the xl folder's cfg");
    assert!(cfg.lines().any(|l| l == "vcpus = 2"), "{cfg}");
}

/// The threaded programs of this file, in the order `tests=` runs them.
const SMP_PROGRAMS: &str = "tests=c_shootdown,c_shootdown_protect,c_concurrent_fault";

/// The lines only a kernel that shoots down the other vCPU's TLB and builds each table once
/// prints for the three programs (test numbers 1 to 3), and no `STALE` line and no leak.
fn assert_smp_programs_passed(run: &Boot) {
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    run.assert_guest_line_starts_with(
        "ok 1 - c_shootdown: killed by #PF read not-present at 0x500000000 in unmapped, rip 0x",
    );
    run.assert_guest_line_starts_with(
        "ok 2 - c_shootdown_protect: killed by #PF write protection at 0x500000000 in mmap, rip 0x",
    );
    run.assert_guest_line_starts_with(
        "# c_concurrent_fault: concurrent_fault: 16 rounds: 48 page tables built (want 48), ",
    );
    assert_line(run, "ok 3 - c_concurrent_fault: exited with status 0, as expected");
    let lines = run.guest_lines();
    assert!(
        !lines.iter().any(|l| l.contains("STALE")),
        "a stale translation:\n{}",
        lines.join("\n")
    );
    assert!(!run.outcome.log.contains("LEAK"), "a frame leaked:\n{}", lines.join("\n"));
    assert_no_error(run);
}

#[test]
fn a_thread_on_the_other_vcpu_faults_after_munmap_and_mprotect_and_tables_are_built_once_as_dom0() {
    let run = boot_with(RunOptions {
        vcpus: 2,
        programs: true,
        cmdline: SMP_PROGRAMS.into(),
        ..RunOptions::default()
    });
    assert_smp_programs_passed(&run);
}

#[test]
fn the_shootdown_and_concurrent_fault_programs_pass_as_a_domu() {
    let xl_dir = xtask::workspace::target_dir().join("xl-smp-programs");
    let run =
        boot_with(RunOptions { vcpus: 2, xl_dir: Some(xl_dir), ..domu_options(SMP_PROGRAMS) });
    run.assert_guest_line_starts_with("domain: DomU");
    assert_smp_programs_passed(&run);
}

#[test]
fn with_one_vcpu_the_shootdown_and_concurrent_fault_programs_are_skipped() {
    let run = boot_with(RunOptions {
        programs: true,
        cmdline: SMP_PROGRAMS.into(),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    for (n, name) in ["c_shootdown", "c_shootdown_protect", "c_concurrent_fault"].iter().enumerate()
    {
        assert_line(&run, &format!("ok {} - {name} # SKIP needs 2 vCPUs, 1 online", n + 1));
    }
}
