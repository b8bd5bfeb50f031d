//! Host tests on real test programs: two built by tests/programs/build.sh and checked in
//! (fixtures/: `exit_status` from the Rust runtime, `c_null_deref` from musl-gcc -static), and
//! malformed variants made by editing them.
//!
//! To refresh the fixtures: `tests/programs/build.sh /tmp/out`, then copy
//! `/tmp/out/bin/{exit_status,c_null_deref}` to `fixtures/*.elf`.

use super::archive::{pack, Archive};
use super::elf::{find_note, load_plan, ElfError, SegmentProblem};
use super::expectation::{Expectation, Expected};
use super::initial_stack::{build, StackSpec, AT_PHDR, AT_PHNUM};
use super::program::programs;
use crate::mm::user_space::STACK_TOP;
use faultline_abi::note;

const RUST_EXIT_STATUS: &[u8] = include_bytes!("fixtures/exit_status.elf");
const C_NULL_DEREF: &[u8] = include_bytes!("fixtures/c_null_deref.elf");

fn u16_at(f: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(f[at..at + 2].try_into().unwrap())
}
fn u32_at(f: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(f[at..at + 4].try_into().unwrap())
}
fn u64_at(f: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(f[at..at + 8].try_into().unwrap())
}
fn set_u64(f: &mut [u8], at: usize, v: u64) {
    f[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// File offsets of the PT_LOAD program headers.
fn load_headers(f: &[u8]) -> Vec<usize> {
    let (phoff, phnum) = (u64_at(f, 32) as usize, usize::from(u16_at(f, 56)));
    (0..phnum).map(|i| phoff + i * 56).filter(|&at| u32_at(f, at) == 1).collect()
}

const P_VADDR: usize = 16;
const P_MEMSZ: usize = 40;

fn expectation(f: &[u8]) -> Expectation {
    match find_note(f, note::NAME, u64::from(note::TYPE_EXPECT)).unwrap() {
        Some(desc) => Expectation::parse(desc).unwrap(),
        None => Expectation::default(),
    }
}

#[test]
fn the_rust_program_loads_as_linked() {
    let plan = load_plan(RUST_EXIT_STATUS).unwrap();
    let text = plan.segments()[0];
    assert_eq!(
        (text.vaddr, text.file_offset, text.perms.to_string().as_str()),
        (0x400000, 0, "r-x")
    );
    assert!(text.contains(plan.entry));
    assert_eq!(plan.program_headers.unwrap().vaddr, 0x400040);
    assert_eq!(expectation(RUST_EXIT_STATUS).outcome, Expected::Exit(3));
}

#[test]
fn the_musl_program_loads_and_gets_its_phdr() {
    let plan = load_plan(C_NULL_DEREF).unwrap();
    assert!(plan.segments().len() >= 3, "{:?}", plan.segments());
    assert!(plan.segments().iter().any(|s| s.perms.write && !s.perms.execute));
    assert_eq!(expectation(C_NULL_DEREF).to_string(), "killed #PF read not-present at 0x0");
    let mut buf = [0u8; 1024];
    let spec = StackSpec {
        args: &["c_null_deref"],
        env: &[],
        plan: &plan,
        random: [1; 16],
        extra_aux: &[],
    };
    let image = build(&mut buf, STACK_TOP, &spec).unwrap();
    let words: Vec<u64> =
        image.bytes.chunks(8).map(|c| u64::from_le_bytes(c.try_into().unwrap())).collect();
    // argc, argv[0], NULL, NULL (no environment), then the auxv pairs.
    let aux = |key| words[4..].chunks(2).find(|pair| pair[0] == key).map(|pair| pair[1]);
    let phdr = plan.program_headers.unwrap();
    assert_eq!(aux(AT_PHDR), Some(phdr.vaddr));
    assert_eq!(aux(AT_PHNUM), Some(phdr.count));
    // musl finds its TLS and the rest through AT_PHDR: the table must be in a loaded segment.
    assert!(plan.segment_at(phdr.vaddr).is_some());
}

#[test]
fn every_truncation_is_rejected_without_panic() {
    for f in [RUST_EXIT_STATUS, C_NULL_DEREF] {
        for len in (0..f.len()).step_by(37) {
            assert!(
                load_plan(&f[..len]).is_err(),
                "accepted a file cut to {len} of {} bytes",
                f.len()
            );
        }
    }
}

#[test]
fn edited_segments_are_rejected_by_name() {
    for f in [RUST_EXIT_STATUS, C_NULL_DEREF] {
        let loads = load_headers(f);
        let (first, second) = (loads[0], loads[1]);

        let mut overlapping = f.to_vec();
        let base = u64_at(f, first + P_VADDR);
        set_u64(&mut overlapping, second + P_VADDR, base + (u64_at(f, second + P_VADDR) & 0xfff));
        assert!(
            matches!(load_plan(&overlapping), Err(ElfError::Overlap { .. })),
            "{:?}",
            load_plan(&overlapping)
        );

        let mut kernel = f.to_vec();
        set_u64(
            &mut kernel,
            second + P_VADDR,
            0xffff_8000_0000_0000 + (u64_at(f, second + P_VADDR) & 0xfff),
        );
        assert!(matches!(
            load_plan(&kernel),
            Err(ElfError::Segment { problem: SegmentProblem::OutsideUserSpace { .. }, .. })
        ));

        let mut huge = f.to_vec();
        set_u64(&mut huge, second + P_MEMSZ, 1 << 40);
        assert!(matches!(
            load_plan(&huge),
            Err(ElfError::Segment { problem: SegmentProblem::TooLarge { .. }, .. })
        ));

        let mut bad_entry = f.to_vec();
        set_u64(&mut bad_entry, 24, 0x10);
        assert_eq!(load_plan(&bad_entry), Err(ElfError::EntryNotExecutable { entry: 0x10 }));
    }
}

#[test]
fn scrambled_headers_never_panic() {
    // A fixed pseudo-random walk over the ELF and program headers: every result is Ok or a
    // named error, never a panic or an out-of-bounds slice.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for f in [RUST_EXIT_STATUS, C_NULL_DEREF] {
        let header_end = (u64_at(f, 32) as usize + 56 * usize::from(u16_at(f, 56))).min(f.len());
        for _ in 0..3000 {
            let mut m = f.to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let at = (state as usize >> 8) % header_end;
                m[at] = state as u8;
            }
            if let Ok(plan) = load_plan(&m) {
                for s in plan.segments() {
                    let _ = s.file_bytes(&m);
                    let _ = s.spec().backing().page_contents(&m, s.vaddr);
                }
            }
            let _ = find_note(&m, note::NAME, u64::from(note::TYPE_EXPECT));
        }
    }
}

#[test]
fn an_archive_of_real_programs_runs_the_good_ones() {
    let mut broken = C_NULL_DEREF.to_vec();
    let second = load_headers(&broken)[1];
    set_u64(&mut broken, second + P_MEMSZ, 1 << 40);
    let bytes = pack(&[
        ("exit_status", RUST_EXIT_STATUS),
        ("broken", &broken),
        ("c_null_deref", C_NULL_DEREF),
    ])
    .unwrap();
    let archive = Archive::open(&bytes).unwrap();
    let results: Vec<_> = programs(&archive).collect();
    assert_eq!(results[0].as_ref().unwrap().expectation.outcome, Expected::Exit(3));
    let rejected = results[1].as_ref().unwrap_err();
    assert_eq!(rejected.name(), "broken");
    assert!(rejected.to_string().contains("memory size 0x10000000000 is above"), "{rejected}");
    let c = results[2].as_ref().unwrap();
    assert!(c.entry.is_page_aligned());
    assert_eq!(c.file(), C_NULL_DEREF);
}

#[test]
fn scrambled_archives_never_panic() {
    let bytes = pack(&[("exit_status", RUST_EXIT_STATUS), ("c_null_deref", C_NULL_DEREF)]).unwrap();
    let headers: Vec<usize> = Archive::open(&bytes)
        .unwrap()
        .entries()
        .map(|e| e.unwrap().offset - 512)
        .chain([0, 512])
        .collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..4000 {
        let mut m = bytes.clone();
        for _ in 0..2 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let header = headers[(state >> 40) as usize % headers.len()];
            m[header + (state as usize >> 16) % 512] = state as u8;
        }
        if round % 3 == 0 {
            m.truncate((state as usize >> 20) % m.len());
        }
        if let Ok(archive) = Archive::open(&m) {
            for program in programs(&archive) {
                let _ = program.map(|p| p.plan);
            }
        }
        let salvaged = Archive::open_salvaging(&mut m);
        if let Some(archive) = salvaged.archive {
            assert!(archive.entries().count() <= 2);
        }
    }
}
