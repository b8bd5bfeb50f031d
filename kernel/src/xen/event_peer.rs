//! The other end of a ring in another domain, reached through an event channel.

use super::hypercall;
use super::ring::Peer;

/// Notifies through `port`; waits by yielding the CPU so the other domain can run.
pub struct EventPeer {
    pub port: u32,
    /// How many yields a wait may take before giving up.
    pub budget: u32,
}

impl Peer for EventPeer {
    fn notify(&self) {
        // A refused notification only delays the peer until it polls; the wait budget
        // bounds the cost, and the caller reports what was not delivered.
        let _ = hypercall::evtchn_send(self.port);
    }

    fn wait(&self, round: u32) -> bool {
        let _ = hypercall::sched_yield();
        round < self.budget
    }
}
