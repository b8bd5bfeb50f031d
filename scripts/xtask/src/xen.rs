//! The Xen hypervisor image: Debian's package, unpacked privately, gunzipped once.
//!
//! Two Xen versions are supported, each from the Debian release that ships it: 4.17 (Debian 12,
//! bookworm; the default) and 4.20 (Debian 13, trixie). The lock file has one section per release.

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{Context, Error, Result};
use crate::{packages, workspace};

/// A Xen version the runner can boot (`--xen 4.17|4.20`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XenVersion {
    /// Debian 12's Xen, the default.
    #[default]
    V4_17,
    /// Debian 13's Xen.
    V4_20,
}

impl XenVersion {
    /// Every supported version, oldest first.
    pub const ALL: [XenVersion; 2] = [XenVersion::V4_17, XenVersion::V4_20];

    /// Parses `4.17` or `4.20`; any other text is an error that names the supported versions.
    pub fn parse(text: &str) -> Result<XenVersion> {
        XenVersion::ALL.into_iter().find(|version| version.as_str() == text.trim()).ok_or_else(
            || {
                Error::new(format!(
                    "Xen {text:?} is not supported: --xen takes {}",
                    XenVersion::ALL
                        .iter()
                        .map(|version| format!("{} ({})", version.as_str(), version.debian()))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            },
        )
    }

    /// `4.17`, `4.20`.
    pub fn as_str(self) -> &'static str {
        match self {
            XenVersion::V4_17 => "4.17",
            XenVersion::V4_20 => "4.20",
        }
    }

    /// The Debian release (suite) that ships it: its section of the lock file.
    pub fn suite(self) -> &'static str {
        match self {
            XenVersion::V4_17 => "bookworm",
            XenVersion::V4_20 => "trixie",
        }
    }

    /// `Debian 12`, `Debian 13`.
    pub fn debian(self) -> &'static str {
        match self {
            XenVersion::V4_17 => "Debian 12",
            XenVersion::V4_20 => "Debian 13",
        }
    }

    /// The Debian package that holds the hypervisor, e.g. `xen-hypervisor-4.17-amd64`.
    pub fn hypervisor_package(self) -> String {
        format!("xen-hypervisor-{}-amd64", self.as_str())
    }

    /// The gzipped multiboot ELF inside that package.
    fn gz_path(self) -> String {
        format!("boot/xen-{}-amd64.gz", self.as_str())
    }
}

impl fmt::Display for XenVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The hypervisor as an ELF that QEMU's `-kernel` can load (multiboot), cached next to the package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hypervisor {
    pub elf: PathBuf,
    /// The pinned Debian version, e.g. `4.17.7+13-g2445b30a44-0+deb12u1`.
    pub package_version: String,
}

/// Fetches and unpacks the hypervisor package of `version` if needed and returns the gunzipped
/// image.
pub fn ensure_hypervisor(version: XenVersion) -> Result<Hypervisor> {
    ensure_hypervisor_in(&workspace::cache_dir(), version)
}

/// [`ensure_hypervisor`] with the cache folder `cache`.
///
/// The gunzip runs under the cache's lock into a name no other caller uses and is renamed into
/// place complete, so parallel callers (threads or processes) never read half an image.
pub fn ensure_hypervisor_in(cache: &Path, version: XenVersion) -> Result<Hypervisor> {
    let package = version.hypervisor_package();
    let root = packages::ensure_in(cache, version.suite(), &[package.as_str()])?;
    let package_version = packages::Lock::load()?.get(version.suite(), &package)?.version.clone();
    let gz = root.join(version.gz_path());
    let elf = gz.with_extension("");
    if !is_elf(&elf) {
        let _cache_lock = packages::lock_cache(cache)?;
        if !is_elf(&elf) {
            gunzip_into_place(&gz, &elf)?;
        }
    }
    Ok(Hypervisor { elf, package_version })
}

/// Gunzips `gz` into `elf` through a temporary file; the caller holds the cache's lock.
fn gunzip_into_place(gz: &Path, elf: &Path) -> Result<()> {
    if let Some(folder) = elf.parent() {
        packages::sweep_partials(folder)?;
    }
    let partial = packages::partial_path(elf);
    let mut input =
        GzDecoder::new(File::open(gz).context(|| format!("cannot open {}", gz.display()))?);
    let mut output =
        File::create(&partial).context(|| format!("cannot create {}", partial.display()))?;
    io::copy(&mut input, &mut output).context(|| format!("cannot gunzip {}", gz.display()))?;
    drop(output);
    if !is_elf(&partial) {
        let _ = fs::remove_file(&partial);
        return Err(Error::new(format!("{} does not hold an ELF image", gz.display())));
    }
    fs::rename(&partial, elf).context(|| format!("cannot move {} into place", elf.display()))
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read as _;
    let mut magic = [0u8; 4];
    File::open(path).and_then(|mut file| file.read_exact(&mut magic)).is_ok()
        && magic == *b"\x7fELF"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_versions() {
        assert_eq!(XenVersion::parse("4.17").unwrap(), XenVersion::V4_17);
        assert_eq!(XenVersion::parse("4.20").unwrap(), XenVersion::V4_20);
        assert_eq!(XenVersion::default(), XenVersion::V4_17);
        assert_eq!(XenVersion::V4_20.hypervisor_package(), "xen-hypervisor-4.20-amd64");
        assert_eq!(XenVersion::V4_20.suite(), "trixie");
        assert_eq!(XenVersion::V4_20.gz_path(), "boot/xen-4.20-amd64.gz");
        for bad in ["4.2", "4.19", "", "4.17.7", "420"] {
            let message = XenVersion::parse(bad).unwrap_err().to_string();
            assert!(message.contains("4.17 (Debian 12) or 4.20 (Debian 13)"), "{bad:?}: {message}");
        }
    }
}
