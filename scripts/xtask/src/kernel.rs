//! Building the kernel image with cargo for the bare-metal target.

use std::env;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::error::{Context, Error, Result};
use crate::workspace;

/// The target the kernel is built for.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";
/// The kernel's package and binary name.
pub const KERNEL_PACKAGE: &str = "faultline";

/// Which cargo profile to build the kernel with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// `--release` (optimised, with debug info: the workspace sets `debug = true`).
    #[default]
    Release,
    /// The dev profile.
    Debug,
}

impl Profile {
    /// The folder cargo puts this profile's output in.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// Builds the kernel and returns the path of its ELF image.
///
/// Cargo's own progress and error messages go to stderr as usual.
pub fn build_kernel(profile: Profile) -> Result<PathBuf> {
    ensure_target()?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace::root())
        .args(["build", "--package", KERNEL_PACKAGE, "--bin", KERNEL_PACKAGE])
        .args(["--target", KERNEL_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if profile == Profile::Release {
        command.arg("--release");
    }
    let mut child =
        command.spawn().context(|| format!("cannot start {}", cargo.to_string_lossy()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context(|| "cannot read cargo's output".to_string())?;
        if let Some(path) = artifact_executable(&line) {
            executable = Some(path);
        }
    }
    let status = child.wait().context(|| "cannot wait for cargo".to_string())?;
    if !status.success() {
        return Err(Error::new(format!(
            "the kernel did not build (cargo build --package {KERNEL_PACKAGE} --target {KERNEL_TARGET} failed: {status}; cargo's messages are above; a missing target is fixed by `rustup target add {KERNEL_TARGET}`)"
        )));
    }
    let fallback =
        workspace::target_dir().join(KERNEL_TARGET).join(profile.dir_name()).join(KERNEL_PACKAGE);
    let image = executable.unwrap_or(fallback);
    if !image.is_file() {
        return Err(Error::new(format!(
            "cargo succeeded but the kernel image {} is missing",
            image.display()
        )));
    }
    Ok(image)
}

/// Makes sure the toolchain has the standard library of [`KERNEL_TARGET`].
///
/// rustup installs the `targets` of rust-toolchain.toml only when it installs the toolchain
/// itself; a toolchain that was already there keeps lacking the target. So: when the target's
/// library folder is missing and rustup is there, add the target (one line says so); without
/// rustup, say what to install.
fn ensure_target() -> Result<()> {
    let root = workspace::root();
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .current_dir(&root)
        .args(["--print", "target-libdir", "--target", KERNEL_TARGET])
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context(|| format!("cannot start {}", rustc.to_string_lossy()))?;
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if output.status.success() && libdir.is_dir() {
        return Ok(());
    }
    let toolchain = pinned_toolchain()?;
    let has_rustup = Command::new("rustup")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !has_rustup {
        return Err(Error::new(format!(
            "the Rust toolchain has no standard library for {KERNEL_TARGET} and rustup is not installed: install rustup (Debian: `apt-get install rustup`), then `rustup toolchain install {toolchain} --target {KERNEL_TARGET}`; or install that toolchain's rust-std for {KERNEL_TARGET} by other means"
        )));
    }
    crate::packages::status(&format!(
        "toolchain {toolchain} lacks the {KERNEL_TARGET} target: rustup target add {KERNEL_TARGET} --toolchain {toolchain}"
    ));
    let output = Command::new("rustup")
        .current_dir(&root)
        .args(["target", "add", KERNEL_TARGET, "--toolchain", &toolchain])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context(|| "cannot run rustup".to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("");
        return Err(Error::new(format!(
            "rustup target add {KERNEL_TARGET} --toolchain {toolchain} failed ({}): {last}",
            output.status
        )));
    }
    Ok(())
}

/// The toolchain this build runs on: rustup's `RUSTUP_TOOLCHAIN` (set by its proxies), else the
/// `channel` of rust-toolchain.toml.
fn pinned_toolchain() -> Result<String> {
    if let Some(toolchain) = env::var("RUSTUP_TOOLCHAIN").ok().filter(|t| !t.is_empty()) {
        return Ok(toolchain);
    }
    let path = workspace::root().join("rust-toolchain.toml");
    let text =
        std::fs::read_to_string(&path).context(|| format!("cannot read {}", path.display()))?;
    toolchain_channel(&text)
        .ok_or_else(|| Error::new(format!("{} names no channel", path.display())))
}

/// The `channel = "..."` of a rust-toolchain.toml.
fn toolchain_channel(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("channel")?.trim().strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_string())
    })
}

/// The executable of the kernel binary from one of cargo's JSON messages, if it is that message.
fn artifact_executable(line: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let target = message.get("target")?;
    let is_kernel_bin = target.get("name")?.as_str()? == KERNEL_PACKAGE
        && target.get("kind")?.as_array()?.iter().any(|kind| kind.as_str() == Some("bin"));
    if !is_kernel_bin {
        return None;
    }
    Some(PathBuf::from(message.get("executable")?.as_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_channel() {
        let text = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"x86_64-unknown-none\"]\n";
        assert_eq!(toolchain_channel(text), Some("1.95.0".to_string()));
        assert_eq!(toolchain_channel("[toolchain]\n"), None);
        let ours = std::fs::read_to_string(workspace::root().join("rust-toolchain.toml")).unwrap();
        assert!(toolchain_channel(&ours).is_some());
    }

    #[test]
    fn finds_the_kernel_artifact() {
        let bin = r#"{"reason":"compiler-artifact","target":{"name":"faultline","kind":["bin"]},"executable":"/t/x86_64-unknown-none/release/faultline"}"#;
        let lib = r#"{"reason":"compiler-artifact","target":{"name":"faultline","kind":["lib"]},"executable":null}"#;
        let done = r#"{"reason":"build-finished","success":true}"#;
        assert_eq!(
            artifact_executable(bin),
            Some(PathBuf::from("/t/x86_64-unknown-none/release/faultline"))
        );
        assert_eq!(artifact_executable(lib), None);
        assert_eq!(artifact_executable(done), None);
        assert_eq!(artifact_executable("not json"), None);
    }
}
