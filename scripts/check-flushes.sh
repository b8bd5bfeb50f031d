#!/usr/bin/env bash
# Removes each TLB flush in kernel/src/mm in turn and runs the mm host tests: every removal must
# make at least one test fail, or a test is missing (issue 9, "Done when").
#
# A flush site is found mechanically, in every kernel/src/mm/*.rs except the model of Xen and the
# seam's definitions (model.rs, backend.rs) and the body of `impl TlbFlush` (the token itself):
#   - each call `.flush_tlb(ARGS)`               -> `.flush_tlb(TlbFlush::none())`
#   - each obligation `TlbFlush::page(ARGS)`,
#     `TlbFlush::range(ARGS)`, `TlbFlush::everything()` -> `TlbFlush::none()`
#   - each flag `UvmFlush::InvlpgLocal` / `UvmFlush::TlbFlushLocal` -> `UvmFlush::None`
#   - each reach `.of(ROOT)` / `.of_any_user()` on an obligation -> removed: the flush stays on
#     the calling vCPU (LOCAL ops), the other vCPUs that hold the space are not shot down (SMP)
# A direct `MmuExtOp::{InvlpgLocal,TlbFlushLocal,InvlpgMulti,TlbFlushMulti}` outside the token
# cannot be removed mechanically: the script reports it and fails (route it through a `TlbFlush`).
#
# Each mutation is applied alone to a scratch copy of the tree and built once; the tests run with
# their own CARGO_TARGET_DIR, so the main build is not disturbed. Prints a table
# site -> killed / SURVIVED and exits non-zero if any mutation survived or did not build.
#
# A survivor that is understood (an equivalent mutant, or one the one-vCPU model cannot see) may be
# listed, with its reason, in scripts/check-flushes.allow: it still runs and shows as "allowed";
# only survivors not listed fail the check.
#
# Usage: scripts/check-flushes.sh [--list] [--sample N] [--seed S]
#   --list      print the sites and exit
#   --sample N  run N sites chosen at random (the seed is printed; --seed S repeats a choice)
# Environment: FLUSH_MUTANTS_DIR (scratch copy and its target dir; default
# ${TMPDIR:-/tmp}/faultline-flush-mutants), FLUSH_MUTANT_TIMEOUT (seconds per run, default 600).
# Time: a build and a test run per site, ~13 s each on 2 cores once the scratch target is warm
# (21 sites: ~4 min), plus ~1 min for the first, cold build of the scratch target.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

list_only=0
sample=0
seed="${RANDOM}${RANDOM}"
while [ $# -gt 0 ]; do
    case "$1" in
        --list) list_only=1 ;;
        --sample) sample="$2"; shift ;;
        --seed) seed="$2"; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "check-flushes: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

# One perl program does both jobs: `sites FILE...` prints FILE<TAB>LINE<TAB>NTH<TAB>KIND<TAB>TEXT
# per site; `mutate FILE LINE NTH` rewrites the NTH site of that line in place.
read -r -d '' sites_pl <<'PERL' || true
use strict; use warnings;
my $args = qr/(\((?:[^()]++|(?-1))*\))/;
my @kinds = (
    [ 'flush_tlb call', qr/\.flush_tlb$args/,                  sub { '.flush_tlb(crate::mm::page_table::TlbFlush::none())' } ],
    [ 'TlbFlush::page', qr/\bTlbFlush::page$args/,             sub { 'crate::mm::page_table::TlbFlush::none()' } ],
    [ 'TlbFlush::range', qr/\bTlbFlush::range$args/,           sub { 'crate::mm::page_table::TlbFlush::none()' } ],
    [ 'TlbFlush::everything', qr/\bTlbFlush::everything\(\)/,  sub { 'crate::mm::page_table::TlbFlush::none()' } ],
    [ 'UvmFlush flag', qr/\bUvmFlush::(?:InvlpgLocal|TlbFlushLocal)\b/, sub { 'UvmFlush::None' } ],
    [ 'TlbFlush reach', qr/\.of(?:_any_user)?$args/,            sub { '' } ],
);
my $direct = qr/\bMmuExtOp::(?:InvlpgLocal|TlbFlushLocal|InvlpgMulti|TlbFlushMulti)\b/;
sub each_site {
    my ($file, $cb) = @_;
    open(my $fh, '<', $file) or die "$file: $!";
    my ($line_no, $in_token, $depth) = (0, 0, 0);
    while (my $line = <$fh>) {
        $line_no++;
        if (!$in_token && $line =~ /^impl TlbFlush \{/) { $in_token = 1; next; }
        if ($in_token) { $in_token = 0 if $line =~ /^\}/; next; }
        next if $line =~ m{^\s*//};
        next if $line =~ /\bfn flush_tlb\b/;
        my $code = $line; $code =~ s{//.*$}{};
        my @found;
        for my $k (@kinds) {
            my ($name, $re) = @$k;
            while ($code =~ /$re/g) { push @found, [ $-[0], $name, $re ]; }
        }
        if ($code =~ $direct) { push @found, [ $-[0], 'DIRECT MmuExtOp flush', undef ]; }
        # Nested sites (a page() inside a flush_tlb() call) are separate mutations; order them
        # by column so that NTH is stable.
        @found = sort { $a->[0] <=> $b->[0] || $a->[1] cmp $b->[1] } @found;
        my $nth = 0;
        for my $f (@found) { $cb->($file, $line_no, $nth++, $f->[1], $line, $f->[0]); }
    }
}
my $mode = shift @ARGV;
if ($mode eq 'sites') {
    for my $file (@ARGV) {
        each_site($file, sub {
            my ($f, $n, $nth, $kind, $text) = @_;
            $text =~ s/^\s+|\s+$//g;
            print join("\t", $f, $n, $nth, $kind, $text), "\n";
        });
    }
} elsif ($mode eq 'mutate') {
    my ($file, $want_line, $want_nth) = @ARGV;
    my ($col, $kind);
    each_site($file, sub {
        my ($f, $n, $nth, $k, $text, $c) = @_;
        ($col, $kind) = ($c, $k) if $n == $want_line && $nth == $want_nth;
    });
    die "no site $file:$want_line#$want_nth\n" unless defined $col;
    my ($re, $with) = map { ($_->[1], $_->[2]) } grep { $_->[0] eq $kind } @kinds;
    die "site $file:$want_line#$want_nth ($kind) cannot be removed mechanically\n" unless $re;
    open(my $in, '<', $file) or die; my @lines = <$in>; close $in;
    my $line = $lines[$want_line - 1];
    pos($line) = $col;
    $line =~ s/\G$re/$with->()/e or die "mutation did not apply at $file:$want_line\n";
    $lines[$want_line - 1] = $line;
    open(my $out, '>', $file) or die; print $out @lines; close $out;
} else { die "mode?\n" }
PERL

scratch="${FLUSH_MUTANTS_DIR:-${TMPDIR:-/tmp}/faultline-flush-mutants}"
timeout_s="${FLUSH_MUTANT_TIMEOUT:-600}"
# Two copies of the working tree (uncommitted edits included), without build outputs: `pristine`
# is what the sites are found in and restored from, `tree` is built with one mutation at a time.
mkdir -p "$scratch/pristine" "$scratch/tree"
find "$scratch/pristine" "$scratch/tree" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$scratch/pristine" -xf -
tar -C "$scratch/pristine" -cf - . | tar -C "$scratch/tree" -xf -

cd "$scratch/pristine"
mapfile -t files < <(ls kernel/src/mm/*.rs | grep -v -e '/model\.rs$' -e '/backend\.rs$')
mapfile -t sites < <(perl -e "$sites_pl" sites "${files[@]}")
if [ "${#sites[@]}" -eq 0 ]; then
    echo "check-flushes: no flush sites found in kernel/src/mm" >&2
    exit 1
fi
if [ "$list_only" = 1 ]; then
    printf '%s\n' "${sites[@]}" | awk -F'\t' '{ printf "%s:%s#%s  %-22s %s\n", $1, $2, $3, $4, $5 }'
    exit 0
fi
direct=$(printf '%s\n' "${sites[@]}" | awk -F'\t' '$4 ~ /^DIRECT/' || true)
if [ -n "$direct" ]; then
    echo "check-flushes: flush ops written directly (return a TlbFlush instead):" >&2
    echo "$direct" | awk -F'\t' '{ printf "  %s:%s  %s\n", $1, $2, $5 }' >&2
    exit 1
fi

chosen=("${sites[@]}")
if [ "$sample" -gt 0 ] && [ "$sample" -lt "${#sites[@]}" ]; then
    echo "check-flushes: sampling $sample of ${#sites[@]} sites (--seed $seed)"
    mapfile -t chosen < <(printf '%s\n' "${sites[@]}" \
        | shuf -n "$sample" --random-source=<(yes "$seed"))
fi

export CARGO_TARGET_DIR="$scratch/target"
run_tests() {
    (cd "$scratch/tree" && timeout "$timeout_s" cargo test -q -p faultline --lib mm:: \
        >"$scratch/last.log" 2>&1)
}

start=$(date +%s)
echo "check-flushes: baseline (no mutation)"
if ! run_tests; then
    echo "check-flushes: the mm tests fail without any mutation; see $scratch/last.log" >&2
    tail -n 30 "$scratch/last.log" >&2
    exit 1
fi

allow_file="$root/scripts/check-flushes.allow"
is_allowed() { # file nth text
    [ -f "$allow_file" ] || return 1
    awk -F'\t' -v f="$1" -v n="#$2" -v t="$3" \
        '!/^#/ && $1 == f && $2 == n && $3 == t { found = 1 } END { exit !found }' "$allow_file"
}

survived=0
allowed=0
broken=0
results=()
for site in "${chosen[@]}"; do
    IFS=$'\t' read -r file line nth kind text <<<"$site"
    cp "$scratch/pristine/$file" "$scratch/tree/$file"
    perl -e "$sites_pl" mutate "$scratch/tree/$file" "$line" "$nth"
    if ! (cd "$scratch/tree" && timeout "$timeout_s" cargo build -q -p faultline --lib --tests \
        >"$scratch/last.log" 2>&1); then
        verdict="NO-BUILD"
        broken=$((broken + 1))
    elif run_tests; then
        if is_allowed "$file" "$nth" "$text"; then
            verdict="allowed"
            allowed=$((allowed + 1))
        else
            verdict="SURVIVED"
            survived=$((survived + 1))
        fi
    else
        verdict="killed"
    fi
    cp "$scratch/pristine/$file" "$scratch/tree/$file"
    touch "$scratch/tree/$file"
    results+=("$(printf '%-8s  %s:%s#%s  %-22s %s' "$verdict" "$file" "$line" "$nth" "$kind" "$text")")
    echo "${results[-1]}"
done

echo
echo "check-flushes: ${#chosen[@]} of ${#sites[@]} sites, $survived survived, $allowed allowed survivors, $broken did not build, $(( $(date +%s) - start )) s"
printf '%s\n' "${results[@]}" | sort -k2,2V
[ "$survived" -eq 0 ] && [ "$broken" -eq 0 ]
