//! write_text: writes into its own code.
//!
//! Expected: killed by #PF write protection in text (the page is present, read-only).
//! Why: text pages are mapped read-only (and may be shared between runs and with the archive
//! frames), so a write must fault rather than change code that another run would execute.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #PF write protection in text");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let target = main as *const () as *mut u8;
    // SAFETY: none: reading our own code is fine; the write is meant to fault.
    unsafe {
        let byte = core::ptr::read_volatile(target);
        core::ptr::write_volatile(target, byte);
    }
    rt::println!("wrote to text at {target:p}");
    1
}
