//! In-guest memory, event and user-mode self-tests, booted as dom0 under Xen.
//!
//! What each proves: `mm` (the default) that demand faults build each missing L3/L2/L1 once and
//! cost one hypercall each, that Xen refuses a writable mapping of a page-table frame while the
//! kernel survives, that the demand pages and tables go back to the pool, and that the heap grows
//! on demand, at the smallest (8 MiB) and a large (4 GiB) domain; `stack-guard` that the guard
//! page below the boot stack turns an access into it into a named crash (not a real overflow,
//! which Xen ends without a report: docs/page-fault.md); `timer` that a one-shot timer
//! event wakes a blocked vCPU through the event upcall; `user` a round trip through user mode.

use faultline_tests::{boot, boot_with, Verdict, EXIT_CRASH, EXIT_SUCCESS};
use xtask::RunOptions;

/// `key=value` from the guest line that starts with `prefix`.
fn field(run: &faultline_tests::Boot, prefix: &str, key: &str) -> u64 {
    let line = run
        .guest_lines()
        .into_iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"))
        .to_string();
    let value = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"));
    value.parse().unwrap_or_else(|_| panic!("{key}={value} is not a number"))
}

fn memory_tests_pass(memory_mib: u32) {
    let run = boot_with(RunOptions {
        cmdline: "selftest=mm".into(),
        memory_mib,
        ..RunOptions::default()
    });
    run.assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("[ok] demand: 5 faults, new tables L3=2 L2=3 L1=4")
        .assert_guest_contains("= 1.00 per fault")
        .assert_guest_contains(
            "[ok] dense demand: 600 faults over 600 pages, 2 new L1 tables, 600 hypercalls",
        )
        .assert_guest_contains("[ok] writable table: Xen refused")
        .assert_guest_contains("[ok] release:")
        .assert_guest_contains("[ok] heap:")
        .assert_last_line_is_verdict(Verdict::Success);
    let nr_pages = field(&run, "memory:", "nr_pages");
    let reserved = field(&run, "memory:", "boot_reserved");
    let usable = field(&run, "memory:", "usable");
    assert_eq!(nr_pages, u64::from(memory_mib) * 256);
    // (free + used = nr_pages and usable = nr_pages - reserved hold by how the kernel prints
    // them; what can fail is that the boot reserves less than the kernel, the module and Xen's
    // first mapping need, or nearly everything.)
    assert!(usable >= 1024 && reserved < nr_pages / 2, "usable {usable}, reserved {reserved}");
    // One L1 per 512 pages, one L2 per 512 L1s, one L3 per 512 L2s (the L4 exists already).
    let l1 = nr_pages.div_ceil(512);
    let l2 = l1.div_ceil(512);
    let l3 = l2.div_ceil(512);
    let direct_map_tables = field(&run, "memory:", "tables_for_direct_map");
    assert_eq!(direct_map_tables, l1 + l2 + l3, "the direct map's tables, and nothing else");
    let faults = field(&run, "stats:", "faults_demand");
    let unexpected = field(&run, "stats:", "faults_unexpected");
    assert!(faults >= 605 && unexpected == 0, "{faults} demand faults, {unexpected} unexpected");
}

#[test]
fn memory_tests_pass_in_8_mib() {
    memory_tests_pass(8);
}

#[test]
fn memory_tests_pass_in_4_gib() {
    memory_tests_pass(4096);
}

#[test]
fn a_read_below_the_kernel_stack_hits_the_guard_page() {
    let run = boot("selftest=stack-guard");
    run.assert_crash_report("#PF")
        .assert_guest_contains("kernel stack overflow: hit the guard page boot-stack-guard")
        .assert_guest_contains("mm_tests::recurse");
    assert_eq!(run.outcome.exit_code, EXIT_CRASH);
}

#[test]
fn timer_event_wakes_a_blocked_vcpu() {
    boot("selftest=timer")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("[ok] timer: woke after")
        .assert_last_line_is_verdict(Verdict::Success);
}

#[test]
fn user_mode_round_trip() {
    boot("selftest=user")
        .assert_exit(EXIT_SUCCESS)
        .assert_guest_contains("[ok] user: iret to user mode")
        .assert_last_line_is_verdict(Verdict::Success);
}
