//! The boot self-tests: a handled breakpoint, and deliberate faults for the crash report.

use core::arch::asm;

use super::choice::SelfTest;
use crate::arch::x86_64::exception;
use crate::arch::x86_64::trap_frame::TrapFrame;
use crate::arch::x86_64::user::{AfterTrap, StackPages, UserHandlers};
use crate::check;
use crate::mm::PAGE_SIZE;
use crate::testing::expected_trap::{self, ExpectedTrap};

/// Runs one self-test. The fault tests do not return: the crash report ends the domain.
pub fn run(test: SelfTest, kernel_l4_mfn: u64) {
    match test {
        SelfTest::None => check!(Success, "boot: start_info valid, traps installed, console up"),
        SelfTest::Int3 => breakpoint_is_handled_and_resumed(),
        SelfTest::InvalidOpcode => invalid_opcode(),
        SelfTest::GeneralProtection => privileged_instruction(),
        SelfTest::NullRead => null_read(),
        SelfTest::DivideError => divide_by_zero(),
        SelfTest::Panic => deliberate_panic(),
        SelfTest::Timer => timer_wakes_a_blocked_vcpu(),
        SelfTest::User => user_mode_round_trip(kernel_l4_mfn),
        SelfTest::Mm => super::mm_tests::run_all(),
        SelfTest::Flood => console_flood(),
        SelfTest::Nmi => nmi_is_handled_and_resumed(),
        SelfTest::SoftwareInterrupt => software_interrupt(),
        SelfTest::StackGuard => super::mm_tests::stack_overflow(),
        SelfTest::VcpuStackGuard => vcpu_reads_its_trap_stack_guard(),
        SelfTest::VcpuCrashWhileConsoleHeld => vcpu_crashes_while_vcpu_0_holds_the_console(),
        SelfTest::MmHeldElsewhere => super::mm_tests::heap_fault_waits_for_mm_held_elsewhere(),
        SelfTest::ExpectedElsewhere => expected_trap_elsewhere_is_fatal(),
    }
}

/// VCPUOP_send_nmi to our own vCPU: Xen delivers the NMI through the callback registered as
/// CALLBACKTYPE_nmi when the hypercall returns, so its rip lies in the vcpu_op entry of the
/// hypercall page; the handler consumes the expectation and returns through HYPERVISOR_iret
/// (which also ends Xen's NMI masking).
#[inline(never)]
fn nmi_is_handled_and_resumed() {
    use crate::xen::{abi, hypercall};
    expected_trap::expect(ExpectedTrap::at(
        exception::NMI,
        hypercall::page_entry(abi::__HYPERVISOR_vcpu_op),
    ));
    if let Err(e) = hypercall::send_nmi(0) {
        expected_trap::withdraw();
        check!(Error, "nmi: VCPUOP_send_nmi: {e}");
        return;
    }
    let hits = expected_trap::hits();
    if hits.count == 1 {
        check!(
            Success,
            "nmi: NMI delivered through the NMI callback at rip {:#x} (the vcpu_op entry of the hypercall page) and resumed",
            hits.last_rip
        );
    } else {
        expected_trap::withdraw();
        check!(Failure, "nmi: expected one NMI after VCPUOP_send_nmi, saw {}", hits.count);
    }
}

extern "C" {
    /// The instruction after `add_one_across_int3`'s int3: the rip of its #BP.
    fn selftest_after_int3();
}

/// Returns `x + 1`, with an `int3` between the copy and the addition: resumed after the trap,
/// it adds; resumed anywhere else, it would not return this.
#[unsafe(naked)]
extern "C" fn add_one_across_int3(x: u64) -> u64 {
    core::arch::naked_asm!(
        "mov rax, rdi",
        "int3",
        ".global selftest_after_int3",
        "selftest_after_int3:",
        "add rax, 1",
        "ret",
    )
}

/// int3 raises #BP, which Xen bounces to our trap table; the expectation names the instruction
/// after it (a trap's rip), so the handler consumes it and returns through HYPERVISOR_iret there.
#[inline(never)]
fn breakpoint_is_handled_and_resumed() {
    let after = selftest_after_int3 as *const () as u64;
    expected_trap::expect(ExpectedTrap::at(exception::BREAKPOINT, after..after + 1));
    let sum = add_one_across_int3(0x5a5a);
    let hits = expected_trap::hits();
    if hits.count == 1 && hits.last_rip == after && sum == 0x5a5b {
        check!(Success, "int3: #BP handled at rip {after:#x} and resumed after it");
    } else {
        expected_trap::withdraw();
        check!(
            Failure,
            "int3: expected one #BP at rip {after:#x} and resumption, saw {} (last at {:#x}) and {sum:#x}",
            hits.count,
            hits.last_rip
        );
    }
}

/// The #UD the `expect-elsewhere` self-test announces; never run.
#[unsafe(naked)]
extern "C" fn ud_expected_here() {
    core::arch::naked_asm!("ud2", "ret")
}

/// The #UD the `expect-elsewhere` self-test raises: another instruction than the announced one.
#[unsafe(naked)]
extern "C" fn ud_elsewhere() {
    core::arch::naked_asm!("nop", "ud2", "ret")
}

/// Announces a #UD at one ud2, to resume at the `ret` after it, then raises a #UD at another
/// ud2. That #UD is not the expected one: it must end in the crash report. Had the expectation
/// swallowed it, the CPU would resume at the announced `ret`, which returns here, and the check
/// says so.
#[inline(never)]
fn expected_trap_elsewhere_is_fatal() {
    let here = ud_expected_here as *const () as u64;
    let elsewhere = ud_elsewhere as *const () as u64 + 1;
    expected_trap::expect(ExpectedTrap {
        resume_at: Some(here + 2),
        ..ExpectedTrap::at(exception::INVALID_OPCODE, here..here + 2)
    });
    crate::println!("expect-elsewhere: #UD expected at {here:#x}, raising one at {elsewhere:#x}");
    ud_elsewhere();
    let hits = expected_trap::hits();
    expected_trap::withdraw();
    check!(
        Failure,
        "expect-elsewhere: the #UD at rip {:#x} was taken for the one expected at {here:#x}",
        hits.last_rip
    );
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
    unsafe {
        asm!("xor edx, edx", "mov eax, 1", "xor ecx, ecx", "div ecx", out("eax") _, out("ecx") _, out("edx") _)
    };
}

/// `int $0x80` in the kernel: Xen's direct trap for vector 0x80 delivers it to our vector-0x80
/// stub (no exception of the CPU's), which must end in a crash report naming the vector.
#[inline(never)]
fn software_interrupt() {
    // SAFETY: the interrupt reaches the trap table's vector-0x80 entry; the crash report ends
    // the domain.
    unsafe { asm!("int 0x80") };
}

#[inline(never)]
fn deliberate_panic() {
    panic!("selftest: deliberate panic");
}

/// Arms VIRQ_TIMER 5 ms ahead and blocks: the vCPU must sleep at least that long and wake
/// through exactly one more timer event delivered by the upcall.
/// The vCPU that reads its own trap stack's guard page.
const GUARD_VCPU: usize = 1;

/// Hands vCPU 1 a job that reads the guard page below its trap stack; the crash report (from
/// vCPU 1, naming the guard) ends the domain. If the read returns, the guard was mapped: the
/// heap page below the stack could have been overwritten silently.
fn vcpu_reads_its_trap_stack_guard() {
    use crate::arch::x86_64::smp;
    use crate::xen::{events, time};
    const WAIT_NS: u64 = 20_000_000_000;
    let Some(guard) = smp::trap_stack_guard(GUARD_VCPU).filter(|_| smp::is_free(GUARD_VCPU)) else {
        check!(Skip, "vcpu-stack-guard: vCPU {GUARD_VCPU} is not online (--vcpus 2)");
        return;
    };
    crate::println!(
        "vcpu-stack-guard: vCPU {GUARD_VCPU} reads the guard page below its trap stack at {guard:#x}"
    );
    if let Err(e) = smp::post(GUARD_VCPU, read_own_trap_stack_guard) {
        check!(Error, "vcpu-stack-guard: handing vCPU {GUARD_VCPU} the job: {e:?}");
        return;
    }
    match events::wait_until(|| smp::is_idle(GUARD_VCPU), time::now_ns() + WAIT_NS) {
        Ok(true) => check!(
            Failure,
            "vcpu-stack-guard: vCPU {GUARD_VCPU} read the page below its trap stack and went on"
        ),
        Ok(false) => check!(Failure, "vcpu-stack-guard: no crash report and no end of the job"),
        Err(e) => check!(Error, "vcpu-stack-guard: waiting (timer): {e}"),
    }
}

/// Like `vcpu-stack-guard`, but vCPU 0 holds the console's lock while vCPU 1 crashes, as a print
/// stuck on vCPU 0 would: the crash path must not break a lock another vCPU holds, and must not
/// wait for it forever either. After its bounded wait it reports through a console of its own
/// in front of the same sink, so the report (naming vCPU 1 and its guard) is still heard.
fn vcpu_crashes_while_vcpu_0_holds_the_console() {
    use crate::arch::x86_64::smp;
    use crate::xen::{console, events, time};
    const WAIT_NS: u64 = 30_000_000_000;
    if smp::trap_stack_guard(GUARD_VCPU).filter(|_| smp::is_free(GUARD_VCPU)).is_none() {
        check!(Skip, "vcpu-crash-console-held: vCPU {GUARD_VCPU} is not online (--vcpus 2)");
        return;
    }
    crate::println!(
        "vcpu-crash-console-held: vCPU 0 holds the console; vCPU {GUARD_VCPU} reads its trap stack's guard page"
    );
    let held = console::hold();
    let posted = smp::post(GUARD_VCPU, read_own_trap_stack_guard);
    // Nothing prints while `held` lives: the outcome is printed after it is dropped.
    let waited =
        posted.map(|()| events::wait_until(|| smp::is_idle(GUARD_VCPU), time::now_ns() + WAIT_NS));
    drop(held);
    match waited {
        Err(e) => check!(Error, "vcpu-crash-console-held: handing vCPU {GUARD_VCPU} the job: {e:?}"),
        Ok(Ok(true)) => check!(
            Failure,
            "vcpu-crash-console-held: vCPU {GUARD_VCPU} read the page below its trap stack and went on"
        ),
        Ok(Ok(false)) => check!(
            Failure,
            "vcpu-crash-console-held: no crash report within 30 s while vCPU 0 held the console"
        ),
        Ok(Err(e)) => check!(Error, "vcpu-crash-console-held: waiting (timer): {e}"),
    }
}

/// The job: a read of the page right below the running vCPU's trap stack.
fn read_own_trap_stack_guard() {
    let n = crate::xen::vcpu::current();
    if let Some(guard) = crate::arch::x86_64::smp::trap_stack_guard(n) {
        // SAFETY: a read of one byte of the page below this vCPU's trap stack, a heap page of
        // the stack's own allocation: it is unmapped (reaching it is the point of the test), or,
        // if the guard is broken, mapped and ours; a read changes nothing.
        let _ = unsafe { core::ptr::read_volatile((guard + PAGE_SIZE - 8) as *const u64) };
    }
}

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
        check!(
            Success,
            "timer: woke after {} us through {upcalls} upcall(s), {blocks} block(s)",
            elapsed / 1000
        );
    } else {
        check!(
            Failure,
            "timer: {} timer events, {} us elapsed (wanted 1 event after >= 5000 us)",
            after - before,
            elapsed / 1000
        );
    }
}

/// The user code of `user_mode_round_trip`: asks the kernel to add one to 41 (test syscall
/// 1000), then exits with the answer. It lives in the kernel image, which the user page tables
/// of this self-test also map (Xen marks every PV L1 entry user-accessible).
#[unsafe(naked)]
extern "C" fn user_probe() {
    core::arch::naked_asm!(
        "mov edi, 41",
        "mov eax, 1000",
        "syscall",
        "mov rdi, rax",
        "mov eax, 60",
        "syscall",
        "ud2",
    )
}

fn user_probe_syscall(frame: &mut TrapFrame) -> AfterTrap {
    match frame.rax {
        1000 => {
            frame.rax = frame.rdi + 1;
            AfterTrap::Resume
        }
        60 => AfterTrap::EndRun(frame.rdi),
        _ => AfterTrap::EndRun(u64::MAX),
    }
}

/// The probe's exceptions and timer events: none is expected; an exception ends the run with a
/// value the check refuses.
fn user_probe_exception(frame: &mut TrapFrame) -> AfterTrap {
    AfterTrap::EndRun(0xdead_0000 | frame.vector)
}

fn user_probe_timer(_: &mut TrapFrame) -> AfterTrap {
    AfterTrap::Resume
}

static USER_PROBE_HANDLERS: UserHandlers = UserHandlers {
    syscall: user_probe_syscall,
    exception: user_probe_exception,
    event: user_probe_timer,
};

const PROBE_STACK_BYTES: usize = 4 * PAGE_SIZE as usize;
static PROBE_USER_STACK: StackPages<PROBE_STACK_BYTES> = StackPages::new();
static PROBE_TRAP_STACK: StackPages<PROBE_STACK_BYTES> = StackPages::new();

/// Enters user mode with the kernel's own L4 as the user base pointer (no isolation: this
/// only proves the transitions), runs `user_probe`, and checks the value it exits with.
fn user_mode_round_trip(kernel_l4_mfn: u64) {
    use crate::arch::x86_64::user;
    use crate::mm::{Mfn, MmuExtOp, XenMmu};
    let user_stack_top = PROBE_USER_STACK.range().end;
    let trap_stack = PROBE_TRAP_STACK.range();
    let trap_stack_top = trap_stack.end;
    crate::arch::x86_64::crash::register_stack(trap_stack);
    if let Err(e) = user::set_kernel_stack(trap_stack_top) {
        check!(Error, "user: HYPERVISOR_stack_switch: {e}");
        return;
    }
    if let Err(e) = crate::mm::hypercall_mmu::HypercallMmu
        .mmuext_op(&[MmuExtOp::NewUserBaseptr(Mfn(kernel_l4_mfn))])
    {
        check!(Error, "user: MMUEXT_NEW_USER_BASEPTR: {e:?}");
        return;
    }
    let entry = user::UserEntry {
        rip: user_probe as *const () as u64,
        rsp: user_stack_top,
        rflags: user::USER_RFLAGS,
    };
    let value = user::run(&entry, &USER_PROBE_HANDLERS);
    if value == 42 {
        check!(
            Success,
            "user: iret to user mode, syscall 1000 returned 42 to user mode, exit(42) came back"
        );
    } else {
        check!(Failure, "user: expected exit(42) from user mode, got {value:#x}");
    }
}

/// Prints 5000 numbered lines as fast as the console takes them; the host counts them. On a
/// DomU this overruns the 2 KiB console ring many times over, so it proves the ring waits for
/// room instead of dropping output.
fn console_flood() {
    const LINES: u32 = 5000;
    for i in 0..LINES {
        crate::println!("flood {i:05} of {LINES}: the quick brown fox jumps over the lazy dog");
    }
    let lost = crate::xen::console_ring::CONSOLE_RING.lost_bytes();
    if lost == 0 {
        check!(Success, "flood: {LINES} lines written, 0 bytes dropped by the console");
    } else {
        check!(Failure, "flood: {LINES} lines written, {lost} bytes dropped by the console ring");
    }
}
