//! Where things are: the workspace, its target folder, the download cache, the lock file.

use std::env;
use std::path::PathBuf;

/// The workspace root (the folder that holds `scripts/`).
pub fn root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .and_then(|scripts| scripts.parent())
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Cargo's target folder: `$CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

/// Where each run's console log is saved.
pub fn log_dir() -> PathBuf {
    target_dir().join("faultline-logs")
}

/// The download cache: `$FAULTLINE_CACHE`, else `$XDG_CACHE_HOME/faultline`, else
/// `~/.cache/faultline`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = env::var_os("FAULTLINE_CACHE").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env::var_os("XDG_CACHE_HOME").filter(|dir| !dir.is_empty()) {
        return PathBuf::from(dir).join("faultline");
    }
    match env::var_os("HOME").filter(|dir| !dir.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("faultline"),
        None => root().join(".cache").join("faultline"),
    }
}

/// The one lock file that pins each Debian package's version and sha256, for the runner and for
/// scripts/dom0 (`cargo xtask lock` and scripts/dom0/lock.sh write it).
pub fn packages_lock() -> PathBuf {
    root().join("scripts").join("packages.lock")
}
