#!/usr/bin/env bash
# Builds every test program and the test archive the kernel reads (docs/abi.md):
#   tests/programs/build.sh <out-dir> [--native]
# Writes <out-dir>/bin/<name> (one static ELF per program) and <out-dir>/programs.tar (the
# archive, in catalogue order, checked with the kernel's own parser). --native also runs every
# program on this Linux host and compares with its expectation.
# Needs: the pinned Rust toolchain (rust-toolchain.toml) and musl-gcc (Debian: musl-tools, which
# this script installs with apt-get when run as root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:?usage: build.sh <out-dir> [--native]}"
native="${2:-}"
mkdir -p "$out/bin"
out="$(cd "$out" && pwd)"

# The run order. A program missing here is appended at the end (and named on stderr).
catalogue=(
  hello c_hello exit_status syscalls unknown_syscall bad_pointers
  demand_dense demand_sparse c_demand shared_text cow_data
  null_read c_null_deref write_text exec_data exec_stack read_kernel write_page_table write_p2m
  mprotect_write munmap_read
  c_shootdown c_shootdown_protect c_concurrent_fault
  mprotect_none_keeps mprotect_none_faults map_fixed_replaces map_fixed_readonly_data map_fixed_readonly_heap
  many_mappings c_malloc_mappings buffer_check_no_alloc
  stack_overflow
  out_of_memory
  invalid_opcode privileged divide_error breakpoint
  infinite_loop
  fpu_dirty fpu_clean c_forged_output c_writev_lengths c_kernel_pointers
  c_int_closed c_int_overflow c_int_0x80 c_far_call_xen c_load_xen_ss
  c_threads_basic c_threads_kill c_threads_exit_group c_threads_main_exit c_threads_watchdog c_threads_spin_exit_group c_threads_kill_sleeper c_threads_nested c_threads_cond_broadcast
)
# Built into OUT/bin and run by --native, but not packed into the archive: they need more memory
# than a default boot gives (each one's header says how to run it; tests/programs.rs does).
large=( munmap_batch )
# Built into bin/ but left out of the archive: programs that only make sense with a short
# test_time, which tests/hostile.rs packs and runs with one.
separate=(c_write_flood c_writev_flood c_sleep_forever c_bad_note_escape c_int_hypercall)
# Built into OUT/bin and run by --native, not packed either: the workloads of `cargo xtask bench`,
# which packs them into an archive of their own (scripts/xtask/src/bench.rs).
bench=( bench_faults bench_text c_bench_threads )

if ! command -v musl-gcc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "build.sh: installing musl-tools (musl-gcc) with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
  else
    echo "build.sh: musl-gcc is missing: install the Debian package musl-tools (apt-get install musl-tools) as root" >&2
    exit 1
  fi
fi

cd "$here"
cargo build --quiet --release -p scenarios --target x86_64-unknown-none
cargo build --quiet --release -p faultline-programs
tool="$here/target/release/faultline-programs"

for bin in scenarios/src/bin/*.rs; do
  name="$(basename "$bin" .rs)"
  cp "target/x86_64-unknown-none/release/$name" "$out/bin/$name"
done
for src in c/*.c; do
  name="c_$(basename "$src" .c)"
  musl-gcc -static -O2 -Wall -Wextra -Werror -o "$out/bin/$name" "$src"
done

files=()
for name in "${catalogue[@]}"; do
  [ -f "$out/bin/$name" ] || { echo "build.sh: catalogue names $name, which was not built" >&2; exit 1; }
  files+=("$out/bin/$name")
done
for path in "$out"/bin/*; do
  name="$(basename "$path")"
  if [[ " ${catalogue[*]} ${large[*]} ${separate[*]} ${bench[*]} " != *" $name "* ]]; then
    echo "build.sh: $name is not in the catalogue order; running it last" >&2
    files+=("$path")
  fi
done

"$tool" pack "$out/programs.tar" "${files[@]}"
if [ "$native" = "--native" ]; then
  for name in "${large[@]}" "${bench[@]}"; do
    [ -f "$out/bin/$name" ] || { echo "build.sh: $name is listed but was not built" >&2; exit 1; }
    files+=("$out/bin/$name")
  done
  "$tool" native "${files[@]}"
fi
