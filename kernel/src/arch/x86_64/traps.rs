//! The trap table: every architectural vector registered with HYPERVISOR_set_trap_table.

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
}

/// Registers the entry stubs of boot/entry.S for vectors 0-19. Events are masked on entry to
/// every handler (the handlers never need events; #PF must read cr2 before an event could
/// overwrite it). #BP and #OF may be raised by `int3`/`into` from any ring (DPL 3); the others
/// only by the CPU.
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
    let mut table = [trap_info { vector: 0, flags: 0, cs: 0, address: 0 }; 21];
    for (vector, stub) in stubs.iter().enumerate() {
        let dpl: u8 = if vector == exception::BREAKPOINT as usize || vector == 4 { 3 } else { 0 };
        table[vector] = trap_info {
            vector: vector as u8,
            flags: dpl | abi::TRAP_INFO_MASK_EVENTS,
            cs: abi::FLAT_KERNEL_CS as u16,
            address: *stub as usize as u64,
        };
    }
    // table[20] stays all-zero: the sentinel Xen stops at.
    hypercall::set_trap_table(&table)
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
    if !frame.from_kernel() && frame.vector < 32 {
        // The program's exception: map its page, or end it (does not return then).
        crate::proc::process::user_exception(frame);
        // Handled: the frame goes to trap_return and HYPERVISOR_iret as it is now.
        crate::trace::iret(frame);
        return;
    }
    if frame.vector == exception::PAGE_FAULT {
        use crate::mm::kernel::{handle_page_fault, PageFault};
        match handle_page_fault(frame) {
            PageFault::Handled => return,
            PageFault::Fatal(reason) => {
                if crate::testing::expect::consume(frame) {
                    return;
                }
                super::crash::fatal_exception(frame, Some(format_args!("{reason}")));
            }
        }
    }
    if crate::testing::expect::consume(frame) {
        return;
    }
    super::crash::fatal_exception(frame, None);
}
