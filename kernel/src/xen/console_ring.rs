//! A DomU's console sink: the PV console ring (public/io/console.h) read by xenconsoled.

use core::sync::atomic::{AtomicU64, Ordering};

use super::abi::{XenconsInterface, PAGE_SHIFT, XENCONS_OUT_SIZE};
use super::console::Sink;
use super::event_peer::EventPeer;
use super::ring::Ring;
use super::slots::{self, Slot};
use super::XenError;

/// Yields allowed while waiting for xenconsoled to make room (a few seconds under TCG).
const WAIT_BUDGET: u32 = 200_000;

pub struct ConsoleRing {
    out: spin::Once<(Ring, EventPeer)>,
    lost_bytes: AtomicU64,
}

// SAFETY: the ring pointers refer to the console page mapped for the whole life of the
// domain; every write to it happens under the console lock (see `console::Sink`).
unsafe impl Sync for ConsoleRing {}

pub static CONSOLE_RING: ConsoleRing =
    ConsoleRing { out: spin::Once::new(), lost_bytes: AtomicU64::new(0) };

impl ConsoleRing {
    /// Maps the console page from start_info's `console.domU` and remembers its event channel.
    pub fn init(&self, mfn: u64, port: u32) -> Result<(), XenError> {
        let page = slots::map(Slot::Console, mfn << PAGE_SHIFT)?.cast::<XenconsInterface>();
        // SAFETY: `page` is the mapped 4 KiB console page, page-aligned, which holds one
        // `XenconsInterface` and stays mapped in its slot for the life of the domain; only the
        // console backend and this ring write it. The pointers only name its fields (nothing is
        // read here), and the 4-byte indices are aligned by the struct's layout.
        let ring = unsafe {
            Ring::new(
                (&raw mut (*page).output).cast(),
                XENCONS_OUT_SIZE as u32,
                &raw mut (*page).out_cons,
                &raw mut (*page).out_prod,
            )
        };
        self.out.call_once(|| (ring, EventPeer { port, budget: WAIT_BUDGET }));
        Ok(())
    }

    /// Bytes dropped because xenconsoled did not make room in time.
    pub fn lost_bytes(&self) -> u64 {
        self.lost_bytes.load(Ordering::Relaxed)
    }
}

impl Sink for ConsoleRing {
    fn write(&self, bytes: &[u8]) {
        let Some((ring, peer)) = self.out.get() else { return };
        let lost = ring.produce_all(bytes, peer);
        if lost != 0 {
            self.lost_bytes.fetch_add(lost as u64, Ordering::Relaxed);
        }
    }

    fn drain(&self) {
        if let Some((ring, peer)) = self.out.get() {
            ring.drain(peer);
        }
    }
}
