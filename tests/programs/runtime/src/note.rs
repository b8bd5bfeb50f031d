//! The expectation note (docs/abi.md, `faultline_abi::note`): the expectation text as descriptor.

use faultline_abi::note;

/// An ELF note laid out as the ELF specification says: three 4-byte words, the name padded to 4,
/// the descriptor padded to 4 (by the struct's alignment).
#[repr(C, align(4))]
pub struct Note<const N: usize> {
    name_size: u32,
    desc_size: u32,
    note_type: u32,
    name: [u8; 12],
    desc: [u8; N],
}

impl<const N: usize> Note<N> {
    pub const fn new(text: &str) -> Note<N> {
        let bytes = text.as_bytes();
        assert!(bytes.len() == N);
        let mut desc = [0u8; N];
        let mut i = 0;
        while i < N {
            desc[i] = bytes[i];
            i += 1;
        }
        Note {
            name_size: note::NAME_SIZE,
            desc_size: N as u32,
            note_type: note::TYPE_EXPECT,
            name: note::NAME_FIELD,
            desc,
        }
    }
}

/// Declares what should happen to this program, e.g.
/// `rt::faultline_expect!("killed #PF read not-present at 0x0");`. Once per program; without it
/// the program is expected to `exit 0`.
#[macro_export]
macro_rules! faultline_expect {
    ($text:literal) => {
        #[used]
        #[unsafe(link_section = ".note.faultline")]
        static FAULTLINE_EXPECT: $crate::note::Note<{ $text.len() }> =
            $crate::note::Note::new($text);
    };
}
