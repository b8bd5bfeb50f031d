//! stack_overflow: recurses, each frame touching 1 KiB, until the stack runs into its guard.
//!
//! Expected: killed by stack overflow (a #PF in the guard below the stack).
//! Why: the stack grows on demand down to its limit; past it the kernel must not keep mapping
//! (which would eat the heap or other mappings) but kill the program and say why.
#![no_std]
#![no_main]

rt::faultline_expect!("killed stack-overflow");
rt::entry!(main);

fn main(_: &rt::start::Start) -> i32 {
    let depth = recurse(0);
    rt::println!("recursion returned at depth {depth}");
    1
}

#[inline(never)]
#[allow(unconditional_recursion)] // the point of the program
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    // SAFETY: a volatile write to our own local, so the frame is really touched.
    unsafe { core::ptr::write_volatile(&mut frame[0], depth as u8) };
    let below = recurse(core::hint::black_box(depth + 1));
    core::hint::black_box(&frame);
    below
}
