#!/usr/bin/env bash
# apt-get / apt-cache for another Debian release than the host's, with apt's own
# sources list, lists and cache under the faultline cache: the host's apt lists
# are left alone.
#
#   scripts/dom0/apt-suite.sh <suite> <cache-dir> update
#   scripts/dom0/apt-suite.sh <suite> <cache-dir> apt-get <args>...
#   scripts/dom0/apt-suite.sh <suite> <cache-dir> apt-cache <args>...
#   scripts/dom0/apt-suite.sh <suite> <cache-dir> mirror     # print the archive URIs
#
# e.g. `apt-suite.sh trixie ~/.cache/faultline apt-get download xen-utils-4.20=4.20.4+...`.
# For the host's own release (VERSION_CODENAME of /etc/os-release) the command
# runs as it is, on the host's lists. For another one, the sources list
# (<cache-dir>/apt/<suite>/sources.list) names the same archive hosts as the
# host's own sources (/etc/apt/sources.list and sources.list.d, one-line or
# deb822): the URI listed for the host's release serves <suite>, <suite>-updates
# and the one listed for <release>-security serves <suite>-security. The first
# command on an empty lists folder runs `apt-get update` for it (under a lock,
# so parallel callers update once). Exit status: the command's; 1 on a set-up error.
# Environment (for tests): APT_SUITE_ETC, the folder of the host's sources
# (default /etc/apt); APT_SUITE_HOST, the host's release (default: os-release's).
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 <suite> <cache-dir> update|mirror|apt-get|apt-cache [args...]" >&2; exit 1; }
suite=$1 cache=$2 command=$3
shift 3
die() { echo "apt-suite: error: $*" >&2; exit 1; }

host=${APT_SUITE_HOST:-$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")}
etc=${APT_SUITE_ETC:-/etc/apt}
[ -n "$host" ] || die "/etc/os-release names no VERSION_CODENAME (Debian 12 is expected)"
sandbox=()
[ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root) # root cannot hand a /root folder to _apt

# The archive URIs the host's sources give for its release and its security suite.
host_uris() {
	local files=() f
	for f in "$etc/sources.list" "$etc"/sources.list.d/*.list "$etc"/sources.list.d/*.sources; do
		[ -r "$f" ] && files+=("$f")
	done
	[ ${#files[@]} -gt 0 ] || return 0
	awk -v rel="$host" '
		function take(uri, suite) {
			sub(/\/+$/, "", uri)
			if (suite == rel && main == "") main = uri
			if (suite == rel "-security" && security == "") security = uri
		}
		FILENAME ~ /\.list$/ {
			sub(/#.*/, "")
			if ($1 != "deb") next
			i = 2
			if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
			take($i, $(i + 1))
			next
		}
		# deb822 stanzas: Types, URIs, Suites; a blank line ends one.
		function flush(   n, u, s, k, j) {
			if (types ~ /(^| )deb( |$)/) {
				n = split(uris, u, " "); split(suites, s, " ")
				for (k = 1; k <= n; k++) for (j in s) take(u[k], s[j])
			}
			types = uris = suites = ""
		}
		FNR == 1 { flush() }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^Types:/ { types = $0; sub(/^Types:[ \t]*/, "", types) }
		/^URIs:/ { uris = $0; sub(/^URIs:[ \t]*/, "", uris) }
		/^Suites:/ { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
		END { flush(); print main; print security }
	' "${files[@]}"
}

if [ "$suite" = "$host" ]; then
	case $command in
		update) exec apt-get "${sandbox[@]}" update ;;
		apt-get | apt-cache) exec "$command" "$@" ;;
	esac
fi

{ read -r main_uri; read -r security_uri; } < <(host_uris; echo; echo)
[ -n "$main_uri" ] || die "the host's apt sources ($etc/sources.list, $etc/sources.list.d) list no archive for $host (deb <uri> $host main): cannot tell which mirror serves $suite"
# Without a security entry on the host, the same host's -security archive (Debian's layout).
[ -n "$security_uri" ] || security_uri=$main_uri-security
if [ "$command" = mirror ]; then
	echo "$main_uri"
	echo "$security_uri"
	exit 0
fi
# Debian 12's keyring holds Debian 13's archive keys too.
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "$keyring missing: apt-get install debian-archive-keyring"

dir=$cache/apt/$suite
mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
sources="deb [signed-by=$keyring] $main_uri $suite main
deb [signed-by=$keyring] $main_uri $suite-updates main
deb [signed-by=$keyring] $security_uri $suite-security main"
if [ "$(cat "$dir/sources.list" 2>/dev/null)" != "$sources" ]; then
	echo "$sources" >"$dir/sources.list.tmp.$$"
	mv "$dir/sources.list.tmp.$$" "$dir/sources.list"
	rm -f "$dir/lists/"*_Packages* # lists of another mirror: fetch anew
fi
opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=- \
	-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null \
	-o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false "${sandbox[@]}")

# apt's own lock on the lists folder fails at once when taken: parallel callers wait on ours.
exec 9>"$dir/.update.lock"
update() {
	echo "apt-suite: apt-get update for $suite ($main_uri, $security_uri)" >&2
	apt-get "${opts[@]}" update >&2
}
have_lists() { compgen -G "$dir/lists/*_Packages*" >/dev/null; }

case $command in
	update) flock 9 && update ;;
	apt-get | apt-cache)
		if ! have_lists; then
			flock 9
			have_lists || update
		fi
		exec 9>&-
		exec "$command" "${opts[@]}" "$@"
		;;
	*) die "unknown command $command (update, mirror, apt-get, apt-cache)" ;;
esac
