//! One boot: build, fetch, start QEMU, stream and judge the console, stop QEMU, save the log.
//!
//! Two ways to boot: the DomU path ([`Mode::Xl`], `cargo xtask run`'s default), where Xen boots a
//! Linux dom0 that runs `xl create` on our kernel, and the fast path ([`Mode::Dom0`], the library's
//! default and `--dom0`), where our kernel is dom0 itself.

use faultline_abi::verdict::RESULT_PREFIX;
use std::io::{BufRead as _, BufReader, IsTerminal as _, Read, Write as _};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use std::ffi::OsString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::console::{
    ends_xen_panic, is_xen_line, parse_dom0_line, parse_verdict, parse_xen_event, xen_panic_detail,
    XenEvent,
};
use crate::dom0_image;
use crate::error::{Context, Error, Result};
use crate::guests::{Follower, GuestOutcome, Source};
use crate::host;
use crate::kernel::{build_kernel, Profile};
use crate::log::RunLog;
use crate::outcome::{judge, ShutdownReason, Verdict};
use crate::qemu::{qemu_args, shell_line, BootConfig, QemuProcess};
use crate::symbolize::Symbolizer;
use crate::workspace;
use crate::xen::{self, XenVersion};
use crate::xl::{self, XlConsole};

/// How the kernel is booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The fast path: our kernel is Xen's dom0 (the hardware domain). The library's default.
    #[default]
    Dom0,
    /// The real user path: Xen boots a Linux dom0 (scripts/dom0) that runs `xl create` on
    /// `target/xl/faultline.cfg`, our kernel as a PV DomU with the test programs as its ramdisk.
    /// `cargo xtask run`'s default.
    Xl,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Dom0 => "dom0",
            Mode::Xl => "domu",
        }
    }
}

/// What to boot and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    pub mode: Mode,
    /// The Xen version to boot (Debian 12's 4.17 by default, or Debian 13's 4.20): the
    /// hypervisor, and on the DomU path the dom0's toolstack and libc.
    pub xen: XenVersion,
    /// A kernel image to boot; `None` builds one with `profile`.
    pub kernel: Option<PathBuf>,
    pub profile: Profile,
    /// The guest's command line, e.g. `selftest=pf` (commas are escaped for QEMU here).
    pub cmdline: String,
    /// The guest's memory in MiB: Xen's `dom0_mem` on the dom0 path, xl's `memory` on the DomU
    /// path. QEMU gets this plus what Xen (and the Linux dom0) need.
    pub memory_mib: u32,
    /// Dom0 path: the run is stopped and judged a timeout after this long. DomU path: each
    /// guest's budget (the Linux dom0 destroys a guest past it); the run's own limit adds the
    /// dom0's boot.
    pub timeout: Duration,
    /// Dom0 path: the run is also judged a timeout when the console stays silent this long
    /// (a long run that prints as it goes, e.g. a sweep boot, whose whole length is unknown).
    pub silence_timeout: Option<Duration>,
    /// A second boot module (dom0's "initrd"; a DomU's `ramdisk`), e.g. an archive of test
    /// programs.
    pub module: Option<PathBuf>,
    /// Build the test programs (tests/programs) and boot with their archive as the module,
    /// unless `module` is set. `cargo xtask run` does; the library default does not.
    pub programs: bool,
    /// More programs to pack after the catalogue (`--program`).
    pub extra_programs: Vec<PathBuf>,
    /// Don't stream the console to stdout or print status lines (tests); the log is still kept.
    pub quiet: bool,
    /// Where to save the log; `None` means `target/faultline-logs`.
    pub log_dir: Option<PathBuf>,
    /// DomU path: how many guests the Linux dom0 creates from the same cfg, one after another.
    pub guests: u32,
    /// The guest's vCPUs: `vcpus` in faultline.cfg (DomU path), `dom0_max_vcpus` (dom0 path).
    /// QEMU gets as many CPUs, with multi-threaded TCG when there are several.
    pub vcpus: u32,
    /// DomU path: `xl create -c` (live) or xenconsoled's log printed when each guest is gone.
    pub xl_console: XlConsole,
    /// DomU path: where faultline.cfg, the kernel and the ramdisk are written; `None` means
    /// `target/xl`.
    pub xl_dir: Option<PathBuf>,
    /// DomU path: a payload made by the caller (e.g. `cargo xtask bench`: faultline and Linux
    /// guests in turn) instead of the xl folder; `guests` must count its guests.
    pub payload: Option<Payload>,
}

/// A dom0 payload of the caller's own (see [`RunOptions::payload`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The cpio appended to the base initramfs: `payload/guests` and what its cfgs name.
    pub cpio: Vec<u8>,
    /// dom0's memory in MiB (a later `dom0_mem=` on Xen's command line).
    pub dom0_mib: u32,
    /// The largest guest's memory in MiB (QEMU's memory is sized for it).
    pub guest_mib: u32,
    /// What the payload holds, for the banner.
    pub description: String,
}

/// dom0's default memory on the dom0 path, in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 8;
/// A DomU's default memory on the DomU path, in MiB.
pub const DEFAULT_DOMU_MEMORY_MIB: u32 = 32;
/// The most vCPUs a guest may have (the kernel's limit).
pub use faultline_abi::MAX_VCPUS;
/// The default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// DomU path: the run's limit on top of the guests' timeouts, for Xen and the Linux dom0 to boot
/// (~7 s alone, more when boots share the cores).
const DOM0_BOOT_BUDGET: Duration = Duration::from_secs(60);
/// DomU path: per guest on top of its timeout (xl's set-up, the dom0's kill after a timeout).
const GUEST_SLACK: Duration = Duration::from_secs(15);

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: Mode::Dom0,
            xen: XenVersion::default(),
            kernel: None,
            profile: Profile::Release,
            cmdline: String::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            silence_timeout: None,
            module: None,
            programs: false,
            extra_programs: Vec::new(),
            quiet: false,
            log_dir: None,
            guests: 1,
            vcpus: 1,
            xl_console: XlConsole::Log,
            xl_dir: None,
            payload: None,
        }
    }
}

/// How a boot ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The guest's last `Test result:` line, if it printed one.
    pub verdict: Option<Verdict>,
    pub shutdown: ShutdownReason,
    /// 0 SUCCESS, 1 FAILURE, 2 ERROR, 3 SKIP, 4 crash, 5 timeout (see [`crate::outcome`]).
    pub exit_code: i32,
    /// Every console line (Xen's, the Linux dom0's, the guests'), backtraces symbolized,
    /// `\n`-terminated.
    pub log: String,
    /// The guests' console lines only (backtraces symbolized): on the dom0 path every line that
    /// is not Xen's, on the DomU path what the guests wrote on their consoles.
    pub guest_log: String,
    /// DomU path: each guest's outcome, in the order the dom0 ran them (empty on the dom0 path).
    pub guests: Vec<GuestOutcome>,
    /// The saved copy of the log.
    pub log_path: PathBuf,
    /// One line saying why the run ended so.
    pub reason: String,
    /// From QEMU's start to the end of the run.
    pub elapsed: Duration,
    /// From QEMU's start to the guest's first line, if it printed any.
    pub first_guest_line_after: Option<Duration>,
}

impl RunOutcome {
    /// The guests' lines (see [`RunOutcome::guest_log`]).
    pub fn guest_lines(&self) -> impl Iterator<Item = &str> {
        self.guest_log.lines()
    }

    /// Whether the run passed (SUCCESS and powered off).
    pub fn passed(&self) -> bool {
        self.exit_code == crate::outcome::EXIT_SUCCESS
    }
}

/// Builds (unless given a kernel), fetches what is missing, boots and judges one run.
///
/// `Err` means a set-up or build problem (exit status 6); every boot that started gives `Ok`, with
/// the verdict in [`RunOutcome::exit_code`].
pub fn run(options: &RunOptions) -> Result<RunOutcome> {
    if options.guests == 0 || (options.mode == Mode::Dom0 && options.guests != 1) {
        return Err(Error::new(
            "more than one guest (--guests) needs the DomU path, and at least one is needed",
        ));
    }
    if !(1..=MAX_VCPUS).contains(&options.vcpus) {
        return Err(Error::new(format!(
            "--vcpus takes 1 to {MAX_VCPUS} (the vCPUs whose vcpu_info sits in shared_info), not {}",
            options.vcpus
        )));
    }
    let kernel = match &options.kernel {
        Some(kernel) if kernel.is_file() => kernel.clone(),
        Some(kernel) => return Err(Error::new(format!("no kernel image at {}", kernel.display()))),
        None => build_kernel(options.profile)?,
    };
    let built_module = match &options.module {
        None if options.programs || !options.extra_programs.is_empty() => {
            Some(crate::programs::build_archive(&options.extra_programs, options.quiet)?)
        }
        _ => None,
    };
    let module = options.module.clone().or(built_module);
    if let Some(module) = &module {
        if !module.is_file() {
            return Err(Error::new(format!("no boot module at {}", module.display())));
        }
        let bytes = std::fs::metadata(module).map(|m| m.len()).unwrap_or(0);
        let needed_mib = memory_needed_mib(bytes);
        if options.memory_mib < needed_mib {
            return Err(Error::new(format!(
                "the boot module {} ({:.1} MiB) does not fit in {} MiB of guest memory: Xen maps it \
                 into the guest's first mapping with the kernel, rounded up to 4 MiB; run with \
                 --memory {needed_mib} or more",
                module.display(),
                bytes as f64 / f64::from(1 << 20),
                options.memory_mib
            )));
        }
    }
    let qemu = host::ensure_qemu()?;
    let say = |message: &str| {
        if !options.quiet {
            eprintln!("xtask: {message}");
        }
    };
    let prepared = match options.mode {
        Mode::Dom0 => prepare_dom0(options, &kernel, module, &qemu.version)?,
        Mode::Xl => match &options.payload {
            Some(payload) => prepare_payload(options, payload, &qemu.version)?,
            None => prepare_xl(options, &kernel, module.as_deref(), &qemu.version)?,
        },
    };
    let symbolizer = match Symbolizer::load(&kernel, &workspace::root()) {
        Ok(symbolizer) => Some(symbolizer),
        Err(error) => {
            say(&format!("backtraces stay unsymbolized: {error}"));
            None
        }
    };
    let args = prepared.args;
    let log_dir = options.log_dir.clone().unwrap_or_else(workspace::log_dir);
    let mut log = RunLog::create(&log_dir, options.mode.name(), &options.cmdline)?;
    let command_line = shell_line(&qemu.path, &args);
    log.line(&format!("xtask: {command_line}"));

    let _permit = BootPermit::acquire();
    for line in &prepared.banner {
        say(line);
        log.line(&format!("xtask: {line}"));
    }
    let started = Instant::now();
    let mut process = QemuProcess::spawn(&qemu.path, &args)?;
    let (sender, events) = mpsc::channel();
    if let Some(stdout) = process.take_stdout() {
        spawn_reader(stdout, sender.clone(), Stream::Console);
    }
    if let Some(stderr) = process.take_stderr() {
        spawn_reader(stderr, sender.clone(), Stream::Qemu);
    }
    drop(sender);

    let mut watcher = Watcher {
        options,
        symbolizer: symbolizer.as_ref(),
        log: &mut log,
        text: String::new(),
        guest_log: String::new(),
        follower: (options.mode == Mode::Xl).then(Follower::default),
        qemu_errors: Vec::new(),
        verdict: None,
        panic: None,
        dom0_done: None,
        started,
        last_line: started,
        first_guest_line_after: None,
        console_lines: 0,
        color: !options.quiet && std::io::stdout().is_terminal(),
    };
    let shutdown = watcher.watch(&events, &mut process, started + prepared.limit, prepared.limit);
    let elapsed = started.elapsed();
    process.kill();
    watcher.drain(&events);
    drop(prepared.run_image);

    if let ShutdownReason::QemuExited(code) = shutdown {
        if watcher.console_lines == 0 {
            let detail = watcher.qemu_errors.join("; ");
            return Err(Error::new(format!(
                "QEMU failed to start (exit status {code:?}): {detail} (command: {command_line})"
            )));
        }
    }
    let (exit_code, reason, shutdown, verdict, guests) = match watcher.follower.take() {
        None => {
            let (exit_code, reason) = judge(watcher.verdict, &shutdown);
            (exit_code, reason, shutdown, watcher.verdict, Vec::new())
        }
        Some(follower) => {
            let judgement = follower.judge(&shutdown, options.guests, options.timeout);
            (
                judgement.exit_code,
                judgement.reason,
                judgement.shutdown,
                judgement.verdict,
                judgement.guests,
            )
        }
    };
    let reason = format!("{reason} after {:.1} s", elapsed.as_secs_f64());
    let first_guest_line_after = watcher.first_guest_line_after;
    let text = std::mem::take(&mut watcher.text);
    let guest_log = std::mem::take(&mut watcher.guest_log);
    for guest in &guests {
        let line = guest_summary(guest);
        say(&line);
        log.line(&format!("xtask: {line}"));
    }
    log.line(&format!("xtask: {reason} (exit status {exit_code})"));
    if let Some(after) = first_guest_line_after {
        say(&format!("first guest line {:.2} s after QEMU started", after.as_secs_f64()));
    }
    say(&format!("log: {}", log.path().display()));
    Ok(RunOutcome {
        verdict,
        shutdown,
        exit_code,
        log: text,
        guest_log,
        guests,
        log_path: log.path().to_path_buf(),
        reason,
        elapsed,
        first_guest_line_after,
    })
}

/// `guest 1 (domid 1): the domain powered off, Test result: SUCCESS`.
fn guest_summary(guest: &GuestOutcome) -> String {
    let domid =
        guest.domid.map_or_else(|| "no domid".to_string(), |domid| format!("domid {domid}"));
    let verdict = guest.verdict.map_or_else(
        || "no verdict line".to_string(),
        |verdict| format!("{RESULT_PREFIX}{verdict}"),
    );
    format!("guest {} ({domid}): shutdown reason: {}; {verdict}", guest.number, guest.shutdown)
}

/// What a boot needs besides QEMU itself.
struct Prepared {
    args: Vec<OsString>,
    /// Status lines to print before QEMU starts.
    banner: Vec<String>,
    /// The run's own time limit.
    limit: Duration,
    /// The DomU path's dom0 initramfs for this run (removed when dropped).
    run_image: Option<RunImage>,
}

/// The guest's kernel image, start_info, p2m list, boot page tables and stack, next to the boot
/// module in the guest's first mapping: generous for faultline (under 1 MiB of image).
const FIRST_MAPPING_EXTRA_MIB: u64 = 2;

/// The least guest memory (`--memory`) that holds a boot module of `module_bytes`: Xen's domain
/// builder maps the kernel, the module and its own structures in one first mapping, rounded up to
/// 4 MiB, which must leave memory over; without it Xen panics ("Domain 0 allocation is too
/// small for kernel image", or, when QEMU's memory is short too, "Not enough memory to relocate
/// Xen"). Measured on the dom0 path with Xen 4.17: a 20.03 MiB archive needs 25 MiB (its first
/// mapping is 24 MiB), a 50.03 MiB one 53 to 56; the catalogue's 0.6 MiB fits the default 8.
pub fn memory_needed_mib(module_bytes: u64) -> u32 {
    let first_mapping =
        (module_bytes.div_ceil(1 << 20) + FIRST_MAPPING_EXTRA_MIB).next_multiple_of(4);
    u32::try_from(first_mapping + 1).unwrap_or(u32::MAX)
}

/// The fast path: Xen's hypervisor package, our kernel as dom0.
fn prepare_dom0(
    options: &RunOptions,
    kernel: &Path,
    module: Option<PathBuf>,
    qemu_version: &str,
) -> Result<Prepared> {
    let hypervisor = xen::ensure_hypervisor(options.xen)?;
    let config = BootConfig {
        xen: hypervisor.elf.clone(),
        kernel: kernel.to_path_buf(),
        cmdline: options.cmdline.clone(),
        module,
        dom0_mib: options.memory_mib,
        vcpus: options.vcpus,
    };
    Ok(Prepared {
        args: qemu_args(&config)?,
        banner: vec![format!(
            "booting {} as dom0 under Xen {} (QEMU {qemu_version}, {} MiB, {}, timeout {} s)",
            kernel.display(),
            hypervisor.package_version,
            options.memory_mib,
            vcpus_words(options.vcpus),
            options.timeout.as_secs()
        )],
        limit: options.timeout,
        run_image: None,
    })
}

/// The DomU path: the Linux dom0 image, the xl folder, the payload with that folder.
fn prepare_xl(
    options: &RunOptions,
    kernel: &Path,
    module: Option<&Path>,
    qemu_version: &str,
) -> Result<Prepared> {
    let image = dom0_image::ensure_dom0_image(options.xen, options.quiet)?;
    let dir = options.xl_dir.clone().unwrap_or_else(|| workspace::target_dir().join("xl"));
    let timeout_secs = options.timeout.as_secs().max(1);
    let mut files = Vec::new();
    let bytes = xl::with_xl_dir(
        &dir,
        kernel,
        module,
        options.memory_mib,
        options.vcpus,
        &options.cmdline,
        |folder| {
            files = folder.files.clone();
            xl::payload(&image.initramfs, folder, options.guests, timeout_secs, options.xl_console)
        },
    )?;
    let run_image = RunImage::write(&bytes)?;
    let args = xl::qemu_args(&image, run_image.path(), options.memory_mib, options.vcpus)?;
    let qemu_mib = xl::qemu_memory_mib(image.dom0_mib, options.memory_mib);
    let guests = match options.guests {
        1 => "one guest".to_string(),
        n => format!("{n} guests one after another"),
    };
    let banner = vec![
        format!(
            "booting faultline as a DomU: xl create -F{} {} in {} ({})",
            if options.xl_console == XlConsole::Live { " -c" } else { "" },
            xl::CFG_NAME,
            dir.display(),
            files.join(", ")
        ),
        format!(
            "Xen {}, Linux {} dom0 ({} MiB); guest {} MiB, {}, {guests}, timeout {timeout_secs} s each; QEMU {qemu_version}, {qemu_mib} MiB",
            image.xen_version,
            image.kernel_version,
            image.dom0_mib,
            options.memory_mib,
            vcpus_words(options.vcpus)
        ),
    ];
    Ok(Prepared::domu(args, banner, timeout_secs, options.guests, run_image))
}

/// "1 vCPU", "2 vCPUs".
fn vcpus_words(vcpus: u32) -> String {
    format!("{vcpus} vCPU{}", if vcpus == 1 { "" } else { "s" })
}

impl Prepared {
    /// A DomU-path boot: the dom0's own budget, then each guest's timeout and slack.
    fn domu(
        args: Vec<OsString>,
        banner: Vec<String>,
        timeout_secs: u64,
        guests: u32,
        run_image: RunImage,
    ) -> Prepared {
        let per_guest = Duration::from_secs(timeout_secs) + GUEST_SLACK;
        Prepared {
            args,
            banner,
            limit: DOM0_BOOT_BUDGET + per_guest * guests,
            run_image: Some(run_image),
        }
    }
}

/// The DomU path with the caller's payload: the base initramfs, then the payload's cpio.
fn prepare_payload(
    options: &RunOptions,
    payload: &Payload,
    qemu_version: &str,
) -> Result<Prepared> {
    let mut image = dom0_image::ensure_dom0_image(options.xen, options.quiet)?;
    if payload.dom0_mib != image.dom0_mib {
        // The last dom0_mem= on Xen's command line wins.
        image.xen_args.push_str(&format!(" dom0_mem={0}M,max:{0}M", payload.dom0_mib));
        image.dom0_mib = payload.dom0_mib;
    }
    let mut bytes = std::fs::read(&image.initramfs)
        .context(|| format!("cannot read the dom0 initramfs {}", image.initramfs.display()))?;
    while !bytes.len().is_multiple_of(4) {
        bytes.push(0);
    }
    bytes.extend_from_slice(&payload.cpio);
    let run_image = RunImage::write(&bytes)?;
    let args = xl::qemu_args(&image, run_image.path(), payload.guest_mib, options.vcpus)?;
    let qemu_mib = xl::qemu_memory_mib(image.dom0_mib, payload.guest_mib);
    let timeout_secs = options.timeout.as_secs().max(1);
    let banner = vec![format!(
        "Xen {}, Linux {} dom0 ({} MiB); {}; timeout {timeout_secs} s each; QEMU {qemu_version}, {qemu_mib} MiB",
        image.xen_version, image.kernel_version, image.dom0_mib, payload.description
    )];
    Ok(Prepared::domu(args, banner, timeout_secs, options.guests, run_image))
}

/// One run's dom0 initramfs, `target/dom0/runs/run-<pid>-<n>.img`, removed when dropped. Files
/// left by runner processes that are gone are removed when the next one is written.
struct RunImage {
    path: PathBuf,
}

impl RunImage {
    fn write(bytes: &[u8]) -> Result<RunImage> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = workspace::target_dir().join("dom0").join("runs");
        std::fs::create_dir_all(&dir).context(|| format!("cannot create {}", dir.display()))?;
        remove_orphans(&dir);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("run-{}-{n}.img", std::process::id()));
        std::fs::write(&path, bytes).context(|| format!("cannot write {}", path.display()))?;
        Ok(RunImage { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes `run-<pid>-*.img` files whose process is gone.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix("run-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    /// QEMU's stdout: the serial console (Xen's and the guest's lines).
    Console,
    /// QEMU's stderr: QEMU's own complaints.
    Qemu,
}

enum Event {
    Line(Stream, String),
    Closed(Stream),
}

/// Reads lines (any of `\n`, `\r\n`; a last unterminated line too) and sends them on.
fn spawn_reader(pipe: impl Read + Send + 'static, sender: Sender<Event>, stream: Stream) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut bytes = Vec::new();
        loop {
            bytes.clear();
            match reader.read_until(b'\n', &mut bytes) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let line = text.trim_end_matches(['\n', '\r']).replace('\r', "");
                    if sender.send(Event::Line(stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = sender.send(Event::Closed(stream));
    });
}

/// Follows the console until the run ends.
struct Watcher<'a> {
    options: &'a RunOptions,
    symbolizer: Option<&'a Symbolizer>,
    log: &'a mut RunLog,
    text: String,
    guest_log: String,
    /// DomU path: follows the Linux dom0's lines and the guests' sections.
    follower: Option<Follower>,
    qemu_errors: Vec<String>,
    verdict: Option<Verdict>,
    /// Set while Xen prints a panic report: the reason so far, and when to stop waiting for more.
    panic: Option<(String, Instant)>,
    /// DomU path: once the dom0 printed its verdict, how long QEMU may take to exit.
    dom0_done: Option<Instant>,
    started: Instant,
    /// When the console last printed a line (the silence timeout counts from it).
    last_line: Instant,
    first_guest_line_after: Option<Duration>,
    console_lines: usize,
    color: bool,
}

/// How long to keep reading after `Panic on CPU` for the reason and the closing line.
const PANIC_GRACE: Duration = Duration::from_secs(2);
/// How long QEMU may take to exit after the Linux dom0's verdict line.
const VERDICT_GRACE: Duration = Duration::from_secs(3);

impl Watcher<'_> {
    fn watch(
        &mut self,
        events: &Receiver<Event>,
        process: &mut QemuProcess,
        deadline: Instant,
        limit: Duration,
    ) -> ShutdownReason {
        loop {
            let now = Instant::now();
            if let Some((detail, until)) = &self.panic {
                if now >= *until {
                    return ShutdownReason::XenPanic(detail.clone());
                }
            }
            if self.dom0_done.is_some_and(|until| now >= until) {
                // The verdict is in; QEMU did not exit through the debug port.
                return ShutdownReason::QemuExited(None);
            }
            if now >= deadline {
                return ShutdownReason::Timeout(limit);
            }
            let silent_until = self.options.silence_timeout.map(|s| (s, self.last_line + s));
            if let Some((silence, until)) = silent_until {
                if now >= until {
                    return ShutdownReason::Timeout(silence);
                }
            }
            let mut wake = deadline;
            if let Some((_, until)) = silent_until {
                wake = wake.min(until);
            }
            if let Some((_, until)) = &self.panic {
                wake = wake.min(*until);
            }
            if let Some(until) = self.dom0_done {
                wake = wake.min(until);
            }
            let wait = wake - now;
            match events.recv_timeout(wait) {
                Ok(Event::Line(Stream::Console, line)) => {
                    self.last_line = Instant::now();
                    if let Some(reason) = self.console_line(&line) {
                        return reason;
                    }
                }
                Ok(Event::Line(Stream::Qemu, line)) => self.qemu_line(&line),
                Ok(Event::Closed(Stream::Qemu)) => {}
                Ok(Event::Closed(Stream::Console)) | Err(RecvTimeoutError::Disconnected) => {
                    if let Some((detail, _)) = &self.panic {
                        return ShutdownReason::XenPanic(detail.clone());
                    }
                    return ShutdownReason::QemuExited(self.exit_code(process));
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// QEMU closed its stdout: give it a moment to exit and return its status.
    fn exit_code(&self, process: &mut QemuProcess) -> Option<i32> {
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Some(status) = process.try_wait() {
                return status.code();
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Records one console line; returns the shutdown reason if the line ends the run.
    ///
    /// On both paths Xen's reports end the run: a panic, and the hardware domain shutting down
    /// (on the DomU path that is the Linux dom0, which normally exits QEMU before).
    fn console_line(&mut self, line: &str) -> Option<ShutdownReason> {
        self.console_lines += 1;
        if !is_xen_line(line) {
            self.other_line(line);
            return None;
        }
        self.record(line, Source::Xen);
        if let Some((detail, _)) = &mut self.panic {
            if ends_xen_panic(line) {
                return Some(ShutdownReason::XenPanic(detail.clone()));
            }
            if detail.is_empty() {
                if let Some(text) = xen_panic_detail(line) {
                    *detail = text.to_string();
                }
            }
            return None;
        }
        match parse_xen_event(line)? {
            XenEvent::DomainPoweredOff => Some(ShutdownReason::Poweroff),
            XenEvent::DomainRebooted => Some(ShutdownReason::Reboot),
            XenEvent::DomainCrashed => Some(ShutdownReason::Crash),
            XenEvent::DomainWatchdog => Some(ShutdownReason::Watchdog),
            XenEvent::DomainSoftReset => Some(ShutdownReason::SoftReset),
            XenEvent::DomainUnknownShutdown(code) => Some(ShutdownReason::Unknown(code)),
            XenEvent::XenPanic => {
                self.panic = Some((String::new(), Instant::now() + PANIC_GRACE));
                None
            }
        }
    }

    /// A line that is not Xen's: the guest's (dom0 path), or the dom0's or a guest's (DomU path).
    fn other_line(&mut self, line: &str) {
        let source = match &mut self.follower {
            Some(follower) => follower.line(line),
            None => Source::Guest,
        };
        if source != Source::Guest {
            // The dom0's own lines are prefixed already; Linux's get `dom0: `.
            let shown = match parse_dom0_line(line) {
                Some(_) => line.to_string(),
                None => format!("dom0: {line}"),
            };
            self.record(&shown, Source::Dom0);
            let verdict_in = self.follower.as_ref().is_some_and(|f| f.dom0_verdict().is_some());
            if verdict_in && self.dom0_done.is_none() {
                self.dom0_done = Some(Instant::now() + VERDICT_GRACE);
            }
            return;
        }
        let line = match self.symbolizer {
            Some(symbolizer) => symbolizer.annotate(line).into_owned(),
            None => line.to_string(),
        };
        if let Some(follower) = &mut self.follower {
            follower.guest_line(&line);
        }
        if self.first_guest_line_after.is_none() && !line.trim().is_empty() {
            self.first_guest_line_after = Some(self.started.elapsed());
        }
        if let Some(verdict) = parse_verdict(&line) {
            self.verdict = Some(verdict);
        }
        self.guest_log.push_str(&line);
        self.guest_log.push('\n');
        self.record(&line, Source::Guest);
    }

    fn qemu_line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.qemu_errors.push(line.to_string());
        self.log.line(&format!("qemu: {line}"));
        if !self.options.quiet {
            eprintln!("qemu: {}", crate::console::for_terminal(line));
        }
    }

    /// Saves a line and shows it: on a terminal Xen's dimmed, the Linux dom0's in cyan, the
    /// verdict in colour.
    fn record(&mut self, line: &str, source: Source) {
        self.text.push_str(line);
        self.text.push('\n');
        self.log.line(line);
        if self.options.quiet {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let style = if !self.color {
            None
        } else if source == Source::Xen {
            Some("2")
        } else if source == Source::Dom0 {
            Some("36")
        } else {
            match parse_verdict(line) {
                Some(Verdict::Success) => Some("1;32"),
                Some(Verdict::Skip) => Some("1;33"),
                Some(Verdict::Error | Verdict::Failure) => Some("1;31"),
                None => None,
            }
        };
        // Never a control sequence from the console itself: only the runner's colours.
        let line = crate::console::for_terminal(line);
        let _ = match style {
            Some(style) => writeln!(stdout, "\x1b[{style}m{line}\x1b[0m"),
            None => writeln!(stdout, "{line}"),
        };
    }

    /// After QEMU is killed: keep what is still in the pipes (briefly), without judging it.
    fn drain(&mut self, events: &Receiver<Event>) {
        let until = Instant::now() + Duration::from_millis(500);
        while let Some(wait) = until.checked_duration_since(Instant::now()) {
            match events.recv_timeout(wait) {
                Ok(Event::Line(Stream::Console, line)) if is_xen_line(&line) => {
                    self.record(&line, Source::Xen);
                }
                Ok(Event::Line(Stream::Console, line)) => self.other_line(&line),
                Ok(Event::Line(Stream::Qemu, line)) => self.qemu_line(&line),
                Ok(Event::Closed(_)) => {}
                Err(_) => break,
            }
        }
    }
}

/// Limits how many QEMUs boot at once in this process (TCG is CPU-bound: one per core).
struct BootPermit;

static BOOTS_RUNNING: Mutex<usize> = Mutex::new(0);
static BOOT_FINISHED: Condvar = Condvar::new();

impl BootPermit {
    /// Waits for a free slot: `$FAULTLINE_MAX_BOOTS`, else the number of cores.
    fn acquire() -> BootPermit {
        let limit = std::env::var("FAULTLINE_MAX_BOOTS")
            .ok()
            .and_then(|value| value.parse::<usize>().ok())
            .or_else(|| thread::available_parallelism().ok().map(usize::from))
            .unwrap_or(1)
            .max(1);
        let mut running = BOOTS_RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while *running >= limit {
            running = BOOT_FINISHED.wait(running).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running += 1;
        BootPermit
    }
}

impl Drop for BootPermit {
    fn drop(&mut self) {
        let mut running = BOOTS_RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *running -= 1;
        BOOT_FINISHED.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::{memory_needed_mib, run, RunOptions, MAX_VCPUS};

    #[test]
    fn vcpus_outside_1_to_32_are_refused_before_anything_is_built() {
        for vcpus in [0, MAX_VCPUS + 1] {
            let error = run(&RunOptions { vcpus, ..RunOptions::default() }).unwrap_err();
            assert!(error.to_string().contains("--vcpus takes 1 to 32"), "{error}");
        }
    }

    #[test]
    fn memory_for_a_module_follows_the_measurements() {
        const MIB: u64 = 1 << 20;
        // 20.03 MiB failed at 24 and booted at 25; 50.03 MiB failed at 52 and booted at 56.
        assert_eq!(memory_needed_mib(21_005_824), 25);
        let big = memory_needed_mib(52_463_104);
        assert!((53..=57).contains(&big), "{big}");
        // The catalogue (0.6 MiB) and no module at all fit the default of 8 MiB.
        assert!(memory_needed_mib(MIB * 6 / 10) <= crate::DEFAULT_MEMORY_MIB);
        assert!(memory_needed_mib(0) <= crate::DEFAULT_MEMORY_MIB);
    }
}
