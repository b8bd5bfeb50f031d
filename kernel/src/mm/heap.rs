//! The kernel heap: `linked_list_allocator` over a demand-zero region that the #PF handler backs.
//!
//! Nothing is mapped up front: the allocator's first write into a page faults, and the handler
//! maps a zeroed frame there (one mmu_update batch). A request the region cannot satisfy makes
//! the allocation fail, which Rust reports as "memory allocation of N bytes failed" (a panic
//! with a crash report); a page that cannot be backed because the frame pool is empty is
//! reported by the page-fault handler as out of memory.

use core::alloc::{GlobalAlloc, Layout};

use linked_list_allocator::LockedHeap;

use super::kernel::{HEAP_BASE, HEAP_SIZE_BYTES};
use crate::testing::inject::{self, Point};

/// The allocator behind the fault-injection point `heap`: an injected failure is a null
/// pointer, as from an exhausted heap.
struct Heap(LockedHeap);

// SAFETY: every call goes to `LockedHeap`'s implementation unchanged, except that an injected
// failure returns null, which `GlobalAlloc::alloc` allows ("out of memory").
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if inject::fail(Point::Heap) {
            return core::ptr::null_mut();
        }
        // SAFETY: the caller's contract for `layout` is passed on unchanged.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from the same `LockedHeap`.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static HEAP: Heap = Heap(LockedHeap::empty());

/// Hands the heap region to the allocator. Needs the memory manager (the first write faults).
pub fn init() {
    // SAFETY: the heap region is reserved for the allocator alone (no other code maps or uses
    // those addresses), and every page of it becomes valid memory on first touch through the
    // page-fault handler. `init` is called once, at boot.
    unsafe { HEAP.0.lock().init(HEAP_BASE as *mut u8, HEAP_SIZE_BYTES as usize) };
}

/// Bytes handed out and bytes still free in the region.
pub fn usage() -> (usize, usize) {
    let heap = HEAP.0.lock();
    (heap.used(), heap.free())
}
