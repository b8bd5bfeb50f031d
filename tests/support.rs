//! Helpers for host tests that boot faultline under Xen: build once, boot quietly, read the log.
//!
//! Each test binary builds the kernel once (the first test to ask waits for it), then every test
//! boots it with its own command line. `xtask::run` lets at most one boot per core run at once, so
//! the tests can run on all test threads. When an assertion fails, the message carries the whole
//! console log and the path of its saved copy.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use xtask::console::parse_backtrace_line;
use xtask::{Mode, Profile, RunOptions, RunOutcome, XlConsole};

pub use xtask::{ShutdownReason, Verdict};
pub use xtask::{EXIT_CRASH, EXIT_ERROR, EXIT_FAILURE, EXIT_SKIP, EXIT_SUCCESS, EXIT_TIMEOUT};

/// The kernel image, built on first use (release profile, as `cargo xtask run` boots it).
pub fn kernel() -> &'static Path {
    static KERNEL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = KERNEL
        .get_or_init(|| xtask::build_kernel(Profile::Release).map_err(|error| error.to_string()));
    match built {
        Ok(path) => path,
        Err(error) => panic!("the kernel did not build: {error}"),
    }
}

/// Boots the kernel as dom0 with `cmdline` and the default memory and timeout.
pub fn boot(cmdline: &str) -> Boot {
    boot_with(RunOptions { cmdline: cmdline.to_string(), ..RunOptions::default() })
}

/// Boots the kernel as a Xen PV DomU: a Linux dom0 runs `xl create` on it, with the test
/// programs as its ramdisk, `cmdline` as its command line and the DomU path's default memory.
pub fn boot_domu(cmdline: &str) -> Boot {
    boot_with(domu_options(cmdline))
}

/// The options of [`boot_domu`], to adjust: the DomU path, the test programs, xl's console log
/// (faster than a live console), and an xl folder of the tests' own (`target/xl-tests`), so that
/// `target/xl` stays the one `cargo xtask run` wrote.
pub fn domu_options(cmdline: &str) -> RunOptions {
    RunOptions {
        mode: Mode::Xl,
        cmdline: cmdline.to_string(),
        programs: true,
        memory_mib: xtask::DEFAULT_DOMU_MEMORY_MIB,
        xl_console: XlConsole::Log,
        xl_dir: Some(xtask::workspace::target_dir().join("xl-tests")),
        ..RunOptions::default()
    }
}

/// Boots with these options (quiet; the kernel built once unless the options name one).
pub fn boot_with(options: RunOptions) -> Boot {
    let options = RunOptions {
        kernel: Some(options.kernel.clone().unwrap_or_else(|| kernel().to_path_buf())),
        quiet: true,
        ..options
    };
    match xtask::run(&options) {
        Ok(outcome) => Boot { outcome },
        Err(error) => panic!("could not boot {:?}: {error}", options.cmdline),
    }
}

/// The bytes of a program `tests/programs/build.sh` built (the catalogue's and the separate ones).
pub fn built_program(name: &str) -> Vec<u8> {
    let archive = xtask::programs::build_archive(&[], true).expect("the test programs build");
    std::fs::read(archive.with_file_name("bin").join(name)).expect("a built program")
}

/// Packs `programs` (name, bytes) into `target/faultline-programs/<file>` and boots it as the
/// boot module with `cmdline` on the dom0 path.
pub fn boot_programs(file: &str, programs: &[(&str, &[u8])], cmdline: &str) -> Boot {
    let archive = faultline_abi::archive::pack(programs).expect("the archive packs");
    let dir = xtask::workspace::target_dir().join("faultline-programs");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(file);
    std::fs::write(&path, archive).unwrap();
    boot_with(RunOptions { module: Some(path), cmdline: cmdline.into(), ..RunOptions::default() })
}

/// One finished boot, with assertions that print the log when they fail.
pub struct Boot {
    pub outcome: RunOutcome,
}

impl Boot {
    /// The guest's lines (not Xen's), backtraces symbolized.
    pub fn guest_lines(&self) -> Vec<&str> {
        self.outcome.guest_lines().collect()
    }

    /// The guest's last non-blank line.
    pub fn last_guest_line(&self) -> &str {
        self.guest_lines().into_iter().rev().find(|line| !line.trim().is_empty()).unwrap_or("")
    }

    /// Fails with the log unless the run ended with this exit status.
    #[track_caller]
    pub fn assert_exit(&self, expected: i32) -> &Self {
        self.check(
            self.outcome.exit_code == expected,
            &format!("expected exit status {expected}, got {}", self.outcome.exit_code),
        )
    }

    /// Fails with the log unless some guest line contains `text`.
    #[track_caller]
    pub fn assert_guest_contains(&self, text: &str) -> &Self {
        let found = self.guest_lines().iter().any(|line| line.contains(text));
        self.check(found, &format!("no guest line contains {text:?}"))
    }

    /// Fails with the log unless the guest printed exactly `line`.
    #[track_caller]
    pub fn assert_line(&self, line: &str) -> &Self {
        let found = self.guest_lines().contains(&line);
        self.check(found, &format!("no guest line {line:?}"))
    }

    /// Fails with the log if the guest printed an `[ERROR]` line.
    #[track_caller]
    pub fn assert_no_error_line(&self) -> &Self {
        let lines = self.guest_lines();
        let errors: Vec<&&str> = lines.iter().filter(|l| l.starts_with("[ERROR]")).collect();
        self.check(errors.is_empty(), &format!("errors: {errors:#?}"))
    }

    /// Fails with the log unless some guest line starts with `prefix`.
    #[track_caller]
    pub fn assert_guest_line_starts_with(&self, prefix: &str) -> &Self {
        let found = self.guest_lines().iter().any(|line| line.starts_with(prefix));
        self.check(found, &format!("no guest line starts with {prefix:?}"))
    }

    /// Fails with the log unless the guest's last line is `Test result: <verdict>`.
    #[track_caller]
    pub fn assert_last_line_is_verdict(&self, verdict: Verdict) -> &Self {
        let expected = format!("{}{verdict}", faultline_abi::verdict::RESULT_PREFIX);
        self.check(
            self.last_guest_line().trim() == expected && self.outcome.verdict == Some(verdict),
            &format!("the guest's last line is {:?}, not {expected:?}", self.last_guest_line()),
        )
    }

    /// Fails unless the TAP lines show every planned program passed (at least the 28 of the
    /// first catalogue).
    #[track_caller]
    pub fn assert_every_program_passed(&self) -> &Self {
        let lines = self.guest_lines();
        let plan: usize = lines
            .iter()
            .find_map(|line| line.strip_prefix("1.."))
            .and_then(|n| n.parse().ok())
            .expect("a TAP plan line");
        let oks = lines.iter().filter(|line| line.starts_with("ok ")).count();
        let not_oks: Vec<_> = lines.iter().filter(|line| line.starts_with("not ok")).collect();
        assert!(not_oks.is_empty(), "failed programs: {not_oks:#?}");
        assert_eq!(oks, plan, "one ok line per planned run");
        assert!(plan >= 28, "the catalogue has {plan} runs");
        self
    }

    /// Reads the guest's console with a real TAP parser (`prove` from Debian's perl, which is
    /// TAP::Harness) and fails with its report unless it finds no parse error: one plan, test
    /// numbers in sequence without repeats, as many as planned. Returns prove's summary line
    /// (`Result: PASS` or `Result: FAIL`), for callers that also want every test to pass.
    #[track_caller]
    pub fn assert_tap_parses(&self) -> String {
        let dir = xtask::workspace::target_dir().join("tap-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!(
            "{}-{}.tap",
            std::process::id(),
            self.outcome.log_path.file_name().unwrap().to_string_lossy()
        );
        let path = dir.join(name);
        std::fs::write(&path, self.guest_lines().join("\n") + "\n").unwrap();
        let output = std::process::Command::new("prove")
            .arg("--exec")
            .arg("cat")
            .arg(&path)
            .output()
            .unwrap_or_else(|e| panic!("prove (Debian package perl) does not run: {e}"));
        let report = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        self.check(
            !report.contains("Parse errors") && report.contains("Result: "),
            &format!("prove found the TAP stream malformed:\n{report}"),
        );
        report.lines().find(|l| l.starts_with("Result: ")).unwrap_or("").to_string()
    }

    /// Fails with the log unless this is a crash report for `mnemonic` (e.g. `#PF`) that ended
    /// in a crash shutdown: no verdict, the faulting rip, all general registers, and a backtrace
    /// whose lines the runner symbolized with at least one `faultline::` function.
    #[track_caller]
    pub fn assert_crash_report(&self, mnemonic: &str) -> &Self {
        self.assert_exit(EXIT_CRASH);
        self.check(self.outcome.verdict.is_none(), "a crash must not print a verdict line");
        self.check(
            self.outcome.shutdown == ShutdownReason::Crash,
            &format!("expected a crash shutdown, got {}", self.outcome.shutdown),
        );
        self.assert_guest_contains(mnemonic).assert_guest_contains("rip=0x");
        for register in [
            "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11",
            "r12", "r13", "r14", "r15",
        ] {
            self.assert_guest_contains(&format!("{register}=0x"));
        }
        self.assert_symbolized_backtrace()
    }

    /// Fails with the log unless there is a `backtrace:` line followed by `#0 0x...` lines, at
    /// least one of them symbolized into a `faultline::` function.
    #[track_caller]
    pub fn assert_symbolized_backtrace(&self) -> &Self {
        self.assert_guest_contains("backtrace:");
        let frames = self.backtrace();
        self.check(frames.first().is_some_and(|(number, _)| *number == 0), "no `#0 0x...` frame");
        let symbolized = frames.iter().any(|(_, line)| line.contains("faultline::"));
        self.check(symbolized, "no backtrace frame was symbolized into a faultline:: function")
    }

    /// The backtrace frames: their numbers and whole (symbolized) lines.
    pub fn backtrace(&self) -> Vec<(u32, &str)> {
        self.guest_lines()
            .into_iter()
            .filter_map(|line| {
                // The runner appends the symbol after the address; the frame itself is the first
                // two words, exactly as the kernel printed them.
                let mut words = line.split_whitespace();
                let frame = format!("{} {}", words.next()?, words.next()?);
                parse_backtrace_line(&frame).map(|(number, _)| (number, line))
            })
            .collect()
    }

    #[track_caller]
    fn check(&self, condition: bool, what: &str) -> &Self {
        assert!(
            condition,
            "{what}\nrun: {}\nlog ({}):\n{}",
            self.outcome.reason,
            self.outcome.log_path.display(),
            self.outcome.log
        );
        self
    }
}
