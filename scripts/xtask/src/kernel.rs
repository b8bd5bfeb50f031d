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
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace::root())
        .args([
            "build",
            "--package",
            KERNEL_PACKAGE,
            "--bin",
            KERNEL_PACKAGE,
        ])
        .args(["--target", KERNEL_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if profile == Profile::Release {
        command.arg("--release");
    }
    let mut child = command
        .spawn()
        .context(|| format!("cannot start {}", cargo.to_string_lossy()))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context(|| "cannot read cargo's output".to_string())?;
        if let Some(path) = artifact_executable(&line) {
            executable = Some(path);
        }
    }
    let status = child
        .wait()
        .context(|| "cannot wait for cargo".to_string())?;
    if !status.success() {
        return Err(Error::new(format!(
            "the kernel did not build (cargo build --package {KERNEL_PACKAGE} --target {KERNEL_TARGET} failed: {status}; cargo's messages are above; a missing target is fixed by `rustup target add {KERNEL_TARGET}`)"
        )));
    }
    let fallback = workspace::target_dir()
        .join(KERNEL_TARGET)
        .join(profile.dir_name())
        .join(KERNEL_PACKAGE);
    let image = executable.unwrap_or(fallback);
    if !image.is_file() {
        return Err(Error::new(format!(
            "cargo succeeded but the kernel image {} is missing",
            image.display()
        )));
    }
    Ok(image)
}

/// The executable of the kernel binary from one of cargo's JSON messages, if it is that message.
fn artifact_executable(line: &str) -> Option<PathBuf> {
    let message: serde_json::Value = serde_json::from_str(line).ok()?;
    if message.get("reason")?.as_str()? != "compiler-artifact" {
        return None;
    }
    let target = message.get("target")?;
    let is_kernel_bin = target.get("name")?.as_str()? == KERNEL_PACKAGE
        && target
            .get("kind")?
            .as_array()?
            .iter()
            .any(|kind| kind.as_str() == Some("bin"));
    if !is_kernel_bin {
        return None;
    }
    Some(PathBuf::from(message.get("executable")?.as_str()?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
