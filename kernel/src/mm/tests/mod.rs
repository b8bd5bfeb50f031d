//! Host tests of the page-table code against the model of Xen: rules, hypercall counts, properties.

mod address_space;
mod model_rules;
mod page_tables;
mod property;

use super::layout::AliasWindow;
use super::model::{boot_va, CheckedFrames, HypercallCounts, Xen, BOOT_TABLES, BOOT_WINDOW_FRAMES};
use super::p2m::P2m;
use super::page_table::{PageTables, Root};

/// A booted guest: the model machine, the page tables built on it (boot window recorded, direct
/// map built) and the frame allocator.
pub struct Fixture {
    pub xen: Xen,
    pub pt: PageTables<'static, Xen, Xen>,
    pub frames: CheckedFrames,
}

impl Fixture {
    pub fn boot(nr_pages: u64) -> Fixture {
        let xen = Xen::boot(nr_pages);
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
        pt.map_window(AliasWindow::direct_map(nr_pages), &mut frames).unwrap();
        let fixture = Fixture { xen, pt, frames };
        fixture.assert_clean();
        fixture
    }

    pub fn root(&self) -> Root {
        self.pt.kernel_root()
    }

    pub fn counts(&self) -> HypercallCounts {
        self.xen.machine().counts()
    }

    /// Xen refused nothing and the model caught no bug.
    pub fn assert_clean(&self) {
        let m = self.xen.machine();
        assert_eq!(m.rejections(), &[], "Xen rejected something");
        assert_eq!(m.bugs(), &[], "the model caught a guest bug");
    }
}
