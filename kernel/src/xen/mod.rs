//! The hypervisor boundary: Xen's ABI, the hypercalls and the services built directly on them.

pub mod abi;
pub mod console;
pub mod error;
pub mod ring;
pub mod start_info;
pub mod time;
pub mod version;

#[cfg(target_os = "none")]
pub mod console_io;
#[cfg(target_os = "none")]
pub mod console_ring;
#[cfg(target_os = "none")]
pub mod event_peer;
#[cfg(target_os = "none")]
pub mod events;
#[cfg(target_os = "none")]
pub mod hypercall;
#[cfg(target_os = "none")]
pub mod shared_info;
#[cfg(target_os = "none")]
pub mod shutdown;
#[cfg(target_os = "none")]
pub mod slots;
#[cfg(target_os = "none")]
pub mod xenstore;

pub use error::XenError;
