//! The trap table, and the routing of every trap to the handlers the layers above registered.
//!
//! arch decodes a trap and decides who handles it; it names no handler. The kernel's own policy
//! (a page fault in kernel mode, an expected trap) is registered once at boot ([`install`],
//! from start.rs); who serves user mode travels with each run ([`super::user::run`]).

use core::fmt;

use crate::xen::abi::{self, trap_info};
use crate::xen::{events, hypercall, shared_info, XenError};

use super::exception;
use super::page_fault::PageFault;
use super::trap_frame::TrapFrame;
use super::user::{self, AfterTrap};

extern "C" {
    /// The stubs of vectors 0-255, [`STUB_BYTES`] apart (boot/entry.S).
    fn trap_stubs();
    fn trap_stubs_end();
}

/// The distance between two stubs of `trap_stubs`.
const STUB_BYTES: u64 = 16;

/// The kernel's policy for traps taken in kernel mode, registered once at boot.
#[derive(Clone, Copy)]
pub struct KernelHandlers {
    /// A page fault in kernel mode (a heap or stack page not yet backed): `Ok` once the page
    /// is mapped and the instruction can run again, else why the fault is fatal.
    pub page_fault: fn(&PageFault) -> Result<(), FatalReason>,
    /// Whether a trap in kernel mode was announced by a test at this instruction; the handler
    /// then sets the frame up to resume.
    pub expected: fn(&mut TrapFrame) -> bool,
}

static HANDLERS: spin::Once<KernelHandlers> = spin::Once::new();

/// Why a kernel-mode trap is fatal, as the handler that refused it words it (formatted into a
/// fixed buffer: the trap path must not allocate, and the heap may be what faulted).
pub struct FatalReason {
    text: [u8; FatalReason::BYTES],
    len: u8,
}

impl FatalReason {
    /// Room for one line of the crash report (longer reasons are cut).
    const BYTES: usize = 120;

    pub fn new(args: fmt::Arguments<'_>) -> FatalReason {
        let mut text = [0; FatalReason::BYTES];
        let len = crate::fmt_buf::format_into(&mut text, args);
        FatalReason { text, len: len as u8 }
    }
}

impl fmt::Display for FatalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A truncation may have cut a character in two: show the whole ones.
        let bytes = &self.text[..usize::from(self.len)];
        let text = match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
        };
        f.write_str(text)
    }
}

/// The table handed to Xen: one entry per vector but NMI's, and the zero sentinel. Static: 4 KiB
/// is much for the boot stack.
static TABLE: spin::Mutex<[trap_info; 256]> =
    spin::Mutex::new([trap_info { vector: 0, flags: 0, cs: 0, address: 0 }; 256]);

/// Registers the kernel's trap policy (once: a second call is refused with a panic), the entry
/// stubs of boot/entry.S for every vector ([`entry_of`]), so that whatever vector reaches the
/// kernel ends in a handler or a report (from user mode, in a named kill), and the NMI stub as
/// CALLBACKTYPE_nmi, which is how Xen's public/callback.h has a PV guest register it.
pub fn install(handlers: KernelHandlers) -> Result<(), XenError> {
    assert!(!HANDLERS.is_completed(), "the kernel's trap handlers are installed once");
    HANDLERS.call_once(|| handlers);
    let mut table = TABLE.lock();
    let vectors = (0..256).filter(|v| *v != exception::NMI);
    for (entry, vector) in table.iter_mut().zip(vectors) {
        *entry = entry_of(vector);
    }
    // table[255] stays all-zero: the sentinel Xen stops at.
    hypercall::set_trap_table(&table[..])?;
    hypercall::register_callback(abi::CALLBACKTYPE_NMI, 0, stub_of(exception::NMI))
}

/// The virtual IDT of another vCPU's VCPUOP_initialise context: the same entries as
/// [`install`] registers, indexed by vector, with the NMI stub at vector 2 as
/// CALLBACKTYPE_nmi would put it (Xen's register_guest_nmi_callback: events masked).
pub fn vcpu_context_table() -> [trap_info; 256] {
    core::array::from_fn(|vector| entry_of(vector as u64))
}

/// The trap table entry of `vector`: its stub, events masked on entry (the handlers never need
/// events; #PF must read cr2 before an event could overwrite it). #BP and #OF may be raised by
/// `int3`/`into` from any ring (DPL 3); the others only by the CPU, or by Xen (a software
/// `int $n` a program may not use reaches the kernel as #GP).
fn entry_of(vector: u64) -> trap_info {
    let user_may_raise = vector == exception::BREAKPOINT || vector == exception::OVERFLOW;
    let dpl: u8 = if user_may_raise { 3 } else { 0 };
    trap_info {
        vector: vector as u8,
        flags: dpl | abi::TRAP_INFO_MASK_EVENTS,
        cs: abi::FLAT_KERNEL_CS as u16,
        address: stub_of(vector),
    }
}

/// The stub of `vector` in boot/entry.S (the stride is checked once against the stubs' end).
fn stub_of(vector: u64) -> u64 {
    let stubs = trap_stubs as *const () as u64;
    let stubs_end = trap_stubs_end as *const () as u64;
    assert_eq!(
        stubs_end - stubs,
        256 * STUB_BYTES,
        "boot/entry.S: the stubs of vectors 0-255 are not {STUB_BYTES} bytes apart"
    );
    stubs + vector * STUB_BYTES
}

/// Called by `trap_common` (boot/entry.S) with the saved registers; returning resumes the
/// interrupted code through HYPERVISOR_iret (counted here: paths that never return, a program's
/// end or a crash, issue none).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    route(frame);
    hypercall::note_iret();
}

/// The routing policy, whole: an event goes to the event channels (and a timer event or an IPI
/// to the handler of the run on this vCPU); a trap from user mode to the running program's handlers, which
/// may end the run; a trap in kernel mode to the memory manager if it is a page fault it can
/// back, then to the expected-trap check, and otherwise to the crash report.
fn route(frame: &mut TrapFrame) {
    let from_user = !frame.from_kernel();
    let after = match frame.vector {
        exception::EVENT_UPCALL => {
            let fired = events::upcall();
            // This vCPU's run (if any) hears of its own timer and IPIs.
            match user::running() {
                Some(run) if fired.timer || fired.ipi => (run.event)(frame),
                _ => AfterTrap::Resume,
            }
        }
        exception::SYSCALL => match user::running() {
            Some(run) if from_user => (run.syscall)(frame),
            _ => fatal(frame, format_args!("a system call outside a run in user mode")),
        },
        vector if from_user && vector < 256 => match user::running() {
            Some(run) => (run.exception)(frame),
            None => fatal(frame, format_args!("a trap from user mode outside a run")),
        },
        _ => {
            kernel_trap(frame);
            AfterTrap::Resume
        }
    };
    if let AfterTrap::EndRun(value) = after {
        if !from_user {
            fatal(frame, format_args!("a handler ended the run from a trap in kernel mode"));
        }
        // SAFETY: the trap came from user mode during `run` (`running()` gave the handler), so
        // this stack was entered fresh by Xen at the kernel stack's top: below this frame are
        // only trap_dispatch and boot/entry.S's trap_common, neither of which owns anything to
        // drop, and the handler that asked for the end has returned.
        unsafe { user::exit_to_kernel(value) }
    }
}

/// A trap in kernel mode: a page fault the memory manager backs, an expected trap, or the end.
fn kernel_trap(frame: &mut TrapFrame) {
    let handlers = HANDLERS.get();
    if frame.vector == exception::PAGE_FAULT {
        // cr2 first: it is only valid until the next fault.
        let fault = PageFault::decode(frame.error_code, shared_info::cr2().unwrap_or(0));
        let refused = match handlers {
            Some(handlers) => match (handlers.page_fault)(&fault) {
                Ok(()) => return,
                Err(reason) => reason,
            },
            None => FatalReason::new(format_args!("page fault before the trap handlers exist")),
        };
        if handlers.is_some_and(|h| (h.expected)(frame)) {
            return;
        }
        fatal(frame, format_args!("{refused}"));
    }
    if handlers.is_some_and(|h| (h.expected)(frame)) {
        return;
    }
    super::crash::fatal_exception(frame, None);
}

fn fatal(frame: &TrapFrame, reason: fmt::Arguments<'_>) -> ! {
    super::crash::fatal_exception(frame, Some(reason))
}
