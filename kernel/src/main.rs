//! The kernel image: boot assembly (ELF notes, entry, exception stubs) linked with the kernel.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod image {
    // Pulls the kernel library (kernel_start, trap_dispatch, the panic handler) into the image.
    use faultline as _;

    core::arch::global_asm!(include_str!("../../boot/head.S"), options(att_syntax));
    core::arch::global_asm!(
        include_str!("../../boot/entry.S"),
        error_code_vectors = const faultline::arch::x86_64::exception::ERROR_CODE_VECTORS,
        event_upcall_vector = const faultline::arch::x86_64::exception::EVENT_UPCALL,
        failsafe_vector = const faultline::arch::x86_64::exception::FAILSAFE,
        options(att_syntax)
    );
    core::arch::global_asm!(
        include_str!("../../boot/user.S"),
        syscall_vector = const faultline::arch::x86_64::exception::SYSCALL,
        trap_frame_size = const faultline::arch::x86_64::trap_frame::TRAP_FRAME_SIZE,
        options(att_syntax)
    );
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("faultline is a Xen PV kernel: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}
