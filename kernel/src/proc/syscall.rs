//! Linux x86_64 system calls for test programs: decoded by `syscall_abi`, carried out here.

use core::sync::atomic::Ordering;

use super::expectation::{Access, Cause, Outcome};
use super::futex::{self, WaitEnd};
use super::process::{self, SegmentBase, COUNTERS};
use super::syscall_abi::{
    self, counters, ArchPrctl, Clock, Errno, FutexOp, Iovec, SysResult, Syscall, Timespec,
    UnknownSyscall,
};
use super::thread::{self, PID};
use crate::arch::x86_64::trap_frame::TrapFrame;
use crate::arch::x86_64::user::AfterTrap;
use crate::mm::address_space::MapRequest;
use crate::xen::{events, hypercall, time};

/// The syscall entry's handler: rax = number, rdi, rsi, rdx, r10, r8, r9 = arguments; the
/// result goes back in rax (a negative errno on failure), as on Linux.
pub fn dispatch(frame: &mut TrapFrame) -> AfterTrap {
    COUNTERS.syscalls.fetch_add(1, Ordering::Relaxed);
    let args = [frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9];
    let result = match Syscall::decode(frame.rax, args) {
        Ok(Syscall::Exit { status }) => return process::end_thread(status),
        Ok(Syscall::ExitGroup { status }) => return process::end(Outcome::Exited(status)),
        Ok(Syscall::Unknown { nr }) => {
            crate::println!("# {}: {}", process::name(), UnknownSyscall { nr, rip: frame.rip });
            Err(Errno::ENOSYS)
        }
        Ok(call) => carry_out(call, frame),
        Err(e) => Err(e),
    };
    if let Some(end) = process::ended() {
        // The watchdog ended the program during the call.
        return end;
    }
    crate::testing::inject::syscall_result(result.err().map(|e| e as i64));
    frame.rax = syscall_abi::to_rax(result);
    AfterTrap::Resume
}

/// Carries out `call`; `frame` holds the caller's registers (a new thread starts with them),
/// its rip is where the program made the call (the instruction after `syscall`), named in the
/// kill line if the watchdog ends the program during the call.
fn carry_out(call: Syscall, frame: &TrapFrame) -> SysResult {
    let rip = frame.rip;
    match call {
        Syscall::Write { buf, count, .. } => write(buf, count, &Watchdog::new(rip)),
        Syscall::Writev { iov, iovcnt, .. } => writev(iov, iovcnt, &Watchdog::new(rip)),
        Syscall::Mmap(request) => mmap(request),
        Syscall::Munmap { range } => process::munmap(range).map(|()| 0),
        Syscall::Mprotect { range, prot } => process::mprotect(range, prot).map(|()| 0),
        Syscall::Brk { requested } => Ok(process::brk(requested)),
        Syscall::ArchPrctl(ArchPrctl::SetFs { base }) => {
            process::set_segment_base(SegmentBase::Fs, base).map(|()| 0)
        }
        Syscall::ArchPrctl(ArchPrctl::SetGs { base }) => {
            process::set_segment_base(SegmentBase::Gs, base).map(|()| 0)
        }
        Syscall::ArchPrctl(ArchPrctl::GetFs { out }) => {
            process::copy_to_user(out, &process::segment_base(SegmentBase::Fs).to_le_bytes())
                .map(|()| 0)
        }
        Syscall::ArchPrctl(ArchPrctl::GetGs { out }) => {
            process::copy_to_user(out, &process::segment_base(SegmentBase::Gs).to_le_bytes())
                .map(|()| 0)
        }
        Syscall::SetTidAddress { addr } => Ok(thread::set_clear_tid(addr)),
        Syscall::GetPid => Ok(PID),
        Syscall::GetTid => Ok(thread::tid()),
        Syscall::Clone(request) => thread::clone(frame, request),
        Syscall::Futex(FutexOp::Wait { addr, expected, timeout }) => {
            futex_wait(addr, expected, timeout, &Watchdog::new(rip))
        }
        Syscall::Futex(FutexOp::Wake { addr, count }) => Ok(futex::wake(addr, count)),
        Syscall::Futex(FutexOp::Requeue { addr, wake, requeue, to, expected }) => {
            futex::requeue(addr, wake, requeue, to, expected)
        }
        Syscall::RtSigprocmask { how, set, old } => rt_sigprocmask(how, set, old),
        Syscall::SchedYield => {
            if let Err(e) = hypercall::sched_yield() {
                process::kernel_error("SCHEDOP_yield", Some(e));
            }
            Ok(0)
        }
        Syscall::ClockGettime { clock, out } => {
            let ns = match clock {
                Clock::Realtime => {
                    crate::xen::shared_info::wallclock_ns().unwrap_or(0) + time::now_ns()
                }
                Clock::Monotonic | Clock::CpuTime => time::now_ns(),
            };
            process::copy_to_user(out, &Timespec::from_ns(ns).to_bytes()).map(|()| 0)
        }
        Syscall::Nanosleep { request, .. } => nanosleep(request, &Watchdog::new(rip)),
        Syscall::Ioctl => Err(Errno::ENOTTY),
        Syscall::FaultlineCounters { out, count } => faultline_counters(out, count),
        Syscall::Exit { .. } | Syscall::ExitGroup { .. } | Syscall::Unknown { .. } => {
            unreachable!("handled by dispatch")
        }
    }
}

/// The program's deadline, for a system call that may work long for it: events are masked in
/// the kernel, so the timer cannot stop such a call; the call itself looks at the clock between
/// pieces of work and ends the program once the deadline has passed. The slack past the budget
/// is then one piece of work (at most [`OUTPUT_CHUNK_BYTES`] of console output).
struct Watchdog {
    deadline_ns: u64,
    rip: u64,
}

impl Watchdog {
    fn new(rip: u64) -> Watchdog {
        Watchdog { deadline_ns: process::deadline_ns(), rip }
    }

    /// Ends the program if its deadline has passed, saying how late the check came: the end
    /// is recorded and the call stops with EINTR, which the program never sees (`dispatch`
    /// ends the run instead of returning it). A program another thread ended stops the call
    /// the same way, at once: its vCPU must leave the program for the address space to go.
    fn check(&self) -> Result<(), Errno> {
        if process::is_over() {
            return Err(Errno::EINTR);
        }
        let now = time::now_ns();
        if now >= self.deadline_ns {
            let late_us = (now - self.deadline_ns) / 1000;
            crate::println!(
                "# {}: watchdog: the deadline passed {late_us} us before the check in the system call at rip {:#x}",
                process::name(),
                self.rip
            );
            let _ = process::end(Outcome::Killed { cause: Cause::Watchdog, rip: self.rip });
            return Err(Errno::EINTR);
        }
        Ok(())
    }
}

/// How much output `write` copies and prints between two looks at the deadline.
const OUTPUT_CHUNK_BYTES: usize = 256;

/// Program output goes to the console as TAP comment lines (`# ` first), so it can never be
/// taken for a verdict line.
fn write(buf: u64, count: u64, watchdog: &Watchdog) -> SysResult {
    syscall_abi::user_range(buf, count)?;
    process::check_user(buf, count as usize, Access::Read)?;
    let mut chunk = [0u8; OUTPUT_CHUNK_BYTES];
    let mut done = 0;
    while done < count {
        watchdog.check()?;
        let n = (count - done).min(chunk.len() as u64) as usize;
        process::copy_from_user(buf + done, &mut chunk[..n])?;
        OUTPUT.lock().push(&chunk[..n]);
        done += n as u64;
    }
    Ok(count)
}

fn writev(iov: u64, iovcnt: u64, watchdog: &Watchdog) -> SysResult {
    // Every iovec is read and its length checked first, then every buffer, before anything is
    // written: Linux's order (lib/iov_iter.c: copy_iovec_from_user refuses a negative length
    // with EINVAL, then access_ok each buffer with EFAULT).
    for i in 0..iovcnt {
        let v = iovec(iov, i)?;
        syscall_abi::iovec_len(v.len)?;
    }
    for i in 0..iovcnt {
        watchdog.check()?;
        let v = iovec(iov, i)?;
        syscall_abi::user_range(v.base, v.len)?;
        process::check_user(v.base, v.len as usize, Access::Read)?;
    }
    let mut total = 0;
    for i in 0..iovcnt {
        let v = iovec(iov, i)?;
        total += write(v.base, v.len, watchdog)?;
    }
    Ok(total)
}

/// The `index`th iovec of the array at `iov`.
fn iovec(iov: u64, index: u64) -> Result<Iovec, Errno> {
    let mut raw = [0u8; Iovec::SIZE];
    process::copy_from_user(iov + index * Iovec::SIZE as u64, &mut raw)?;
    Ok(Iovec::from_bytes(raw))
}

fn mmap(request: syscall_abi::MmapRequest) -> SysResult {
    process::mmap(MapRequest {
        placement: request.placement,
        len: request.len,
        prot: request.prot,
        populate: request.populate,
    })
}

/// faultline's counters since boot, for programs that measure what a call cost (docs/abi.md,
/// `faultline_abi::syscall::counters`). Checked whole before anything is written.
fn faultline_counters(out: u64, count: u64) -> SysResult {
    let n = count.min(counters::COUNT as u64) as usize;
    let len = n * 8;
    process::check_user(out, len, Access::Write)?;
    let (entries, ops) = crate::mm::kernel::batch_entries();
    let irets = hypercall::irets();
    let mut values = [0u64; counters::COUNT];
    values[counters::HYPERCALLS] = hypercall::total() + irets;
    values[counters::MMU_UPDATE_CALLS] = hypercall::count(crate::xen::abi::__HYPERVISOR_mmu_update);
    values[counters::MMU_UPDATE_ENTRIES] = entries;
    values[counters::MMUEXT_CALLS] = hypercall::count(crate::xen::abi::__HYPERVISOR_mmuext_op);
    values[counters::MMUEXT_OPS] = ops;
    values[counters::UPDATE_VA_MAPPING_CALLS] =
        hypercall::count(crate::xen::abi::__HYPERVISOR_update_va_mapping);
    values[counters::IRETS] = irets;
    values[counters::USER_FAULTS] = COUNTERS.user_faults.load(Ordering::Relaxed);
    let (tables_built, shootdowns) = crate::mm::kernel::smp_counts();
    values[counters::TABLES_BUILT] = tables_built;
    values[counters::TLB_SHOOTDOWNS] = shootdowns;
    values[counters::IPIS_SENT] = crate::xen::events::ipis_sent();
    let mut bytes = [0u8; counters::COUNT * 8];
    for (chunk, value) in bytes.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    process::copy_to_user(out, &bytes[..len])?;
    Ok(counters::COUNT as u64)
}

/// Sleeps on the timer event channel; the watchdog still applies (and with it the program's end
/// by another thread, whose IPI wakes the block).
fn nanosleep(request: u64, watchdog: &Watchdog) -> SysResult {
    let mut raw = [0u8; Timespec::SIZE];
    process::copy_from_user(request, &mut raw)?;
    let wake = time::now_ns().saturating_add(Timespec::from_bytes(raw)?.to_ns());
    let deadline = watchdog.deadline_ns;
    loop {
        watchdog.check()?;
        let now = time::now_ns();
        if now >= wake {
            // Back to the watchdog's deadline for the rest of the run.
            if let Err(e) = events::set_timer(deadline) {
                process::kernel_error("re-arming the watchdog timer", Some(e));
            }
            return Ok(0);
        }
        if let Err(e) = events::set_timer(wake.min(deadline)).and_then(|()| events::block()) {
            process::kernel_error("sleeping on the timer (set_timer_op / SCHEDOP_block)", Some(e));
            return Err(Errno::EINVAL);
        }
    }
}

/// FUTEX_WAIT with an optional relative timeout (a [`Timespec`] at `timeout`, 0 for none).
fn futex_wait(addr: u64, expected: u32, timeout: u64, watchdog: &Watchdog) -> SysResult {
    let wake_at = match timeout {
        0 => None,
        at => {
            let mut raw = [0u8; Timespec::SIZE];
            process::copy_from_user(at, &mut raw)?;
            Some(time::now_ns().saturating_add(Timespec::from_bytes(raw)?.to_ns()))
        }
    };
    match futex::wait(addr, expected, wake_at, watchdog.deadline_ns)? {
        WaitEnd::Woken => Ok(0),
        WaitEnd::TimedOut => Err(Errno::ETIMEDOUT),
        WaitEnd::Interrupted => {
            // Past the deadline the watchdog ends the program here; if another thread ended
            // it, `dispatch` sees that. Either way the program never sees EINTR.
            watchdog.check()?;
            Err(Errno::EINTR)
        }
    }
}

/// rt_sigprocmask on the calling thread's mask: the new set is read first (EFAULT), then the
/// mask changes (EINVAL for an unknown `how`), then the old mask is stored (EFAULT), in
/// Linux's order (kernel/signal.c).
fn rt_sigprocmask(how: u64, set: u64, old: u64) -> SysResult {
    let new_set = match set {
        0 => None,
        at => {
            let mut raw = [0u8; 8];
            process::copy_from_user(at, &mut raw)?;
            Some(u64::from_le_bytes(raw))
        }
    };
    let previous = thread::change_signal_mask(|mask| {
        new_set.map(|set| syscall_abi::new_signal_mask(how, mask, set)).transpose()
    })?;
    if old != 0 {
        process::copy_to_user(old, &previous.to_le_bytes())?;
    }
    Ok(0)
}

/// Program output, cut into lines that each go out as one `# ` comment.
pub static OUTPUT: spin::Mutex<LineOut> = spin::Mutex::new(LineOut { line: [0; 160], len: 0 });

pub struct LineOut {
    line: [u8; 160],
    len: usize,
}

impl LineOut {
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' || self.len == self.line.len() {
                self.flush();
                if b == b'\n' {
                    continue;
                }
            }
            self.line[self.len] = b;
            self.len += 1;
        }
    }

    /// Prints what is buffered, escaped: a program's bytes never reach the terminal raw.
    pub fn flush(&mut self) {
        let text = crate::fmt_buf::Escaped(&self.line[..self.len]);
        crate::println!("# {}: {text}", process::name());
        self.len = 0;
    }

    /// Prints a last line that had no newline. Called while the program is still the running
    /// one, so that the line carries its name.
    pub fn finish(&mut self) {
        if self.len != 0 {
            self.flush();
        }
    }
}
