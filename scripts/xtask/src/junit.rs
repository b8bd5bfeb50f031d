//! `cargo xtask run --junit PATH`: the guest's results as a JUnit XML file, for CI systems
//! (GitLab, Jenkins) that draw a test report from one.
//!
//! One testcase per result line the guest printed: each self-test check (`[ok] ...`,
//! `[skip] ...`, `[ERROR] ...`, `[FAILURE] ...`) and each TAP line of a test program
//! (`ok 14 - null_read: ...`, `not ok 3 - leak: ...`), and one more, `verdict`, that fails when the
//! run did not end with `Test result: SUCCESS` and a poweroff (a crash, a timeout, a toolstack
//! error), with the runner's reason as its message.

use std::fs;
use std::path::Path;

use crate::error::{Context, Result};
use crate::outcome::Verdict;
use crate::run::RunOutcome;

/// How one result line ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaseStatus {
    Passed,
    Skipped,
    /// `[ERROR]`: the test could not run as meant (JUnit's `<error>`).
    Error,
    /// `[FAILURE]` or `not ok` (JUnit's `<failure>`).
    Failed,
}

/// One testcase: the group it belongs to (`selftest` or `programs`), its name, its status and the
/// whole line the guest printed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    pub class: &'static str,
    pub name: String,
    pub status: CaseStatus,
    pub line: String,
}

/// The testcase a guest line reports, if it is a result line.
pub fn parse_line(line: &str) -> Option<Case> {
    let line = line.trim_end();
    if let Some((verdict, text)) = Verdict::from_check_line(line) {
        let status = match verdict {
            Verdict::Success => CaseStatus::Passed,
            Verdict::Skip => CaseStatus::Skipped,
            Verdict::Error => CaseStatus::Error,
            Verdict::Failure => CaseStatus::Failed,
        };
        let name = text.split(':').next().unwrap_or(text).trim();
        return Some(Case { class: "selftest", name: name.to_string(), status, line: line.into() });
    }
    let (rest, mut status) = if let Some(rest) = line.strip_prefix("not ok ") {
        (rest, CaseStatus::Failed)
    } else {
        (line.strip_prefix("ok ")?, CaseStatus::Passed)
    };
    let (number, text) = rest.split_once(" - ")?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if text.contains("# SKIP") {
        status = CaseStatus::Skipped;
    }
    let name = text.split(':').next().unwrap_or(text).trim();
    Some(Case { class: "programs", name: name.to_string(), status, line: line.into() })
}

/// The JUnit document of a run: `suite` names the testsuite.
pub fn document(suite: &str, outcome: &RunOutcome) -> String {
    let mut cases: Vec<Case> = outcome.guest_lines().filter_map(parse_line).collect();
    cases.push(Case {
        class: "run",
        name: "verdict".to_string(),
        status: if outcome.passed() { CaseStatus::Passed } else { CaseStatus::Failed },
        line: outcome.reason.clone(),
    });
    render(suite, &cases, outcome.elapsed.as_secs_f64())
}

/// Renders testcases as a JUnit XML document.
pub fn render(suite: &str, cases: &[Case], seconds: f64) -> String {
    let count = |status: CaseStatus| cases.iter().filter(|case| case.status == status).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml += &format!(
        "<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">\n",
        escape(suite),
        cases.len(),
        count(CaseStatus::Failed),
        count(CaseStatus::Error),
        count(CaseStatus::Skipped)
    );
    for case in cases {
        let head = format!(
            "    <testcase classname=\"{}.{}\" name=\"{}\"",
            escape(suite),
            case.class,
            escape(&case.name)
        );
        let line = escape(&case.line);
        xml += &match case.status {
            CaseStatus::Passed => {
                format!("{head}>\n      <system-out>{line}</system-out>\n    </testcase>\n")
            }
            CaseStatus::Skipped => {
                format!("{head}>\n      <skipped message=\"{line}\"/>\n    </testcase>\n")
            }
            CaseStatus::Error => {
                format!("{head}>\n      <error message=\"{line}\"/>\n    </testcase>\n")
            }
            CaseStatus::Failed => {
                format!("{head}>\n      <failure message=\"{line}\"/>\n    </testcase>\n")
            }
        };
    }
    xml += "  </testsuite>\n</testsuites>\n";
    xml
}

/// Writes the JUnit document of `outcome` to `path`.
pub fn write(path: &Path, suite: &str, outcome: &RunOutcome) -> Result<()> {
    fs::write(path, document(suite, outcome)).context(|| format!("cannot write {}", path.display()))
}

/// XML text with `&`, `<`, `>`, `"` escaped and control characters (not allowed in XML 1.0)
/// shown as `?`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' => out.push(' '),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_checks_and_tap_lines() {
        let ok = parse_line("[ok] demand: 5 faults, new tables L3=2").unwrap();
        assert_eq!(
            (ok.class, ok.name.as_str(), ok.status),
            ("selftest", "demand", CaseStatus::Passed)
        );
        let failed = parse_line("[FAILURE] heap: 3 boxes lost").unwrap();
        assert_eq!(failed.status, CaseStatus::Failed);
        assert_eq!(parse_line("[ERROR] unknown word").unwrap().status, CaseStatus::Error);
        let tap = parse_line("ok 14 - null_read: killed by #PF read not-present at 0x0").unwrap();
        assert_eq!(
            (tap.class, tap.name.as_str(), tap.status),
            ("programs", "null_read", CaseStatus::Passed)
        );
        let not_ok = parse_line("not ok 3 - leak: LEAK: 2 frames not back in the pool").unwrap();
        assert_eq!((not_ok.name.as_str(), not_ok.status), ("leak", CaseStatus::Failed));
        assert_eq!(parse_line("ok 2 - x: # SKIP no AVX").unwrap().status, CaseStatus::Skipped);
        // Program output and other lines are no testcases.
        assert_eq!(parse_line("# null_read: ok 1 - forged"), None);
        assert_eq!(parse_line("ok then"), None);
        assert_eq!(parse_line("Test result: SUCCESS"), None);
    }

    #[test]
    fn renders_counts_and_escapes() {
        let cases = vec![
            parse_line("ok 1 - a<b: \"x\" & y").unwrap(),
            parse_line("not ok 2 - b: boom").unwrap(),
            parse_line("[skip] c: no").unwrap(),
        ];
        let xml = render("faultline", &cases, 1.5);
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\" time=\"1.500\"")
        );
        assert!(xml.contains("name=\"a&lt;b\""));
        assert!(xml.contains("&quot;x&quot; &amp; y"));
        assert!(xml.contains("<failure message=\"not ok 2 - b: boom\"/>"));
        assert!(xml.contains("classname=\"faultline.selftest\" name=\"c\""));
    }
}
