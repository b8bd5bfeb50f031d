//! `cargo xtask`: the command line of the faultline runner.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xtask::{
    build_kernel, host, packages, run, xen, Profile, RunOptions, DEFAULT_MEMORY_MIB,
    DEFAULT_TIMEOUT, EXIT_SETUP,
};

const HELP: &str = "\
cargo xtask: build and boot faultline under Xen in QEMU

USAGE:
    cargo xtask run [OPTIONS] [-- <guest command line>...]
    cargo xtask build [--release|--debug]
    cargo xtask setup
    cargo xtask fetch <debian package>...
    cargo xtask lock <debian package>...

COMMANDS:
    run      Build the kernel, fetch what is missing, boot it as Xen's dom0 and stream the serial
             console (Xen's own lines start with (XEN) and are dimmed on a terminal). Backtrace
             lines `#n 0x...` are symbolized. The run ends when Xen reports that dom0 shut down,
             when Xen panics, or at the timeout; QEMU is then stopped. The console is saved to
             target/faultline-logs/<time>-dom0[-<command line>].log.
    build    Build the kernel and print the image's path.
    setup    Fetch everything (QEMU via apt-get when root, Xen into the cache) and report versions.
    fetch    Download, verify and unpack pinned Debian packages into the cache; print the folder.
    lock     Pin Debian packages at apt's candidate version in scripts/packages.lock.

RUN OPTIONS:
    --dom0              Boot the kernel as dom0 (the fast path; the default).
    --memory <MiB>      The guest's memory, Xen's dom0_mem (default 8); QEMU gets this plus
                        Xen's own share.
    --timeout <SECS>    Stop and fail the run after this long (default 60).
    --release|--debug   Kernel profile (default --release).
    --kernel <PATH>     Boot this image instead of building one.
    --module <PATH>     Pass this second multiboot module (dom0's initrd) instead of the test
                        programs' archive.
    --program <PATH>    Add a static x86_64 ELF program to the archive, after the catalogue
                        (repeatable; see docs/abi.md). It runs under its file name.
    --no-programs       Don't build or pass the test programs (self-tests only).
    --quiet             Don't stream the console (the log file is still written).
    -- <args>...        The guest's command line, e.g. `-- selftest=pf` (commas are fine).

EXIT STATUS (run):
    0   Test result: SUCCESS and the domain powered off
    1   Test result: FAILURE
    2   Test result: ERROR
    3   Test result: SKIP
    4   crash: no verdict line, a crash shutdown, or a Xen panic
    5   timeout
    6   set-up or build problem (the message says what is missing and how to fix it)

ENVIRONMENT:
    FAULTLINE_CACHE       Download cache (default ~/.cache/faultline).
    FAULTLINE_MAX_BOOTS   Boots at once in one process (default: the number of cores).
    FAULTLINE_QEMU_MIB    QEMU memory in MiB instead of --memory plus Xen's share (for measuring).
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::from(EXIT_SETUP as u8)
        }
    }
}

fn dispatch(args: &[String]) -> Result<u8, String> {
    let Some((command, rest)) = args.split_first() else {
        print!("{HELP}");
        return Ok(0);
    };
    match command.as_str() {
        "run" => run_command(rest),
        "build" => {
            let options = parse_run_options(rest)?;
            let image = build_kernel(options.profile).map_err(|error| error.to_string())?;
            println!("{}", image.display());
            Ok(0)
        }
        "setup" => setup(),
        "fetch" if !rest.is_empty() => {
            let names: Vec<&str> = rest.iter().map(String::as_str).collect();
            let root = packages::ensure(&names).map_err(|error| error.to_string())?;
            println!("{}", root.display());
            Ok(0)
        }
        "lock" if !rest.is_empty() => {
            packages::lock(rest).map_err(|error| error.to_string())?;
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(format!(
            "unknown command {other:?}; see `cargo xtask --help`"
        )),
    }
}

fn run_command(args: &[String]) -> Result<u8, String> {
    if args
        .iter()
        .take_while(|arg| *arg != "--")
        .any(|arg| arg == "--help" || arg == "-h")
    {
        print!("{HELP}");
        return Ok(0);
    }
    let options = parse_run_options(args)?;
    let outcome = run(&options).map_err(|error| error.to_string())?;
    if outcome.passed() {
        eprintln!("xtask: {}", outcome.reason);
    } else {
        eprintln!(
            "xtask: {} (exit status {})",
            outcome.reason, outcome.exit_code
        );
    }
    Ok(u8::try_from(outcome.exit_code).unwrap_or(EXIT_SETUP as u8))
}

/// Parses the options of `run` (and `build`, which only looks at the profile).
fn parse_run_options(args: &[String]) -> Result<RunOptions, String> {
    let mut options = RunOptions {
        programs: true,
        memory_mib: DEFAULT_MEMORY_MIB,
        timeout: DEFAULT_TIMEOUT,
        ..RunOptions::default()
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--dom0" => options.mode = xtask::Mode::Dom0,
            "--release" => options.profile = Profile::Release,
            "--debug" => options.profile = Profile::Debug,
            "--quiet" => options.quiet = true,
            "--memory" => {
                let text = value("--memory")?;
                options.memory_mib = text
                    .trim_end_matches(['M', 'm'])
                    .parse()
                    .ok()
                    .filter(|mib| *mib >= 4)
                    .ok_or_else(|| format!("--memory takes MiB, at least 4 (got {text:?})"))?;
            }
            "--timeout" => {
                let text = value("--timeout")?;
                let seconds: u64 = text
                    .parse()
                    .ok()
                    .filter(|seconds| *seconds > 0)
                    .ok_or_else(|| format!("--timeout takes whole seconds (got {text:?})"))?;
                options.timeout = Duration::from_secs(seconds);
            }
            "--kernel" => options.kernel = Some(PathBuf::from(value("--kernel")?)),
            "--module" => options.module = Some(PathBuf::from(value("--module")?)),
            "--program" => options.extra_programs.push(PathBuf::from(value("--program")?)),
            "--no-programs" => options.programs = false,
            "--" => {
                options.cmdline = args.cloned().collect::<Vec<_>>().join(" ");
                break;
            }
            other => {
                return Err(format!(
                    "unknown option {other:?}; see `cargo xtask --help`"
                ))
            }
        }
    }
    Ok(options)
}

fn setup() -> Result<u8, String> {
    let qemu = host::ensure_qemu().map_err(|error| error.to_string())?;
    println!("qemu: {} {}", qemu.path.display(), qemu.version);
    let hypervisor = xen::ensure_hypervisor().map_err(|error| error.to_string())?;
    println!(
        "xen: {} {} ({})",
        xen::XEN_PACKAGE,
        hypervisor.package_version,
        hypervisor.elf.display()
    );
    println!("cache: {}", xtask::workspace::cache_dir().display());
    Ok(0)
}
