//! The boot sequence, from Xen's entry to the verdict.

use crate::arch::x86_64::page_fault::PageFault;
use crate::arch::x86_64::smp::{self, VcpuOutcome};
use crate::arch::x86_64::traps::{self, FatalReason, KernelHandlers};
use crate::arch::x86_64::{crash, user};
use crate::check;
use crate::cmdline;
use crate::mm;
use crate::println;
use crate::proc::{process, suite};
use crate::testing::{inject, report, selftest};
use crate::xen::abi::start_info;
use crate::xen::start_info::StartInfo;
use crate::xen::vcpu::MAX_VCPUS;
use crate::xen::version::XenVersion;
use crate::xen::xenstore::Xenstore;
use crate::xen::{console, console_io, console_ring, events, hypercall, shared_info, XenError};

extern "C" {
    /// The lowest byte of the boot stack (boot/head.S).
    static boot_stack_bottom: u8;
}

/// The kernel's policy for its own traps: the memory manager backs what it can, a test may
/// have announced the trap, and anything else is fatal (arch's `route` reads these in order).
const KERNEL_TRAP_HANDLERS: KernelHandlers = KernelHandlers {
    page_fault: kernel_page_fault,
    expected: crate::testing::expected_trap::consume,
};

fn kernel_page_fault(fault: &PageFault) -> Result<(), FatalReason> {
    mm::kernel::handle_page_fault(fault).map_err(|e| FatalReason::new(format_args!("{e}")))
}

/// Written at the boot stack's bottom before the memory manager is built, checked after.
const BOOT_STACK_CANARY: u64 = 0x6661_756c_746c_696e;

/// Entered from boot/head.S on the boot stack with start_info's virtual address.
///
/// # Safety
/// Only Xen's entry path calls this, once, with the start_info pointer Xen passed in %rsi.
#[no_mangle]
pub unsafe extern "C" fn kernel_start(start_info: *const start_info) -> ! {
    // The slots that map Xen's shared pages take their page-table entries from mm (the console
    // ring is the first, just below).
    crate::xen::slots::set_entry_format(|machine_addr| mm::Pte::kernel_data(machine_addr).0);
    if !hypercall::page_is_written() {
        // No hypercall can work, so nothing can be printed: crash loudly with an undefined
        // instruction before the trap table exists (Xen then crashes the domain).
        // SAFETY: ud2 only raises #UD.
        unsafe { core::arch::asm!("ud2", options(noreturn)) };
    }
    // SAFETY: Xen passes the virtual address of start_info in %rsi; it is mapped inside the
    // initial mapping for the whole life of the domain and nothing else writes it.
    let raw = unsafe { &*start_info };
    let validated = StartInfo::validate(raw);
    let ring_error = choose_console(validated.ok());
    println!("faultline {}: Xen PV guest kernel", env!("CARGO_PKG_VERSION"));
    let info = match validated {
        Ok(info) => info,
        Err(e) => boot_error(format_args!("start_info rejected: {e}")),
    };
    if let Some(e) = ring_error {
        boot_error(format_args!("mapping the console ring: {e}"));
    }
    configure_injection(&info);
    if let Err(e) = shared_info::map(raw.shared_info) {
        boot_error(format_args!(
            "mapping shared_info at machine address {:#x}: {e}",
            raw.shared_info
        ));
    }
    if let Err(e) = traps::install(KERNEL_TRAP_HANDLERS) {
        boot_error(format_args!("HYPERVISOR_set_trap_table: {e}"));
    }
    if let Err(e) = user::init() {
        boot_error(format_args!("registering the syscall callback: {e}"));
    }
    if let Err(e) = events::init() {
        boot_error(format_args!("event channels (callbacks, VIRQ_TIMER): {e}"));
    }
    print_summary(&info);
    // Until the memory manager unmaps the guard page, a boot stack overflow would run silently
    // into .data (it once corrupted the event channels' state): a canary at the stack's bottom.
    let canary = core::ptr::addr_of!(boot_stack_bottom) as *mut u64;
    // SAFETY: the stack's lowest word is ours (boot/head.S) and far below anything live now;
    // a volatile write so that the later check reads memory, not a remembered value.
    unsafe { canary.write_volatile(BOOT_STACK_CANARY) };
    if let Err(e) = mm::kernel::init(&info) {
        boot_error(format_args!("memory manager: {e}"));
    }
    // SAFETY: as above; a read of our own stack's lowest word.
    if unsafe { canary.read_volatile() } != BOOT_STACK_CANARY {
        boot_error(format_args!("boot stack overflow while building the memory manager"));
    }
    mm::heap::init();
    if let Err(e) = process::init() {
        boot_error(format_args!("user mode set-up: {e}"));
    }
    print_memory_summary();
    if !info.is_dom0() {
        print_store_identity(&info);
    }
    bring_up_vcpus(&info);

    let cmdline = match info.cmdline() {
        Ok(line) => line,
        Err(bytes) => boot_error(format_args!("command line is not UTF-8: {bytes:x?}")),
    };
    match cmdline::parse(cmdline) {
        Ok(options) => {
            println!("selftest: {}", options.selftest.name());
            if options.trace == cmdline::Trace::Fault {
                crate::trace::arm();
            }
            selftest::run(options.selftest, kernel_l4_mfn(&info));
            if !options.selftest_chosen {
                match boot_module(&info) {
                    Some(module) => suite::run(module, &options.run),
                    // Nothing ran: the verdict may not say SUCCESS (XTF's order: SUCCESS < SKIP).
                    None => check!(
                        Skip,
                        "programs: none (no boot module): the test programs were skipped"
                    ),
                }
            }
        }
        Err(e) => check!(Error, "command line: {e}"),
    }
    report::finish()
}

fn print_summary(info: &StartInfo<'_>) {
    match XenVersion::query() {
        Ok(version) => println!("xen: version {version} (start_info magic {})", info.magic()),
        Err(e) => println!("xen: version unknown (XENVER_version: {e})"),
    }
    let kind = if info.is_dom0() { "dom0" } else { "DomU" };
    let pages = info.nr_pages();
    println!("domain: {kind} (flags {:#x}), nr_pages {pages} ({} MiB)", info.flags(), pages / 256);
    match info.cmdline() {
        Ok(line) => println!("cmdline: \"{line}\""),
        Err(_) => println!("cmdline: (not UTF-8)"),
    }
}

/// Brings up the domain's other vCPUs (programs still run on vCPU 0 only) and prints the
/// `vcpus:` line. It names a vCPU other than 0 only once that vCPU ran our code on its own
/// stack, took its own timer event and answered an IPI from vCPU 0; any other outcome is an
/// `[ERROR]` line and the boot goes on with the vCPUs that are online.
fn bring_up_vcpus(info: &StartInfo<'_>) {
    let mut online = [false; MAX_VCPUS];
    online[0] = true;
    let bringup = match smp::bring_up(kernel_l4_mfn(info), &mut mm::kernel::HeapStackGuards) {
        Ok(bringup) => bringup,
        Err((call, e)) => {
            check!(Error, "vcpus: {call}: {e}: the boot goes on with vCPU 0 alone");
            println!("vcpus: 1 online (0)");
            return;
        }
    };
    let outcomes = bringup.outcomes.iter().enumerate().take(bringup.count).skip(1);
    for (n, outcome) in outcomes {
        if let Some(outcome) = outcome.clone() {
            online[n] = report_vcpu(n, outcome);
        }
    }
    if bringup.beyond_max {
        println!("vcpus: the domain has more than {MAX_VCPUS}: those past {MAX_VCPUS} stay down");
    }
    let up = online.iter().filter(|&&on| on).count();
    let list = OnlineList(&online[..bringup.count]);
    if up == bringup.count {
        println!("vcpus: {up} online ({list})");
    } else {
        println!("vcpus: {up} online ({list}) of {}", bringup.count);
    }
}

/// Reports how vCPU `n` fared (an `[ERROR]` line unless it is up); says whether it is online,
/// which needs an answered IPI from vCPU 0 on top of its own report.
fn report_vcpu(n: usize, outcome: VcpuOutcome) -> bool {
    let VcpuOutcome::Online { stack, rsp, .. } = &outcome else {
        check!(Error, "vcpu {n}: {outcome}");
        return false;
    };
    if !stack.contains(rsp) {
        check!(Error, "vcpu {n}: its rsp is outside its stack: {outcome}");
        return false;
    }
    match smp::ping(n) {
        Ok(true) => {
            println!("vcpu {n}: up: {outcome}, used vcpu_info {n}, answered an IPI from vCPU 0");
            true
        }
        Ok(false) => {
            check!(Error, "vcpu {n}: no answer to an IPI from vCPU 0: {}", smp::outcome_of(n));
            false
        }
        Err((call, e)) => {
            check!(Error, "vcpu {n}: an IPI from vCPU 0: {call}: {e}");
            false
        }
    }
}

/// "0, 1, 3": the vCPUs marked online.
struct OnlineList<'a>(&'a [bool]);

impl core::fmt::Display for OnlineList<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        for (n, _) in self.0.iter().enumerate().filter(|(_, &on)| on) {
            if !first {
                f.write_str(", ")?;
            }
            write!(f, "{n}")?;
            first = false;
        }
        Ok(())
    }
}

/// Arms the fault-injection rules of the command line before anything they cover runs (the
/// memory manager's boot included) and prints the seed that replays them. A malformed word is
/// left to `cmdline::parse`, which reports it.
fn configure_injection(info: &StartInfo<'_>) {
    let Ok(line) = info.cmdline() else { return };
    let Ok(config) = inject::Config::parse(line) else { return };
    if config.is_empty() {
        return;
    }
    let seed = config.seed.unwrap_or_else(crate::xen::time::rdtsc);
    inject::INJECTOR.configure(config, seed);
    crash::register_note(inject::crash_note);
    for rule in config.rules() {
        println!(
            "inject: armed {} scope {} (replay with inject_seed={seed})",
            rule.point.name(),
            rule.scope
        );
    }
}

fn print_memory_summary() {
    let guard = mm::kernel::MM.lock();
    if let Some(mm) = guard.as_ref() {
        let nr_pages = mm.frames.free_frames() + mm.frames.used_frames();
        println!(
            "memory: nr_pages={nr_pages} boot_reserved={} usable={} tables_for_direct_map={} initial_mapping_pages={} direct_map={:#x}",
            mm.boot_reserved_frames,
            nr_pages - mm.boot_reserved_frames,
            mm.direct_map_tables,
            mm.boot_window.count_frames,
            mm::DIRECT_MAP_BASE,
        );
    }
}

/// The console sink is chosen once, from the start_info flags: dom0 writes with console_io,
/// a DomU through its console ring (Xen drops a DomU's console_io writes). If the ring cannot
/// be mapped the error comes back, to be reported once something can print.
fn choose_console(info: Option<StartInfo<'_>>) -> Option<XenError> {
    match info {
        Some(info) if !info.is_dom0() => {
            let (mfn, port) = info.domu_console();
            match console_ring::CONSOLE_RING.init(mfn, port) {
                Ok(()) => {
                    console::set_sink(&console_ring::CONSOLE_RING);
                    None
                }
                Err(e) => {
                    console::set_sink(&console_io::CONSOLE_IO);
                    Some(e)
                }
            }
        }
        _ => {
            console::set_sink(&console_io::CONSOLE_IO);
            None
        }
    }
}

/// Reads our own name and domid from xenstore; a store problem is reported, not fatal.
fn print_store_identity(info: &StartInfo<'_>) {
    let (mfn, port) = info.store();
    if mfn == 0 {
        println!("xenstore: none (start_info has no store page)");
        return;
    }
    let mut store = match Xenstore::connect(mfn, port) {
        Ok(store) => store,
        Err(e) => {
            println!("xenstore: unavailable: {e}");
            return;
        }
    };
    let mut name = [0u8; 64];
    let mut domid = [0u8; 16];
    let name = store.read("name", &mut name).map(|n| &name[..n]);
    let domid = store.read("domid", &mut domid).map(|n| &domid[..n]);
    match (name, domid) {
        (Ok(name), Ok(domid)) => println!(
            "xenstore: name \"{}\", domid {}",
            core::str::from_utf8(name).unwrap_or("?"),
            core::str::from_utf8(domid).unwrap_or("?")
        ),
        (name, domid) => {
            if let Err(e) = name {
                println!("xenstore: reading name: {e}");
            }
            if let Err(e) = domid {
                println!("xenstore: reading domid: {e}");
            }
        }
    }
}

/// The boot module (the test-program archive): dom0's second multiboot module, a DomU's
/// ramdisk. Xen maps it inside the initial mapping, or gives its first pfn
/// (SIF_MOD_START_PFN), in which case it is reached through the direct map.
fn boot_module(info: &StartInfo<'_>) -> Option<suite::Module> {
    let raw = info.raw();
    if raw.mod_start == 0 || raw.mod_len == 0 {
        return None;
    }
    let base = mm::kernel_space::KERNEL_VIRT_BASE;
    let (va, first_pfn) = if raw.flags & xen_sys::SIF_MOD_START_PFN != 0 {
        let pfn = mm::Pfn(raw.mod_start);
        (mm::kernel_space::direct_map_address(pfn).as_u64(), Some(pfn))
    } else {
        let aligned = raw.mod_start >= base && raw.mod_start.is_multiple_of(mm::PAGE_SIZE);
        (raw.mod_start, aligned.then(|| mm::Pfn((raw.mod_start - base) >> mm::PAGE_SHIFT)))
    };
    // SAFETY: Xen maps the module (mod_len bytes) writable at that address for the life of
    // the domain (or the direct map covers its frames); its frames are reserved, and this is
    // the only reference made to them (the suite owns the archive from here on).
    let bytes = unsafe { core::slice::from_raw_parts_mut(va as *mut u8, raw.mod_len as usize) };
    let frames = first_pfn
        .map(|start| mm::PfnRange { start, count_frames: raw.mod_len.div_ceil(mm::PAGE_SIZE) });
    Some(suite::Module { bytes, frames })
}

/// The machine frame of Xen's boot L4: pt_base is its address inside the initial mapping,
/// so its pfn is the offset from VIRT_BASE, and the p2m list gives the mfn.
fn kernel_l4_mfn(info: &StartInfo<'_>) -> u64 {
    let raw = info.raw();
    let pfn = (raw.pt_base - crate::mm::kernel_space::KERNEL_VIRT_BASE) >> crate::mm::PAGE_SHIFT;
    // SAFETY: mfn_list is the p2m array Xen mapped for us, nr_pages entries long, and the
    // boot L4 lies inside the initial mapping, so pfn < nr_pages.
    unsafe { core::ptr::read((raw.mfn_list as *const u64).add(pfn as usize)) }
}

/// A boot step failed before any test could run: say which, end with ERROR. After an injected
/// failure (a boot-critical point, README) it is a crash report that names the failure, and
/// the domain crashes (SHUTDOWN_crash).
fn boot_error(args: core::fmt::Arguments<'_>) -> ! {
    if inject::INJECTOR.first_run_failure().is_some() {
        panic!("boot: {args}: the boot cannot go on after an injected failure");
    }
    check!(Error, "boot: {args}");
    report::finish()
}
