//! The one queue every page-table write to a live table goes through: a fixed batch for `mmu_update`.
//!
//! Entries are applied by Xen in order. Two sections keep that order safe: alias downgrades
//! (making a new table's writable aliases read-only) go to the front section, every other update
//! to the back, so within one batch a table is always read-only everywhere before anything links
//! it. The queue never talks to Xen itself: its owner flushes it when it is full and before it
//! reads anything the batch would change (or answers such reads from [`UpdateQueue::pending`]).
#![deny(unsafe_code)]

use super::addr::MachineAddr;
use super::backend::MmuUpdate;

/// Entries per batch (Mini-OS batches up to 512 too).
pub const QUEUE_CAPACITY: usize = 512;

/// Up to [`QUEUE_CAPACITY`] pending `mmu_update` entries.
#[derive(Debug)]
pub struct UpdateQueue {
    entries: [MmuUpdate; QUEUE_CAPACITY],
    len: usize,
    front_len: usize,
}

impl Default for UpdateQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        UpdateQueue {
            entries: [MmuUpdate { ptr: 0, val: 0 }; QUEUE_CAPACITY],
            len: 0,
            front_len: 0,
        }
    }

    /// The batch as it should be sent.
    pub fn as_slice(&self) -> &[MmuUpdate] {
        &self.entries[..self.len]
    }

    /// Whether nothing is pending.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the next push needs a flush first.
    pub const fn is_full(&self) -> bool {
        self.len == QUEUE_CAPACITY
    }

    /// Appends an update after everything queued. The queue must not be full.
    pub fn push_back(&mut self, update: MmuUpdate) {
        debug_assert!(!self.is_full());
        self.entries[self.len] = update;
        self.len += 1;
    }

    /// Adds an alias downgrade before every non-downgrade entry. The queue must not be full.
    pub fn push_front(&mut self, update: MmuUpdate) {
        debug_assert!(!self.is_full());
        self.entries.copy_within(self.front_len..self.len, self.front_len + 1);
        self.entries[self.front_len] = update;
        self.front_len += 1;
        self.len += 1;
    }

    /// The value the entry at `entry` will hold once the batch is applied, if the batch writes it.
    pub fn pending(&self, entry: MachineAddr) -> Option<u64> {
        self.as_slice().iter().rev().find(|u| u.entry_addr() == entry).map(|u| u.val)
    }

    /// Changes the last queued write of `entry` to `value`; false if none is queued.
    pub fn rewrite_pending(&mut self, entry: MachineAddr, value: u64) -> bool {
        match self.entries[..self.len].iter_mut().rev().find(|u| u.entry_addr() == entry) {
            Some(update) => {
                update.val = value;
                true
            }
            None => false,
        }
    }

    /// Forgets everything (after the batch was sent).
    pub fn clear(&mut self) {
        self.len = 0;
        self.front_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(ptr: u64, val: u64) -> MmuUpdate {
        MmuUpdate { ptr, val }
    }

    #[test]
    fn downgrades_go_before_every_other_update_in_arrival_order() {
        let mut q = UpdateQueue::new();
        q.push_back(update(0x10, 1));
        q.push_front(update(0x20, 2));
        q.push_back(update(0x30, 3));
        q.push_front(update(0x40, 4));
        let ptrs: Vec<u64> = q.as_slice().iter().map(|u| u.ptr).collect();
        assert_eq!(ptrs, [0x20, 0x40, 0x10, 0x30]);
    }

    #[test]
    fn pending_answers_with_the_last_write_and_can_be_rewritten() {
        let mut q = UpdateQueue::new();
        q.push_back(update(0x10, 1));
        q.push_back(update(0x10, 5));
        assert_eq!(q.pending(MachineAddr(0x10)), Some(5));
        assert_eq!(q.pending(MachineAddr(0x18)), None);
        assert!(q.rewrite_pending(MachineAddr(0x10), 7));
        assert_eq!(q.as_slice()[0].val, 1);
        assert_eq!(q.pending(MachineAddr(0x10)), Some(7));
        assert!(!q.rewrite_pending(MachineAddr(0x18), 7));
    }

    #[test]
    fn reports_full_at_capacity_and_clears() {
        let mut q = UpdateQueue::new();
        for i in 0..QUEUE_CAPACITY as u64 {
            q.push_back(update(i * 8, i));
        }
        assert!(q.is_full());
        q.clear();
        assert!(q.is_empty() && !q.is_full());
    }
}
