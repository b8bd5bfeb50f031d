# Sourced by build.sh and payload.sh: `xtask ARGS...` runs the runner (scripts/xtask), whose
# `cpio` command is the repository's one cpio writer. When the runner itself started the script,
# $FAULTLINE_XTASK names its binary; otherwise cargo builds and runs it (paths stay relative to
# the caller's folder).
xtask() {
	if [ -n "${FAULTLINE_XTASK:-}" ]; then
		"$FAULTLINE_XTASK" "$@"
	else
		"${CARGO:-cargo}" run --quiet --manifest-path "$(dirname "${BASH_SOURCE[0]}")/../../Cargo.toml" \
			--package xtask -- "$@"
	fi
}
