//! The kernel image's entry: boot assembly and the hand-off to Rust.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("faultline is a Xen PV kernel: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}
