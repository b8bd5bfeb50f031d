//! TLB.
