//! The boot sequence, from Xen's entry to the verdict.

use crate::arch::x86_64::traps;
use crate::check;
use crate::cmdline;
use crate::println;
use crate::testing::{report, selftest};
use crate::xen::abi::start_info;
use crate::xen::start_info::StartInfo;
use crate::xen::version::XenVersion;
use crate::xen::{console, console_io, hypercall, shared_info};

/// Entered from boot/head.S on the boot stack with start_info's virtual address.
#[no_mangle]
pub extern "C" fn kernel_start(start_info: *const start_info) -> ! {
    if !hypercall::page_is_written() {
        // No hypercall can work, so nothing can be printed: crash loudly with an undefined
        // instruction before the trap table exists (Xen then crashes the domain).
        // SAFETY: ud2 only raises #UD.
        unsafe { core::arch::asm!("ud2", options(noreturn)) };
    }
    console::set_sink(&console_io::CONSOLE_IO);
    println!("faultline {}: Xen PV guest kernel", env!("CARGO_PKG_VERSION"));

    // SAFETY: Xen passes the virtual address of start_info in %rsi; it is mapped inside the
    // initial mapping for the whole life of the domain and nothing else writes it.
    let raw = unsafe { &*start_info };
    let info = match StartInfo::validate(raw) {
        Ok(info) => info,
        Err(e) => boot_error(format_args!("start_info rejected: {e}")),
    };
    if let Err(e) = shared_info::map(raw.shared_info) {
        boot_error(format_args!("mapping shared_info at machine address {:#x}: {e}", raw.shared_info));
    }
    if let Err(e) = traps::install() {
        boot_error(format_args!("HYPERVISOR_set_trap_table: {e}"));
    }
    print_summary(&info);

    let cmdline = match info.cmdline() {
        Ok(line) => line,
        Err(bytes) => boot_error(format_args!("command line is not UTF-8: {bytes:x?}")),
    };
    match cmdline::parse(cmdline) {
        Ok(options) => {
            println!("selftest: {}", options.selftest.name());
            selftest::run(options.selftest);
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

/// A boot step failed before any test could run: say which, end with ERROR.
fn boot_error(args: core::fmt::Arguments<'_>) -> ! {
    check!(Error, "boot: {args}");
    report::finish()
}
