//! exec_stack: calls a `ret` instruction written on its stack.
//!
//! Expected: killed by #PF exec protection in stack.
//! Why: the stack is no-execute whatever PT_GNU_STACK says; executing it is the classic exploit.
#![no_std]
#![no_main]

rt::faultline_expect!("killed #PF exec protection in stack");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let code = [0xc3u8; 16]; // ret
    let code = core::hint::black_box(&code);
    // SAFETY: none: the call is meant to fault.
    unsafe {
        let f: extern "C" fn() = core::mem::transmute(code.as_ptr());
        f();
    }
    rt::println!("executed the stack at {:p}", code.as_ptr());
    1
}
