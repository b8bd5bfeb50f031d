//! User address spaces against the model of Xen: faults, copy-on-write, brk, mmap, munmap,
//! mprotect, user buffers and teardown, each checked through a modelled CPU access, plus a
//! property test of random sequences against a plain reference of what the program sees.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::Fixture;
use crate::arch::x86_64::page_fault::{Access, PageFault};
use crate::mm::addr::PAGE_SIZE;
use crate::mm::addr::{Pfn, PfnRange, VirtAddr};
use crate::mm::address_space::{
    AddressSpace, BadAddress, Bookkeeping, MapError, MapRequest, Placement, ProgramImage, Refusal,
    Resolved, SegmentSpec, SharedPages, SpaceLimits, Tuning,
};
use crate::mm::areas::Prot;
use crate::mm::backend::FrameAccess;
use crate::mm::frame::FrameSource;
use crate::mm::model::AccessFault;
use crate::mm::user_space::{Region, MMAP_BASE, STACK_TOP};
use crate::xen::XenError;

const NR_PAGES: u64 = 512;
pub(super) const TEXT: u64 = 0x40_0000;
pub(super) const DATA: u64 = 0x40_1000;
const RX: Prot = Prot { read: true, write: false, exec: true };
const RO: Prot = Prot { read: true, write: false, exec: false };
const RW: Prot = Prot::READ_WRITE;

/// A booted guest with a program "module" in its frames: a text page and a data segment whose
/// second page is partial (copied into the page cache or per fault), then bss.
pub(super) struct World {
    pub(super) f: Fixture,
    pub(super) shared: SharedPages,
    pub(super) file: &'static [u8],
    segments: [SegmentSpec; 2],
    pub(super) module: PfnRange,
    /// Faults the modelled CPU took in [`World::touch`].
    faults: u64,
}

impl World {
    pub(super) fn new() -> World {
        World::with_text_pages(1)
    }

    /// A world whose text segment has `text_pages` pages (the data segment follows it).
    fn with_text_pages(text_pages: u64) -> World {
        World::on_vcpus(text_pages, 1)
    }

    /// [`World::new`] on a machine with `vcpus` vCPUs.
    pub(super) fn smp(vcpus: usize) -> World {
        World::on_vcpus(1, vcpus)
    }

    fn on_vcpus(text_pages: u64, vcpus: usize) -> World {
        let mut f = Fixture::boot_smp(NR_PAGES, vcpus);
        let file_pages = text_pages + 2;
        let file: &'static [u8] = Box::leak(
            (0..file_pages * PAGE_SIZE).map(|i| (i % 251) as u8 + 1).collect::<Vec<_>>().into(),
        );
        let first = f.frames.allocate_frame().unwrap();
        for i in 1..file_pages {
            assert_eq!(f.frames.allocate_frame().unwrap(), Pfn(first.0 + i), "contiguous module");
        }
        for i in 0..file_pages {
            let bytes = &file[(i * PAGE_SIZE) as usize..((i + 1) * PAGE_SIZE) as usize];
            f.pt.memory_mut().write_bytes(Pfn(first.0 + i), 0, bytes);
        }
        let segments = [
            SegmentSpec {
                vaddr: TEXT,
                mem_size: text_pages * PAGE_SIZE,
                file_offset: 0,
                file_size: text_pages * PAGE_SIZE,
                prot: RX,
            },
            SegmentSpec {
                vaddr: TEXT + text_pages * PAGE_SIZE,
                mem_size: 4 * PAGE_SIZE,
                file_offset: text_pages * PAGE_SIZE,
                file_size: PAGE_SIZE + 0x800,
                prot: RW,
            },
        ];
        let module = PfnRange { start: first, count_frames: file_pages };
        let mut w = World { f, shared: SharedPages::new(), file, segments, module, faults: 0 };
        let image = w.image();
        let image = ProgramImage { segments: Box::leak(Box::new(w.segments)), ..image };
        w.shared.load(&mut w.f.pt, &mut w.f.frames, module, &image).unwrap();
        assert_eq!(w.shared.cached_frames(), 0, "nothing read-only is partial");
        w
    }

    fn image(&self) -> ProgramImage<'static, '_> {
        ProgramImage {
            file: self.file,
            segments: &self.segments,
            file_first_pfn: Some(self.module.start),
            heap: 0x40_5000..0x40_5000 + (64 << 20),
        }
    }

    pub(super) fn space(&mut self, limits: SpaceLimits) -> AddressSpace<'static> {
        let image = self.image();
        let image = ProgramImage { segments: Box::leak(Box::new(self.segments)), ..image };
        let space = AddressSpace::new(
            &mut self.f.pt,
            &mut self.f.frames,
            &image,
            Bookkeeping::new(limits),
            limits,
        )
        .unwrap();
        space.activate(&mut self.f.pt).unwrap();
        space
    }

    /// A CPU access from user mode: through the model (TLB included), faulting into the
    /// address space as Xen would deliver it, then retried once.
    fn touch(
        &mut self,
        space: &mut AddressSpace<'_>,
        addr: u64,
        access: Access,
    ) -> Result<Pfn, Refusal> {
        let write = access == Access::Write;
        for _ in 0..2 {
            let result = self.f.xen.machine().access(space.root().mfn, VirtAddr::new(addr), write);
            let present = match result {
                Ok(pfn) => return Ok(pfn),
                Err(AccessFault::NotPresent) => false,
                Err(AccessFault::ReadOnly) => true,
            };
            self.faults += 1;
            let fault = PageFault::user(addr, access, present);
            space.fault(&mut self.f.pt, &mut self.f.frames, &self.shared, &fault)?;
        }
        panic!("the fault at {addr:#x} was resolved but the access still faults");
    }

    fn read_byte(&mut self, space: &mut AddressSpace<'_>, addr: u64) -> Result<u8, Refusal> {
        let pfn = self.touch(space, addr, Access::Read)?;
        let mut byte = [0];
        self.f.pt.memory().read_bytes(pfn, (addr % PAGE_SIZE) as usize, &mut byte);
        Ok(byte[0])
    }

    fn write_byte(
        &mut self,
        space: &mut AddressSpace<'_>,
        addr: u64,
        value: u8,
    ) -> Result<(), Refusal> {
        let pfn = self.touch(space, addr, Access::Write)?;
        self.f.pt.memory_mut().write_bytes(pfn, (addr % PAGE_SIZE) as usize, &[value]);
        Ok(())
    }

    pub(super) fn mmap(
        &mut self,
        space: &mut AddressSpace<'_>,
        placement: Placement,
        len: u64,
        prot: Prot,
    ) -> Result<u64, MapError> {
        let request = MapRequest { placement, len, prot, populate: false };
        space.mmap(&mut self.f.pt, &mut self.f.frames, &self.shared, request)
    }

    pub(super) fn used(&self) -> u64 {
        self.f.frames.inner.used_frames()
    }

    pub(super) fn teardown(&mut self, mut space: AddressSpace<'_>) {
        let lost = space.teardown(&mut self.f.pt, &mut self.f.frames, &self.shared).unwrap();
        assert_eq!(lost, 0, "every frame the space held came back");
    }
}

pub(super) fn limits() -> SpaceLimits {
    SpaceLimits { frames: 200, areas: 64 }
}

#[test]
fn zero_fill_file_sharing_and_copy_on_write() {
    let mut w = World::new();
    let before = w.used();
    let mut s = w.space(limits());
    // Text: the module's own frame, read-only, shared.
    assert_eq!(w.read_byte(&mut s, TEXT + 5).unwrap(), w.file[5]);
    let text = w.f.pt.translate(s.root(), VirtAddr::new(TEXT)).unwrap().unwrap();
    assert_eq!(text.pfn, w.module.start);
    assert!(matches!(w.write_byte(&mut s, TEXT, 1), Err(Refusal::Forbidden(Region::Text))));
    // Data, read first: shared; the first write copies it and the module frame stays intact.
    assert_eq!(w.read_byte(&mut s, DATA + 7).unwrap(), w.file[PAGE_SIZE as usize + 7]);
    let shared = w.f.pt.translate(s.root(), VirtAddr::new(DATA)).unwrap().unwrap();
    assert_eq!(shared.pfn, Pfn(w.module.start.0 + 1));
    w.write_byte(&mut s, DATA + 7, 0xee).unwrap();
    let private = w.f.pt.translate(s.root(), VirtAddr::new(DATA)).unwrap().unwrap();
    assert_ne!(private.pfn, shared.pfn, "copied on write");
    assert_eq!(w.read_byte(&mut s, DATA + 7).unwrap(), 0xee);
    assert_eq!(w.read_byte(&mut s, DATA + 8).unwrap(), w.file[PAGE_SIZE as usize + 8]);
    let mut module_byte = [0];
    w.f.pt.memory().read_bytes(shared.pfn, 7, &mut module_byte);
    assert_eq!(module_byte[0], w.file[PAGE_SIZE as usize + 7], "the shared frame is untouched");
    // The partial page: file bytes then zeros, private.
    assert_eq!(
        w.read_byte(&mut s, DATA + PAGE_SIZE + 0x7ff).unwrap(),
        w.file[2 * PAGE_SIZE as usize + 0x7ff]
    );
    assert_eq!(w.read_byte(&mut s, DATA + PAGE_SIZE + 0x800).unwrap(), 0);
    // bss and stack: zero-filled and writable.
    assert_eq!(w.read_byte(&mut s, DATA + 3 * PAGE_SIZE).unwrap(), 0);
    w.write_byte(&mut s, STACK_TOP - 8, 3).unwrap();
    assert_eq!(w.read_byte(&mut s, STACK_TOP - 8).unwrap(), 3);
    // Outside every area: refused, named.
    assert_eq!(w.touch(&mut s, 0x10, Access::Read), Err(Refusal::Forbidden(Region::Null)));
    assert_eq!(w.touch(&mut s, MMAP_BASE, Access::Read), Err(Refusal::Forbidden(Region::Unmapped)));
    let exec = PageFault::user(DATA, Access::Execute, true);
    let refused = s.fault(&mut w.f.pt, &mut w.f.frames, &w.shared, &exec);
    assert_eq!(refused, Err(Refusal::Forbidden(Region::Data)), "data is not executable");
    w.f.assert_clean();
    w.teardown(s);
    assert_eq!(w.used(), before, "teardown gave every frame and table back");
    w.f.assert_clean();
}

#[test]
fn a_syscall_writing_into_a_shared_page_copies_it_and_the_program_sees_the_copy() {
    let mut w = World::new();
    let mut s = w.space(limits());
    // The program reads the data page: its TLB now holds the shared frame's translation.
    assert_eq!(w.read_byte(&mut s, DATA + 3).unwrap(), w.file[PAGE_SIZE as usize + 3]);
    // A syscall writes into it (no CPU fault on the way: the kernel copies the page itself).
    s.write(&mut w.f.pt, &mut w.f.frames, &w.shared, DATA + 3, &[0xab]).unwrap();
    assert_eq!(w.read_byte(&mut s, DATA + 3).unwrap(), 0xab, "the program sees what was written");
    w.f.assert_clean();
    w.teardown(s);
}

#[test]
fn the_page_cache_serves_partial_read_only_pages_to_every_run() {
    let mut w = World::new();
    w.segments[1].prot = RO;
    w.shared = SharedPages::new();
    let image = w.image();
    let image = ProgramImage { segments: Box::leak(Box::new(w.segments)), ..image };
    w.shared.load(&mut w.f.pt, &mut w.f.frames, w.module, &image).unwrap();
    assert_eq!(w.shared.cached_frames(), 1, "only the partial page is copied");
    let mut pfns = Vec::new();
    for _ in 0..2 {
        let mut s = w.space(limits());
        assert_eq!(
            w.read_byte(&mut s, DATA + PAGE_SIZE + 1).unwrap(),
            w.file[2 * PAGE_SIZE as usize + 1]
        );
        pfns.push(
            w.f.pt.translate(s.root(), VirtAddr::new(DATA + PAGE_SIZE)).unwrap().unwrap().pfn,
        );
        w.teardown(s);
    }
    assert_eq!(pfns[0], pfns[1], "both runs map the cached frame");
    assert!(w.shared.holds(pfns[0]));
    w.shared.unload(&mut w.f.frames).unwrap();
    w.f.assert_clean();
}

#[test]
fn mprotect_never_makes_a_shared_frame_writable() {
    let mut w = World::new();
    let mut s = w.space(limits());
    assert_eq!(w.read_byte(&mut s, TEXT).unwrap(), w.file[0]);
    assert_eq!(w.read_byte(&mut s, DATA).unwrap(), w.file[PAGE_SIZE as usize]);
    let rwx = Prot { read: true, write: true, exec: true };
    s.mprotect(&mut w.f.pt, &w.shared, TEXT..TEXT + 2 * PAGE_SIZE, rwx).unwrap();
    for page in [TEXT, DATA] {
        let m = w.f.pt.translate(s.root(), VirtAddr::new(page)).unwrap().unwrap();
        assert!(w.shared.holds(m.pfn));
        assert!(
            !m.flags.contains(crate::mm::pte::PteFlags::WRITABLE),
            "{page:#x}: shared, writable"
        );
    }
    // The first write copies: the module's text stays what every run sees.
    w.write_byte(&mut s, TEXT + 1, 0x90).unwrap();
    let text = w.f.pt.translate(s.root(), VirtAddr::new(TEXT)).unwrap().unwrap();
    assert!(!w.shared.holds(text.pfn), "copied on write");
    let mut module = [0];
    w.f.pt.memory().read_bytes(w.module.start, 1, &mut module);
    assert_eq!(module[0], w.file[1]);
    w.f.assert_clean();
    w.teardown(s);
}

#[test]
fn prot_none_keeps_the_contents_and_protection_comes_back() {
    let mut w = World::new();
    let mut s = w.space(limits());
    let a = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, 2 * PAGE_SIZE, RW).unwrap();
    w.write_byte(&mut s, a, 0x5a).unwrap();
    w.write_byte(&mut s, a + PAGE_SIZE, 0xa5).unwrap();
    let held = s.held_frames();
    s.mprotect(&mut w.f.pt, &w.shared, a..a + 2 * PAGE_SIZE, Prot::NONE).unwrap();
    assert_eq!(w.touch(&mut s, a, Access::Read), Err(Refusal::Forbidden(Region::Mmap)));
    assert_eq!(s.read(&w.f.pt, &w.shared, a, &mut [0]), Err(BadAddress));
    assert_eq!(s.held_frames(), held, "the frames stay with the space");
    s.mprotect(&mut w.f.pt, &w.shared, a..a + 2 * PAGE_SIZE, RO).unwrap();
    let mut buf = [0];
    s.read(&w.f.pt, &w.shared, a + PAGE_SIZE, &mut buf).unwrap();
    assert_eq!(buf[0], 0xa5, "a syscall reads the parked frame");
    assert_eq!(w.read_byte(&mut s, a).unwrap(), 0x5a);
    assert!(matches!(w.write_byte(&mut s, a, 0), Err(Refusal::Forbidden(Region::Mmap))));
    s.mprotect(&mut w.f.pt, &w.shared, a..a + 2 * PAGE_SIZE, RW).unwrap();
    w.write_byte(&mut s, a, 0x11).unwrap();
    assert_eq!(w.read_byte(&mut s, a + PAGE_SIZE).unwrap(), 0xa5);
    w.f.assert_clean();
    w.teardown(s);
    w.f.assert_clean();
}

#[test]
fn map_fixed_replaces_segments_heap_and_mappings() {
    let mut w = World::new();
    let before = w.used();
    let mut s = w.space(limits());
    w.write_byte(&mut s, DATA + 9, 0x77).unwrap();
    assert_eq!(w.read_byte(&mut s, TEXT).unwrap(), w.file[0]);
    // Over the text and the written data page, read-only: fresh zeros, not writable, named mmap.
    let fixed = Placement::Replace { addr: TEXT };
    let got = w.mmap(&mut s, fixed, 2 * PAGE_SIZE, RO).unwrap();
    assert_eq!(got, TEXT);
    assert_eq!(w.read_byte(&mut s, TEXT).unwrap(), 0);
    assert_eq!(w.read_byte(&mut s, DATA + 9).unwrap(), 0, "the old data is gone");
    assert_eq!(s.region(DATA + 9), Region::Mmap);
    assert!(matches!(w.write_byte(&mut s, DATA, 1), Err(Refusal::Forbidden(Region::Mmap))));
    // The rest of the data segment is still file-backed.
    assert_eq!(
        w.read_byte(&mut s, DATA + PAGE_SIZE + 3).unwrap(),
        w.file[2 * PAGE_SIZE as usize + 3]
    );
    // Over the heap: brk grows, the mapping replaces part of it, brk cannot grow into it.
    let heap = 0x40_5000;
    assert_eq!(
        s.set_brk(&mut w.f.pt, &mut w.f.frames, &w.shared, heap + 4 * PAGE_SIZE).unwrap(),
        heap + 4 * PAGE_SIZE
    );
    w.write_byte(&mut s, heap + PAGE_SIZE, 9).unwrap();
    let over_heap = Placement::Replace { addr: heap + PAGE_SIZE };
    w.mmap(&mut s, over_heap, PAGE_SIZE, RW).unwrap();
    assert_eq!(w.read_byte(&mut s, heap + PAGE_SIZE).unwrap(), 0);
    let over = Placement::NoReplace { addr: heap };
    assert_eq!(w.mmap(&mut s, over, PAGE_SIZE, RW), Err(MapError::Exists));
    assert_eq!(s.set_brk(&mut w.f.pt, &mut w.f.frames, &w.shared, heap).unwrap(), heap);
    assert_eq!(
        s.region(heap + PAGE_SIZE),
        Region::Unmapped,
        "shrinking brk unmaps what lay there too"
    );
    w.mmap(&mut s, Placement::Replace { addr: heap + 2 * PAGE_SIZE }, PAGE_SIZE, RW).unwrap();
    assert_eq!(
        s.set_brk(&mut w.f.pt, &mut w.f.frames, &w.shared, heap + 8 * PAGE_SIZE).unwrap(),
        heap,
        "brk does not grow into a mapping"
    );
    w.f.assert_clean();
    w.teardown(s);
    assert_eq!(w.used(), before);
    w.f.assert_clean();
}

#[test]
fn thousands_of_mappings_merge_and_munmap_gives_frames_back() {
    let mut w = World::new();
    let before = w.used();
    let mut s = w.space(SpaceLimits { frames: 400, areas: 16 });
    let mut last = 0;
    for _ in 0..3000 {
        last = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, PAGE_SIZE, RW).unwrap();
    }
    assert_eq!(last, MMAP_BASE + 2999 * PAGE_SIZE);
    assert!(s.areas().len() <= 4, "3000 adjacent mappings are one area");
    let in_use = w.used();
    for i in 0..100 {
        w.write_byte(&mut s, MMAP_BASE + i * PAGE_SIZE, i as u8).unwrap();
    }
    // Unmapping every other page splits the area 50 times: past 16 areas it is refused, whole.
    let mut refused = false;
    for i in (0..100).step_by(2) {
        let page = MMAP_BASE + i * PAGE_SIZE;
        match s.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, page..page + PAGE_SIZE) {
            Ok(()) => assert_eq!(
                w.touch(&mut s, page, Access::Read),
                Err(Refusal::Forbidden(Region::Unmapped))
            ),
            Err(MapError::NoRoom) => {
                refused = true;
                assert_eq!(
                    w.read_byte(&mut s, page).unwrap(),
                    i as u8,
                    "a refused munmap changed nothing"
                );
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(refused);
    s.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, MMAP_BASE..MMAP_BASE + 3000 * PAGE_SIZE)
        .unwrap();
    // The pages went back; the tables they needed stay until teardown.
    assert!(w.used() <= in_use + 3, "the touched pages went back: {} > {in_use}", w.used());
    w.f.assert_clean();
    w.teardown(s);
    assert_eq!(w.used(), before);
}

#[test]
fn reading_a_user_buffer_never_allocates_and_a_bad_one_changes_nothing() {
    let mut w = World::new();
    let mut s = w.space(limits());
    let len = 4096 * PAGE_SIZE;
    let a = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, len, RO).unwrap();
    let before = w.used();
    let mut chunk = vec![0xffu8; 64 * 1024];
    for offset in (0..len).step_by(chunk.len()) {
        s.read(&w.f.pt, &w.shared, a + offset, &mut chunk).unwrap();
        assert!(chunk.iter().all(|&b| b == 0));
    }
    let mut text = [0u8; 16];
    s.read(&w.f.pt, &w.shared, TEXT + 100, &mut text).unwrap();
    assert_eq!(&text, &w.file[100..116], "file pages are read from the file");
    assert_eq!(w.used(), before, "16 MiB read through the kernel, not one frame taken");
    assert_eq!(s.check(a, len, Access::Read), Ok(()));
    assert_eq!(s.check(a, len + 1, Access::Read), Err(BadAddress));
    assert_eq!(s.check(a, 1, Access::Write), Err(BadAddress));
    let bss = DATA + 3 * PAGE_SIZE;
    assert!(s
        .write(&mut w.f.pt, &mut w.f.frames, &w.shared, bss + PAGE_SIZE - 2, &[1, 2, 3, 4])
        .is_err());
    assert_eq!(w.used(), before, "a write past the segment's end took nothing");
    s.write(&mut w.f.pt, &mut w.f.frames, &w.shared, bss + 10, b"hello").unwrap();
    let mut back = [0u8; 5];
    s.read(&w.f.pt, &w.shared, bss + 10, &mut back).unwrap();
    assert_eq!(&back, b"hello");
    w.f.assert_clean();
    w.teardown(s);
}

#[test]
fn the_frame_limit_counts_pages_and_tables() {
    let mut w = World::new();
    let mut s = w.space(SpaceLimits { frames: 12, areas: 16 });
    let a = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, 64 * PAGE_SIZE, RW).unwrap();
    let mut mapped = 0;
    for i in 0..64 {
        match w.touch(&mut s, a + i * PAGE_SIZE, Access::Write) {
            Ok(_) => mapped += 1,
            Err(Refusal::OutOfMemory) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(s.held_frames() <= 12, "held {}", s.held_frames());
    assert!((4..12).contains(&mapped), "mapped {mapped}");
    w.f.assert_clean();
    w.teardown(s);
}

#[test]
fn a_fault_resolves_to_what_it_did() {
    let mut w = World::new();
    let mut s = w.space(limits());
    let fault = |addr, access, present| PageFault::user(addr, access, present);
    let (pt, frames, shared) = (&mut w.f.pt, &mut w.f.frames, &w.shared);
    assert_eq!(
        s.fault(pt, frames, shared, &fault(TEXT, Access::Execute, false)),
        Ok(Resolved::Shared { pfn: w.module.start, around: 0 })
    );
    assert_eq!(
        s.fault(pt, frames, shared, &fault(STACK_TOP - 1, Access::Write, false)),
        Ok(Resolved::ZeroFilled { ahead: 0 })
    );
    assert_eq!(
        s.fault(pt, frames, shared, &fault(DATA, Access::Write, false)),
        Ok(Resolved::FileCopy)
    );
    assert_eq!(
        s.fault(pt, frames, shared, &fault(DATA, Access::Write, true)),
        Ok(Resolved::AlreadyMapped)
    );
    w.teardown(s);
}

#[test]
fn fault_around_maps_the_window_of_shared_file_pages_in_one_batch() {
    let mut w = World::with_text_pages(40);
    let mut s = w.space(limits());
    s.set_tuning(Tuning { fault_around_pages: 16, prefault_pages: 0 });
    let before = w.f.counts();
    assert_eq!(
        s.fault(
            &mut w.f.pt,
            &mut w.f.frames,
            &w.shared,
            &PageFault::user(TEXT + 5 * PAGE_SIZE, Access::Read, false)
        ),
        Ok(Resolved::Shared { pfn: Pfn(w.module.start.0 + 5), around: 15 })
    );
    assert_eq!((w.f.counts() - before).mmu_update_calls, 1, "the window costs one batch");
    for page in 0..40 {
        assert_eq!(
            w.read_byte(&mut s, TEXT + page * PAGE_SIZE).unwrap(),
            w.file[(page * PAGE_SIZE) as usize]
        );
    }
    // Pages 0..16 came with the first fault; 16..32 and 32..40 need one fault each.
    assert_eq!(w.faults, 2);
    let text = w.f.pt.translate(s.root(), VirtAddr::new(TEXT + 20 * PAGE_SIZE)).unwrap().unwrap();
    assert_eq!(text.pfn, Pfn(w.module.start.0 + 20), "mapped from the module, shared");
    assert!(!text.flags.contains(crate::mm::pte::PteFlags::WRITABLE));
    // Writable data pages are never mapped around (they would be copied, not shared).
    let data = TEXT + 40 * PAGE_SIZE;
    w.read_byte(&mut s, data).unwrap();
    assert_eq!(w.f.pt.translate(s.root(), VirtAddr::new(data + PAGE_SIZE)).unwrap(), None);
    // 0 turns it off.
    let mut off = w.space(limits());
    w.teardown(s);
    off.activate(&mut w.f.pt).unwrap();
    off.set_tuning(Tuning::default());
    w.faults = 0;
    for page in 0..40 {
        w.read_byte(&mut off, TEXT + page * PAGE_SIZE).unwrap();
    }
    assert_eq!(w.faults, 40);
    w.f.assert_clean();
    w.teardown(off);
    w.f.assert_clean();
}

#[test]
fn fault_around_and_prefault_walk_from_the_root_once_for_the_whole_window() {
    // A walk from the root reads 4 entries (L4 to L1). Fault-around and prefault take one walk
    // to the L1 to find the window's free pages and one to fill them, then read each entry of
    // the window there (once to find it free, once to fill it): about 2 reads per page and a
    // few walks. A walk from the root per window page costs at least 4 reads per page.
    for window in [16, 64] {
        let mut w = World::with_text_pages(2 * window);
        let mut s = w.space(limits());
        s.set_tuning(Tuning { fault_around_pages: window, prefault_pages: window });
        // The first window's fault builds the L1; the second window's finds it.
        w.read_byte(&mut s, TEXT).unwrap();
        let before = w.f.entry_reads();
        let page = window + 5;
        w.read_byte(&mut s, TEXT + page * PAGE_SIZE).unwrap();
        let reads = w.f.entry_reads() - before;
        assert_eq!(w.faults, 2, "one fault per window");
        assert_eq!(reads, 3 * 4 + 2 * window, "window {window}: {reads} table entries read");

        let a = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, 4 * window * PAGE_SIZE, RW);
        let a = a.unwrap();
        for page in 0..3 {
            w.write_byte(&mut s, a + page * PAGE_SIZE, 1).unwrap();
        }
        // The third fault continued a run and prefaulted `window` pages.
        let (faults, before) = (w.faults, w.f.entry_reads());
        w.write_byte(&mut s, a + (3 + window) * PAGE_SIZE, 1).unwrap();
        let reads = w.f.entry_reads() - before;
        assert_eq!(w.faults, faults + 1);
        assert_eq!(reads, 3 * 4 + 2 * (window + 1), "prefault {window}: {reads} entries read");
        w.f.assert_clean();
        w.teardown(s);
        w.f.assert_clean();
    }
}

#[test]
fn prefault_follows_sequential_zero_fill_and_leaves_random_alone() {
    let mut w = World::new();
    let mut s = w.space(SpaceLimits { frames: 400, areas: 16 });
    s.set_tuning(Tuning { fault_around_pages: 0, prefault_pages: 16 });
    let pages = 256;
    let a = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, pages * PAGE_SIZE, RW).unwrap();
    let before = w.f.counts();
    for page in 0..pages {
        w.write_byte(&mut s, a + page * PAGE_SIZE, page as u8).unwrap();
    }
    let calls = (w.f.counts() - before).mmu_update_calls;
    // Pages 0 and 1 fault alone, page 2 starts prefaulting, then one fault per 17 pages.
    assert_eq!(w.faults, 2 + (pages - 2).div_ceil(17), "{} faults", w.faults);
    assert_eq!(calls, w.faults, "one batch per fault, new tables included");
    for page in 0..pages {
        assert_eq!(w.read_byte(&mut s, a + page * PAGE_SIZE).unwrap(), page as u8);
    }
    // Touching the end of one block and then the start of the next (one step, not a run)
    // does not prefault.
    let apart = Placement::Anywhere { hint: MMAP_BASE + (1 << 30) };
    let c = w.mmap(&mut s, apart, 64 * PAGE_SIZE, RW).unwrap();
    w.faults = 0;
    for block in 0..4 {
        let start = c + block * 16 * PAGE_SIZE;
        w.write_byte(&mut s, start, 1).unwrap();
        w.write_byte(&mut s, start + 15 * PAGE_SIZE, 1).unwrap();
    }
    assert_eq!(w.faults, 8);
    assert_eq!(w.f.pt.translate(s.root(), VirtAddr::new(c + 17 * PAGE_SIZE)).unwrap(), None);
    // A random order (no fault right after the previous one) never prefaults.
    let b = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, 64 * PAGE_SIZE, RW).unwrap();
    w.faults = 0;
    for i in 0..64u64 {
        let page = (i * 37 + 5) % 64;
        w.write_byte(&mut s, b + page * PAGE_SIZE, 1).unwrap();
    }
    assert_eq!(w.faults, 64, "one fault per page");
    w.f.assert_clean();
    w.teardown(s);
    w.f.assert_clean();
}

#[test]
fn prefault_stays_within_the_limit_and_the_area() {
    let mut w = World::new();
    let mut s = w.space(SpaceLimits { frames: 20, areas: 16 });
    s.set_tuning(Tuning { fault_around_pages: 0, prefault_pages: 64 });
    let a = w.mmap(&mut s, Placement::Anywhere { hint: 0 }, 8 * PAGE_SIZE, RW).unwrap();
    for page in 0..3 {
        w.write_byte(&mut s, a + page * PAGE_SIZE, 1).unwrap();
    }
    assert_eq!(w.f.pt.translate(s.root(), VirtAddr::new(a + 8 * PAGE_SIZE)).unwrap(), None);
    assert!(s.held_frames() <= 20);
    for page in 3..8 {
        w.write_byte(&mut s, a + page * PAGE_SIZE, 1).unwrap();
    }
    assert_eq!(w.faults, 3, "the third fault mapped the rest of the area");
    w.teardown(s);
}

#[test]
fn map_populate_maps_everything_in_few_batches() {
    let mut w = World::new();
    let mut s = w.space(SpaceLimits { frames: 400, areas: 16 });
    let pages = 300;
    let before = w.f.counts();
    let request = MapRequest {
        placement: Placement::Anywhere { hint: 0 },
        len: pages * PAGE_SIZE,
        prot: RW,
        populate: true,
    };
    let a = s.mmap(&mut w.f.pt, &mut w.f.frames, &w.shared, request).unwrap();
    let calls = (w.f.counts() - before).mmu_update_calls;
    assert!(calls <= 2, "{calls} batches for {pages} pages");
    for page in 0..pages {
        assert_eq!(w.read_byte(&mut s, a + page * PAGE_SIZE).unwrap(), 0);
    }
    assert_eq!(w.faults, 0, "nothing faults after MAP_POPULATE");
    w.f.assert_clean();
    w.teardown(s);
    w.f.assert_clean();
}

// ---- The property test ---------------------------------------------------------------------

/// Pages the random sequences use: 16 at the mmap base and 8 in the next L1 (anonymous
/// mappings), then the data segment's 4 pages (a file page, a partial file page, two bss pages:
/// copy-on-write and file copies) and the heap's first 4 pages, which follow it.
const PAGES: u64 = 32;
const HEAP: u64 = DATA + 4 * PAGE_SIZE;

fn page_addr(i: u64) -> u64 {
    match i {
        0..16 => MMAP_BASE + i * PAGE_SIZE,
        16..24 => MMAP_BASE + (1 << 21) + (i - 16) * PAGE_SIZE,
        _ => DATA + (i - 24) * PAGE_SIZE,
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Mmap {
        first: u64,
        pages: u64,
        prot: u8,
        fixed: bool,
    },
    Munmap {
        first: u64,
        pages: u64,
    },
    Mprotect {
        first: u64,
        pages: u64,
        prot: u8,
    },
    Brk {
        pages: u64,
    },
    Write {
        page: u64,
        value: u8,
    },
    Read {
        page: u64,
    },
    /// Make the other address space the current one.
    Switch,
    /// Tear the current address space down and start a new one in its place.
    NewSpace,
    /// Xen refuses the `step`-th hypercall step from now (an entry, an op or a call).
    Refuse {
        step: u64,
    },
    /// The `nth` frame allocation from now finds the pool empty (the kernel's `frame` point).
    RefuseFrame {
        nth: u64,
    },
}

fn prot_of(bits: u8) -> Prot {
    [Prot::NONE, RO, RW, RX][usize::from(bits % 4)]
}

fn op() -> impl Strategy<Value = Op> {
    let page = 0..PAGES;
    prop_oneof![
        3 => (page.clone(), 1..4u64, any::<u8>(), any::<bool>())
            .prop_map(|(first, pages, prot, fixed)| Op::Mmap { first, pages, prot, fixed }),
        2 => (page.clone(), 1..4u64).prop_map(|(first, pages)| Op::Munmap { first, pages }),
        2 => (page.clone(), 1..4u64, any::<u8>())
            .prop_map(|(first, pages, prot)| Op::Mprotect { first, pages, prot }),
        2 => (0..=4u64).prop_map(|pages| Op::Brk { pages }),
        5 => (page.clone(), any::<u8>()).prop_map(|(page, value)| Op::Write { page, value }),
        3 => page.prop_map(|page| Op::Read { page }),
        1 => Just(Op::Switch),
        1 => Just(Op::NewSpace),
        2 => (0..6u64).prop_map(|step| Op::Refuse { step }),
        2 => (0..4u64).prop_map(|nth| Op::RefuseFrame { nth }),
    ]
}

/// What a program should see: each page's protection and byte 0 (absent: nothing there), and
/// how many heap pages brk gave it.
#[derive(Clone, Debug, Default)]
struct Reference {
    pages: BTreeMap<u64, (Prot, u8)>,
    brk_pages: u64,
    /// Pages whose contents a refused operation may or may not have kept (an inaccessible page
    /// cannot be read to find out): not compared until written again.
    unknown: std::collections::BTreeSet<u64>,
}

impl Reference {
    /// A fresh program: the data segment holds the file's bytes, then bss zeros.
    fn fresh(w: &World) -> Reference {
        let mut pages = BTreeMap::new();
        pages.insert(24, (RW, w.file[PAGE_SIZE as usize]));
        pages.insert(25, (RW, w.file[2 * PAGE_SIZE as usize]));
        pages.insert(26, (RW, 0));
        pages.insert(27, (RW, 0));
        Reference { pages, brk_pages: 0, unknown: Default::default() }
    }
}

/// The pages `first..first + pages` that exist (the range is clipped to the page list).
fn span(first: u64, pages: u64) -> std::ops::Range<u64> {
    first..(first + pages).min(PAGES)
}

/// A range of addresses for pages `first..`, if they are contiguous in the address space.
fn addr_range(first: u64, pages: u64) -> Option<std::ops::Range<u64>> {
    let r = span(first, pages);
    let start = page_addr(r.start);
    let end = page_addr(r.end - 1) + PAGE_SIZE;
    (end.checked_sub(start) == Some((r.end - r.start) * PAGE_SIZE)).then_some(start..end)
}

/// Two address spaces, one current, each with its reference.
struct Spaces {
    spaces: [AddressSpace<'static>; 2],
    references: [Reference; 2],
    current: usize,
}

/// Runs `op`; when a refusal Xen was told to make is used up by it and the operation fails,
/// the failure must be the kernel's error (nothing else), and the reference is brought back in
/// line with what the space now holds for the pages the operation touched: a refused operation
/// may have done part of its work (Linux's munmap and MAP_FIXED may too), but never breaks a rule,
/// leaks a frame or leaves a stale translation (`check` runs after it either way).
fn apply(w: &mut World, all: &mut Spaces, op: Op) -> Result<(), TestCaseError> {
    let pending = |w: &World| {
        w.f.xen.machine().pending_refusals() + usize::from(w.f.frames.fail_allocation.is_some())
    };
    let armed = pending(w);
    if armed == 0 {
        return apply_exactly(w, all, op);
    }
    let c = all.current;
    let outcome = apply_refusable(w, all, op);
    let refused = pending(w) < armed;
    match outcome {
        Ok(()) => Ok(()),
        Err(failure) if refused => {
            prop_assert!(failure, "a refused operation failed some other way");
            resync(w, all, c, op, false);
            Ok(())
        }
        Err(_) => Err(TestCaseError::fail(format!("{op:?} failed with no refusal used"))),
    }
}

/// An operation whose failure is allowed: `Err(true)` if it failed with the kernel's error.
fn apply_refusable(w: &mut World, all: &mut Spaces, op: Op) -> Result<(), bool> {
    let c = all.current;
    let s = &mut all.spaces[c];
    let kernel = |e: MapError| matches!(e, MapError::Kernel(_));
    let result = match op {
        Op::Mmap { first, pages, prot, fixed } => match addr_range(first, pages) {
            Some(range) if fixed => w
                .mmap(
                    s,
                    Placement::Replace { addr: range.start },
                    range.end - range.start,
                    prot_of(prot),
                )
                .map(drop)
                .map_err(kernel),
            _ => Ok(()),
        },
        Op::Munmap { first, pages } => match addr_range(first, pages) {
            Some(range) => s.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, range).map_err(kernel),
            None => Ok(()),
        },
        Op::Mprotect { first, pages, prot } => match addr_range(first, pages) {
            Some(range) if span(first, pages).all(|p| all.references[c].pages.contains_key(&p)) => {
                s.mprotect(&mut w.f.pt, &w.shared, range, prot_of(prot)).map_err(kernel)
            }
            _ => Ok(()),
        },
        Op::Brk { pages } => s
            .set_brk(&mut w.f.pt, &mut w.f.frames, &w.shared, HEAP + pages * PAGE_SIZE)
            .map(drop)
            .map_err(|_| true),
        Op::Write { page, .. } | Op::Read { page } => {
            let allowed = all.references[c].pages.get(&page).is_some_and(|(prot, _)| match op {
                Op::Write { .. } => prot.write,
                _ => prot.accessible(),
            });
            if !allowed {
                return Ok(());
            }
            let got = match op {
                Op::Write { value, .. } => w.write_byte(s, page_addr(page), value),
                _ => w.read_byte(s, page_addr(page)).map(drop),
            };
            match got {
                Ok(()) => {
                    if let Op::Write { value, .. } = op {
                        all.references[c].pages.get_mut(&page).unwrap().1 = value;
                    }
                    Ok(())
                }
                Err(Refusal::Kernel(_) | Refusal::OutOfMemory) => Err(true),
                Err(_) => Err(false),
            }
        }
        Op::Switch | Op::NewSpace | Op::Refuse { .. } | Op::RefuseFrame { .. } => return Ok(()),
    };
    if result.is_ok() {
        // It went through whole: do it again on the reference, as the exact path would.
        resync(w, all, c, op, true);
    }
    result
}

/// Brings the reference of space `c` back in line with the space for the pages `op` touched:
/// protection from the areas, contents from a syscall's read where readable (a page made
/// inaccessible keeps the byte the reference had), and the break.
fn resync(w: &World, all: &mut Spaces, c: usize, op: Op, succeeded: bool) {
    let (s, r) = (&all.spaces[c], &mut all.references[c]);
    let pages = match op {
        Op::Mmap { first, pages, .. }
        | Op::Munmap { first, pages }
        | Op::Mprotect { first, pages, .. } => span(first, pages),
        Op::Write { page, .. } | Op::Read { page } => page..page + 1,
        Op::Brk { .. } => 28..32,
        Op::Switch | Op::NewSpace | Op::Refuse { .. } | Op::RefuseFrame { .. } => 0..0,
    };
    r.brk_pages = (s.brk() - HEAP) / PAGE_SIZE;
    for page in pages {
        let addr = page_addr(page);
        let Some(area) = s.areas().find(addr).copied() else {
            r.pages.remove(&page);
            r.unknown.remove(&page);
            continue;
        };
        let mut byte = [0];
        let old = r.pages.get(&page).map(|&(_, b)| b);
        let value = if area.prot.accessible() {
            r.unknown.remove(&page);
            s.read(&w.f.pt, &w.shared, addr, &mut byte).map(|()| byte[0]).unwrap_or(0)
        } else if succeeded && matches!(op, Op::Mmap { .. }) {
            // A new mapping: zeros, whatever was there.
            r.unknown.remove(&page);
            0
        } else {
            if !succeeded {
                r.unknown.insert(page);
            }
            old.unwrap_or(0)
        };
        r.pages.insert(page, (area.prot, value));
    }
}

fn apply_exactly(w: &mut World, all: &mut Spaces, op: Op) -> Result<(), TestCaseError> {
    let c = all.current;
    let (s, r) = (&mut all.spaces[c], &mut all.references[c]);
    match op {
        Op::Mmap { first, pages, prot, fixed } => {
            let Some(range) = addr_range(first, pages) else { return Ok(()) };
            let prot = prot_of(prot);
            let placement = if fixed {
                Placement::Replace { addr: range.start }
            } else {
                Placement::NoReplace { addr: range.start }
            };
            let got = w.mmap(s, placement, range.end - range.start, prot);
            let taken = span(first, pages).any(|p| r.pages.contains_key(&p));
            match got {
                Ok(addr) => {
                    prop_assert_eq!(addr, range.start);
                    prop_assert!(fixed || !taken, "NOREPLACE over a mapping succeeded");
                    for p in span(first, pages) {
                        r.pages.insert(p, (prot, 0));
                        r.unknown.remove(&p);
                    }
                }
                Err(MapError::Exists) => prop_assert!(!fixed && taken),
                Err(e) => prop_assert!(false, "mmap failed: {:?}", e),
            }
        }
        Op::Munmap { first, pages } => {
            let Some(range) = addr_range(first, pages) else { return Ok(()) };
            s.munmap(&mut w.f.pt, &mut w.f.frames, &w.shared, range).unwrap();
            for p in span(first, pages) {
                r.pages.remove(&p);
            }
        }
        Op::Mprotect { first, pages, prot } => {
            let Some(range) = addr_range(first, pages) else { return Ok(()) };
            let prot = prot_of(prot);
            let covered = span(first, pages).all(|p| r.pages.contains_key(&p));
            match s.mprotect(&mut w.f.pt, &w.shared, range, prot) {
                Ok(()) => {
                    prop_assert!(covered);
                    for p in span(first, pages) {
                        r.pages.get_mut(&p).unwrap().0 = prot;
                    }
                }
                Err(MapError::NotMapped) => prop_assert!(!covered),
                Err(e) => prop_assert!(false, "mprotect failed: {:?}", e),
            }
        }
        Op::Brk { pages } => {
            let got = s.set_brk(&mut w.f.pt, &mut w.f.frames, &w.shared, HEAP + pages * PAGE_SIZE);
            let heap_page = |k: u64| 28 + k;
            let grows_into_a_mapping =
                (r.brk_pages..pages).any(|k| r.pages.contains_key(&heap_page(k)));
            if pages > r.brk_pages && grows_into_a_mapping {
                prop_assert_eq!(got, Ok(HEAP + r.brk_pages * PAGE_SIZE), "brk grew into a mapping");
            } else {
                prop_assert_eq!(got, Ok(HEAP + pages * PAGE_SIZE));
                for k in r.brk_pages..pages {
                    r.pages.insert(heap_page(k), (RW, 0));
                }
                for k in pages..r.brk_pages {
                    r.pages.remove(&heap_page(k));
                }
                r.brk_pages = pages;
            }
        }
        Op::Write { page, value } => {
            let got = w.write_byte(s, page_addr(page), value);
            match r.pages.get_mut(&page) {
                Some((prot, byte)) if prot.write => {
                    prop_assert!(got.is_ok(), "{:?}", got);
                    *byte = value;
                    r.unknown.remove(&page);
                }
                _ => prop_assert!(matches!(got, Err(Refusal::Forbidden(_))), "{:?}", got),
            }
        }
        Op::Read { page } => {
            let got = w.read_byte(s, page_addr(page));
            match r.pages.get(&page) {
                Some((prot, byte)) if prot.accessible() => {
                    if r.unknown.contains(&page) {
                        prop_assert!(got.is_ok());
                    } else {
                        prop_assert_eq!(got, Ok(*byte));
                    }
                }
                _ => prop_assert!(matches!(got, Err(Refusal::Forbidden(_))), "{:?}", got),
            }
        }
        Op::Switch => {
            all.current = 1 - c;
            all.spaces[all.current].activate(&mut w.f.pt).unwrap();
        }
        Op::Refuse { step } => w.f.xen.machine().refuse_step(step, XenError::ENOMEM),
        Op::RefuseFrame { nth } => w.f.frames.fail_allocation = Some(nth),
        Op::NewSpace => {
            let fresh = w.space(limits());
            let mut old = std::mem::replace(&mut all.spaces[c], fresh);
            let lost = old.teardown(&mut w.f.pt, &mut w.f.frames, &w.shared).unwrap();
            prop_assert_eq!(lost, 0);
            all.spaces[c].activate(&mut w.f.pt).unwrap();
            all.references[c] = Reference::fresh(w);
        }
    }
    Ok(())
}

/// After every step: Xen refused nothing and saw no guest bug, no flush is owed; every page of
/// both spaces reads, through a syscall's read, what its reference says, and no entry grants
/// more than its area; frames are accounted exactly.
fn check(w: &mut World, all: &Spaces, baseline: u64) -> Result<(), TestCaseError> {
    {
        let m = w.f.xen.machine();
        prop_assert_eq!(m.rejections(), &[] as &[_], "Xen rejected something");
        prop_assert_eq!(m.bugs(), &[] as &[_], "the model caught a guest bug");
        prop_assert!(!m.owes_tlb_flush(), "a downgrade was left without its flush");
    }
    for (s, r) in all.spaces.iter().zip(&all.references) {
        for page in 0..PAGES {
            let mut byte = [0xff];
            let got = s.read(&w.f.pt, &w.shared, page_addr(page), &mut byte).map(|()| byte[0]);
            match r.pages.get(&page) {
                Some((prot, value)) if prot.accessible() => {
                    if !r.unknown.contains(&page) {
                        prop_assert_eq!(got, Ok(*value), "page {}", page)
                    }
                }
                _ => prop_assert_eq!(got, Err(BadAddress), "page {}", page),
            }
            let mapping = w.f.pt.translate(s.root(), VirtAddr::new(page_addr(page))).unwrap();
            if let Some(m) = mapping {
                let (prot, _) = r.pages.get(&page).copied().unwrap_or((Prot::NONE, 0));
                prop_assert!(prot.accessible(), "page {} mapped without access", page);
                let writable = m.flags.contains(crate::mm::pte::PteFlags::WRITABLE);
                prop_assert!(prot.write || !writable, "page {} writable", page);
                prop_assert!(!writable || !w.shared.holds(m.pfn), "a shared frame is writable");
            }
        }
    }
    let held: u64 = all.spaces.iter().map(|s| s.held_frames()).sum();
    prop_assert_eq!(w.used(), baseline + held, "every frame is accounted");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_user_memory_sequences_match_a_plain_reference(ops in prop::collection::vec(op(), 1..60)) {
        let mut w = World::new();
        let baseline = w.used();
        let first = w.space(limits());
        let second = w.space(limits());
        let mut all = Spaces {
            spaces: [first, second],
            references: [Reference::fresh(&w), Reference::fresh(&w)],
            current: 1,
        };
        for op in ops {
            apply(&mut w, &mut all, op)?;
            check(&mut w, &all, baseline)?;
        }
        w.f.xen.machine().cancel_refusals();
        w.f.frames.fail_allocation = None;
        let Spaces { spaces: [first, second], .. } = all;
        for mut space in [first, second] {
            let lost = space.teardown(&mut w.f.pt, &mut w.f.frames, &w.shared).unwrap();
            prop_assert_eq!(lost, 0);
        }
        prop_assert_eq!(w.used(), baseline, "teardown gave everything back");
        let m = w.f.xen.machine();
        prop_assert_eq!(m.rejections(), &[] as &[_]);
        prop_assert_eq!(m.bugs(), &[] as &[_]);
    }
}

/// A teardown that Xen refuses at any one of its steps asks again and still gives every frame
/// back (the kernel's fault-injection sweep found whole address spaces lost to one refusal).
#[test]
fn a_teardown_refused_at_any_step_still_gives_everything_back() {
    // How many fallible steps a teardown of this space takes.
    let steps = {
        let mut w = World::new();
        let mut s = w.space(limits());
        w.write_byte(&mut s, DATA, 1).unwrap();
        let before = w.f.xen.machine().steps();
        w.teardown(s);
        let after = w.f.xen.machine().steps();
        after - before
    };
    assert!(steps >= 2, "an unpin, an alias batch and a flush at least");
    for step in 0..steps {
        let mut w = World::new();
        let before = w.used();
        let mut s = w.space(limits());
        w.write_byte(&mut s, DATA, 1).unwrap();
        w.f.xen.machine().refuse_step(step, XenError::ENOMEM);
        w.teardown(s);
        assert_eq!(w.f.xen.machine().pending_refusals(), 0, "step {step} was reached");
        assert_eq!(w.used(), before, "refused at step {step}: every frame is back");
    }
}
