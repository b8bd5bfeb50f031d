//! map_fixed_replaces: MAP_FIXED anonymous mappings over two pages of its own text, of its
//! initialised data, of its bss, of the brk heap and of an earlier mmap area; then
//! MAP_FIXED_NOREPLACE and MAP_FIXED calls that Linux refuses.
//!
//! Expected: exit 0. Every MAP_FIXED returns its address; the replaced pages read as zero, take
//! writes, and the pages next to them keep their contents. MAP_FIXED_NOREPLACE over text,
//! rodata, the heap, an mmap area or a MAP_FIXED mapping is EEXIST; an unaligned MAP_FIXED is
//! EINVAL; one past the end of user space, or whose length overflows, is ENOMEM.
//! Why: on Linux MAP_FIXED unmaps whatever the range held (image segment, heap, mapping) and
//! puts the new mapping there: from then on only the new mapping exists. A kernel that keeps
//! finding the old segment behind the new mapping shows the old bytes (text, data) and keeps
//! the old rights. MAP_FIXED_NOREPLACE must see every mapping, not only those made by mmap.
#![no_std]
#![no_main]

use rt::sys::{
    self, EEXIST, EINVAL, ENOMEM, MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_PRIVATE,
    PROT_READ, PROT_WRITE,
};

rt::entry!(main);

const PAGE: u64 = 4096;
const RW: u64 = PROT_READ | PROT_WRITE;

// Two pages of `int3` in the text segment, alone in their pages (aligned before and after), so
// that no code runs from them: the program can replace them without pulling code from under
// itself.
core::arch::global_asm!(
    ".pushsection .text.victim, \"ax\", @progbits",
    ".balign 4096",
    ".globl map_fixed_text_victim",
    "map_fixed_text_victim:",
    ".fill 8192, 1, 0xcc",
    ".balign 4096",
    ".popsection",
);

unsafe extern "C" {
    static map_fixed_text_victim: [u8; 8192];
}

#[repr(C, align(4096))]
struct TwoPages([u8; 8192]);

/// Two pages of initialised data (file-backed, copied on write).
static mut DATA_VICTIM: TwoPages = TwoPages([0x5a; 8192]);
/// Two pages of bss (zero-filled on demand).
static mut BSS_VICTIM: TwoPages = TwoPages([0; 8192]);
/// A read-only object: its page is rodata.
static RODATA: [u64; 4] = [1, 2, 3, 4];

/// An mmap result as the messages show it: the address in hex, or the errno.
struct Shown(sys::SysResult);

impl core::fmt::Display for Shown {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(addr) => write!(f, "mapped at {addr:#x}"),
            Err(errno) => write!(f, "errno {errno}"),
        }
    }
}

/// The first byte of `[base, base + len)` that is not `value`, with what it holds.
///
/// # Safety
/// The range must be readable.
unsafe fn first_not(base: u64, len: u64, value: u8) -> Option<(u64, u8)> {
    (base..base + len).find_map(|at| {
        // SAFETY: inside the caller's readable range.
        let got = unsafe { core::ptr::read_volatile(at as *const u8) };
        (got != value).then_some((at, got))
    })
}

/// # Safety
/// The range must be writable and unused by Rust.
unsafe fn fill(base: u64, len: u64, value: u8) {
    // SAFETY: the caller's contract.
    unsafe { core::ptr::write_bytes(base as *mut u8, value, len as usize) };
}

/// MAP_FIXED read-write over `[at, at + len)`, then checks that the range reads as zero and
/// keeps a write. Returns the number of failed checks.
///
/// # Safety
/// Nothing Rust uses (and no code that runs) may live in the range.
unsafe fn replace(what: &str, at: u64, len: u64) -> u32 {
    let mut failed = 0;
    // SAFETY: the caller's contract.
    let got = unsafe { sys::mmap(at, len, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED) };
    rt::check!(failed, got == Ok(at), "MAP_FIXED over {what} at {at:#x}: {}", Shown(got));
    if got != Ok(at) {
        return failed;
    }
    // SAFETY: the range is now the new read-write mapping.
    unsafe {
        if let Some((byte, got)) = first_not(at, len, 0) {
            // The old contents show through: the new mapping did not replace them (and may not
            // be writable either), so the write checks would tell nothing more.
            rt::eprintln!("FAILED MAP_FIXED over {what}: the new mapping is not zero: the byte at {byte:#x} holds {got:#x}");
            return failed + 1;
        }
        fill(at, len, 0x3c);
        if let Some((byte, got)) = first_not(at, len, 0x3c) {
            rt::eprintln!("FAILED MAP_FIXED over {what}: a write did not stick: the byte at {byte:#x} holds {got:#x}");
            failed += 1;
        }
    }
    failed
}

/// MAP_FIXED_NOREPLACE over `[at, at + len)` must be EEXIST (something is mapped there).
fn no_replace(what: &str, at: u64, len: u64) -> u32 {
    let mut failed = 0;
    // SAFETY: MAP_FIXED_NOREPLACE never replaces a mapping; where it wrongly succeeds, it maps
    // over nothing this program uses afterwards.
    let got = unsafe { sys::mmap(at, len, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE) };
    rt::check!(
        failed,
        got == Err(EEXIST),
        "MAP_FIXED_NOREPLACE over {what} at {at:#x}: {}, Linux says errno {EEXIST} (EEXIST)",
        Shown(got)
    );
    failed
}

fn main(_: &rt::start::Start) -> i32 {
    let mut failed = 0;

    // The image: text, initialised data, bss.
    let text = (&raw const map_fixed_text_victim) as u64;
    let data = (&raw mut DATA_VICTIM) as u64;
    let bss = (&raw mut BSS_VICTIM) as u64;
    // SAFETY: the victims are used through these addresses only, and no code lies in the text
    // victim's pages.
    unsafe {
        rt::ensure!(
            first_not(text, 2 * PAGE, 0xcc).is_none(),
            "the text victim is not all int3 before MAP_FIXED"
        );
        failed += replace("text", text, 2 * PAGE);
        rt::ensure!(
            first_not(data, 2 * PAGE, 0x5a).is_none(),
            "the data victim is not all 0x5a before MAP_FIXED"
        );
        failed += replace("initialised data", data, 2 * PAGE);
        fill(bss, 2 * PAGE, 0xa5);
        failed += replace("bss", bss, 2 * PAGE);
    }

    // The brk heap: four pages written, the middle two replaced, the outer two kept.
    // SAFETY: nothing else in this program uses the heap.
    let heap = unsafe {
        let start = sys::brk(0).next_multiple_of(PAGE);
        rt::ensure!(sys::brk(start + 4 * PAGE) == start + 4 * PAGE, "brk grows by 4 pages");
        fill(start, 4 * PAGE, 0x77);
        failed += replace("the brk heap", start + PAGE, 2 * PAGE);
        for outer in [start, start + 3 * PAGE] {
            let kept = first_not(outer, PAGE, 0x77).is_none();
            rt::check!(
                failed,
                kept,
                "heap page {outer:#x} next to the MAP_FIXED mapping lost its bytes"
            );
        }
        start
    };

    // An mmap area: four pages written, the middle two replaced, the outer two kept.
    let area = sys::mmap_anonymous(4 * PAGE, RW).unwrap() as u64;
    // SAFETY: the area is ours alone.
    unsafe {
        fill(area, 4 * PAGE, 0x99);
        failed += replace("an mmap area", area + PAGE, 2 * PAGE);
        for outer in [area, area + 3 * PAGE] {
            let kept = first_not(outer, PAGE, 0x99).is_none();
            rt::check!(
                failed,
                kept,
                "area page {outer:#x} next to the MAP_FIXED mapping lost its bytes"
            );
        }
    }

    // Where Linux refuses.
    let main_page = (main as *const () as u64) & !(PAGE - 1);
    failed += no_replace("the page of main (text)", main_page, PAGE);
    failed += no_replace("rodata", (&raw const RODATA) as u64 & !(PAGE - 1), PAGE);
    failed += no_replace("the brk heap", heap, PAGE);
    failed += no_replace("an mmap area", area, PAGE);
    failed += no_replace("a MAP_FIXED mapping", area + PAGE, PAGE);
    failed += no_replace("the end of an area and the page after it", area + 3 * PAGE, 2 * PAGE);
    let fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    for (what, at, len, errno) in [
        ("an unaligned address", area + 1, PAGE, EINVAL),
        ("the last user page and beyond", 0x0000_7fff_ffff_f000, 2 * PAGE, ENOMEM),
        ("a length that overflows", area, u64::MAX - PAGE, ENOMEM),
    ] {
        // SAFETY: each call is refused and maps nothing.
        let got = unsafe { sys::mmap(at, len, RW, fixed) };
        rt::check!(
            failed,
            got == Err(errno),
            "MAP_FIXED at {what} ({at:#x}, {len:#x} bytes): {}, Linux says errno {errno}",
            Shown(got)
        );
    }
    // SAFETY: the area's pages still read as before: the refused calls changed nothing.
    let kept = unsafe { first_not(area, PAGE, 0x99).is_none() };
    rt::check!(failed, kept, "the area's first page lost its bytes to a refused MAP_FIXED call");

    if failed > 0 {
        rt::eprintln!("map_fixed_replaces: {failed} check(s) failed");
        return 1;
    }
    rt::println!("map_fixed_replaces: MAP_FIXED replaced text, data, bss, heap and an mmap area; Linux's refusals too");
    0
}
