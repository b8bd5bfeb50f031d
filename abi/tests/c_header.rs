//! The C programs' header, tests/programs/c/faultline.h, says the same as this crate: every
//! `#define` of a number or a string in it is checked here, and every fact listed here must be in it.

use faultline_abi::syscall::{counters, SYS_FAULTLINE_COUNTERS};
use faultline_abi::{auxv, note};

/// What the header must define, as the C preprocessor would see the value.
fn expected() -> Vec<(&'static str, String)> {
    vec![
        ("FAULTLINE_NOTE_NAME", format!("{:?}", note::NAME)),
        ("FAULTLINE_NOTE_NAME_SIZE", note::NAME_SIZE.to_string()),
        ("FAULTLINE_NOTE_TYPE_EXPECT", note::TYPE_EXPECT.to_string()),
        ("AT_FAULTLINE_KERNEL_ADDRESS", auxv::AT_FAULTLINE_KERNEL_ADDRESS.to_string()),
        ("AT_FAULTLINE_PAGE_TABLE", auxv::AT_FAULTLINE_PAGE_TABLE.to_string()),
        ("AT_FAULTLINE_P2M", auxv::AT_FAULTLINE_P2M.to_string()),
        ("SYS_FAULTLINE_COUNTERS", SYS_FAULTLINE_COUNTERS.to_string()),
        ("FAULTLINE_COUNTER_HYPERCALLS", counters::HYPERCALLS.to_string()),
        ("FAULTLINE_COUNTER_MMU_UPDATE_CALLS", counters::MMU_UPDATE_CALLS.to_string()),
        ("FAULTLINE_COUNTER_MMU_UPDATE_ENTRIES", counters::MMU_UPDATE_ENTRIES.to_string()),
        ("FAULTLINE_COUNTER_MMUEXT_CALLS", counters::MMUEXT_CALLS.to_string()),
        ("FAULTLINE_COUNTER_MMUEXT_OPS", counters::MMUEXT_OPS.to_string()),
        (
            "FAULTLINE_COUNTER_UPDATE_VA_MAPPING_CALLS",
            counters::UPDATE_VA_MAPPING_CALLS.to_string(),
        ),
        ("FAULTLINE_COUNTER_IRETS", counters::IRETS.to_string()),
        ("FAULTLINE_COUNTER_USER_FAULTS", counters::USER_FAULTS.to_string()),
        ("FAULTLINE_COUNTER_TABLES_BUILT", counters::TABLES_BUILT.to_string()),
        ("FAULTLINE_COUNTER_TLB_SHOOTDOWNS", counters::TLB_SHOOTDOWNS.to_string()),
        ("FAULTLINE_COUNTER_IPIS_SENT", counters::IPIS_SENT.to_string()),
    ]
}

/// A C integer literal's value (decimal or 0x hex, with an optional U/L suffix), as decimal text;
/// a string literal as it stands.
fn value_of(literal: &str) -> Option<String> {
    if literal.starts_with('"') {
        return Some(literal.to_string());
    }
    let digits = literal.trim_end_matches(['U', 'L', 'u', 'l']);
    let value = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse::<u64>().ok()?,
    };
    Some(value.to_string())
}

/// The header's object-like `#define NAME VALUE` lines whose value is a literal.
fn defines(header: &str) -> Vec<(String, String)> {
    header
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("#define ")?;
            let (name, value) = rest.split_once(' ')?;
            if name.contains('(') {
                return None; // a macro with arguments
            }
            Some((name.to_string(), value_of(value.trim())?))
        })
        .collect()
}

fn header() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/programs/c/faultline.h");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_c_header_matches_the_crate() {
    let found = defines(&header());
    let expected = expected();
    for (name, value) in &found {
        match expected.iter().find(|(n, _)| n == name) {
            Some((_, want)) => assert_eq!(value, want, "faultline.h: {name} is {value}, the crate says {want}"),
            None => panic!("faultline.h defines {name} ({value}), which this test does not check against the crate: add it to expected()"),
        }
    }
    for (name, want) in &expected {
        assert!(found.iter().any(|(n, _)| n == name), "faultline.h lacks #define {name} {want}");
    }
}

#[test]
fn literals_read_as_the_preprocessor_reads_them() {
    assert_eq!(value_of("0x66610001UL").as_deref(), Some("1717633025"));
    assert_eq!(value_of("10").as_deref(), Some("10"));
    assert_eq!(value_of("\"faultline\"").as_deref(), Some("\"faultline\""));
    assert_eq!(value_of("(1 << 2)"), None);
}
