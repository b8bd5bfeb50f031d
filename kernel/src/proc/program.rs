//! A test program ready to run: its archive entry, checked load plan and expectation, or the
//! reason it cannot run (naming the program).

use core::fmt;

use super::archive::{Archive, Entry, EntryError, Name};
use super::elf::{self, ElfError, LoadPlan};
use super::expectation::{ExpectError, Expectation};
use faultline_abi::note;

/// A program that passed every check.
#[derive(Clone, Copy, Debug)]
pub struct Program<'a> {
    pub entry: Entry<'a>,
    pub plan: LoadPlan,
    pub expectation: Expectation,
}

impl<'a> Program<'a> {
    pub fn name(&self) -> &str {
        self.entry.name.as_str()
    }

    /// The ELF file's bytes (inside the archive).
    pub fn file(&self) -> &'a [u8] {
        self.entry.data
    }
}

/// Why a program will not run.
#[derive(Clone, Copy, Debug)]
pub enum Rejection<'a> {
    /// The archive entry itself is bad (name, duplicate, empty).
    Entry(EntryError<'a>),
    Elf {
        name: Name,
        error: ElfError,
    },
    Note {
        name: Name,
        error: ExpectError<'a>,
    },
}

impl Rejection<'_> {
    /// The program's name as far as it is known, for the TAP line.
    pub fn name(&self) -> &str {
        match self {
            Rejection::Entry(e) if !e.raw_name.is_empty() => e.raw_name,
            Rejection::Entry(_) => "(unnamed)",
            Rejection::Elf { name, .. } | Rejection::Note { name, .. } => name.as_str(),
        }
    }
}

impl fmt::Display for Rejection<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Entry(e) => write!(f, "{e}"),
            Rejection::Elf { error, .. } => write!(f, "bad ELF: {error}"),
            Rejection::Note { error, .. } => write!(f, "{error}"),
        }
    }
}

/// Checks one archive entry.
pub fn inspect(entry: Entry<'_>) -> Result<Program<'_>, Rejection<'_>> {
    let name = entry.name;
    let plan = elf::load_plan(entry.data).map_err(|error| Rejection::Elf { name, error })?;
    let note = elf::find_note(entry.data, note::NAME, u64::from(note::TYPE_EXPECT))
        .map_err(|error| Rejection::Elf { name, error })?;
    let expectation = match note {
        None => Expectation::default(),
        Some(desc) => Expectation::parse(desc).map_err(|error| Rejection::Note { name, error })?,
    };
    Ok(Program { entry, plan, expectation })
}

/// Every program of the archive, checked, in archive order.
pub fn programs<'a>(
    archive: &Archive<'a>,
) -> impl Iterator<Item = Result<Program<'a>, Rejection<'a>>> {
    archive.entries().map(|entry| inspect(entry.map_err(Rejection::Entry)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::archive::pack;
    use crate::proc::elf::tests::HandMadeElf;
    use crate::proc::expectation::Expected;

    #[test]
    fn one_bad_program_does_not_stop_the_others() {
        let good = HandMadeElf::new(Some("exit 3"));
        let silent = HandMadeElf::new(None);
        let mut bad_elf = HandMadeElf::new(None);
        bad_elf.field64(1, 16, 0xffff_ffff_8000_0000);
        let bad_note = HandMadeElf::new(Some("exit 300"));
        let bytes = pack(&[
            ("good", &good.bytes),
            ("kernel_segment", &bad_elf.bytes),
            ("silent", &silent.bytes),
            ("bad_note", &bad_note.bytes),
            ("not_elf", &[b'#'; 100]),
        ])
        .unwrap();
        let archive = Archive::open(&bytes).unwrap();
        let results: Vec<_> = programs(&archive).collect();
        assert_eq!(results.len(), 5);
        let good = results[0].as_ref().unwrap();
        assert_eq!((good.name(), good.expectation.outcome), ("good", Expected::Exit(3)));
        assert!(good.entry.is_page_aligned());
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(e.name(), "kernel_segment");
        assert!(e.to_string().starts_with("bad ELF: segment 1: 0xffffffff80000000.."), "{e}");
        assert_eq!(results[2].as_ref().unwrap().expectation, Expectation::default());
        let e = results[3].as_ref().unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad expectation note \"exit 300\": '300' is not an exit status (0..=255)"
        );
        assert_eq!(
            results[4].as_ref().unwrap_err().to_string(),
            "bad ELF: not a readable ELF file: no ELF magic"
        );
    }
}
