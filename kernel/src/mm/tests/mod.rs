//! Host tests of the page-table code against the model of Xen: rules, hypercall counts, properties.

mod address_space;
mod model_rules;
mod page_tables;
mod property;
mod ranges;
mod rollback;
mod smp;
mod spurious;
mod tlb;

use super::addr::Pfn;
use super::kernel_space::AliasWindow;
use super::model::{
    boot_va, CheckedFrames, HypercallCounts, PageType, Xen, BOOT_TABLES, BOOT_WINDOW_FRAMES,
};
use super::p2m::P2m;
use super::page_table::{PageTables, Root};
use super::pte::PteFlags;

/// A booted guest: the model machine, the page tables built on it (boot window recorded, direct
/// map built) and the frame allocator.
pub struct Fixture {
    pub xen: Xen,
    pub pt: PageTables<'static, Xen, Xen>,
    pub frames: CheckedFrames,
    pub nr_pages: u64,
}

/// What must be the same before an operation Xen refused and after it: which frames are free,
/// which are tables (to the page-table code and to Xen), and which direct-map aliases are
/// writable.
#[derive(Debug, PartialEq, Eq)]
pub struct Accounting {
    pub free: Vec<bool>,
    pub tables: Vec<Pfn>,
    pub typed_or_pinned: Vec<Pfn>,
    pub read_only_aliases: Vec<Pfn>,
    pub live_tables: [u64; 4],
}

impl Fixture {
    pub fn boot(nr_pages: u64) -> Fixture {
        Fixture::boot_smp(nr_pages, 1)
    }

    /// [`Fixture::boot`] on a machine with `vcpus` vCPUs (vCPU 0 current).
    pub fn boot_smp(nr_pages: u64, vcpus: usize) -> Fixture {
        let xen = Xen(std::rc::Rc::new(std::cell::RefCell::new(super::model::Machine::boot_smp(
            nr_pages, vcpus,
        ))));
        let p2m: &'static [u64] = Box::leak(xen.machine().p2m().to_vec().into_boxed_slice());
        let m2p: &'static [u64] = Box::leak(xen.machine().m2p().to_vec().into_boxed_slice());
        let words = PageTables::<Xen, Xen>::bitmap_words(nr_pages);
        let bitmap: &'static mut [u64] = Box::leak(vec![0; words].into_boxed_slice());
        let mut pt =
            PageTables::new(xen.clone(), xen.clone(), P2m::new(p2m, m2p), BOOT_TABLES[0], bitmap)
                .unwrap();
        let boot_window = pt.discover_window(boot_va(0)).unwrap().expect("Xen mapped the image");
        assert_eq!(boot_window.count_frames, BOOT_WINDOW_FRAMES);
        pt.add_alias_window(boot_window).unwrap();
        let mut frames = CheckedFrames::new(&xen);
        let direct = AliasWindow::direct_map(nr_pages);
        pt.add_alias_window(direct).unwrap();
        pt.map_window_part(direct, 0, nr_pages, &mut frames).unwrap();
        let fixture = Fixture { xen, pt, frames, nr_pages };
        fixture.assert_clean();
        fixture
    }

    pub fn root(&self) -> Root {
        self.pt.kernel_root()
    }

    pub fn counts(&self) -> HypercallCounts {
        self.xen.machine().counts()
    }

    /// Table entries the page-table code read so far (see [`Machine::entry_reads`]).
    pub fn entry_reads(&self) -> u64 {
        self.xen.machine().entry_reads()
    }

    /// The frame, table, pin and alias state (see [`Accounting`]).
    pub fn accounting(&self) -> Accounting {
        let m = self.xen.machine();
        let pfns = || (0..self.nr_pages).map(Pfn);
        let direct = AliasWindow::direct_map(self.nr_pages);
        Accounting {
            free: pfns().map(|p| self.frames.inner.is_free(p)).collect(),
            tables: pfns().filter(|&p| self.pt.is_table(p)).collect(),
            typed_or_pinned: pfns()
                .filter(|&p| {
                    let (ty, count, pinned) = m.frame_state(p);
                    pinned || (matches!(ty, PageType::Table(_)) && count > 0)
                })
                .collect(),
            read_only_aliases: pfns()
                .filter(|&p| {
                    let alias = direct.virt_of(p).unwrap();
                    let (_, flags) = m.translate(m.baseptr(), alias).expect("direct map");
                    !flags.contains(PteFlags::WRITABLE)
                })
                .collect(),
            live_tables: m.live_tables(),
        }
    }

    /// Tables, live tables and read-only aliases are the same frames, and every table is counted.
    pub fn assert_tables_agree(&self) {
        let a = self.accounting();
        assert_eq!(a.tables, a.typed_or_pinned, "the code's tables are Xen's live tables");
        assert_eq!(a.tables, a.read_only_aliases, "exactly the tables have read-only aliases");
        let live: u64 = a.live_tables.iter().sum();
        assert_eq!(live, self.pt.stats().tables_live() + BOOT_TABLES.len() as u64);
    }

    /// Xen refused nothing and the model caught no bug.
    pub fn assert_clean(&self) {
        let m = self.xen.machine();
        assert_eq!(m.rejections(), &[], "Xen rejected something");
        assert_eq!(m.bugs(), &[], "the model caught a guest bug");
    }
}
