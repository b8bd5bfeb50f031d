//! What a page fault on a kernel address means: map a fresh zeroed frame, a kernel stack
//! overflow, or a bug. (A user program's faults go to its address space instead.)
//!
//! The pure half of the kernel's page-fault handler. The handler reads cr2 from `vcpu_info` and
//! the error code from the frame Xen pushed, and asks [`classify`] against a table of
//! [`KernelRegion`]s; only a [`FaultAction::MapZeroed`] leads to [`PageTables::map_zeroed`](super::PageTables::map_zeroed).
//! Under PV the kernel runs in ring 3, but Xen rewrites the error code's user bit to say whether
//! the *guest* was in user mode, so `USER_MODE` means what it means on bare metal.
//!
//! Before all that, [`SpuriousCheck`] recognises a fault that a stale TLB entry caused: the
//! memory manager makes a freed table's direct-map alias writable again without a flush (an
//! upgrade owes none), so a vCPU that still caches the read-only translation takes one write
//! fault on a page its tables now allow (Intel SDM vol. 3A, 4.10.4.3; Xen injects it like any
//! guest-mode fault it does not fix up itself, `do_page_fault` in xen/arch/x86/traps.c). Such a
//! fault is invalidated and retried, not reported.

use super::addr::{VirtAddr, PAGE_SIZE};
use super::backend::{BatchFailure, FrameAccess, XenMmu};
use super::p2m::P2m;
use super::page_table::{live_rights, Root, TlbFlush};
use super::pte::PteFlags;

use crate::arch::x86_64::page_fault::{Access, PageFault};

/// What the handler should do about one region of the address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelRegionKind {
    /// Pages appear on first touch, zeroed, mapped with `flags` (e.g. the kernel heap).
    DemandZero { flags: PteFlags },
    /// Never mapped: the guard page(s) below a kernel stack. Touching it is a stack overflow.
    StackGuard,
    /// Mapped up front (image, direct map, stacks): a fault here is a bug.
    Fixed,
}

/// A named range `[start, start + size_bytes)` of virtual addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelRegion {
    pub name: &'static str,
    pub start: VirtAddr,
    pub size_bytes: u64,
    pub kind: KernelRegionKind,
    /// Whether user mode may touch it (else a user access is a bug to report).
    pub user: bool,
}

impl KernelRegion {
    /// Whether `va` lies inside.
    pub(in crate::mm) fn contains(&self, va: VirtAddr) -> bool {
        va.as_u64().wrapping_sub(self.start.as_u64()) < self.size_bytes
    }
}

/// Regions the fault handler knows: the boot ones (five), vCPU 0's trap-stack guard, and a guard
/// below each of the two stacks (kernel, trap) of every other vCPU.
pub const MAX_REGIONS: usize = 8 + 2 * faultline_abi::MAX_VCPUS as usize;

/// The kernel's regions in a fixed array: stack guards come and go (a vCPU whose bring-up
/// failed gives its stacks back to the heap, and their guards with them).
#[derive(Clone, Copy, Debug)]
pub struct KernelRegions {
    regions: [KernelRegion; MAX_REGIONS],
    count: usize,
}

/// All [`MAX_REGIONS`] slots are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionsFull;

impl KernelRegions {
    pub const fn new() -> Self {
        const EMPTY: KernelRegion = KernelRegion {
            name: "",
            start: VirtAddr::zero(),
            size_bytes: 0,
            kind: KernelRegionKind::Fixed,
            user: false,
        };
        Self { regions: [EMPTY; MAX_REGIONS], count: 0 }
    }

    pub fn as_slice(&self) -> &[KernelRegion] {
        &self.regions[..self.count]
    }

    pub fn is_full(&self) -> bool {
        self.count == MAX_REGIONS
    }

    pub fn push(&mut self, region: KernelRegion) -> Result<(), RegionsFull> {
        let slot = self.regions.get_mut(self.count).ok_or(RegionsFull)?;
        *slot = region;
        self.count += 1;
        Ok(())
    }

    /// Forgets the stack guard that starts at `start` (the others keep their order); `None`
    /// if there is none.
    pub fn remove_guard(&mut self, start: VirtAddr) -> Option<KernelRegion> {
        let index = self
            .as_slice()
            .iter()
            .position(|r| r.kind == KernelRegionKind::StackGuard && r.start == start)?;
        let removed = self.regions[index];
        self.regions.copy_within(index + 1..self.count, index);
        self.count -= 1;
        Some(removed)
    }
}

impl Default for KernelRegions {
    fn default() -> Self {
        Self::new()
    }
}

/// The region `va` belongs to. A stack guard wins over the region it is carved from (a
/// secondary vCPU's guard lies in the heap, vCPU 0's trap-stack guard in the kernel image).
pub fn region_of(va: VirtAddr, regions: &[KernelRegion]) -> Option<&KernelRegion> {
    let guard = regions.iter().find(|r| r.kind == KernelRegionKind::StackGuard && r.contains(va));
    guard.or_else(|| regions.iter().find(|r| r.contains(va)))
}

/// The decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Map a zeroed frame at `page` with `flags`, then return to the faulting instruction.
    MapZeroed { page: VirtAddr, flags: PteFlags },
    /// The kernel ran off the bottom of the stack guarded by region `region`.
    KernelStackOverflow { region: &'static str },
    /// Nothing we expect; report and stop.
    Unexpected(UnexpectedFault),
}

/// Why a fault is not one the kernel handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnexpectedFault {
    /// The address is in no region.
    OutsideRegions,
    /// The page was present: the access broke its permissions.
    ProtectionViolation { region: Option<&'static str> },
    /// A reserved bit was set in a table entry.
    MalformedTable,
    /// User mode touched a kernel-only region.
    UserAccessToKernel { region: &'static str },
    /// A write to a region that is never writable.
    WriteToReadOnly { region: &'static str },
    /// An instruction fetch from a region that is never executable.
    FetchFromNoExecute { region: &'static str },
    /// A not-present page in a region that should be fully mapped.
    MissingInFixedRegion { region: &'static str },
}

/// Decides what `fault` at `cr2` (its address, canonical) means, given the kernel's `regions`.
pub fn classify(cr2: VirtAddr, fault: PageFault, regions: &[KernelRegion]) -> FaultAction {
    use FaultAction::Unexpected;
    let region = region_of(cr2, regions);
    if fault.reserved_bit {
        return Unexpected(UnexpectedFault::MalformedTable);
    }
    if fault.present {
        return Unexpected(UnexpectedFault::ProtectionViolation { region: region.map(|r| r.name) });
    }
    let Some(region) = region else { return Unexpected(UnexpectedFault::OutsideRegions) };
    let name = region.name;
    if fault.user_mode && !region.user {
        return Unexpected(UnexpectedFault::UserAccessToKernel { region: name });
    }
    match region.kind {
        KernelRegionKind::StackGuard => FaultAction::KernelStackOverflow { region: name },
        KernelRegionKind::Fixed => {
            Unexpected(UnexpectedFault::MissingInFixedRegion { region: name })
        }
        KernelRegionKind::DemandZero { flags } => {
            if fault.access == Access::Write && !flags.contains(PteFlags::WRITABLE) {
                return Unexpected(UnexpectedFault::WriteToReadOnly { region: name });
            }
            if fault.access == Access::Execute && flags.contains(PteFlags::NO_EXECUTE) {
                return Unexpected(UnexpectedFault::FetchFromNoExecute { region: name });
            }
            FaultAction::MapZeroed { page: cr2.align_down(PAGE_SIZE), flags }
        }
    }
}

/// The kernel's tables as the #PF handler reads them to tell a spurious fault from a real one:
/// straight from memory (`mem`, the direct map in the kernel), without the memory manager's lock.
/// Such a fault comes mostly from inside the memory manager itself: the frame of a freed table
/// is handed out again and written through its direct-map alias by the next operation, which
/// holds the lock (mm::kernel: the handler never waits for a hold of the faulting vCPU's own).
pub struct SpuriousCheck<'a, R: FrameAccess> {
    p2m: P2m<'a>,
    mem: R,
    root: Root,
}

impl<'a, R: FrameAccess> SpuriousCheck<'a, R> {
    /// Checks against the kernel tables under `root`, read through `mem` and `p2m`.
    pub(in crate::mm) const fn new(p2m: P2m<'a>, mem: R, root: Root) -> Self {
        SpuriousCheck { p2m, mem, root }
    }

    /// Whether `fault` is spurious: a kernel-mode write or instruction fetch that the error code
    /// calls a protection violation on a present page (never a not-present or reserved-bit
    /// fault, nor a read, which no permission upgrade of ours explains; Linux's
    /// `spurious_kernel_fault`, arch/x86/mm/fault.c, uses the same rule), on an address that
    /// the tables as they are now allow that access to. If so, the page's translation is
    /// invalidated on this vCPU (the CPU dropped the faulting entry already, SDM vol. 3A 4.10.4.1;
    /// the INVLPG also drops any paging-structure entry on the way) and `Ok(true)` says to
    /// resume. `Err` if Xen refused the invalidation: the fault was spurious but the caller
    /// cannot count on a retry succeeding.
    pub(in crate::mm) fn resolve(
        &self,
        fault: &PageFault,
        mmu: &mut impl XenMmu,
    ) -> Result<bool, BatchFailure> {
        let may_be_stale = fault.present
            && !fault.user_mode
            && !fault.reserved_bit
            && matches!(fault.access, Access::Write | Access::Execute);
        if !may_be_stale {
            return Ok(false);
        }
        let Ok(va) = VirtAddr::try_new(fault.address) else { return Ok(false) };
        // A walk that fails (Xen's hole, a superpage, a frame not ours) proves nothing: real.
        let Ok(Some(rights)) = live_rights(&self.p2m, &self.mem, self.root, va) else {
            return Ok(false);
        };
        let allowed = match fault.access {
            Access::Write => rights.contains(PteFlags::WRITABLE),
            Access::Execute => !rights.contains(PteFlags::NO_EXECUTE),
            Access::Read => false,
        };
        if !allowed {
            return Ok(false);
        }
        TlbFlush::page(va).issue_on_caller(mmu)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x86_64::structures::idt::PageFaultErrorCode;

    const HEAP_FLAGS: PteFlags =
        PteFlags::PRESENT.union(PteFlags::WRITABLE).union(PteFlags::NO_EXECUTE);

    fn regions() -> [KernelRegion; 4] {
        [
            KernelRegion {
                name: "heap",
                start: VirtAddr::new(0xffff_c000_0000_0000),
                size_bytes: 1 << 30,
                kind: KernelRegionKind::DemandZero { flags: HEAP_FLAGS },
                user: false,
            },
            KernelRegion {
                name: "stack0-guard",
                start: VirtAddr::new(0xffff_d000_0000_0000),
                size_bytes: PAGE_SIZE,
                kind: KernelRegionKind::StackGuard,
                user: false,
            },
            KernelRegion {
                name: "image",
                start: VirtAddr::new(0xffff_ffff_8000_0000),
                size_bytes: 4 << 20,
                kind: KernelRegionKind::Fixed,
                user: false,
            },
            KernelRegion {
                name: "user-text",
                start: VirtAddr::new(0x40_0000),
                size_bytes: 1 << 20,
                kind: KernelRegionKind::DemandZero {
                    flags: PteFlags::PRESENT.union(PteFlags::USER_ACCESSIBLE),
                },
                user: true,
            },
        ]
    }

    fn code(bits: &[PageFaultErrorCode]) -> PageFault {
        PageFault::decode(bits.iter().fold(PageFaultErrorCode::empty(), |a, b| a | *b).bits(), 0)
    }

    #[test]
    fn a_not_present_heap_access_maps_a_zeroed_page() {
        let action = classify(
            VirtAddr::new(0xffff_c000_0001_2345),
            code(&[PageFaultErrorCode::CAUSED_BY_WRITE]),
            &regions(),
        );
        assert_eq!(
            action,
            FaultAction::MapZeroed {
                page: VirtAddr::new(0xffff_c000_0001_2000),
                flags: HEAP_FLAGS
            }
        );
    }

    #[test]
    fn touching_a_stack_guard_is_a_kernel_stack_overflow() {
        let action = classify(
            VirtAddr::new(0xffff_d000_0000_0ff8),
            code(&[PageFaultErrorCode::CAUSED_BY_WRITE]),
            &regions(),
        );
        assert_eq!(action, FaultAction::KernelStackOverflow { region: "stack0-guard" });
    }

    #[test]
    fn faults_outside_every_region_are_unexpected() {
        let action = classify(VirtAddr::new(0x1000), code(&[]), &regions());
        assert_eq!(action, FaultAction::Unexpected(UnexpectedFault::OutsideRegions));
    }

    #[test]
    fn protection_violations_are_never_demand_faults() {
        let e =
            code(&[PageFaultErrorCode::PROTECTION_VIOLATION, PageFaultErrorCode::CAUSED_BY_WRITE]);
        let action = classify(VirtAddr::new(0xffff_c000_0000_0000), e, &regions());
        assert_eq!(
            action,
            FaultAction::Unexpected(UnexpectedFault::ProtectionViolation { region: Some("heap") })
        );
    }

    #[test]
    fn user_mode_may_not_demand_kernel_pages_or_hit_a_kernel_guard() {
        for va in [0xffff_c000_0000_0000, 0xffff_d000_0000_0000] {
            let action =
                classify(VirtAddr::new(va), code(&[PageFaultErrorCode::USER_MODE]), &regions());
            assert!(
                matches!(
                    action,
                    FaultAction::Unexpected(UnexpectedFault::UserAccessToKernel { .. })
                ),
                "{action:?}"
            );
        }
        let user =
            classify(VirtAddr::new(0x40_0010), code(&[PageFaultErrorCode::USER_MODE]), &regions());
        assert!(matches!(user, FaultAction::MapZeroed { .. }));
    }

    #[test]
    fn region_permissions_are_enforced_on_demand_faults() {
        let write = classify(
            VirtAddr::new(0x40_0000),
            code(&[PageFaultErrorCode::CAUSED_BY_WRITE]),
            &regions(),
        );
        assert_eq!(
            write,
            FaultAction::Unexpected(UnexpectedFault::WriteToReadOnly { region: "user-text" })
        );
        let fetch = classify(
            VirtAddr::new(0xffff_c000_0000_0000),
            code(&[PageFaultErrorCode::INSTRUCTION_FETCH]),
            &regions(),
        );
        assert_eq!(
            fetch,
            FaultAction::Unexpected(UnexpectedFault::FetchFromNoExecute { region: "heap" })
        );
    }

    #[test]
    fn missing_pages_in_fixed_regions_and_malformed_tables_are_bugs() {
        let fixed = classify(VirtAddr::new(0xffff_ffff_8000_1000), code(&[]), &regions());
        assert_eq!(
            fixed,
            FaultAction::Unexpected(UnexpectedFault::MissingInFixedRegion { region: "image" })
        );
        let rsvd = classify(
            VirtAddr::new(0xffff_c000_0000_0000),
            code(&[PageFaultErrorCode::MALFORMED_TABLE]),
            &regions(),
        );
        assert_eq!(rsvd, FaultAction::Unexpected(UnexpectedFault::MalformedTable));
    }

    fn guard(name: &'static str, start: u64) -> KernelRegion {
        KernelRegion {
            name,
            start: VirtAddr::new(start),
            size_bytes: PAGE_SIZE,
            kind: KernelRegionKind::StackGuard,
            user: false,
        }
    }

    #[test]
    fn a_guard_carved_from_the_heap_wins_until_it_is_removed() {
        let mut table = KernelRegions::new();
        for region in regions() {
            table.push(region).unwrap();
        }
        // A secondary vCPU's stack guard: a page of the heap (listed after it).
        let page = 0xffff_c000_0004_0000;
        table.push(guard("vcpu1-trap-stack-guard", page)).unwrap();
        let write = code(&[PageFaultErrorCode::CAUSED_BY_WRITE]);
        let hit = classify(VirtAddr::new(page + 0xff8), write, table.as_slice());
        assert_eq!(hit, FaultAction::KernelStackOverflow { region: "vcpu1-trap-stack-guard" });

        let removed = table.remove_guard(VirtAddr::new(page)).unwrap();
        assert_eq!(removed.name, "vcpu1-trap-stack-guard");
        let after = classify(VirtAddr::new(page + 0xff8), write, table.as_slice());
        assert_eq!(
            after,
            FaultAction::MapZeroed { page: VirtAddr::new(page), flags: HEAP_FLAGS },
            "the heap faulted on a stale guard"
        );
        assert_eq!(table.as_slice(), &regions()[..], "the other regions kept their order");
    }

    #[test]
    fn only_a_stack_guard_at_its_exact_start_is_removed() {
        let mut table = KernelRegions::new();
        for region in regions() {
            table.push(region).unwrap();
        }
        // Not a guard (the heap), and not a guard's start.
        assert_eq!(table.remove_guard(VirtAddr::new(0xffff_c000_0000_0000)), None);
        assert_eq!(table.remove_guard(VirtAddr::new(0xffff_d000_0000_0008)), None);
        assert_eq!(table.as_slice().len(), 4);
        assert_eq!(table.remove_guard(VirtAddr::new(0xffff_d000_0000_0000)), Some(regions()[1]));
        assert_eq!(table.as_slice(), &[regions()[0], regions()[2], regions()[3]]);
    }

    #[test]
    fn the_table_holds_two_guards_for_every_vcpu_besides_the_boot_regions() {
        let mut table = KernelRegions::new();
        // The kernel's boot regions (five) and vCPU 0's trap-stack guard.
        for n in 0..6 {
            table.push(guard("boot", 0xffff_8000_0000_0000 + n * PAGE_SIZE)).unwrap();
        }
        let vcpus = faultline_abi::MAX_VCPUS as u64;
        for n in 0..2 * vcpus {
            table.push(guard("vcpu", 0xffff_c000_0000_0000 + n * PAGE_SIZE)).unwrap();
        }
        while !table.is_full() {
            table.push(guard("spare", 0xffff_d000_0000_0000)).unwrap();
        }
        assert_eq!(table.push(guard("one-too-many", 0)), Err(RegionsFull));
        assert_eq!(table.as_slice().len(), MAX_REGIONS);
        // Every vCPU's guards given back: their slots are free again.
        for n in 0..2 * vcpus {
            assert!(table
                .remove_guard(VirtAddr::new(0xffff_c000_0000_0000 + n * PAGE_SIZE))
                .is_some());
        }
        assert_eq!(table.as_slice().len(), MAX_REGIONS - 2 * faultline_abi::MAX_VCPUS as usize);
        table.push(guard("again", 0)).unwrap();
    }

    #[test]
    fn region_bounds_are_half_open() {
        let r = regions()[1];
        assert!(r.contains(r.start));
        assert!(!r.contains(r.start + r.size_bytes));
        assert!(!r.contains(VirtAddr::new(r.start.as_u64() - 1)));
    }
}
