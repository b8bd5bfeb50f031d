//! Boot self-tests: faultline boots as Xen's dom0 once per `selftest=<name>` and must report it.
//!
//! What each proves: `none` the boot path and the verdict protocol; `int3` a handled trap that
//! returns through HYPERVISOR_iret; `ud`/`gp`/`pf`/`de`/`panic` that an unexpected fault or a
//! panic yields a complete crash report (registers, decoded error code, symbolized backtrace) and
//! a crash shutdown the runner sees; a bad command line an ERROR verdict rather than a guess.
//! The memory tests check that the runner sizes QEMU so that Xen gives dom0 all it asked for.

use faultline_tests::{boot, boot_with, Verdict, EXIT_CRASH, EXIT_ERROR, EXIT_SKIP, EXIT_SUCCESS};
use xtask::RunOptions;

#[test]
fn selftest_none_prints_a_boot_summary_and_succeeds() {
    let run = boot("selftest=none");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("faultline")
        .assert_guest_line_starts_with("xen: version 4.17")
        .assert_guest_line_starts_with("domain: dom0")
        .assert_guest_contains("nr_pages ")
        .assert_guest_line_starts_with("cmdline: ")
        // Printed once the command line is parsed, and by the self-test itself: the echo of the
        // command line ("cmdline: ...") cannot satisfy these.
        .assert_guest_line_starts_with("selftest: none")
        .assert_guest_line_starts_with("[ok] boot: start_info valid, traps installed, console up")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn empty_command_line_without_programs_runs_the_memory_tests_and_skips() {
    // No boot module: the memory tests pass, the programs are skipped, so the verdict is SKIP
    // (XTF's order SUCCESS < SKIP < ERROR < FAILURE), never SUCCESS.
    let run = boot("");
    run.assert_exit(EXIT_SKIP)
        .assert_guest_line_starts_with("faultline")
        .assert_guest_line_starts_with("domain: dom0")
        .assert_guest_line_starts_with("[ok] heap: ")
        .assert_guest_line_starts_with(
            "[skip] programs: none (no boot module): the test programs were skipped",
        )
        .assert_last_line_is_verdict(Verdict::Skip);
}

#[test]
fn selftest_int3_is_handled_and_resumes() {
    let run = boot("selftest=int3");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("[ok] int3: #BP handled at rip 0x")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn selftest_ud_crashes_with_a_report() {
    boot("selftest=ud").assert_crash_report("#UD");
}

#[test]
fn selftest_gp_crashes_with_a_report() {
    boot("selftest=gp").assert_crash_report("#GP");
}

#[test]
fn selftest_pf_crashes_with_a_report_that_decodes_the_fault() {
    let run = boot("selftest=pf");
    run.assert_crash_report("#PF")
        .assert_guest_line_starts_with("    cr2=0x0")
        // The decoded error code itself: "read" alone would match `null_read` in the backtrace.
        .assert_guest_line_starts_with("    error code 0x0 (read, not-present, kernel-mode)");
}

#[test]
fn selftest_de_crashes_with_a_report() {
    boot("selftest=de").assert_crash_report("#DE");
}

#[test]
fn selftest_nmi_arrives_through_the_nmi_callback_and_resumes() {
    let run = boot("selftest=nmi");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("[ok] nmi: NMI delivered through the NMI callback at rip 0x")
        .assert_last_line_is_verdict(Verdict::Success);
}

/// An expectation names the instruction (XTF's exception table): a #UD announced at one `ud2`
/// and raised at another must end in the crash report at the second, not be swallowed (a
/// swallowed one resumes at the announced place and prints a FAILURE line instead).
#[test]
fn selftest_expect_elsewhere_a_trap_at_another_instruction_is_not_swallowed() {
    let run = boot("selftest=expect-elsewhere");
    run.assert_crash_report("unexpected exception #UD (invalid opcode, vector 6) in kernel mode");
    let announced = run
        .guest_lines()
        .into_iter()
        .find_map(|line| line.strip_prefix("expect-elsewhere: #UD expected at "))
        .unwrap_or_else(|| panic!("no announcement line in:\n{}", run.outcome.log));
    let raised = announced.split(", raising one at 0x").nth(1).expect("the raising address");
    let raised = u64::from_str_radix(raised.trim(), 16).expect("a hex address");
    run.assert_guest_line_starts_with(&format!("    rip={raised:#018x} "));
}

#[test]
fn selftest_int80_a_vector_no_exception_uses_crashes_with_a_report() {
    boot("selftest=int80").assert_crash_report(
        "unexpected exception INT n (software interrupt, vector 128) in kernel mode",
    );
}

#[test]
fn selftest_panic_reports_location_and_backtrace() {
    let run = boot("selftest=panic");
    run.assert_exit(EXIT_CRASH)
        .assert_guest_contains("panicked at")
        .assert_guest_contains(".rs:")
        .assert_symbolized_backtrace();
    assert!(run.outcome.verdict.is_none(), "a panic must not print a verdict line");
}

#[test]
fn unknown_selftest_is_an_error_verdict() {
    let run = boot("selftest=nonsense");
    run.assert_exit(EXIT_ERROR)
        .assert_guest_line_starts_with("[ERROR] command line: unknown self-test 'nonsense' (known:")
        .assert_last_line_is_verdict(Verdict::Error);
}

#[test]
fn a_time_budget_too_large_to_represent_is_an_error_naming_the_word() {
    // 2^58 ms is 2^64 * 15625 ns: it once wrapped to a zero deadline that killed every program.
    let run = boot("selftest=none test_time=288230376151711744ms");
    run.assert_exit(EXIT_ERROR)
        .assert_guest_line_starts_with(
            "[ERROR] command line: test_time=: '288230376151711744ms' is not a duration",
        )
        .assert_last_line_is_verdict(Verdict::Error);
}

#[test]
fn eight_mib_of_memory_are_all_given_to_dom0() {
    let run = boot_with(RunOptions {
        cmdline: "selftest=none".into(),
        memory_mib: 8,
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_guest_contains("nr_pages 2048 ");
}

#[test]
fn four_gib_of_memory_are_all_given_to_dom0() {
    let run = boot_with(RunOptions {
        cmdline: "selftest=none".into(),
        memory_mib: 4096,
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_guest_contains("nr_pages 1048576 ");
}
