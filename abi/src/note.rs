//! The expectation note: how a test program declares what should happen to it (docs/abi.md).
//!
//! An ELF note (`SHT_NOTE`, in a `PT_NOTE` segment) with name [`NAME`], type [`TYPE_EXPECT`] and
//! the expectation text as its descriptor (ASCII, trailing NULs ignored). The kernel's
//! `proc::expectation` parses the text; the Rust runtime and the C header `faultline.h` write the note
//! (into a section `.note.faultline`; the kernel finds it through the program headers).
//!
//! The text is an outcome and options (docs/abi.md section 7): `exit 0`, `killed #UD; runs 2`,
//! `exit 0; vcpus 2` (the program needs 2 online vCPUs; with fewer it is skipped). The largest
//! `vcpus` is [`crate::MAX_VCPUS`].

/// The note's name, without its NUL.
pub const NAME: &str = "faultline";
/// `n_namesz`: the name with its NUL, as the ELF note header counts it.
pub const NAME_SIZE: u32 = NAME.len() as u32 + 1;
/// The name field as stored: the name, its NUL, zeros up to a multiple of 4 bytes.
pub const NAME_FIELD: [u8; 12] = name_field();
/// The note's type for an expectation.
pub const TYPE_EXPECT: u32 = 1;

const fn name_field() -> [u8; 12] {
    assert!(NAME.len() < 12, "the name and its NUL fill at most the 12-byte field");
    let mut field = [0u8; 12];
    let mut i = 0;
    while i < NAME.len() {
        field[i] = NAME.as_bytes()[i];
        i += 1;
    }
    field
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_field_is_the_name_padded_to_four_bytes() {
        assert_eq!(&NAME_FIELD, b"faultline\0\0\0");
        assert_eq!(NAME_SIZE, 10);
        assert_eq!(NAME_FIELD.len() as u32, NAME_SIZE.next_multiple_of(4));
    }
}
