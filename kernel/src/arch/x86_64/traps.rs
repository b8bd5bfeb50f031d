//! The trap table: every vector registered with HYPERVISOR_set_trap_table, and the NMI callback.

use crate::xen::abi::{self, trap_info};
use crate::xen::{hypercall, XenError};

use super::exception;
use super::trap_frame::TrapFrame;

extern "C" {
    fn trap_divide_error();
    fn trap_debug();
    fn trap_nmi();
    fn trap_breakpoint();
    fn trap_overflow();
    fn trap_bound_range();
    fn trap_invalid_opcode();
    fn trap_device_not_available();
    fn trap_double_fault();
    fn trap_coprocessor_overrun();
    fn trap_invalid_tss();
    fn trap_segment_not_present();
    fn trap_stack_segment();
    fn trap_general_protection();
    fn trap_page_fault();
    fn trap_spurious();
    fn trap_x87_floating_point();
    fn trap_alignment_check();
    fn trap_machine_check();
    fn trap_simd_floating_point();
    /// The stubs of vectors 20-255, [`OTHER_STUB_BYTES`] apart (boot/entry.S).
    fn trap_other_vectors();
    fn trap_other_vectors_end();
}

/// The distance between two stubs of `trap_other_vectors`.
const OTHER_STUB_BYTES: u64 = 16;
/// The first vector `trap_other_vectors` covers.
const OTHER_FIRST_VECTOR: usize = 20;

/// The table handed to Xen: one entry per vector but NMI's, and the zero sentinel. Static: 4 KiB
/// is much for the boot stack.
static TABLE: spin::Mutex<[trap_info; 256]> =
    spin::Mutex::new([trap_info { vector: 0, flags: 0, cs: 0, address: 0 }; 256]);

/// Registers the entry stubs of boot/entry.S for every vector, so that whatever vector reaches
/// the kernel ends in a report (or, from user mode, in a named kill), and the NMI stub as
/// CALLBACKTYPE_nmi, which is how Xen's public/callback.h has a PV guest register it. Events are
/// masked on entry to every handler (the handlers never need events; #PF must read cr2 before
/// an event could overwrite it). #BP and #OF may be raised by `int3`/`into` from any ring
/// (DPL 3); the others only by the CPU, or by Xen (a software `int $n` a program may not use
/// reaches the kernel as #GP).
pub fn install() -> Result<(), XenError> {
    let stubs: [unsafe extern "C" fn(); 20] = [
        trap_divide_error,
        trap_debug,
        trap_nmi,
        trap_breakpoint,
        trap_overflow,
        trap_bound_range,
        trap_invalid_opcode,
        trap_device_not_available,
        trap_double_fault,
        trap_coprocessor_overrun,
        trap_invalid_tss,
        trap_segment_not_present,
        trap_stack_segment,
        trap_general_protection,
        trap_page_fault,
        trap_spurious,
        trap_x87_floating_point,
        trap_alignment_check,
        trap_machine_check,
        trap_simd_floating_point,
    ];
    let others = trap_other_vectors as *const () as u64;
    let others_end = trap_other_vectors_end as *const () as u64;
    assert_eq!(
        others_end - others,
        (256 - OTHER_FIRST_VECTOR as u64) * OTHER_STUB_BYTES,
        "boot/entry.S: the stubs of vectors 20-255 are not {OTHER_STUB_BYTES} bytes apart"
    );
    let stub_of = |vector: usize| match stubs.get(vector) {
        Some(stub) => *stub as usize as u64,
        None => others + (vector - OTHER_FIRST_VECTOR) as u64 * OTHER_STUB_BYTES,
    };
    let mut table = TABLE.lock();
    let vectors = (0..256).filter(|v| *v != exception::NMI as usize);
    for (entry, vector) in table.iter_mut().zip(vectors) {
        let dpl: u8 = if vector == exception::BREAKPOINT as usize || vector == 4 { 3 } else { 0 };
        *entry = trap_info {
            vector: vector as u8,
            flags: dpl | abi::TRAP_INFO_MASK_EVENTS,
            cs: abi::FLAT_KERNEL_CS as u16,
            address: stub_of(vector),
        };
    }
    // table[255] stays all-zero: the sentinel Xen stops at.
    hypercall::set_trap_table(&table[..])?;
    hypercall::register_callback(abi::CALLBACKTYPE_NMI, 0, trap_nmi as *const () as u64)
}

/// Called by `trap_common` (boot/entry.S) with the saved registers; returning resumes the
/// interrupted code through HYPERVISOR_iret (counted here: paths that never return, a program's
/// end or a crash, issue none).
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    dispatch(frame);
    crate::xen::hypercall::note_iret();
}

fn dispatch(frame: &mut TrapFrame) {
    if frame.vector == exception::EVENT_UPCALL {
        crate::xen::events::upcall(frame);
        return;
    }
    if frame.vector == exception::SYSCALL && super::user::syscall(frame) {
        return;
    }
    if !frame.from_kernel() && frame.vector < 256 {
        // The program's exception: map its page, or end it (does not return then).
        crate::proc::process::user_exception(frame);
        // Handled: the frame goes to trap_return and HYPERVISOR_iret as it is now.
        crate::trace::iret(frame);
        return;
    }
    if frame.vector == exception::PAGE_FAULT {
        match crate::mm::kernel::handle_page_fault(frame) {
            Ok(()) => return,
            Err(reason) => {
                if crate::testing::expected_trap::consume(frame) {
                    return;
                }
                super::crash::fatal_exception(frame, Some(format_args!("{reason}")));
            }
        }
    }
    if crate::testing::expected_trap::consume(frame) {
        return;
    }
    super::crash::fatal_exception(frame, None);
}
