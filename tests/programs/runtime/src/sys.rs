//! Linux x86_64 system calls: the raw `syscall` instruction and typed wrappers for faultline's subset.
//!
//! Results are `Ok(value)` or `Err(errno)` (the positive errno).

use core::arch::asm;

/// Numbers, errno values and flags: the kernel's own definitions.
pub use faultline_abi::syscall::errno::*;
pub use faultline_abi::syscall::*;

pub type SysResult = Result<u64, u64>;

/// The `syscall` instruction: number in rax, arguments in rdi, rsi, rdx, r10, r8, r9.
///
/// # Safety
/// The call may read or write memory the arguments point at, or change mappings: the caller
/// vouches for what this call does to memory Rust knows about.
pub unsafe fn syscall(nr: u64, args: [u64; 6]) -> SysResult {
    let ret: u64;
    // SAFETY: the caller answers for the call's effects; the kernel preserves every register but
    // rax, rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr => ret,
            in("rdi") args[0], in("rsi") args[1], in("rdx") args[2],
            in("r10") args[3], in("r8") args[4], in("r9") args[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    if ret > -4096i64 as u64 {
        Err(ret.wrapping_neg())
    } else {
        Ok(ret)
    }
}

pub fn write(fd: u64, bytes: &[u8]) -> SysResult {
    // SAFETY: write only reads the slice.
    unsafe { syscall(SYS_WRITE, [fd, bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0]) }
}

/// write() with a pointer that need not be valid: the kernel must answer EFAULT, not fault.
pub fn write_raw(fd: u64, ptr: u64, len: u64) -> SysResult {
    // SAFETY: write only reads user memory; a bad pointer is the kernel's to reject.
    unsafe { syscall(SYS_WRITE, [fd, ptr, len, 0, 0, 0]) }
}

/// `struct iovec`.
#[repr(C)]
pub struct Iovec {
    pub base: u64,
    pub len: u64,
}

/// writev(); the iovecs may point anywhere (the kernel checks them).
pub fn writev(fd: u64, iov: &[Iovec]) -> SysResult {
    // SAFETY: writev only reads the iovecs and the memory they name.
    unsafe { syscall(SYS_WRITEV, [fd, iov.as_ptr() as u64, iov.len() as u64, 0, 0, 0]) }
}

pub fn exit(status: i32) -> ! {
    // SAFETY: exit_group does not return.
    unsafe {
        let _ = syscall(SYS_EXIT_GROUP, [status as u64, 0, 0, 0, 0, 0]);
    }
    loop {
        core::hint::spin_loop();
    }
}

pub fn getpid() -> SysResult {
    // SAFETY: no memory involved.
    unsafe { syscall(SYS_GETPID, [0; 6]) }
}

pub fn gettid() -> SysResult {
    // SAFETY: no memory involved.
    unsafe { syscall(SYS_GETTID, [0; 6]) }
}

pub fn sched_yield() -> SysResult {
    // SAFETY: no memory involved.
    unsafe { syscall(SYS_SCHED_YIELD, [0; 6]) }
}

/// `struct timespec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: i64,
}

impl Timespec {
    pub fn as_ns(self) -> u64 {
        (self.sec as u64) * 1_000_000_000 + self.nsec as u64
    }
}

pub fn clock_gettime(clock: u64) -> Result<Timespec, u64> {
    let mut t = Timespec::default();
    // SAFETY: the kernel writes one timespec into `t`.
    unsafe { syscall(SYS_CLOCK_GETTIME, [clock, &mut t as *mut Timespec as u64, 0, 0, 0, 0])? };
    Ok(t)
}

pub fn nanosleep(duration: &Timespec) -> SysResult {
    // SAFETY: reads one timespec; no remainder is asked for.
    unsafe { syscall(SYS_NANOSLEEP, [duration as *const Timespec as u64, 0, 0, 0, 0, 0]) }
}

/// An anonymous private mapping anywhere.
pub fn mmap_anonymous(len: u64, prot: u64) -> Result<*mut u8, u64> {
    // SAFETY: without MAP_FIXED the kernel picks free space; nothing existing changes.
    unsafe {
        syscall(SYS_MMAP, [0, len, prot, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX, 0])
            .map(|a| a as *mut u8)
    }
}

/// An anonymous private mapping exactly at `addr`, failing (EEXIST) if anything is there.
pub fn mmap_at(addr: u64, len: u64, prot: u64) -> Result<*mut u8, u64> {
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    let got = unsafe { syscall(SYS_MMAP, [addr, len, prot, flags, u64::MAX, 0])? };
    // Kernels before Linux 4.17 treat the flag as a hint: refuse a different place.
    if got != addr {
        return Err(EEXIST);
    }
    Ok(got as *mut u8)
}

/// mmap with the caller's flags (MAP_FIXED included): the raw result.
///
/// # Safety
/// With MAP_FIXED the new mapping replaces whatever was there: nothing Rust still uses may
/// live in the range.
pub unsafe fn mmap(addr: u64, len: u64, prot: u64, flags: u64) -> SysResult {
    // SAFETY: the caller vouches for the range.
    unsafe { syscall(SYS_MMAP, [addr, len, prot, flags, u64::MAX, 0]) }
}

/// # Safety
/// Nothing Rust still uses may live in the range.
pub unsafe fn munmap(addr: *mut u8, len: u64) -> SysResult {
    // SAFETY: the caller vouches that the range is unused.
    unsafe { syscall(SYS_MUNMAP, [addr as u64, len, 0, 0, 0, 0]) }
}

/// # Safety
/// Code that touches the range afterwards must allow for the new protection (it faults).
pub unsafe fn mprotect(addr: *mut u8, len: u64, prot: u64) -> SysResult {
    // SAFETY: the caller vouches for the accesses that follow.
    unsafe { syscall(SYS_MPROTECT, [addr as u64, len, prot, 0, 0, 0]) }
}

/// # Safety
/// Moving the break down unmaps memory: nothing may live there.
pub unsafe fn brk(addr: u64) -> u64 {
    // SAFETY: the caller vouches for the memory above the new break.
    unsafe { syscall(SYS_BRK, [addr, 0, 0, 0, 0, 0]).unwrap_or(0) }
}

pub fn arch_get_fs() -> SysResult {
    let mut fs = 0u64;
    // SAFETY: the kernel writes one u64 into `fs`.
    unsafe { syscall(SYS_ARCH_PRCTL, [ARCH_GET_FS, &mut fs as *mut u64 as u64, 0, 0, 0, 0])? };
    Ok(fs)
}

/// # Safety
/// Code that uses the FS segment (none in these programs) sees the new base.
pub unsafe fn arch_set_fs(base: u64) -> SysResult {
    // SAFETY: the caller vouches for FS users.
    unsafe { syscall(SYS_ARCH_PRCTL, [ARCH_SET_FS, base, 0, 0, 0, 0]) }
}

pub fn set_tid_address(addr: *mut u32) -> SysResult {
    // SAFETY: the address is only written when a thread exits, after which nothing reads it.
    unsafe { syscall(SYS_SET_TID_ADDRESS, [addr as u64, 0, 0, 0, 0, 0]) }
}

pub fn ioctl_winsize(fd: u64) -> SysResult {
    let mut winsize = [0u16; 4];
    // SAFETY: TIOCGWINSZ writes at most one `struct winsize` (8 bytes) into `winsize`.
    unsafe { syscall(SYS_IOCTL, [fd, TIOCGWINSZ, winsize.as_mut_ptr() as u64, 0, 0, 0]) }
}
