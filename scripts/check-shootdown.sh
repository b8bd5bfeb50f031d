#!/usr/bin/env bash
# Removes the TLB shootdown on purpose, in a scratch copy of the tree, and shows that the shootdown
# boot test then fails: a thread that spins in user mode on the other vCPU goes on reading
# (c_shootdown) and writing (c_shootdown_protect) a page through its stale translation after
# munmap / mprotect returned. Also shows that the same test passes on the unmodified tree (issue
# 14, item 6, "Done when").
#
# The mutants, each applied alone to kernel/src/mm/page_table.rs (where every flush an address
# space owes is turned into mmuext ops: PageTables::targets and FlushOps):
#   multi-as-local  the MULTI flushes replaced by the LOCAL ones: `MmuExtOp::TlbFlushMulti(mask)`
#                   -> `MmuExtOp::TlbFlushLocal`, `MmuExtOp::InvlpgMulti(va, mask)` ->
#                   `MmuExtOp::InvlpgLocal(va)` (the flush reaches the caller only);
#   mask-ignored    the holders' mask ignored: `targets` always answers `Targets::Local`, as if
#                   no other vCPU held the address space (no MULTI op is ever sent).
# A site the script cannot find (the code moved) is an error: update the patterns below.
#
# Each run builds the kernel and boots the test of tests/smp.rs that runs c_shootdown,
# c_shootdown_protect and c_concurrent_fault as dom0 with 2 vCPUs (QEMU multi-threaded TCG, where
# each vCPU has its own TLB; docs/XEN-NOTES section 5). Prints a table mutant -> killed /
# SURVIVED / NO-BUILD with the guest's STALE lines as the evidence, and exits non-zero if the
# baseline fails or a mutant survives or does not build.
#
# Usage: scripts/check-shootdown.sh [--list]
# Environment: SHOOTDOWN_MUTANTS_DIR (scratch copy and its target dir; default
# ${TMPDIR:-/tmp}/faultline-shootdown-mutants), SHOOTDOWN_MUTANT_TIMEOUT (seconds per run,
# default 900).
# Time: the first, cold build of the scratch target takes a few minutes on 2 cores; then a
# kernel build and one boot per run (~1 min each).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

list_only=0
while [ $# -gt 0 ]; do
    case "$1" in
        --list) list_only=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-shootdown: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

file=kernel/src/mm/page_table.rs
test_name=a_thread_on_the_other_vcpu_faults_after_munmap_and_mprotect_and_tables_are_built_once_as_dom0
# name <TAB> perl code run on the whole file (it counts its substitutions in $n) <TAB> how many
# substitutions it must make
mutants=(
    'multi-as-local	$n += s/MmuExtOp::TlbFlushMulti\((\w+)\)/{ let _ = $1; MmuExtOp::TlbFlushLocal }/g; $n += s/MmuExtOp::InvlpgMulti\((\w+), (\w+)\)/{ let _ = $2; MmuExtOp::InvlpgLocal($1) }/g;	2'
    'mask-ignored	$n += s/if mask\.without\(caller\)\.is_empty\(\) \{/if { let _ = caller; true } {/g;	1'
)

# Applies perl code $2 to file $1 and checks that it made $3 substitutions.
mutate() {
    local path="$1" code="$2" want="$3" applied
    applied=$(perl -0777 -i -pe "$code"' END { print STDERR $n + 0 }' "$path" 2>&1 >/dev/null)
    if [ "$applied" != "$want" ]; then
        echo "check-shootdown: the mutation made $applied substitutions in $path, not $want: the shootdown code moved; update scripts/check-shootdown.sh" >&2
        return 1
    fi
}

if [ "$list_only" = 1 ]; then
    for m in "${mutants[@]}"; do
        IFS=$'\t' read -r name code want <<<"$m"
        printf '%-16s %s sites in %s: %s\n' "$name" "$want" "$file" "$code"
    done
    exit 0
fi

scratch="${SHOOTDOWN_MUTANTS_DIR:-${TMPDIR:-/tmp}/faultline-shootdown-mutants}"
timeout_s="${SHOOTDOWN_MUTANT_TIMEOUT:-900}"
mkdir -p "$scratch/tree"
find "$scratch/tree" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$scratch/tree" -xf -
cp "$scratch/tree/$file" "$scratch/pristine.rs"
# tar keeps the files' times: a kernel built from a mutant by an earlier run of this script would
# look newer than the copied source and be booted as the baseline.
touch "$scratch/tree/$file"
export CARGO_TARGET_DIR="$scratch/target"

# Runs the boot test; its output in $scratch/<label>.log. Prints passed, failed, or broken (it
# did not run exactly that one test: a renamed test must not pass by running nothing).
run_test() {
    (cd "$scratch/tree" && timeout "$timeout_s" cargo test -q -p faultline-tests --test smp -- \
        --exact "$test_name" >"$scratch/$1.log" 2>&1) || true
    if grep -q '^test result: ok\. 1 passed; 0 failed' "$scratch/$1.log"; then
        echo passed
    elif grep -q '^test result: FAILED\. 0 passed; 1 failed' "$scratch/$1.log"; then
        echo failed
    else
        echo broken
    fi
}
# The guest's STALE lines in a test log (the evidence that the other vCPU kept a translation).
stale_lines() {
    grep -o '# c_shootdown[a-z_]*: [a-z_]*: STALE: .*' "$scratch/$1.log" | sort -u \
        | sed 's/^# [a-z_]*: //; s/: its vCPU kept the old translation$//' || true
}

start=$(date +%s)
results=()
failed=0
echo "check-shootdown: baseline (no mutation), scratch copy in $scratch"
baseline=$(run_test baseline)
if [ "$baseline" = passed ]; then
    results+=("$(printf '%-16s %-9s %s' baseline passed "c_shootdown and c_shootdown_protect faulted on their next access")")
else
    results+=("$(printf '%-16s %-9s %s' baseline "$baseline" "see $scratch/baseline.log")")
    failed=1
fi
echo "${results[-1]}"

for m in "${mutants[@]}"; do
    IFS=$'\t' read -r name code want <<<"$m"
    cp "$scratch/pristine.rs" "$scratch/tree/$file"
    if ! mutate "$scratch/tree/$file" "$code" "$want"; then
        results+=("$(printf '%-16s %-9s %s' "$name" NO-SITE "the pattern did not apply $want times")")
        failed=1
        echo "${results[-1]}"
        continue
    fi
    if ! (cd "$scratch/tree" && cargo build -q --release -p faultline --target x86_64-unknown-none \
        >"$scratch/$name.build.log" 2>&1); then
        verdict=NO-BUILD
        evidence="see $scratch/$name.build.log"
        failed=1
    else
        case "$(run_test "$name")" in
            passed)
                verdict=SURVIVED
                evidence="the boot test passed without the shootdown"
                failed=1 ;;
            failed)
                verdict=killed
                evidence="$(stale_lines "$name" | head -n 2 | paste -sd '|' -)"
                [ -n "$evidence" ] || evidence="failed without a STALE line: see $scratch/$name.log" ;;
            *)
                verdict=BROKEN
                evidence="the test did not run: see $scratch/$name.log"
                failed=1 ;;
        esac
    fi
    cp "$scratch/pristine.rs" "$scratch/tree/$file"
    touch "$scratch/tree/$file"
    results+=("$(printf '%-16s %-9s %s' "$name" "$verdict" "$evidence")")
    echo "${results[-1]}"
done

echo
echo "check-shootdown: ${#mutants[@]} mutants, $(( $(date +%s) - start )) s"
printf '%-16s %-9s %s\n' mutant verdict evidence
printf '%s\n' "${results[@]}" | sed 's/|/\n                           /g'
exit "$failed"
