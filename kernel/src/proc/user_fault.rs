//! What a user page fault means: which page to map from where, or why the program dies.
//!
//! The pure half of demand paging for user memory. Read-only file pages come straight from the
//! program's frames in the boot module (every run maps the same frames); writable file pages
//! are mapped read-only from there too and copied on the first write; bss, brk, mmap and stack
//! pages are zero-filled. Anything else is the program's fault.
#![deny(unsafe_code)]

use core::ops::Range;

use super::areas::Areas;
use super::elf::{LoadPlan, PageContents};
use super::expect::Access;
use super::layout::{page_floor, Region};

/// Where a new page's contents come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'f> {
    /// The program file's own page at this offset, shared read-only by every run.
    SharedFile { file_offset: u64 },
    /// A private frame holding these file bytes, the rest zero.
    PrivateFile(PageContents<'f>),
    /// A private zeroed frame.
    Zero,
}

/// What to do about a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'f> {
    Map {
        page: u64,
        source: Source<'f>,
        writable: bool,
        exec: bool,
    },
    /// The page is mapped read-only from the shared file page: give the process its own copy.
    CopyOnWrite {
        page: u64,
        exec: bool,
    },
    /// The access is not allowed; the program is killed (the region names where it was).
    Kill(Region),
}

/// A process's user address space as the fault logic needs it.
pub struct Space<'a> {
    pub plan: &'a LoadPlan,
    pub file: &'a [u8],
    /// Whether the file starts on a page boundary in memory (so its pages can be shared).
    pub file_page_aligned: bool,
    /// The brk heap: `start..current break`.
    pub heap: Range<u64>,
    pub areas: &'a Areas,
}

impl Space<'_> {
    pub fn region(&self, addr: u64) -> Region {
        Region::classify(addr, self.plan, self.heap.clone(), self.areas.find(addr).is_some())
    }
}

/// Decides a fault at `addr` for an `access`, on a page that was `present` or not.
pub fn decide<'f>(space: &Space<'f>, addr: u64, access: Access, present: bool) -> Decision<'f> {
    let page = page_floor(addr);
    let region = space.region(addr);
    let kill = Decision::Kill(region);
    let (read, write, exec) = match region {
        Region::Text | Region::Data => {
            let seg = space.plan.segment_at(addr).expect("classified as a segment");
            (seg.perms.read, seg.perms.write, seg.perms.execute)
        }
        Region::Heap | Region::Stack => (true, true, false),
        Region::Mmap => {
            let prot = space.areas.find(addr).expect("classified as mmap").prot;
            (prot.read, prot.write, prot.exec)
        }
        _ => return kill,
    };
    let allowed = match access {
        Access::Read => read || write || exec,
        Access::Write => write,
        Access::Execute => exec,
    };
    if !allowed {
        return kill;
    }
    if present {
        // Only one kind of present page faults legitimately: a shared file page on its first write.
        return if access == Access::Write && matches!(region, Region::Text | Region::Data) {
            Decision::CopyOnWrite { page, exec }
        } else {
            kill
        };
    }
    let source = match region {
        Region::Text | Region::Data => {
            let seg = space.plan.segment_at(addr).expect("classified as a segment");
            let contents = seg.page_contents(space.file, page);
            if contents.is_whole_file_page() && space.file_page_aligned && page >= seg.vaddr {
                if access == Access::Write {
                    // A write to a fresh writable page: copy at once instead of mapping then copying.
                    return Decision::Map {
                        page,
                        source: Source::PrivateFile(contents),
                        writable: true,
                        exec,
                    };
                }
                let file_offset = seg.file_offset + (page - seg.vaddr);
                return Decision::Map {
                    page,
                    source: Source::SharedFile { file_offset },
                    writable: false,
                    exec,
                };
            }
            if contents.bytes.is_empty() {
                Source::Zero
            } else {
                Source::PrivateFile(contents)
            }
        }
        _ => Source::Zero,
    };
    Decision::Map { page, source, writable: write, exec }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::elf::load_plan;
    use crate::proc::elf::tests::Fixture;
    use crate::proc::layout::{MMAP_BASE, STACK_GUARD, STACK_TOP};
    use crate::proc::syscall_abi::Prot;
    use ::elf::abi;

    /// The elf fixture with a whole-page text segment and a whole-page writable data page
    /// followed by bss.
    fn fixture() -> Vec<u8> {
        let mut fx = Fixture::new(None);
        fx.bytes.resize(0x2000, 0);
        fx.set_phdr(0, abi::PT_LOAD, abi::PF_R | abi::PF_X, 0, 0x400000, 0x1000, 0x1000);
        fx.set_phdr(1, abi::PT_LOAD, abi::PF_R | abi::PF_W, 0x1000, 0x401000, 0x1000, 0x3000);
        fx.bytes
    }

    fn with_space(f: impl FnOnce(&Space<'_>)) {
        let file = fixture();
        let plan = load_plan(&file).unwrap();
        let mut areas = Areas::default();
        areas
            .insert(MMAP_BASE..MMAP_BASE + 0x2000, Prot { read: true, write: false, exec: false })
            .unwrap();
        let space = Space {
            plan: &plan,
            file: &file,
            file_page_aligned: true,
            heap: 0x404000..0x406000,
            areas: &areas,
        };
        f(&space);
    }

    #[test]
    fn file_pages_are_shared_until_written() {
        with_space(|s| {
            assert_eq!(
                decide(s, 0x400123, Access::Execute, false),
                Decision::Map {
                    page: 0x400000,
                    source: Source::SharedFile { file_offset: 0 },
                    writable: false,
                    exec: true
                }
            );
            assert_eq!(
                decide(s, 0x401008, Access::Read, false),
                Decision::Map {
                    page: 0x401000,
                    source: Source::SharedFile { file_offset: 0x1000 },
                    writable: false,
                    exec: false
                }
            );
            assert_eq!(
                decide(s, 0x401008, Access::Write, true),
                Decision::CopyOnWrite { page: 0x401000, exec: false }
            );
            assert!(matches!(
                decide(s, 0x401008, Access::Write, false),
                Decision::Map { source: Source::PrivateFile(_), writable: true, .. }
            ));
        });
    }

    #[test]
    fn bss_heap_mmap_and_stack_are_zero_filled() {
        with_space(|s| {
            let zero_rw =
                |page| Decision::Map { page, source: Source::Zero, writable: true, exec: false };
            assert_eq!(decide(s, 0x402010, Access::Write, false), zero_rw(0x402000));
            assert_eq!(decide(s, 0x404000, Access::Read, false), zero_rw(0x404000));
            assert_eq!(decide(s, STACK_TOP - 8, Access::Write, false), zero_rw(STACK_TOP - 4096));
            assert_eq!(
                decide(s, MMAP_BASE + 0x1000, Access::Read, false),
                Decision::Map {
                    page: MMAP_BASE + 0x1000,
                    source: Source::Zero,
                    writable: false,
                    exec: false
                }
            );
        });
    }

    #[test]
    fn forbidden_accesses_kill_and_name_the_region() {
        with_space(|s| {
            assert_eq!(decide(s, 0x400010, Access::Write, true), Decision::Kill(Region::Text));
            assert_eq!(decide(s, 0x400010, Access::Write, false), Decision::Kill(Region::Text));
            assert_eq!(decide(s, 0x402000, Access::Execute, false), Decision::Kill(Region::Data));
            assert_eq!(decide(s, 0, Access::Read, false), Decision::Kill(Region::Null));
            assert_eq!(
                decide(s, 0xffff_ffff_8000_0000, Access::Read, true),
                Decision::Kill(Region::Kernel)
            );
            assert_eq!(
                decide(s, STACK_GUARD.end - 8, Access::Write, false),
                Decision::Kill(Region::Guard)
            );
            assert_eq!(decide(s, MMAP_BASE, Access::Write, false), Decision::Kill(Region::Mmap));
            assert_eq!(
                decide(s, 0x404000, Access::Write, true),
                Decision::Kill(Region::Heap),
                "present heap pages never fault"
            );
            assert_eq!(decide(s, 0x30_0000, Access::Read, false), Decision::Kill(Region::Unmapped));
        });
    }
}
