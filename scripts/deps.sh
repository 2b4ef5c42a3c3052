#!/usr/bin/env bash
# Install what drfs's tests, demo and benchmark need, idempotently.
# Quiet when everything is already present; loud and non-zero on failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "deps.sh: $*" >&2; exit 1; }

# command -> Debian package providing it
declare -A pkg_of=(
	[fusermount3]=fuse3
	[qemu-img]=qemu-utils
	[qemu-io]=qemu-utils
	[fio]=fio
	[mkfs.ext4]=e2fsprogs
	[e2fsck]=e2fsprogs
	[rsync]=rsync
	[losetup]=mount
	[mountpoint]=util-linux
	[cmake]=cmake # LazyFS (../shared/tools/lazyfs) is built by the e2e tests
	[g++]=g++
)

# header -> Debian package (libraries with no command)
declare -A pkg_of_header=(
	[/usr/include/fuse3/fuse.h]=libfuse3-dev
)

# /sbin and /usr/sbin are not always on a non-login PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

missing=()
for cmd in "${!pkg_of[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}")
done
for h in "${!pkg_of_header[@]}"; do
	[[ -e $h ]] || missing+=("${pkg_of_header[$h]}")
done

if ((${#missing[@]})); then
	# unique, sorted
	mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
	if [[ $(id -u) -ne 0 ]]; then
		die "missing packages: ${missing[*]} (run as root or: sudo apt-get install -y ${missing[*]})"
	fi
	command -v apt-get >/dev/null 2>&1 || die "missing packages: ${missing[*]} and no apt-get to install them"
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	echo "deps.sh: installing ${missing[*]}" >&2
	if ! apt-get update >"$log" 2>&1; then
		cat "$log" >&2
		die "apt-get update failed"
	fi
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
		cat "$log" >&2
		die "apt-get install ${missing[*]} failed"
	fi
	for cmd in "${!pkg_of[@]}"; do
		command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after installing ${pkg_of[$cmd]}"
	done
	for h in "${!pkg_of_header[@]}"; do
		[[ -e $h ]] || die "$h still missing after installing ${pkg_of_header[$h]}"
	done
fi

# Loop devices (for ext4-on-loop tests). Best effort: containers often
# have no modprobe or no module tree.
if [[ ! -e /dev/loop-control ]]; then
	if [[ $(id -u) -eq 0 ]] && command -v modprobe >/dev/null 2>&1; then
		modprobe loop >/dev/null 2>&1 || true
	fi
	if [[ ! -e /dev/loop-control ]]; then
		echo "deps.sh: warning: /dev/loop-control missing; loop-device tests will skip" >&2
	fi
fi

# FUSE device.
if [[ ! -e /dev/fuse ]]; then
	if [[ $(id -u) -eq 0 ]] && command -v modprobe >/dev/null 2>&1; then
		modprobe fuse >/dev/null 2>&1 || true
	fi
	[[ -e /dev/fuse ]] || echo "deps.sh: warning: /dev/fuse missing; FUSE tests will skip" >&2
fi

command -v go >/dev/null 2>&1 || die "go not found on PATH"
if ! out=$(go mod download 2>&1); then
	echo "$out" >&2
	die "go mod download failed"
fi
