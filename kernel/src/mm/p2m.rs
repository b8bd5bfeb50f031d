//! The only translations between pseudo-physical and machine frames: p2m and m2p, both checked.
//!
//! p2m (pfn -> mfn) is the guest's own list, `start_info.mfn_list[pfn]`, `nr_pages` long.
//! m2p (mfn -> pfn) is Xen's read-only table at `layout::MACH2PHYS_VIRT_START`, shared by all domains:
//! its entry for a frame we don't own is someone else's pfn (or garbage), so every m2p answer is
//! cross-checked against the p2m before it is trusted. Both arrays are handed in as slices, so the
//! kernel builds them from `start_info` and host tests feed fakes.

use super::addr::{Mfn, Pfn};

/// Why a frame number could not be translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum P2mError {
    /// The pfn is not below `nr_pages`.
    PfnOutOfRange(Pfn),
    /// The p2m has no machine frame behind this pfn (a ballooned-out hole).
    PfnUnbacked(Pfn),
    /// The mfn is past the end of the m2p table handed to us.
    MfnOutOfRange(Mfn),
    /// The m2p names a pfn that is not ours, or whose p2m entry is another frame.
    MfnNotOurs(Mfn),
}

/// Both directions of the frame translation for this domain.
#[derive(Clone, Copy, Debug)]
pub struct P2m<'a> {
    /// pfn -> mfn; its length is `nr_pages`.
    phys_to_machine: &'a [u64],
    /// mfn -> pfn; as long as the part of Xen's table that is mapped (the host's highest frame).
    machine_to_phys: &'a [u64],
}

impl<'a> P2m<'a> {
    /// Wraps the guest's p2m list (`mfn_list`, `nr_pages` entries) and Xen's m2p table.
    pub(in crate::mm) const fn new(phys_to_machine: &'a [u64], machine_to_phys: &'a [u64]) -> Self {
        P2m { phys_to_machine, machine_to_phys }
    }

    /// The number of pseudo-physical frames of this domain.
    pub(crate) const fn nr_pages(&self) -> u64 {
        self.phys_to_machine.len() as u64
    }

    /// pfn -> mfn through `mfn_list`.
    pub(in crate::mm) fn pfn_to_mfn(&self, pfn: Pfn) -> Result<Mfn, P2mError> {
        let raw = *self.phys_to_machine.get(pfn.index()).ok_or(P2mError::PfnOutOfRange(pfn))?;
        if raw == INVALID_ENTRY {
            return Err(P2mError::PfnUnbacked(pfn));
        }
        Ok(Mfn(raw))
    }

    /// mfn -> pfn through the m2p, accepted only if the p2m maps that pfn back to this mfn.
    pub(crate) fn mfn_to_pfn(&self, mfn: Mfn) -> Result<Pfn, P2mError> {
        let idx = usize::try_from(mfn.0).map_err(|_| P2mError::MfnOutOfRange(mfn))?;
        let raw = *self.machine_to_phys.get(idx).ok_or(P2mError::MfnOutOfRange(mfn))?;
        let pfn = Pfn(raw);
        match self.phys_to_machine.get(pfn.index()) {
            Some(&back) if raw < self.nr_pages() && back == mfn.0 => Ok(pfn),
            _ => Err(P2mError::MfnNotOurs(mfn)),
        }
    }
}

/// Xen's marker for "no frame" in both tables (INVALID_P2M_ENTRY / INVALID_M2P_ENTRY).
const INVALID_ENTRY: u64 = !0;

#[cfg(test)]
mod tests {
    use super::*;

    // Four frames of ours at mfns 7, 3, 9, 1; mfn 5 belongs to another domain (its m2p says pfn 2,
    // which is ours but maps to mfn 9); mfn 8 claims pfn 40, beyond nr_pages.
    const P2M: [u64; 4] = [7, 3, 9, 1];
    const M2P: [u64; 10] = [!0, 3, !0, 1, !0, 2, !0, 0, 40, 2];

    #[test]
    fn round_trips_for_every_frame_of_ours() {
        let t = P2m::new(&P2M, &M2P);
        for pfn in 0..4 {
            let mfn = t.pfn_to_mfn(Pfn(pfn)).unwrap();
            assert_eq!(t.mfn_to_pfn(mfn), Ok(Pfn(pfn)));
        }
    }

    #[test]
    fn rejects_pfns_past_nr_pages_and_unbacked_ones() {
        let holes = [7, !0];
        let t = P2m::new(&holes, &M2P);
        assert_eq!(t.pfn_to_mfn(Pfn(2)), Err(P2mError::PfnOutOfRange(Pfn(2))));
        assert_eq!(t.pfn_to_mfn(Pfn(1)), Err(P2mError::PfnUnbacked(Pfn(1))));
    }

    #[test]
    fn rejects_foreign_mfns_instead_of_indexing_wildly() {
        let t = P2m::new(&P2M, &M2P);
        assert_eq!(t.mfn_to_pfn(Mfn(5)), Err(P2mError::MfnNotOurs(Mfn(5))));
        assert_eq!(t.mfn_to_pfn(Mfn(8)), Err(P2mError::MfnNotOurs(Mfn(8))));
        assert_eq!(t.mfn_to_pfn(Mfn(0)), Err(P2mError::MfnNotOurs(Mfn(0))));
        assert_eq!(t.mfn_to_pfn(Mfn(10)), Err(P2mError::MfnOutOfRange(Mfn(10))));
        assert_eq!(t.mfn_to_pfn(Mfn(u64::MAX)), Err(P2mError::MfnOutOfRange(Mfn(u64::MAX))));
    }
}
