//! write_p2m: writes to the p2m list (pfn to mfn), at the address the kernel passes in auxv entry
//! AT_FAULTLINE_P2M.
//!
//! Expected: killed by #PF write in kernel.
//! Why: the p2m is how the guest kernel turns its frames into machine frames; a user write
//! there would redirect kernel mappings. Natively (no faultline auxv) it exits 2.
#![no_std]
#![no_main]

use rt::start::AT_FAULTLINE_P2M;

rt::faultline_expect!("killed #PF write in kernel");
rt::entry!(main);

fn main(start: &rt::start::Start) -> i32 {
    let Some(p2m) = start.aux(AT_FAULTLINE_P2M) else {
        rt::eprintln!("no AT_FAULTLINE_P2M in auxv: not running under faultline");
        return 2;
    };
    // SAFETY: none: this write is meant to fault.
    unsafe { core::ptr::write_volatile(p2m as *mut u64, 0) };
    rt::println!("wrote to the p2m at {p2m:#x}");
    1
}
