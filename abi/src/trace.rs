//! The `trace=fault` console lines: what the kernel prints (kernel/src/trace.rs) and `cargo
//! xtask trace` reads.
//!
//! The lines are `trace: <n> <kind> key=value ...`, numbered from 1, and a last line
//! `trace: end steps=<n>`; a kernel whose buffer overflowed prints `trace: truncated ...` before
//! it. [`SCHEMA`] lists each kind's keys in order.

/// What every trace line starts with.
pub const PREFIX: &str = "trace:";
/// The word of the last line, `trace: end steps=<n>`.
pub const END: &str = "end";
/// The word of the line that says steps were dropped.
pub const TRUNCATED: &str = "truncated";

/// Every kind of line and its keys, in the order they are printed.
pub const SCHEMA: [(&str, &[&str]); 12] = [
    ("fault", &["cr2", "err", "access", "present", "mode"]),
    ("frame", &["rip", "cs", "rflags", "rsp", "ss", "rcx", "r11"]),
    ("alloc", &["for", "pfn", "mfn"]),
    ("leaf", &["va", "pfn", "mfn", "pte", "flags"]),
    ("walk", &["level", "table_pfn", "index", "entry", "outcome"]),
    ("store", &["level", "table_pfn", "index", "val", "mfn", "flags"]),
    ("link", &["level", "table_pfn", "index", "ptr", "val", "mfn", "flags"]),
    ("readonly", &["table_pfn", "alias", "l1_pfn", "index", "ptr", "old", "new", "via"]),
    ("mmu_update", &["count"]),
    ("entry", &["i", "ptr", "val", "level", "index", "mfn", "flags", "role"]),
    ("mmu_update_done", &["result", "done"]),
    ("iret", &["rip", "cs", "rflags", "rsp", "ss", "flags"]),
];

/// The keys of `kind`'s lines, or `None` for a kind that does not exist.
pub fn keys_of(kind: &str) -> Option<&'static [&'static str]> {
    SCHEMA.iter().find(|(k, _)| *k == kind).map(|(_, keys)| *keys)
}
