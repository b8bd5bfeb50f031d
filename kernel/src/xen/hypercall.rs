//! The only place that executes a hypercall: the instruction sequence and the typed calls.
//!
//! A 64-bit PV hypercall is `call hypercall_page + 32 * nr` with the arguments in rdi, rsi, rdx,
//! r10, r8 and the result in rax (Xen public/arch-x86/xen-x86_64.h). Xen's stub saves rcx/r11
//! around its `syscall`, but a debug Xen poisons the argument registers it did not use, so all
//! five are declared clobbered. Every result goes through `XenError::check`.
#![allow(clippy::too_many_arguments)]

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::abi::{self, mmuext_op, trap_info, MmuUpdate};
use super::error::XenError;
use super::vcpu::{self, MAX_VCPUS};
use crate::testing::inject::{self, Point};

/// What the fault-injection points of this file send instead (see `testing::inject`): requests
/// that Xen itself refuses, so that an injected failure is Xen's own errno.
const INVALID_PORT: u32 = u32::MAX;
/// Past NR_VIRQS (24): EVTCHNOP_bind_virq refuses it.
const INVALID_VIRQ: u32 = 0xffff;
/// No such vCPU: EVTCHNOP_bind_ipi refuses it (ENOENT).
const INVALID_VCPU: u32 = u32::MAX;
/// No such console_io command: Xen answers ENOSYS.
const INVALID_CONSOLEIO_CMD: u64 = 0xdead;

extern "C" {
    /// The page Xen fills with one 32-byte entry per hypercall (boot/head.S).
    static hypercall_page: [u8; abi::PAGE_SIZE as usize];
}

/// Hypercalls issued, per vCPU and hypercall number (for the `stats:` line and the
/// benchmarks). Each vCPU counts its own, so that a count taken on vCPU 0 around a piece of work
/// (a test, a benchmark) holds only that work's calls, whatever the other vCPUs do meanwhile
/// (an idle vCPU's SCHEDOP_block lands at any time).
static CALLS_BY_NR: [[AtomicU64; 64]; MAX_VCPUS] =
    [const { [const { AtomicU64::new(0) }; 64] }; MAX_VCPUS];

/// How many times the running vCPU has issued hypercall `nr` since boot.
pub fn count(nr: u32) -> u64 {
    CALLS_BY_NR[vcpu::current()].get(nr as usize).map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Returns through `HYPERVISOR_iret` (boot/entry.S `trap_return`) per vCPU, counted apart: every
/// trap and event pays one, so the other counts leave it out.
static IRETS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// Counts one return through `HYPERVISOR_iret` of the running vCPU, just before it is issued.
pub fn note_iret() {
    IRETS[vcpu::current()].fetch_add(1, Ordering::Relaxed);
}

/// The running vCPU's returns through `HYPERVISOR_iret` since boot.
pub fn irets() -> u64 {
    IRETS[vcpu::current()].load(Ordering::Relaxed)
}

/// Hypercalls the running vCPU issued since boot, all kinds but the iret (see [`irets`]).
pub fn total() -> u64 {
    CALLS_BY_NR[vcpu::current()].iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// True once Xen has written the hypercall page. Until then every entry is the `ret` (0xc3)
/// that boot/head.S put there, and a "hypercall" would return garbage in rax.
pub fn page_is_written() -> bool {
    // SAFETY: the hypercall page is part of our image and always mapped; a volatile read of
    // one byte has no side effect and is not cached across Xen's write.
    let first =
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!(hypercall_page).cast::<u8>()) };
    first != 0xc3
}

/// The 32 bytes of the hypercall page that hypercall `nr` runs through: where an event or NMI
/// Xen delivers on the hypercall's return interrupts the guest.
pub fn page_entry(nr: u32) -> core::ops::Range<u64> {
    let start = core::ptr::addr_of!(hypercall_page) as u64 + 32 * u64::from(nr);
    start..start + 32
}

/// Issues hypercall `nr` with five arguments and returns Xen's raw result.
///
/// # Safety
/// The arguments must be valid for hypercall `nr`: pointers must point at memory of the type
/// and size Xen expects for it, live for the whole call.
#[inline]
pub unsafe fn raw(nr: u32, a1: u64, a2: u64, a3: u64, a4: u64, a5: u64) -> i64 {
    // `get` twice: a vCPU whose %gs is wrong (which its bring-up reports) still makes calls.
    let by_nr = CALLS_BY_NR.get(vcpu::current());
    if let Some(counter) = by_nr.and_then(|by_nr| by_nr.get(nr as usize)) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let entry = page_entry(nr).start;
    let ret: i64;
    // SAFETY: `entry` is inside the hypercall page that Xen wrote (checked at boot); the
    // caller guarantees the arguments. The call uses our stack (no red zone in this kernel),
    // and may read or write any memory the arguments point at (no `nomem`).
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            inlateout("r10") a4 => _,
            inlateout("r8") a5 => _,
            lateout("rax") ret,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

/// HYPERVISOR_console_io(CONSOLEIO_write): dom0's console, written to Xen's serial line.
pub fn console_write(bytes: &[u8]) -> Result<(), XenError> {
    let cmd = if inject::fail(Point::Console) {
        INVALID_CONSOLEIO_CMD
    } else {
        u64::from(abi::CONSOLEIO_write)
    };
    // SAFETY: Xen reads `len` bytes from the buffer, which lives for the call.
    let ret = unsafe {
        raw(abi::__HYPERVISOR_console_io, cmd, bytes.len() as u64, bytes.as_ptr() as u64, 0, 0)
    };
    XenError::check(ret).map(drop)
}

/// HYPERVISOR_xen_version with no argument buffer (e.g. XENVER_version).
pub fn xen_version(cmd: u32) -> Result<u64, XenError> {
    // SAFETY: commands without an argument take a NULL pointer.
    XenError::check(unsafe { raw(abi::__HYPERVISOR_xen_version, u64::from(cmd), 0, 0, 0, 0) })
}

/// HYPERVISOR_xen_version(XENVER_extraversion): fills a 16-byte string.
pub fn xen_extraversion(buf: &mut [u8; abi::XEN_EXTRAVERSION_LEN]) -> Result<(), XenError> {
    // SAFETY: Xen writes at most 16 bytes (xen_extraversion_t) into `buf`.
    let ret = unsafe {
        raw(
            abi::__HYPERVISOR_xen_version,
            u64::from(abi::XENVER_EXTRAVERSION),
            buf.as_mut_ptr() as u64,
            0,
            0,
            0,
        )
    };
    XenError::check(ret).map(drop)
}

/// HYPERVISOR_sched_op(SCHEDOP_shutdown). Returns only if Xen refuses.
pub fn shutdown(reason: u32) -> XenError {
    let arg = abi::sched_shutdown { reason };
    // SAFETY: Xen reads a `struct sched_shutdown` through the pointer (public/sched.h; the
    // reason is NOT passed by value).
    let ret = unsafe {
        raw(
            abi::__HYPERVISOR_sched_op,
            u64::from(abi::SCHEDOP_shutdown),
            core::ptr::addr_of!(arg) as u64,
            0,
            0,
            0,
        )
    };
    match XenError::check(ret) {
        Err(e) => e,
        Ok(_) => XenError::EINVAL,
    }
}

/// HYPERVISOR_sched_op(SCHEDOP_yield).
pub fn sched_yield() -> Result<(), XenError> {
    // SAFETY: SCHEDOP_yield takes no argument.
    XenError::check(unsafe {
        raw(abi::__HYPERVISOR_sched_op, u64::from(abi::SCHEDOP_yield), 0, 0, 0, 0)
    })
    .map(drop)
}

/// HYPERVISOR_set_trap_table. The table must end with an entry whose address is 0.
pub fn set_trap_table(table: &[trap_info]) -> Result<(), XenError> {
    assert!(table.last().is_some_and(|t| t.address == 0), "trap table needs its sentinel");
    // SAFETY: Xen reads entries up to the zero-address sentinel, which is inside `table`.
    XenError::check(unsafe {
        raw(abi::__HYPERVISOR_set_trap_table, table.as_ptr() as u64, 0, 0, 0, 0)
    })
    .map(drop)
}

/// HYPERVISOR_update_va_mapping: writes the L1 entry that maps `va` (the L1 must exist).
pub fn update_va_mapping(va: u64, pte: u64, flags: u64) -> Result<(), XenError> {
    // SAFETY: no pointer arguments; Xen validates the new entry.
    XenError::check(unsafe { raw(abi::__HYPERVISOR_update_va_mapping, va, pte, flags, 0, 0) })
        .map(drop)
}

/// HYPERVISOR_mmu_update on our own tables. On failure returns how many entries Xen applied
/// before the first one it refused (Xen public/xen.h: the batch stops at the first failure).
pub fn mmu_update(updates: &[MmuUpdate]) -> Result<(), (u32, XenError)> {
    // SAFETY: `MmuUpdate` is `struct mmu_update` (layout asserted in xen::abi).
    unsafe { batch(abi::__HYPERVISOR_mmu_update, updates) }
}

/// HYPERVISOR_mmuext_op on our own tables (pin/unpin, base pointers, TLB flushes).
pub fn mmuext_op(ops: &[mmuext_op]) -> Result<(), (u32, XenError)> {
    // SAFETY: `mmuext_op` is xen-sys's `struct mmuext_op` (layout asserted in xen::abi).
    unsafe { batch(abi::__HYPERVISOR_mmuext_op, ops) }
}

/// A batched MMU hypercall on DOMID_SELF: `(items, count, &done, domid)`.
///
/// # Safety
/// `T` must be the structure hypercall `nr` reads, with the C layout.
unsafe fn batch<T>(nr: u32, items: &[T]) -> Result<(), (u32, XenError)> {
    let mut done: u32 = 0;
    // SAFETY: Xen reads `len` items from `items` (of the type the caller guarantees) and
    // writes the count applied to `done`; both live for the call.
    let ret = unsafe {
        raw(
            nr,
            items.as_ptr() as u64,
            items.len() as u64,
            core::ptr::addr_of_mut!(done) as u64,
            u64::from(abi::DOMID_SELF),
            0,
        )
    };
    XenError::check(ret).map(drop).map_err(|e| (done, e))
}

/// HYPERVISOR_event_channel_op(EVTCHNOP_send): notify the other end of `port`.
pub fn evtchn_send(port: u32) -> Result<(), XenError> {
    let port = if inject::fail(Point::Evtchn) { INVALID_PORT } else { port };
    let arg = abi::evtchn_send { port };
    // SAFETY: Xen reads a `struct evtchn_send` through the pointer.
    let ret = unsafe { event_channel_op(abi::EVTCHNOP_send, core::ptr::addr_of!(arg) as u64) };
    XenError::check(ret).map(drop)
}

/// HYPERVISOR_callback_op(CALLBACKOP_register): where Xen enters us for events, the failsafe
/// path and (later) syscalls.
pub fn register_callback(kind: u16, flags: u16, address: u64) -> Result<(), XenError> {
    let arg = abi::CallbackRegister { kind, flags, address };
    // SAFETY: Xen reads a `struct callback_register` through the pointer.
    let ret = unsafe {
        raw(
            abi::HYPERVISOR_CALLBACK_OP,
            u64::from(abi::CALLBACKOP_REGISTER),
            core::ptr::addr_of!(arg) as u64,
            0,
            0,
            0,
        )
    };
    XenError::check(ret).map(drop)
}

/// HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq): binds `virq` to deliver on `vcpu` (any
/// vCPU may bind a per-vCPU VIRQ for another); returns the new port.
pub fn bind_virq(virq: u32, vcpu: u32) -> Result<u32, XenError> {
    let virq = if inject::fail(Point::Evtchn) { INVALID_VIRQ } else { virq };
    let mut arg = abi::evtchn_bind_virq { virq, vcpu, port: 0 };
    // SAFETY: Xen reads virq/vcpu and writes `port` through the pointer.
    let ret =
        unsafe { event_channel_op(abi::EVTCHNOP_bind_virq, core::ptr::addr_of_mut!(arg) as u64) };
    XenError::check(ret).map(|_| arg.port)
}

/// HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi): a new port whose events are delivered to
/// `vcpu` of this domain (Xen public/event_channel.h); returns it.
pub fn bind_ipi(vcpu: u32) -> Result<u32, XenError> {
    let vcpu = if inject::fail(Point::Evtchn) { INVALID_VCPU } else { vcpu };
    let mut arg = abi::evtchn_bind_ipi { vcpu, port: 0 };
    // SAFETY: Xen reads `vcpu` and writes `port` through the pointer.
    let ret =
        unsafe { event_channel_op(abi::EVTCHNOP_bind_ipi, core::ptr::addr_of_mut!(arg) as u64) };
    XenError::check(ret).map(|_| arg.port)
}

/// HYPERVISOR_event_channel_op(EVTCHNOP_close): frees `port` of this domain.
pub fn evtchn_close(port: u32) -> Result<(), XenError> {
    let arg = abi::evtchn_close { port };
    // SAFETY: Xen reads a `struct evtchn_close` through the pointer.
    let ret = unsafe { event_channel_op(abi::EVTCHNOP_close, core::ptr::addr_of!(arg) as u64) };
    XenError::check(ret).map(drop)
}

/// HYPERVISOR_event_channel_op(EVTCHNOP_unmask): Xen re-raises the event if it is pending.
pub fn evtchn_unmask(port: u32) -> Result<(), XenError> {
    let port = if inject::fail(Point::Evtchn) { INVALID_PORT } else { port };
    let arg = abi::evtchn_unmask { port };
    // SAFETY: Xen reads a `struct evtchn_unmask` through the pointer.
    let ret = unsafe { event_channel_op(abi::EVTCHNOP_unmask, core::ptr::addr_of!(arg) as u64) };
    XenError::check(ret).map(drop)
}

/// HYPERVISOR_event_channel_op(cmd, arg).
///
/// # Safety
/// `arg` must point at the structure `cmd` reads or writes (Xen public/event_channel.h), live
/// for the call.
unsafe fn event_channel_op(cmd: u32, arg: u64) -> i64 {
    // SAFETY: the caller guarantees `arg` for `cmd`.
    unsafe { raw(abi::__HYPERVISOR_event_channel_op, u64::from(cmd), arg, 0, 0, 0) }
}

/// HYPERVISOR_set_timer_op: a one-shot timer at absolute system time `deadline_ns` (0 cancels).
pub fn set_timer_op(deadline_ns: u64) -> Result<(), XenError> {
    // SAFETY: no pointer arguments.
    XenError::check(unsafe { raw(abi::__HYPERVISOR_set_timer_op, deadline_ns, 0, 0, 0, 0) })
        .map(drop)
}

/// HYPERVISOR_sched_op(SCHEDOP_block): sleeps until an event is pending. Called with events
/// masked, Xen unmasks them atomically with the check (public/sched.h), so no wake-up is lost.
pub fn sched_block() -> Result<(), XenError> {
    // SAFETY: SCHEDOP_block takes no argument.
    XenError::check(unsafe {
        raw(abi::__HYPERVISOR_sched_op, u64::from(abi::SCHEDOP_block), 0, 0, 0, 0)
    })
    .map(drop)
}

/// HYPERVISOR_stack_switch: the stack (ss:rsp) Xen uses when user mode enters the kernel.
pub fn stack_switch(ss: u64, rsp: u64) -> Result<(), XenError> {
    // SAFETY: no pointer arguments; Xen records the values.
    XenError::check(unsafe { raw(abi::__HYPERVISOR_stack_switch, ss, rsp, 0, 0, 0) }).map(drop)
}

/// HYPERVISOR_set_segment_base: e.g. SEGBASE_FS for arch_prctl(ARCH_SET_FS).
pub fn set_segment_base(which: u32, base: u64) -> Result<(), XenError> {
    // SAFETY: no pointer arguments.
    XenError::check(unsafe {
        raw(abi::__HYPERVISOR_set_segment_base, u64::from(which), base, 0, 0, 0)
    })
    .map(drop)
}

/// HYPERVISOR_memory_op(XENMEM_machphys_mapping): where the m2p is and the highest machine
/// frame it covers (Xen public/memory.h, struct xen_machphys_mapping).
pub fn machphys_mapping() -> Result<abi::MachphysMapping, XenError> {
    let mut arg = abi::MachphysMapping { v_start: 0, v_end: 0, max_mfn: 0 };
    // SAFETY: Xen writes a `struct xen_machphys_mapping` through the pointer.
    let ret = unsafe {
        raw(
            abi::__HYPERVISOR_memory_op,
            u64::from(abi::XENMEM_MACHPHYS_MAPPING),
            core::ptr::addr_of_mut!(arg) as u64,
            0,
            0,
            0,
        )
    };
    XenError::check(ret).map(|_| arg)
}

/// HYPERVISOR_vcpu_op(VCPUOP_stop_periodic_timer) on `vcpu` (Xen public/vcpu.h).
pub fn stop_periodic_timer(vcpu: u32) -> Result<(), XenError> {
    // SAFETY: this command takes no argument structure.
    XenError::check(unsafe { vcpu_op(abi::VCPUOP_STOP_PERIODIC_TIMER, vcpu, 0) }).map(drop)
}

/// HYPERVISOR_vcpu_op(VCPUOP_is_up): whether `vcpu` is up; `Err(ENOENT)` when the domain has
/// no such vCPU (Xen's x86 do_vcpu_op looks the vCPU up before any command).
pub fn vcpu_is_up(vcpu: u32) -> Result<bool, XenError> {
    // SAFETY: this command takes no argument structure.
    XenError::check(unsafe { vcpu_op(abi::VCPUOP_IS_UP, vcpu, 0) }).map(|up| up != 0)
}

/// HYPERVISOR_vcpu_op(VCPUOP_initialise): gives `vcpu` its first register state, page-table
/// base, trap table and callbacks. Once per vCPU (Xen answers EEXIST after that).
pub fn vcpu_initialise(vcpu: u32, context: &abi::VcpuGuestContext) -> Result<(), XenError> {
    // SAFETY: Xen copies a `struct vcpu_guest_context` (layout asserted in xen::abi) from the
    // pointer during the call; `context` lives for the call.
    XenError::check(unsafe {
        vcpu_op(abi::VCPUOP_INITIALISE, vcpu, core::ptr::from_ref(context) as u64)
    })
    .map(drop)
}

/// HYPERVISOR_vcpu_op(VCPUOP_up): makes an initialised `vcpu` runnable.
pub fn vcpu_up(vcpu: u32) -> Result<(), XenError> {
    // SAFETY: this command takes no argument structure.
    XenError::check(unsafe { vcpu_op(abi::VCPUOP_UP, vcpu, 0) }).map(drop)
}

/// HYPERVISOR_vcpu_op(VCPUOP_set_singleshot_timer): the one-shot timer of `vcpu`, which must be
/// the calling vCPU (Xen answers EINVAL otherwise), at absolute system time `deadline_ns`.
pub fn set_singleshot_timer(vcpu: u32, deadline_ns: u64) -> Result<(), XenError> {
    let arg = abi::VcpuSetSingleshotTimer { timeout_abs_ns: deadline_ns, flags: 0 };
    // SAFETY: Xen reads a `struct vcpu_set_singleshot_timer` through the pointer.
    XenError::check(unsafe {
        vcpu_op(abi::VCPUOP_SET_SINGLESHOT_TIMER, vcpu, core::ptr::addr_of!(arg) as u64)
    })
    .map(drop)
}

/// HYPERVISOR_vcpu_op(cmd, vcpu, arg).
///
/// # Safety
/// `arg` must be 0 or point at the structure `cmd` reads or writes, live for the call.
unsafe fn vcpu_op(cmd: u32, vcpu: u32, arg: u64) -> i64 {
    // SAFETY: the caller guarantees `arg` for `cmd`.
    unsafe { raw(abi::__HYPERVISOR_vcpu_op, u64::from(cmd), u64::from(vcpu), arg, 0, 0) }
}

/// HYPERVISOR_vcpu_op(VCPUOP_send_nmi) to `vcpu` of this domain (Xen public/vcpu.h): Xen
/// delivers it through the NMI callback on the vCPU's next return to the guest.
pub fn send_nmi(vcpu: u32) -> Result<(), XenError> {
    // SAFETY: this command takes no argument structure.
    XenError::check(unsafe {
        raw(abi::__HYPERVISOR_vcpu_op, u64::from(abi::VCPUOP_SEND_NMI), u64::from(vcpu), 0, 0, 0)
    })
    .map(drop)
}
