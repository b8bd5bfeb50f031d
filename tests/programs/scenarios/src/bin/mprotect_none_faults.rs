//! mprotect_none_faults: writes a page, makes it PROT_NONE, then reads it.
//!
//! Expected: killed by #PF read in mmap.
//! Why: PROT_NONE keeps a page's contents (mprotect_none_keeps) but not its access: a kernel
//! that keeps the frame mapped must still make every access fault. This guards the other half
//! of the PROT_NONE semantics (it passes on a kernel that frees the frames, too).
#![no_std]
#![no_main]

use rt::sys::{self, PROT_NONE, PROT_READ, PROT_WRITE};

rt::faultline_expect!("killed #PF read in mmap");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let page = sys::mmap_anonymous(4096, PROT_READ | PROT_WRITE).unwrap();
    // SAFETY: the page is ours; the read after PROT_NONE is meant to fault.
    unsafe {
        core::ptr::write_volatile(page as *mut u64, 0x5a5a_5a5a);
        rt::ensure!(sys::mprotect(page, 4096, PROT_NONE) == Ok(0), "mprotect(PROT_NONE)");
        let value = core::ptr::read_volatile(page as *const u64);
        rt::println!("read {value:#x} from a PROT_NONE page at {page:p}");
    }
    1
}
