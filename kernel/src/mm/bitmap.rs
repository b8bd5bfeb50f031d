//! A fixed-size bit set over frame numbers, stored in a caller-provided buffer of words.

/// Bits `0..len_bits` over a borrowed `[u64]`; bits past `len_bits` are never touched.
#[derive(Debug)]
pub struct Bitmap<'a> {
    words: &'a mut [u64],
    len_bits: u64,
}

/// The number of `u64` words needed to hold `len_bits` bits.
pub const fn words_for_bits(len_bits: u64) -> usize {
    len_bits.div_ceil(64) as usize
}

impl<'a> Bitmap<'a> {
    /// A cleared bitmap of `len_bits` bits, or `None` if `words` is too short.
    pub(in crate::mm) fn new_cleared(words: &'a mut [u64], len_bits: u64) -> Option<Self> {
        if words.len() < words_for_bits(len_bits) {
            return None;
        }
        words.fill(0);
        Some(Bitmap { words, len_bits })
    }

    /// How many bits the map holds.
    pub(in crate::mm) const fn len_bits(&self) -> u64 {
        self.len_bits
    }

    /// Whether bit `index` is set (bits out of range read as set: "not available").
    pub(in crate::mm) fn get(&self, index: u64) -> bool {
        if index >= self.len_bits {
            return true;
        }
        self.words[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    /// Sets bit `index` to `value`; out-of-range indices are ignored.
    pub(in crate::mm) fn set(&mut self, index: u64, value: bool) {
        if index >= self.len_bits {
            return;
        }
        let word = &mut self.words[(index / 64) as usize];
        if value {
            *word |= 1 << (index % 64);
        } else {
            *word &= !(1 << (index % 64));
        }
    }

    /// The first clear bit at or after `start`, wrapping around once; `None` if all are set.
    pub(in crate::mm) fn find_clear_from(&self, start: u64) -> Option<u64> {
        let start = if start >= self.len_bits { 0 } else { start };
        self.find_clear_in(start, self.len_bits).or_else(|| self.find_clear_in(0, start))
    }

    fn find_clear_in(&self, from: u64, to: u64) -> Option<u64> {
        let mut index = from;
        while index < to {
            let word = self.words[(index / 64) as usize] | ((1u64 << (index % 64)) - 1);
            if word != u64::MAX {
                let found = (index / 64) * 64 + u64::from(word.trailing_ones());
                return (found < to).then_some(found);
            }
            index = (index / 64 + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_clear_bits_across_words_and_wraps() {
        let mut buf = [0u64; 3];
        let mut map = Bitmap::new_cleared(&mut buf, 130).unwrap();
        for i in 0..130 {
            map.set(i, true);
        }
        assert_eq!(map.find_clear_from(0), None);
        map.set(70, false);
        map.set(3, false);
        assert_eq!(map.find_clear_from(4), Some(70));
        assert_eq!(map.find_clear_from(71), Some(3));
        assert!(map.get(200), "out of range reads as unavailable");
    }

    #[test]
    fn refuses_a_short_buffer() {
        let mut buf = [0u64; 1];
        assert!(Bitmap::new_cleared(&mut buf, 65).is_none());
    }
}
