//! Which vCPU each event channel port is delivered to: the ports bound for a vCPU other than 0.
//!
//! Xen sends a port's event to the vCPU it was bound for (its `notify_vcpu_id`): a VIRQ or IPI
//! port to the vCPU named at the bind, every other port (console, xenstore) to vCPU 0. The
//! pending bitmap of shared_info is one for all vCPUs, so an upcall must take only the bits of
//! its own vCPU's ports and leave the rest to theirs. These are the ports this kernel bound for a
//! vCPU other than 0; every other port is vCPU 0's.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Words of the two-level pending bitmap on x86_64 (Xen public/xen.h: 64 words of 64 ports).
pub const PORT_WORDS: usize = 64;
/// Ports of the two-level ABI on x86_64.
pub const PORTS: usize = PORT_WORDS * 64;

pub struct PortOwners {
    /// A bit per port bound for a vCPU other than 0.
    secondary: [AtomicU64; PORT_WORDS],
    /// The vCPU of each port with its bit set in `secondary`.
    vcpu: [AtomicU8; PORTS],
}

impl PortOwners {
    pub const fn new() -> PortOwners {
        PortOwners {
            secondary: [const { AtomicU64::new(0) }; PORT_WORDS],
            vcpu: [const { AtomicU8::new(0) }; PORTS],
        }
    }

    /// Records that `port` is delivered to `vcpu` (before the port is unmasked, so that its first
    /// event finds it). vCPU 0 needs no record; a port past the ABI's cannot fire.
    pub fn own(&self, port: u32, vcpu: usize) {
        let port = port as usize;
        if port >= PORTS {
            return;
        }
        if vcpu == 0 {
            self.release(port as u32);
            return;
        }
        assert!(vcpu <= usize::from(u8::MAX), "vCPU {vcpu} does not fit the port table");
        self.vcpu[port].store(vcpu as u8, Ordering::SeqCst);
        self.secondary[port / 64].fetch_or(1 << (port % 64), Ordering::SeqCst);
    }

    /// `port` was closed: a port bound again under its number is vCPU 0's until owned again.
    pub fn release(&self, port: u32) {
        let port = port as usize;
        if port < PORTS {
            self.secondary[port / 64].fetch_and(!(1 << (port % 64)), Ordering::SeqCst);
        }
    }

    /// The ports of pending word `word` delivered to `vcpu`, a bit each.
    pub fn ports_of(&self, vcpu: usize, word: usize) -> u64 {
        let secondary = self.secondary[word].load(Ordering::Acquire);
        if vcpu == 0 {
            return !secondary;
        }
        let mut ours = 0;
        let mut bits = secondary;
        while bits != 0 {
            let bit = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if usize::from(self.vcpu[word * 64 + bit].load(Ordering::Acquire)) == vcpu {
                ours |= 1 << bit;
            }
        }
        ours
    }
}

impl Default for PortOwners {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_port_is_vcpu_0s_until_bound_for_another() {
        let owners = PortOwners::new();
        for word in [0, 1, PORT_WORDS - 1] {
            assert_eq!(owners.ports_of(0, word), u64::MAX);
            assert_eq!(owners.ports_of(1, word), 0);
        }
    }

    #[test]
    fn a_word_is_split_between_the_vcpus_that_own_its_ports() {
        let owners = PortOwners::new();
        owners.own(3, 1); // vCPU 1's timer
        owners.own(4, 1); // vCPU 1's IPI port
        owners.own(5, 2);
        owners.own(64 + 7, 2); // another word
        assert_eq!(owners.ports_of(1, 0), 0b11000);
        assert_eq!(owners.ports_of(2, 0), 0b100000);
        assert_eq!(owners.ports_of(0, 0), !0b111000);
        assert_eq!(owners.ports_of(2, 1), 1 << 7);
        assert_eq!(owners.ports_of(1, 1), 0);
        assert_eq!(owners.ports_of(0, 1), !(1 << 7));
        // Every port of a word goes to exactly one vCPU.
        let all = (0..4).map(|vcpu| owners.ports_of(vcpu, 0));
        assert_eq!(all.clone().fold(0, |acc, ports| acc | ports), u64::MAX);
        assert_eq!(all.map(u64::count_ones).sum::<u32>(), 64);
    }

    #[test]
    fn a_closed_port_goes_back_to_vcpu_0() {
        let owners = PortOwners::new();
        owners.own(9, 3);
        owners.release(9);
        assert_eq!(owners.ports_of(3, 0), 0);
        assert_eq!(owners.ports_of(0, 0), u64::MAX);
        // Bound again for another vCPU under the same number.
        owners.own(9, 1);
        assert_eq!(owners.ports_of(1, 0), 1 << 9);
        assert_eq!(owners.ports_of(3, 0), 0);
        owners.own(9, 0);
        assert_eq!(owners.ports_of(0, 0), u64::MAX);
    }

    #[test]
    fn ports_past_the_abi_are_ignored() {
        let owners = PortOwners::new();
        owners.own(PORTS as u32, 1);
        owners.release(u32::MAX);
        assert_eq!(owners.ports_of(0, PORT_WORDS - 1), u64::MAX);
    }
}
