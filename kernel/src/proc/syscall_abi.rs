//! The Linux x86_64 system call ABI test programs use: names, and the pure decoding and checking
//! of arguments (the numbers, errno values and flags are faultline-abi's). No kernel state here: the kernel acts on a [`Syscall`].
//!
//! Entry: `syscall` with the number in rax, arguments in rdi, rsi, rdx, r10, r8, r9; result in
//! rax, `-errno` (-4095..=-1) on failure; rcx and r11 are clobbered.

use core::fmt;
use core::ops::Range;

use crate::mm::addr::{page_ceil, PAGE_SIZE};
use crate::mm::user_space::{self, USER_END, USER_START};

pub use faultline_abi::syscall::*;

/// A system call's result, before it goes into rax.
pub type SysResult = Result<u64, Errno>;

/// The rax value for `result`: the value, or `-errno`.
pub fn to_rax(result: SysResult) -> u64 {
    match result {
        Ok(value) => value,
        Err(errno) => (errno as u64).wrapping_neg(),
    }
}

/// The console streams a program may write to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

/// `PROT_*` bits, as the address space keeps them. On x86 a writable or executable page is
/// also readable.
pub use crate::mm::areas::Prot;

impl Prot {
    /// Decodes `prot`; any other bit (PROT_GROWSDOWN, ...) is EINVAL.
    pub fn decode(prot: u64) -> Result<Prot, Errno> {
        if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
            return Err(Errno::EINVAL);
        }
        Ok(Prot {
            read: prot & PROT_READ != 0,
            write: prot & PROT_WRITE != 0,
            exec: prot & PROT_EXEC != 0,
        })
    }
}

/// Flags accepted and ignored: hints with no effect on a demand-paged private mapping.
const MAP_IGNORED: u64 = MAP_DENYWRITE | MAP_EXECUTABLE | MAP_NORESERVE | MAP_STACK;

/// Where an mmap goes.
pub use crate::mm::address_space::Placement;

/// A checked anonymous private mmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmapRequest {
    pub placement: Placement,
    /// Rounded up to whole pages.
    pub len: u64,
    pub prot: Prot,
    /// MAP_POPULATE: map every page at once.
    pub populate: bool,
}

impl MmapRequest {
    /// Checks mmap's arguments. Only anonymous private mappings exist: MAP_SHARED is EINVAL, a
    /// file mapping EBADF (no file descriptors).
    pub fn decode(
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        _fd: u64,
        offset: u64,
    ) -> Result<MmapRequest, Errno> {
        let known =
            MAP_TYPE | MAP_FIXED | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE | MAP_IGNORED;
        if flags & !known != 0
            || flags & MAP_TYPE != MAP_PRIVATE
            || !offset.is_multiple_of(PAGE_SIZE)
            || len == 0
        {
            return Err(Errno::EINVAL);
        }
        if flags & MAP_ANONYMOUS == 0 {
            return Err(Errno::EBADF);
        }
        let prot = Prot::decode(prot)?;
        let len = page_ceil(len).ok_or(Errno::ENOMEM)?;
        let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
        let placement = if !fixed {
            Placement::Anywhere { hint: addr }
        } else {
            if !addr.is_multiple_of(PAGE_SIZE) {
                return Err(Errno::EINVAL);
            }
            if addr < USER_START {
                return Err(Errno::EPERM);
            }
            if !user_space::is_mappable(addr, len) {
                return Err(Errno::ENOMEM);
            }
            if flags & MAP_FIXED_NOREPLACE != 0 {
                Placement::NoReplace { addr }
            } else {
                Placement::Replace { addr }
            }
        };
        Ok(MmapRequest { placement, len, prot, populate: flags & MAP_POPULATE != 0 })
    }
}

/// munmap's range: page-aligned start, non-zero length, inside user space; else EINVAL.
pub fn decode_munmap(addr: u64, len: u64) -> Result<Range<u64>, Errno> {
    if !addr.is_multiple_of(PAGE_SIZE) || len == 0 {
        return Err(Errno::EINVAL);
    }
    let end = addr
        .checked_add(len)
        .and_then(page_ceil)
        .filter(|end| *end <= USER_END)
        .ok_or(Errno::EINVAL)?;
    Ok(addr..end)
}

/// mprotect's range and protection. An empty range is fine (nothing to do); pages the kernel
/// finds unmapped in it are its ENOMEM.
pub fn decode_mprotect(addr: u64, len: u64, prot: u64) -> Result<(Range<u64>, Prot), Errno> {
    if !addr.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let prot = Prot::decode(prot)?;
    let end = addr.checked_add(len).and_then(page_ceil).ok_or(Errno::ENOMEM)?;
    if end > USER_END {
        return Err(Errno::ENOMEM);
    }
    Ok((addr..end, prot))
}

/// brk: the new break if `requested` lies in the heap reservation, else the current one (Linux
/// returns the unchanged break on failure; `brk(0)` asks for the current break).
pub fn decide_brk(requested: u64, heap: &Range<u64>, current: u64) -> u64 {
    if (heap.start..=heap.end).contains(&requested) {
        requested
    } else {
        current
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchPrctl {
    /// Set the FS base (musl's thread pointer): HYPERVISOR_set_segment_base under PV.
    SetFs {
        base: u64,
    },
    SetGs {
        base: u64,
    },
    /// Store the base at this user address.
    GetFs {
        out: u64,
    },
    GetGs {
        out: u64,
    },
}

impl ArchPrctl {
    /// A base outside user space is EPERM, as on Linux; an unknown code EINVAL.
    pub fn decode(code: u64, addr: u64) -> Result<ArchPrctl, Errno> {
        match code {
            ARCH_SET_FS | ARCH_SET_GS if addr >= USER_END => Err(Errno::EPERM),
            ARCH_SET_FS => Ok(ArchPrctl::SetFs { base: addr }),
            ARCH_SET_GS => Ok(ArchPrctl::SetGs { base: addr }),
            ARCH_GET_FS => Ok(ArchPrctl::GetFs { out: addr }),
            ARCH_GET_GS => Ok(ArchPrctl::GetGs { out: addr }),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// The clocks of clock_gettime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Wall time (CLOCK_REALTIME, _COARSE).
    Realtime,
    /// Time since boot (CLOCK_MONOTONIC, _RAW, _COARSE, CLOCK_BOOTTIME).
    Monotonic,
    /// CPU time of the program (CLOCK_PROCESS_CPUTIME_ID, CLOCK_THREAD_CPUTIME_ID).
    CpuTime,
}

impl Clock {
    pub fn decode(clock_id: u64) -> Result<Clock, Errno> {
        match clock_id {
            CLOCK_REALTIME | CLOCK_REALTIME_COARSE => Ok(Clock::Realtime),
            CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_MONOTONIC_COARSE | CLOCK_BOOTTIME => {
                Ok(Clock::Monotonic)
            }
            CLOCK_PROCESS_CPUTIME_ID | CLOCK_THREAD_CPUTIME_ID => Ok(Clock::CpuTime),
            _ => Err(Errno::EINVAL),
        }
    }
}

/// `struct timespec`: 16 bytes, seconds then nanoseconds, both i64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    pub const SIZE: usize = 16;

    pub fn from_ns(ns: u64) -> Timespec {
        Timespec { sec: (ns / 1_000_000_000) as i64, nsec: (ns % 1_000_000_000) as i64 }
    }

    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.sec.to_le_bytes());
        out[8..].copy_from_slice(&self.nsec.to_le_bytes());
        out
    }

    /// Reads a timespec a program passed (nanosleep): negative or out-of-range fields are EINVAL.
    pub fn from_bytes(bytes: [u8; 16]) -> Result<Timespec, Errno> {
        let (sec, nsec) = bytes.split_at(8);
        let sec = i64::from_le_bytes(sec.try_into().unwrap_or_default());
        let nsec = i64::from_le_bytes(nsec.try_into().unwrap_or_default());
        if sec < 0 || !(0..1_000_000_000).contains(&nsec) {
            return Err(Errno::EINVAL);
        }
        Ok(Timespec { sec, nsec })
    }

    /// The duration in nanoseconds, saturating.
    pub fn to_ns(self) -> u64 {
        (self.sec as u64).saturating_mul(1_000_000_000).saturating_add(self.nsec as u64)
    }
}

/// `struct iovec`: base then length, 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iovec {
    pub base: u64,
    pub len: u64,
}

/// Most iovecs in one writev (Linux's UIO_MAXIOV).
pub const IOV_MAX: u64 = 1024;
/// Most bytes one write moves (Linux's MAX_RW_COUNT); more is a short write.
pub const RW_COUNT_MAX: u64 = 0x7fff_f000;

impl Iovec {
    pub const SIZE: usize = 16;

    pub fn from_bytes(bytes: [u8; 16]) -> Iovec {
        let (base, len) = bytes.split_at(8);
        Iovec {
            base: u64::from_le_bytes(base.try_into().unwrap_or_default()),
            len: u64::from_le_bytes(len.try_into().unwrap_or_default()),
        }
    }
}

/// Checks one iovec's length: negative as `ssize_t` (the top bit set) is EINVAL, as Linux's
/// copy_iovec_from_user (lib/iov_iter.c) says before it looks at any buffer. A total over
/// `isize::MAX` needs such a length or a buffer past user space (EFAULT), so it never wraps.
pub fn iovec_len(len: u64) -> Result<u64, Errno> {
    if len > isize::MAX as u64 {
        return Err(Errno::EINVAL);
    }
    Ok(len)
}

/// Checks a user buffer's bounds: EFAULT unless `[ptr, ptr + len)` is inside user space. (The
/// kernel still meets EFAULT when a page in it is not mapped or not readable.)
pub fn user_range(ptr: u64, len: u64) -> Result<Range<u64>, Errno> {
    match ptr.checked_add(len) {
        Some(end) if end <= USER_END => Ok(ptr..end),
        _ => Err(Errno::EFAULT),
    }
}

/// A decoded system call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Syscall {
    /// Write `count` bytes (cut to [`RW_COUNT_MAX`]) from `buf`; returns the count written.
    Write {
        stream: Stream,
        buf: u64,
        count: u64,
    },
    /// Write `iovcnt` (<= IOV_MAX) iovecs read from `iov`; an iovec length over isize::MAX
    /// is EINVAL ([`iovec_len`]).
    Writev {
        stream: Stream,
        iov: u64,
        iovcnt: u64,
    },
    /// Ends the calling thread (`exit`); the program ends with the last one, with the low 8
    /// bits of that thread's status.
    Exit {
        status: u8,
    },
    /// Ends every thread of the program (`exit_group`) with the low 8 bits of the status.
    ExitGroup {
        status: u8,
    },
    /// A new thread ([`CloneRequest::decode`]); returns its tid, 0 in the new thread.
    Clone(CloneRequest),
    Futex(FutexOp),
    /// Change the calling thread's signal mask (`how` checked only with a `set`); the old mask
    /// goes to `old` if it is not 0.
    RtSigprocmask {
        how: u64,
        set: u64,
        old: u64,
    },
    Mmap(MmapRequest),
    Munmap {
        range: Range<u64>,
    },
    Mprotect {
        range: Range<u64>,
        prot: Prot,
    },
    /// See [`decide_brk`]; returns the break.
    Brk {
        requested: u64,
    },
    ArchPrctl(ArchPrctl),
    /// The calling thread's clear-tid address (its exit stores 0 there and wakes a futex
    /// waiter, as CLONE_CHILD_CLEARTID); returns the tid.
    SetTidAddress {
        addr: u64,
    },
    GetPid,
    GetTid,
    SchedYield,
    /// Store a [`Timespec`] at `out`.
    ClockGettime {
        clock: Clock,
        out: u64,
    },
    /// Read a [`Timespec`] at `request`; sleep; 0.
    Nanosleep {
        request: u64,
        remaining: u64,
    },
    /// Always ENOTTY: no file descriptor is a terminal.
    Ioctl,
    /// faultline's counters: up to `count` u64s stored at `out`; returns how many there are.
    FaultlineCounters {
        out: u64,
        count: u64,
    },
    /// Anything else: print [`UnknownSyscall`], return ENOSYS.
    Unknown {
        nr: u64,
    },
}

impl Syscall {
    /// Decodes `nr` and the six argument registers; the `Err` goes straight back to the program.
    pub fn decode(nr: u64, args: [u64; 6]) -> Result<Syscall, Errno> {
        let [a0, a1, a2, a3, a4, a5] = args;
        Ok(match nr {
            SYS_WRITE => {
                Syscall::Write { stream: stream(a0)?, buf: a1, count: a2.min(RW_COUNT_MAX) }
            }
            SYS_WRITEV => {
                let stream = stream(a0)?;
                if a2 > IOV_MAX {
                    return Err(Errno::EINVAL);
                }
                Syscall::Writev { stream, iov: a1, iovcnt: a2 }
            }
            SYS_EXIT => Syscall::Exit { status: a0 as u8 },
            SYS_EXIT_GROUP => Syscall::ExitGroup { status: a0 as u8 },
            SYS_CLONE => Syscall::Clone(CloneRequest::decode(a0, a1, a2, a3, a4)?),
            SYS_FUTEX => Syscall::Futex(FutexOp::decode(a0, a1, a2, a3, a4, a5)?),
            SYS_RT_SIGPROCMASK => {
                if a3 != SIGSET_BYTES {
                    return Err(Errno::EINVAL);
                }
                Syscall::RtSigprocmask { how: a0, set: a1, old: a2 }
            }
            SYS_MMAP => Syscall::Mmap(MmapRequest::decode(a0, a1, a2, a3, a4, a5)?),
            SYS_MUNMAP => Syscall::Munmap { range: decode_munmap(a0, a1)? },
            SYS_MPROTECT => {
                let (range, prot) = decode_mprotect(a0, a1, a2)?;
                Syscall::Mprotect { range, prot }
            }
            SYS_BRK => Syscall::Brk { requested: a0 },
            SYS_ARCH_PRCTL => Syscall::ArchPrctl(ArchPrctl::decode(a0, a1)?),
            SYS_SET_TID_ADDRESS => Syscall::SetTidAddress { addr: a0 },
            SYS_GETPID => Syscall::GetPid,
            SYS_GETTID => Syscall::GetTid,
            SYS_SCHED_YIELD => Syscall::SchedYield,
            SYS_CLOCK_GETTIME => Syscall::ClockGettime { clock: Clock::decode(a0)?, out: a1 },
            SYS_NANOSLEEP => Syscall::Nanosleep { request: a0, remaining: a1 },
            SYS_FAULTLINE_COUNTERS => Syscall::FaultlineCounters { out: a0, count: a1 },
            SYS_IOCTL => {
                if a0 > 2 {
                    return Err(Errno::EBADF);
                }
                Syscall::Ioctl
            }
            nr => Syscall::Unknown { nr },
        })
    }
}

/// The flags of a thread as musl's `pthread_create` asks for it: the new thread shares the
/// address space, the file-system context, the files, the signal handlers, the thread group and
/// the System V semaphore undo list.
pub const CLONE_THREAD_FLAGS: u64 =
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
/// What may come with [`CLONE_THREAD_FLAGS`] (and the exit signal in the low byte, which a
/// thread does not send).
pub const CLONE_OPTIONAL_FLAGS: u64 = CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_CHILD_SETTID
    | CLONE_DETACHED
    | CSIGNAL;

/// A `clone` faultline carries out: a thread of the calling program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloneRequest {
    /// The new thread's stack pointer (0: the caller's, as on Linux).
    pub stack: u64,
    /// CLONE_PARENT_SETTID: the tid is stored here before the thread runs.
    pub parent_tid: Option<u64>,
    /// CLONE_CHILD_SETTID: the tid is stored here before the thread runs.
    pub child_tid: Option<u64>,
    /// CLONE_CHILD_CLEARTID: the thread's clear-tid address.
    pub clear_tid: Option<u64>,
    /// CLONE_SETTLS: the new thread's FS base.
    pub tls: Option<u64>,
}

impl CloneRequest {
    /// `clone(flags, stack, parent_tid, child_tid, tls)` (x86_64 argument order). Flag sets
    /// Linux refuses are EINVAL as there (CLONE_THREAD without CLONE_SIGHAND, CLONE_SIGHAND
    /// without CLONE_VM, CLONE_NEWNS with CLONE_FS); every other set but a thread's
    /// ([`CLONE_THREAD_FLAGS`] plus [`CLONE_OPTIONAL_FLAGS`]) is ENOSYS: faultline runs one
    /// process (no fork or vfork) whose threads share everything. A TLS outside user space is
    /// EPERM, as ARCH_SET_FS.
    pub fn decode(
        flags: u64,
        stack: u64,
        parent_tid: u64,
        child_tid: u64,
        tls: u64,
    ) -> Result<CloneRequest, Errno> {
        let has = |flag: u64| flags & flag != 0;
        if (has(CLONE_THREAD) && !has(CLONE_SIGHAND))
            || (has(CLONE_SIGHAND) && !has(CLONE_VM))
            || (has(CLONE_NEWNS) && has(CLONE_FS))
        {
            return Err(Errno::EINVAL);
        }
        if flags & CLONE_THREAD_FLAGS != CLONE_THREAD_FLAGS
            || flags & !(CLONE_THREAD_FLAGS | CLONE_OPTIONAL_FLAGS) != 0
        {
            return Err(Errno::ENOSYS);
        }
        if has(CLONE_SETTLS) && tls >= USER_END {
            return Err(Errno::EPERM);
        }
        let given = |flag: u64, value: u64| has(flag).then_some(value);
        Ok(CloneRequest {
            stack,
            parent_tid: given(CLONE_PARENT_SETTID, parent_tid),
            child_tid: given(CLONE_CHILD_SETTID, child_tid),
            clear_tid: given(CLONE_CHILD_CLEARTID, child_tid),
            tls: given(CLONE_SETTLS, tls),
        })
    }
}

/// A `futex` operation faultline carries out. Private and shared futexes are the same here
/// (one process: the key is the address), so FUTEX_PRIVATE_FLAG is accepted and changes
/// nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FutexOp {
    /// Sleep while the u32 at `addr` holds `expected` (checked under the futex lock: EAGAIN if
    /// it differs), until a wake, or the relative [`Timespec`] at `timeout` (0: none) passes
    /// (ETIMEDOUT).
    Wait { addr: u64, expected: u32, timeout: u64 },
    /// Wake up to `count` waiters on `addr` (at least one, as Linux does for 0 or less);
    /// returns how many woke.
    Wake { addr: u64, count: u32 },
    /// FUTEX_REQUEUE, and FUTEX_CMP_REQUEUE when `expected` is given (EAGAIN unless the u32 at
    /// `addr` holds it, checked under the futex lock): wake up to `wake` waiters on `addr` (0
    /// wakes none here, unlike WAKE), move up to `requeue` of the others to wait on `to`;
    /// returns how many were woken or moved (Linux's futex_requeue counts both). musl's
    /// pthread_cond_broadcast hands its waiters over to the mutex this way.
    Requeue { addr: u64, wake: u32, requeue: u32, to: u64, expected: Option<u32> },
}

impl FutexOp {
    /// `futex(addr, op, val, timeout, addr2, val3)`. REQUEUE and CMP_REQUEUE read `timeout` as
    /// a count (`val2`). A negative count, or an address that is not 4-byte aligned, is EINVAL;
    /// FUTEX_CLOCK_REALTIME with these commands, and every other command, are ENOSYS (Linux's
    /// answers for them, kernel/futex/syscalls.c and requeue.c).
    pub fn decode(
        addr: u64,
        op: u64,
        val: u64,
        timeout: u64,
        addr2: u64,
        val3: u64,
    ) -> Result<FutexOp, Errno> {
        if op & FUTEX_CLOCK_REALTIME != 0 {
            return Err(Errno::ENOSYS);
        }
        let command = op & !FUTEX_PRIVATE_FLAG;
        if ![FUTEX_WAIT, FUTEX_WAKE, FUTEX_REQUEUE, FUTEX_CMP_REQUEUE].contains(&command) {
            return Err(Errno::ENOSYS);
        }
        let requeues = command == FUTEX_REQUEUE || command == FUTEX_CMP_REQUEUE;
        // Linux takes both counts as ints.
        if requeues && ((val as u32 as i32) < 0 || (timeout as u32 as i32) < 0) {
            return Err(Errno::EINVAL);
        }
        if !addr.is_multiple_of(4) || (requeues && !addr2.is_multiple_of(4)) {
            return Err(Errno::EINVAL);
        }
        Ok(match command {
            FUTEX_WAIT => FutexOp::Wait { addr, expected: val as u32, timeout },
            FUTEX_WAKE => FutexOp::Wake { addr, count: val as u32 },
            _ => FutexOp::Requeue {
                addr,
                wake: val as u32,
                requeue: timeout as u32,
                to: addr2,
                expected: (command == FUTEX_CMP_REQUEUE).then_some(val3 as u32),
            },
        })
    }
}

/// The signals no mask can block (SIGKILL, SIGSTOP): Linux drops them from every new mask.
const UNBLOCKABLE_SIGNALS: u64 = (1 << (9 - 1)) | (1 << (19 - 1));

/// The mask `rt_sigprocmask(how, set)` makes of `old`, or EINVAL for an unknown `how`.
pub fn new_signal_mask(how: u64, old: u64, set: u64) -> Result<u64, Errno> {
    let mask = match how {
        SIG_BLOCK => old | set,
        SIG_UNBLOCK => old & !set,
        SIG_SETMASK => set,
        _ => return Err(Errno::EINVAL),
    };
    Ok(mask & !UNBLOCKABLE_SIGNALS)
}

fn stream(fd: u64) -> Result<Stream, Errno> {
    match fd {
        1 => Ok(Stream::Stdout),
        2 => Ok(Stream::Stderr),
        _ => Err(Errno::EBADF),
    }
}

/// The Linux name of system call `nr`, if it has one.
pub fn name(nr: u64) -> Option<&'static str> {
    match nr {
        0..=334 => NAMES_FROM_0.get(nr as usize).copied(),
        424..=450 => NAMES_FROM_424.get(nr as usize - 424).copied(),
        _ => None,
    }
}

/// The console line for a system call faultline does not implement:
/// `unknown syscall 13 (rt_sigaction) from rip 0x401234: -ENOSYS`.
pub struct UnknownSyscall {
    pub nr: u64,
    pub rip: u64,
}

impl fmt::Display for UnknownSyscall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown syscall {} ({}) from rip {:#x}: -ENOSYS",
            self.nr,
            name(self.nr).unwrap_or("no such call"),
            self.rip
        )
    }
}

/// Linux x86_64 system call names by number, 0..=334 (from the kernel's `asm/unistd_64.h`).
const NAMES_FROM_0: [&str; 335] = [
    "read",
    "write",
    "open",
    "close",
    "stat",
    "fstat",
    "lstat",
    "poll",
    "lseek",
    "mmap",
    "mprotect",
    "munmap",
    "brk",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "ioctl",
    "pread64",
    "pwrite64",
    "readv",
    "writev",
    "access",
    "pipe",
    "select",
    "sched_yield",
    "mremap",
    "msync",
    "mincore",
    "madvise",
    "shmget",
    "shmat",
    "shmctl",
    "dup",
    "dup2",
    "pause",
    "nanosleep",
    "getitimer",
    "alarm",
    "setitimer",
    "getpid",
    "sendfile",
    "socket",
    "connect",
    "accept",
    "sendto",
    "recvfrom",
    "sendmsg",
    "recvmsg",
    "shutdown",
    "bind",
    "listen",
    "getsockname",
    "getpeername",
    "socketpair",
    "setsockopt",
    "getsockopt",
    "clone",
    "fork",
    "vfork",
    "execve",
    "exit",
    "wait4",
    "kill",
    "uname",
    "semget",
    "semop",
    "semctl",
    "shmdt",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "fcntl",
    "flock",
    "fsync",
    "fdatasync",
    "truncate",
    "ftruncate",
    "getdents",
    "getcwd",
    "chdir",
    "fchdir",
    "rename",
    "mkdir",
    "rmdir",
    "creat",
    "link",
    "unlink",
    "symlink",
    "readlink",
    "chmod",
    "fchmod",
    "chown",
    "fchown",
    "lchown",
    "umask",
    "gettimeofday",
    "getrlimit",
    "getrusage",
    "sysinfo",
    "times",
    "ptrace",
    "getuid",
    "syslog",
    "getgid",
    "setuid",
    "setgid",
    "geteuid",
    "getegid",
    "setpgid",
    "getppid",
    "getpgrp",
    "setsid",
    "setreuid",
    "setregid",
    "getgroups",
    "setgroups",
    "setresuid",
    "getresuid",
    "setresgid",
    "getresgid",
    "getpgid",
    "setfsuid",
    "setfsgid",
    "getsid",
    "capget",
    "capset",
    "rt_sigpending",
    "rt_sigtimedwait",
    "rt_sigqueueinfo",
    "rt_sigsuspend",
    "sigaltstack",
    "utime",
    "mknod",
    "uselib",
    "personality",
    "ustat",
    "statfs",
    "fstatfs",
    "sysfs",
    "getpriority",
    "setpriority",
    "sched_setparam",
    "sched_getparam",
    "sched_setscheduler",
    "sched_getscheduler",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_rr_get_interval",
    "mlock",
    "munlock",
    "mlockall",
    "munlockall",
    "vhangup",
    "modify_ldt",
    "pivot_root",
    "_sysctl",
    "prctl",
    "arch_prctl",
    "adjtimex",
    "setrlimit",
    "chroot",
    "sync",
    "acct",
    "settimeofday",
    "mount",
    "umount2",
    "swapon",
    "swapoff",
    "reboot",
    "sethostname",
    "setdomainname",
    "iopl",
    "ioperm",
    "create_module",
    "init_module",
    "delete_module",
    "get_kernel_syms",
    "query_module",
    "quotactl",
    "nfsservctl",
    "getpmsg",
    "putpmsg",
    "afs_syscall",
    "tuxcall",
    "security",
    "gettid",
    "readahead",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "tkill",
    "time",
    "futex",
    "sched_setaffinity",
    "sched_getaffinity",
    "set_thread_area",
    "io_setup",
    "io_destroy",
    "io_getevents",
    "io_submit",
    "io_cancel",
    "get_thread_area",
    "lookup_dcookie",
    "epoll_create",
    "epoll_ctl_old",
    "epoll_wait_old",
    "remap_file_pages",
    "getdents64",
    "set_tid_address",
    "restart_syscall",
    "semtimedop",
    "fadvise64",
    "timer_create",
    "timer_settime",
    "timer_gettime",
    "timer_getoverrun",
    "timer_delete",
    "clock_settime",
    "clock_gettime",
    "clock_getres",
    "clock_nanosleep",
    "exit_group",
    "epoll_wait",
    "epoll_ctl",
    "tgkill",
    "utimes",
    "vserver",
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
    "kexec_load",
    "waitid",
    "add_key",
    "request_key",
    "keyctl",
    "ioprio_set",
    "ioprio_get",
    "inotify_init",
    "inotify_add_watch",
    "inotify_rm_watch",
    "migrate_pages",
    "openat",
    "mkdirat",
    "mknodat",
    "fchownat",
    "futimesat",
    "newfstatat",
    "unlinkat",
    "renameat",
    "linkat",
    "symlinkat",
    "readlinkat",
    "fchmodat",
    "faccessat",
    "pselect6",
    "ppoll",
    "unshare",
    "set_robust_list",
    "get_robust_list",
    "splice",
    "tee",
    "sync_file_range",
    "vmsplice",
    "move_pages",
    "utimensat",
    "epoll_pwait",
    "signalfd",
    "timerfd_create",
    "eventfd",
    "fallocate",
    "timerfd_settime",
    "timerfd_gettime",
    "accept4",
    "signalfd4",
    "eventfd2",
    "epoll_create1",
    "dup3",
    "pipe2",
    "inotify_init1",
    "preadv",
    "pwritev",
    "rt_tgsigqueueinfo",
    "perf_event_open",
    "recvmmsg",
    "fanotify_init",
    "fanotify_mark",
    "prlimit64",
    "name_to_handle_at",
    "open_by_handle_at",
    "clock_adjtime",
    "syncfs",
    "sendmmsg",
    "setns",
    "getcpu",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "finit_module",
    "sched_setattr",
    "sched_getattr",
    "renameat2",
    "seccomp",
    "getrandom",
    "memfd_create",
    "kexec_file_load",
    "bpf",
    "execveat",
    "userfaultfd",
    "membarrier",
    "mlock2",
    "copy_file_range",
    "preadv2",
    "pwritev2",
    "pkey_mprotect",
    "pkey_alloc",
    "pkey_free",
    "statx",
    "io_pgetevents",
    "rseq",
];

/// Names from 424 on (424..=450); 335..=423 are unused on x86_64.
const NAMES_FROM_424: [&str; 27] = [
    "pidfd_send_signal",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "pidfd_open",
    "clone3",
    "close_range",
    "openat2",
    "pidfd_getfd",
    "faccessat2",
    "process_madvise",
    "epoll_pwait2",
    "mount_setattr",
    "quotactl_fd",
    "landlock_create_ruleset",
    "landlock_add_rule",
    "landlock_restrict_self",
    "memfd_secret",
    "process_mrelease",
    "futex_waitv",
    "set_mempolicy_home_node",
];

#[cfg(test)]
mod tests {
    use super::*;

    const ANON: u64 = MAP_PRIVATE | MAP_ANONYMOUS;

    #[test]
    fn results_go_into_rax_as_linux_does() {
        assert_eq!(to_rax(Ok(5)), 5);
        assert_eq!(to_rax(Err(Errno::ENOSYS)) as i64, -38);
        assert_eq!(to_rax(Err(Errno::EFAULT)) as i64, -14);
    }

    #[test]
    fn names_match_the_numbers() {
        assert_eq!(name(SYS_WRITE), Some("write"));
        assert_eq!(name(SYS_MMAP), Some("mmap"));
        assert_eq!(name(SYS_ARCH_PRCTL), Some("arch_prctl"));
        assert_eq!(name(SYS_SET_TID_ADDRESS), Some("set_tid_address"));
        assert_eq!(name(SYS_CLOCK_GETTIME), Some("clock_gettime"));
        assert_eq!(name(SYS_EXIT_GROUP), Some("exit_group"));
        assert_eq!(name(334), Some("rseq"));
        assert_eq!(name(335), None);
        assert_eq!(name(424), Some("pidfd_send_signal"));
        assert_eq!(name(450), Some("set_mempolicy_home_node"));
        assert_eq!(name(451), None);
        assert_eq!(
            UnknownSyscall { nr: 13, rip: 0x401234 }.to_string(),
            "unknown syscall 13 (rt_sigaction) from rip 0x401234: -ENOSYS"
        );
    }

    #[test]
    fn names_match_the_host_header_if_present() {
        let Ok(header) = std::fs::read_to_string("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
        else {
            return;
        };
        for line in header.lines() {
            let mut words = line.split_whitespace();
            if let (Some("#define"), Some(sym), Some(nr)) =
                (words.next(), words.next(), words.next())
            {
                if let (Some(n), Ok(nr)) = (sym.strip_prefix("__NR_"), nr.parse::<u64>()) {
                    assert_eq!(name(nr), Some(n), "{nr}");
                }
            }
        }
    }

    #[test]
    fn mmap_accepts_anonymous_private_mappings() {
        let r = MmapRequest::decode(0, 5000, PROT_READ | PROT_WRITE, ANON, u64::MAX, 0).unwrap();
        assert_eq!(r.len, 8192);
        assert_eq!(r.placement, Placement::Anywhere { hint: 0 });
        assert_eq!(r.prot, Prot { read: true, write: true, exec: false });
        let r = MmapRequest::decode(0x4000_0000, 4096, 0, ANON | MAP_FIXED | MAP_NORESERVE, 0, 0)
            .unwrap();
        assert_eq!(r.placement, Placement::Replace { addr: 0x4000_0000 });
        assert!(!r.prot.accessible());
        let r = MmapRequest::decode(0x4000_0000, 1, PROT_EXEC, ANON | MAP_FIXED_NOREPLACE, 0, 0)
            .unwrap();
        assert_eq!(r.placement, Placement::NoReplace { addr: 0x4000_0000 });
    }

    #[test]
    fn mmap_refuses_what_it_cannot_do() {
        let d =
            |addr, len, prot, flags, offset| MmapRequest::decode(addr, len, prot, flags, 0, offset);
        assert_eq!(d(0, 0, 0, ANON, 0), Err(Errno::EINVAL), "zero length");
        assert_eq!(d(0, 4096, 0, ANON, 1), Err(Errno::EINVAL), "unaligned offset");
        assert_eq!(d(0, 4096, 0, MAP_SHARED | MAP_ANONYMOUS, 0), Err(Errno::EINVAL), "shared");
        assert_eq!(
            d(0, 4096, 0, MAP_ANONYMOUS, 0),
            Err(Errno::EINVAL),
            "neither shared nor private"
        );
        assert_eq!(d(0, 4096, 0, MAP_PRIVATE, 0), Err(Errno::EBADF), "file mapping");
        assert_eq!(d(0, 4096, 8, ANON, 0), Err(Errno::EINVAL), "unknown prot");
        assert_eq!(d(0, 4096, 0, ANON | 0x40, 0), Err(Errno::EINVAL), "MAP_32BIT");
        assert_eq!(d(0, u64::MAX, 0, ANON, 0), Err(Errno::ENOMEM), "length overflows");
        assert_eq!(d(0x1001, 4096, 0, ANON | MAP_FIXED, 0), Err(Errno::EINVAL), "unaligned fixed");
        assert_eq!(d(0, 4096, 0, ANON | MAP_FIXED, 0), Err(Errno::EPERM), "page 0");
        assert_eq!(
            d(0xffff_8000_0000_0000, 4096, 0, ANON | MAP_FIXED, 0),
            Err(Errno::ENOMEM),
            "kernel half"
        );
        assert_eq!(
            d(user_space::STACK_RESERVED_START, 4096, 0, ANON | MAP_FIXED, 0),
            Err(Errno::ENOMEM),
            "stack"
        );
    }

    #[test]
    fn munmap_mprotect_and_brk() {
        assert_eq!(decode_munmap(0x1000, 1), Ok(0x1000..0x2000));
        assert_eq!(decode_munmap(0x1001, 1), Err(Errno::EINVAL));
        assert_eq!(decode_munmap(0x1000, 0), Err(Errno::EINVAL));
        assert_eq!(decode_munmap(USER_END - 0x1000, 0x2000), Err(Errno::EINVAL));
        assert_eq!(
            decode_mprotect(0x2000, 0, PROT_READ),
            Ok((0x2000..0x2000, Prot { read: true, ..Prot::default() }))
        );
        assert_eq!(decode_mprotect(0x2001, 1, PROT_READ), Err(Errno::EINVAL));
        assert_eq!(decode_mprotect(0x2000, 1, 0x100), Err(Errno::EINVAL));
        assert_eq!(decode_mprotect(0x2000, u64::MAX, 0), Err(Errno::ENOMEM));
        let heap = 0x50_0000..0x60_0000;
        assert_eq!(decide_brk(0, &heap, 0x50_0000), 0x50_0000);
        assert_eq!(decide_brk(0x50_1234, &heap, 0x50_0000), 0x50_1234);
        assert_eq!(decide_brk(0x60_0001, &heap, 0x50_1234), 0x50_1234);
    }

    #[test]
    fn clone_takes_musl_threads_and_refuses_the_rest() {
        // What musl 1.2's pthread_create sends (seen with strace on Linux: 0x7d0f00).
        let musl = CLONE_THREAD_FLAGS
            | CLONE_SETTLS
            | CLONE_PARENT_SETTID
            | CLONE_CHILD_CLEARTID
            | CLONE_DETACHED;
        assert_eq!(musl, 0x7d_0f00);
        let clone = |flags, tls| Syscall::decode(SYS_CLONE, [flags, 0x7000, 0x100, 0x200, tls, 0]);
        assert_eq!(
            clone(musl, 0x5000),
            Ok(Syscall::Clone(CloneRequest {
                stack: 0x7000,
                parent_tid: Some(0x100),
                child_tid: None,
                clear_tid: Some(0x200),
                tls: Some(0x5000),
            }))
        );
        assert_eq!(
            clone(CLONE_THREAD_FLAGS, 0x5000),
            Ok(Syscall::Clone(CloneRequest {
                stack: 0x7000,
                parent_tid: None,
                child_tid: None,
                clear_tid: None,
                tls: None,
            }))
        );
        assert_eq!(clone(musl, USER_END), Err(Errno::EPERM));
        // Linux's own refusals.
        assert_eq!(clone(CLONE_VM | CLONE_THREAD, 0), Err(Errno::EINVAL));
        assert_eq!(clone(CLONE_SIGHAND, 0), Err(Errno::EINVAL));
        assert_eq!(clone(CLONE_NEWNS | CLONE_FS, 0), Err(Errno::EINVAL));
        // What faultline cannot do: a new process (fork, vfork), a thread with its own files.
        assert_eq!(clone(17, 0), Err(Errno::ENOSYS));
        assert_eq!(clone(CLONE_VM | CLONE_VFORK | 17, 0), Err(Errno::ENOSYS));
        assert_eq!(clone(musl & !CLONE_FILES, 0x5000), Err(Errno::ENOSYS));
        assert_eq!(clone(musl | CLONE_VFORK, 0x5000), Err(Errno::ENOSYS));
    }

    #[test]
    fn futex_wait_and_wake_decode() {
        let futex =
            |addr, op, val, timeout| Syscall::decode(SYS_FUTEX, [addr, op, val, timeout, 0, 0]);
        let requeue = |op, val, val2, addr2, val3| {
            Syscall::decode(SYS_FUTEX, [0x1000, op, val, val2, addr2, val3])
        };
        // What musl's pthread_cond_broadcast sends (strace on Linux): wake 0, requeue 1.
        assert_eq!(
            requeue(FUTEX_REQUEUE | FUTEX_PRIVATE_FLAG, 0, 1, 0x2004, 0),
            Ok(Syscall::Futex(FutexOp::Requeue {
                addr: 0x1000,
                wake: 0,
                requeue: 1,
                to: 0x2004,
                expected: None
            }))
        );
        assert_eq!(
            requeue(FUTEX_CMP_REQUEUE, 1, i32::MAX as u64, 0x2004, 7),
            Ok(Syscall::Futex(FutexOp::Requeue {
                addr: 0x1000,
                wake: 1,
                requeue: i32::MAX as u32,
                to: 0x2004,
                expected: Some(7)
            }))
        );
        assert_eq!(requeue(FUTEX_REQUEUE, u32::MAX as u64, 1, 0x2004, 0), Err(Errno::EINVAL));
        assert_eq!(requeue(FUTEX_CMP_REQUEUE, 1, 1 << 31, 0x2004, 0), Err(Errno::EINVAL));
        assert_eq!(requeue(FUTEX_REQUEUE, 1, 1, 0x2002, 0), Err(Errno::EINVAL));
        assert_eq!(
            requeue(FUTEX_REQUEUE | FUTEX_CLOCK_REALTIME, 1, 1, 0x2004, 0),
            Err(Errno::ENOSYS)
        );
        assert_eq!(
            futex(0x1000, FUTEX_WAIT | FUTEX_PRIVATE_FLAG, 7, 0x2000),
            Ok(Syscall::Futex(FutexOp::Wait { addr: 0x1000, expected: 7, timeout: 0x2000 }))
        );
        assert_eq!(
            futex(0x1004, FUTEX_WAKE, i32::MAX as u64, 0),
            Ok(Syscall::Futex(FutexOp::Wake { addr: 0x1004, count: i32::MAX as u32 }))
        );
        assert_eq!(futex(0x1002, FUTEX_WAKE, 1, 0), Err(Errno::EINVAL));
        assert_eq!(futex(0x1000, FUTEX_WAIT | FUTEX_CLOCK_REALTIME, 1, 0), Err(Errno::ENOSYS));
        assert_eq!(futex(0x1000, 9, 1, 0), Err(Errno::ENOSYS));
    }

    #[test]
    fn signal_masks_change_as_linux_changes_them() {
        assert_eq!(new_signal_mask(SIG_BLOCK, 0b01, 0b10), Ok(0b11));
        assert_eq!(new_signal_mask(SIG_UNBLOCK, 0b11, 0b10), Ok(0b01));
        assert_eq!(new_signal_mask(SIG_SETMASK, 0b11, 0b100), Ok(0b100));
        assert_eq!(new_signal_mask(3, 0, 0), Err(Errno::EINVAL));
        // SIGKILL (9) and SIGSTOP (19) never stay blocked.
        assert_eq!(new_signal_mask(SIG_SETMASK, 0, u64::MAX), Ok(!((1 << 8) | (1 << 18))));
        let sigprocmask = |size| Syscall::decode(SYS_RT_SIGPROCMASK, [0, 0x10, 0x20, size, 0, 0]);
        assert_eq!(sigprocmask(8), Ok(Syscall::RtSigprocmask { how: 0, set: 0x10, old: 0x20 }));
        assert_eq!(sigprocmask(16), Err(Errno::EINVAL));
    }

    #[test]
    fn other_calls_decode() {
        let call = |nr, a0, a1, a2| Syscall::decode(nr, [a0, a1, a2, 0, 0, 0]);
        assert_eq!(
            call(SYS_WRITE, 1, 0x1000, 5),
            Ok(Syscall::Write { stream: Stream::Stdout, buf: 0x1000, count: 5 })
        );
        assert_eq!(
            call(SYS_WRITE, 2, 0, u64::MAX),
            Ok(Syscall::Write { stream: Stream::Stderr, buf: 0, count: RW_COUNT_MAX })
        );
        assert_eq!(call(SYS_WRITE, 3, 0, 1), Err(Errno::EBADF));
        assert_eq!(call(SYS_WRITEV, 1, 0x1000, 1025), Err(Errno::EINVAL));
        assert_eq!(call(SYS_EXIT_GROUP, 0x1ff, 0, 0), Ok(Syscall::ExitGroup { status: 0xff }));
        assert_eq!(call(SYS_EXIT, 0x103, 0, 0), Ok(Syscall::Exit { status: 3 }));
        assert_eq!(
            call(SYS_ARCH_PRCTL, ARCH_SET_FS, 0x40_1000, 0),
            Ok(Syscall::ArchPrctl(ArchPrctl::SetFs { base: 0x40_1000 }))
        );
        assert_eq!(call(SYS_ARCH_PRCTL, ARCH_SET_FS, USER_END, 0), Err(Errno::EPERM));
        assert_eq!(call(SYS_ARCH_PRCTL, 0x3001, 0, 0), Err(Errno::EINVAL));
        assert_eq!(
            call(SYS_CLOCK_GETTIME, 1, 0x1000, 0),
            Ok(Syscall::ClockGettime { clock: Clock::Monotonic, out: 0x1000 })
        );
        assert_eq!(call(SYS_CLOCK_GETTIME, 11, 0x1000, 0), Err(Errno::EINVAL));
        assert_eq!(call(SYS_IOCTL, 1, 0x5413, 0), Ok(Syscall::Ioctl));
        assert_eq!(call(SYS_IOCTL, 7, 0x5413, 0), Err(Errno::EBADF));
        assert_eq!(call(13, 0, 0, 0), Ok(Syscall::Unknown { nr: 13 }));
        assert_eq!(call(SYS_GETPID, 0, 0, 0), Ok(Syscall::GetPid));
    }

    #[test]
    fn timespecs_and_iovecs() {
        let t = Timespec::from_ns(3_000_000_007);
        assert_eq!(t, Timespec { sec: 3, nsec: 7 });
        assert_eq!(Timespec::from_bytes(t.to_bytes()), Ok(t));
        assert_eq!(t.to_ns(), 3_000_000_007);
        assert_eq!(
            Timespec::from_bytes(Timespec { sec: 0, nsec: 1_000_000_000 }.to_bytes()),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            Timespec::from_bytes(Timespec { sec: -1, nsec: 0 }.to_bytes()),
            Err(Errno::EINVAL)
        );
        assert_eq!(Timespec { sec: i64::MAX, nsec: 0 }.to_ns(), u64::MAX);
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&0x1234u64.to_le_bytes());
        raw[8..].copy_from_slice(&9u64.to_le_bytes());
        assert_eq!(Iovec::from_bytes(raw), Iovec { base: 0x1234, len: 9 });
        assert_eq!(user_range(0, 5), Ok(0..5));
        assert_eq!(user_range(USER_END - 1, 2), Err(Errno::EFAULT));
        assert_eq!(user_range(u64::MAX, 2), Err(Errno::EFAULT));
    }
}
