//! Xen 4.20 (Debian 13) as well as the default 4.17: the self-tests and the program catalogue on
//! the fast dom0 path, and the whole suite as a DomU that 4.20's own `xl` creates.
//!
//! What each proves: faultline boots and passes on the newer hypervisor with the same binary; the
//! runner fetches, checks and boots the hypervisor and toolstack of the version it was asked for.
//! Every test asserts on lines only a correct run on 4.20 prints: the version the guest read from
//! Xen (`xen: version 4.20...`, from XENVER_version), Xen's own banner on the serial line, and
//! the guest's verdict; never on the runner's echo of its options. On the DomU path a 4.17 `xl`
//! could not build a domain on Xen 4.20 (the domctl interface version differs), so a SUCCESS there
//! also proves that the dom0 carries 4.20's toolstack.

use faultline_tests::{boot_with, domu_options, Boot, Verdict, EXIT_CRASH, EXIT_SUCCESS};
use xtask::xen::XenVersion;
use xtask::{RunOptions, ShutdownReason};

/// Boots the kernel as dom0 of Xen 4.20 with `cmdline`.
fn boot_420(cmdline: &str) -> Boot {
    let run = boot_with(RunOptions {
        xen: XenVersion::V4_20,
        cmdline: cmdline.to_string(),
        ..RunOptions::default()
    });
    assert_on_xen_420(&run);
    run
}

/// Fails unless the guest read version 4.20 from Xen and Xen's banner says 4.20.
#[track_caller]
fn assert_on_xen_420(run: &Boot) {
    run.assert_guest_line_starts_with("xen: version 4.20.");
    let banner = run.outcome.log.lines().find(|line| line.contains("(XEN) Xen version "));
    assert!(
        banner.is_some_and(|line| line.contains("(XEN) Xen version 4.20.")),
        "Xen's banner is {banner:?}, not 4.20's\nlog ({}):\n{}",
        run.outcome.log_path.display(),
        run.outcome.log
    );
}

/// Fails unless every planned program passed and none leaked.
#[track_caller]
fn assert_whole_catalogue(run: &Boot) {
    run.assert_every_program_passed();
    assert!(!run.outcome.log.contains("LEAK"), "a program leaked frames");
}

#[test]
fn the_catalogue_runs_as_dom0_of_xen_4_20() {
    let run = boot_with(RunOptions {
        xen: XenVersion::V4_20,
        programs: true,
        timeout: std::time::Duration::from_secs(180),
        ..RunOptions::default()
    });
    assert_on_xen_420(&run);
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("domain: dom0")
        .assert_last_line_is_verdict(Verdict::Success);
    assert_whole_catalogue(&run);
}

#[test]
fn selftest_none_on_xen_4_20() {
    boot_420("selftest=none")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("domain: dom0")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn selftest_mm_on_xen_4_20() {
    boot_420("selftest=mm")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("[ok] demand: 5 faults, new tables L3=2 L2=3 L1=4")
        .assert_guest_contains("[ok] dense demand: 600 faults over 600 pages")
        // The same errno as 4.17's (see docs/xen-versions.md).
        .assert_guest_contains("[ok] writable table: Xen refused")
        .assert_guest_contains("with EBUSY (-16)")
        .assert_guest_contains("[ok] release:")
        .assert_guest_contains("[ok] heap:")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn selftest_int3_on_xen_4_20() {
    boot_420("selftest=int3")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("[ok] int3: #BP handled at rip 0x")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn selftest_timer_on_xen_4_20() {
    boot_420("selftest=timer")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("[ok] timer: woke after")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn selftest_user_on_xen_4_20() {
    boot_420("selftest=user")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("[ok] user: iret to user mode")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn selftest_crashes_on_xen_4_20() {
    // One boot each; the crash report and Xen's crash shutdown must look as on 4.17.
    for (selftest, mnemonic) in [("ud", "#UD"), ("gp", "#GP"), ("pf", "#PF"), ("de", "#DE")] {
        boot_420(&format!("selftest={selftest}")).assert_crash_report(mnemonic);
    }
    boot_420("selftest=stack-guard")
        .assert_crash_report("#PF")
        .assert_guest_contains("kernel stack overflow: hit the guard page boot-stack-guard");
    let run = boot_420("selftest=panic");
    run.assert_exit(EXIT_CRASH).assert_guest_contains("panicked at").assert_symbolized_backtrace();
    assert_eq!(run.outcome.shutdown, ShutdownReason::Crash);
}

#[test]
fn the_suite_passes_as_a_domu_of_xen_4_20() {
    let run = boot_with(RunOptions { xen: XenVersion::V4_20, ..domu_options("") });
    assert_on_xen_420(&run);
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_line_starts_with("domain: DomU")
        .assert_guest_line_starts_with("xenstore: name \"faultline\", domid ")
        .assert_last_line_is_verdict(Verdict::Success);
    assert_whole_catalogue(&run);
    let outcome = &run.outcome;
    assert_eq!(outcome.shutdown, ShutdownReason::Poweroff);
    assert_eq!(outcome.guests.len(), 1);
    // xl's own report of the shutdown, as the dom0 hands it out.
    assert!(
        outcome.log.lines().any(|line| line.starts_with("xl: Domain ")
            && line.contains(" has shut down, reason code 0")),
        "no xl shutdown line in {}",
        outcome.log_path.display()
    );
}
