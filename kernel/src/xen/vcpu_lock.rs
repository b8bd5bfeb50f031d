//! A spin lock that records which vCPU holds it.
//!
//! Two locks need to know their holder: the memory manager's (a kernel page fault waits for
//! another vCPU's hold but must not wait for its own) and the console's (the crash path may
//! break a hold of its own vCPU's, never another's). The record is advisory: the data is
//! guarded by the spin lock alone. A taker records itself right after the spin lock is acquired
//! and clears the record right before it is released (the guard's `Drop` runs before its inner
//! guard's); nothing in either window can fault (it reads `%gs:0` and stores to the lock), so a
//! vCPU that reads its own number as the holder knows the code it interrupted holds the lock.

use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The holder while no vCPU is recorded: the lock is free, or has just been taken and its taker
/// has not yet recorded itself (or has just cleared itself and not yet let go).
const NO_HOLDER: usize = usize::MAX;

/// A spin lock over `T` that records the vCPU holding it.
pub struct VcpuLock<T> {
    inner: spin::Mutex<T>,
    holder: AtomicUsize,
}

/// A [`VcpuLock`] held: dereferences to the data; dropping it clears the record, then releases
/// the lock.
pub struct VcpuLockGuard<'a, T> {
    holder: &'a AtomicUsize,
    inner: spin::MutexGuard<'a, T>,
}

impl<T> VcpuLock<T> {
    pub const fn new(value: T) -> Self {
        VcpuLock { inner: spin::Mutex::new(value), holder: AtomicUsize::new(NO_HOLDER) }
    }

    /// Takes the lock, spinning while any vCPU holds it.
    pub fn lock(&self) -> VcpuLockGuard<'_, T> {
        self.held(self.inner.lock())
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<VcpuLockGuard<'_, T>> {
        self.inner.try_lock().map(|inner| self.held(inner))
    }

    fn held<'a>(&'a self, inner: spin::MutexGuard<'a, T>) -> VcpuLockGuard<'a, T> {
        self.holder.store(running_vcpu(), Ordering::Release);
        VcpuLockGuard { holder: &self.holder, inner }
    }

    /// The vCPU recorded as holding the lock (`None`: free, or taken and not yet recorded).
    pub fn holder(&self) -> Option<usize> {
        Some(self.holder.load(Ordering::Acquire)).filter(|&h| h != NO_HOLDER)
    }

    /// Releases the lock whoever holds it, and clears the record.
    ///
    /// # Safety
    /// The holder's guard must never be used again (nor dropped while another holds the lock):
    /// the crash path breaks a hold of its own vCPU's, whose holder it never returns to.
    pub unsafe fn force_unlock(&self) {
        self.holder.store(NO_HOLDER, Ordering::Release);
        // SAFETY: the caller guarantees the abandoned guard is never used again.
        unsafe { self.inner.force_unlock() };
    }
}

impl<T> Deref for VcpuLockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T> DerefMut for VcpuLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner
    }
}

impl<T> Drop for VcpuLockGuard<'_, T> {
    fn drop(&mut self) {
        // Before the spin lock is released (the field `inner` drops after this body).
        self.holder.store(NO_HOLDER, Ordering::Release);
    }
}

/// The vCPU running this code (the host build, which has no vCPUs, is one).
#[cfg(target_os = "none")]
pub fn running_vcpu() -> usize {
    super::vcpu::current()
}
#[cfg(not(target_os = "none"))]
pub fn running_vcpu() -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_recorded_while_held_and_cleared_on_release() {
        let lock = VcpuLock::new(5u32);
        assert_eq!(lock.holder(), None);
        {
            let mut held = lock.lock();
            *held += 1;
            assert_eq!(lock.holder(), Some(0));
            assert!(lock.try_lock().is_none());
        }
        assert_eq!(lock.holder(), None);
        assert_eq!(*lock.try_lock().expect("free again"), 6);
    }

    #[test]
    fn a_forced_unlock_frees_the_lock_and_its_record() {
        let lock = VcpuLock::new(());
        let abandoned = lock.lock();
        core::mem::forget(abandoned);
        // SAFETY: the abandoned guard was forgotten, never to be used or dropped.
        unsafe { lock.force_unlock() };
        assert_eq!(lock.holder(), None);
        assert!(lock.try_lock().is_some());
    }
}
