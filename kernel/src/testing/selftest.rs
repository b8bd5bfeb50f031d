//! The boot self-tests: a handled breakpoint, and deliberate faults for the crash report.

use core::arch::asm;

use crate::arch::x86_64::exception;
use crate::check;
use crate::cmdline::SelfTest;
use crate::testing::expect;

/// Runs one self-test. The fault tests do not return: the crash report ends the domain.
pub fn run(test: SelfTest) {
    match test {
        SelfTest::None => check!(Success, "boot: start_info valid, traps installed, console up"),
        SelfTest::Int3 => breakpoint_is_handled_and_resumed(),
        SelfTest::InvalidOpcode => invalid_opcode(),
        SelfTest::GeneralProtection => privileged_instruction(),
        SelfTest::NullRead => null_read(),
        SelfTest::DivideError => divide_by_zero(),
        SelfTest::Panic => deliberate_panic(),
        SelfTest::Timer => timer_wakes_a_blocked_vcpu(),
    }
}

/// int3 raises #BP, which Xen bounces to our trap table; the handler consumes the expectation
/// and returns through HYPERVISOR_iret to the instruction after int3.
#[inline(never)]
fn breakpoint_is_handled_and_resumed() {
    let marker: u64;
    expect::expect(exception::BREAKPOINT, 0);
    // SAFETY: int3 only traps; the expectation makes the handler resume right after it.
    unsafe { asm!("mov {m}, 0x5a5a", "int3", "add {m}, 1", m = out(reg) marker) };
    let (hits, rip) = expect::hits();
    if hits == 1 && marker == 0x5a5b {
        check!(Success, "int3: #BP handled at rip {rip:#x} and resumed after it");
    } else {
        expect::withdraw();
        check!(Failure, "int3: expected one #BP and resumption, saw {hits} and marker {marker:#x}");
    }
}

#[inline(never)]
fn invalid_opcode() {
    // SAFETY: ud2 raises #UD, which is not expected: the crash report ends the domain.
    unsafe { asm!("ud2") };
}

/// `hlt` is privileged: the PV kernel runs in ring 3, so the CPU raises #GP, and Xen does not
/// emulate it for PV guests.
#[inline(never)]
fn privileged_instruction() {
    // SAFETY: raises #GP in ring 3; the crash report ends the domain.
    unsafe { asm!("hlt") };
}

#[inline(never)]
fn null_read() {
    let value: u64;
    // SAFETY: address 0 is never mapped; the #PF ends the domain through the crash report.
    unsafe { asm!("mov {v}, qword ptr [0]", v = out(reg) value) };
    crate::println!("null read returned {value:#x}");
}

#[inline(never)]
fn divide_by_zero() {
    // SAFETY: div by zero raises #DE; the crash report ends the domain.
    unsafe { asm!("xor edx, edx", "mov eax, 1", "xor ecx, ecx", "div ecx", out("eax") _, out("ecx") _, out("edx") _) };
}

#[inline(never)]
fn deliberate_panic() {
    panic!("selftest: deliberate panic");
}

/// Arms VIRQ_TIMER 5 ms ahead and blocks: the vCPU must sleep at least that long and wake
/// through exactly one more timer event delivered by the upcall.
fn timer_wakes_a_blocked_vcpu() {
    use crate::xen::{events, time};
    const DELAY_NS: u64 = 5_000_000;
    let (before, _) = events::counts();
    let start = time::now_ns();
    if let Err(e) = events::set_timer(start + DELAY_NS) {
        check!(Error, "timer: set_timer_op: {e}");
        return;
    }
    let mut blocks = 0;
    while events::counts().0 == before && blocks < 1000 {
        if let Err(e) = events::block() {
            check!(Error, "timer: SCHEDOP_block: {e}");
            return;
        }
        blocks += 1;
    }
    let elapsed = time::now_ns().saturating_sub(start);
    let (after, upcalls) = events::counts();
    if after == before + 1 && elapsed >= DELAY_NS {
        check!(Success, "timer: woke after {} us through {upcalls} upcall(s), {blocks} block(s)", elapsed / 1000);
    } else {
        check!(Failure, "timer: {} timer events, {} us elapsed (wanted 1 event after >= 5000 us)", after - before, elapsed / 1000);
    }
}
