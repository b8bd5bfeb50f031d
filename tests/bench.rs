//! The page-fault workloads of `cargo xtask bench` (tests/programs: bench_faults, bench_text) on
//! faultline, and the counts issue 11 asks for: faults, hypercalls (the iret left out) and
//! mmu_update entries per call. Counts are exact, so they are asserted; times never are.
//!
//! The workloads run on the fast dom0 path with 1024 pages each (`bench_faults-1024`), once with
//! the default fault-around and prefault windows (32 and 16 pages) and once with both off; the
//! two-thread workloads (`c_bench_threads-1024`, issue 14) once with 2 vCPUs; and once through
//! `cargo xtask bench --quick`: faultline and a Linux PV DomU in the same boot.

use std::collections::BTreeMap;

use xtask::bench::{self, Counts, Sample, QUICK_PAGES};

/// Each workload's counts, checked to be the same in every run of it (bench_text runs 4 times).
fn by_workload(
    samples: &[Sample],
    log: &str,
    workloads: &[&str],
) -> BTreeMap<String, (u64, Counts)> {
    let mut map: BTreeMap<String, (u64, Counts)> = BTreeMap::new();
    for sample in samples {
        let counts = sample.counts.unwrap_or_else(|| panic!("no counts in {sample:?}"));
        if let Some(seen) = map.get(&sample.workload) {
            assert_eq!(
                *seen,
                (sample.pages, counts),
                "{} differs between runs\n{log}",
                sample.workload
            );
        }
        map.insert(sample.workload.clone(), (sample.pages, counts));
    }
    for workload in workloads {
        assert!(map.contains_key(*workload), "no BENCH line for {workload}\n{log}");
    }
    map
}

fn boot(extra: &str) -> (BTreeMap<String, (u64, Counts)>, String) {
    let kernel = Some(faultline_tests::kernel().to_path_buf());
    let (outcome, samples) = bench::run_dom0(kernel, QUICK_PAGES, extra).expect("the bench boots");
    let log = format!("{}\n(log: {})", outcome.guest_log, outcome.log_path.display());
    assert!(outcome.passed(), "the bench programs did not all pass: {}\n{log}", outcome.reason);
    (by_workload(&samples, &log, &bench::WORKLOADS), log)
}

/// Per page, as a fraction.
fn per_page(count: u64, pages: u64) -> f64 {
    count as f64 / pages as f64
}

#[test]
fn with_the_default_windows_the_counts_meet_issue_11() {
    let (w, log) = boot("");
    let get = |name: &str| w[name];

    // Sequential write and the same range written again after munmap: prefault maps 16 pages
    // ahead in the fault's batch.
    for name in ["seq_write", "retouch"] {
        let (pages, c) = get(name);
        assert!(per_page(c.faults, pages) <= 0.07, "{name}: {c:?} for {pages} pages\n{log}");
        assert!(per_page(c.hypercalls, pages) <= 0.07, "{name}: {c:?} for {pages} pages\n{log}");
        // A page in a fresh L1 is a plain store before the L1 is linked: fewer entries than pages.
        assert!(c.entries <= pages + 4, "{name}: {c:?}\n{log}");
    }
    // Random write: prefault never fires, one fault, one batch, one entry per page.
    let (pages, c) = get("rand_write");
    assert_eq!(
        (c.faults, c.hypercalls, c.mmu_update, c.entries),
        (pages, pages, pages, pages),
        "rand_write\n{log}"
    );
    // Sparse write: a new L1 each time, linked in the same batch as the page: one hypercall per
    // fault, about two entries.
    let (pages, c) = get("sparse_write");
    assert_eq!(
        (c.faults, c.hypercalls, c.mmu_update),
        (pages, pages, pages),
        "sparse_write\n{log}"
    );
    assert!(c.entries >= 2 * pages - 2, "sparse_write: new tables in the batch: {c:?}\n{log}");
    // File-backed read and the shared-text storm: one fault per 32-page window.
    for name in ["file_read", "text_storm"] {
        let (pages, c) = get(name);
        assert!(per_page(c.faults, pages) <= 0.07, "{name}: {c:?} for {pages} pages\n{log}");
        assert!(per_page(c.hypercalls, pages) <= 0.07, "{name}: {c:?} for {pages} pages\n{log}");
        // Up to 32 entries a batch: a window's pages in a fresh L1 are plain stores before the
        // L1 is linked, so a batch that links a table holds fewer.
        assert!(c.entries <= pages + 4, "{name}: {c:?}\n{log}");
        assert!(c.entries <= 32 * c.mmu_update, "{name}: more than 32 entries a batch\n{log}");
    }
    // Copy on first write of .data: no fault-around for writes; one copy, one batch per page.
    let (pages, c) = get("cow_write");
    assert_eq!((c.faults, c.hypercalls, c.entries), (pages, pages, pages), "cow_write\n{log}");
    // MAP_POPULATE: no fault in the range, at most a hypercall per 100 pages.
    let (pages, c) = get("populate");
    assert_eq!(c.faults, 0, "populate: {c:?}\n{log}");
    assert!(per_page(c.hypercalls, pages) <= 0.01, "populate: {c:?} for {pages} pages\n{log}");
    assert_eq!(c.entries, pages, "populate\n{log}");
    // munmap takes no fault (its hypercalls: the next test). No flush or update_va_mapping
    // anywhere but in munmap.
    assert_eq!(get("munmap").1.faults, 0, "munmap\n{log}");
    for (name, (_, c)) in &w {
        if name != "munmap" {
            assert_eq!((c.mmuext, c.uva), (0, 0), "{name}: a flush or update_va_mapping\n{log}");
        }
    }
}

#[test]
fn with_both_windows_off_every_page_is_a_fault_and_a_batch() {
    let (w, log) = boot("fault_around=0 prefault=0");
    for name in ["seq_write", "retouch", "rand_write", "file_read", "text_storm", "cow_write"] {
        let (pages, c) = w[name];
        assert_eq!((c.faults, c.hypercalls, c.mmu_update), (pages, pages, pages), "{name}\n{log}");
        // One entry per page, plus, per table built on the way (at most 4 for these ranges: an
        // L3, an L2 and two L1s), its link and the read-only downgrade of each alias of its frame
        // (the direct map, and Xen's boot mapping when the frame lies inside it: up to
        // MAX_ALIAS_WINDOWS = 2, fewer when the alias sits in a table still being built, which
        // takes a plain store). Which frames the allocator hands out, and so how many aliases
        // they have, moves with the kernel's size: 7 extra entries for seq_write at a3ddfec, 4
        // before it (the pages and the mapping the same).
        assert!((pages..=pages + 4 * 3).contains(&c.entries), "{name}: {c:?}\n{log}");
    }
    // MAP_POPULATE does not depend on either window.
    let (pages, c) = w["populate"];
    assert_eq!(c.faults, 0, "populate: {c:?}\n{log}");
    assert!(per_page(c.hypercalls, pages) <= 0.01, "populate: {c:?}\n{log}");
}

/// Issue 9's target for a range operation: one munmap of touched pages costs at most one
/// hypercall per 100 pages (one mmu_update per L1 and one flush per batch).
#[test]
fn munmap_costs_at_most_a_hypercall_per_100_pages() {
    let (w, log) = boot("");
    let (pages, c) = w["munmap"];
    assert!(per_page(c.hypercalls, pages) <= 0.01, "munmap: {c:?} for {pages} pages\n{log}");
}

/// The two-thread workloads on 2 vCPUs: a fault per page and a hypercall per fault with one
/// thread or two (the second thread's own hypercalls are counted on its vCPU and added), no
/// shootdown while only faults happen; a munmap of a page only this thread touched is a local
/// flush, of one both threads touched exactly one shootdown (one `MMUEXT_INVLPG_MULTI`) and the
/// same hypercalls (Xen's flush reaches the other vCPU, the kernel sends no IPI of its own).
#[test]
fn two_threads_fault_once_per_page_and_each_munmap_both_touched_is_one_shootdown() {
    let kernel = Some(faultline_tests::kernel().to_path_buf());
    let (outcome, samples) =
        bench::run_dom0_threads(kernel, QUICK_PAGES).expect("the two-thread bench boots");
    let log = format!("{}\n(log: {})", outcome.guest_log, outcome.log_path.display());
    assert!(outcome.passed(), "c_bench_threads did not pass: {}\n{log}", outcome.reason);
    let w = by_workload(&samples, &log, &bench::THREAD_WORKLOADS);
    for name in ["fault_1t", "fault_2t"] {
        let (pages, c) = w[name];
        assert_eq!(pages, QUICK_PAGES, "{name}\n{log}");
        assert_eq!(
            (c.faults, c.hypercalls, c.mmu_update, c.shootdowns, c.ipis),
            (pages, pages, pages, Some(0), Some(0)),
            "{name}: {c:?}\n{log}"
        );
    }
    for (name, shootdowns) in [("munmap_1t", 0), ("munmap_2t", 1)] {
        let (calls, c) = w[name];
        assert_eq!(
            (c.faults, c.hypercalls, c.mmu_update, c.mmuext, c.shootdowns, c.ipis),
            (0, 2 * calls, calls, calls, Some(shootdowns * calls), Some(0)),
            "{name}: {c:?} for {calls} calls\n{log}"
        );
    }
}

/// `cargo xtask bench --quick`: faultline and Linux in one boot; faultline's counts agree across
/// the guests and meet the same targets; every workload has a Linux time to compare with.
#[test]
fn bench_quick_runs_faultline_and_linux_in_one_boot() {
    let options = bench::BenchOptions {
        runs: 1,
        quick: true,
        linux: true,
        out: xtask::workspace::target_dir().join("bench-test"),
        quiet: true,
        command: "cargo xtask bench --quick".into(),
    };
    let report = bench::run_bench(&options).expect("cargo xtask bench --quick");
    let paths = bench::write(&report, &options.out).expect("the results are written");
    assert_eq!(paths.len(), 3);
    let table = bench::markdown(&report);
    for row in &report.rows {
        assert!(
            row.linux_tsc_per_page.is_some_and(|t| t > 0.0),
            "{}: no Linux time\n{table}",
            row.name
        );
        assert!(row.ratio().is_some(), "{}\n{table}", row.name);
    }
    let row = |name: &str| report.rows.iter().find(|r| r.name == name).expect(name);
    assert!(row("file_read").faults_per_page() <= 0.07, "{table}");
    assert!(row("file_read").hypercalls_per_page() <= 0.07, "{table}");
    assert!(row("seq_write").hypercalls_per_page() <= 0.07, "{table}");
    assert_eq!(row("rand_write").faults_per_page(), 1.0, "{table}");
    assert_eq!(row("populate").counts.faults, 0, "{table}");
    assert!(row("populate").hypercalls_per_page() <= 0.01, "{table}");
    // The two-thread guests (2 vCPUs each): every workload has both kernels' times, and the
    // munmap of a page both threads touched is one shootdown.
    assert_eq!(report.thread_rows.len(), bench::THREAD_WORKLOADS.len(), "{table}");
    for row in &report.thread_rows {
        assert!(row.ratio().is_some(), "{}: no Linux time\n{table}", row.name);
    }
    let munmap_2t = report.thread_rows.iter().find(|r| r.name == "munmap_2t").expect("munmap_2t");
    assert_eq!(munmap_2t.counts.shootdowns, Some(munmap_2t.pages), "{table}");
}
