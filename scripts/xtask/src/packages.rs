//! Debian packages unpacked into a private cache, pinned by `scripts/packages.lock`.
//!
//! That one lock file pins every package faultline uses: the hypervisor the runner boots, and
//! everything `scripts/dom0/build.sh` builds the Linux dom0 image from (it reads the same file).
//!
//! `ensure(&["xen-hypervisor-4.17-amd64"])` downloads each package at its pinned version with
//! `apt-get download`, checks the .deb's sha256 against the lock file, unpacks it with
//! `dpkg-deb -x` (nothing is installed system-wide) and returns the folder that holds the unpacked
//! files (`<root>/boot/...`, `<root>/usr/...`). Results are cached in `$FAULTLINE_CACHE`
//! (default `~/.cache/faultline`); a second call with the same set costs a stat.
//!
//! Lock file format, one package a line, `#` starts a comment:
//! `<package> <version> <sha256 of the .deb>`. `cargo xtask lock <package>...` (re)pins packages
//! to the version apt offers now, taking the sha256 from `apt-cache show`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use crate::error::{Context, Error, Result};
use crate::workspace;

/// One pinned package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    pub package: String,
    pub version: String,
    pub sha256: String,
    /// The .deb's size in bytes, when the lock file gives it.
    pub size: Option<u64>,
    /// The .deb's path in the archive (`pool/...`), when the lock file gives it.
    pub pool_path: Option<String>,
}

/// The parsed lock file: package name to pin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    pins: BTreeMap<String, Pin>,
}

impl Lock {
    /// Reads `scripts/packages.lock`, the one lock file (scripts/dom0/build.sh reads it too).
    pub fn load() -> Result<Lock> {
        let path = workspace::packages_lock();
        let text = fs::read_to_string(&path)
            .map_err(|error| Error::new(format!("cannot read {}: {error}", path.display())))?;
        Lock::parse(&text).map_err(|error| Error::new(format!("{}: {error}", path.display())))
    }

    /// Parses the lock file's text.
    pub fn parse(text: &str) -> Result<Lock> {
        let mut pins = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (package, version, sha256, size, pool_path) = match fields[..] {
                [package, version, sha256] => (package, version, sha256, None, None),
                [package, version, sha256, size, pool_path] => {
                    let size = size.parse::<u64>().map_err(|_| {
                        Error::new(format!("line {}: bad size {size:?}", number + 1))
                    })?;
                    (package, version, sha256, Some(size), Some(pool_path.to_string()))
                }
                _ => {
                    return Err(Error::new(format!(
                        "line {}: expected `<package> <version> <sha256> [<size> <pool path>]`",
                        number + 1
                    )))
                }
            };
            let is_sha256 = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_sha256 {
                return Err(Error::new(format!("line {}: bad sha256 {sha256:?}", number + 1)));
            }
            let pin = Pin {
                package: package.to_string(),
                version: version.to_string(),
                sha256: sha256.to_ascii_lowercase(),
                size,
                pool_path,
            };
            pins.insert(package.to_string(), pin);
        }
        Ok(Lock { pins })
    }

    /// The pin of `package`.
    pub fn get(&self, package: &str) -> Result<&Pin> {
        self.pins.get(package).ok_or_else(|| {
            Error::new(format!(
                "{package} is not pinned in scripts/packages.lock: run `cargo xtask lock {package}`"
            ))
        })
    }
}

/// Makes sure every package in `packages` is downloaded, verified and unpacked, and returns the
/// one folder they are all unpacked into.
pub fn ensure(packages: &[&str]) -> Result<PathBuf> {
    ensure_in(&workspace::cache_dir(), packages)
}

/// [`ensure`] into the cache folder `cache`.
///
/// Concurrency: the whole check, fetch and unpack runs under the cache's lock, into a temporary
/// folder of a name no other caller uses, renamed into place only once complete (the stamp file
/// last). A caller killed halfway leaves only a temporary folder, which the next caller sweeps.
pub fn ensure_in(cache: &Path, packages: &[&str]) -> Result<PathBuf> {
    check_debian_tools()?;
    let lock = Lock::load()?;
    let pins =
        packages.iter().map(|package| lock.get(package).cloned()).collect::<Result<Vec<Pin>>>()?;
    fs::create_dir_all(cache).context(|| format!("cannot create {}", cache.display()))?;
    let _cache_lock = lock_cache(cache)?;

    let name = root_name(&pins);
    let root = cache.join("roots").join(&name);
    let stamp = root.join(".faultline-unpacked");
    if stamp.is_file() {
        return Ok(root);
    }
    let debs = pins.iter().map(|pin| fetch_deb(cache, pin)).collect::<Result<Vec<PathBuf>>>()?;
    sweep_partials(&cache.join("roots"))?;
    let partial = partial_path(&cache.join("roots").join(&name));
    fs::create_dir_all(&partial).context(|| format!("cannot create {}", partial.display()))?;
    for deb in &debs {
        status(&format!("unpacking {}", file_name(deb)));
        let output = Command::new("dpkg-deb")
            .arg("-x")
            .arg(deb)
            .arg(&partial)
            .stdin(Stdio::null())
            .output()
            .context(|| "cannot run dpkg-deb".to_string())?;
        require_success("dpkg-deb -x", &output)?;
    }
    let listing: String =
        pins.iter().map(|pin| format!("{} {}\n", pin.package, pin.version)).collect();
    fs::write(partial.join(".faultline-unpacked"), listing)
        .context(|| format!("cannot write into {}", partial.display()))?;
    remove_dir_if_present(&root)?;
    fs::rename(&partial, &root)
        .context(|| format!("cannot move {} into place", partial.display()))?;
    Ok(root)
}

/// Pins `packages` at the version apt offers now, writing `scripts/packages.lock`.
pub fn lock(packages: &[String]) -> Result<()> {
    check_debian_tools()?;
    let path = workspace::packages_lock();
    let old_text = fs::read_to_string(&path).unwrap_or_default();
    let mut new_pins = Vec::new();
    for package in packages {
        let pin = candidate_pin(package)?;
        status(&format!("pinning {} {} sha256 {}", pin.package, pin.version, pin.sha256));
        new_pins.push(pin);
    }
    let text = merge_pins(&old_text, &new_pins);
    Lock::parse(&text)?;
    fs::write(&path, text).context(|| format!("cannot write {}", path.display()))
}

/// The lock file's text with `pins` replacing the lines of the same packages (or appended).
fn merge_pins(old_text: &str, pins: &[Pin]) -> String {
    let mut remaining: Vec<&Pin> = pins.iter().collect();
    let mut text = String::new();
    if old_text.trim().is_empty() {
        text.push_str("# Every Debian 12 (amd64) package faultline uses: <package> <version> <sha256> <size> <pool path>.\n");
        text.push_str(
            "# Regenerate it with scripts/dom0/lock.sh or re-pin some with `cargo xtask lock <package>...`.\n",
        );
    }
    for line in old_text.lines() {
        let package = line.split('#').next().unwrap_or("").split_whitespace().next();
        match remaining.iter().position(|pin| Some(pin.package.as_str()) == package) {
            Some(index) => text.push_str(&pin_line(remaining.remove(index))),
            None => text.push_str(line),
        }
        text.push('\n');
    }
    for pin in remaining {
        text.push_str(&pin_line(pin));
        text.push('\n');
    }
    text
}

fn pin_line(pin: &Pin) -> String {
    match (pin.size, &pin.pool_path) {
        (Some(size), Some(pool_path)) => {
            format!("{} {} {} {size} {pool_path}", pin.package, pin.version, pin.sha256)
        }
        _ => format!("{} {} {}", pin.package, pin.version, pin.sha256),
    }
}

/// The candidate version of `package` and its sha256, from apt-cache.
fn candidate_pin(package: &str) -> Result<Pin> {
    let mut version = candidate_version(package)?;
    if version.is_none() {
        apt_get_update()?;
        version = candidate_version(package)?;
    }
    let version = version.ok_or_else(|| {
        Error::new(format!(
            "apt knows no installable version of {package} (apt-cache policy {package})"
        ))
    })?;
    let output = Command::new("apt-cache")
        .args(["show", &format!("{package}={version}")])
        .stdin(Stdio::null())
        .output()
        .context(|| "cannot run apt-cache".to_string())?;
    require_success("apt-cache show", &output)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let stanza = text.split("\n\n").find(|stanza| {
        stanza.lines().any(|line| line.strip_prefix("Version: ") == Some(version.as_str()))
    });
    let field = |name: &str| {
        stanza.and_then(|stanza| {
            stanza
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(|value| value.trim().to_string())
        })
    };
    let sha256 = field("SHA256: ")
        .ok_or_else(|| Error::new(format!("apt-cache show {package}={version} gives no SHA256")))?;
    Ok(Pin {
        package: package.to_string(),
        version,
        sha256,
        size: field("Size: ").and_then(|size| size.parse().ok()),
        pool_path: field("Filename: "),
    })
}

fn candidate_version(package: &str) -> Result<Option<String>> {
    let output = Command::new("apt-cache")
        .args(["policy", package])
        .stdin(Stdio::null())
        .output()
        .context(|| "cannot run apt-cache".to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let candidate = text
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate: "))
        .map(str::trim)
        .filter(|version| *version != "(none)")
        .map(str::to_string);
    Ok(candidate)
}

/// The cached .deb of `pin`, downloaded and verified on first use.
fn fetch_deb(cache: &Path, pin: &Pin) -> Result<PathBuf> {
    let debs = cache.join("debs");
    let deb = debs.join(format!("{}_{}_amd64.deb", pin.package, pin.version.replace(':', "%3a")));
    sweep_partials(&debs)?;
    if deb.is_file() && sha256_of(&deb)? == pin.sha256 {
        return Ok(deb);
    }
    let download = partial_path(&debs.join("download"));
    fs::create_dir_all(&download).context(|| format!("cannot create {}", download.display()))?;
    status(&format!("downloading {} {}", pin.package, pin.version));
    apt_get_download(&download, pin)?;
    let fetched = fs::read_dir(&download)
        .context(|| format!("cannot list {}", download.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .ok_or_else(|| Error::new(format!("apt-get download left no .deb for {}", pin.package)))?;
    let sha256 = sha256_of(&fetched)?;
    let size = fs::metadata(&fetched).map(|meta| meta.len()).ok();
    if sha256 != pin.sha256 || pin.size.is_some_and(|pinned| Some(pinned) != size) {
        remove_dir_if_present(&download)?;
        return Err(Error::new(format!(
            "{} {}: the download (sha256 {sha256}, {} bytes) does not match the lock file (sha256 {})",
            pin.package,
            pin.version,
            size.unwrap_or(0),
            pin.sha256
        )));
    }
    fs::rename(&fetched, &deb).context(|| format!("cannot move {} into place", deb.display()))?;
    remove_dir_if_present(&download)?;
    Ok(deb)
}

/// `apt-get download <package>=<version>` into `folder`; runs `apt-get update` once if apt does not
/// know that version yet (fresh machines have empty package lists).
fn apt_get_download(folder: &Path, pin: &Pin) -> Result<()> {
    let spec = format!("{}={}", pin.package, pin.version);
    let attempt = || -> Result<Output> {
        let mut command = Command::new("apt-get");
        if is_root() {
            // Root cannot hand the download to the `_apt` user when the cache is under /root; apt
            // would say so ("unsandboxed") and download as root anyway.
            command.args(["-o", "APT::Sandbox::User=root"]);
        }
        command
            .args(["download", &spec])
            .current_dir(folder)
            .stdin(Stdio::null())
            .stdout(progress_stdio())
            .stderr(Stdio::piped())
            .output()
            .context(|| "cannot run apt-get".to_string())
    };
    let mut output = attempt()?;
    if !output.status.success() {
        // Another thread may be updating the lists right now: apt_get_update waits for it.
        if !*UPDATED.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
            status(&format!("apt does not offer {spec} yet; updating the package lists"));
        }
        apt_get_update()?;
        output = attempt()?;
    }
    if output.status.success() {
        return Ok(());
    }
    let last = last_error_line(&output);
    Err(Error::new(format!(
        "apt-get download {spec} failed ({last}); if the archive no longer has this version, re-pin it with `cargo xtask lock {}`",
        pin.package
    )))
}

/// Whether this process already ran (or tried) `apt-get update`; held while it runs, so a second
/// thread that needs fresh lists waits for the first one's update instead of skipping it.
static UPDATED: Mutex<bool> = Mutex::new(false);

/// Runs `apt-get update` (as root), at most once per process.
pub(crate) fn apt_get_update() -> Result<()> {
    let mut updated = UPDATED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *updated {
        return Ok(());
    }
    *updated = true;
    if !is_root() {
        return Err(Error::new(
            "apt's package lists are empty or stale: run `sudo apt-get update`, then try again",
        ));
    }
    status("apt-get update");
    let output = Command::new("apt-get")
        .arg("update")
        .stdin(Stdio::null())
        .stdout(progress_stdio())
        .stderr(Stdio::piped())
        .output()
        .context(|| "cannot run apt-get update".to_string())?;
    require_success("apt-get update", &output)
}

/// Holds an exclusive lock on the cache while packages are fetched and unpacked, so concurrent
/// runs (parallel tests, threads of one test binary too: each call opens the file anew, and
/// flock(2) locks belong to the open file) do not download the same file twice or read a
/// half-written one.
pub(crate) fn lock_cache(cache: &Path) -> Result<File> {
    let path = cache.join(".lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .context(|| format!("cannot open {}", path.display()))?;
    file.lock().context(|| format!("cannot lock {}", path.display()))?;
    Ok(file)
}

/// A temporary name next to `path` that no other thread or process uses:
/// `.<name>.partial-<pid>-<n>`. Readers look only at final names; a rename makes it one.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{}.partial-{}-{serial}", file_name(path), std::process::id()))
}

/// Removes the temporary files and folders ([`partial_path`]) left in `folder` by callers that
/// were killed halfway. Only call it with the cache's lock held: then no live caller owns one.
pub(crate) fn sweep_partials(folder: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(folder) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".partial-") {
            let path = entry.path();
            if path.is_dir() {
                remove_dir_if_present(&path)?;
            } else {
                fs::remove_file(&path).context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The cache folder name for a set of pins: readable, and unique per set and versions.
fn root_name(pins: &[Pin]) -> String {
    let mut hasher = Sha256::new();
    for pin in pins {
        hasher.update(format!("{} {} {}\n", pin.package, pin.version, pin.sha256));
    }
    let digest = hex(&hasher.finalize());
    let first = pins.first().map(|pin| pin.package.as_str()).unwrap_or("empty");
    format!("{first}-{}", &digest[..12])
}

/// The lowercase hex sha256 of a file.
pub fn sha256_of(path: &Path) -> Result<String> {
    let bytes = fs::read(path).context(|| format!("cannot read {}", path.display()))?;
    Ok(hex(&Sha256::digest(&bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Fails with the command's last error line if it did not succeed.
fn require_success(what: &str, output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let last = last_error_line(output);
    Err(Error::new(format!("{what} failed ({}): {last}", output.status)))
}

/// The last non-blank line a command wrote on stderr (usually its error).
fn last_error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("").trim().to_string()
}

/// Fails unless `apt-get`, `apt-cache` and `dpkg-deb` are on PATH.
fn check_debian_tools() -> Result<()> {
    for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
        if crate::host::find_in_path(tool).is_none() {
            return Err(Error::new(format!(
                "`{tool}` is missing: the runner fetches Xen from Debian 12's archive and needs apt and dpkg"
            )));
        }
    }
    Ok(())
}

fn remove_dir_if_present(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::new(format!("cannot remove {}: {error}", path.display())))
        }
        _ => Ok(()),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Whether this process runs as root (apt-get install/update need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A child's stdout sent to our stderr, so that its progress shows without mixing into stdout.
pub(crate) fn progress_stdio() -> Stdio {
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

/// A status line from the runner (stderr, prefixed).
pub fn status(message: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "xtask: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "fc074298a677325306662eea382cc4503339b8e1f4db54b24702b0b07cf6741d";

    #[test]
    fn parses_the_lock_file() {
        let text = format!("# comment\n\nxen-hypervisor-4.17-amd64 4.17.7+13-g2445b30a44-0+deb12u1 {SHA} # pinned\n");
        let lock = Lock::parse(&text).unwrap();
        let pin = lock.get("xen-hypervisor-4.17-amd64").unwrap();
        assert_eq!(pin.version, "4.17.7+13-g2445b30a44-0+deb12u1");
        assert_eq!(pin.sha256, SHA);
        assert!(lock
            .get("busybox-static")
            .unwrap_err()
            .message()
            .contains("cargo xtask lock busybox-static"));
        assert!(Lock::parse("xen 1.0").is_err());
        assert!(Lock::parse("xen 1.0 nothex").is_err());
        let five = Lock::parse(&format!(
            "zlib1g 1:1.2.13.dfsg-1 {SHA} 86684 pool/main/z/zlib/zlib1g.deb\n"
        ))
        .unwrap();
        assert_eq!(five.get("zlib1g").unwrap().size, Some(86684));
        assert!(Lock::parse(&format!("zlib1g 1 {SHA} 86684\n")).is_err());
    }

    #[test]
    fn merges_new_pins() {
        let old = format!("# header\na 1 {SHA}\nb 2 {SHA}\n");
        let pins = [
            Pin {
                package: "b".into(),
                version: "3".into(),
                sha256: SHA.into(),
                size: None,
                pool_path: None,
            },
            Pin {
                package: "c".into(),
                version: "4".into(),
                sha256: SHA.into(),
                size: Some(9),
                pool_path: Some("pool/c.deb".into()),
            },
        ];
        let merged = merge_pins(&old, &pins);
        assert_eq!(merged, format!("# header\na 1 {SHA}\nb 3 {SHA}\nc 4 {SHA} 9 pool/c.deb\n"));
        let lock = Lock::parse(&merged).unwrap();
        assert_eq!(lock.get("b").unwrap().version, "3");
    }

    #[test]
    fn root_names_depend_on_versions() {
        let pin = |version: &str| Pin {
            package: "xen".into(),
            version: version.into(),
            sha256: SHA.into(),
            size: None,
            pool_path: None,
        };
        assert_ne!(root_name(&[pin("1")]), root_name(&[pin("2")]));
        assert!(root_name(&[pin("1")]).starts_with("xen-"));
    }
}
