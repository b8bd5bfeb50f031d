//! The test-program archive: built from tests/programs, plus any programs the user adds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use faultline_abi::archive::{pack, Archive};

use crate::error::{Error, Result};
use crate::workspace;

/// Builds the catalogue (tests/programs/build.sh) and returns the archive to boot with. With
/// `extra` programs, they are packed after the catalogue under their file names.
pub fn build_archive(extra: &[PathBuf], quiet: bool) -> Result<PathBuf> {
    let catalogue = build_catalogue(quiet)?;
    if extra.is_empty() {
        return Ok(catalogue);
    }
    // A file of its own per call: a boot in another thread may be reading an earlier one.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let with_extra = catalogue.with_file_name(format!("programs-{}-{n}.tar", std::process::id()));
    let bytes = archive_with(&catalogue, extra)?;
    std::fs::write(&with_extra, bytes)
        .map_err(|e| Error::new(format!("writing {}: {e}", with_extra.display())))?;
    Ok(with_extra)
}

/// Builds the catalogue once per process (boots in other threads may be reading the archive).
fn build_catalogue(quiet: bool) -> Result<PathBuf> {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.as_ref() {
        return Ok(path.clone());
    }
    let out = workspace::target_dir().join("faultline-programs");
    let script = workspace::root().join("tests/programs/build.sh");
    if !quiet {
        eprintln!("xtask: building the test programs ({})", script.display());
    }
    let status = Command::new("bash")
        .arg(&script)
        .arg(&out)
        .status()
        .map_err(|e| Error::new(format!("could not run {}: {e}", script.display())))?;
    if !status.success() {
        return Err(Error::new(format!(
            "{} failed ({status}); its messages are above",
            script.display()
        )));
    }
    let catalogue = out.join("programs.tar");
    *built = Some(catalogue.clone());
    Ok(catalogue)
}

/// The catalogue's entries followed by `extra`, packed again.
fn archive_with(catalogue: &Path, extra: &[PathBuf]) -> Result<Vec<u8>> {
    let base = std::fs::read(catalogue)
        .map_err(|e| Error::new(format!("reading {}: {e}", catalogue.display())))?;
    let archive =
        Archive::open(&base).map_err(|e| Error::new(format!("{}: {e}", catalogue.display())))?;
    let mut files: Vec<(String, Vec<u8>)> = archive
        .entries()
        .filter_map(|e| e.ok())
        .map(|e| (e.name.as_str().to_string(), e.data.to_vec()))
        .collect();
    for path in extra {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                Error::new(format!("--program {}: the file name is not UTF-8", path.display()))
            })?
            .to_string();
        if files.iter().any(|(n, _)| *n == name) {
            return Err(Error::new(format!(
                "--program {}: a program named {name} is already in the archive",
                path.display()
            )));
        }
        let data = std::fs::read(path)
            .map_err(|e| Error::new(format!("--program {}: {e}", path.display())))?;
        files.push((name, data));
    }
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    pack(&refs).map_err(|e| Error::new(format!("packing the test archive: {e}")))
}
