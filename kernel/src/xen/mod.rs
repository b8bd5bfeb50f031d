//! The hypervisor boundary: Xen's ABI, the hypercalls and the services built directly on them.

pub mod abi;
#[allow(unsafe_code)]
pub mod console;
pub mod error;
pub mod port_owners;
#[allow(unsafe_code)]
pub mod ring;
#[allow(unsafe_code)]
pub mod start_info;
#[allow(unsafe_code)]
pub mod time;
#[allow(unsafe_code)]
pub mod vcpu_lock;
pub mod version;

#[cfg(target_os = "none")]
pub mod console_io;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod console_ring;
#[cfg(target_os = "none")]
pub mod event_peer;
#[cfg(target_os = "none")]
pub mod events;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod hypercall;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod shared_info;
#[cfg(target_os = "none")]
pub mod shutdown;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod slots;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod vcpu;
#[cfg(target_os = "none")]
#[allow(unsafe_code)]
pub mod xenstore;

pub use error::XenError;
