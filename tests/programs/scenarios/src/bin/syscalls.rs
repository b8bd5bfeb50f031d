//! syscalls: checks the results of the supported system calls one by one.
//!
//! Expected: exit 0.
//! Why: musl and our runtime rely on these exact Linux semantics (return values, errno, what
//! gets written); a wrong errno makes C programs fail far from the cause.
#![no_std]
#![no_main]

use rt::sys::{self, Iovec, Timespec};

rt::entry!(main);

fn main(start: &rt::start::Start) -> i32 {
    rt::ensure!(start.argc >= 1, "argc is {}", start.argc);
    rt::ensure!(start.aux(rt::start::AT_PAGESZ) == Some(4096), "AT_PAGESZ");
    rt::ensure!(
        start.aux(rt::start::AT_ENTRY) == Some(rt::start::_start as *const () as u64),
        "AT_ENTRY"
    );
    rt::ensure!(
        start.aux(rt::start::AT_PHDR) == Some(0x400040),
        "AT_PHDR {:?}",
        start.aux(rt::start::AT_PHDR)
    );
    rt::ensure!(start.aux(rt::start::AT_RANDOM).is_some(), "AT_RANDOM");
    rt::ensure!(
        start.initial_rsp.is_multiple_of(16),
        "rsp {:#x} not 16-aligned at entry",
        start.initial_rsp
    );

    let pid = sys::getpid().unwrap();
    rt::ensure!(pid > 0 && sys::gettid() == Ok(pid), "getpid {pid}, gettid {:?}", sys::gettid());
    let mut tid_slot = 0u32;
    rt::ensure!(sys::set_tid_address(&mut tid_slot) == Ok(pid), "set_tid_address returns the tid");
    rt::ensure!(sys::sched_yield() == Ok(0), "sched_yield");

    let t0 = sys::clock_gettime(sys::CLOCK_MONOTONIC).unwrap();
    rt::ensure!((0..1_000_000_000).contains(&t0.nsec), "tv_nsec {}", t0.nsec);
    rt::ensure!(sys::nanosleep(&Timespec { sec: 0, nsec: 2_000_000 }) == Ok(0), "nanosleep");
    let t1 = sys::clock_gettime(sys::CLOCK_MONOTONIC).unwrap();
    rt::ensure!(
        t1.as_ns() >= t0.as_ns() + 2_000_000,
        "slept {} ns, asked 2 ms",
        t1.as_ns() - t0.as_ns()
    );
    rt::ensure!(
        sys::nanosleep(&Timespec { sec: 0, nsec: 1_000_000_000 }) == Err(sys::EINVAL),
        "nanosleep nsec range"
    );
    // SAFETY: an unknown clock id writes nothing.
    let bad_clock = unsafe { sys::syscall(sys::SYS_CLOCK_GETTIME, [99, 0, 0, 0, 0, 0]) };
    rt::ensure!(bad_clock == Err(sys::EINVAL), "clock 99: {bad_clock:?}");

    rt::ensure!(sys::ioctl_winsize(1) == Err(sys::ENOTTY), "ioctl: {:?}", sys::ioctl_winsize(1));
    rt::ensure!(sys::write(9, b"x") == Err(sys::EBADF), "write to fd 9");

    let parts = [
        Iovec { base: b"sys".as_ptr() as u64, len: 3 },
        Iovec { base: b"calls: writev\n".as_ptr() as u64, len: 14 },
    ];
    rt::ensure!(sys::writev(1, &parts) == Ok(17), "writev returns the total");

    // SAFETY: brk(0) only asks; the area above the old break belongs to nobody.
    unsafe {
        let old = sys::brk(0);
        rt::ensure!(old != 0, "brk(0) = {old:#x}");
        let new = sys::brk(old + 3 * 4096);
        rt::ensure!(new == old + 3 * 4096, "brk grows: {new:#x}");
        core::ptr::write_volatile((old + 2 * 4096) as *mut u64, 7);
        rt::ensure!(sys::brk(old) == old, "brk shrinks");
    }

    let flags = sys::MAP_PRIVATE | sys::MAP_ANONYMOUS;
    for (what, args, errno) in [
        ("zero length", [0, 0, sys::PROT_READ, flags, u64::MAX, 0], sys::EINVAL),
        ("no MAP_PRIVATE", [0, 4096, sys::PROT_READ, sys::MAP_ANONYMOUS, u64::MAX, 0], sys::EINVAL),
        (
            "unaligned MAP_FIXED",
            [0x1234_5001, 4096, sys::PROT_READ, flags | sys::MAP_FIXED, u64::MAX, 0],
            sys::EINVAL,
        ),
        ("unaligned offset", [0, 4096, sys::PROT_READ, flags, u64::MAX, 1], sys::EINVAL),
    ] {
        // SAFETY: each call is invalid and maps nothing.
        let got = unsafe { sys::syscall(sys::SYS_MMAP, args) };
        rt::ensure!(got == Err(errno), "mmap {what}: {got:?}");
    }
    let page = sys::mmap_anonymous(8192, sys::PROT_READ | sys::PROT_WRITE).unwrap();
    rt::ensure!((page as u64).is_multiple_of(4096), "mmap result aligned");
    // SAFETY: the pages are ours.
    unsafe {
        rt::ensure!(core::ptr::read_volatile(page.add(4096)) == 0, "anonymous memory is zero");
        core::ptr::write_volatile(page.add(4096), 1);
        rt::ensure!(
            sys::mprotect(page.add(1), 4096, sys::PROT_READ) == Err(sys::EINVAL),
            "mprotect unaligned"
        );
        rt::ensure!(sys::munmap(page, 8192) == Ok(0), "munmap");
        rt::ensure!(sys::munmap(page.add(1), 4096) == Err(sys::EINVAL), "munmap unaligned");
    }
    let fs = sys::arch_get_fs();
    rt::ensure!(fs.is_ok(), "arch_prctl(ARCH_GET_FS): {fs:?}");
    // SAFETY: nothing here uses FS; the old base is put back.
    unsafe {
        rt::ensure!(sys::arch_set_fs(0x1000) == Ok(0), "ARCH_SET_FS");
        rt::ensure!(sys::arch_get_fs() == Ok(0x1000), "ARCH_GET_FS reads it back");
        rt::ensure!(
            sys::arch_set_fs(0xffff_8000_0000_0000) == Err(sys::EPERM),
            "ARCH_SET_FS to the kernel"
        );
        let _ = sys::arch_set_fs(fs.unwrap_or(0));
    }
    rt::println!("syscalls: all results as on Linux");
    0
}
