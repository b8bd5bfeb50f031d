//! Debian packages unpacked into a private cache, pinned by `scripts/packages.lock`.
//!
//! That one lock file pins every package faultline uses: the hypervisors the runner boots, and
//! everything `scripts/dom0/build.sh` builds the Linux dom0 images from (it reads the same file).
//!
//! `ensure("bookworm", &["xen-hypervisor-4.17-amd64"])` downloads each package at its pinned
//! version with `apt-get download`, checks the .deb's sha256 against the lock file, unpacks it
//! with `dpkg-deb -x` (nothing is installed system-wide) and returns the folder that holds the
//! unpacked files (`<root>/boot/...`, `<root>/usr/...`). Results are cached in `$FAULTLINE_CACHE`
//! (default `~/.cache/faultline`); a second call with the same set costs a stat.
//!
//! Lock file format, one package a line, `#` starts a comment, `[<suite>] <comment>` starts the
//! section of a Debian release (lines before the first header are [`HOST_SUITE`]'s):
//! `<package> <version> <sha256 of the .deb> [<size> <pool path>]`. The same package may be
//! pinned once per release. `cargo xtask lock [--xen V] <package>...` (re)pins packages to the
//! version apt offers now, taking the sha256 from `apt-cache show`.
//!
//! Packages of [`HOST_SUITE`] come through the host's apt lists; those of another release through
//! `scripts/dom0/apt-suite.sh`, which gives apt its own sources list (the host's mirror), lists
//! and cache under `$FAULTLINE_CACHE/apt/<suite>` and leaves the host's lists alone.

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

/// The Debian release whose packages come through the host's own apt lists (Debian 12).
pub const HOST_SUITE: &str = "bookworm";

/// One pinned package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The Debian release (the lock file's section), e.g. `bookworm`.
    pub suite: String,
    pub package: String,
    pub version: String,
    pub sha256: String,
    /// The .deb's size in bytes, when the lock file gives it.
    pub size: Option<u64>,
    /// The .deb's path in the archive (`pool/...`), when the lock file gives it.
    pub pool_path: Option<String>,
}

/// The parsed lock file: (suite, package name) to pin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lock {
    pins: BTreeMap<(String, String), Pin>,
}

impl Lock {
    /// Every pin, by package name.
    pub fn pins(&self) -> impl Iterator<Item = &Pin> {
        self.pins.values()
    }

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
        let mut suite = HOST_SUITE.to_string();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                suite = section_name(rest).ok_or_else(|| {
                    Error::new(format!(
                        "line {}: expected a section header `[<suite>] <comment>`",
                        number + 1
                    ))
                })?;
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
                suite: suite.clone(),
                package: package.to_string(),
                version: version.to_string(),
                sha256: sha256.to_ascii_lowercase(),
                size,
                pool_path,
            };
            if pins.insert((suite.clone(), package.to_string()), pin).is_some() {
                return Err(Error::new(format!(
                    "line {}: {package} is pinned twice in [{suite}]",
                    number + 1
                )));
            }
        }
        Ok(Lock { pins })
    }

    /// The pin of `package` in the section of `suite`.
    pub fn get(&self, suite: &str, package: &str) -> Result<&Pin> {
        self.pins.get(&(suite.to_string(), package.to_string())).ok_or_else(|| {
            Error::new(format!(
                "{package} is not pinned in [{suite}] of scripts/packages.lock: run `cargo xtask lock{} {package}`",
                lock_flag(suite)
            ))
        })
    }
}

/// The suite of a section header's text after `[`: `bookworm] comment` gives `bookworm`.
fn section_name(rest: &str) -> Option<String> {
    let (name, _) = rest.split_once(']')?;
    let valid = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then(|| name.to_string())
}

/// The `cargo xtask lock` option that picks `suite`'s section: ` --xen 4.20`, or none.
fn lock_flag(suite: &str) -> String {
    crate::xen::XenVersion::ALL
        .into_iter()
        .find(|version| version.suite() == suite && suite != HOST_SUITE)
        .map(|version| format!(" --xen {version}"))
        .unwrap_or_default()
}

/// Makes sure every package in `packages` (pinned in the section of `suite`) is downloaded,
/// verified and unpacked, and returns the one folder they are all unpacked into.
pub fn ensure(suite: &str, packages: &[&str]) -> Result<PathBuf> {
    ensure_in(&workspace::cache_dir(), suite, packages)
}

/// [`ensure`] into the cache folder `cache`.
///
/// Concurrency: the whole check, fetch and unpack runs under the cache's lock, into a temporary
/// folder of a name no other caller uses, renamed into place only once complete (the stamp file
/// last). A caller killed halfway leaves only a temporary folder, which the next caller sweeps.
pub fn ensure_in(cache: &Path, suite: &str, packages: &[&str]) -> Result<PathBuf> {
    check_debian_tools()?;
    let lock = Lock::load()?;
    let pins = packages
        .iter()
        .map(|package| lock.get(suite, package).cloned())
        .collect::<Result<Vec<Pin>>>()?;
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

/// Pins `packages` at the version apt offers now in `suite`, writing the section of `suite` in
/// `scripts/packages.lock`.
pub fn lock(suite: &str, packages: &[String]) -> Result<()> {
    check_debian_tools()?;
    let path = workspace::packages_lock();
    let old_text = fs::read_to_string(&path).unwrap_or_default();
    let mut new_pins = Vec::new();
    for package in packages {
        let pin = candidate_pin(&workspace::cache_dir(), suite, package)?;
        status(&format!("pinning {} {} sha256 {}", pin.package, pin.version, pin.sha256));
        new_pins.push(pin);
    }
    let text = merge_pins(&old_text, suite, &new_pins);
    Lock::parse(&text)?;
    fs::write(&path, text).context(|| format!("cannot write {}", path.display()))
}

/// The lock file's text with `pins` replacing the lines of the same packages in the section of
/// `suite`, or appended at the end of that section (a new section at the end of the file).
fn merge_pins(old_text: &str, suite: &str, pins: &[Pin]) -> String {
    let mut remaining: Vec<&Pin> = pins.iter().collect();
    let mut text = String::new();
    if old_text.trim().is_empty() {
        text.push_str("# Every Debian (amd64) package faultline uses, one section per release: <package> <version> <sha256> <size> <pool path>.\n");
        text.push_str(
            "# Regenerate it with scripts/dom0/lock.sh or re-pin some with `cargo xtask lock [--xen V] <package>...`.\n",
        );
    }
    let append_rest = |text: &mut String, remaining: &mut Vec<&Pin>| {
        for pin in remaining.drain(..) {
            text.push_str(&pin_line(pin));
            text.push('\n');
        }
    };
    // Lines before the first header belong to HOST_SUITE; new pins go at the end of the
    // section that has pins (or the header) of `suite`.
    let mut current = HOST_SUITE.to_string();
    let mut explicit = false;
    let mut has_pins = false;
    let mut seen = false;
    for line in old_text.lines() {
        let content = line.split('#').next().unwrap_or("").trim();
        if let Some(name) = content.strip_prefix('[').and_then(section_name) {
            if current == suite && (explicit || has_pins) {
                append_rest(&mut text, &mut remaining);
            }
            current = name;
            explicit = true;
            has_pins = false;
            seen |= current == suite;
        } else if !content.is_empty() {
            has_pins = true;
        }
        if current == suite && !content.is_empty() && !content.starts_with('[') {
            seen = true;
            let package = content.split_whitespace().next();
            if let Some(index) =
                remaining.iter().position(|pin| Some(pin.package.as_str()) == package)
            {
                text.push_str(&pin_line(remaining.remove(index)));
                text.push('\n');
                continue;
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    if !remaining.is_empty() && current != suite && (seen || suite != HOST_SUITE) {
        text.push_str(&format!("[{suite}]\n"));
    }
    append_rest(&mut text, &mut remaining);
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

/// The candidate version of `package` in `suite` and its sha256, from apt-cache.
fn candidate_pin(cache: &Path, suite: &str, package: &str) -> Result<Pin> {
    let mut version = candidate_version(cache, suite, package)?;
    if version.is_none() {
        update_lists(cache, suite)?;
        version = candidate_version(cache, suite, package)?;
    }
    let version = version.ok_or_else(|| {
        Error::new(format!(
            "apt knows no installable version of {package} (apt-cache policy {package})"
        ))
    })?;
    let output = apt_command(cache, suite, "apt-cache")
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
        suite: suite.to_string(),
        package: package.to_string(),
        version,
        sha256,
        size: field("Size: ").and_then(|size| size.parse().ok()),
        pool_path: field("Filename: "),
    })
}

fn candidate_version(cache: &Path, suite: &str, package: &str) -> Result<Option<String>> {
    let output = apt_command(cache, suite, "apt-cache")
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
    apt_get_download(cache, &download, pin)?;
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

/// `apt` (apt-get or apt-cache) on the lists of `suite`: the host's for [`HOST_SUITE`], else
/// apt's own lists under `cache` through `scripts/dom0/apt-suite.sh` (which runs `apt-get update`
/// for them on first use).
fn apt_command(cache: &Path, suite: &str, apt: &str) -> Command {
    if suite == HOST_SUITE {
        return Command::new(apt);
    }
    let mut command = Command::new("bash");
    command.arg(workspace::root().join("scripts/dom0/apt-suite.sh")).arg(suite).arg(cache).arg(apt);
    command
}

/// `apt-get update` for `suite`: the host's lists ([`apt_get_update`]), or the suite's own.
fn update_lists(cache: &Path, suite: &str) -> Result<()> {
    if suite == HOST_SUITE {
        return apt_get_update();
    }
    status(&format!("apt-get update for {suite} (its own lists under {})", cache.display()));
    let output = Command::new("bash")
        .arg(workspace::root().join("scripts/dom0/apt-suite.sh"))
        .args([suite.as_ref(), cache.as_os_str(), "update".as_ref()])
        .stdin(Stdio::null())
        .stdout(progress_stdio())
        .stderr(Stdio::piped())
        .output()
        .context(|| "cannot run scripts/dom0/apt-suite.sh".to_string())?;
    require_success(&format!("apt-get update for {suite}"), &output)
}

/// `apt-get download <package>=<version>` into `folder`; runs `apt-get update` once if apt does not
/// know that version yet (fresh machines have empty package lists).
fn apt_get_download(cache: &Path, folder: &Path, pin: &Pin) -> Result<()> {
    let spec = format!("{}={}", pin.package, pin.version);
    let attempt = || -> Result<Output> {
        let mut command = apt_command(cache, &pin.suite, "apt-get");
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
    if !output.status.success() && pin.suite != HOST_SUITE {
        // The suite's own lists (under the cache) may be stale.
        update_lists(cache, &pin.suite)?;
        output = attempt()?;
    } else if !output.status.success() {
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
        "apt-get download {spec} ({}) failed ({last}); if the archive no longer has this version, re-pin it with `cargo xtask lock{} {}`",
        pin.suite,
        lock_flag(&pin.suite),
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
        // The sha256 tells releases apart: the suite is left out, so caches stay valid.
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
    const SHB: &str = "c38498c5696b29a854d67955a5ad18ef02daf856ddc718322ce61388afeeffd8";

    fn pin(suite: &str, package: &str, version: &str) -> Pin {
        Pin {
            suite: suite.into(),
            package: package.into(),
            version: version.into(),
            sha256: SHA.into(),
            size: None,
            pool_path: None,
        }
    }

    #[test]
    fn parses_the_lock_file() {
        let text = format!("# comment\n\nxen-hypervisor-4.17-amd64 4.17.7+13-g2445b30a44-0+deb12u1 {SHA} # pinned\n");
        let lock = Lock::parse(&text).unwrap();
        let pin = lock.get("bookworm", "xen-hypervisor-4.17-amd64").unwrap();
        assert_eq!(pin.version, "4.17.7+13-g2445b30a44-0+deb12u1");
        assert_eq!(pin.sha256, SHA);
        assert_eq!(pin.suite, "bookworm");
        assert!(lock
            .get("bookworm", "busybox-static")
            .unwrap_err()
            .message()
            .contains("cargo xtask lock busybox-static"));
        assert!(Lock::parse("xen 1.0").is_err());
        assert!(Lock::parse("xen 1.0 nothex").is_err());
        let five = Lock::parse(&format!(
            "zlib1g 1:1.2.13.dfsg-1 {SHA} 86684 pool/main/z/zlib/zlib1g.deb\n"
        ))
        .unwrap();
        assert_eq!(five.get("bookworm", "zlib1g").unwrap().size, Some(86684));
        assert!(Lock::parse(&format!("zlib1g 1 {SHA} 86684\n")).is_err());
    }

    #[test]
    fn parses_one_section_per_release() {
        let text = format!(
            "# header\n[bookworm] Debian 12\nlibc6 2.36 {SHA}\n[trixie] Debian 13: Xen 4.20\nlibc6 2.41 {SHB}\nxen-utils-4.20 4.20.4 {SHB}\n"
        );
        let lock = Lock::parse(&text).unwrap();
        assert_eq!(lock.get("bookworm", "libc6").unwrap().version, "2.36");
        assert_eq!(lock.get("trixie", "libc6").unwrap().version, "2.41");
        assert_eq!(lock.get("trixie", "libc6").unwrap().sha256, SHB);
        assert!(lock.get("bookworm", "xen-utils-4.20").is_err());
        // The error names the option that re-pins into that section.
        let message = lock.get("trixie", "busybox-static").unwrap_err().to_string();
        assert!(message.contains("[trixie]"), "{message}");
        assert!(message.contains("cargo xtask lock --xen 4.20 busybox-static"), "{message}");
        // A package pinned twice in one section, and a malformed header, are errors.
        assert!(Lock::parse(&format!("[trixie]\nlibc6 1 {SHA}\nlibc6 2 {SHA}\n")).is_err());
        assert!(Lock::parse(&format!("[trixie\nlibc6 1 {SHA}\n")).is_err());
        assert!(Lock::parse(&format!("[] x\nlibc6 1 {SHA}\n")).is_err());
    }

    #[test]
    fn merges_new_pins() {
        let old = format!("# header\na 1 {SHA}\nb 2 {SHA}\n");
        let mut c = pin("bookworm", "c", "4");
        c.size = Some(9);
        c.pool_path = Some("pool/c.deb".into());
        let pins = [pin("bookworm", "b", "3"), c];
        let merged = merge_pins(&old, "bookworm", &pins);
        assert_eq!(merged, format!("# header\na 1 {SHA}\nb 3 {SHA}\nc 4 {SHA} 9 pool/c.deb\n"));
        let lock = Lock::parse(&merged).unwrap();
        assert_eq!(lock.get("bookworm", "b").unwrap().version, "3");
    }

    #[test]
    fn merges_new_pins_into_their_section() {
        let old = format!("# h\n[bookworm] 12\na 1 {SHA}\n[trixie] 13\na 5 {SHA}\n");
        // Into the first section: replaced there, new ones at its end (before the next header).
        let merged =
            merge_pins(&old, "bookworm", &[pin("bookworm", "a", "2"), pin("bookworm", "z", "9")]);
        assert_eq!(
            merged,
            format!("# h\n[bookworm] 12\na 2 {SHA}\nz 9 {SHA}\n[trixie] 13\na 5 {SHA}\n")
        );
        // Into the last section.
        let merged =
            merge_pins(&old, "trixie", &[pin("trixie", "a", "6"), pin("trixie", "b", "7")]);
        assert_eq!(
            merged,
            format!("# h\n[bookworm] 12\na 1 {SHA}\n[trixie] 13\na 6 {SHA}\nb 7 {SHA}\n")
        );
        // A section the file lacks is added at its end.
        let merged = merge_pins(&format!("a 1 {SHA}\n"), "trixie", &[pin("trixie", "a", "6")]);
        assert_eq!(merged, format!("a 1 {SHA}\n[trixie]\na 6 {SHA}\n"));
        let lock = Lock::parse(&merged).unwrap();
        assert_eq!(lock.get("bookworm", "a").unwrap().version, "1");
        assert_eq!(lock.get("trixie", "a").unwrap().version, "6");
    }

    #[test]
    fn the_committed_lock_pins_both_xen_versions() {
        let lock = Lock::load().unwrap();
        for version in crate::xen::XenVersion::ALL {
            let suite = version.suite();
            for package in [
                version.hypervisor_package(),
                format!("xen-utils-{version}"),
                format!("libxenmisc{version}"),
                "xenstore-utils".to_string(),
                "libc6".to_string(),
                "libgcc-s1".to_string(),
                "busybox-static".to_string(),
            ] {
                let pin = lock.get(suite, &package).unwrap();
                assert!(pin.size.is_some() && pin.pool_path.is_some(), "{pin:?}");
            }
        }
        assert!(lock.get("trixie", "libc6").unwrap().version.starts_with("2.41"));
    }

    #[test]
    fn root_names_depend_on_versions() {
        let pin = |version: &str| pin("bookworm", "xen", version);
        assert_ne!(root_name(&[pin("1")]), root_name(&[pin("2")]));
        assert!(root_name(&[pin("1")]).starts_with("xen-"));
    }
}

/// scripts/dom0/apt-suite.sh: which archive hosts another release is fetched from.
#[cfg(test)]
mod apt_suite_tests {
    use std::path::Path;
    use std::process::Command;

    /// Runs `apt-suite.sh trixie <cache> mirror` on the host sources written into a temporary
    /// folder: its stdout lines on success, its stderr on failure.
    fn mirror(files: &[(&str, &str)]) -> Result<Vec<String>, String> {
        // A folder per call: the tests run in parallel, two of them with one file each.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "faultline-apt-suite-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc/sources.list.d")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join("etc").join(name), text).unwrap();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dom0/apt-suite.sh");
        let output = Command::new("bash")
            .arg(script)
            .args(["trixie".as_ref(), dir.join("cache").as_os_str(), "mirror".as_ref()])
            .env("APT_SUITE_ETC", dir.join("etc"))
            .env("APT_SUITE_HOST", "bookworm")
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    #[test]
    fn takes_the_hosts_mirror_from_deb822_sources() {
        let sources =
            "Types: deb\n# http://snapshot.example/archive\nURIs: http://mirror.example/debian/\n\
            Suites: bookworm bookworm-updates\nComponents: main\n\n\
            Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\
            Components: main\n";
        let other = "Types: deb\nURIs: https://vendor.example/apt\nSuites: nodistro\n";
        let found = mirror(&[
            ("sources.list.d/debian.sources", sources),
            ("sources.list.d/vendor.sources", other),
        ]);
        assert_eq!(
            found.unwrap(),
            ["http://mirror.example/debian", "http://security.example/debian-security"]
        );
    }

    #[test]
    fn takes_the_hosts_mirror_from_one_line_sources() {
        let list = "# deb http://old.example/debian bookworm main\n\
            deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n\
            deb-src http://src.example/debian bookworm main\n";
        // Without a security entry: the same host's -security archive (Debian's layout).
        assert_eq!(
            mirror(&[("sources.list", list)]).unwrap(),
            ["http://mirror.example/debian", "http://mirror.example/debian-security"]
        );
    }

    #[test]
    fn refuses_to_guess_without_a_host_mirror() {
        let list = "deb https://vendor.example/apt nodistro main\n";
        let error = mirror(&[("sources.list", list)]).unwrap_err();
        assert!(error.contains("list no archive for bookworm"), "{error}");
    }
}
