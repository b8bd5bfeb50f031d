//! The real user path: faultline as a Xen PV DomU, created by `xl create` in a Linux dom0.
//!
//! What each proves: the whole suite passes as a DomU (console ring, xenstore, the test programs
//! from the ramdisk) and the runner hands the guest's verdict and xl's shutdown reason out as its
//! exit status; a DomU crash gives a complete, symbolized crash report and exit status 4; 5000
//! console lines through the live `xl create -c` console arrive whole and in order; several guests
//! run one after another from the same cfg; a kernel xl cannot build is a toolstack failure with
//! xl's own reason; a 1 GiB DomU fits (QEMU is sized for dom0 and the guest). The cfg the runner
//! boots is the one it leaves in the xl folder.

use faultline_tests::{boot_domu, boot_with, domu_options, ShutdownReason, Verdict, EXIT_SUCCESS};
use xtask::{XlConsole, EXIT_SETUP};

/// The `N` of the guest's `xenstore: name "...", domid N` line.
fn xenstore_domid(lines: &[&str]) -> u32 {
    let line = lines
        .iter()
        .find(|line| line.starts_with("xenstore: name \""))
        .unwrap_or_else(|| panic!("no xenstore line in {lines:#?}"));
    line.rsplit_once("domid ")
        .and_then(|(_, domid)| domid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no domid in {line:?}"))
}

#[test]
fn the_suite_passes_as_a_domu() {
    let run = boot_domu("");
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("domain: DomU")
        .assert_last_line_is_verdict(Verdict::Success);
    let lines = run.guest_lines();
    assert!(xenstore_domid(&lines) >= 1);
    run.assert_every_program_passed();

    let outcome = &run.outcome;
    assert_eq!(outcome.shutdown, ShutdownReason::Poweroff);
    assert_eq!(outcome.guests.len(), 1);
    assert_eq!(outcome.guests[0].domid, Some(xenstore_domid(&lines)));
    // The whole console is kept: Xen's, the dom0's progress and xl's messages, the guest's.
    let saved = std::fs::read_to_string(&outcome.log_path).unwrap();
    // The dom0 prints FAULTLINE-DOM0-GUEST for every outcome: only its last word says poweroff.
    let gone = format!("FAULTLINE-DOM0-GUEST 1 {} poweroff", xenstore_domid(&lines));
    for text in ["(XEN) ", "faultline-dom0: ", "xl: ", gone.as_str(), "Test result: SUCCESS"] {
        assert!(saved.contains(text), "no {text:?} in {}", outcome.log_path.display());
    }
    // xl booted the cfg the runner left in the xl folder, whose paths are relative.
    let cfg = domu_options("").xl_dir.unwrap().join("faultline.cfg");
    let cfg = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        cfg.contains("kernel = \"faultline\"\n") && cfg.contains("ramdisk = \"programs.tar\"\n"),
        "{cfg}"
    );
    assert!(saved.contains("xl: Parsing config from faultline.cfg"));
}

#[test]
fn a_domu_crash_is_reported_and_symbolized() {
    let run = boot_domu("selftest=pf");
    run.assert_crash_report("#PF").assert_guest_contains("cr2=0x0");
    let saved = std::fs::read_to_string(&run.outcome.log_path).unwrap();
    assert!(saved.contains("#PF") && saved.contains("cr2=0x0"), "the saved log has the report");
    assert!(saved.contains("faultline::testing::selftest::"), "the saved log is symbolized");
    assert!(saved.contains("FAULTLINE-DOM0-GUEST 1 1 crash"));
}

#[test]
fn five_thousand_lines_arrive_in_order_through_the_live_console() {
    let run = boot_with(xtask::RunOptions {
        xl_console: XlConsole::Live,
        ..domu_options("selftest=flood")
    });
    run.assert_exit(EXIT_SUCCESS).assert_last_line_is_verdict(Verdict::Success);
    let numbers: Vec<u32> = run
        .guest_lines()
        .iter()
        .filter_map(|line| line.strip_prefix("flood "))
        .map(|rest| {
            assert!(
                rest.ends_with(": the quick brown fox jumps over the lazy dog"),
                "cut line: {rest:?}"
            );
            rest[..5].parse().unwrap_or_else(|_| panic!("bad number in {rest:?}"))
        })
        .collect();
    assert_eq!(numbers.len(), 5000, "every flood line arrives");
    assert!(numbers.iter().enumerate().all(|(i, n)| *n as usize == i), "in order, none twice");
}

#[test]
fn two_guests_run_one_after_another() {
    let run = boot_with(xtask::RunOptions { guests: 2, ..domu_options("selftest=none") });
    run.assert_exit(EXIT_SUCCESS);
    let guests = &run.outcome.guests;
    assert_eq!(guests.len(), 2, "{}", run.outcome.reason);
    for (index, guest) in guests.iter().enumerate() {
        assert_eq!(guest.number as usize, index + 1);
        assert_eq!(guest.exit_code, EXIT_SUCCESS, "{}", guest.reason);
        assert_eq!(guest.shutdown, ShutdownReason::Poweroff);
        assert_eq!(guest.verdict, Some(Verdict::Success));
        assert!(guest.log.contains("Test result: SUCCESS"));
    }
    assert_ne!(guests[0].domid, guests[1].domid, "each is a new domain");
    let lines: Vec<&str> = guests[1].log.lines().collect();
    assert_eq!(Some(xenstore_domid(&lines)), guests[1].domid);
}

#[test]
fn a_kernel_xl_cannot_build_is_a_toolstack_failure() {
    let bogus = xtask::workspace::target_dir().join("xl-tests-not-an-elf");
    std::fs::write(&bogus, b"this is not a kernel image\n").unwrap();
    let run = boot_with(xtask::RunOptions {
        kernel: Some(bogus),
        xl_dir: Some(xtask::workspace::target_dir().join("xl-tests-bogus")),
        ..domu_options("selftest=none")
    });
    run.assert_exit(EXIT_SETUP);
    assert!(run.outcome.reason.contains("xl create failed: "), "{}", run.outcome.reason);
    assert!(matches!(run.outcome.shutdown, ShutdownReason::Toolstack(_)));
}

#[test]
fn a_one_gib_domu_runs_the_memory_tests() {
    let run = boot_with(xtask::RunOptions { memory_mib: 1024, ..domu_options("selftest=mm") });
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("nr_pages 262144 (1024 MiB)")
        .assert_last_line_is_verdict(Verdict::Success);
}
