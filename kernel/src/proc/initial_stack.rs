//! The Linux x86_64 initial process stack (argc, argv, envp, auxv, strings), built into a buffer.
//!
//! ```text
//!  stack_top ->  8 zero bytes (end marker)
//!                strings: argv[..], envp[..], "x86_64" (AT_PLATFORM), NUL-terminated
//!                16 random bytes (AT_RANDOM), 16-aligned
//!                zero padding so that rsp ends 16-aligned
//!                auxv: (type, value) pairs, last (AT_NULL, 0)
//!                NULL, envp[envc - 1] .. envp[0]
//!                NULL, argv[argc - 1] .. argv[0]
//!  rsp ------->  argc                                   (rsp % 16 == 0, SysV ABI)
//! ```

use core::fmt;

use super::elf::LoadPlan;
use crate::mm::addr::PAGE_SIZE;

pub use faultline_abi::auxv::*;

/// `AT_CLKTCK`: the tick rate `times()` would use (Linux's USER_HZ).
const CLOCK_TICKS_PER_SECOND: u64 = 100;
const PLATFORM: &str = "x86_64";
/// Most auxv entries beyond the standard ones.
pub const EXTRA_AUX_MAX: usize = 8;

/// What goes on the stack.
#[derive(Clone, Copy, Debug)]
pub struct StackSpec<'s> {
    /// argv; `args[0]` is also AT_EXECFN.
    pub args: &'s [&'s str],
    pub env: &'s [&'s str],
    /// Entry point and program header table.
    pub plan: &'s LoadPlan,
    /// AT_RANDOM's 16 bytes (musl seeds its stack protector with them).
    pub random: [u8; 16],
    /// More (type, value) entries, e.g. `AT_FAULTLINE_*`.
    pub extra_aux: &'s [(u64, u64)],
}

/// The built stack: copy `bytes` to user memory at `rsp`; start the program with that rsp.
#[derive(Debug, PartialEq, Eq)]
pub struct StackImage<'b> {
    pub rsp: u64,
    pub bytes: &'b [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// The buffer is smaller than the image.
    TooBig {
        needed_bytes: usize,
        room_bytes: usize,
    },
    /// A string holds a NUL byte.
    NulInString,
    TooManyExtraAux,
    /// `stack_top` is not page-aligned or the buffer reaches below address 0.
    BadTop,
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StackError::TooBig { needed_bytes, room_bytes } => {
                write!(f, "the initial stack needs {needed_bytes} bytes, {room_bytes} available")
            }
            StackError::NulInString => {
                f.write_str("an argument or environment string holds a NUL byte")
            }
            StackError::TooManyExtraAux => {
                write!(f, "more than {EXTRA_AUX_MAX} extra auxv entries")
            }
            StackError::BadTop => f.write_str("the stack top is not page-aligned"),
        }
    }
}

/// Builds the stack image into `buf`, which stands for the bytes just below `stack_top`.
pub fn build<'b>(
    buf: &'b mut [u8],
    stack_top: u64,
    spec: &StackSpec<'_>,
) -> Result<StackImage<'b>, StackError> {
    if !stack_top.is_multiple_of(PAGE_SIZE) || (buf.len() as u64) > stack_top {
        return Err(StackError::BadTop);
    }
    if spec.extra_aux.len() > EXTRA_AUX_MAX {
        return Err(StackError::TooManyExtraAux);
    }
    if spec.args.iter().chain(spec.env).any(|s| s.as_bytes().contains(&0)) {
        return Err(StackError::NulInString);
    }
    let base = stack_top - buf.len() as u64;
    let mut w = Writer { buf, base, top: stack_top };
    let room_bytes = w.buf.len();
    let too_big = |needed_bytes| StackError::TooBig { needed_bytes, room_bytes };

    // From the top down: end marker, strings, random bytes.
    let mut cursor = stack_top - 8;
    let string_at = |w: &mut Writer<'_>, cursor: &mut u64, s: &str| -> Result<u64, StackError> {
        let len = s.len() as u64 + 1;
        *cursor = cursor
            .checked_sub(len)
            .filter(|c| *c >= w.base)
            .ok_or(too_big((stack_top - *cursor + len) as usize))?;
        w.put_bytes(*cursor, s.as_bytes());
        w.put_bytes(*cursor + s.len() as u64, &[0]);
        Ok(*cursor)
    };
    let mut arg_addrs = [0u64; ARGS_MAX];
    let mut env_addrs = [0u64; ARGS_MAX];
    if spec.args.len() > ARGS_MAX || spec.env.len() > ARGS_MAX {
        return Err(too_big(usize::MAX));
    }
    for (i, a) in spec.args.iter().enumerate() {
        arg_addrs[i] = string_at(&mut w, &mut cursor, a)?;
    }
    for (i, e) in spec.env.iter().enumerate() {
        env_addrs[i] = string_at(&mut w, &mut cursor, e)?;
    }
    let platform = string_at(&mut w, &mut cursor, PLATFORM)?;
    let random =
        (cursor & !15).checked_sub(16).filter(|c| *c >= base).ok_or(too_big(usize::MAX))?;
    w.put_bytes(random, &spec.random);
    w.fill_zero(random + 16, cursor);

    let mut aux = [(0u64, 0u64); AUX_MAX];
    let mut aux_count = 0;
    let mut push = |t, v| {
        aux[aux_count] = (t, v);
        aux_count += 1;
    };
    if let Some(ph) = spec.plan.program_headers {
        push(AT_PHDR, ph.vaddr);
        push(AT_PHENT, ph.entry_size);
        push(AT_PHNUM, ph.count);
    }
    push(AT_PAGESZ, PAGE_SIZE);
    push(AT_BASE, 0);
    push(AT_FLAGS, 0);
    push(AT_ENTRY, spec.plan.entry);
    push(AT_UID, 0);
    push(AT_EUID, 0);
    push(AT_GID, 0);
    push(AT_EGID, 0);
    push(AT_SECURE, 0);
    push(AT_HWCAP, 0);
    push(AT_CLKTCK, CLOCK_TICKS_PER_SECOND);
    push(AT_PLATFORM, platform);
    push(AT_RANDOM, random);
    if !spec.args.is_empty() {
        push(AT_EXECFN, arg_addrs[0]);
    }
    for &(t, v) in spec.extra_aux {
        push(t, v);
    }
    push(AT_NULL, 0);

    let argc = spec.args.len();
    let envc = spec.env.len();
    let words = 1 + (argc + 1) + (envc + 1) + 2 * aux_count;
    let rsp = random.checked_sub(8 * words as u64).map(|r| r & !15).filter(|r| *r >= base);
    let rsp = rsp.ok_or(too_big((stack_top - random) as usize + 8 * words + 15))?;
    w.fill_zero(rsp, random);
    let mut at = rsp;
    let mut word = |w: &mut Writer<'_>, v: u64| {
        w.put_bytes(at, &v.to_le_bytes());
        at += 8;
    };
    word(&mut w, argc as u64);
    for &a in &arg_addrs[..argc] {
        word(&mut w, a);
    }
    word(&mut w, 0);
    for &e in &env_addrs[..envc] {
        word(&mut w, e);
    }
    word(&mut w, 0);
    for &(t, v) in &aux[..aux_count] {
        word(&mut w, t);
        word(&mut w, v);
    }
    w.fill_zero(stack_top - 8, stack_top);
    let bytes = &w.buf[(rsp - w.base) as usize..];
    debug_assert_eq!(w.top - rsp, bytes.len() as u64);
    Ok(StackImage { rsp, bytes })
}

/// Most argv or envp strings.
pub const ARGS_MAX: usize = 32;
const AUX_MAX: usize = 20 + EXTRA_AUX_MAX;

struct Writer<'b> {
    buf: &'b mut [u8],
    base: u64,
    top: u64,
}

impl Writer<'_> {
    fn put_bytes(&mut self, addr: u64, bytes: &[u8]) {
        let at = (addr - self.base) as usize;
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn fill_zero(&mut self, from: u64, to: u64) {
        self.buf[(from - self.base) as usize..(to - self.base) as usize].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::user_space::STACK_TOP;
    use crate::proc::elf::{load_plan, tests::HandMadeElf};

    /// Reads a stack image back the way a C runtime would.
    struct Parsed {
        argc: u64,
        args: Vec<String>,
        env: Vec<String>,
        aux: Vec<(u64, u64)>,
    }

    fn parse(image: &StackImage<'_>) -> Parsed {
        let word = |addr: u64| {
            u64::from_le_bytes(image.bytes[(addr - image.rsp) as usize..][..8].try_into().unwrap())
        };
        let string = |addr: u64| {
            let at = &image.bytes[(addr - image.rsp) as usize..];
            String::from_utf8(at[..at.iter().position(|&b| b == 0).unwrap()].to_vec()).unwrap()
        };
        let argc = word(image.rsp);
        let mut at = image.rsp + 8;
        let strings = |at: &mut u64| {
            let mut out = Vec::new();
            while word(*at) != 0 {
                out.push(string(word(*at)));
                *at += 8;
            }
            *at += 8;
            out
        };
        let args = strings(&mut at);
        let env = strings(&mut at);
        let mut aux = Vec::new();
        loop {
            let (t, v) = (word(at), word(at + 8));
            aux.push((t, v));
            at += 16;
            if t == AT_NULL {
                break;
            }
        }
        Parsed { argc, args, env, aux }
    }

    fn aux_value(p: &Parsed, t: u64) -> Option<u64> {
        p.aux.iter().find(|(k, _)| *k == t).map(|(_, v)| *v)
    }

    #[test]
    fn a_program_finds_what_musl_needs() {
        let plan = load_plan(&HandMadeElf::new(None).bytes).unwrap();
        let mut buf = [0xaau8; 4096];
        let spec = StackSpec {
            args: &["null_read", "-v"],
            env: &["FAULTLINE=1"],
            plan: &plan,
            random: *b"0123456789abcdef",
            extra_aux: &[(AT_FAULTLINE_P2M, 0xffff_ffff_8123_4000)],
        };
        let image = build(&mut buf, STACK_TOP, &spec).unwrap();
        assert_eq!(image.rsp % 16, 0);
        assert_eq!(image.rsp + image.bytes.len() as u64, STACK_TOP);
        let p = parse(&image);
        assert_eq!(p.argc, 2);
        assert_eq!(p.args, ["null_read", "-v"]);
        assert_eq!(p.env, ["FAULTLINE=1"]);
        assert_eq!(aux_value(&p, AT_PHDR), Some(0x400040));
        assert_eq!(aux_value(&p, AT_PHENT), Some(56));
        assert_eq!(aux_value(&p, AT_PHNUM), Some(3));
        assert_eq!(aux_value(&p, AT_PAGESZ), Some(4096));
        assert_eq!(aux_value(&p, AT_ENTRY), Some(0x400800));
        assert_eq!(aux_value(&p, AT_FAULTLINE_P2M), Some(0xffff_ffff_8123_4000));
        assert_eq!(p.aux.last(), Some(&(AT_NULL, 0)));
        let random = aux_value(&p, AT_RANDOM).unwrap();
        assert_eq!(random % 16, 0);
        let at = (random - image.rsp) as usize;
        assert_eq!(&image.bytes[at..at + 16], b"0123456789abcdef");
        let execfn = aux_value(&p, AT_EXECFN).unwrap();
        assert_eq!(execfn, {
            let argv0 = image.rsp + 8;
            u64::from_le_bytes(image.bytes[(argv0 - image.rsp) as usize..][..8].try_into().unwrap())
        });
        assert_eq!(&image.bytes[image.bytes.len() - 8..], &[0; 8]);
        assert!(!image.bytes.contains(&0xaa), "every byte of the image is written");
    }

    #[test]
    fn rsp_is_16_aligned_for_any_count_of_strings() {
        let plan = load_plan(&HandMadeElf::new(None).bytes).unwrap();
        let names = ["a", "bb", "ccc", "dddd", "eeeee"];
        for argc in 0..names.len() {
            for envc in 0..3 {
                for extra in 0..3 {
                    let extra_aux =
                        [(AT_FAULTLINE_KERNEL_ADDRESS, 1), (AT_FAULTLINE_PAGE_TABLE, 2)];
                    let mut buf = [0u8; 2048];
                    let spec = StackSpec {
                        args: &names[..argc],
                        env: &names[..envc],
                        plan: &plan,
                        random: [7; 16],
                        extra_aux: &extra_aux[..extra.min(2)],
                    };
                    let image = build(&mut buf, STACK_TOP, &spec).unwrap();
                    assert_eq!(image.rsp % 16, 0, "argc {argc} envc {envc}");
                    let p = parse(&image);
                    assert_eq!(p.args.len(), argc);
                    assert_eq!(p.env.len(), envc);
                    assert_eq!(aux_value(&p, AT_EXECFN).is_some(), argc > 0);
                }
            }
        }
    }

    #[test]
    fn without_loaded_program_headers_phdr_and_phnum_are_left_out() {
        let mut plan = load_plan(&HandMadeElf::new(None).bytes).unwrap();
        plan.program_headers = None;
        let mut buf = [0u8; 1024];
        let spec =
            StackSpec { args: &["x"], env: &[], plan: &plan, random: [0; 16], extra_aux: &[] };
        let p = parse(&build(&mut buf, STACK_TOP, &spec).unwrap());
        assert_eq!(aux_value(&p, AT_PHDR), None);
        assert_eq!(aux_value(&p, AT_PHNUM), None);
    }

    #[test]
    fn bad_requests_are_refused() {
        let plan = load_plan(&HandMadeElf::new(None).bytes).unwrap();
        let spec =
            StackSpec { args: &["x"], env: &[], plan: &plan, random: [0; 16], extra_aux: &[] };
        let mut small = [0u8; 64];
        assert!(matches!(build(&mut small, STACK_TOP, &spec), Err(StackError::TooBig { .. })));
        let long = "y".repeat(5000);
        let args = [long.as_str()];
        let mut buf = [0u8; 4096];
        let e = build(&mut buf, STACK_TOP, &StackSpec { args: &args, ..spec }).unwrap_err();
        assert!(e.to_string().starts_with("the initial stack needs"), "{e}");
        assert_eq!(
            build(&mut buf, STACK_TOP, &StackSpec { args: &["a\0b"], ..spec }),
            Err(StackError::NulInString)
        );
        assert_eq!(build(&mut buf, STACK_TOP + 8, &spec), Err(StackError::BadTop));
        assert_eq!(build(&mut buf, 0, &spec), Err(StackError::BadTop));
        let many = [(AT_FAULTLINE_P2M, 0); 9];
        assert_eq!(
            build(&mut buf, STACK_TOP, &StackSpec { extra_aux: &many, ..spec }),
            Err(StackError::TooManyExtraAux)
        );
    }
}
