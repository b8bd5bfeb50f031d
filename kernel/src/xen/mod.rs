//! The hypervisor boundary: Xen's ABI, the hypercalls and the services built directly on them.

pub mod abi;
pub mod console;
pub mod error;
pub mod start_info;
pub mod version;

#[cfg(target_os = "none")]
pub mod console_io;
#[cfg(target_os = "none")]
pub mod hypercall;
#[cfg(target_os = "none")]
pub mod shared_info;
#[cfg(target_os = "none")]
pub mod shutdown;

pub use error::XenError;
