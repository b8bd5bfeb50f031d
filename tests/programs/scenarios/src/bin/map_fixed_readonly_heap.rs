//! map_fixed_readonly_heap: grows the brk heap past 0x3000000, writes the heap page there, maps
//! it again with MAP_FIXED and PROT_READ only, checks that it reads as zero, then writes to it.
//!
//! Expected: killed by #PF write at 0x3000000.
//! Why: after MAP_FIXED the range belongs to the new mapping alone, with the new mapping's
//! rights, even in the middle of the heap. A kernel that still finds the writable heap behind it
//! lets the write through: a read-only mapping that is writable. (faultline's heap starts right
//! after the image, so brk reaches 0x3000000. Linux starts the heap anywhere in the GiB after
//! the image; where it starts above 0x3000000 the program uses the heap's second page instead,
//! and the native run only checks that a SIGSEGV comes.)
#![no_std]
#![no_main]

use rt::sys::{self, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ};

rt::faultline_expect!("killed #PF write at 0x3000000");
rt::entry!(main);

const TARGET: u64 = 0x300_0000;

fn main(_: &rt::start::Start) -> i32 {
    // SAFETY: nothing else in this program uses the heap; the last write is meant to fault.
    unsafe {
        let start = sys::brk(0);
        let target = if start < TARGET { TARGET } else { start.next_multiple_of(4096) + 4096 };
        let end = target + 2 * 4096;
        rt::ensure!(sys::brk(end) == end, "brk({end:#x}) refused; the heap starts at {start:#x}");
        core::ptr::write_bytes(target as *mut u8, 0xa5, 4096);
        let got = sys::mmap(target, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED);
        rt::ensure!(got == Ok(target), "MAP_FIXED PROT_READ over the heap at {target:#x}: {got:?}");
        let old = core::ptr::read_volatile(target as *const u8);
        rt::ensure!(
            old == 0,
            "the read-only mapping over the heap at {target:#x} shows the old byte {old:#x}, not 0"
        );
        core::ptr::write_volatile(target as *mut u8, 1);
        rt::println!("wrote to a PROT_READ MAP_FIXED mapping over the heap at {target:#x}");
    }
    1
}
