//! The Xen hypervisor image: Debian's package, unpacked privately, gunzipped once.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::error::{Context, Error, Result};
use crate::{packages, workspace};

/// The Debian package that holds the hypervisor.
pub const XEN_PACKAGE: &str = "xen-hypervisor-4.17-amd64";
/// The gzipped multiboot ELF inside the package.
const XEN_GZ: &str = "boot/xen-4.17-amd64.gz";

/// The hypervisor as an ELF that QEMU's `-kernel` can load (multiboot), cached next to the package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hypervisor {
    pub elf: PathBuf,
    /// The pinned Debian version, e.g. `4.17.7+13-g2445b30a44-0+deb12u1`.
    pub package_version: String,
}

/// Fetches and unpacks the hypervisor package if needed and returns the gunzipped image.
pub fn ensure_hypervisor() -> Result<Hypervisor> {
    ensure_hypervisor_in(&workspace::cache_dir())
}

/// [`ensure_hypervisor`] with the cache folder `cache`.
///
/// The gunzip runs under the cache's lock into a name no other caller uses and is renamed into
/// place complete, so parallel callers (threads or processes) never read half an image.
pub fn ensure_hypervisor_in(cache: &Path) -> Result<Hypervisor> {
    let root = packages::ensure_in(cache, &[XEN_PACKAGE])?;
    let package_version = packages::Lock::load()?.get(XEN_PACKAGE)?.version.clone();
    let gz = root.join(XEN_GZ);
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
