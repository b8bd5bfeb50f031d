//! Hostile programs under Xen: each test packs a few programs of tests/programs, boots them on
//! the dom0 path and asserts on the lines only the right behaviour prints.
//!
//! What each proves: a program's FPU state never reaches the next program; a system call that
//! works long for a program (a 12 MiB write, a 1 GiB writev, a day's nanosleep) ends at the
//! program's deadline with the watchdog verdict, naming where the program was, and the programs
//! after it still run; program output and rejected notes cannot drive a terminal, and a last
//! line without a newline keeps the program's name; writev lengths get Linux's errno; `int $n`
//! kills name the instruction; a boot module too large for the memory is refused before
//! booting; malformed executables are rejected by name while the others run. Streams with
//! rejections still read cleanly with `prove`.

use faultline_tests::{boot_programs, built_program, Verdict, EXIT_FAILURE, EXIT_SUCCESS};

fn programs(names: &[&str]) -> Vec<(String, Vec<u8>)> {
    names.iter().map(|n| (n.to_string(), built_program(n))).collect()
}

fn boot(file: &str, names: &[&str], cmdline: &str) -> faultline_tests::Boot {
    let programs = programs(names);
    let refs: Vec<(&str, &[u8])> =
        programs.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    boot_programs(file, &refs, cmdline)
}

#[test]
fn fpu_state_does_not_reach_the_next_program() {
    let run = boot("fpu.tar", &["fpu_dirty", "fpu_clean"], "");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("# fpu_dirty: fpu_dirty: x87 control word 0x0c60, MXCSR 0xff80")
        .assert_guest_contains("ok 1 - fpu_dirty: exited with status 0, as expected")
        .assert_guest_contains("# fpu_clean: fpu_clean: x87 and SSE in reset state")
        .assert_guest_contains("ok 2 - fpu_clean: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Success);
}

/// The most a watchdog check in a system call may come after the deadline: one 256-byte piece
/// of console output, far less than this under TCG.
const WATCHDOG_SLACK_US: u64 = 50_000;

/// Fails unless TAP line `number` says `name` was killed by the watchdog at a rip in its text
/// (where it made the system call, never 0) and the check came at most [`WATCHDOG_SLACK_US`]
/// after the deadline.
fn assert_killed_in_a_system_call(run: &faultline_tests::Boot, number: usize, name: &str) {
    let lines = run.guest_lines();
    let prefix = format!("ok {number} - {name}: killed by the watchdog, rip 0x");
    let line = lines.iter().find(|l| l.starts_with(&prefix));
    let line = line.unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", run.outcome.log));
    let rip = line[prefix.len()..].split(',').next().unwrap();
    let rip = u64::from_str_radix(rip, 16).unwrap();
    assert!((0x401000..0x500000).contains(&rip), "{name}: rip {rip:#x} is not in its text");
    let late = format!("# {name}: watchdog: the deadline passed ");
    let late_us: u64 = lines
        .iter()
        .find_map(|l| l.strip_prefix(&late))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|us| us.parse().ok())
        .unwrap_or_else(|| panic!("no {late:?} line"));
    assert!(late_us <= WATCHDOG_SLACK_US, "{name}: killed {late_us} us past its deadline");
}

#[test]
fn long_system_calls_end_at_the_deadline_and_the_suite_runs_on() {
    let run = boot("long-calls.tar", &["c_write_flood", "c_writev_flood", "hello"], "test_time=1s");
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    assert_killed_in_a_system_call(&run, 1, "c_write_flood");
    assert_killed_in_a_system_call(&run, 2, "c_writev_flood");
    run.assert_guest_contains("ok 3 - hello: exited with status 0, as expected");
}

#[test]
fn a_program_killed_in_nanosleep_is_named_at_its_system_call() {
    let run = boot("sleep.tar", &["c_sleep_forever", "hello"], "test_time=1s");
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    assert_killed_in_a_system_call(&run, 1, "c_sleep_forever");
    run.assert_guest_contains("ok 2 - hello: exited with status 0, as expected");
}

#[test]
fn program_output_cannot_drive_the_terminal() {
    let run = boot("forged.tar", &["c_forged_output", "hello"], "");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains(r"# c_forged_output: \x1b[2K\r\x1b[1;32mTest result: SUCCESS\x1b[0m")
        .assert_guest_contains(r"# c_forged_output: Test result: SUCCESS\r")
        .assert_guest_contains(r"# c_forged_output: nul \x00 del \x7f bell \x07 tab \t end")
        // The last line had no newline: it is printed after the program ended, with its name.
        .assert_guest_contains("# c_forged_output: no newline at the end")
        .assert_guest_contains("ok 1 - c_forged_output: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Success);
    let raw = run.guest_lines().into_iter().filter(|l| l.bytes().any(|b| b < 0x20 && b != b'\t'));
    assert_eq!(raw.count(), 0, "a guest line holds raw control bytes:\n{}", run.outcome.log);
}

#[test]
fn a_rejected_note_is_shown_escaped() {
    let run = boot("bad-note.tar", &["c_bad_note_escape", "hello"], "");
    run.assert_exit(EXIT_FAILURE)
        .assert_guest_contains(
            r#"not ok 1 - c_bad_note_escape: rejected: bad expectation note "killed \u{1b}[2J\u{1b}[1;32mTest result: SUCCESS": '\u{1b}[2J\u{1b}[1' is not a cause"#,
        )
        .assert_guest_contains("ok 2 - hello: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Failure);
    // A rejection is a failed test, not a malformed stream.
    assert_eq!(run.assert_tap_parses(), "Result: FAIL");
    assert!(!run.outcome.log.contains('\x1b'), "a raw ESC reached the log");
}

#[test]
fn writev_lengths_get_linux_errno() {
    let run = boot("writev.tar", &["c_writev_lengths"], "");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("# c_writev_lengths: writev_lengths: 0 wrong result(s)")
        .assert_guest_contains("ok 1 - c_writev_lengths: exited with status 0, as expected");
}

#[test]
fn software_interrupts_are_killed_by_name() {
    let names = ["c_int_closed", "c_int_overflow", "c_int_0x80", "c_int_hypercall", "hello"];
    let run = boot("vectors.tar", &names, "");
    run.assert_guest_contains(
        "ok 1 - c_int_closed: killed by #GP (int $0x20: a vector closed to user mode), rip 0x",
    )
    .assert_guest_contains(
        "ok 2 - c_int_overflow: killed by #OF (overflow, vector 0x4) raised by int $0x4, rip 0x",
    )
    .assert_guest_contains(
        "ok 3 - c_int_0x80: killed by INT n (software interrupt, vector 0x80) raised by int $0x80, rip 0x",
    )
    .assert_guest_contains("ok 5 - hello: exited with status 0, as expected");
    // int $0x82 has no expectation note (its vector depends on the CPU, see the program): the
    // line is `not ok`, and it must name the instruction whichever vector arrived.
    let line = run.guest_lines().into_iter().find(|l| l.starts_with("not ok 4 - c_int_hypercall:"));
    let line = line.unwrap_or_else(|| panic!("no line for c_int_hypercall:\n{}", run.outcome.log));
    assert!(
        line.contains("#GP (int $0x82: a vector closed to user mode)")
            || line.contains("#OF (overflow, vector 0x4) raised by int $0x82"),
        "{line}"
    );
}

#[test]
fn a_boot_module_too_large_for_the_memory_is_refused_before_booting() {
    // A valid archive: hello and a 50 MiB program (hello with zeros after it).
    let hello = built_program("hello");
    let mut big = hello.clone();
    big.resize(hello.len() + (50 << 20), 0);
    let archive = faultline_abi::archive::pack(&[("hello", &hello), ("big", &big)]).unwrap();
    let dir = xtask::workspace::target_dir().join("faultline-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.tar");
    std::fs::write(&path, archive).unwrap();
    let started = std::time::Instant::now();
    let result = xtask::run(&xtask::RunOptions {
        module: Some(path),
        kernel: Some(faultline_tests::kernel().to_path_buf()),
        quiet: true,
        ..xtask::RunOptions::default()
    });
    let error = match result {
        Err(error) => error.to_string(),
        Ok(outcome) => panic!("booted (exit {}): {}", outcome.exit_code, outcome.reason),
    };
    assert!(error.contains("does not fit in 8 MiB of guest memory"), "{error}");
    assert!(error.contains("run with --memory 57 or more"), "{error}");
    assert!(started.elapsed().as_secs() < 10, "refused only after {:?}", started.elapsed());
}

#[test]
fn malformed_executables_are_rejected_by_name_and_the_others_run() {
    let hello = built_program("hello");
    let patched = |at: usize, bytes: &[u8]| {
        let mut file = hello.clone();
        file[at..at + bytes.len()].copy_from_slice(bytes);
        file
    };
    // ELF64 header fields (System V gABI): e_type at 16, e_machine at 18, e_entry at 24,
    // e_phoff at 32, e_phnum at 56.
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("elf_dyn", patched(16, &3u16.to_le_bytes()), "a position-independent executable (ET_DYN)"),
        ("elf_arm", patched(18, &40u16.to_le_bytes()), "built for machine 40, not x86_64 (62)"),
        ("elf_entry", patched(24, &0u64.to_le_bytes()), "entry point 0x0 is not in the file bytes"),
        ("elf_phoff", patched(32, &(u64::MAX - 7).to_le_bytes()), "not a readable ELF file"),
        // 0xffff is PN_XNUM: the count is in section 0, which says 0.
        ("elf_phnum", patched(56, &0xffffu16.to_le_bytes()), "no loadable segment"),
    ];
    let mut programs: Vec<(&str, &[u8])> =
        cases.iter().map(|(n, b, _)| (*n, b.as_slice())).collect();
    programs.push(("hello", &hello));
    let run = boot_programs("malformed.tar", &programs, "");
    run.assert_exit(EXIT_FAILURE).assert_last_line_is_verdict(Verdict::Failure);
    for (number, (name, _, reason)) in cases.iter().enumerate() {
        let prefix = format!("not ok {} - {name}: rejected: bad ELF: ", number + 1);
        let line = run.guest_lines().into_iter().find(|l| l.starts_with(&prefix));
        let line = line.unwrap_or_else(|| panic!("no {prefix:?} line:\n{}", run.outcome.log));
        assert!(line.contains(reason), "{line}");
    }
    run.assert_guest_contains("ok 6 - hello: exited with status 0, as expected");
    assert_eq!(run.assert_tap_parses(), "Result: FAIL");
}
