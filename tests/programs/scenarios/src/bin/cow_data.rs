//! cow_data: reads a page of initialised data, then writes to it, then checks both the write
//! and the rest of the page; runs twice.
//!
//! Expected: exit 0, in both runs (`runs 2`).
//! Why: initialised data comes from the file. A kernel may map it read-only from the archive
//! first and copy on the first write (copy-on-write); the copy must hold the file's bytes plus
//! the write, and the archive frame must stay untouched for the second run.
#![no_std]
#![no_main]

rt::faultline_expect!("exit 0; runs 2");
rt::entry!(main);

#[repr(align(4096))]
#[allow(dead_code)] // read through a raw pointer only
struct Page([u8; 4096]);

static mut DATA: Page = Page(initial());

const fn initial() -> [u8; 4096] {
    let mut bytes = [0u8; 4096];
    let mut i = 0;
    while i < 4096 {
        bytes[i] = (i % 251) as u8 + 1;
        i += 1;
    }
    bytes
}

fn main(_: &rt::start::Start) -> i32 {
    let data = &raw mut DATA;
    let bytes = data as *mut u8;
    // SAFETY: one thread; `DATA` is ours.
    unsafe {
        for i in 0..4096 {
            let b = core::ptr::read_volatile(bytes.add(i));
            rt::ensure!(
                b == (i % 251) as u8 + 1,
                "byte {i} is {b} before the write: not the file's data"
            );
        }
        core::ptr::write_volatile(bytes.add(100), 0);
        for i in 0..4096 {
            let want = if i == 100 { 0 } else { (i % 251) as u8 + 1 };
            let b = core::ptr::read_volatile(bytes.add(i));
            rt::ensure!(b == want, "byte {i} is {b} after the write, want {want}");
        }
    }
    rt::println!("cow_data: the written page holds the file's bytes and the write");
    0
}
