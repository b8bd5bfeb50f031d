//! start_info: the page Xen hands us at entry, validated once and read through accessors.

use core::fmt;

use super::abi::{self, start_info};

/// Why a start_info page was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartInfoError {
    BadMagic,
    NoPages,
    TooManyPages(u64),
    Misaligned(&'static str, u64),
    Missing(&'static str),
    CommandLineNotTerminated,
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(f, "magic is not \"xen-3.0-x86_64\""),
            Self::NoPages => write!(f, "nr_pages is 0"),
            Self::TooManyPages(n) => {
                write!(f, "nr_pages {n} exceeds what this kernel maps (2^{MAX_PAGES_LOG2})")
            }
            Self::Misaligned(what, v) => write!(f, "{what} {v:#x} is misaligned"),
            Self::Missing(what) => write!(f, "{what} is 0"),
            Self::CommandLineNotTerminated => write!(f, "cmd_line has no NUL within 1024 bytes"),
        }
    }
}

/// 2^28 pages = 1 TiB: far above what these machines give a guest, low enough to reject junk.
const MAX_PAGES_LOG2: u32 = 28;

/// A start_info page that passed validation.
#[derive(Clone, Copy)]
pub struct StartInfo<'a> {
    raw: &'a start_info,
}

impl<'a> StartInfo<'a> {
    /// Checks the magic, sizes and alignments Xen promises (Xen public/xen.h, struct start_info).
    pub fn validate(raw: &'a start_info) -> Result<Self, StartInfoError> {
        let magic = raw.magic.map(|c| c as u8);
        if !magic.starts_with(abi::START_INFO_MAGIC) {
            return Err(StartInfoError::BadMagic);
        }
        if raw.nr_pages == 0 {
            return Err(StartInfoError::NoPages);
        }
        if raw.nr_pages > 1 << MAX_PAGES_LOG2 {
            return Err(StartInfoError::TooManyPages(raw.nr_pages));
        }
        if raw.shared_info == 0 {
            return Err(StartInfoError::Missing("shared_info"));
        }
        if !raw.shared_info.is_multiple_of(abi::PAGE_SIZE) {
            return Err(StartInfoError::Misaligned("shared_info", raw.shared_info));
        }
        if raw.pt_base == 0 || raw.nr_pt_frames == 0 {
            return Err(StartInfoError::Missing("pt_base/nr_pt_frames"));
        }
        if !raw.pt_base.is_multiple_of(abi::PAGE_SIZE) {
            return Err(StartInfoError::Misaligned("pt_base", raw.pt_base));
        }
        if raw.mfn_list == 0 {
            return Err(StartInfoError::Missing("mfn_list"));
        }
        if raw.mfn_list & 0x7 != 0 {
            return Err(StartInfoError::Misaligned("mfn_list", raw.mfn_list));
        }
        if !raw.cmd_line.contains(&0) {
            return Err(StartInfoError::CommandLineNotTerminated);
        }
        Ok(StartInfo { raw })
    }

    pub fn raw(&self) -> &'a start_info {
        self.raw
    }

    /// The magic string, e.g. "xen-3.0-x86_64".
    pub fn magic(&self) -> &'a str {
        let bytes = as_bytes(&self.raw.magic);
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        core::str::from_utf8(&bytes[..len]).unwrap_or("?")
    }

    pub fn nr_pages(&self) -> u64 {
        self.raw.nr_pages
    }

    pub fn flags(&self) -> u32 {
        self.raw.flags
    }

    /// The initial domain (dom0) has SIF_INITDOMAIN; every other domain is a DomU.
    pub fn is_dom0(&self) -> bool {
        self.raw.flags & abi::SIF_INITDOMAIN != 0
    }

    /// The guest command line, up to its NUL. Bytes that are not UTF-8 are an error the
    /// caller reports, so they come back as `Err` with the raw bytes.
    pub fn cmdline(&self) -> Result<&'a str, &'a [u8]> {
        let bytes = as_bytes(&self.raw.cmd_line);
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        core::str::from_utf8(&bytes[..len]).map_err(|_| &bytes[..len])
    }

    /// The DomU console ring (mfn, event channel); meaningless for dom0.
    pub fn domu_console(&self) -> (u64, u32) {
        // SAFETY: both union members are plain integers; the domU view is read only when
        // the caller knows this is a DomU.
        let domu = unsafe { self.raw.console.domU };
        (domu.mfn, domu.evtchn)
    }

    pub fn store(&self) -> (u64, u32) {
        (self.raw.store_mfn, self.raw.store_evtchn)
    }
}

fn as_bytes<const N: usize>(chars: &[i8; N]) -> &[u8; N] {
    // SAFETY: i8 and u8 have the same size and alignment, and every bit pattern is valid.
    unsafe { &*(chars as *const [i8; N]).cast::<[u8; N]>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Box<start_info> {
        // SAFETY: start_info is plain old data; all-zero is a valid value of it.
        let mut si: Box<start_info> = Box::new(unsafe { core::mem::zeroed() });
        for (i, b) in b"xen-3.0-x86_64".iter().enumerate() {
            si.magic[i] = *b as i8;
        }
        si.nr_pages = 2048;
        si.shared_info = 0x1234_5000;
        si.flags = 0x303;
        si.pt_base = 0xffff_ffff_8040_0000;
        si.nr_pt_frames = 4;
        si.mfn_list = 0xffff_ffff_8030_0000;
        for (i, b) in b"selftest=int3".iter().enumerate() {
            si.cmd_line[i] = *b as i8;
        }
        si
    }

    #[test]
    fn accepts_what_xen_gives_dom0() {
        let si = good();
        let info = StartInfo::validate(&si).unwrap();
        assert!(info.is_dom0());
        assert_eq!(info.magic(), "xen-3.0-x86_64");
        assert_eq!(info.cmdline(), Ok("selftest=int3"));
        assert_eq!(info.nr_pages(), 2048);
    }

    #[test]
    fn rejects_each_broken_field() {
        let mut si = good();
        si.magic[0] = b'X' as i8;
        assert_eq!(StartInfo::validate(&si).err(), Some(StartInfoError::BadMagic));
        let mut si = good();
        si.nr_pages = 0;
        assert_eq!(StartInfo::validate(&si).err(), Some(StartInfoError::NoPages));
        let mut si = good();
        si.nr_pages = u64::MAX;
        assert!(matches!(StartInfo::validate(&si), Err(StartInfoError::TooManyPages(_))));
        let mut si = good();
        si.shared_info = 0x1234_5008;
        assert!(matches!(
            StartInfo::validate(&si),
            Err(StartInfoError::Misaligned("shared_info", _))
        ));
        let mut si = good();
        si.pt_base = 0;
        assert!(matches!(StartInfo::validate(&si), Err(StartInfoError::Missing(_))));
        let mut si = good();
        si.mfn_list = 0xffff_ffff_8030_0004;
        assert!(matches!(StartInfo::validate(&si), Err(StartInfoError::Misaligned("mfn_list", _))));
        let mut si = good();
        si.cmd_line = [b'a' as i8; 1024];
        assert_eq!(StartInfo::validate(&si).err(), Some(StartInfoError::CommandLineNotTerminated));
    }

    #[test]
    fn domu_flags_and_bad_utf8_cmdline() {
        let mut si = good();
        si.flags = 0;
        si.cmd_line[0] = 0xffu8 as i8;
        let info = StartInfo::validate(&si).unwrap();
        assert!(!info.is_dom0());
        assert!(info.cmdline().is_err());
    }
}
