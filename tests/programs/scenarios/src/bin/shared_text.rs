//! shared_text: runs twice; each run checksums its own code and checks that its data starts
//! fresh.
//!
//! Expected: exit 0, in both runs (`runs 2`).
//! Why: two runs of one program may share read-only text frames (even the archive's own frames),
//! but never writable data: the second run must see the initial value of `RUNS`, not the first
//! run's increment, and the same code bytes.
#![no_std]
#![no_main]

rt::faultline_expect!("exit 0; runs 2");
rt::entry!(main);

static mut RUNS: u64 = 41;

fn main(_: &rt::start::Start) -> i32 {
    let runs = &raw mut RUNS;
    // SAFETY: one thread; `RUNS` is ours.
    let before = unsafe {
        let before = core::ptr::read_volatile(runs);
        core::ptr::write_volatile(runs, before + 1);
        before
    };
    rt::ensure!(before == 41, "data carried over from an earlier run: RUNS = {before}");
    let text = main as *const () as *const u8;
    let mut sum = 0u64;
    for i in 0..256 {
        // SAFETY: reads our own code, near `main`, inside the text segment.
        sum = sum.rotate_left(5) ^ u64::from(unsafe { core::ptr::read_volatile(text.add(i)) });
    }
    rt::println!("shared_text: data fresh, text checksum {sum:#x}");
    0
}
