//! The crash report: what an unexpected exception or a panic prints before the domain ends.
//!
//! Format (the runner symbolizes the `#n 0x...` lines from the kernel ELF):
//! ```text
//! *** faultline: unexpected exception #PF (page fault, vector 14) in kernel mode
//!     on vCPU 1                      (only when the domain runs more than one vCPU)
//!     error code 0x0 (read, not-present, kernel-mode)
//!     cr2=0x0
//!     rip=0x... cs=0xe033 rflags=0x... rsp=0x... ss=0xe02b
//!     rax=0x... rbx=0x... (all sixteen general registers)
//!     backtrace:
//!     #0 0xffffffff80001234
//! *** faultline: crashing the domain
//! ```

use core::fmt::Write;
use core::ops::Range;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::backtrace;
use super::exception::{self, ErrorCode};
use super::trap_frame::TrapFrame;
use crate::xen::console::{self, Console};
use crate::xen::shutdown::{shutdown, Reason};
use crate::xen::{hypercall, shared_info, vcpu};

extern "C" {
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
}

/// Kernel stacks a backtrace may walk besides the boot stack: vCPU 0's trap stack, the user
/// probe's, and each other vCPU's own stack and trap stack.
const STACKS_MAX: usize = 2 + 2 * vcpu::MAX_VCPUS;
static STACKS: [(AtomicU64, AtomicU64); STACKS_MAX] =
    [const { (AtomicU64::new(0), AtomicU64::new(0)) }; STACKS_MAX];

/// Makes `range` walkable by backtraces (a kernel stack that is fully mapped).
pub fn register_stack(range: Range<u64>) {
    for (start, end) in &STACKS {
        if start.compare_exchange(0, range.start, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            end.store(range.end, Ordering::Release);
            return;
        }
    }
}

fn stack_containing(rbp: u64) -> Range<u64> {
    // SAFETY: linker-provided symbols; only their addresses are taken.
    let boot =
        core::ptr::addr_of!(boot_stack_bottom) as u64..core::ptr::addr_of!(boot_stack_top) as u64;
    if boot.contains(&rbp) {
        return boot;
    }
    for (start, end) in &STACKS {
        let range = start.load(Ordering::Acquire)..end.load(Ordering::Acquire);
        if range.contains(&rbp) {
            return range;
        }
    }
    0..0
}

/// What an upper layer adds to every crash report, registered at start-up (the fault injector
/// names the failure it injected: arch does not know it).
static NOTE: spin::Once<fn(&mut dyn Write)> = spin::Once::new();

/// Registers the crash report's note (once; later calls are ignored).
pub fn register_note(note: fn(&mut dyn Write)) {
    NOTE.call_once(|| note);
}

fn print_note(con: &mut Console) {
    if let Some(note) = NOTE.get() {
        note(con);
    }
}

/// Set when a crash report starts: a fault inside the report must not start another one.
static CRASHING: AtomicBool = AtomicBool::new(false);

fn enter_crash() {
    if CRASHING.swap(true, Ordering::SeqCst) {
        let _ = hypercall::console_write(
            b"*** faultline: fault while reporting a crash; crashing the domain\n",
        );
        let _ = hypercall::shutdown(crate::xen::abi::SHUTDOWN_crash);
        loop {
            let _ = hypercall::sched_yield();
        }
    }
}

/// Names the vCPU the report comes from, when there are several.
fn print_vcpu(con: &mut Console) {
    if vcpu::several() {
        let _ = writeln!(con, "    on vCPU {}", vcpu::current());
    }
}

fn print_backtrace(con: &mut Console, first: Option<u64>, rbp: u64) {
    let _ = writeln!(con, "    backtrace:");
    let mut n = 0;
    if let Some(rip) = first {
        let _ = writeln!(con, "    #{n} {rip:#018x}");
        n += 1;
    }
    let stack = stack_containing(rbp);
    backtrace::walk(
        rbp,
        stack,
        // SAFETY: `walk` only reads words inside `stack`, a mapped kernel stack.
        |addr| unsafe { core::ptr::read_volatile(addr as *const u64) },
        |ret| {
            let _ = writeln!(con, "    #{n} {ret:#018x}");
            n += 1;
        },
    );
}

/// Reports an exception nobody expected (with the handler's reason, if it had one) and crashes
/// the domain.
pub fn fatal_exception(frame: &TrapFrame, reason: Option<core::fmt::Arguments<'_>>) -> ! {
    enter_crash();
    {
        let mut con = console::emergency();
        let (mnemonic, name) = exception::name(frame.vector);
        let mode = if frame.from_kernel() { "kernel" } else { "user" };
        let _ = writeln!(
            con,
            "*** faultline: unexpected exception {mnemonic} ({name}, vector {}) in {mode} mode",
            frame.vector
        );
        print_vcpu(&mut con);
        if let Some(reason) = reason {
            let _ = writeln!(con, "    {reason}");
        }
        print_note(&mut con);
        if exception::has_error_code(frame.vector) {
            let _ = writeln!(
                con,
                "    error code {}",
                ErrorCode { vector: frame.vector, code: frame.error_code }
            );
        }
        if frame.vector == exception::PAGE_FAULT {
            match shared_info::cr2() {
                Some(cr2) => {
                    let _ = writeln!(con, "    cr2={cr2:#x}");
                }
                None => {
                    let _ = writeln!(con, "    cr2=unknown (shared_info not mapped yet)");
                }
            }
        }
        let _ = writeln!(
            con,
            "    rip={:#018x} cs={:#x} rflags={:#x} rsp={:#018x} ss={:#x}",
            frame.rip, frame.cs as u16, frame.rflags, frame.rsp, frame.ss as u16
        );
        for regs in frame.general_registers().chunks(4) {
            let _ = write!(con, "   ");
            for (name, value) in regs {
                let _ = write!(con, " {name:>3}={value:#018x}");
            }
            let _ = writeln!(con);
        }
        print_backtrace(&mut con, Some(frame.rip), frame.rbp);
        let _ = writeln!(con, "*** faultline: crashing the domain");
    }
    shutdown(Reason::Crash)
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    enter_crash();
    {
        let mut con = console::emergency();
        let _ = con.write_str("*** faultline: PANIC: ");
        let _ = writeln!(con, "{info}");
        print_vcpu(&mut con);
        print_note(&mut con);
        let rbp: u64;
        // SAFETY: reads the frame pointer register; no memory access.
        unsafe {
            core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
        };
        print_backtrace(&mut con, None, rbp);
        let _ = writeln!(con, "*** faultline: crashing the domain");
    }
    shutdown(Reason::Crash)
}
