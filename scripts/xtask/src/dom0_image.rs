//! The Linux dom0 that runs `xl create`: built by scripts/dom0/build.sh, described by dom0.env.
//!
//! build.sh fetches the pinned Debian packages (scripts/packages.lock) into the cache, checks
//! their sha256, and builds Xen, the dom0 kernel and the base initramfs once per set of inputs
//! (its cache key hashes the pins it uses, the Xen version and the scripts); a cached call costs
//! ~0.1 s. It writes the outputs' paths and the command lines into `<target>/dom0/dom0.env`
//! (Xen 4.17) or `<target>/dom0-4.20/dom0.env` (Xen 4.20: its toolstack and libc from Debian 13,
//! the same Linux dom0 kernel), read here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use crate::error::{Context, Error, Result};
use crate::packages;
use crate::workspace;
use crate::xen::XenVersion;

/// What build.sh made: the files QEMU boots and the command lines it suggests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dom0Image {
    /// Xen, gunzipped (QEMU's `-kernel`).
    pub xen_elf: PathBuf,
    /// The dom0 kernel, an ELF vmlinux (the first multiboot module).
    pub kernel: PathBuf,
    /// The base initramfs (busybox, the Xen toolstack, `/init`), gzipped and padded to 4 bytes.
    pub initramfs: PathBuf,
    /// Xen's command line, e.g. `console=com1 dom0_mem=192M,max:192M dom0_max_vcpus=1`.
    pub xen_args: String,
    /// dom0's kernel command line, e.g. `console=hvc0 quiet`.
    pub dom0_args: String,
    /// dom0's memory in MiB, from `dom0_mem=` in `xen_args`.
    pub dom0_mib: u32,
    /// The Linux version of the dom0 kernel (`DOM0_KVER`).
    pub kernel_version: String,
    /// The Xen version the image was built for (`XEN_VERSION`).
    pub xen: XenVersion,
    /// The Xen package's version (`XEN_PACKAGE_VERSION`), e.g. `4.17.7+13-g2445b30a44-0+deb12u1`.
    pub xen_version: String,
}

/// Where build.sh writes the image of `xen`: `target/dom0` (4.17), `target/dom0-4.20`.
pub fn out_dir(xen: XenVersion) -> PathBuf {
    match xen {
        XenVersion::V4_17 => workspace::target_dir().join("dom0"),
        other => workspace::target_dir().join(format!("dom0-{other}")),
    }
}

/// Builds the dom0 image for Xen `xen` (or finds it cached) and reads its description. Built once
/// per process and version; `quiet` keeps build.sh's progress to itself unless it fails.
pub fn ensure_dom0_image(xen: XenVersion, quiet: bool) -> Result<Dom0Image> {
    static BUILT: Mutex<BTreeMap<XenVersion, Dom0Image>> = Mutex::new(BTreeMap::new());
    let mut built = BUILT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(image) = built.get(&xen) {
        return Ok(image.clone());
    }
    let out = out_dir(xen);
    let cache = workspace::cache_dir();
    std::fs::create_dir_all(&cache).context(|| format!("cannot create {}", cache.display()))?;
    {
        // Another runner process may be building the same image.
        let _cache_lock = packages::lock_cache(&cache)?;
        let status = run_build(&cache, &out, xen, quiet)?;
        if status == Some(3) && packages::is_root() {
            // apt-get download failed: the host's package lists may be empty or stale (build.sh
            // updates another release's own lists itself).
            packages::apt_get_update()?;
            if run_build(&cache, &out, xen, quiet)? != Some(0) {
                return Err(build_failed());
            }
        } else if status != Some(0) {
            return Err(build_failed());
        }
    }
    let env_path = out.join("dom0.env");
    let text = std::fs::read_to_string(&env_path)
        .context(|| format!("cannot read {}", env_path.display()))?;
    let image =
        parse_env(&text).map_err(|error| Error::new(format!("{}: {error}", env_path.display())))?;
    if image.xen != xen {
        return Err(Error::new(format!(
            "{} describes an image for Xen {}, not {xen}: delete {} and rerun",
            env_path.display(),
            image.xen,
            out.display()
        )));
    }
    built.insert(xen, image.clone());
    Ok(image)
}

fn build_failed() -> Error {
    Error::new(
        "scripts/dom0/build.sh failed (its messages are above): the Linux dom0 image for the DomU path is missing; `cargo xtask run --dom0` boots without it",
    )
}

/// Runs build.sh; returns its exit status. Quiet: its output is shown only if it fails.
fn run_build(cache: &Path, out: &Path, xen: XenVersion, quiet: bool) -> Result<Option<i32>> {
    let script = workspace::root().join("scripts/dom0/build.sh");
    let mut command = Command::new("bash");
    command.arg(&script).arg(cache).arg(out).arg(xen.as_str()).stdin(Stdio::null());
    // build.sh packs the initramfs with `xtask cpio`: this binary when it is the runner's (a test
    // binary that links the library is not; build.sh then runs it through cargo).
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_stem().is_some_and(|stem| stem == "xtask") {
            command.env("FAULTLINE_XTASK", exe);
        }
    }
    if quiet {
        let output = command.output().context(|| format!("cannot run {}", script.display()))?;
        if !output.status.success() {
            eprint!("{}", String::from_utf8_lossy(&output.stdout));
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
        }
        return Ok(output.status.code());
    }
    let status = command
        .stdout(packages::progress_stdio())
        .status()
        .context(|| format!("cannot run {}", script.display()))?;
    Ok(status.code())
}

/// Parses dom0.env: `KEY=value` lines, values bare or in single quotes, `#` comments.
pub fn parse_env(text: &str) -> Result<Dom0Image> {
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::new(format!("not a KEY=value line: {line:?}")));
        };
        let value =
            value.strip_prefix('\'').and_then(|value| value.strip_suffix('\'')).unwrap_or(value);
        values.insert(key.to_string(), value.to_string());
    }
    let get = |key: &str| {
        values.get(key).cloned().ok_or_else(|| {
            Error::new(format!("no {key}=: rerun scripts/dom0/build.sh (or delete target/dom0)"))
        })
    };
    let xen_args = get("XEN_ARGS")?;
    let dom0_mib = dom0_mem_mib(&xen_args)
        .ok_or_else(|| Error::new(format!("XEN_ARGS has no dom0_mem=<N>M: {xen_args:?}")))?;
    let xen = XenVersion::parse(&get("XEN_VERSION")?)?;
    Ok(Dom0Image {
        xen,
        xen_elf: get("XEN")?.into(),
        kernel: get("DOM0_KERNEL")?.into(),
        initramfs: get("DOM0_INITRAMFS")?.into(),
        dom0_args: get("DOM0_ARGS")?,
        dom0_mib,
        kernel_version: get("DOM0_KVER")?,
        xen_version: get("XEN_PACKAGE_VERSION")?,
        xen_args,
    })
}

/// The MiB of the last `dom0_mem=<N>M[,max:...]` on Xen's command line (the last one wins).
fn dom0_mem_mib(xen_args: &str) -> Option<u32> {
    xen_args
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("dom0_mem="))
        .next_back()
        .and_then(|value| value.split(',').next())
        .and_then(|size| size.strip_suffix('M'))
        .and_then(|mib| mib.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_dom0_env() {
        let text = "# Written by scripts/dom0/build.sh (key 1). Paths are absolute.\n\
            DOM0_KEY=852a6c818d2cef90\n\
            XEN=/t/dom0/xen\n\
            XEN_VERSION=4.17\n\
            DOM0_KERNEL=/t/dom0/vmlinux\n\
            DOM0_INITRAMFS=/t/dom0/dom0-base.cpio.gz\n\
            XEN_ARGS='console=com1 dom0_mem=192M,max:192M dom0_max_vcpus=1'\n\
            DOM0_ARGS='console=hvc0 quiet swiotlb=1024 cryptomgr.notests'\n\
            PKG_xen_hypervisor_4_17_amd64='4.17.7+13-g2445b30a44-0+deb12u1'\n\
            XEN_PACKAGE_VERSION='4.17.7+13-g2445b30a44-0+deb12u1'\n\
            DOM0_KVER=6.1.0-56-amd64\n";
        let image = parse_env(text).unwrap();
        assert_eq!(image.xen_elf, PathBuf::from("/t/dom0/xen"));
        assert_eq!(image.xen, XenVersion::V4_17);
        assert_eq!(image.kernel, PathBuf::from("/t/dom0/vmlinux"));
        assert_eq!(image.dom0_mib, 192);
        assert_eq!(image.dom0_args, "console=hvc0 quiet swiotlb=1024 cryptomgr.notests");
        assert_eq!(image.xen_version, "4.17.7+13-g2445b30a44-0+deb12u1");
        assert!(parse_env("XEN=/x\n").is_err());
        // An image of another Xen version is told apart; an unknown one is an error.
        let newer = text.replace("XEN_VERSION=4.17", "XEN_VERSION=4.20");
        assert_eq!(parse_env(&newer).unwrap().xen, XenVersion::V4_20);
        let unknown = text.replace("XEN_VERSION=4.17", "XEN_VERSION=4.19");
        assert!(parse_env(&unknown).unwrap_err().to_string().contains("4.20"));
    }

    #[test]
    fn the_last_dom0_mem_wins() {
        assert_eq!(dom0_mem_mib("dom0_mem=192M,max:192M"), Some(192));
        assert_eq!(dom0_mem_mib("dom0_mem=192M x dom0_mem=256M,max:256M"), Some(256));
        assert_eq!(dom0_mem_mib("console=com1"), None);
    }
}
