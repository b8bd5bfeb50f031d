//! One real page fault, traced and drawn: `trace=fault` on the fast dom0 path, as `cargo xtask
//! trace` boots it.
//!
//! What it proves: the kernel prints every step of the first user fault that needs new tables
//! (the delivery, the walk to the missing level, a frame and a read-only alias per new table, the
//! stores, every entry of the one `mmu_update` batch, Xen's answer, the iret); the diagram drawn
//! from those lines has every step; and the committed figure and the walkthrough of
//! docs/page-fault.md still have the same steps, in the same order.

use faultline_tests::{kernel, Verdict, EXIT_SUCCESS};
use xtask::trace::{caption, check_complete, render_svg, trace_boot, Trace, DEFAULT_PROGRAM};

fn traced() -> Trace {
    let (trace, outcome) = trace_boot(DEFAULT_PROGRAM, Some(kernel()), true)
        .unwrap_or_else(|error| panic!("the traced boot failed: {error}"));
    assert_eq!(outcome.exit_code, EXIT_SUCCESS);
    assert_eq!(outcome.verdict, Some(Verdict::Success));
    let svg = render_svg(&trace, &caption(DEFAULT_PROGRAM, &outcome));
    let out = xtask::workspace::target_dir().join("trace-test").join("page-fault.svg");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, &svg).unwrap();
    check_diagram(&trace, &svg);
    trace
}

/// Every step is a numbered group of the diagram, with the values of its line.
fn check_diagram(trace: &Trace, svg: &str) {
    for step in &trace.steps {
        let group = format!(r#"data-step="{}" data-kind="{}""#, step.number, step.kind);
        assert_eq!(svg.matches(&group).count(), 1, "the diagram has no group {group}");
    }
    let fault = &trace.steps[0];
    assert!(svg.contains(&format!("#PF cr2={} err={} (", fault.get("cr2"), fault.get("err"))));
    for alloc in trace.of_kind("alloc") {
        let text = format!("pfn {}, mfn {}", alloc.get("pfn"), alloc.get("mfn"));
        assert!(svg.contains(&text), "the diagram lacks the frame {text}");
    }
    for alias in trace.of_kind("readonly") {
        assert!(
            svg.contains(alias.get("alias")),
            "the diagram lacks the alias {}",
            alias.get("alias")
        );
    }
    for entry in trace.of_kind("entry") {
        let text = format!("ptr={} val={}", entry.get("ptr"), entry.get("val"));
        assert!(svg.contains(&text), "the diagram lacks the batch entry {text}");
    }
    assert!(svg.contains("HYPERVISOR_iret"));
}

/// The kinds of the steps of a diagram, in order (its `data-kind` attributes).
fn kinds_in_svg(svg: &str) -> Vec<String> {
    svg.split(r#"data-kind=""#)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect()
}

/// The walkthrough under the figure: its `<n>. **<kind>**` items, in order.
fn walkthrough(doc: &str) -> Vec<(usize, String)> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("The figure"))
        .expect("docs/page-fault.md has a section `## The figure...`");
    section
        .lines()
        .filter_map(|line| {
            let (number, rest) = line.split_once(". **")?;
            let kind = rest.split_once("**")?.0;
            Some((number.parse().ok()?, kind.to_string()))
        })
        .collect()
}

#[test]
fn a_traced_fault_has_every_step_and_matches_the_docs() {
    let trace = traced();
    check_complete(&trace).expect("every step");
    let missing = trace.of_kind("walk").find_map(|w| w.get("outcome").strip_prefix("missing-"));
    assert_eq!(missing, Some("L3"), "hello's first fault needs L3, L2 and L1 tables");
    assert_eq!(trace.of_kind("alloc").count(), 3);
    assert_eq!(trace.of_kind("readonly").count(), 3);
    assert_eq!(trace.of_kind("entry").count(), 4);

    let kinds: Vec<String> = trace.steps.iter().map(|s| s.kind.clone()).collect();
    let root = xtask::workspace::root();
    let committed = std::fs::read_to_string(root.join("docs/page-fault.svg")).unwrap();
    assert_eq!(
        kinds_in_svg(&committed),
        kinds,
        "docs/page-fault.svg is stale: run `cargo xtask trace` and commit it"
    );
    let doc = std::fs::read_to_string(root.join("docs/page-fault.md")).unwrap();
    assert!(doc.contains("](page-fault.svg)"), "docs/page-fault.md does not show the figure");
    assert!(doc.contains("cargo xtask trace"), "docs/page-fault.md does not name the command");
    let expected: Vec<(usize, String)> =
        trace.steps.iter().map(|s| (s.number, s.kind.clone())).collect();
    assert_eq!(walkthrough(&doc), expected, "the walkthrough's numbered steps are not the trace's");
}

#[test]
fn an_unknown_trace_is_an_error_verdict() {
    let run = faultline_tests::boot("trace=faults");
    run.assert_exit(faultline_tests::EXIT_ERROR)
        .assert_guest_contains("unknown trace 'faults' (known: fault)")
        .assert_last_line_is_verdict(Verdict::Error);
    assert!(!run.outcome.guest_log.contains("trace: "), "nothing may be traced");
}
