//! Static x86_64 ELF executables, read with the `elf` crate and checked into a plain load plan.
//!
//! Accepted: ELF64, little-endian, x86_64, `ET_EXEC`, no `PT_INTERP`/`PT_DYNAMIC`, 1..=8 non-empty
//! `PT_LOAD` segments, each with `p_filesz <= p_memsz`, its file range inside the file,
//! `p_vaddr % 4096 == p_offset % 4096`, its pages inside [`user_space::is_mappable`] space, at most
//! [`SEGMENT_SIZE_MAX`] bytes, not both writable and executable, and no page shared with another
//! segment; the entry point in the file-backed part of an executable segment. `ET_DYN`
//! (static-pie) is refused: `musl-gcc -static` and our Rust programs link `ET_EXEC`.

use core::fmt;
use core::ops::Range;

use ::elf::abi;
use ::elf::endian::LittleEndian;
use ::elf::note::Note;
use ::elf::parse::ParseError;
use ::elf::segment::ProgramHeader;
use ::elf::ElfBytes;

use crate::mm::addr::{page_ceil, page_floor, PAGE_SIZE};
use crate::mm::address_space::SegmentSpec;
use crate::mm::areas::Prot;
use crate::mm::user_space::{self};

/// Most loadable segments in one program.
pub const SEGMENTS_MAX: usize = 8;
/// Most program headers of any type.
pub const PROGRAM_HEADERS_MAX: usize = 64;
/// Largest `p_memsz` of one segment (big buffers belong in mmap).
pub const SEGMENT_SIZE_MAX: u64 = 1 << 30;
/// Largest program file.
pub const FILE_SIZE_MAX: usize = 64 << 20;

/// What a segment's pages allow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub execute: bool,
}

impl Perms {
    fn from_p_flags(flags: u32) -> Perms {
        Perms {
            read: flags & abi::PF_R != 0,
            write: flags & abi::PF_W != 0,
            execute: flags & abi::PF_X != 0,
        }
    }
}

impl fmt::Display for Perms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flag = |on, c| if on { c } else { '-' };
        write!(f, "{}{}{}", flag(self.read, 'r'), flag(self.write, 'w'), flag(self.execute, 'x'))
    }
}

/// One loadable segment: `mem_size` bytes at `vaddr`, the first `file_size` of them from
/// `file_offset` in the file, the rest zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub mem_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub perms: Perms,
    /// Index among the program headers, for messages.
    pub header_index: usize,
}

impl Segment {
    /// The virtual bytes the segment occupies.
    pub fn range(&self) -> Range<u64> {
        self.vaddr..self.vaddr + self.mem_size
    }

    /// The whole pages the segment touches.
    pub fn pages(&self) -> Range<u64> {
        page_floor(self.vaddr)..page_ceil(self.vaddr + self.mem_size).unwrap_or(u64::MAX)
    }

    pub fn contains(&self, addr: u64) -> bool {
        self.range().contains(&addr)
    }

    /// The segment's bytes in `file` (the file this plan was made from).
    pub fn file_bytes<'f>(&self, file: &'f [u8]) -> &'f [u8] {
        &file[self.file_offset as usize..(self.file_offset + self.file_size) as usize]
    }

    /// The segment as an address space maps it (its pages' contents come from there).
    pub fn spec(&self) -> SegmentSpec {
        SegmentSpec {
            vaddr: self.vaddr,
            mem_size: self.mem_size,
            file_offset: self.file_offset,
            file_size: self.file_size,
            prot: Prot { read: self.perms.read, write: self.perms.write, exec: self.perms.execute },
        }
    }
}

/// Where the program headers are in memory, for `AT_PHDR`/`AT_PHENT`/`AT_PHNUM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProgramHeaders {
    pub vaddr: u64,
    pub entry_size: u64,
    pub count: u64,
}

/// Everything the kernel needs to map a program on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub entry: u64,
    segments: [Segment; SEGMENTS_MAX],
    count: usize,
    /// `None` when no loadable segment covers the program header table (then the kernel leaves
    /// AT_PHDR and AT_PHNUM out, and musl's start-up sees no TLS segment).
    pub program_headers: Option<ProgramHeaders>,
}

impl LoadPlan {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    pub fn segment_at(&self, addr: u64) -> Option<&Segment> {
        self.segments().iter().find(|s| s.contains(addr))
    }

    /// The segment whose pages include the page of `addr` (a fault in the zero tail of a
    /// segment's last page belongs to it).
    pub fn segment_for_page(&self, addr: u64) -> Option<&Segment> {
        self.segments().iter().find(|s| s.pages().contains(&addr))
    }

    /// The page after the highest segment: where brk starts.
    pub fn image_end(&self) -> u64 {
        self.segments().iter().map(|s| s.pages().end).max().unwrap_or(user_space::USER_START)
    }

    /// The brk heap's reservation: from [`Self::image_end`], [`user_space::BRK_SIZE_MAX`] long,
    /// cut short before the mmap base.
    pub fn heap_reservation(&self) -> Range<u64> {
        let start = self.image_end();
        start..(start + user_space::BRK_SIZE_MAX).min(user_space::MMAP_BASE).max(start)
    }
}

/// Why a program cannot be loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// The `elf` crate could not read it (truncated, bad magic, bad table sizes, ...).
    Parse(Unreadable),
    FileTooLarge {
        len_bytes: usize,
    },
    NotElf64,
    NotX86_64 {
        machine: u16,
    },
    PositionIndependent,
    NotExecutable {
        e_type: u16,
    },
    NoProgramHeaders,
    TooManyProgramHeaders {
        count: usize,
    },
    Interpreter,
    Dynamic,
    NoLoadableSegment,
    TooManySegments {
        count: usize,
    },
    Segment {
        index: usize,
        problem: SegmentProblem,
    },
    /// Two segments touch the same page.
    Overlap {
        first: usize,
        second: usize,
        page: u64,
    },
    EntryNotExecutable {
        entry: u64,
    },
    /// The program header table is said to be somewhere no segment loads it.
    ProgramHeadersNotLoaded {
        vaddr: u64,
    },
    /// Two notes with the same name and type.
    DuplicateNote,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentProblem {
    FileSizeAboveMemSize {
        file_size: u64,
        mem_size: u64,
    },
    FileRangeOutside {
        end: u64,
        file_len: u64,
    },
    Misaligned {
        vaddr: u64,
        offset: u64,
    },
    TooLarge {
        mem_size: u64,
    },
    /// Below the first page, into the stack's reservation, or into the upper half.
    OutsideUserSpace {
        start: u64,
        end: u64,
    },
    WritableAndExecutable,
}

/// What the `elf` crate's [`ParseError`] said, kept as a plain value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unreadable {
    BadMagic,
    Class(u8),
    Endianness(u8),
    Version,
    /// A structure lies (partly) past the end of the file.
    Truncated {
        start: usize,
        end: usize,
    },
    BadOffset(u64),
    BadEntrySize {
        found: u64,
        expected: u64,
    },
    Overflow,
    BadAlignment(usize),
    Other,
}

impl From<ParseError> for ElfError {
    fn from(e: ParseError) -> Self {
        ElfError::Parse(match e {
            ParseError::BadMagic(_) => Unreadable::BadMagic,
            ParseError::UnsupportedElfClass(c) => Unreadable::Class(c),
            ParseError::UnsupportedElfEndianness(d) => Unreadable::Endianness(d),
            ParseError::UnsupportedVersion(_) => Unreadable::Version,
            ParseError::SliceReadError((start, end)) => Unreadable::Truncated { start, end },
            ParseError::TryFromSliceError(_) => Unreadable::Truncated { start: 0, end: 0 },
            ParseError::BadOffset(o) => Unreadable::BadOffset(o),
            ParseError::BadEntsize((found, expected)) => {
                Unreadable::BadEntrySize { found, expected }
            }
            ParseError::IntegerOverflow | ParseError::TryFromIntError(_) => Unreadable::Overflow,
            ParseError::UnexpectedAlignment(a) => Unreadable::BadAlignment(a),
            _ => Unreadable::Other,
        })
    }
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::BadMagic => f.write_str("no ELF magic"),
            Unreadable::Class(c) => write!(f, "unknown ELF class {c}"),
            Unreadable::Endianness(d) => write!(f, "not little-endian (EI_DATA {d})"),
            Unreadable::Version => f.write_str("unknown ELF version"),
            Unreadable::Truncated { start: 0, end: 0 } => f.write_str("truncated"),
            Unreadable::Truncated { start, end } => {
                write!(f, "truncated: bytes {start:#x}..{end:#x} are past the end")
            }
            Unreadable::BadOffset(o) => write!(f, "bad offset {o:#x}"),
            Unreadable::BadEntrySize { found, expected } => {
                write!(f, "table entry size {found} (expected {expected})")
            }
            Unreadable::Overflow => f.write_str("sizes overflow"),
            Unreadable::BadAlignment(a) => write!(f, "bad alignment {a}"),
            Unreadable::Other => f.write_str("malformed"),
        }
    }
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::Parse(e) => write!(f, "not a readable ELF file: {e}"),
            ElfError::FileTooLarge { len_bytes } => {
                write!(f, "the file is {len_bytes} bytes (at most {FILE_SIZE_MAX})")
            }
            ElfError::NotElf64 => f.write_str("not a 64-bit ELF file"),
            ElfError::NotX86_64 { machine } => {
                write!(f, "built for machine {machine}, not x86_64 (62)")
            }
            ElfError::PositionIndependent => {
                f.write_str("a position-independent executable (ET_DYN): link with -static -no-pie")
            }
            ElfError::NotExecutable { e_type } => {
                write!(f, "ELF type {e_type} is not an executable (ET_EXEC)")
            }
            ElfError::NoProgramHeaders => f.write_str("no program headers"),
            ElfError::TooManyProgramHeaders { count } => {
                write!(f, "{count} program headers (at most {PROGRAM_HEADERS_MAX})")
            }
            ElfError::Interpreter => {
                f.write_str("dynamically linked (PT_INTERP): link with -static")
            }
            ElfError::Dynamic => f.write_str("has a PT_DYNAMIC segment: link with -static -no-pie"),
            ElfError::NoLoadableSegment => f.write_str("no loadable segment"),
            ElfError::TooManySegments { count } => {
                write!(f, "{count} loadable segments (at most {SEGMENTS_MAX})")
            }
            ElfError::Segment { index, problem } => {
                write!(f, "segment {index}: ")?;
                match problem {
                    SegmentProblem::FileSizeAboveMemSize { file_size, mem_size } => {
                        write!(f, "file size {file_size:#x} is above memory size {mem_size:#x}")
                    }
                    SegmentProblem::FileRangeOutside { end, file_len } => {
                        write!(
                            f,
                            "file bytes end at {end:#x}, past the end of the file ({file_len:#x})"
                        )
                    }
                    SegmentProblem::Misaligned { vaddr, offset } => write!(
                        f,
                        "address {vaddr:#x} and file offset {offset:#x} differ modulo the page size"
                    ),
                    SegmentProblem::TooLarge { mem_size } => {
                        write!(f, "memory size {mem_size:#x} is above {SEGMENT_SIZE_MAX:#x}")
                    }
                    SegmentProblem::OutsideUserSpace { start, end } => write!(
                        f,
                        "{start:#x}..{end:#x} is outside user space ({:#x}..{:#x})",
                        user_space::USER_START,
                        user_space::STACK_RESERVED_START
                    ),
                    SegmentProblem::WritableAndExecutable => {
                        f.write_str("both writable and executable")
                    }
                }
            }
            ElfError::Overlap { first, second, page } => {
                write!(f, "segments {first} and {second} overlap (both use page {page:#x})")
            }
            ElfError::EntryNotExecutable { entry } => {
                write!(
                    f,
                    "entry point {entry:#x} is not in the file bytes of an executable segment"
                )
            }
            ElfError::ProgramHeadersNotLoaded { vaddr } => {
                write!(
                    f,
                    "PT_PHDR says {vaddr:#x}, which no segment loads from the program headers"
                )
            }
            ElfError::DuplicateNote => f.write_str("two expectation notes"),
        }
    }
}

/// Checks `file` and returns its load plan.
pub fn load_plan(file: &[u8]) -> Result<LoadPlan, ElfError> {
    if file.len() > FILE_SIZE_MAX {
        return Err(ElfError::FileTooLarge { len_bytes: file.len() });
    }
    let elf = ElfBytes::<LittleEndian>::minimal_parse(file)?;
    let header = &elf.ehdr;
    if header.class != ::elf::file::Class::ELF64 {
        return Err(ElfError::NotElf64);
    }
    if header.e_machine != abi::EM_X86_64 {
        return Err(ElfError::NotX86_64 { machine: header.e_machine });
    }
    match header.e_type {
        abi::ET_EXEC => {}
        abi::ET_DYN => return Err(ElfError::PositionIndependent),
        e_type => return Err(ElfError::NotExecutable { e_type }),
    }
    let headers = elf.segments().ok_or(ElfError::NoProgramHeaders)?;
    if headers.len() > PROGRAM_HEADERS_MAX {
        return Err(ElfError::TooManyProgramHeaders { count: headers.len() });
    }

    let mut plan = LoadPlan {
        entry: header.e_entry,
        segments: [Segment::default(); SEGMENTS_MAX],
        count: 0,
        program_headers: None,
    };
    let mut load_count = 0;
    let mut phdr_vaddr = None;
    for (index, ph) in headers.iter().enumerate() {
        match ph.p_type {
            abi::PT_INTERP => return Err(ElfError::Interpreter),
            abi::PT_DYNAMIC => return Err(ElfError::Dynamic),
            abi::PT_PHDR => phdr_vaddr = Some(ph.p_vaddr),
            abi::PT_LOAD if ph.p_memsz > 0 => {
                load_count += 1;
                let segment = check_segment(index, &ph, file.len() as u64)?;
                if plan.count < SEGMENTS_MAX {
                    plan.segments[plan.count] = segment;
                    plan.count += 1;
                }
            }
            _ => {}
        }
    }
    if load_count == 0 {
        return Err(ElfError::NoLoadableSegment);
    }
    if load_count > SEGMENTS_MAX {
        return Err(ElfError::TooManySegments { count: load_count });
    }
    check_overlaps(plan.segments())?;
    let entry = plan.entry;
    let entry_ok = plan
        .segments()
        .iter()
        .any(|s| s.perms.execute && (s.vaddr..s.vaddr + s.file_size).contains(&entry));
    if !entry_ok {
        return Err(ElfError::EntryNotExecutable { entry });
    }
    plan.program_headers = program_headers(
        &plan,
        header.e_phoff,
        u64::from(header.e_phentsize),
        headers.len() as u64,
        phdr_vaddr,
    )?;
    Ok(plan)
}

fn check_segment(index: usize, ph: &ProgramHeader, file_len: u64) -> Result<Segment, ElfError> {
    let fail = |problem| Err(ElfError::Segment { index, problem });
    if ph.p_filesz > ph.p_memsz {
        return fail(SegmentProblem::FileSizeAboveMemSize {
            file_size: ph.p_filesz,
            mem_size: ph.p_memsz,
        });
    }
    if ph.p_memsz > SEGMENT_SIZE_MAX {
        return fail(SegmentProblem::TooLarge { mem_size: ph.p_memsz });
    }
    match ph.p_offset.checked_add(ph.p_filesz) {
        Some(end) if end <= file_len => {}
        end => {
            return fail(SegmentProblem::FileRangeOutside {
                end: end.unwrap_or(u64::MAX),
                file_len,
            })
        }
    }
    if ph.p_filesz > 0 && ph.p_vaddr % PAGE_SIZE != ph.p_offset % PAGE_SIZE {
        return fail(SegmentProblem::Misaligned { vaddr: ph.p_vaddr, offset: ph.p_offset });
    }
    let start = page_floor(ph.p_vaddr);
    let end = ph.p_vaddr.checked_add(ph.p_memsz).and_then(page_ceil);
    match end {
        Some(end) if user_space::is_mappable(start, end - start) => {}
        _ => {
            return fail(SegmentProblem::OutsideUserSpace {
                start: ph.p_vaddr,
                end: ph.p_vaddr.saturating_add(ph.p_memsz),
            })
        }
    }
    let perms = Perms::from_p_flags(ph.p_flags);
    if perms.write && perms.execute {
        return fail(SegmentProblem::WritableAndExecutable);
    }
    Ok(Segment {
        vaddr: ph.p_vaddr,
        mem_size: ph.p_memsz,
        file_offset: ph.p_offset,
        file_size: ph.p_filesz,
        perms,
        header_index: index,
    })
}

fn check_overlaps(segments: &[Segment]) -> Result<(), ElfError> {
    for (i, a) in segments.iter().enumerate() {
        for b in &segments[i + 1..] {
            let (pa, pb) = (a.pages(), b.pages());
            if pa.start < pb.end && pb.start < pa.end {
                return Err(ElfError::Overlap {
                    first: a.header_index,
                    second: b.header_index,
                    page: pa.start.max(pb.start),
                });
            }
        }
    }
    Ok(())
}

/// The program header table's address: PT_PHDR's if there is one (it must be loaded),
/// otherwise wherever the segment holding file offset `e_phoff` loads it.
fn program_headers(
    plan: &LoadPlan,
    phoff: u64,
    entry_size: u64,
    count: u64,
    phdr_vaddr: Option<u64>,
) -> Result<Option<ProgramHeaders>, ElfError> {
    let size = entry_size * count;
    let loaded_at = plan.segments().iter().find_map(|s| {
        let inside = phoff >= s.file_offset && phoff + size <= s.file_offset + s.file_size;
        inside.then(|| s.vaddr + (phoff - s.file_offset))
    });
    let vaddr = match (phdr_vaddr, loaded_at) {
        (Some(said), Some(found)) if said == found => said,
        (Some(said), _) => return Err(ElfError::ProgramHeadersNotLoaded { vaddr: said }),
        (None, Some(found)) => found,
        (None, None) => return Ok(None),
    };
    Ok(Some(ProgramHeaders { vaddr, entry_size, count }))
}

/// The descriptor of the note called `name` with type `n_type`, looked for in PT_NOTE segments
/// and, if none has it, in SHT_NOTE sections. Two such notes are an error.
pub fn find_note<'f>(
    file: &'f [u8],
    name: &str,
    n_type: u64,
) -> Result<Option<&'f [u8]>, ElfError> {
    let elf = ElfBytes::<LittleEndian>::minimal_parse(file)?;
    let mut found = None;
    let take = |found: &mut Option<&'f [u8]>, note: Note<'f>| -> Result<(), ElfError> {
        if let Note::Unknown(any) = note {
            if any.n_type == n_type && any.name_str().is_ok_and(|n| n == name) {
                if found.is_some() {
                    return Err(ElfError::DuplicateNote);
                }
                *found = Some(any.desc);
            }
        }
        Ok(())
    };
    if let Some(headers) = elf.segments() {
        for ph in headers.iter().filter(|ph| ph.p_type == abi::PT_NOTE) {
            for note in elf.segment_data_as_notes(&ph)? {
                take(&mut found, note)?;
            }
        }
    }
    if found.is_none() {
        if let Some(sections) = elf.section_headers() {
            for sh in sections.iter().filter(|sh| sh.sh_type == abi::SHT_NOTE) {
                for note in elf.section_data_as_notes(&sh)? {
                    take(&mut found, note)?;
                }
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal static executable made here, field by field: one R+X segment at 0x400000
    /// holding the headers and code, one RW segment of `data_mem` bytes at 0x401000 whose first
    /// 16 bytes come from the file, and a PT_NOTE for `note` (name "faultline", type 1).
    pub(crate) struct HandMadeElf {
        pub bytes: Vec<u8>,
    }

    pub(crate) const EHDR: usize = 64;
    pub(crate) const PHDR: usize = 56;

    impl HandMadeElf {
        pub(crate) fn new(note: Option<&str>) -> HandMadeElf {
            let phnum = 3;
            let mut f = vec![0u8; 0x1010];
            f[..4].copy_from_slice(b"\x7fELF");
            f[4] = 2; // ELFCLASS64
            f[5] = 1; // little-endian
            f[6] = 1; // EV_CURRENT
            put16(&mut f, 16, abi::ET_EXEC);
            put16(&mut f, 18, abi::EM_X86_64);
            put32(&mut f, 20, 1);
            put64(&mut f, 24, 0x400800); // entry
            put64(&mut f, 32, EHDR as u64); // phoff
            put16(&mut f, 52, EHDR as u16);
            put16(&mut f, 54, PHDR as u16);
            put16(&mut f, 56, phnum);
            let mut fx = HandMadeElf { bytes: f };
            fx.set_phdr(0, abi::PT_LOAD, abi::PF_R | abi::PF_X, 0, 0x400000, 0x900, 0x900);
            fx.set_phdr(1, abi::PT_LOAD, abi::PF_R | abi::PF_W, 0x1000, 0x401000, 0x10, 0x3000);
            fx.bytes[0x800] = 0xf4; // hlt, as code
            let note_at = 0x200;
            let desc = note.unwrap_or("");
            let mut n = Vec::new();
            n.extend_from_slice(&10u32.to_le_bytes());
            n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
            n.extend_from_slice(&1u32.to_le_bytes());
            n.extend_from_slice(b"faultline\0\0\0");
            n.extend_from_slice(desc.as_bytes());
            n.resize(n.len().next_multiple_of(4), 0);
            fx.bytes[note_at..note_at + n.len()].copy_from_slice(&n);
            let note_type = if note.is_some() { abi::PT_NOTE } else { abi::PT_NULL };
            fx.set_phdr(
                2,
                note_type,
                abi::PF_R,
                note_at as u64,
                0x400000 + note_at as u64,
                n.len() as u64,
                n.len() as u64,
            );
            put64(&mut fx.bytes, EHDR + 2 * PHDR + 48, 4); // p_align of the note
            fx
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) fn set_phdr(
            &mut self,
            i: usize,
            p_type: u32,
            flags: u32,
            offset: u64,
            vaddr: u64,
            filesz: u64,
            memsz: u64,
        ) {
            let at = EHDR + i * PHDR;
            put32(&mut self.bytes, at, p_type);
            put32(&mut self.bytes, at + 4, flags);
            put64(&mut self.bytes, at + 8, offset);
            put64(&mut self.bytes, at + 16, vaddr);
            put64(&mut self.bytes, at + 24, vaddr);
            put64(&mut self.bytes, at + 32, filesz);
            put64(&mut self.bytes, at + 40, memsz);
            put64(&mut self.bytes, at + 48, 0x1000);
        }

        pub(crate) fn field64(&mut self, phdr: usize, offset: usize, value: u64) {
            put64(&mut self.bytes, EHDR + phdr * PHDR + offset, value);
        }
    }

    pub(crate) fn put16(f: &mut [u8], at: usize, v: u16) {
        f[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn put32(f: &mut [u8], at: usize, v: u32) {
        f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn put64(f: &mut [u8], at: usize, v: u64) {
        f[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    const P_OFFSET: usize = 8;
    const P_VADDR: usize = 16;
    const P_FILESZ: usize = 32;
    const P_MEMSZ: usize = 40;

    #[test]
    fn the_fixture_loads() {
        let fx = HandMadeElf::new(Some("exit 3"));
        let plan = load_plan(&fx.bytes).unwrap();
        assert_eq!(plan.entry, 0x400800);
        assert_eq!(plan.segments().len(), 2);
        let text = plan.segments()[0];
        assert_eq!(
            (text.vaddr, text.mem_size, text.perms.to_string().as_str()),
            (0x400000, 0x900, "r-x")
        );
        let data = plan.segments()[1];
        assert_eq!(
            (data.vaddr, data.file_offset, data.file_size, data.mem_size),
            (0x401000, 0x1000, 0x10, 0x3000)
        );
        assert_eq!(data.perms.to_string(), "rw-");
        assert_eq!(
            plan.program_headers,
            Some(ProgramHeaders { vaddr: 0x400040, entry_size: 56, count: 3 })
        );
        assert_eq!(plan.image_end(), 0x404000);
        assert_eq!(plan.segment_for_page(0x400fff).unwrap().vaddr, 0x400000);
        assert!(plan.segment_at(0x400fff).is_none());
        assert_eq!(find_note(&fx.bytes, "faultline", 1).unwrap(), Some(&b"exit 3"[..]));
        assert_eq!(find_note(&fx.bytes, "faultline", 2).unwrap(), None);
        assert_eq!(find_note(&HandMadeElf::new(None).bytes, "faultline", 1).unwrap(), None);
    }

    #[test]
    fn page_contents_split_file_bytes_and_zero_fill() {
        let fx = HandMadeElf::new(None);
        let plan = load_plan(&fx.bytes).unwrap();
        let text = plan.segments()[0];
        let page = text.spec().backing().page_contents(&fx.bytes, 0x400123);
        assert_eq!((page.offset_in_page, page.bytes.len()), (0, 0x900));
        assert!(!page.is_whole_file_page());
        let data = plan.segments()[1];
        let contents = |page| data.spec().backing().page_contents(&fx.bytes, page);
        assert_eq!(contents(0x401000).bytes.len(), 0x10);
        assert!(contents(0x402000).bytes.is_empty());
        assert_eq!(data.file_bytes(&fx.bytes).len(), 0x10);
    }

    fn rejected(fx: &HandMadeElf) -> ElfError {
        load_plan(&fx.bytes).unwrap_err()
    }

    #[test]
    fn truncated_files_are_rejected() {
        let fx = HandMadeElf::new(None);
        for len in [0, 3, 40, EHDR + 10, 0x1008] {
            let cut = HandMadeElf { bytes: fx.bytes[..len].to_vec() };
            let e = rejected(&cut);
            assert!(
                matches!(
                    e,
                    ElfError::Parse(_)
                        | ElfError::Segment {
                            problem: SegmentProblem::FileRangeOutside { .. },
                            ..
                        }
                ),
                "{len}: {e}"
            );
        }
        let e = rejected(&HandMadeElf { bytes: fx.bytes[..0x1008].to_vec() });
        assert_eq!(
            e.to_string(),
            "segment 1: file bytes end at 0x1010, past the end of the file (0x1008)"
        );
    }

    #[test]
    fn overlapping_segments_are_rejected() {
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_VADDR, 0x400000);
        fx.field64(1, P_OFFSET, 0);
        assert_eq!(rejected(&fx), ElfError::Overlap { first: 0, second: 1, page: 0x400000 });
        // Sharing only a page is an overlap too: each page has one set of permissions.
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_VADDR, 0x400ff0);
        fx.field64(1, P_OFFSET, 0xff0);
        assert_eq!(rejected(&fx).to_string(), "segments 0 and 1 overlap (both use page 0x400000)");
    }

    #[test]
    fn addresses_outside_user_space_are_rejected() {
        for vaddr in [
            0xffff_ffff_8000_0000,
            0x0,
            0x0000_7fff_ffff_0000,
            0x0000_8000_0000_0000,
            u64::MAX - 0xfff,
        ] {
            let mut fx = HandMadeElf::new(None);
            fx.field64(1, P_VADDR, vaddr);
            assert!(
                matches!(
                    rejected(&fx),
                    ElfError::Segment {
                        index: 1,
                        problem: SegmentProblem::OutsideUserSpace { .. }
                    }
                ),
                "{vaddr:#x}: {}",
                rejected(&fx)
            );
        }
    }

    #[test]
    fn absurd_sizes_are_rejected() {
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_MEMSZ, 1 << 40);
        assert_eq!(
            rejected(&fx),
            ElfError::Segment { index: 1, problem: SegmentProblem::TooLarge { mem_size: 1 << 40 } }
        );
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_FILESZ, u64::MAX);
        fx.field64(1, P_MEMSZ, u64::MAX);
        assert!(matches!(
            rejected(&fx),
            ElfError::Segment { index: 1, problem: SegmentProblem::TooLarge { .. } }
        ));
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_FILESZ, 0x4000);
        assert!(matches!(
            rejected(&fx),
            ElfError::Segment { problem: SegmentProblem::FileSizeAboveMemSize { .. }, .. }
        ));
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_OFFSET, u64::MAX - 4);
        assert!(matches!(
            rejected(&fx),
            ElfError::Segment {
                problem: SegmentProblem::FileRangeOutside { end: u64::MAX, .. },
                ..
            }
        ));
        let mut fx = HandMadeElf::new(None);
        put16(&mut fx.bytes, 56, 0xfff0); // e_phnum: the table runs past the file
        assert!(matches!(rejected(&fx), ElfError::Parse(_)));
    }

    #[test]
    fn bad_entry_points_are_rejected() {
        for entry in [0x401000, 0x400900, 0, 0xffff_ffff_8000_0000] {
            let mut fx = HandMadeElf::new(None);
            put64(&mut fx.bytes, 24, entry);
            assert_eq!(rejected(&fx), ElfError::EntryNotExecutable { entry });
        }
    }

    #[test]
    fn other_shapes_are_rejected() {
        let mut fx = HandMadeElf::new(None);
        fx.field64(1, P_OFFSET, 0x800);
        assert!(matches!(
            rejected(&fx),
            ElfError::Segment { problem: SegmentProblem::Misaligned { .. }, .. }
        ));
        let mut fx = HandMadeElf::new(None);
        put32(&mut fx.bytes, EHDR + PHDR + 4, abi::PF_R | abi::PF_W | abi::PF_X);
        assert_eq!(rejected(&fx).to_string(), "segment 1: both writable and executable");
        let mut fx = HandMadeElf::new(None);
        put16(&mut fx.bytes, 16, abi::ET_DYN);
        assert_eq!(rejected(&fx), ElfError::PositionIndependent);
        let mut fx = HandMadeElf::new(None);
        put16(&mut fx.bytes, 18, abi::EM_AARCH64);
        assert_eq!(rejected(&fx), ElfError::NotX86_64 { machine: abi::EM_AARCH64 });
        let mut fx = HandMadeElf::new(None);
        put32(&mut fx.bytes, EHDR + 2 * PHDR, abi::PT_INTERP);
        assert_eq!(rejected(&fx), ElfError::Interpreter);
        let mut fx = HandMadeElf::new(None);
        put32(&mut fx.bytes, EHDR + 2 * PHDR, abi::PT_DYNAMIC);
        assert_eq!(rejected(&fx), ElfError::Dynamic);
        let mut fx = HandMadeElf::new(None);
        put32(&mut fx.bytes, EHDR, abi::PT_NULL);
        put32(&mut fx.bytes, EHDR + PHDR, abi::PT_NULL);
        assert_eq!(rejected(&fx), ElfError::NoLoadableSegment);
        let mut fx = HandMadeElf::new(None);
        fx.bytes[0] = b'X';
        assert!(rejected(&fx).to_string().starts_with("not a readable ELF file"));
        let mut fx = HandMadeElf::new(None);
        fx.bytes[4] = 1;
        assert!(matches!(rejected(&fx), ElfError::NotElf64 | ElfError::Parse(_)));
    }

    #[test]
    fn a_stated_phdr_must_be_loaded() {
        let mut fx = HandMadeElf::new(None);
        put32(&mut fx.bytes, EHDR + 2 * PHDR, abi::PT_PHDR);
        fx.field64(2, P_VADDR, 0x400040);
        assert_eq!(load_plan(&fx.bytes).unwrap().program_headers.unwrap().vaddr, 0x400040);
        fx.field64(2, P_VADDR, 0x500000);
        assert_eq!(rejected(&fx), ElfError::ProgramHeadersNotLoaded { vaddr: 0x500000 });
    }

    #[test]
    fn two_expectation_notes_are_rejected() {
        let mut fx = HandMadeElf::new(Some("exit 1"));
        // Make the text segment's range cover the note twice by pointing segment 0 at it as a
        // second PT_NOTE.
        let at = EHDR;
        put32(&mut fx.bytes, at, abi::PT_NOTE);
        fx.field64(0, P_OFFSET, 0x200);
        fx.field64(0, P_FILESZ, 32);
        fx.field64(0, 48, 4);
        assert_eq!(find_note(&fx.bytes, "faultline", 1), Err(ElfError::DuplicateNote));
    }
}
