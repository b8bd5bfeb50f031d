//! What a page fault on a kernel address means: map a fresh zeroed frame, a kernel stack
//! overflow, or a bug. (A user program's faults go to its address space instead.)
//!
//! The pure half of the kernel's page-fault handler. The handler reads cr2 from `vcpu_info` and
//! the error code from the frame Xen pushed, and asks [`classify`] against a table of
//! [`KernelRegion`]s; only a [`FaultAction::MapZeroed`] leads to [`PageTables::map_zeroed`](super::PageTables::map_zeroed).
//! Under PV the kernel runs in ring 3, but Xen rewrites the error code's user bit to say whether
//! the *guest* was in user mode, so `USER_MODE` means what it means on bare metal.

use super::addr::{VirtAddr, PAGE_SIZE};
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
    let region = regions.iter().find(|r| r.contains(cr2));
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

    #[test]
    fn region_bounds_are_half_open() {
        let r = regions()[1];
        assert!(r.contains(r.start));
        assert!(!r.contains(r.start + r.size_bytes));
        assert!(!r.contains(VirtAddr::new(r.start.as_u64() - 1)));
    }
}
