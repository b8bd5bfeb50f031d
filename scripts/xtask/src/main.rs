//! `cargo xtask`: the command line of the faultline runner.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use xtask::xen::XenVersion;
use xtask::{
    build_kernel, dom0_image, host, packages, run, xen, Mode, Profile, RunOptions, XlConsole,
    DEFAULT_DOMU_MEMORY_MIB, DEFAULT_MEMORY_MIB, DEFAULT_TIMEOUT, EXIT_SETUP,
};

const HELP: &str = "\
cargo xtask: build and boot faultline under Xen in QEMU

USAGE:
    cargo xtask run [OPTIONS] [-- <guest command line>...]
    cargo xtask trace [--out PATH] [--program NAME] [--kernel PATH]
    cargo xtask sweep [--point P]... [--max N] [--jobs J] [--shard K/N] [--junit PATH]
    cargo xtask bench [--runs N] [--quick] [--no-linux] [--out DIR]
    cargo xtask build [--release|--debug]
    cargo xtask setup [--xen <VERSION>]
    cargo xtask fetch [--xen <VERSION>] <debian package>...
    cargo xtask lock [--xen <VERSION>] <debian package>...
    cargo xtask cpio -o OUT [--after BASE] MEMBER...

COMMANDS:
    run      Build the kernel and the test programs, fetch what is missing, boot and judge.
             By default the real user path: Xen boots a Linux dom0 (scripts/dom0) that runs
             `xl create -F -c faultline.cfg` in target/xl, where the runner wrote faultline.cfg
             (kernel = \"faultline\", ramdisk = \"programs.tar\", the command line as extra) next
             to the kernel and the test-program archive: the same files boot on a real Xen host
             with `cd target/xl && xl create -c faultline.cfg`. With --dom0 the kernel is Xen's
             dom0 itself (the fast path, ~1 s a boot instead of ~10).
             The serial console streams: Xen's lines start with (XEN) (dimmed on a terminal), the
             Linux dom0's with faultline-dom0:, xl: or dom0: (cyan), the guest's come as they are.
             Backtrace lines `#n 0x...` are symbolized. QEMU is stopped when the run ends (the
             dom0's verdict, a Xen panic, the timeout). The console is saved to
             target/faultline-logs/<time>-<domu|dom0>[-<command line>].log, one file per run.
    trace    Draw one real page fault: boot on the fast dom0 path with the guest command line
             `trace=fault tests=hello`, read the kernel's `trace:` lines (every step of the
             program's first fault that needs new page tables: the delivery, the walk, each
             frame and read-only alias, every mmu_update entry, the iret), check that no step is
             missing, print the numbered steps and write them as an SVG sequence diagram
             (lanes: user program, guest kernel, Xen) to docs/page-fault.svg.
             --out PATH writes it elsewhere; --program NAME traces another catalogue program;
             --kernel PATH boots that image instead of building one.
    sweep    Kernel fault injection, swept: for each injection point (frame, table, heap,
             mmu_update, mmuext_op, update_va_mapping, evtchn, console; --point P, repeatable,
             for fewer), fail call 1, 2, ... N of the point in every program of the catalogue,
             up to the last call each program reaches (or --max N). After a baseline boot that
             counts each program's calls, each boot on the dom0 path sweeps one point inside the
             guest (`inject=P:sweep=FROM..TO@programs tests=a,b`: each program run once per
             position, about 300 positions a boot). A boot that crashes or hangs (no console
             line for --timeout, default 60 s) is booted again from the next position. Prints
             and saves (target/sweep/) a table of point x outcome (killed, errno, no-effect,
             crash, leak, hang, wrong), the one command that replays each case that is not
             clean (one boot, `inject=P:nth=N@NAME`), and the line
             `sweep: N cases, N killed, N errno, N no-effect, N crash, N leak, N hang`.
             --jobs J boots J QEMUs at once (default 2); --shard K/N takes positions K, K+N,
             ... (a CI matrix); --junit PATH writes one testcase per injection; --seed S
             (default 1), --test-time (default 5s), --tests a,b (programs), --domu (the
             DomU path: a Linux dom0 runs `xl create` for each boot; slower, for the points
             only a DomU reaches, e.g. --domu --point evtchn), --timeout S (default 60),
             --kernel PATH, --module PATH, --memory MiB (default 8).
             Exit status 0 when every case is clean, 1 otherwise.
    bench    Measure page faults: one DomU boot in which the Linux dom0 runs faultline (with the
             bench programs bench_faults and bench_text of tests/programs as its ramdisk) and
             Debian's Linux 6.1 as a PV DomU (an initramfs whose /init runs the same binaries),
             alternating, --runs N times each (default 3), each run also both kernels with 2
             vCPUs for the two-thread workloads (c_bench_threads: faults with 1 and 2 threads,
             munmap with and without a TLB shootdown; QEMU gets 2 CPUs), then faultline once
             per fault-around window (0, 4, 64). Writes target/bench/results.md (the table, the command and the
             versions), results.json and faults.svg (--out DIR elsewhere). faultline's counts
             (faults, hypercalls, mmu_update entries per page) are exact and must agree across
             runs; times are TSC ticks per page, shown only as the ratio of the best runs.
             --quick: 1024 pages a workload instead of 4096, one run, no sweep; --no-linux:
             faultline alone (no ratios).
    build    Build the kernel and print the image's path.
    setup    Fetch everything (QEMU via apt-get when root, Xen, the Linux dom0 image) and report.
    fetch    Download, verify and unpack pinned Debian packages into the cache; print the folder.
    lock     Pin Debian packages at apt's candidate version in scripts/packages.lock.
    cpio     Write a newc cpio archive (the dom0's initramfs and its per-run payload, for
             scripts/dom0/build.sh and payload.sh); `cargo xtask cpio --help` lists the members.
    With --xen 4.20, setup, fetch and lock work on Debian 13's packages (the lock's [trixie]
    section, fetched with apt's own lists under the cache), otherwise on Debian 12's.

RUN OPTIONS:
    --xen <VERSION>     The Xen to boot: 4.17 (default; Debian 12's hypervisor and toolstack)
                        or 4.20 (Debian 13's hypervisor, and on the DomU path its xl,
                        xenstored, libraries and glibc in the dom0; the dom0 kernel stays
                        Debian 12's Linux 6.1). Both are pinned in scripts/packages.lock.
    --dom0              Boot the kernel as dom0 (the fast path) instead of as a DomU.
    --memory <MiB>      The guest's memory. DomU path: xl's memory (default 32); dom0 keeps its
                        192 MiB and QEMU gets both plus Xen's share. --dom0: Xen's dom0_mem
                        (default 8); QEMU gets this plus Xen's share.
    --guests <N>        DomU path: create N guests from the same faultline.cfg, one after another
                        in the same dom0; each is reported, and the run passes only if all pass.
    --vcpus <N>         The guest's vCPUs (default 1, at most 32): `vcpus = N` in faultline.cfg,
                        or Xen's dom0_max_vcpus=N with --dom0. QEMU gets N CPUs, and for N > 1
                        multi-threaded TCG. The kernel brings the other vCPUs up at boot; the
                        programs still run on vCPU 0.
    --console <live|log>  DomU path: live (default) streams the guest console as it comes
                        (xl create -c); log prints xenconsoled's log when the guest is gone
                        (~1 s faster a guest).
    --timeout <SECS>    DomU path: each guest's budget; past it dom0 destroys the guest. --dom0:
                        the run's. Default 60.
    --release|--debug   Kernel profile (default --release).
    --kernel <PATH>     Boot this image instead of building one.
    --module <PATH>     Pass this boot module (the DomU's ramdisk, dom0's second multiboot
                        module) instead of the test programs' archive.
    --program <PATH>    Add a static x86_64 ELF program to the archive, after the catalogue
                        (repeatable; see docs/abi.md). It runs under its file name.
    --no-programs       Don't build or pass the test programs (self-tests only).
    --junit PATH        Write the results as JUnit XML to PATH (one testcase per self-test
                        check and per program, and one for the verdict), for CI.
    --quiet             Don't stream the console (the log file is still written).
    -- <args>...        The guest's command line, e.g. `-- selftest=pf` (commas are fine; for a
                        DomU no quotes or backslashes: it goes into the cfg's extra = \"...\").

EXIT STATUS (run):
    0   Test result: SUCCESS and the domain powered off (every guest, with --guests)
    1   Test result: FAILURE
    2   Test result: ERROR
    3   Test result: SKIP
    4   crash: no verdict line, a crash shutdown, or a Xen panic
    5   timeout
    6   set-up or build problem, or (DomU path) the toolstack or the Linux dom0 failed, e.g.
        xl create could not build the domain; the message says what and how to fix it
    With --guests, the first guest that did not pass gives the status.

ENVIRONMENT:
    FAULTLINE_CACHE       Download cache (default ~/.cache/faultline).
    FAULTLINE_MAX_BOOTS   Boots at once in one process (default: the number of cores).
    FAULTLINE_QEMU_MIB    QEMU memory in MiB instead of the computed size (for measuring).
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
        "trace" => trace_command(rest),
        "sweep" => sweep_command(rest),
        "bench" => bench_command(rest),
        "build" => {
            let (options, _) = parse_run_options(rest)?;
            let image = build_kernel(options.profile).map_err(|error| error.to_string())?;
            println!("{}", image.display());
            Ok(0)
        }
        "setup" => {
            let (xen, rest) = parse_xen_option(rest)?;
            if let Some(extra) = rest.first() {
                return Err(format!("setup takes only --xen, not {extra:?}"));
            }
            setup(xen)
        }
        "fetch" | "lock" => {
            let (xen, names) = parse_xen_option(rest)?;
            if names.is_empty() {
                return Err(format!("{command} needs package names; see `cargo xtask --help`"));
            }
            if command == "lock" {
                packages::lock(xen.suite(), &names).map_err(|error| error.to_string())?;
                return Ok(0);
            }
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let root = packages::ensure(xen.suite(), &names).map_err(|error| error.to_string())?;
            println!("{}", root.display());
            Ok(0)
        }
        "cpio" => {
            xtask::cpio::command(rest)?;
            Ok(0)
        }
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(0)
        }
        other => Err(format!("unknown command {other:?}; see `cargo xtask --help`")),
    }
}

/// Takes a leading `--xen <VERSION>` off `args`: the version (default 4.17) and the rest.
fn parse_xen_option(args: &[String]) -> Result<(XenVersion, Vec<String>), String> {
    match args {
        [flag, rest @ ..] if flag == "--xen" => {
            let (value, rest) =
                rest.split_first().ok_or_else(|| "--xen needs a value".to_string())?;
            Ok((XenVersion::parse(value).map_err(|error| error.to_string())?, rest.to_vec()))
        }
        _ => Ok((XenVersion::default(), args.to_vec())),
    }
}

fn bench_command(args: &[String]) -> Result<u8, String> {
    let mut options = xtask::bench::BenchOptions {
        runs: 0,
        quick: false,
        linux: true,
        out: xtask::workspace::target_dir().join("bench"),
        quiet: false,
        command: std::iter::once("cargo xtask bench".to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--no-linux" => options.linux = false,
            "--quiet" => options.quiet = true,
            "--runs" => {
                let text = args.next().ok_or("--runs needs a value")?;
                options.runs = text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=20).contains(n))
                    .ok_or_else(|| format!("--runs takes 1 to 20 (got {text:?})"))?;
            }
            "--out" => options.out = PathBuf::from(args.next().ok_or("--out needs a folder")?),
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(0);
            }
            other => {
                return Err(format!("bench: unknown option {other:?}; see `cargo xtask --help`"))
            }
        }
    }
    if options.runs == 0 {
        options.runs = if options.quick { 1 } else { 3 };
    }
    let report = xtask::bench::run_bench(&options).map_err(|error| error.to_string())?;
    let paths = xtask::bench::write(&report, &options.out).map_err(|error| error.to_string())?;
    print!("{}", xtask::bench::markdown(&report));
    for path in paths {
        eprintln!("xtask: wrote {}", path.display());
    }
    eprintln!("xtask: bench took {:.0} s", report.elapsed.as_secs_f64());
    Ok(0)
}

fn run_command(args: &[String]) -> Result<u8, String> {
    if args.iter().take_while(|arg| *arg != "--").any(|arg| arg == "--help" || arg == "-h") {
        print!("{HELP}");
        return Ok(0);
    }
    let (options, junit) = parse_run_options(args)?;
    let outcome = run(&options).map_err(|error| error.to_string())?;
    if let Some(path) = junit {
        xtask::junit::write(&path, "faultline", &outcome).map_err(|error| error.to_string())?;
        eprintln!("xtask: JUnit report: {}", path.display());
    }
    if outcome.passed() {
        eprintln!("xtask: {}", outcome.reason);
    } else {
        eprintln!("xtask: {} (exit status {})", outcome.reason, outcome.exit_code);
    }
    Ok(u8::try_from(outcome.exit_code).unwrap_or(EXIT_SETUP as u8))
}

/// Parses the options of `run` (and `build`, which only looks at the profile): the run's options
/// and the `--junit` report's path.
fn parse_run_options(args: &[String]) -> Result<(RunOptions, Option<PathBuf>), String> {
    let mut options = RunOptions {
        mode: Mode::Xl,
        programs: true,
        timeout: DEFAULT_TIMEOUT,
        xl_console: XlConsole::Live,
        ..RunOptions::default()
    };
    let mut memory_mib = None;
    let mut guests = None;
    let mut vcpus = None;
    let mut console = None;
    let mut junit = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value =
            |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--dom0" => options.mode = Mode::Dom0,
            "--xen" => {
                options.xen =
                    XenVersion::parse(&value("--xen")?).map_err(|error| error.to_string())?;
            }
            "--release" => options.profile = Profile::Release,
            "--debug" => options.profile = Profile::Debug,
            "--quiet" => options.quiet = true,
            "--memory" => {
                let text = value("--memory")?;
                memory_mib = Some(
                    text.trim_end_matches(['M', 'm'])
                        .parse::<u32>()
                        .ok()
                        .filter(|mib| *mib >= 4)
                        .ok_or_else(|| format!("--memory takes MiB, at least 4 (got {text:?})"))?,
                );
            }
            "--guests" => {
                let text = value("--guests")?;
                guests = Some(
                    text.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=100).contains(n))
                        .ok_or_else(|| format!("--guests takes 1 to 100 (got {text:?})"))?,
                );
            }
            "--vcpus" => {
                let text = value("--vcpus")?;
                vcpus = Some(
                    text.parse::<u32>()
                        .ok()
                        .filter(|n| (1..=xtask::MAX_VCPUS).contains(n))
                        .ok_or_else(|| {
                            format!("--vcpus takes 1 to {} (got {text:?})", xtask::MAX_VCPUS)
                        })?,
                );
            }
            "--console" => {
                console = Some(match value("--console")?.as_str() {
                    "live" => XlConsole::Live,
                    "log" => XlConsole::Log,
                    other => return Err(format!("--console takes live or log (got {other:?})")),
                });
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
            "--junit" => junit = Some(PathBuf::from(value("--junit")?)),
            "--" => {
                options.cmdline = args.cloned().collect::<Vec<_>>().join(" ");
                break;
            }
            other => return Err(format!("unknown option {other:?}; see `cargo xtask --help`")),
        }
    }
    let xl = options.mode == Mode::Xl;
    if !xl && (guests.is_some() || console.is_some()) {
        return Err("--guests and --console are for the DomU path, not --dom0".to_string());
    }
    options.memory_mib =
        memory_mib.unwrap_or(if xl { DEFAULT_DOMU_MEMORY_MIB } else { DEFAULT_MEMORY_MIB });
    options.guests = guests.unwrap_or(1);
    options.vcpus = vcpus.unwrap_or(1);
    options.xl_console = console.unwrap_or(XlConsole::Live);
    Ok((options, junit))
}

fn trace_command(args: &[String]) -> Result<u8, String> {
    let mut out = xtask::workspace::root().join("docs").join("page-fault.svg");
    let mut program = xtask::trace::DEFAULT_PROGRAM.to_string();
    let mut kernel = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value =
            |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--out" => out = PathBuf::from(value("--out")?),
            "--program" => program = value("--program")?,
            "--kernel" => kernel = Some(PathBuf::from(value("--kernel")?)),
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(0);
            }
            other => return Err(format!("unknown option {other:?}; see `cargo xtask --help`")),
        }
    }
    eprintln!("xtask: booting with `{}` (dom0 path)", xtask::trace::cmdline(&program));
    let (trace, outcome) = xtask::trace::trace_boot(&program, kernel.as_deref(), true)
        .map_err(|error| error.to_string())?;
    print!("{}", xtask::trace::step_list(&trace));
    let caption = xtask::trace::caption(&program, &outcome);
    xtask::trace::write_svg(&trace, &caption, &out).map_err(|error| error.to_string())?;
    eprintln!("xtask: log: {}", outcome.log_path.display());
    eprintln!("xtask: {} steps drawn in {}", trace.steps.len(), out.display());
    Ok(0)
}

fn sweep_command(args: &[String]) -> Result<u8, String> {
    use xtask::sweep::{self, SweepOptions, POINTS};
    let mut points = Vec::new();
    let mut options = SweepOptions {
        points: Vec::new(),
        max: u64::MAX,
        jobs: 2,
        shard: (1, 1),
        junit: None,
        seed: 1,
        test_time: "5s".to_string(),
        tests: None,
        kernel: PathBuf::new(),
        module: PathBuf::new(),
        memory_mib: DEFAULT_MEMORY_MIB,
        timeout: DEFAULT_TIMEOUT,
        out_dir: xtask::workspace::root().join("target").join("sweep"),
        domu: false,
    };
    let mut kernel = None;
    let mut module = None;
    let mut memory_given = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value =
            |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, text: String| {
            text.parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| format!("{name} takes a whole number from 1 (got {text:?})"))
        };
        match arg.as_str() {
            "--point" => {
                let name = value("--point")?;
                let point = POINTS.iter().find(|p| **p == name).ok_or_else(|| {
                    format!("--point: unknown point {name:?} (known: {})", POINTS.join(", "))
                })?;
                points.push(*point);
            }
            "--max" => options.max = number("--max", value("--max")?)?,
            "--domu" => options.domu = true,
            "--timeout" => {
                let seconds = number("--timeout", value("--timeout")?)?;
                options.timeout = Duration::from_secs(seconds);
            }
            "--jobs" => options.jobs = number("--jobs", value("--jobs")?)? as usize,
            "--seed" => options.seed = number("--seed", value("--seed")?)?,
            "--shard" => {
                let text = value("--shard")?;
                options.shard = sweep::parse_shard(&text)
                    .ok_or_else(|| format!("--shard takes K/N with 1 <= K <= N (got {text:?})"))?;
            }
            "--junit" => options.junit = Some(PathBuf::from(value("--junit")?)),
            "--test-time" => options.test_time = value("--test-time")?,
            "--tests" => options.tests = Some(value("--tests")?),
            "--kernel" => kernel = Some(PathBuf::from(value("--kernel")?)),
            "--module" => module = Some(PathBuf::from(value("--module")?)),
            "--memory" => {
                options.memory_mib = number("--memory", value("--memory")?)? as u32;
                memory_given = true;
            }
            "--help" | "-h" => {
                print!("{HELP}");
                return Ok(0);
            }
            other => return Err(format!("unknown option {other:?}; see `cargo xtask --help`")),
        }
    }
    options.points = if points.is_empty() { POINTS.to_vec() } else { points };
    if options.domu && !memory_given {
        options.memory_mib = xtask::DEFAULT_DOMU_MEMORY_MIB;
    }
    options.kernel = match kernel {
        Some(kernel) => kernel,
        None => build_kernel(Profile::Release).map_err(|error| error.to_string())?,
    };
    options.module = match module {
        Some(module) => module,
        None => xtask::programs::build_archive(&[], false).map_err(|error| error.to_string())?,
    };
    let cases = sweep::sweep(&options).map_err(|error| error.to_string())?;
    Ok(u8::from(cases.iter().any(|case| !case.outcome.is_clean())))
}

fn setup(xen: XenVersion) -> Result<u8, String> {
    let qemu = host::ensure_qemu().map_err(|error| error.to_string())?;
    println!("qemu: {} {}", qemu.path.display(), qemu.version);
    let hypervisor = xen::ensure_hypervisor(xen).map_err(|error| error.to_string())?;
    println!(
        "xen: {} {} ({})",
        xen.hypervisor_package(),
        hypervisor.package_version,
        hypervisor.elf.display()
    );
    let image = dom0_image::ensure_dom0_image(xen, false).map_err(|error| error.to_string())?;
    println!(
        "dom0: Linux {} ({}, {})",
        image.kernel_version,
        image.kernel.display(),
        image.initramfs.display()
    );
    println!("cache: {}", xtask::workspace::cache_dir().display());
    Ok(0)
}
