//! `cargo xtask trace`: one real page fault, traced by the kernel and drawn as a sequence diagram.
//!
//! The kernel, booted with `trace=fault`, prints every step of the first user fault that needs
//! new page tables as `trace: <n> <kind> key=value ...` lines (kernel/src/trace.rs; faultline-abi's
//! [`SCHEMA`] says which keys each kind has). [`parse`] reads them strictly: a line that does not
//! follow the schema, a gap in the numbering or a missing `end` line is an error, never skipped.
//! [`check_complete`] checks that every step of the walkthrough is there; [`render_svg`] draws the
//! steps as arrows between three lanes (the user program, the guest kernel, Xen), numbered as in
//! the trace and in docs/page-fault.md.

use std::fmt::Write as _;
use std::path::Path;

use faultline_abi::trace::{keys_of, END, PREFIX, SCHEMA, TRUNCATED};

use crate::error::{Context as _, Error, Result};
use crate::run::{run, Mode, RunOptions, RunOutcome};

/// The program whose first fault `cargo xtask trace` draws by default.
pub const DEFAULT_PROGRAM: &str = "hello";

/// One `trace:` line: its number, kind and fields in the order the schema gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub number: usize,
    pub kind: String,
    pub fields: Vec<(String, String)>,
}

impl Step {
    /// The value of `key`. [`parse`] checked that the step's kind has it.
    pub fn get(&self, key: &str) -> &str {
        self.fields.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }
}

/// The steps of one traced fault, numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub steps: Vec<Step>,
}

impl Trace {
    /// The steps of one kind, in order.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Step> + 'a {
        self.steps.iter().filter(move |step| step.kind == kind)
    }
}

/// Reads the `trace:` lines among `lines` (other lines are the rest of the console and are
/// ignored). Every `trace:` line must follow the schema; the numbers must run 1, 2, 3, ...; the
/// last line must be `trace: end steps=<n>` with the right count.
pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Trace> {
    let mut steps: Vec<Step> = Vec::new();
    let mut end = None;
    for (at, raw) in lines.into_iter().enumerate() {
        let line = raw.trim_end();
        let Some(rest) = line.strip_prefix(PREFIX) else { continue };
        let bad = |why: &str| Error::new(format!("trace line {}: {why}: {line:?}", at + 1));
        if end.is_some() {
            return Err(bad("a trace line after the end line"));
        }
        let rest = rest.strip_prefix(' ').ok_or_else(|| bad("no space after `trace:`"))?;
        let mut words = rest.split(' ');
        let first = words.next().unwrap_or("");
        if first == END {
            let count = words
                .next()
                .and_then(|w| w.strip_prefix("steps="))
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|_| words.next().is_none())
                .ok_or_else(|| bad("the end line is `trace: end steps=<n>`"))?;
            if count != steps.len() {
                return Err(bad(&format!(
                    "the end line counts {count} steps, not {}",
                    steps.len()
                )));
            }
            end = Some(count);
            continue;
        }
        if first == TRUNCATED {
            return Err(bad("the kernel dropped steps that did not fit its buffer"));
        }
        let number: usize = first.parse().map_err(|_| bad("no step number"))?;
        if number != steps.len() + 1 {
            return Err(bad(&format!("step {number} where step {} was due", steps.len() + 1)));
        }
        let kind = words.next().filter(|k| !k.is_empty()).ok_or_else(|| bad("no kind"))?;
        let keys = keys_of(kind).ok_or_else(|| {
            let known: Vec<&str> = SCHEMA.iter().map(|(k, _)| *k).collect();
            bad(&format!("unknown kind {kind:?} (known: {})", known.join(", ")))
        })?;
        let mut fields = Vec::new();
        for word in words {
            let (key, value) =
                word.split_once('=').ok_or_else(|| bad("a word is not key=value"))?;
            if value.is_empty() {
                return Err(bad(&format!("{key}= has no value")));
            }
            fields.push((key.to_string(), value.to_string()));
        }
        let got: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        if got != keys {
            return Err(bad(&format!("a {kind} line has the keys {}", keys.join(" "))));
        }
        steps.push(Step { number, kind: kind.to_string(), fields });
    }
    match end {
        Some(_) => Ok(Trace { steps }),
        None if steps.is_empty() => Err(Error::new(
            "no `trace:` lines: the kernel printed none (booted without trace=fault, or no program \
             faulted on a page that needed new tables)",
        )),
        None => Err(Error::new(format!(
            "the trace stops after step {} without its end line (the guest stopped mid-trace?)",
            steps.len()
        ))),
    }
}

/// The levels below `missing` that the fault had to build, top first (`L3` gives L3, L2, L1).
fn new_levels(missing: &str) -> &'static [&'static str] {
    match missing {
        "L3" => &["L3", "L2", "L1"],
        "L2" => &["L2", "L1"],
        "L1" => &["L1"],
        _ => &[],
    }
}

/// Checks that the trace has every step of a demand fault that built tables: the delivery (fault
/// and frame), the walk down to the missing level, a frame allocated and an alias made read-only
/// for each new table, the stores that chain them, the link, the `mmu_update` batch with every
/// entry decoded, Xen's answer, and the iret to the faulting instruction. Names what is missing.
pub fn check_complete(trace: &Trace) -> Result<()> {
    let mut missing = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            missing.push(what);
        }
    };
    let kinds: Vec<&str> = trace.steps.iter().map(|s| s.kind.as_str()).collect();
    expect(kinds.first() == Some(&"fault"), "step 1 is the fault".into());
    expect(kinds.get(1) == Some(&"frame"), "step 2 is the frame Xen pushed".into());
    let walk_missing =
        trace.of_kind("walk").find_map(|s| s.get("outcome").strip_prefix("missing-"));
    expect(walk_missing.is_some(), "a walk step that finds a level missing".into());
    let levels = new_levels(walk_missing.unwrap_or(""));
    expect(walk_missing.is_none() || !levels.is_empty(), "a missing level L3, L2 or L1".into());
    let allocs: Vec<&Step> = trace.of_kind("alloc").filter(|s| s.get("for") != "page").collect();
    let alloc_levels: Vec<&str> = allocs.iter().map(|s| s.get("for")).collect();
    expect(alloc_levels == levels, format!("one new table per level {levels:?}: {alloc_levels:?}"));
    for table in &allocs {
        let pfn = table.get("pfn");
        let aliases = trace.of_kind("readonly").filter(|s| s.get("table_pfn") == pfn).count();
        expect(aliases > 0, format!("a read-only alias of the new {} table", table.get("for")));
    }
    // One store per new table (its child or the leaf), plus one per page that fault-around or
    // prefault put into the new L1 while it was still ordinary memory.
    let stores = trace.of_kind("store").count();
    let extra_leaves = trace.of_kind("leaf").count().saturating_sub(1);
    expect(
        stores >= levels.len() && stores <= levels.len() + extra_leaves,
        format!("{} stores into the new tables", levels.len()),
    );
    let links: Vec<&Step> = trace.of_kind("link").collect();
    expect(links.len() == 1, "one link of the new subtree".into());
    let batches: Vec<&Step> = trace.of_kind("mmu_update").collect();
    expect(batches.len() == 1, "one mmu_update batch".into());
    if let Some(batch) = batches.first() {
        let count: usize = batch.get("count").parse().unwrap_or(0);
        let entries: Vec<&Step> =
            trace.steps.iter().skip(batch.number).take_while(|s| s.kind == "entry").collect();
        expect(entries.len() == count, format!("all {count} entries after the mmu_update step"));
        for (i, entry) in entries.iter().enumerate() {
            expect(entry.get("i") == i.to_string(), format!("entry {i} in order"));
            let decoded = entry.get("role") != "other" && entry.get("level") != "?";
            expect(decoded, format!("entry {i} decoded (level and role)"));
        }
        let queued = trace.of_kind("readonly").filter(|s| s.get("via") == "queue");
        for alias in queued {
            let sent = entries.iter().any(|e| e.get("ptr") == alias.get("ptr"));
            expect(sent, format!("the batch writes the alias entry at {}", alias.get("ptr")));
        }
        for link in &links {
            let sent = entries.iter().any(|e| e.get("ptr") == link.get("ptr"));
            expect(sent, "the batch writes the link".into());
        }
        let done = trace.of_kind("mmu_update_done").next();
        let applied =
            done.is_some_and(|d| d.get("result") == "ok" && d.get("done") == count.to_string());
        expect(applied, format!("Xen's answer: all {count} entries applied"));
    }
    let last = trace.steps.last();
    let rip = trace.of_kind("frame").next().map(|f| f.get("rip"));
    let iret = last.is_some_and(|s| s.kind == "iret" && Some(s.get("rip")) == rip);
    expect(iret, "the last step is the iret to the faulting instruction".into());
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!("the trace lacks: {}", missing.join("; "))))
    }
}

/// Where a step's arrow goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    User,
    Kernel,
    Xen,
}

/// One arrow of the diagram: from, to (equal: a step inside that lane), label and detail line.
struct Arrow {
    from: Lane,
    to: Lane,
    label: String,
    detail: String,
}

fn arrow(from: Lane, to: Lane, label: String, detail: String) -> Arrow {
    Arrow { from, to, label, detail }
}

/// What the diagram shows for `step`: one arrow, two for the iret (to Xen, then to the program).
/// `earlier` are the steps before it.
fn arrows(step: &Step, earlier: &[Step]) -> Vec<Arrow> {
    let f = |key| step.get(key);
    let (kernel, xen, user) = (Lane::Kernel, Lane::Xen, Lane::User);
    match step.kind.as_str() {
        "fault" => {
            let present = if f("present") == "yes" { "protection" } else { "not-present" };
            vec![arrow(
                user,
                xen,
                format!(
                    "#PF cr2={} err={} ({},{present},{})",
                    f("cr2"),
                    f("err"),
                    f("access"),
                    f("mode")
                ),
                "the access traps into Xen".into(),
            )]
        }
        "frame" => vec![arrow(
            xen,
            kernel,
            format!(
                "bounce frame: rip={} cs={} rflags={} rsp={} ss={}",
                f("rip"),
                f("cs"),
                f("rflags"),
                f("rsp"),
                f("ss")
            ),
            format!("below it rcx={} r11={}; cr2 in vcpu_info", f("rcx"), f("r11")),
        )],
        "leaf" => vec![arrow(
            kernel,
            kernel,
            format!("page {}: pfn {} -> mfn {} (p2m)", f("va"), f("pfn"), f("mfn")),
            format!("its entry will be {} ({})", f("pte"), f("flags")),
        )],
        "alloc" if f("for") == "page" => vec![arrow(
            kernel,
            kernel,
            format!("allocate the page: pfn {}, mfn {}", f("pfn"), f("mfn")),
            "zeroed through the direct map".into(),
        )],
        "alloc" => vec![arrow(
            kernel,
            kernel,
            format!("allocate an {} table: pfn {}, mfn {}", f("for"), f("pfn"), f("mfn")),
            "zeroed while it is ordinary writable memory".into(),
        )],
        "walk" => {
            let mut outcome = match f("outcome").strip_prefix("missing-") {
                Some(level) => format!("not present: the {level} table is missing"),
                None if f("outcome") == "descend" => "present: down to the next table".into(),
                None => "the leaf entry".into(),
            };
            let same = |s: &Step| s.kind == "walk" && s.fields == step.fields;
            if earlier.iter().any(same) {
                outcome.push_str(" (read again)");
            }
            vec![arrow(
                kernel,
                kernel,
                format!("walk {}[{}] = {}", f("level"), f("index"), f("entry")),
                format!("table pfn {}: {outcome}", f("table_pfn")),
            )]
        }
        "store" => vec![arrow(
            kernel,
            kernel,
            format!(
                "store {}[{}] = {} (mfn {} {})",
                f("level"),
                f("index"),
                f("val"),
                f("mfn"),
                f("flags")
            ),
            format!("plain write into new table pfn {}", f("table_pfn")),
        )],
        "link" => vec![arrow(
            kernel,
            kernel,
            format!(
                "queue link {}[{}] = {} (mfn {} {})",
                f("level"),
                f("index"),
                f("val"),
                f("mfn"),
                f("flags")
            ),
            format!("parent table pfn {}, ptr {}: back of the batch", f("table_pfn"), f("ptr")),
        )],
        "readonly" => {
            let how = if f("via") == "queue" { "queue" } else { "store" };
            let place = if f("via") == "queue" { "front of the batch" } else { "plain write" };
            vec![arrow(
                kernel,
                kernel,
                format!("{how} alias {} of table pfn {} read-only", f("alias"), f("table_pfn")),
                format!(
                    "L1[{}] of pfn {}, ptr {}: {} -> {}, {place}",
                    f("index"),
                    f("l1_pfn"),
                    f("ptr"),
                    f("old"),
                    f("new")
                ),
            )]
        }
        "mmu_update" => vec![arrow(
            kernel,
            xen,
            format!("HYPERVISOR_mmu_update: batch of {} entries", f("count")),
            "one hypercall, applied in order".into(),
        )],
        "entry" => {
            let role = match f("role") {
                "readonly" => "alias read-only",
                "link" => "link the subtree",
                other => other,
            };
            vec![arrow(
                xen,
                xen,
                format!(
                    "[{}] {}[{}] -> mfn {} {}: {role}",
                    f("i"),
                    f("level"),
                    f("index"),
                    f("mfn"),
                    f("flags")
                ),
                format!("ptr={} val={}", f("ptr"), f("val")),
            )]
        }
        "mmu_update_done" => vec![arrow(
            xen,
            kernel,
            format!("result={}: {} entries applied", f("result"), f("done")),
            "the link made Xen validate the new tables".into(),
        )],
        "iret" => vec![
            arrow(
                kernel,
                xen,
                "HYPERVISOR_iret (flags word 0)".into(),
                format!(
                    "rip={} cs={} rflags={} rsp={} ss={}",
                    f("rip"),
                    f("cs"),
                    f("rflags"),
                    f("rsp"),
                    f("ss")
                ),
            ),
            arrow(
                xen,
                user,
                format!("resume at rip={}", f("rip")),
                "the instruction runs again".into(),
            ),
        ],
        other => vec![arrow(kernel, kernel, other.to_string(), String::new())],
    }
}

/// The phase a step belongs to, for the shaded bands.
fn phase(kind: &str) -> &'static str {
    match kind {
        "fault" | "frame" => "delivery",
        "leaf" => "the page",
        "walk" => "walk",
        "alloc" | "store" => "build the subtree",
        "link" | "readonly" => "queue",
        "mmu_update" | "entry" | "mmu_update_done" => "one batch",
        _ => "return",
    }
}

/// One line per step: `<n>. <label>` (the labels of the diagram), for checking the docs.
pub fn step_list(trace: &Trace) -> String {
    let mut out = String::new();
    for step in &trace.steps {
        let earlier = &trace.steps[..step.number - 1];
        let labels: Vec<String> = arrows(step, earlier).into_iter().map(|a| a.label).collect();
        let _ = writeln!(out, "{}. {} {}", step.number, step.kind, labels.join("; "));
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const WIDTH: i64 = 1240;
const TOP: i64 = 96;
const ROW: i64 = 34;
const USER_X: i64 = 120;
const KERNEL_X: i64 = 380;
const XEN_X: i64 = 1100;

fn lane_x(lane: Lane) -> i64 {
    match lane {
        Lane::User => USER_X,
        Lane::Kernel => KERNEL_X,
        Lane::Xen => XEN_X,
    }
}

/// Draws the trace: a lane per party, a numbered row per step, `caption` under it.
pub fn render_svg(trace: &Trace, caption: &str) -> String {
    let rows: Vec<(&Step, Vec<Arrow>)> =
        trace.steps.iter().enumerate().map(|(i, s)| (s, arrows(s, &trace.steps[..i]))).collect();
    let row_count: i64 = rows.iter().map(|(_, a)| a.len() as i64).sum();
    let bottom = TOP + row_count * ROW + 10;
    let height = bottom + 50;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="12">"##
    );
    svg.push_str(concat!(
        "<defs><marker id=\"head\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"8\" ",
        "markerHeight=\"8\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#333\"/>",
        "</marker></defs>\n",
        "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
    ));
    // Phase bands behind the rows.
    let mut y = TOP;
    let mut band_start = TOP;
    let mut band_index = 0;
    for (i, (step, arrows)) in rows.iter().enumerate() {
        y += arrows.len() as i64 * ROW;
        let next_phase = rows.get(i + 1).map(|(s, _)| phase(&s.kind));
        if next_phase != Some(phase(&step.kind)) {
            let fill = if band_index % 2 == 0 { "#f3f6fb" } else { "#fbf8f1" };
            let _ = writeln!(
                svg,
                r##"<rect x="0" y="{band_start}" width="{WIDTH}" height="{}" fill="{fill}"/><text x="{}" y="{}" fill="#889" font-style="italic" font-size="11">{}</text>"##,
                y - band_start,
                USER_X + 14,
                band_start + 14,
                escape(phase(&step.kind))
            );
            band_start = y;
            band_index += 1;
        }
    }
    // Lanes: header boxes and lifelines.
    for (lane, title, subtitle) in [
        (Lane::User, "user program", "ring 3, its own L4"),
        (Lane::Kernel, "guest kernel (faultline)", "PV kernel, trap handler"),
        (Lane::Xen, "Xen", "hypervisor"),
    ] {
        let x = lane_x(lane);
        let _ = writeln!(
            svg,
            r##"<line x1="{x}" y1="62" x2="{x}" y2="{bottom}" stroke="#99a" stroke-dasharray="4 4"/><rect x="{}" y="14" width="200" height="48" rx="6" fill="#e8eef8" stroke="#557"/><text x="{x}" y="34" text-anchor="middle" font-weight="bold">{}</text><text x="{x}" y="52" text-anchor="middle" font-size="11" fill="#445">{}</text>"##,
            x - 100,
            escape(title),
            escape(subtitle)
        );
    }
    // The steps.
    let mut y = TOP;
    for (step, arrows) in &rows {
        let _ = writeln!(
            svg,
            r#"<g class="step" id="step-{}" data-step="{}" data-kind="{}">"#,
            step.number,
            step.number,
            escape(&step.kind)
        );
        for (i, a) in arrows.iter().enumerate() {
            let mid = y + ROW / 2;
            if i == 0 {
                let _ = writeln!(
                    svg,
                    r##"<circle cx="34" cy="{mid}" r="11" fill="#335" /><text x="34" y="{}" text-anchor="middle" fill="white" font-size="11" font-weight="bold">{}</text>"##,
                    mid + 4,
                    step.number
                );
            }
            draw_arrow(&mut svg, a, mid);
            y += ROW;
        }
        svg.push_str("</g>\n");
    }
    let _ = writeln!(
        svg,
        r##"<text x="20" y="{}" font-size="11" fill="#445">{}</text>"##,
        bottom + 30,
        escape(caption)
    );
    svg.push_str("</svg>\n");
    svg
}

fn draw_arrow(svg: &mut String, a: &Arrow, mid: i64) {
    let (x1, x2) = (lane_x(a.from), lane_x(a.to));
    let label = escape(&a.label);
    let detail = escape(&a.detail);
    let halo = r#"paint-order="stroke" stroke="white" stroke-width="4""#;
    if x1 == x2 {
        // A step inside one lane: a small loop, the text beside it (left of Xen's lane).
        let _ = writeln!(
            svg,
            r##"<path d="M{x1},{} h26 v12 h-24" fill="none" stroke="#333" marker-end="url(#head)"/>"##,
            mid - 8
        );
        let (tx, anchor) = if a.from == Lane::Xen { (x1 - 14, "end") } else { (x1 + 36, "start") };
        let _ = writeln!(
            svg,
            r##"<text x="{tx}" y="{}" text-anchor="{anchor}" {halo}>{label}</text><text x="{tx}" y="{}" text-anchor="{anchor}" font-size="10.5" fill="#556" {halo}>{detail}</text>"##,
            mid - 2,
            mid + 11
        );
        return;
    }
    let end = if x2 > x1 { x2 - 2 } else { x2 + 2 };
    let _ = writeln!(
        svg,
        r##"<line x1="{x1}" y1="{mid}" x2="{end}" y2="{mid}" stroke="#333" stroke-width="1.4" marker-end="url(#head)"/>"##
    );
    let cx = (x1 + x2) / 2;
    let _ = writeln!(
        svg,
        r##"<text x="{cx}" y="{}" text-anchor="middle" font-weight="bold" {halo}>{label}</text><text x="{cx}" y="{}" text-anchor="middle" font-size="10.5" fill="#556" {halo}>{detail}</text>"##,
        mid - 5,
        mid + 13
    );
}

/// The guest command line `cargo xtask trace` boots with.
pub fn cmdline(program: &str) -> String {
    format!("trace=fault tests={program}")
}

/// Boots faultline on the fast dom0 path with `trace=fault` and `program` as the only test
/// program, and returns the checked trace and the run. `kernel` boots that image instead of
/// building one.
pub fn trace_boot(
    program: &str,
    kernel: Option<&Path>,
    quiet: bool,
) -> Result<(Trace, RunOutcome)> {
    let options = RunOptions {
        mode: Mode::Dom0,
        cmdline: cmdline(program),
        programs: true,
        kernel: kernel.map(Path::to_path_buf),
        quiet,
        ..RunOptions::default()
    };
    let outcome = run(&options)?;
    if !outcome.passed() {
        return Err(Error::new(format!(
            "the traced boot did not pass: {} (log: {})",
            outcome.reason,
            outcome.log_path.display()
        )));
    }
    let trace = parse(outcome.guest_lines())
        .and_then(|trace| check_complete(&trace).map(|()| trace))
        .map_err(|e| Error::new(format!("{e} (log: {})", outcome.log_path.display())))?;
    Ok((trace, outcome))
}

/// The caption under the diagram: how it was made, and on which Xen (the guest's `xen: version`
/// line).
pub fn caption(program: &str, outcome: &RunOutcome) -> String {
    let xen = outcome
        .guest_lines()
        .find_map(|line| line.strip_prefix("xen: version "))
        .and_then(|rest| rest.split_whitespace().next())
        .map_or(String::new(), |version| format!(" on Xen {version}"));
    format!(
        "Drawn by `cargo xtask trace` from one boot{xen} (dom0 path, guest command line \"{}\"): \
         {program}'s first fault that needed new tables.",
        cmdline(program)
    )
}

/// Writes the diagram of `trace` with `caption` to `out`.
pub fn write_svg(trace: &Trace, caption: &str, out: &Path) -> Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, render_svg(trace, caption)).context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../testdata/trace-hello.txt");

    fn sample() -> Trace {
        parse(SAMPLE.lines()).expect("the recorded sample parses")
    }

    fn parse_err(text: &str) -> String {
        parse(text.lines()).expect_err("must be refused").to_string()
    }

    /// The sample with line `n` (1-based, among the sample's lines) replaced.
    fn with_line(n: usize, line: &str) -> String {
        let mut lines: Vec<&str> = SAMPLE.lines().collect();
        lines[n - 1] = line;
        lines.join("\n")
    }

    #[test]
    fn the_recorded_sample_is_a_complete_trace() {
        let trace = sample();
        assert_eq!(trace.steps.len(), 22);
        assert_eq!(trace.steps[0].get("cr2"), "0x400120");
        assert_eq!(trace.steps[2].get("outcome"), "missing-L3");
        assert_eq!(trace.of_kind("entry").count(), 4);
        check_complete(&trace).unwrap();
    }

    #[test]
    fn other_console_lines_are_ignored() {
        let text =
            format!("faultline 0.1.0\n(XEN) trace: not ours\n{SAMPLE}Test result: SUCCESS\n");
        assert_eq!(parse(text.lines()).unwrap(), sample());
    }

    #[test]
    fn a_malformed_line_is_an_error_that_quotes_it() {
        let e = parse_err(&with_line(6, "trace: 6 alloc for=L3 pfn=0x4ec"));
        assert!(e.contains("trace line 6") && e.contains("keys for pfn mfn"), "{e}");
        assert!(e.contains("\"trace: 6 alloc for=L3 pfn=0x4ec\""), "{e}");
        let e = parse_err(&with_line(6, "trace: 6 allocate for=L3 pfn=0x4ec mfn=0x2870"));
        assert!(e.contains("unknown kind \"allocate\""), "{e}");
        let e = parse_err(&with_line(6, "trace: 6 alloc for=L3 pfn 0x4ec mfn=0x2870"));
        assert!(e.contains("not key=value"), "{e}");
        let e = parse_err(&with_line(6, "trace: 6 alloc for=L3 pfn= mfn=0x2870"));
        assert!(e.contains("pfn= has no value"), "{e}");
        let e = parse_err(&with_line(6, "trace:6 alloc for=L3 pfn=0x4ec mfn=0x2870"));
        assert!(e.contains("no space"), "{e}");
    }

    #[test]
    fn gaps_truncation_and_a_missing_end_are_errors() {
        let e = parse_err(&with_line(6, "trace: 7 alloc for=L3 pfn=0x4ec mfn=0x2870"));
        assert!(e.contains("step 7 where step 6 was due"), "{e}");
        let without_end: Vec<&str> = SAMPLE.lines().take(22).collect();
        let e = parse_err(&without_end.join("\n"));
        assert!(e.contains("stops after step 22 without its end line"), "{e}");
        let e = parse_err(&with_line(23, "trace: end steps=21"));
        assert!(e.contains("counts 21 steps, not 22"), "{e}");
        let e = parse_err(&with_line(22, "trace: truncated dropped=3 (more than 96 steps)"));
        assert!(e.contains("dropped steps"), "{e}");
        let e =
            parse_err(&format!("{SAMPLE}trace: 23 iret rip=0 cs=0 rflags=0 rsp=0 ss=0 flags=0\n"));
        assert!(e.contains("after the end line"), "{e}");
        assert!(parse_err("hello\n").contains("no `trace:` lines"));
    }

    /// The sample without the steps `drop` says, renumbered, as the kernel would print it.
    fn without(drop: impl Fn(&str) -> bool) -> Trace {
        let kept: Vec<&str> =
            SAMPLE.lines().filter(|l| !l.starts_with("trace: end") && !drop(l)).collect();
        let mut text = String::new();
        for (n, line) in kept.iter().enumerate() {
            let rest = line.splitn(3, ' ').nth(2).unwrap();
            let _ = writeln!(text, "trace: {} {rest}", n + 1);
        }
        let _ = writeln!(text, "trace: end steps={}", kept.len());
        parse(text.lines()).unwrap()
    }

    #[test]
    fn an_incomplete_trace_names_what_it_lacks() {
        let cases: [(&str, &str); 7] = [
            (" alloc for=L2", "one new table per level"),
            (" readonly table_pfn=0x4ed", "read-only alias of the new L2 table"),
            (" entry i=3", "all 4 entries"),
            (" iret ", "the iret"),
            (" link ", "one link"),
            (" walk ", "a walk step that finds a level missing"),
            (" mmu_update_done ", "Xen's answer"),
        ];
        for (dropped, lack) in cases {
            let e = check_complete(&without(|l| l.contains(dropped))).unwrap_err().to_string();
            assert!(e.contains(lack), "without {dropped:?}: {e}");
        }
    }

    #[test]
    fn the_diagram_has_a_numbered_group_per_step_with_its_values() {
        let trace = sample();
        let svg = render_svg(&trace, "made by a test");
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
        for step in &trace.steps {
            let group = format!(r#"data-step="{}" data-kind="{}""#, step.number, step.kind);
            assert_eq!(svg.matches(&group).count(), 1, "{group}");
        }
        for text in [
            "#PF cr2=0x400120 err=0x14 (exec,not-present,user)",
            "walk L4[0] = 0x0",
            "not present: the L3 table is missing",
            "not present: the L3 table is missing (read again)",
            "allocate an L2 table: pfn 0x4ed, mfn 0x2871",
            "queue alias 0xffff8880004ee000 of table pfn 0x4ee read-only",
            "HYPERVISOR_mmu_update: batch of 4 entries",
            "[3] L4[0] -&gt; mfn 0x2870 P|W|U|A: link the subtree",
            "HYPERVISOR_iret (flags word 0)",
            "resume at rip=0x400120",
            "made by a test",
        ] {
            assert!(svg.contains(text), "no {text:?} in the diagram");
        }
        // Two arrows for the iret, one for every other step; one number circle per step.
        assert_eq!(svg.matches("<circle").count(), trace.steps.len());
        assert_eq!(svg.matches("marker-end").count(), trace.steps.len() + 1);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape(r#"a<b & "c">"#), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
