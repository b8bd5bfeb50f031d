/* faultline.h: what a C test program needs from faultline (docs/abi.md).
 *
 * FAULTLINE_EXPECT("...") declares what should happen to the program, once, at file scope:
 *     FAULTLINE_EXPECT("killed #PF read not-present at 0x0");
 * Without it the program is expected to exit with status 0. The text follows the grammar in
 * docs/abi.md; the kernel rejects the program (with the reason) if it does not parse. */
#ifndef FAULTLINE_H
#define FAULTLINE_H

/* The ELF note: name "faultline" (with its NUL, 10 bytes), type 1, the text as descriptor.
 * These numbers are the kernel's (abi/src/note.rs, abi/src/auxv.rs): abi/tests/c_header.rs checks
 * them against the crate, so change them there first. */
#define FAULTLINE_NOTE_NAME "faultline"
#define FAULTLINE_NOTE_NAME_SIZE 10
#define FAULTLINE_NOTE_TYPE_EXPECT 1

#define FAULTLINE_EXPECT(text)                                                                    \
    __attribute__((used, section(".note.faultline"), aligned(4))) static const struct {           \
        unsigned int name_size, desc_size, type;                                                  \
        char name[12];                                                                            \
        char desc[(sizeof(text) + 3) & ~3u];                                                      \
    } faultline_expectation = {FAULTLINE_NOTE_NAME_SIZE, sizeof(text) - 1,                        \
                               FAULTLINE_NOTE_TYPE_EXPECT, FAULTLINE_NOTE_NAME, text}

/* faultline's own auxv entries (read them with getauxval from <sys/auxv.h>); 0 if absent. */
#define AT_FAULTLINE_KERNEL_ADDRESS 0x66610001UL
#define AT_FAULTLINE_PAGE_TABLE 0x66610002UL
#define AT_FAULTLINE_P2M 0x66610003UL

/* faultline's own system call faultline_counters(u64 *out, u64 count) (docs/abi.md): stores up to
 * `count` counters since boot at `out` and returns how many the kernel has. Their indices: */
#define SYS_FAULTLINE_COUNTERS 0x66610001UL
#define FAULTLINE_COUNTER_HYPERCALLS 0
#define FAULTLINE_COUNTER_MMU_UPDATE_CALLS 1
#define FAULTLINE_COUNTER_MMU_UPDATE_ENTRIES 2
#define FAULTLINE_COUNTER_MMUEXT_CALLS 3
#define FAULTLINE_COUNTER_MMUEXT_OPS 4
#define FAULTLINE_COUNTER_UPDATE_VA_MAPPING_CALLS 5
#define FAULTLINE_COUNTER_IRETS 6
#define FAULTLINE_COUNTER_USER_FAULTS 7
#define FAULTLINE_COUNTER_TABLES_BUILT 8
#define FAULTLINE_COUNTER_TLB_SHOOTDOWNS 9
#define FAULTLINE_COUNTER_IPIS_SENT 10

#endif
