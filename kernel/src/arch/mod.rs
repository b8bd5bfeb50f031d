//! Architecture support: x86_64 under Xen PV.

pub mod x86_64;
