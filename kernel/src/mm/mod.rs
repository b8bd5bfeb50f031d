//! Memory management the PV way: addresses, p2m/m2p, frames, page tables through Xen.
