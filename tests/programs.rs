//! The test programs (tests/programs) in user mode under Xen, judged from their TAP lines.
//!
//! What each proves: the whole catalogue runs, every program ends as its expectation note says,
//! nothing leaks, file pages are shared and data pages copied on write (counters); and an ordinary
//! static musl program nobody wrote for faultline runs unmodified with `--program`; and one munmap
//! of 32768 touched pages costs at most a hypercall per 100 pages.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use faultline_abi::archive::pack;
use faultline_tests::{boot_with, Verdict, EXIT_ERROR, EXIT_FAILURE, EXIT_SUCCESS};
use xtask::RunOptions;

fn counter(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn the_catalogue_runs_as_every_program_expects() {
    let run = boot_with(RunOptions {
        programs: true,
        timeout: std::time::Duration::from_secs(180),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    let lines = run.guest_lines();
    let plan: usize = lines
        .iter()
        .find_map(|l| l.strip_prefix("1.."))
        .and_then(|n| n.parse().ok())
        .expect("a TAP plan line");
    let oks = lines.iter().filter(|l| l.starts_with("ok ")).count();
    let not_oks: Vec<_> = lines.iter().filter(|l| l.starts_with("not ok")).collect();
    assert!(not_oks.is_empty(), "failed programs: {not_oks:#?}");
    assert_eq!(oks, plan, "one ok line per planned run");
    assert!(plan >= 28, "the catalogue has {plan} runs");
    for name in [
        "null_read",
        "write_text",
        "exec_stack",
        "read_kernel",
        "write_page_table",
        "stack_overflow",
        "out_of_memory",
        "infinite_loop",
        "c_hello",
        "c_demand",
        "shared_text (run 2 of 2)",
        "cow_data (run 2 of 2)",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with("ok ") && l.contains(&format!(" - {name}"))),
            "no ok line for {name}"
        );
    }
    assert!(!run.outcome.log.contains("LEAK"), "a program leaked frames");
    // The stream as a TAP consumer sees it: no parse error, no repeated number, all passed.
    assert_eq!(run.assert_tap_parses(), "Result: PASS");
    let programs = lines.iter().find(|l| l.starts_with("programs:")).expect("a programs: line");
    assert!(counter(programs, "shared_file_maps") > 0, "file pages are mapped from the module");
    assert!(counter(programs, "cow_copies") >= 2, "each cow_data run copies on write");
    // Both runs of shared_text map the same number of pages from the module and copy the same.
    let shared: Vec<_> =
        lines.iter().filter(|l| l.starts_with("# shared_text: pages shared")).collect();
    assert_eq!(shared.len(), 2);
    assert_eq!(shared[0], shared[1]);

    // `--junit`: the same run as a JUnit file, written and read back.
    let dir = xtask::workspace::target_dir().join("junit-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("catalogue.xml");
    xtask::junit::write(&path, "faultline", &run.outcome).unwrap();
    let xml = std::fs::read_to_string(&path).unwrap();
    let checks = lines.iter().filter(|l| l.starts_with("[ok] ")).count();
    assert!(checks > 0, "the memory tests print [ok] lines");
    let cases = xml.matches("<testcase ").count();
    assert_eq!(cases, plan + checks + 1, "one testcase per program, check and the verdict:\n{xml}");
    assert!(xml.contains(&format!("tests=\"{cases}\" failures=\"0\" errors=\"0\"")), "{xml}");
    assert!(xml.contains("classname=\"faultline.programs\" name=\"null_read\""), "{xml}");
    assert!(xml.contains("classname=\"faultline.run\" name=\"verdict\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

#[test]
fn an_ordinary_musl_program_runs_with_program() {
    let source = xtask::workspace::root().join("tests/external/mmap_touch.c");
    let out = xtask::workspace::target_dir().join("faultline-programs/external");
    std::fs::create_dir_all(&out).unwrap();
    let binary: PathBuf = out.join("mmap_touch");
    // tests/programs/build.sh installs musl-tools when it is missing; build the catalogue first.
    xtask::programs::build_archive(&[], true).expect("the test programs build");
    let status = Command::new("musl-gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&binary)
        .arg(&source)
        .status()
        .expect("musl-gcc runs");
    assert!(status.success(), "musl-gcc failed on {}", source.display());
    let run = boot_with(RunOptions {
        cmdline: "tests=mmap_touch".into(),
        extra_programs: vec![binary],
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("# mmap_touch: mmap_touch: touched, checked and unmapped 1024 pages")
        .assert_guest_contains("ok 1 - mmap_touch: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Success);
}

fn built(name: &str) -> Vec<u8> {
    let archive = xtask::programs::build_archive(&[], true).expect("the test programs build");
    std::fs::read(archive.with_file_name("bin").join(name)).expect("a built program")
}

fn boot_archive(file: &str, bytes: &[u8]) -> faultline_tests::Boot {
    let path = xtask::workspace::target_dir().join("faultline-programs").join(file);
    std::fs::write(&path, bytes).unwrap();
    boot_with(RunOptions { module: Some(path), ..RunOptions::default() })
}

#[test]
fn a_malformed_program_is_rejected_by_name_and_the_others_still_run() {
    let hello = built("hello");
    let truncated = hello[..100].to_vec();
    let archive =
        pack(&[("hello", &hello), ("truncated", &truncated), ("c_hello", &built("c_hello"))])
            .unwrap();
    let run = boot_archive("with-truncated.tar", &archive);
    run.assert_exit(EXIT_FAILURE)
        .assert_guest_contains("ok 1 - hello: exited with status 0, as expected")
        .assert_guest_contains("not ok 2 - truncated: ")
        .assert_guest_contains("ok 3 - c_hello: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Failure);
}

#[test]
fn a_damaged_archive_keeps_the_programs_before_the_damage() {
    let hello = built("hello");
    let mut archive = pack(&[("hello", &hello), ("c_hello", &built("c_hello"))]).unwrap();
    // Find c_hello's header (the block holding its name) and break its checksum.
    let header = (0..archive.len() / 512)
        .map(|b| b * 512)
        .find(|&at| archive[at..at + 7] == *b"c_hello")
        .expect("c_hello's header");
    archive[header + 148] ^= 0x11;
    let run = boot_archive("damaged.tar", &archive);
    run.assert_exit(EXIT_ERROR)
        .assert_guest_contains("test archive (")
        .assert_guest_contains("ok 1 - hello: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Error);
}

/// munmap_batch (tests/programs) touches 32768 pages, unmaps them with one munmap call and
/// prints the hypercalls that call cost, read from the kernel before and after it. It needs
/// 128 MiB of frames plus tables, so it is not in the default archive: it runs alone here, in a
/// 256 MiB dom0 with a 160 MiB program limit.
#[test]
fn one_munmap_of_32768_pages_costs_at_most_a_hypercall_per_100_pages() {
    const PAGES: u64 = 32768;
    let archive = xtask::programs::build_archive(&[], true).expect("the test programs build");
    let binary = archive.with_file_name("bin").join("munmap_batch");
    let run = boot_with(RunOptions {
        cmdline: "tests=munmap_batch test_memory=160M test_time=30s".into(),
        memory_mib: 256,
        extra_programs: vec![binary],
        timeout: Duration::from_secs(120),
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("ok 1 - munmap_batch: exited with status 0, as expected")
        .assert_last_line_is_verdict(Verdict::Success);
    let prefix = format!("# munmap_batch: munmap_batch: munmap of {PAGES} pages: ");
    let line = run
        .guest_lines()
        .into_iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}"));
    let hypercalls: u64 = line
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hypercall count in {line:?}"));
    assert!(
        hypercalls * 100 <= PAGES,
        "munmap of {PAGES} pages took {hypercalls} hypercalls, more than one per 100 pages: {line}"
    );
}
