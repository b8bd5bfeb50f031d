//! exec_data: calls a `ret` instruction placed in writable data.
//!
//! Expected: killed by #PF exec protection in data (NX on a present page).
//! Why: data pages must be mapped no-execute; otherwise any buffer overflow is code injection.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #PF exec protection in data");
rt::entry!(main);

static mut CODE: [u8; 16] = [0xc3; 16]; // ret

fn main(_: &rt::start::Start) -> i32 {
    let code = &raw mut CODE;
    // SAFETY: the write makes the data page present (so the fault is NX, not a demand fault);
    // the call is meant to fault.
    unsafe {
        core::ptr::write_volatile(code as *mut u8, 0xc3);
        let f: extern "C" fn() = core::mem::transmute(code as *const u8);
        f();
    }
    rt::println!("executed data at {code:p}");
    1
}
