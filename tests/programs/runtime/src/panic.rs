//! A panic prints its message on stderr and exits with status 101, as Rust programs do on Linux.

use core::fmt::Write;

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let _ = writeln!(crate::out::Stderr, "panic: {info}");
    crate::sys::exit(101)
}
