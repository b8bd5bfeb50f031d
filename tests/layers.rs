//! The layers import downward only (docs/architecture.md): every `crate::` path in
//! kernel/src is checked against the layer of the file that names it.
//!
//! xen (0) <- arch (1) <- mm, trace (2) <- testing (3) <- proc (4) <- cmdline (5) <- start (6).
//! Two leaves may be named from any layer, because they name nothing of the crate themselves
//! (checked here too): `fmt_buf` (formatting into a buffer) and `testing::inject` (the fault
//! injection points, which sit in every layer by design). The console macros `print!` and
//! `println!` are xen's (xen::console).

use std::fs;
use std::path::{Path, PathBuf};

/// The layer of a module path (its first segments, as written after `crate::`), or `None` for a
/// leaf.
fn layer(segments: &[&str]) -> Option<u32> {
    match segments {
        ["fmt_buf", ..] | ["testing", "inject", ..] => None,
        ["xen" | "print" | "println", ..] => Some(0),
        ["arch", ..] => Some(1),
        ["mm" | "trace", ..] => Some(2),
        ["testing" | "check", ..] => Some(3),
        ["proc", ..] => Some(4),
        ["cmdline", ..] => Some(5),
        ["start", ..] => Some(6),
        other => panic!("tests/layers.rs does not know the module crate::{}", other.join("::")),
    }
}

fn layer_name(layer: Option<u32>) -> &'static str {
    match layer {
        None => "a leaf",
        Some(0) => "xen",
        Some(1) => "arch",
        Some(2) => "mm",
        Some(3) => "testing",
        Some(4) => "proc",
        Some(5) => "cmdline",
        _ => "start",
    }
}

/// The module path of a file under kernel/src: `mm/tests/tlb.rs` is `mm::tests::tlb`.
fn module_of(relative: &Path) -> Vec<String> {
    let mut segments: Vec<String> =
        relative.iter().map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
    if segments.last().is_some_and(|s| s == "mod") {
        segments.pop();
    }
    segments
}

/// Every `crate::a::b` path of `source` (comments left out): its line and its segments.
fn crate_paths(source: &str) -> Vec<(usize, Vec<String>)> {
    let mut paths = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = &rest[..at];
            rest = &rest[at + "crate::".len()..];
            // `faultline_crate::` or `my_crate::` are other names; `$crate::` is this crate.
            if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::b, c}`: each top-level name of the group.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let segments = segments_of(item.trim());
                    if !segments.is_empty() {
                        paths.push((number + 1, segments));
                    }
                }
                continue;
            }
            paths.push((number + 1, segments_of(rest)));
        }
    }
    paths
}

fn segments_of(path: &str) -> Vec<String> {
    let end =
        path.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(path.len());
    path[..end].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("kernel/src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The upward imports of the file `relative` (under kernel/src) with contents `source`.
fn violations(relative: &Path, source: &str) -> Vec<String> {
    let module = module_of(relative);
    let module: Vec<&str> = module.iter().map(String::as_str).collect();
    if module == ["main"] || module == ["lib"] {
        // The crate root declares the modules; the binary links the image.
        return Vec::new();
    }
    let own = layer(&module);
    let mut found = Vec::new();
    for (line, segments) in crate_paths(source) {
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        let target = layer(&segments);
        let allowed = match (own, target) {
            (_, None) => true,
            // A leaf names only leaves.
            (None, Some(_)) => false,
            (Some(own), Some(target)) => target <= own,
        };
        if !allowed {
            found.push(format!(
                "{}:{line}: {} ({}) names crate::{} ({})",
                relative.display(),
                module.join("::"),
                layer_name(own),
                segments.join("::"),
                layer_name(target)
            ));
        }
    }
    found
}

/// Every .rs file of kernel/src: its path under kernel/src and its text.
fn kernel_sources() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    assert!(paths.len() > 50, "found only {} files under {}", paths.len(), src.display());
    paths
        .iter()
        .map(|p| {
            let source = fs::read_to_string(p).expect("a readable source file");
            (p.strip_prefix(&src).expect("under kernel/src").to_path_buf(), source)
        })
        .collect()
}

#[test]
fn kernel_layers_import_downward_only() {
    let mut found = Vec::new();
    for (relative, source) in kernel_sources() {
        found.extend(violations(&relative, &source));
    }
    assert!(found.is_empty(), "upward imports (see docs/architecture.md):\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_upward_imports_in_every_form() {
    let arch = Path::new("arch/x86_64/traps.rs");
    assert_eq!(violations(arch, "use crate::proc::process;\n").len(), 1);
    assert_eq!(violations(arch, "    crate::mm::kernel::f(frame);\n").len(), 1);
    assert_eq!(violations(arch, "use crate::{xen::abi, testing::expected_trap};\n").len(), 1);
    assert_eq!(violations(arch, "use crate::xen::abi; // not crate::mm\n").len(), 0);
    assert_eq!(violations(arch, "use crate::testing::inject::{self, Point};\n").len(), 0);
    let xen = Path::new("xen/hypercall.rs");
    assert_eq!(violations(xen, "use crate::arch::x86_64::trap_frame::TrapFrame;\n").len(), 1);
    assert_eq!(violations(xen, "use crate::mm::backend::MmuUpdate;\n").len(), 1);
    let leaf = Path::new("testing/inject.rs");
    assert_eq!(violations(leaf, "use crate::xen::time;\n").len(), 1);
    let start = Path::new("start.rs");
    assert_eq!(violations(start, "use crate::proc::suite;\nuse crate::mm;\n").len(), 0);
    let mm_test = Path::new("mm/tests/tlb.rs");
    assert_eq!(violations(mm_test, "use crate::proc::x;\n").len(), 1);
    assert_eq!(violations(mm_test, "use crate::mm::model::Model;\n").len(), 0);
}

/// The modules lib.rs lists as allowed unsafe code (`// - path: why` lines).
fn listed_unsafe_modules(lib: &str) -> Vec<String> {
    let mut listed: Vec<String> = lib
        .lines()
        .filter_map(|line| line.strip_prefix("// - "))
        .filter_map(|item| item.split_once(": ").map(|(path, _)| path.trim().to_string()))
        .collect();
    listed.sort();
    listed
}

/// The modules declared with `#[allow(unsafe_code)]` on the line before `mod name;`, as paths.
fn allowed_unsafe_modules(files: &[(PathBuf, String)]) -> Vec<String> {
    let mut allowed = Vec::new();
    for (relative, source) in files {
        let parent = module_of(relative);
        let parent: Vec<&str> =
            parent.iter().map(String::as_str).filter(|s| *s != "lib" && *s != "main").collect();
        let lines: Vec<&str> = source.lines().map(str::trim).collect();
        for pair in lines.windows(2) {
            if pair[0] != "#[allow(unsafe_code)]" {
                continue;
            }
            let name = pair[1]
                .trim_start_matches("pub ")
                .strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: #[allow(unsafe_code)] on `{}`, not a module",
                        relative.display(),
                        pair[1]
                    )
                });
            let mut path = parent.clone();
            path.push(name);
            allowed.push(path.join("::"));
        }
    }
    allowed.sort();
    allowed
}

/// Unsafe code is denied once, in lib.rs, and allowed only on the modules lib.rs lists.
#[test]
fn unsafe_code_is_allowed_only_where_lib_rs_lists_it() {
    let files = kernel_sources();
    let lib = &files.iter().find(|(p, _)| p == Path::new("lib.rs")).expect("lib.rs").1;
    assert!(lib.lines().any(|l| l == "#![deny(unsafe_code)]"), "lib.rs must deny unsafe_code");
    for (relative, source) in &files {
        for attribute in
            ["#![deny(unsafe_code)]", "#![forbid(unsafe_code)]", "#![allow(unsafe_code)]"]
        {
            let own = relative == Path::new("lib.rs") && attribute == "#![deny(unsafe_code)]";
            assert!(
                own || !source.lines().any(|l| l.trim() == attribute),
                "{}: {attribute}: unsafe code is denied once in lib.rs and allowed on module declarations",
                relative.display()
            );
        }
    }
    let listed = listed_unsafe_modules(lib);
    assert!(listed.len() > 5, "lib.rs lists only {listed:?}");
    assert_eq!(
        allowed_unsafe_modules(&files),
        listed,
        "the modules with #[allow(unsafe_code)] (left) must be the ones lib.rs lists (right)"
    );
}
