//! bench_faults: the page-fault workloads of `cargo xtask bench`, each measured on its own and
//! printed as one `BENCH` line (rt::bench): sequential write, random write, sparse write (one
//! page per 2 MiB: a new L1 each time), munmap of the touched pages, re-touch after munmap,
//! file-backed read (.rodata of this program), copy on first write of .data, MAP_POPULATE.
//!
//! Expected: exit 0, with one `BENCH` line per workload.
//! Size: PAGES pages per workload, from the name the program runs under (`bench_faults-1024`:
//! 1024; plain `bench_faults`: 4096); sparse write touches PAGES/8 pages. The file-backed read
//! and the copy-on-write workloads use fixed arrays of this program (2048 and 256 pages).
//! Runs the same on Linux (`cargo xtask bench` runs it in a Linux PV DomU in the same boot);
//! there it prints Linux's minor faults instead of faultline's counters.
//! Why: issue 11. The counts on faultline are deterministic and asserted (tests/bench.rs); the
//! TSC ticks are only compared with Linux's in the same boot.
#![no_std]
#![no_main]

use core::ptr::{read_volatile, write_volatile};

use rt::bench::{self, Kernel, Probe};
use rt::sys::{
    self, MAP_ANONYMOUS, MAP_NORESERVE, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE,
};

rt::entry!(main);

const PAGE: u64 = 4096;
const DEFAULT_PAGES: u64 = 4096;
const MAX_PAGES: u64 = 32768;
const L1_SPAN: u64 = 2 << 20;

/// File-backed pages to read: their own 64 KiB-aligned block of .rodata, in the file.
const FILE_PAGES: usize = 2048;
#[repr(C, align(65536))]
struct FileBlock([u8; FILE_PAGES * 4096]);
static FILE: FileBlock = FileBlock([0x5a; FILE_PAGES * 4096]);

/// Initialised data pages to write (each a copy of the file's page on its first write).
const DATA_PAGES: usize = 256;
#[repr(C, align(4096))]
struct DataBlock([u8; DATA_PAGES * 4096]);
static mut DATA: DataBlock = DataBlock([0xa5; DATA_PAGES * 4096]);

/// The random order of the random-write workload (in .bss, filled before its window).
static mut ORDER: [u32; MAX_PAGES as usize] = [0; MAX_PAGES as usize];

fn main(start: &rt::start::Start) -> i32 {
    let kernel = Kernel::detect(start);
    let pages = bench::size_from_name(start).unwrap_or(DEFAULT_PAGES);
    rt::ensure!((16..=MAX_PAGES).contains(&pages), "{pages} pages: take 16 to {MAX_PAGES}");
    touch_text(start);
    let len = pages * PAGE;
    let rw = PROT_READ | PROT_WRITE;

    // Sequential write, then munmap of those pages, then the same range mapped and written again.
    let base = sys::mmap_anonymous(len, rw).unwrap();
    let mut probe = Probe::start(kernel);
    for page in 0..pages {
        // SAFETY: inside the mapping just made, which nothing else uses.
        unsafe { write_volatile(base.add((page * PAGE) as usize) as *mut u64, page | 1) };
        probe.page_done(page);
    }
    probe.stop("seq_write", pages);
    check(base, pages, |page| page | 1);

    let probe = Probe::start(kernel);
    // SAFETY: nothing uses the mapping any more.
    let unmapped = unsafe { sys::munmap(base, len) };
    probe.stop("munmap", pages);
    rt::ensure!(unmapped == Ok(0), "munmap: {unmapped:?}");

    let again = sys::mmap_at(base as u64, len, rw);
    rt::ensure!(again == Ok(base), "mmap again at {base:?}: {again:?}");
    let mut probe = Probe::start(kernel);
    for page in 0..pages {
        // SAFETY: inside the new mapping.
        unsafe { write_volatile(base.add((page * PAGE) as usize) as *mut u64, page | 2) };
        probe.page_done(page);
    }
    probe.stop("retouch", pages);
    check(base, pages, |page| page | 2);
    // SAFETY: done with it.
    rt::ensure!(unsafe { sys::munmap(base, len) } == Ok(0), "munmap after retouch");

    // Random write: every page once, in a shuffled order.
    let order = shuffle(pages);
    let base = sys::mmap_anonymous(len, rw).unwrap();
    let mut probe = Probe::start(kernel);
    for (i, &page) in order.iter().enumerate() {
        // SAFETY: inside the mapping.
        unsafe {
            write_volatile(base.add(page as usize * PAGE as usize) as *mut u64, u64::from(page) | 1)
        };
        probe.page_done(i as u64);
    }
    probe.stop("rand_write", pages);
    check(base, pages, |page| page | 1);
    // SAFETY: done with it.
    rt::ensure!(unsafe { sys::munmap(base, len) } == Ok(0), "munmap after rand_write");

    // Sparse write: one page per 2 MiB, each in an L1 of its own.
    let sparse = pages / 8;
    let span = (sparse + 1) * L1_SPAN;
    // MAP_NORESERVE: Linux's overcommit check would refuse more address space than memory.
    // SAFETY: no MAP_FIXED: the kernel picks free space.
    let raw = unsafe { sys::mmap(0, span, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE) }
        .unwrap() as *mut u8;
    let first = (raw as u64).next_multiple_of(L1_SPAN);
    let mut probe = Probe::start(kernel);
    for i in 0..sparse {
        // SAFETY: inside the mapping (one spare 2 MiB covers the alignment).
        unsafe { write_volatile((first + i * L1_SPAN) as *mut u64, i | 1) };
        probe.page_done(i);
    }
    probe.stop("sparse_write", sparse);
    for i in 0..sparse {
        // SAFETY: as above.
        let got = unsafe { read_volatile((first + i * L1_SPAN) as *const u64) };
        rt::ensure!(got == i | 1, "sparse page {i} holds {got:#x}");
    }
    // SAFETY: done with it.
    rt::ensure!(unsafe { sys::munmap(raw, span) } == Ok(0), "munmap after sparse_write");

    // File-backed read: one byte of every page of FILE.
    let file = FILE.0.as_ptr();
    let mut sum = 0u64;
    let mut probe = Probe::start(kernel);
    for page in 0..FILE_PAGES {
        // SAFETY: inside FILE.
        sum += u64::from(unsafe { read_volatile(file.add(page * PAGE as usize)) });
        probe.page_done(page as u64);
    }
    probe.stop("file_read", FILE_PAGES as u64);
    rt::ensure!(sum == 0x5a * FILE_PAGES as u64, "file pages read {sum:#x}");

    // Copy on first write: one byte of every page of DATA.
    let data = (&raw mut DATA).cast::<u8>();
    let mut probe = Probe::start(kernel);
    for page in 0..DATA_PAGES {
        // SAFETY: inside DATA; one thread.
        unsafe { write_volatile(data.add(page * PAGE as usize), page as u8) };
        probe.page_done(page as u64);
    }
    probe.stop("cow_write", DATA_PAGES as u64);
    for page in 0..DATA_PAGES {
        // SAFETY: as above.
        let (a, b) = unsafe {
            (
                read_volatile(data.add(page * PAGE as usize)),
                read_volatile(data.add(page * PAGE as usize + 1)),
            )
        };
        rt::ensure!(a == page as u8 && b == 0xa5, "data page {page} holds {a:#x} {b:#x}");
    }

    // MAP_POPULATE: the mmap call and a write to every page, in one window.
    let mut probe = Probe::start(kernel);
    // SAFETY: no MAP_FIXED: the kernel picks free space.
    let got = unsafe { sys::mmap(0, len, rw, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE) };
    let Ok(addr) = got else {
        rt::eprintln!("mmap MAP_POPULATE of {pages} pages: {got:?}");
        return 1;
    };
    let base = addr as *mut u8;
    for page in 0..pages {
        // SAFETY: inside the mapping just made.
        unsafe { write_volatile(base.add((page * PAGE) as usize) as *mut u64, page | 3) };
        probe.page_done(page);
    }
    probe.stop("populate", pages);
    check(base, pages, |page| page | 3);
    // SAFETY: done with it.
    rt::ensure!(unsafe { sys::munmap(base, len) } == Ok(0), "munmap after populate");
    0
}

/// Checks the first word of every page.
fn check(base: *mut u8, pages: u64, want: impl Fn(u64) -> u64) {
    for page in 0..pages {
        // SAFETY: the caller's mapping of `pages` pages.
        let got = unsafe { read_volatile(base.add((page * PAGE) as usize) as *const u64) };
        rt::ensure!(got == want(page), "page {page} holds {got:#x}, want {:#x}", want(page));
    }
}

/// A shuffled order of `0..pages` (Fisher-Yates with a fixed xorshift seed: the same order on
/// every run and every kernel).
fn shuffle(pages: u64) -> &'static [u32] {
    // SAFETY: one thread; ORDER is only used here and by the caller afterwards.
    let order = unsafe { &mut (&mut *(&raw mut ORDER))[..pages as usize] };
    for (i, slot) in order.iter_mut().enumerate() {
        *slot = i as u32;
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// Reads every page of the executable segments, so that no window takes a fault on this
/// program's own code.
fn touch_text(start: &rt::start::Start) {
    const PT_LOAD: u32 = 1;
    const PF_X: u32 = 1;
    let (Some(phdr), Some(phnum)) = (start.aux(rt::start::AT_PHDR), start.aux(rt::start::AT_PHNUM))
    else {
        return;
    };
    for i in 0..phnum {
        let at = (phdr + i * 56) as *const u8;
        // SAFETY: the program headers are mapped (AT_PHDR); fields at their ELF64 offsets.
        let (kind, flags, vaddr, memsz) = unsafe {
            (
                read_volatile(at as *const u32),
                read_volatile(at.add(4) as *const u32),
                read_volatile(at.add(16) as *const u64),
                read_volatile(at.add(40) as *const u64),
            )
        };
        if kind != PT_LOAD || flags & PF_X == 0 {
            continue;
        }
        let mut page = vaddr - vaddr % PAGE;
        while page < vaddr + memsz {
            // SAFETY: a page of a loaded executable segment.
            unsafe { read_volatile(page as *const u8) };
            page += PAGE;
        }
    }
}
