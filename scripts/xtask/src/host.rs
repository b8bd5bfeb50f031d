//! Host programs the runner needs: QEMU (installed system-wide by apt) and friends on PATH.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::error::{Context, Error, Result};
use crate::packages::{is_root, progress_stdio, status};

/// The QEMU binary the runner boots Xen with.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The Debian package that provides it.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// The oldest QEMU major version known to work (Debian 12 ships 7.2).
pub const QEMU_MIN_MAJOR: u32 = 7;

/// A usable QEMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qemu {
    pub path: PathBuf,
    /// As QEMU reports it, e.g. `7.2.22`.
    pub version: String,
}

/// The QEMU found (or installed) earlier in this process.
static QEMU: Mutex<Option<Qemu>> = Mutex::new(None);

/// Finds QEMU, installing `qemu-system-x86` with apt-get when running as root and it is missing,
/// and checks that its version is recent enough.
pub fn ensure_qemu() -> Result<Qemu> {
    let mut found = QEMU.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(qemu) = found.as_ref() {
        return Ok(qemu.clone());
    }
    let path = match find_in_path(QEMU_BINARY) {
        Some(path) => path,
        None => {
            install_qemu()?;
            find_in_path(QEMU_BINARY).ok_or_else(|| {
                Error::new(format!("{QEMU_PACKAGE} is installed but {QEMU_BINARY} is not on PATH"))
            })?
        }
    };
    let output = Command::new(&path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .context(|| format!("cannot run {}", path.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = parse_qemu_version(&text).ok_or_else(|| {
        Error::new(format!("cannot read the version of {}: {text:?}", path.display()))
    })?;
    let major = version.split('.').next().and_then(|major| major.parse::<u32>().ok()).unwrap_or(0);
    if major < QEMU_MIN_MAJOR {
        return Err(Error::new(format!(
            "{} is version {version}, the runner needs {QEMU_MIN_MAJOR} or newer: run `apt-get install -y {QEMU_PACKAGE}` from Debian 12",
            path.display()
        )));
    }
    let qemu = Qemu { path, version };
    *found = Some(qemu.clone());
    Ok(qemu)
}

/// `apt-get install -y qemu-system-x86` as root; otherwise the command the user has to run.
fn install_qemu() -> Result<()> {
    if !is_root() {
        return Err(Error::new(format!(
            "{QEMU_BINARY} is missing: run `sudo apt-get install -y {QEMU_PACKAGE}`"
        )));
    }
    let install = || {
        status(&format!("{QEMU_BINARY} is missing: apt-get install -y {QEMU_PACKAGE}"));
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", QEMU_PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(progress_stdio())
            .stderr(progress_stdio())
            .status()
            .context(|| "cannot run apt-get".to_string())
    };
    if install()?.success() {
        return Ok(());
    }
    // Fresh machines have empty package lists.
    status("apt-get update");
    let updated = Command::new("apt-get")
        .arg("update")
        .stdin(Stdio::null())
        .stdout(progress_stdio())
        .stderr(progress_stdio())
        .status()
        .context(|| "cannot run apt-get update".to_string())?;
    if updated.success() && install()?.success() {
        return Ok(());
    }
    Err(Error::new(format!(
        "could not install {QEMU_PACKAGE}: run `apt-get update && apt-get install -y {QEMU_PACKAGE}` and look at apt's message"
    )))
}

/// The version in `QEMU emulator version 7.2.22 (Debian ...)`.
fn parse_qemu_version(text: &str) -> Option<String> {
    let rest = text.lines().next()?.split("version ").nth(1)?;
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    (!version.is_empty()).then_some(version)
}

/// The first executable file called `name` on PATH.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        candidate
            .metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_qemu_versions() {
        let text = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022";
        assert_eq!(parse_qemu_version(text).as_deref(), Some("7.2.22"));
        assert_eq!(parse_qemu_version("QEMU emulator version 10.0.0").as_deref(), Some("10.0.0"));
        assert_eq!(parse_qemu_version("something else"), None);
    }
}
