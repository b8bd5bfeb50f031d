# newc cpio writer in bash (sourced by payload.sh and test-guest.sh), so the
# host needs no cpio tool. Entries get mtime 0, uid/gid 0, nlink 1.
#   cpio_entry NAME MODE [FILE]   a directory (no FILE) or a file with FILE's bytes
#   cpio_symlink NAME TARGET
#   cpio_chardev NAME MAJOR MINOR
#   cpio_tree DIR                 DIR's contents (dirs, files, symlinks), sorted
#   cpio_trailer
#   cpio_pad4 N                   zeros from offset N up to a multiple of 4
cpio_ino=1
cpio_pad4() { local n=$(( (4 - $1 % 4) % 4 )); [ $n -eq 0 ] || head -c $n /dev/zero; }
cpio_header() { # NAME MODE SIZE [RDEV-MAJOR RDEV-MINOR]
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		$cpio_ino $(($2)) 0 0 1 0 "$3" 0 0 "${4:-0}" "${5:-0}" $(( ${#1} + 1 )) 0 "$1"
	cpio_pad4 $(( 110 + ${#1} + 1 ))
	cpio_ino=$((cpio_ino + 1))
}
cpio_entry() {
	local size=0
	[ -z "${3:-}" ] || size=$(stat -L -c %s "$3")
	cpio_header "$1" "$2" "$size"
	if [ -n "${3:-}" ]; then cat "$3"; cpio_pad4 "$size"; fi
}
cpio_symlink() {
	cpio_header "$1" 0120777 ${#2}
	printf '%s' "$2"
	cpio_pad4 ${#2}
}
cpio_chardev() { cpio_header "$1" 0020600 0 "$2" "$3"; }
cpio_trailer() { cpio_ino=0; cpio_header TRAILER!!! 0 0; }
cpio_tree() {
	local path mode
	(cd "$1" && find . -mindepth 1 | LC_ALL=C sort) | while IFS= read -r path; do
		path=${path#./}
		mode=$((0x$(stat -c %f "$1/$path")))
		case $((mode & 0170000)) in
			$((0040000))) cpio_entry "$path" $mode ;;
			$((0100000))) cpio_entry "$path" $mode "$1/$path" ;;
			$((0120000))) cpio_symlink "$path" "$(readlink "$1/$path")" ;;
			*) echo "cpio_tree: $1/$path: unsupported file type" >&2; return 1 ;;
		esac
	done
}
