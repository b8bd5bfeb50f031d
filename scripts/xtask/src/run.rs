//! One boot: build, fetch, start QEMU, stream and judge the console, stop QEMU, save the log.

use std::io::{BufRead as _, BufReader, IsTerminal as _, Read, Write as _};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::{
    ends_xen_panic, is_xen_line, parse_verdict, parse_xen_event, xen_panic_detail, XenEvent,
};
use crate::error::{Error, Result};
use crate::host;
use crate::kernel::{build_kernel, Profile};
use crate::log::RunLog;
use crate::outcome::{judge, ShutdownReason, Verdict};
use crate::qemu::{qemu_args, shell_line, BootConfig, QemuProcess};
use crate::symbolize::Symbolizer;
use crate::workspace;
use crate::xen;

/// How the kernel is booted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// The fast path: our kernel is Xen's dom0 (the hardware domain).
    #[default]
    Dom0,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Dom0 => "dom0",
        }
    }
}

/// What to boot and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOptions {
    pub mode: Mode,
    /// A kernel image to boot; `None` builds one with `profile`.
    pub kernel: Option<PathBuf>,
    pub profile: Profile,
    /// The guest's command line, e.g. `selftest=pf` (commas are escaped for QEMU here).
    pub cmdline: String,
    /// The guest's memory in MiB (Xen's `dom0_mem`); QEMU gets this plus Xen's share.
    pub memory_mib: u32,
    /// The run is stopped and judged a timeout after this long.
    pub timeout: Duration,
    /// A second boot module (dom0's "initrd"), e.g. an archive of test programs.
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
}

/// dom0's default memory, in MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 8;
/// The default timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: Mode::Dom0,
            kernel: None,
            profile: Profile::Release,
            cmdline: String::new(),
            memory_mib: DEFAULT_MEMORY_MIB,
            timeout: DEFAULT_TIMEOUT,
            module: None,
            programs: false,
            extra_programs: Vec::new(),
            quiet: false,
            log_dir: None,
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
    /// Every console line (Xen's and the guest's), backtraces symbolized, `\n`-terminated.
    pub log: String,
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
    /// The guest's lines (everything that is not Xen's own).
    pub fn guest_lines(&self) -> impl Iterator<Item = &str> {
        self.log.lines().filter(|line| !is_xen_line(line))
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
    let kernel = match &options.kernel {
        Some(kernel) if kernel.is_file() => kernel.clone(),
        Some(kernel) => {
            return Err(Error::new(format!(
                "no kernel image at {}",
                kernel.display()
            )))
        }
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
            return Err(Error::new(format!(
                "no boot module at {}",
                module.display()
            )));
        }
    }
    let qemu = host::ensure_qemu()?;
    let hypervisor = xen::ensure_hypervisor()?;
    let say = |message: &str| {
        if !options.quiet {
            eprintln!("xtask: {message}");
        }
    };
    let symbolizer = match Symbolizer::load(&kernel, &workspace::root()) {
        Ok(symbolizer) => Some(symbolizer),
        Err(error) => {
            say(&format!("backtraces stay unsymbolized: {error}"));
            None
        }
    };
    let config = BootConfig {
        xen: hypervisor.elf.clone(),
        kernel: kernel.clone(),
        cmdline: options.cmdline.clone(),
        module,
        dom0_mib: options.memory_mib,
    };
    let args = qemu_args(&config)?;
    let log_dir = options.log_dir.clone().unwrap_or_else(workspace::log_dir);
    let mut log = RunLog::create(&log_dir, options.mode.name(), &options.cmdline)?;
    let command_line = shell_line(&qemu.path, &args);
    log.line(&format!("xtask: {command_line}"));

    let _permit = BootPermit::acquire();
    say(&format!(
        "booting {} as {} under Xen {} (QEMU {}, {} MiB, timeout {} s)",
        kernel.display(),
        options.mode.name(),
        hypervisor.package_version,
        qemu.version,
        options.memory_mib,
        options.timeout.as_secs()
    ));
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
        qemu_errors: Vec::new(),
        verdict: None,
        panic: None,
        started,
        first_guest_line_after: None,
        console_lines: 0,
        color: !options.quiet && std::io::stdout().is_terminal(),
    };
    let deadline = started + options.timeout;
    let shutdown = watcher.watch(&events, &mut process, deadline);
    let elapsed = started.elapsed();
    process.kill();
    watcher.drain(&events);

    if let ShutdownReason::QemuExited(code) = shutdown {
        if watcher.console_lines == 0 {
            let detail = watcher.qemu_errors.join("; ");
            return Err(Error::new(format!(
                "QEMU failed to start (exit status {code:?}): {detail} (command: {command_line})"
            )));
        }
    }
    let (exit_code, reason) = judge(watcher.verdict, &shutdown);
    let reason = format!("{reason} after {:.1} s", elapsed.as_secs_f64());
    let verdict = watcher.verdict;
    let first_guest_line_after = watcher.first_guest_line_after;
    let text = std::mem::take(&mut watcher.text);
    log.line(&format!("xtask: {reason} (exit status {exit_code})"));
    if let Some(after) = first_guest_line_after {
        say(&format!(
            "first guest line {:.2} s after QEMU started",
            after.as_secs_f64()
        ));
    }
    say(&format!("log: {}", log.path().display()));
    Ok(RunOutcome {
        verdict,
        shutdown,
        exit_code,
        log: text,
        log_path: log.path().to_path_buf(),
        reason,
        elapsed,
        first_guest_line_after,
    })
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
    qemu_errors: Vec<String>,
    verdict: Option<Verdict>,
    /// Set while Xen prints a panic report: the reason so far, and when to stop waiting for more.
    panic: Option<(String, Instant)>,
    started: Instant,
    first_guest_line_after: Option<Duration>,
    console_lines: usize,
    color: bool,
}

/// How long to keep reading after `Panic on CPU` for the reason and the closing line.
const PANIC_GRACE: Duration = Duration::from_secs(2);

impl Watcher<'_> {
    fn watch(
        &mut self,
        events: &Receiver<Event>,
        process: &mut QemuProcess,
        deadline: Instant,
    ) -> ShutdownReason {
        loop {
            let now = Instant::now();
            if let Some((detail, until)) = &self.panic {
                if now >= *until {
                    return ShutdownReason::XenPanic(detail.clone());
                }
            }
            if now >= deadline {
                return ShutdownReason::Timeout(self.options.timeout);
            }
            let wait = match &self.panic {
                Some((_, until)) => (*until).min(deadline) - now,
                None => deadline - now,
            };
            match events.recv_timeout(wait) {
                Ok(Event::Line(Stream::Console, line)) => {
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
    fn console_line(&mut self, line: &str) -> Option<ShutdownReason> {
        self.console_lines += 1;
        let xen = is_xen_line(line);
        let line = match (xen, self.symbolizer) {
            (false, Some(symbolizer)) => symbolizer.annotate(line).into_owned(),
            _ => line.to_string(),
        };
        self.record(&line, xen);
        if !xen {
            if self.first_guest_line_after.is_none() && !line.trim().is_empty() {
                self.first_guest_line_after = Some(self.started.elapsed());
            }
            if let Some(verdict) = parse_verdict(&line) {
                self.verdict = Some(verdict);
            }
            return None;
        }
        if let Some((detail, _)) = &mut self.panic {
            if ends_xen_panic(&line) {
                return Some(ShutdownReason::XenPanic(detail.clone()));
            }
            if detail.is_empty() {
                if let Some(text) = xen_panic_detail(&line) {
                    *detail = text.to_string();
                }
            }
            return None;
        }
        match parse_xen_event(&line)? {
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

    fn qemu_line(&mut self, line: &str) {
        if line.trim().is_empty() {
            return;
        }
        self.qemu_errors.push(line.to_string());
        self.log.line(&format!("qemu: {line}"));
        if !self.options.quiet {
            eprintln!("qemu: {line}");
        }
    }

    /// Saves a line and shows it: Xen's dimmed on a terminal, the verdict in colour.
    fn record(&mut self, line: &str, xen: bool) {
        self.text.push_str(line);
        self.text.push('\n');
        self.log.line(line);
        if self.options.quiet {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let style = if !self.color {
            None
        } else if xen {
            Some("2")
        } else {
            match parse_verdict(line) {
                Some(Verdict::Success) => Some("1;32"),
                Some(Verdict::Skip) => Some("1;33"),
                Some(Verdict::Error | Verdict::Failure) => Some("1;31"),
                None => None,
            }
        };
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
                Ok(Event::Line(Stream::Console, line)) => {
                    let xen = is_xen_line(&line);
                    self.record(&line, xen);
                }
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
        let mut running = BOOTS_RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *running >= limit {
            running = BOOT_FINISHED
                .wait(running)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running += 1;
        BootPermit
    }
}

impl Drop for BootPermit {
    fn drop(&mut self) {
        let mut running = BOOTS_RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *running -= 1;
        BOOT_FINISHED.notify_one();
    }
}
