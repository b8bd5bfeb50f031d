//! Byte rings shared with another domain (console, xenstore): index arithmetic and barriers.
//!
//! Xen's PV rings (public/io/console.h, public/io/xs_wire.h) are a power-of-two byte array
//! plus free-running 32-bit producer/consumer indices. The producer writes bytes, then
//! publishes the new producer index after a write barrier; the consumer reads the producer
//! index, then the bytes after a read barrier. Everything here goes through raw pointers:
//! the other end changes the page at any time.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{fence, Ordering};

/// How the local end waits for the other end: notify it, then give it time to run.
pub trait Peer {
    /// Tells the other end there is something for it (EVTCHNOP_send).
    fn notify(&self);
    /// Lets the other end run once; false when the wait budget is used up.
    fn wait(&self, round: u32) -> bool;
}

/// One direction of a ring: `size` bytes at `data`, indices at `cons` and `prod`. The pointers
/// are private: a ring is built only through the unsafe [`Ring::new`], whose contract the safe
/// methods rely on.
#[derive(Clone, Copy)]
pub struct Ring {
    data: *mut u8,
    size: u32,
    cons: *mut u32,
    prod: *mut u32,
}

impl Ring {
    /// A ring of `size` bytes (a power of two) at `data`, with its indices at `cons` and `prod`.
    ///
    /// # Safety
    /// The `size` bytes at `data` and the two 4-byte aligned indices must stay mapped for as
    /// long as the ring is used, and be shared with the other end only (nothing else in this
    /// kernel writes them).
    pub unsafe fn new(data: *mut u8, size: u32, cons: *mut u32, prod: *mut u32) -> Ring {
        Ring { data, size, cons, prod }
    }

    fn load(ptr: *mut u32) -> u32 {
        // SAFETY: `Ring` is built only over a mapped shared page whose index fields are
        // 4-byte aligned (see the constructors' contracts).
        unsafe { read_volatile(ptr) }
    }

    /// Bytes queued and not yet consumed.
    pub fn queued(&self) -> u32 {
        Self::load(self.prod).wrapping_sub(Self::load(self.cons))
    }

    /// Producer side: copies as much of `bytes` as fits; returns how many were written.
    pub fn produce(&self, bytes: &[u8]) -> usize {
        let cons = Self::load(self.cons);
        fence(Ordering::Acquire); // read cons before overwriting the bytes it frees
        let prod = Self::load(self.prod);
        let used = prod.wrapping_sub(cons);
        if used > self.size {
            return 0; // the other end corrupted the indices; write nothing
        }
        let room = (self.size - used) as usize;
        let n = room.min(bytes.len());
        for (i, &b) in bytes[..n].iter().enumerate() {
            let index = prod.wrapping_add(i as u32) & (self.size - 1);
            // SAFETY: index < size, inside the ring's data array.
            unsafe { write_volatile(self.data.add(index as usize), b) };
        }
        fence(Ordering::Release); // bytes before the index that publishes them
                                  // SAFETY: as in `load`.
        unsafe { write_volatile(self.prod, prod.wrapping_add(n as u32)) };
        n
    }

    /// Consumer side: copies up to `out.len()` queued bytes; returns how many were read.
    pub fn consume(&self, out: &mut [u8]) -> usize {
        let prod = Self::load(self.prod);
        fence(Ordering::Acquire); // index before the bytes it publishes
        let cons = Self::load(self.cons);
        let avail = prod.wrapping_sub(cons);
        if avail > self.size {
            return 0;
        }
        let n = (avail as usize).min(out.len());
        for (i, slot) in out[..n].iter_mut().enumerate() {
            let index = cons.wrapping_add(i as u32) & (self.size - 1);
            // SAFETY: index < size, inside the ring's data array.
            *slot = unsafe { read_volatile(self.data.add(index as usize)) };
        }
        fence(Ordering::Release); // finish reading before freeing the space
                                  // SAFETY: as in `load`.
        unsafe { write_volatile(self.cons, cons.wrapping_add(n as u32)) };
        n
    }

    /// Writes all of `bytes`, waiting for room; returns how many could not be written
    /// before the peer's wait budget ran out.
    pub fn produce_all(&self, mut bytes: &[u8], peer: &dyn Peer) -> usize {
        let mut round = 0;
        while !bytes.is_empty() {
            let n = self.produce(bytes);
            bytes = &bytes[n..];
            if n > 0 {
                peer.notify();
                round = 0;
                continue;
            }
            if !peer.wait(round) {
                break;
            }
            round += 1;
        }
        bytes.len()
    }

    /// Fills all of `out`, waiting for data; false if the wait budget ran out first.
    pub fn consume_exact(&self, mut out: &mut [u8], peer: &dyn Peer) -> bool {
        let mut round = 0;
        while !out.is_empty() {
            let n = self.consume(out);
            out = &mut out[n..];
            if n > 0 {
                peer.notify();
                round = 0;
                continue;
            }
            if !peer.wait(round) {
                return false;
            }
            round += 1;
        }
        true
    }

    /// Waits until the consumer has taken everything; false if the budget ran out.
    pub fn drain(&self, peer: &dyn Peer) -> bool {
        let mut round = 0;
        while self.queued() != 0 {
            peer.notify();
            if !peer.wait(round) {
                return false;
            }
            round += 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};

    struct Shared {
        data: Vec<u8>,
        cons: u32,
        prod: u32,
    }

    fn ring(shared: &mut Shared) -> Ring {
        Ring {
            data: shared.data.as_mut_ptr(),
            size: shared.data.len() as u32,
            cons: &mut shared.cons,
            prod: &mut shared.prod,
        }
    }

    /// A peer that consumes a few bytes each time it is given a turn.
    struct Consumer<'a> {
        ring: Ring,
        taken: RefCell<Vec<u8>>,
        per_turn: usize,
        turns: Cell<u32>,
        budget: u32,
        _life: core::marker::PhantomData<&'a ()>,
    }
    impl Peer for Consumer<'_> {
        fn notify(&self) {}
        fn wait(&self, round: u32) -> bool {
            self.turns.set(self.turns.get() + 1);
            let mut buf = vec![0u8; self.per_turn];
            let n = self.ring.consume(&mut buf);
            self.taken.borrow_mut().extend_from_slice(&buf[..n]);
            round < self.budget
        }
    }

    #[test]
    fn indices_wrap_around_u32() {
        let mut shared = Shared { data: vec![0; 16], cons: u32::MAX - 3, prod: u32::MAX - 3 };
        let r = ring(&mut shared);
        assert_eq!(r.produce(b"0123456789"), 10);
        assert_eq!(r.queued(), 10);
        let mut out = [0u8; 16];
        assert_eq!(r.consume(&mut out), 10);
        assert_eq!(&out[..10], b"0123456789");
        assert_eq!(shared.prod, 6);
    }

    #[test]
    fn never_overruns_and_waits_for_room() {
        let mut shared = Shared { data: vec![0; 8], cons: 0, prod: 0 };
        let r = ring(&mut shared);
        assert_eq!(r.produce(b"abcdefghij"), 8, "a full ring takes no more");
        assert_eq!(r.produce(b"x"), 0);
        let peer = Consumer {
            ring: r,
            taken: RefCell::new(vec![]),
            per_turn: 3,
            turns: Cell::new(0),
            budget: 100,
            _life: Default::default(),
        };
        let message: Vec<u8> = (0..200u8).collect();
        assert_eq!(r.produce_all(&message, &peer), 0);
        assert!(r.drain(&peer));
        let taken = peer.taken.borrow();
        assert_eq!(&taken[..8], b"abcdefgh");
        assert_eq!(&taken[8..], &message[..], "every byte arrives, in order");
    }

    #[test]
    fn a_stuck_peer_reports_what_was_not_written() {
        let mut shared = Shared { data: vec![0; 8], cons: 0, prod: 0 };
        let r = ring(&mut shared);
        let stuck = Consumer {
            ring: r,
            taken: RefCell::new(vec![]),
            per_turn: 0,
            turns: Cell::new(0),
            budget: 5,
            _life: Default::default(),
        };
        assert_eq!(r.produce_all(&[1u8; 20], &stuck), 12);
        assert!(!r.drain(&stuck));
    }

    #[test]
    fn corrupt_indices_write_nothing() {
        let mut shared = Shared { data: vec![0; 8], cons: 100, prod: 0 };
        let r = ring(&mut shared);
        assert_eq!(r.produce(b"abc"), 0);
        let mut out = [0u8; 4];
        assert_eq!(r.consume(&mut out), 0);
    }
}
