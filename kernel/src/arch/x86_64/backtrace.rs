//! Frame-pointer backtraces (the kernel is built with frame pointers), guarded against bad stacks.

use core::ops::Range;

/// How deep a backtrace goes before it stops.
pub const MAX_FRAMES: usize = 32;

/// Walks the frame-pointer chain from `rbp`: each frame holds the caller's rbp at [rbp] and the
/// return address at [rbp + 8]. `stack` bounds where frames may live; the walk stops at a null,
/// misaligned, out-of-bounds or non-ascending frame pointer, so a corrupt stack ends the
/// backtrace instead of faulting inside the crash report. `read` loads a word that is known to
/// lie inside `stack`. Calls `visit` with each return address; returns the number of frames.
pub fn walk(
    mut rbp: u64,
    stack: Range<u64>,
    read: impl Fn(u64) -> u64,
    mut visit: impl FnMut(u64),
) -> usize {
    let mut frames = 0;
    while frames < MAX_FRAMES {
        if rbp == 0
            || !rbp.is_multiple_of(8)
            || rbp < stack.start
            || rbp.saturating_add(16) > stack.end
        {
            break;
        }
        let next = read(rbp);
        let ret = read(rbp + 8);
        if ret == 0 {
            break;
        }
        visit(ret);
        frames += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn follows_the_chain_and_stops_at_null() {
        let mem: HashMap<u64, u64> = [
            (0x1000, 0x1040),
            (0x1008, 0xaaa),
            (0x1040, 0x1100),
            (0x1048, 0xbbb),
            (0x1100, 0),
            (0x1108, 0xccc),
        ]
        .into();
        let mut seen = vec![];
        let n = walk(0x1000, 0x1000..0x2000, |a| mem[&a], |r| seen.push(r));
        assert_eq!(seen, vec![0xaaa, 0xbbb, 0xccc]);
        assert_eq!(n, 3);
    }

    #[test]
    fn stops_at_out_of_bounds_loops_and_misalignment() {
        let mem: HashMap<u64, u64> = [(0x1000, 0x1000), (0x1008, 0xaaa)].into();
        let mut seen = vec![];
        walk(0x1000, 0x1000..0x2000, |a| mem[&a], |r| seen.push(r));
        assert_eq!(seen, vec![0xaaa], "a self-loop is followed once");
        assert_eq!(walk(0x3000, 0x1000..0x2000, |_| unreachable!(), |_| ()), 0);
        assert_eq!(walk(0x1004, 0x1000..0x2000, |_| unreachable!(), |_| ()), 0);
        assert_eq!(walk(0x1ff8, 0x1000..0x2000, |_| unreachable!(), |_| ()), 0);
    }
}
