//! The DomU path's files: the xl folder (`faultline.cfg`, the kernel, the ramdisk), the payload
//! that carries that folder into the Linux dom0, and QEMU's command line.
//!
//! The runner writes `target/xl/faultline.cfg` next to `target/xl/faultline` and the ramdisk
//! (`programs.tar`), naming both by relative paths. xl opens them relative to its working
//! directory (checked: from another directory xl fails with "failed to open file"), so the dom0
//! runs `xl create` inside the folder, exactly as `cd target/xl && xl create -c faultline.cfg` does
//! on a real Xen host: the payload carries the folder's files byte for byte.

use std::ffi::OsString;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::cpio;
use crate::dom0_image::Dom0Image;
use crate::error::{Context, Error, Result};
use crate::qemu::module_path;

/// The xl config template (`##` lines are the template's own comments).
const CFG_TEMPLATE: &str = include_str!("../../dom0/faultline.cfg.in");
/// The xl config's file name in the folder.
pub const CFG_NAME: &str = "faultline.cfg";
/// The kernel's file name in the folder.
pub const KERNEL_NAME: &str = "faultline";
/// The domain's name (xenconsoled logs its console to `guest-<name>.log`).
pub const DOMAIN_NAME: &str = "faultline";
/// Where the folder goes inside dom0 (the payload unpacks there).
const PAYLOAD_DIR: &str = "payload/xl";

/// QEMU memory for the DomU path, at the least: below 352 MiB the dom0 does not boot (Xen holds
/// the 66 MB dom0 kernel, the initramfs and dom0's 192 MiB at once while it builds dom0).
const QEMU_FLOOR_MIB: u32 = 384;
/// QEMU memory on top of dom0's and the guest's: Xen itself and its tables (measured with a
/// 192 MiB dom0: `xl info` free_memory is QEMU's memory minus ~201 MiB at 384 MiB and ~210 at
/// 1248 MiB, and a 1024 MiB guest needs ~1026 MiB free), about three times what was needed.
const XEN_BASE_MIB: u32 = 64;
/// More on top per GiB of guest memory (Xen's frame table, the guest's page tables).
const XEN_MIB_PER_GIB: u32 = 16;

/// The written folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XlDir {
    pub dir: PathBuf,
    /// `<dir>/faultline.cfg`.
    pub cfg: PathBuf,
    /// The files the cfg names, by their names in the folder (kernel first).
    pub files: Vec<String>,
}

/// What goes into `faultline.cfg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestConfig<'a> {
    pub name: &'a str,
    /// The kernel's path as the cfg gives it (relative for the runner).
    pub kernel: &'a str,
    pub ramdisk: Option<&'a str>,
    pub memory_mib: u32,
    /// xl's `vcpus`.
    pub vcpus: u32,
    /// The guest's command line (xl's `extra`).
    pub cmdline: &'a str,
}

/// The xl config: the template with its fields filled in (a line whose field is empty dropped).
pub fn render_cfg(config: &GuestConfig<'_>) -> Result<String> {
    let cmdline = config.cmdline.trim();
    if cmdline.contains(['"', '\\', '\n', '\r']) {
        return Err(Error::new(format!(
            "the guest command line {cmdline:?} cannot go into xl's extra = \"...\": no quotes, backslashes or line breaks"
        )));
    }
    let memory = config.memory_mib.to_string();
    let vcpus = config.vcpus.to_string();
    let ramdisk = config.ramdisk.unwrap_or("");
    let mut text = String::new();
    for line in CFG_TEMPLATE.lines() {
        if line.starts_with("##")
            || (line.contains("@RAMDISK@") && ramdisk.is_empty())
            || (line.contains("@EXTRA@") && cmdline.is_empty())
        {
            continue;
        }
        let line = line
            .replace("@NAME@", config.name)
            .replace("@KERNEL@", config.kernel)
            .replace("@RAMDISK@", ramdisk)
            .replace("@MEMORY@", &memory)
            .replace("@VCPUS@", &vcpus)
            .replace("@EXTRA@", cmdline);
        text.push_str(&line);
        text.push('\n');
    }
    Ok(text)
}

/// Writes the folder: the kernel as `faultline`, the ramdisk under its own file name, and
/// `faultline.cfg` naming both relatively. Holds `<dir>.lock` (next to the folder, so that the
/// folder holds only what xl needs) while it writes and while `then` runs (e.g. packs the
/// payload), so concurrent runs into the same folder take turns.
pub fn with_xl_dir<T>(
    dir: &Path,
    kernel: &Path,
    ramdisk: Option<&Path>,
    memory_mib: u32,
    vcpus: u32,
    cmdline: &str,
    then: impl FnOnce(&XlDir) -> Result<T>,
) -> Result<T> {
    fs::create_dir_all(dir).context(|| format!("cannot create {}", dir.display()))?;
    let mut lock_name = dir.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    let lock_path = dir.with_file_name(lock_name);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock().context(|| format!("cannot lock {}", lock_path.display()))?;
    let ramdisk_name = ramdisk.map(ramdisk_name);
    let text = render_cfg(&GuestConfig {
        name: DOMAIN_NAME,
        kernel: KERNEL_NAME,
        ramdisk: ramdisk_name.as_deref(),
        memory_mib,
        vcpus,
        cmdline,
    })?;
    copy_into(dir, KERNEL_NAME, kernel)?;
    let mut files = vec![KERNEL_NAME.to_string()];
    if let (Some(ramdisk), Some(name)) = (ramdisk, &ramdisk_name) {
        copy_into(dir, name, ramdisk)?;
        files.push(name.clone());
    }
    let cfg = dir.join(CFG_NAME);
    write_replacing(&cfg, text.as_bytes())?;
    then(&XlDir { dir: dir.to_path_buf(), cfg, files })
}

/// The ramdisk's name in the folder: its own file name when that is plain, else `ramdisk`.
fn ramdisk_name(path: &Path) -> String {
    let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("");
    let plain = !name.is_empty()
        && name != CFG_NAME
        && name != KERNEL_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if plain {
        name.to_string()
    } else {
        "ramdisk".to_string()
    }
}

fn copy_into(dir: &Path, name: &str, from: &Path) -> Result<()> {
    let bytes = fs::read(from).context(|| format!("cannot read {}", from.display()))?;
    write_replacing(&dir.join(name), &bytes)
}

/// Writes a file through a temporary name and a rename, so that no reader sees half of it.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = crate::packages::partial_path(path);
    fs::write(&partial, bytes).context(|| format!("cannot write {}", partial.display()))?;
    fs::rename(&partial, path).context(|| format!("cannot move {} into place", path.display()))
}

/// How the dom0 shows a guest's console.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XlConsole {
    /// `xl create -F -c`: the console streams as the guest writes it (~1 s slower per guest).
    Live,
    /// `xl create -F`: xenconsoled's log of the guest is printed once the guest is gone.
    #[default]
    Log,
}

impl XlConsole {
    /// The word in `/payload/guests`.
    pub fn as_str(self) -> &'static str {
        match self {
            XlConsole::Live => "live",
            XlConsole::Log => "log",
        }
    }
}

/// The dom0's initramfs for one run: the base image, then a cpio with the folder's files under
/// `/payload/xl/` and `/payload/guests` listing its cfg `guests` times (run one after another).
pub fn payload(
    base: &Path,
    xl: &XlDir,
    guests: u32,
    timeout_secs: u64,
    console: XlConsole,
) -> Result<Vec<u8>> {
    let base = fs::read(base).context(|| {
        format!("cannot read the dom0 initramfs {} (rerun scripts/dom0/build.sh)", base.display())
    })?;
    let mut writer = cpio::Writer::after(base);
    writer.directory("payload");
    let line = format!("/{PAYLOAD_DIR}/{CFG_NAME} {timeout_secs} {}\n", console.as_str());
    writer.file("payload/guests", line.repeat(guests as usize).as_bytes());
    writer.directory(PAYLOAD_DIR);
    for name in std::iter::once(CFG_NAME).chain(xl.files.iter().map(String::as_str)) {
        let path = xl.dir.join(name);
        let bytes = fs::read(&path).context(|| format!("cannot read {}", path.display()))?;
        writer.file(&format!("{PAYLOAD_DIR}/{name}"), &bytes);
    }
    Ok(writer.finish())
}

/// QEMU's memory for a guest of `guest_mib` next to a dom0 of `dom0_mib` (one guest at a time:
/// each is destroyed before the next starts). `FAULTLINE_QEMU_MIB` overrides it.
pub fn qemu_memory_mib(dom0_mib: u32, guest_mib: u32) -> u32 {
    let per_gib = guest_mib.div_ceil(1024) * XEN_MIB_PER_GIB;
    QEMU_FLOOR_MIB.max(dom0_mib + guest_mib + XEN_BASE_MIB + per_gib)
}

/// QEMU's arguments: Xen, the Linux dom0 and its initramfs `run_image`, the debug-exit port, and
/// `cpus` CPUs (the largest guest's vCPUs; the dom0 keeps its one, `dom0_max_vcpus=1`).
pub fn qemu_args(
    image: &Dom0Image,
    run_image: &Path,
    guest_mib: u32,
    cpus: u32,
) -> Result<Vec<OsString>> {
    let memory = match std::env::var("FAULTLINE_QEMU_MIB") {
        Ok(mib) if !mib.is_empty() => mib,
        _ => qemu_memory_mib(image.dom0_mib, guest_mib).to_string(),
    };
    // A comma splits multiboot modules: dom0's arguments write theirs twice.
    let modules = format!(
        "{} {},{}",
        module_path(&image.kernel)?,
        image.dom0_args.replace(',', ",,"),
        module_path(run_image)?
    );
    let mut args = crate::qemu::cpu_args(cpus);
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-m", &memory]);
    args.push("-kernel".into());
    args.push(image.xen_elf.clone().into_os_string());
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-append", &image.xen_args]);
    push(&["-initrd", &modules]);
    push(&["-serial", "stdio", "-display", "none", "-monitor", "none"]);
    push(&["-no-reboot", "-nodefaults"]);
    // dom0 ends the run with a byte to this port: QEMU exits with (byte << 1) | 1.
    push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cfg_names_its_files_relatively() {
        let text = render_cfg(&GuestConfig {
            name: "faultline",
            kernel: "faultline",
            ramdisk: Some("programs.tar"),
            memory_mib: 32,
            vcpus: 2,
            cmdline: "tests=a,b test_time=5s",
        })
        .unwrap();
        for line in [
            "type = \"pv\"",
            "name = \"faultline\"",
            "kernel = \"faultline\"",
            "ramdisk = \"programs.tar\"",
            "memory = 32",
            "vcpus = 2",
            "extra = \"tests=a,b test_time=5s\"",
            "on_poweroff = \"destroy\"",
            "on_reboot = \"destroy\"",
            "on_crash = \"destroy\"",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert!(!text.contains("##") && !text.contains('@'), "{text}");
    }

    #[test]
    fn empty_fields_drop_their_lines() {
        let text = render_cfg(&GuestConfig {
            name: "faultline",
            kernel: "faultline",
            ramdisk: None,
            memory_mib: 8,
            vcpus: 1,
            cmdline: "  ",
        })
        .unwrap();
        assert!(!text.lines().any(|l| l.starts_with("ramdisk")), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("extra")), "{text}");
        let quoted = GuestConfig {
            cmdline: "a\"b",
            ..GuestConfig {
                name: "f",
                kernel: "f",
                ramdisk: None,
                memory_mib: 8,
                vcpus: 1,
                cmdline: "",
            }
        };
        assert!(render_cfg(&quoted).is_err());
    }

    #[test]
    fn ramdisk_names_stay_plain() {
        assert_eq!(ramdisk_name(Path::new("/t/programs.tar")), "programs.tar");
        assert_eq!(ramdisk_name(Path::new("/t/my file.tar")), "ramdisk");
        assert_eq!(ramdisk_name(Path::new("/t/faultline.cfg")), "ramdisk");
        assert_eq!(ramdisk_name(Path::new("/t/faultline")), "ramdisk");
    }

    #[test]
    fn qemu_memory_fits_dom0_and_the_guest() {
        assert_eq!(qemu_memory_mib(192, 32), 384);
        // Measured: a 1024 MiB guest needs QEMU at 1248 MiB or more.
        assert!(qemu_memory_mib(192, 1024) >= 1248 + 32);
        assert!(qemu_memory_mib(192, 4096) >= 192 + 4096 + 100);
    }

    #[test]
    fn the_payload_lists_the_cfg_once_per_guest() {
        let dir = std::env::temp_dir().join(format!("faultline-xl-test-{}", std::process::id()));
        let base = dir.join("base.gz");
        fs::create_dir_all(&dir).unwrap();
        fs::write(&base, b"12345").unwrap();
        let kernel = dir.join("k");
        fs::write(&kernel, b"\x7fELF").unwrap();
        let xl_dir = dir.join("xl");
        let bytes = with_xl_dir(&xl_dir, &kernel, None, 16, 1, "", |xl| {
            payload(&base, xl, 2, 60, XlConsole::Log)
        })
        .unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(bytes.starts_with(b"12345\x00\x00\x00070701"));
        assert!(
            text.contains("/payload/xl/faultline.cfg 60 log\n/payload/xl/faultline.cfg 60 log\n")
        );
        assert!(text.contains("payload/xl/faultline\0"));
        let cfg = fs::read_to_string(xl_dir.join(CFG_NAME)).unwrap();
        assert!(text.contains(&cfg), "the cfg goes in byte for byte");
        fs::remove_dir_all(&dir).unwrap();
    }
}
