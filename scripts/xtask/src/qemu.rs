//! QEMU's command line for booting Xen with our kernel as dom0, and the QEMU process itself.
//!
//! The process runs in its own process group, so a Ctrl-C at the terminal reaches the runner, not
//! QEMU; the runner then kills the group. Three things make sure no QEMU outlives a run: the
//! [`QemuProcess`] drop guard, a SIGINT/SIGTERM/SIGHUP handler that kills every live group, and
//! (where util-linux's `setpriv` is there) a parent-death signal in case the runner is killed
//! outright.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Mutex, Once};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Context, Error, Result};
use crate::host::find_in_path;

/// QEMU memory on top of dom0's, in MiB: a fixed part for Xen itself, and a part per GiB of dom0
/// memory for Xen's frame table, the M2P table and dom0's p2m and page tables. See
/// [`qemu_memory_mib`] for the measurements; both are about twice what was needed.
const XEN_BASE_MIB: u32 = 32;
const XEN_MIB_PER_GIB: u32 = 16;

/// What to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootConfig {
    /// The hypervisor ELF (QEMU's `-kernel`, multiboot).
    pub xen: PathBuf,
    /// Our kernel image: dom0's kernel, the first multiboot module.
    pub kernel: PathBuf,
    /// dom0's command line (the text after the kernel's path in the first module).
    pub cmdline: String,
    /// An optional second module (dom0's "initrd"), e.g. an archive of test programs.
    pub module: Option<PathBuf>,
    /// dom0's memory (Xen's `dom0_mem`) in MiB.
    pub dom0_mib: u32,
    /// dom0's vCPUs (Xen's `dom0_max_vcpus`), and QEMU's CPUs.
    pub vcpus: u32,
}

/// QEMU's memory size for a dom0 of `dom0_mib` MiB: dom0's memory, plus Xen's own.
///
/// Xen does not fail when memory is short: it silently gives dom0 less than `dom0_mem`. Measured
/// with Debian's Xen 4.17.7 (smallest `-m` at which dom0 gets all of `dom0_mem`): 8 MiB needs
/// 19, 64 needs 71, 2048 needs 2075, 4096 needs 4143, 8192 needs 8289: about 11 MiB plus 12 MiB
/// per GiB. `FAULTLINE_QEMU_MIB` overrides the result (for such measurements).
pub fn qemu_memory_mib(dom0_mib: u32) -> u32 {
    let per_gib = dom0_mib.div_ceil(1024) * XEN_MIB_PER_GIB;
    dom0_mib + XEN_BASE_MIB + per_gib
}

/// Xen's command line: `dom0_max_vcpus` only for more than one vCPU (one is Xen's default on a
/// one-CPU machine, and the default line stays as it was).
pub fn xen_cmdline(dom0_mib: u32, vcpus: u32) -> String {
    let mut line = format!("console=com1 loglvl=all guest_loglvl=all dom0_mem={dom0_mib}M");
    if vcpus > 1 {
        line.push_str(&format!(" dom0_max_vcpus={vcpus}"));
    }
    line
}

/// QEMU's accelerator and CPU arguments for `cpus` CPUs. KVM cannot run Xen on these hosts, and
/// QEMU's TCG wrongly applies SMAP to a ring-3 iretq (hence `-smap`). More than one CPU gets
/// multi-threaded TCG: one host thread and one soft TLB per CPU, so that the vCPUs really run at
/// once (one CPU keeps plain TCG: the default boot is not changed).
pub fn cpu_args(cpus: u32) -> Vec<OsString> {
    let accel = if cpus > 1 { "tcg,thread=multi" } else { "tcg" };
    ["-accel", accel, "-cpu", "max,-smap", "-smp", &cpus.to_string()]
        .iter()
        .map(OsString::from)
        .collect()
}

/// QEMU's `-initrd` value: the multiboot modules. QEMU splits modules at commas, so a comma in the
/// guest command line is written twice; a module's path must not contain a comma or a space.
pub fn modules_arg(kernel: &Path, cmdline: &str, module: Option<&Path>) -> Result<String> {
    let mut arg = module_path(kernel)?;
    let cmdline = cmdline.trim();
    if !cmdline.is_empty() {
        arg.push(' ');
        arg.push_str(&cmdline.replace(',', ",,"));
    }
    if let Some(module) = module {
        arg.push(',');
        arg.push_str(&module_path(module)?);
    }
    Ok(arg)
}

pub(crate) fn module_path(path: &Path) -> Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| Error::new(format!("{} is not valid UTF-8", path.display())))?;
    if text.contains([',', ' ']) {
        return Err(Error::new(format!(
            "QEMU cannot pass {text:?} as a multiboot module: its path has a comma or a space"
        )));
    }
    Ok(text.to_string())
}

/// QEMU's arguments (without the program name).
pub fn qemu_args(config: &BootConfig) -> Result<Vec<OsString>> {
    let modules = modules_arg(&config.kernel, &config.cmdline, config.module.as_deref())?;
    let memory = match std::env::var("FAULTLINE_QEMU_MIB") {
        Ok(mib) if !mib.is_empty() => mib,
        _ => qemu_memory_mib(config.dom0_mib).to_string(),
    };
    let mut args = cpu_args(config.vcpus);
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-m", &memory]);
    args.push("-kernel".into());
    args.push(config.xen.clone().into_os_string());
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-append", &xen_cmdline(config.dom0_mib, config.vcpus)]);
    push(&["-initrd", &modules]);
    push(&["-serial", "stdio", "-display", "none", "-monitor", "none"]);
    push(&["-no-reboot", "-nodefaults"]);
    Ok(args)
}

/// The printable form of a command, quoted for a shell.
pub fn shell_line(program: &Path, args: &[OsString]) -> String {
    let quote = |text: &str| {
        let plain = !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
        if plain {
            text.to_string()
        } else {
            format!("'{}'", text.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program.as_os_str())
        .chain(args.iter().map(OsString::as_os_str))
        .map(|part| quote(&part.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Process groups of the QEMUs alive in this process, for the interrupt handler.
static LIVE_GROUPS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// A running QEMU; dropping it kills QEMU's process group and reaps it.
pub struct QemuProcess {
    child: Child,
    group: i32,
    finished: bool,
}

impl QemuProcess {
    /// Starts QEMU with piped stdout/stderr and no stdin, in its own process group.
    pub fn spawn(qemu: &Path, args: &[OsString]) -> Result<QemuProcess> {
        install_interrupt_handler();
        let mut command = match find_in_path("setpriv") {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(qemu);
                command
            }
            None => Command::new(qemu),
        };
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut live = LIVE_GROUPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let child = command.spawn().context(|| format!("cannot start {}", qemu.display()))?;
        let group = i32::try_from(child.id()).expect("process ids fit in i32");
        live.push(group);
        Ok(QemuProcess { child, group, finished: false })
    }

    /// QEMU's stdout (the serial console), once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// QEMU's stderr (its own error messages), once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// QEMU's exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().ok().flatten();
        if status.is_some() {
            self.finished = true;
        }
        status
    }

    /// Kills QEMU's process group at once and reaps QEMU.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if !self.finished {
            let _ = killpg(Pid::from_raw(self.group), Signal::SIGKILL);
        }
        let status = self.child.wait().ok();
        self.finished = true;
        let mut live = LIVE_GROUPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.retain(|group| *group != self.group);
        status
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// On SIGINT/SIGTERM/SIGHUP: kill every live QEMU group, then exit with 130.
///
/// Installed once per process; if the program already has its own handler, that one stays (and
/// the drop guards still kill QEMU when it unwinds or returns).
fn install_interrupt_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            let live = LIVE_GROUPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for group in live.iter() {
                let _ = killpg(Pid::from_raw(*group), Signal::SIGKILL);
            }
            eprintln!("\nxtask: interrupted; QEMU stopped");
            std::process::exit(130);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_in_the_guest_command_line_are_doubled() {
        let kernel = Path::new("/t/faultline");
        assert_eq!(modules_arg(kernel, "", None).unwrap(), "/t/faultline");
        assert_eq!(modules_arg(kernel, "selftest=pf", None).unwrap(), "/t/faultline selftest=pf");
        assert_eq!(
            modules_arg(kernel, "list=a,b,c", Some(Path::new("/t/progs.cpio"))).unwrap(),
            "/t/faultline list=a,,b,,c,/t/progs.cpio"
        );
        assert!(modules_arg(Path::new("/t/a,b"), "", None).is_err());
        assert!(modules_arg(kernel, "", Some(Path::new("/t/my module"))).is_err());
    }

    #[test]
    fn the_qemu_command_line_matches_the_fast_path() {
        let config = BootConfig {
            xen: "/c/xen".into(),
            kernel: "/t/faultline".into(),
            cmdline: "selftest=none".into(),
            module: None,
            dom0_mib: 8,
            vcpus: 1,
        };
        let args = qemu_args(&config).unwrap();
        let line = shell_line(Path::new("qemu-system-x86_64"), &args);
        assert!(line.contains("-accel tcg -cpu max,-smap -smp 1 "), "{line}");
        assert!(line.contains("-kernel /c/xen"), "{line}");
        assert!(line.contains("'console=com1 loglvl=all guest_loglvl=all dom0_mem=8M'"), "{line}");
        assert!(line.contains("-initrd '/t/faultline selftest=none'"), "{line}");
        assert!(line.ends_with("-no-reboot -nodefaults"), "{line}");
    }

    #[test]
    fn more_vcpus_get_multi_threaded_tcg_and_dom0_max_vcpus() {
        let config = BootConfig {
            xen: "/c/xen".into(),
            kernel: "/t/faultline".into(),
            cmdline: String::new(),
            module: None,
            dom0_mib: 8,
            vcpus: 2,
        };
        let line = shell_line(Path::new("qemu"), &qemu_args(&config).unwrap());
        assert!(line.contains("-accel tcg,thread=multi -cpu max,-smap -smp 2 "), "{line}");
        assert!(line.contains("dom0_mem=8M dom0_max_vcpus=2'"), "{line}");
    }

    #[test]
    fn qemu_memory_covers_xen() {
        assert!(qemu_memory_mib(8) >= 19 + 16);
        assert!(qemu_memory_mib(4096) >= 4143 + 16);
        assert!(qemu_memory_mib(8192) >= 8289 + 16);
    }
}
