//! The test-program archive: a ustar file whose regular entries are the programs, read with `tar-no-std`.
//! The runner writes it ([`pack`], host side only) and the kernel reads it ([`Archive`]) from its
//! boot module.
//!
//! Format (the one definition: [`pack`] writes it, [`Archive`] reads it):
//! - POSIX ustar, 512-byte blocks, ending with two zero blocks; GNU/BSD `tar -tvf` can list it.
//! - Each regular-file entry is one program; its name is the program's name (see [`Name`]).
//! - Every program's data starts at a multiple of 4096 bytes from the start of the archive, so a
//!   page-aligned module lets the kernel map text pages straight from the archive's frames. The
//!   writer gets there with padding entries: PAX extended headers (type `x`) holding one
//!   `comment=` record, which tar readers ignore and `tar-no-std` skips.
//! - Structure errors (checksum, type flag, size, truncation) are the crate's; name rules,
//!   duplicates and empty files are checked here, per entry, so one bad entry does not stop the
//!   others.

use core::fmt;

#[cfg(not(target_os = "none"))]
use alloc::{
    format,
    string::{String, ToString},
    vec::Vec,
};

use tar_no_std::{CorruptDataError, TarArchiveRef};

/// Size of a tar block.
pub const BLOCK_SIZE: usize = 512;
/// Alignment of every program's data inside an archive written by [`pack`].
pub const DATA_ALIGN: usize = 4096;
/// Longest program name, in bytes.
pub const NAME_MAX: usize = 48;
/// Most entries an archive may hold (keeps duplicate checks and reports bounded).
pub const ENTRIES_MAX: usize = 256;

/// A program name: 1..=48 bytes of `[A-Za-z0-9_.+-]`, not starting with `.`. Names appear in TAP
/// lines and in the `tests=` list of the command line, so they stay plain words.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_MAX],
    len: u8,
}

/// Why a string is not a valid program name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameError {
    Empty,
    TooLong { len_bytes: usize },
    LeadingDot,
    BadByte { byte: u8, position: usize },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => f.write_str("the name is empty"),
            NameError::TooLong { len_bytes } => write!(f, "the name is {len_bytes} bytes long (at most {NAME_MAX})"),
            NameError::LeadingDot => f.write_str("the name starts with '.'"),
            NameError::BadByte { byte, position } => write!(
                f,
                "byte {position} of the name is {byte:#04x} (allowed: letters, digits, '_', '-', '.', '+'; no directories)"
            ),
        }
    }
}

impl Name {
    /// Checks `text` against the naming rule.
    pub fn new(text: &str) -> Result<Name, NameError> {
        let raw = text.as_bytes();
        if raw.is_empty() {
            return Err(NameError::Empty);
        }
        if raw.len() > NAME_MAX {
            return Err(NameError::TooLong { len_bytes: raw.len() });
        }
        if raw[0] == b'.' {
            return Err(NameError::LeadingDot);
        }
        if let Some(position) = raw.iter().position(|&b| !is_name_byte(b)) {
            return Err(NameError::BadByte { byte: raw[position], position });
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..raw.len()].copy_from_slice(raw);
        Ok(Name { bytes, len: raw.len() as u8 })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes pass `Name::new`, so this cannot fail.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("?")
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+')
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// One program in the archive.
#[derive(Clone, Copy, Debug)]
pub struct Entry<'a> {
    /// Position among the archive's regular files, from 0.
    pub index: usize,
    pub name: Name,
    pub data: &'a [u8],
    /// Byte offset of `data` from the start of the archive.
    pub offset: usize,
}

impl Entry<'_> {
    /// Whether the data starts on a page boundary of the archive (true for archives from [`pack`]).
    pub fn is_page_aligned(&self) -> bool {
        self.offset.is_multiple_of(DATA_ALIGN)
    }
}

/// An archive whose block structure is sound; its entries may still be rejected one by one.
#[derive(Clone, Debug)]
pub struct Archive<'a> {
    bytes: &'a [u8],
    tar: TarArchiveRef<'a>,
}

/// The archive as a whole cannot be read past some point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveError {
    pub reason: ArchiveErrorKind,
    /// The header block where reading stopped, when the format says.
    pub block: Option<usize>,
    /// The name that header claims, if it is a readable one.
    pub entry: Option<Name>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveErrorKind {
    Empty,
    /// Not a whole number of 512-byte blocks: cut short, or not a tar file.
    PartialBlock {
        len_bytes: usize,
    },
    TooShort {
        len_bytes: usize,
    },
    BadChecksum,
    UnsupportedType,
    BadSize,
    /// The entry's data runs past the end of the archive.
    Truncated,
    /// The walk reached the end without the two zero blocks that close a tar file.
    MissingEndMarker,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("test archive: ")?;
        match (self.entry, self.block) {
            (Some(name), Some(block)) => {
                write!(f, "entry '{name}' (header at byte {:#x}): ", block * BLOCK_SIZE)?
            }
            (None, Some(block)) => write!(f, "header at byte {:#x}: ", block * BLOCK_SIZE)?,
            _ => {}
        }
        match self.reason {
            ArchiveErrorKind::Empty => f.write_str("the module is empty"),
            ArchiveErrorKind::PartialBlock { len_bytes } => {
                write!(f, "{len_bytes} bytes is not a whole number of {BLOCK_SIZE}-byte tar blocks (cut short, or not a tar file)")
            }
            ArchiveErrorKind::TooShort { len_bytes } => {
                write!(f, "{len_bytes} bytes is too short for a tar file")
            }
            ArchiveErrorKind::BadChecksum => {
                f.write_str("header checksum is wrong (corrupt, or not a tar file)")
            }
            ArchiveErrorKind::UnsupportedType => f.write_str("unknown entry type"),
            ArchiveErrorKind::BadSize => f.write_str("the size field is not an octal number"),
            ArchiveErrorKind::Truncated => {
                f.write_str("its data runs past the end of the archive (truncated)")
            }
            ArchiveErrorKind::MissingEndMarker => {
                f.write_str("no end marker (two zero blocks) after the last entry (truncated?)")
            }
        }
    }
}

/// One entry cannot be used; the others can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryError<'a> {
    pub index: usize,
    /// The name as stored (may be the reason it is rejected).
    pub raw_name: &'a str,
    pub reason: EntryErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryErrorKind {
    BadName(NameError),
    NameNotUtf8,
    /// An earlier entry has the same name.
    Duplicate {
        first_index: usize,
    },
    EmptyFile,
    /// More than [`ENTRIES_MAX`] entries.
    TooMany,
}

impl fmt::Display for EntryError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "test archive: entry {} ('{}'): ", self.index, self.raw_name.escape_debug())?;
        match self.reason {
            EntryErrorKind::BadName(e) => write!(f, "not a valid program name: {e}"),
            EntryErrorKind::NameNotUtf8 => f.write_str("the name is not UTF-8"),
            EntryErrorKind::Duplicate { first_index } => {
                write!(f, "same name as entry {first_index}")
            }
            EntryErrorKind::EmptyFile => f.write_str("the file is empty"),
            EntryErrorKind::TooMany => write!(f, "more than {ENTRIES_MAX} entries"),
        }
    }
}

/// What [`Archive::open_salvaging`] could keep.
#[derive(Clone, Debug)]
pub struct Salvaged<'a> {
    /// The entries before the damage (or all of them), if any part is readable.
    pub archive: Option<Archive<'a>>,
    /// What was wrong, if anything.
    pub error: Option<ArchiveError>,
}

impl<'a> Archive<'a> {
    /// Reads `bytes` as a test archive, all or nothing.
    pub fn open(bytes: &'a [u8]) -> Result<Archive<'a>, ArchiveError> {
        match TarArchiveRef::new(bytes) {
            Ok(tar) => Ok(Archive { bytes, tar }),
            Err(e) => Err(archive_error(bytes, e)),
        }
    }

    /// Reads `bytes`, keeping the entries before a damaged header: the damaged header and
    /// everything after it are overwritten with zeros (a tar end marker), since nothing past a
    /// bad header can be trusted. The data of the entries kept is not touched.
    pub fn open_salvaging(bytes: &'a mut [u8]) -> Salvaged<'a> {
        let whole_blocks_len = bytes.len() - bytes.len() % BLOCK_SIZE;
        let first_error = match TarArchiveRef::new(bytes) {
            Ok(_) => {
                let bytes: &'a [u8] = bytes;
                return Salvaged { archive: Archive::open(bytes).ok(), error: None };
            }
            Err(e) => archive_error(bytes, e),
        };
        let bytes = &mut bytes[..whole_blocks_len];
        let cut_block = match TarArchiveRef::new(bytes) {
            Ok(_) => None,
            Err(e) => match archive_error(bytes, e) {
                ArchiveError { block: Some(block), .. } => Some(block),
                _ => return Salvaged { archive: None, error: Some(first_error) },
            },
        };
        if let Some(block) = cut_block {
            let total_blocks = bytes.len() / BLOCK_SIZE;
            if total_blocks < block + 2 {
                return Salvaged { archive: None, error: Some(first_error) };
            }
            bytes[block * BLOCK_SIZE..].fill(0);
        }
        let bytes: &'a [u8] = bytes;
        Salvaged { archive: Archive::open(bytes).ok(), error: Some(first_error) }
    }

    /// The programs, in archive order; a rejected entry does not end the walk.
    pub fn entries(&self) -> Entries<'a> {
        Entries { archive: self.clone(), index: 0, inner: self.tar.entries() }
    }

    /// Number of regular-file entries (valid or not).
    pub fn len(&self) -> usize {
        self.tar.entries().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first valid entry called `name`.
    pub fn find(&self, name: &str) -> Option<Entry<'a>> {
        self.entries().flatten().find(|e| e.name.as_str() == name)
    }
}

/// Iterator over an archive's programs; see [`Archive::entries`].
pub struct Entries<'a> {
    archive: Archive<'a>,
    index: usize,
    inner: tar_no_std::ArchiveEntryIterator<'a>,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, EntryError<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let raw = self.inner.next()?;
        let index = self.index;
        self.index += 1;
        let data: &'a [u8] = raw.data();
        let offset = offset_in(self.archive.bytes, data);
        let raw_name = raw_name_of(self.archive.bytes, offset);
        let error = |reason| Some(Err(EntryError { index, raw_name, reason }));
        if index >= ENTRIES_MAX {
            return error(EntryErrorKind::TooMany);
        }
        // The full name (ustar prefix included) is what must be valid; a valid one has no '/',
        // so it is the plain name field, which `raw_name` borrows with the archive's lifetime.
        let full = raw.filename();
        let name = match full.as_str().map(Name::new) {
            Err(_) => return error(EntryErrorKind::NameNotUtf8),
            Ok(Err(e)) => return error(EntryErrorKind::BadName(e)),
            Ok(Ok(name)) => name,
        };
        let text = raw_name;
        if let Some(first_index) = self.archive.tar.entries().take(index).position(|other| {
            raw_name_of(self.archive.bytes, offset_in(self.archive.bytes, other.data())) == text
        }) {
            return error(EntryErrorKind::Duplicate { first_index });
        }
        if data.is_empty() {
            return error(EntryErrorKind::EmptyFile);
        }
        Some(Ok(Entry { index, name, data, offset }))
    }
}

/// Byte offset of `inner` (a sub-slice of `outer`) from the start of `outer`.
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

/// The ustar `name` field (the first 100 bytes) of the header just before the data at
/// `data_offset`, up to its first NUL; "" if it is not UTF-8. `tar-no-std` hands the name out
/// only by value; this gives it the archive's lifetime, for messages and duplicate checks. (The
/// `prefix` field, a directory, is not included: such names are rejected anyway.)
fn raw_name_of(bytes: &[u8], data_offset: usize) -> &str {
    const NAME_FIELD: usize = 100;
    let Some(header) =
        data_offset.checked_sub(BLOCK_SIZE).and_then(|start| bytes.get(start..start + NAME_FIELD))
    else {
        return "";
    };
    let end = header.iter().position(|&b| b == 0).unwrap_or(NAME_FIELD);
    core::str::from_utf8(&header[..end]).unwrap_or("")
}

fn archive_error(bytes: &[u8], e: CorruptDataError) -> ArchiveError {
    let (reason, block) = match e {
        CorruptDataError::EmptyArchive => (ArchiveErrorKind::Empty, None),
        CorruptDataError::InvalidBlockSize => {
            (ArchiveErrorKind::PartialBlock { len_bytes: bytes.len() }, None)
        }
        CorruptDataError::TooShort { byte_count, .. } => {
            (ArchiveErrorKind::TooShort { len_bytes: byte_count }, None)
        }
        CorruptDataError::InvalidChecksum { block_index } => {
            (ArchiveErrorKind::BadChecksum, Some(block_index))
        }
        CorruptDataError::InvalidTypeFlag { block_index } => {
            (ArchiveErrorKind::UnsupportedType, Some(block_index))
        }
        CorruptDataError::InvalidPayloadSize { block_index } => {
            (ArchiveErrorKind::BadSize, Some(block_index))
        }
        CorruptDataError::PayloadExtendsBeyondArchive { block_index } => {
            (ArchiveErrorKind::Truncated, Some(block_index))
        }
        CorruptDataError::MissingTerminator => (ArchiveErrorKind::MissingEndMarker, None),
    };
    let entry = block.and_then(|b| Name::new(raw_name_of(bytes, (b + 1) * BLOCK_SIZE)).ok());
    ArchiveError { reason, block, entry }
}

/// Why [`pack`] refused its input.
#[cfg(not(target_os = "none"))]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackError {
    BadName {
        name: String,
        reason: NameError,
    },
    Duplicate {
        name: String,
    },
    EmptyFile {
        name: String,
    },
    /// Larger than the 11 octal digits of a ustar size field.
    TooLarge {
        name: String,
        len_bytes: usize,
    },
    TooMany {
        count: usize,
    },
}

#[cfg(not(target_os = "none"))]
impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackError::BadName { name, reason } => {
                write!(f, "program {name:?}: not a valid program name: {reason}")
            }
            PackError::Duplicate { name } => write!(f, "program {name:?} given twice"),
            PackError::EmptyFile { name } => write!(f, "program {name:?} is empty"),
            PackError::TooLarge { name, len_bytes } => {
                write!(f, "program {name:?} is too large ({len_bytes} bytes)")
            }
            PackError::TooMany { count } => write!(f, "{count} programs (at most {ENTRIES_MAX})"),
        }
    }
}

#[cfg(not(target_os = "none"))]
impl core::error::Error for PackError {}

/// Writes the test archive holding `programs` (name, ELF bytes) in the given order, each
/// program's data page-aligned. Host side only (the runner calls it).
#[cfg(not(target_os = "none"))]
pub fn pack(programs: &[(&str, &[u8])]) -> Result<Vec<u8>, PackError> {
    const SIZE_LIMIT: usize = 0o77_777_777_777;
    if programs.len() > ENTRIES_MAX {
        return Err(PackError::TooMany { count: programs.len() });
    }
    for (i, (name, data)) in programs.iter().enumerate() {
        Name::new(name).map_err(|reason| PackError::BadName { name: name.to_string(), reason })?;
        if programs[..i].iter().any(|(other, _)| other == name) {
            return Err(PackError::Duplicate { name: name.to_string() });
        }
        if data.is_empty() {
            return Err(PackError::EmptyFile { name: name.to_string() });
        }
        if data.len() > SIZE_LIMIT {
            return Err(PackError::TooLarge { name: name.to_string(), len_bytes: data.len() });
        }
    }
    let mut out = Vec::new();
    for (name, data) in programs {
        pad_so_next_data_is_aligned(&mut out);
        out.extend_from_slice(&ustar_header(name, b'0', data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK_SIZE), 0);
    }
    out.resize(out.len() + 2 * BLOCK_SIZE, 0);
    Ok(out)
}

/// Adds a PAX comment entry, if needed, so that the data of the header written next starts on a
/// [`DATA_ALIGN`] boundary.
#[cfg(not(target_os = "none"))]
fn pad_so_next_data_is_aligned(out: &mut Vec<u8>) {
    let next_data = out.len() + BLOCK_SIZE;
    let gap_blocks = (next_data.next_multiple_of(DATA_ALIGN) - next_data) / BLOCK_SIZE;
    if gap_blocks == 0 {
        return;
    }
    // The padding entry takes one header block plus at least one payload block.
    let payload_blocks =
        if gap_blocks >= 2 { gap_blocks - 1 } else { gap_blocks - 1 + DATA_ALIGN / BLOCK_SIZE };
    let record = pax_comment_record(payload_blocks * BLOCK_SIZE);
    out.extend_from_slice(&ustar_header("PaxHeader/faultline-padding", b'x', record.len()));
    out.extend_from_slice(&record);
}

/// A PAX record `"<len> comment=<filler>\n"` exactly `len` bytes long (`len` >= 16).
#[cfg(not(target_os = "none"))]
fn pax_comment_record(len: usize) -> Vec<u8> {
    let digits = len.to_string().len();
    let filler = len - digits - " comment=\n".len();
    let mut record = format!("{len} comment=").into_bytes();
    record.resize(record.len() + filler, b'.');
    record.push(b'\n');
    debug_assert_eq!(record.len(), len);
    record
}

#[cfg(not(target_os = "none"))]
fn ustar_header(name: &str, type_flag: u8, size: usize) -> [u8; BLOCK_SIZE] {
    fn octal(field: &mut [u8], value: usize) {
        let digits = field.len() - 1;
        let text = format!("{value:0digits$o}");
        field[..digits].copy_from_slice(text.as_bytes());
        field[digits] = 0;
    }
    let mut h = [0u8; BLOCK_SIZE];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o755); // mode
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0); // mtime: fixed, so archives are reproducible
    h[156] = type_flag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..274].copy_from_slice(b"faultline"); // uname
    h[297..306].copy_from_slice(b"faultline"); // gname
                                               // The checksum is summed with its own field read as spaces, then stored as 6 octal
                                               // digits, NUL, space.
    h[148..156].fill(b' ');
    let sum: usize = h.iter().map(|&b| usize::from(b)).sum();
    h[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
    h[154] = 0;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{format, string::String, vec, vec::Vec};

    fn sample() -> Vec<u8> {
        pack(&[
            ("hello", b"\x7fELF one".as_slice()),
            ("null_read", &[7u8; 5000]),
            ("c_hello", &[1u8; 512]),
        ])
        .unwrap()
    }

    fn valid_names(bytes: &[u8]) -> Vec<String> {
        Archive::open(bytes).unwrap().entries().flatten().map(|e| e.name.to_string()).collect()
    }

    #[test]
    fn packed_programs_read_back_in_order_and_page_aligned() {
        let bytes = sample();
        assert_eq!(bytes.len() % BLOCK_SIZE, 0);
        let archive = Archive::open(&bytes).unwrap();
        let entries: Vec<_> = archive.entries().map(Result::unwrap).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].name.as_str(), "hello");
        assert_eq!(entries[0].data, b"\x7fELF one");
        assert_eq!(entries[1].data, &[7u8; 5000][..]);
        assert_eq!(entries[2].name.as_str(), "c_hello");
        for e in &entries {
            assert!(e.is_page_aligned(), "{} at {:#x}", e.name, e.offset);
            assert_eq!(&bytes[e.offset..e.offset + e.data.len()], e.data);
        }
        assert_eq!(archive.find("null_read").unwrap().index, 1);
        assert!(archive.find("nope").is_none());
    }

    #[test]
    fn padding_works_for_every_gap() {
        // Sizes that leave the next header at each of the eight block positions of a page.
        for blocks in 0..9usize {
            let first = vec![1u8; blocks * BLOCK_SIZE + 1];
            let bytes = pack(&[("a", &first), ("b", b"x"), ("c", b"yy")]).unwrap();
            let entries: Vec<_> =
                Archive::open(&bytes).unwrap().entries().map(Result::unwrap).collect();
            assert_eq!(entries.len(), 3);
            assert!(entries.iter().all(Entry::is_page_aligned));
            assert_eq!(entries[0].data, &first[..]);
        }
    }

    #[test]
    fn gnu_tar_lists_the_archive_if_present() {
        let dir = std::env::temp_dir().join(format!("faultline-archive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.tar");
        std::fs::write(&path, sample()).unwrap();
        let Ok(out) = std::process::Command::new("tar").arg("-tf").arg(&path).output() else {
            return; // no tar on this machine
        };
        std::fs::remove_dir_all(&dir).ok();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\nnull_read\nc_hello\n");
    }

    #[test]
    fn pack_refuses_bad_input() {
        assert!(matches!(pack(&[("a/b", b"x")]), Err(PackError::BadName { .. })));
        assert!(matches!(pack(&[(".hidden", b"x")]), Err(PackError::BadName { .. })));
        assert!(matches!(pack(&[("a", b"x"), ("a", b"y")]), Err(PackError::Duplicate { .. })));
        assert!(matches!(pack(&[("a", b"")]), Err(PackError::EmptyFile { .. })));
        assert_eq!(pack(&[]).unwrap().len(), 2 * BLOCK_SIZE);
    }

    #[test]
    fn names_follow_the_rule() {
        assert!(Name::new("cow_data-2.v1+x").is_ok());
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(Name::new(&"a".repeat(49)), Err(NameError::TooLong { len_bytes: 49 }));
        assert_eq!(Name::new("a b"), Err(NameError::BadByte { byte: b' ', position: 1 }));
        assert_eq!(Name::new("..").unwrap_err(), NameError::LeadingDot);
    }

    /// Offset of the header of entry `index` (regular files only).
    fn header_offset(bytes: &[u8], index: usize) -> usize {
        Archive::open(bytes).unwrap().entries().nth(index).unwrap().unwrap().offset - BLOCK_SIZE
    }

    #[test]
    fn whole_archive_errors_are_named() {
        assert_eq!(Archive::open(&[]).unwrap_err().reason, ArchiveErrorKind::Empty);
        let bytes = sample();
        let cut = &bytes[..bytes.len() - 100];
        let e = Archive::open(cut).unwrap_err();
        assert_eq!(e.reason, ArchiveErrorKind::PartialBlock { len_bytes: cut.len() });
        assert!(e.to_string().contains("not a whole number"), "{e}");

        let mut bad = bytes.clone();
        let h = header_offset(&bytes, 1);
        bad[h + 3] ^= 0x20; // "null_read" -> "nulL_read"
        let e = Archive::open(&bad).unwrap_err();
        assert_eq!(e.reason, ArchiveErrorKind::BadChecksum);
        assert_eq!(e.block, Some(h / BLOCK_SIZE));
        assert_eq!(e.entry.unwrap().as_str(), "nulL_read");
        assert_eq!(e.to_string(), format!("test archive: entry 'nulL_read' (header at byte {h:#x}): header checksum is wrong (corrupt, or not a tar file)"));

        let mut no_end = bytes.clone();
        no_end.truncate(bytes.len() - 2 * BLOCK_SIZE);
        assert_eq!(Archive::open(&no_end).unwrap_err().reason, ArchiveErrorKind::MissingEndMarker);

        let not_tar = vec![0x55u8; 4 * BLOCK_SIZE];
        assert_eq!(Archive::open(&not_tar).unwrap_err().reason, ArchiveErrorKind::BadChecksum);
    }

    #[test]
    fn salvage_keeps_the_entries_before_a_damaged_header() {
        let bytes = sample();
        let h = header_offset(&bytes, 2);
        let mut bad = bytes.clone();
        bad[h + 130] = b'9'; // not octal: the size of entry 2 is unreadable (checksum fixed below)
        bad[h + 148..h + 156].fill(b' ');
        let sum: usize = bad[h..h + BLOCK_SIZE].iter().map(|&b| usize::from(b)).sum();
        bad[h + 148..h + 154].copy_from_slice(format!("{sum:06o}").as_bytes());
        bad[h + 154] = 0;
        let salvaged = Archive::open_salvaging(&mut bad);
        let error = salvaged.error.unwrap();
        assert_eq!(error.reason, ArchiveErrorKind::BadSize);
        assert_eq!(error.entry.unwrap().as_str(), "c_hello");
        assert_eq!(valid_names(salvaged.archive.unwrap().bytes), ["hello", "null_read"]);
    }

    #[test]
    fn salvage_keeps_the_entries_before_a_truncated_one() {
        let bytes = sample();
        let h = header_offset(&bytes, 1);
        let mut cut = bytes[..h + BLOCK_SIZE + 3000].to_vec();
        let salvaged = Archive::open_salvaging(&mut cut);
        let error = salvaged.error.unwrap();
        assert_eq!(
            error.reason,
            ArchiveErrorKind::PartialBlock { len_bytes: h + BLOCK_SIZE + 3000 }
        );
        let archive = salvaged.archive.unwrap();
        assert_eq!(valid_names(archive.bytes), ["hello"]);
    }

    #[test]
    fn salvage_gives_up_without_a_place_for_the_end_marker() {
        let bytes = sample();
        let mut no_end = bytes[..bytes.len() - 2 * BLOCK_SIZE].to_vec();
        let salvaged = Archive::open_salvaging(&mut no_end);
        assert!(salvaged.archive.is_none());
        assert_eq!(salvaged.error.unwrap().reason, ArchiveErrorKind::MissingEndMarker);
        let mut good = bytes.clone();
        let salvaged = Archive::open_salvaging(&mut good);
        assert!(salvaged.error.is_none());
        assert_eq!(salvaged.archive.unwrap().len(), 3);
    }

    #[test]
    fn a_directory_in_the_ustar_prefix_is_rejected() {
        let mut bytes = Vec::new();
        let mut header = ustar_header("prog", b'0', 1);
        header[345..348].copy_from_slice(b"dir");
        header[148..156].fill(b' ');
        let sum: usize = header.iter().map(|&b| usize::from(b)).sum();
        header[148..154].copy_from_slice(format!("{sum:06o}").as_bytes());
        header[154] = 0;
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&[b'x'; BLOCK_SIZE]);
        bytes.resize(bytes.len() + 2 * BLOCK_SIZE, 0);
        let archive = Archive::open(&bytes).unwrap();
        let e = archive.entries().next().unwrap().unwrap_err();
        assert_eq!(
            e.reason,
            EntryErrorKind::BadName(NameError::BadByte { byte: b'/', position: 3 })
        );
        assert_eq!(e.raw_name, "prog");
    }

    /// Entry-level problems reject only that entry. The archives here are written by hand
    /// (bypassing `pack`'s checks) with the same header writer.
    #[test]
    fn bad_entries_are_rejected_one_by_one() {
        let mut bytes = Vec::new();
        for (name, data) in
            [("ok1", &b"a"[..]), ("bad name", b"b"), ("ok1", b"c"), ("empty", b""), ("ok2", b"d")]
        {
            bytes.extend_from_slice(&ustar_header(name, b'0', data.len()));
            bytes.extend_from_slice(data);
            bytes.resize(bytes.len().next_multiple_of(BLOCK_SIZE), 0);
        }
        bytes.resize(bytes.len() + 2 * BLOCK_SIZE, 0);
        let archive = Archive::open(&bytes).unwrap();
        let results: Vec<_> = archive.entries().collect();
        assert_eq!(results.len(), 5);
        assert_eq!(results[0].as_ref().unwrap().name.as_str(), "ok1");
        assert!(!results[0].as_ref().unwrap().is_page_aligned());
        let e = results[1].unwrap_err();
        assert!(matches!(
            e.reason,
            EntryErrorKind::BadName(NameError::BadByte { byte: b' ', position: 3 })
        ));
        assert!(
            e.to_string()
                .starts_with("test archive: entry 1 ('bad name'): not a valid program name"),
            "{e}"
        );
        assert_eq!(results[2].unwrap_err().reason, EntryErrorKind::Duplicate { first_index: 0 });
        assert_eq!(
            results[3].unwrap_err().to_string(),
            "test archive: entry 3 ('empty'): the file is empty"
        );
        assert_eq!(results[4].as_ref().unwrap().name.as_str(), "ok2");
        assert_eq!(results[4].as_ref().unwrap().index, 4);
    }
}
