//! map_fixed_readonly_data: writes a page of its bss, maps it again with MAP_FIXED and
//! PROT_READ only, checks that it reads as zero, then writes to it.
//!
//! Expected: killed by #PF write at 0x600000 (a page of a bss array of 2 MiB and a page, which
//! covers 0x600000 wherever the linker puts it after the image's first page: the address does
//! not depend on the size of the code, and bss costs no file bytes).
//! Why: after MAP_FIXED the range belongs to the new mapping alone, with the new mapping's
//! rights. A kernel that still finds the writable bss segment behind it lets the write through
//! (and shows the old bytes before): a read-only mapping that is writable.
#![no_std]
#![no_main]

use rt::sys::{self, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ};

rt::faultline_expect!("killed #PF write at 0x600000");
rt::entry!(main);

/// The victim page: inside `BSS` for any image that starts at 0x400000.
const VICTIM_AT: u64 = 0x60_0000;

#[repr(C, align(4096))]
struct Bss([u8; BSS_LEN]);
const BSS_LEN: usize = (2 << 20) + 4096;

static mut BSS: Bss = Bss([0; BSS_LEN]);

fn main(_: &rt::start::Start) -> i32 {
    let bss = (&raw mut BSS) as u64;
    let victim = VICTIM_AT;
    rt::ensure!(
        (bss..bss + BSS_LEN as u64 - 4096).contains(&victim),
        "the bss array at {bss:#x} does not cover {victim:#x}: update the expectation"
    );
    // SAFETY: the victim is used through this address only; the last write is meant to fault.
    unsafe {
        core::ptr::write_bytes(victim as *mut u8, 0xa5, 4096);
        let got = sys::mmap(victim, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
        rt::ensure!(got == Ok(victim), "MAP_FIXED PROT_READ over bss: {got:?}");
        let old = core::ptr::read_volatile(victim as *const u8);
        rt::ensure!(old == 0, "the read-only mapping over bss shows the old byte {old:#x}, not 0");
        core::ptr::write_volatile(victim as *mut u8, 1);
    }
    rt::println!("wrote to a PROT_READ MAP_FIXED mapping over bss at {victim:#x}");
    1
}
