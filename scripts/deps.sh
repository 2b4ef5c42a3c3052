#!/usr/bin/env bash
# Install what drfs's tests, demo and benchmark need, idempotently.
# Quiet when everything is already present; loud and non-zero on failure.
#
#   scripts/deps.sh        everything (make test: the tests run the demo too)
#   scripts/deps.sh demo   only what make demo needs
#
# Both fetch the demo guest's kernel (see guest_kernel below).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "deps.sh: $*" >&2; exit 1; }

profile=${1:-all}
[[ $profile == all || $profile == demo ]] || die "usage: scripts/deps.sh [demo]"

# command -> Debian package providing it: the demo's set
declare -A pkg_of=(
	[fusermount3]=fuse3
	[qemu-img]=qemu-utils
	[qemu-io]=qemu-utils
	[mountpoint]=util-linux
	[python3]=python3
	[qemu-system-x86_64]=qemu-system-x86 # the demo's guest (TCG, no KVM needed)
	[busybox]=busybox-static             # the guest's userland, static
	[cpio]=cpio                          # to pack the guest's initramfs
	[dpkg-deb]=dpkg
	[depmod]=kmod # to index the guest kernel's modules
)
# the tests' set
declare -A test_pkg_of=(
	[fio]=fio
	[mkfs.ext4]=e2fsprogs
	[e2fsck]=e2fsprogs
	[rsync]=rsync
	[losetup]=mount
	[cmake]=cmake # LazyFS (../shared/tools/lazyfs) is built by the e2e tests
	[g++]=g++
	[promtool]=prometheus # go test ./deploy/ checks the alert rules
	[systemd-analyze]=systemd # go test ./deploy/ verifies the systemd units
)
if [[ $profile == all ]]; then
	for cmd in "${!test_pkg_of[@]}"; do pkg_of[$cmd]=${test_pkg_of[$cmd]}; done
fi

# header -> Debian package (libraries with no command)
declare -A pkg_of_header=()
if [[ $profile == all ]]; then
	pkg_of_header[/usr/include/fuse3/fuse.h]=libfuse3-dev
fi

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

# The demo guest's kernel: Debian's linux-image-amd64, unpacked (not installed: no
# initramfs or bootloader hooks run, /boot is not touched) into $kernel_dir with the
# virtio modules the guest needs to see its disk, in load order (modules.load).
kernel_dir=/var/cache/drfs-demo/guest-kernel
guest_kernel() {
	[[ -s $kernel_dir/vmlinuz && -e $kernel_dir/modules.load ]] && return 0
	[[ $(id -u) -eq 0 ]] || die "the demo guest's kernel is missing in $kernel_dir (run as root to fetch it)"
	command -v apt-get >/dev/null 2>&1 || die "no apt-get to fetch the demo guest's kernel (linux-image-amd64)"
	echo "deps.sh: fetching the demo guest's kernel (linux-image-amd64) into $kernel_dir" >&2
	local pkg tmp log
	pkg_name() { apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 ~ /Depends:/ && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'; }
	pkg=$(pkg_name)
	if [[ -z $pkg ]]; then
		apt-get update >/dev/null 2>&1 || die "apt-get update failed"
		pkg=$(pkg_name)
	fi
	[[ -n $pkg ]] || die "cannot resolve linux-image-amd64 to a kernel package (not Debian amd64?)"
	tmp=$(mktemp -d)
	log=$tmp/log
	if ! (cd "$tmp" && apt-get download "$pkg") >"$log" 2>&1; then
		cat "$log" >&2
		rm -rf "$tmp"
		die "apt-get download $pkg failed"
	fi
	local deb=("$tmp"/*.deb)
	# Only the kernel, the module index and the virtio modules (the package is ~400 MiB unpacked).
	dpkg-deb --fsys-tarfile "${deb[0]}" | tar -t |
		grep -E '^\./(usr/)?(boot/vmlinuz-|lib/modules/[^/]+/(modules\.(builtin|builtin\.modinfo|order)$|kernel/drivers/(virtio/[^/]+|block/virtio_blk[^/]*)$))' >"$tmp/list" || true
	mkdir -p "$tmp/x"
	dpkg-deb --fsys-tarfile "${deb[0]}" | tar -x -C "$tmp/x" -T "$tmp/list" || { rm -rf "$tmp"; die "unpacking $pkg failed"; }
	local vmlinuz moddir
	vmlinuz=$(compgen -G "$tmp/x/boot/vmlinuz-*" || compgen -G "$tmp/x/usr/boot/vmlinuz-*" || true)
	moddir=$(compgen -G "$tmp/x/lib/modules/*" || compgen -G "$tmp/x/usr/lib/modules/*" || true)
	vmlinuz=${vmlinuz%%$'\n'*} moddir=${moddir%%$'\n'*}
	[[ -n $vmlinuz && -n $moddir ]] || { rm -rf "$tmp"; die "$pkg holds no kernel or no modules"; }
	# The package ships no modules.dep (its postinst makes it): index what was unpacked.
	depmod -b "${moddir%/lib/modules/*}" "$(basename "$moddir")" || { rm -rf "$tmp"; die "depmod failed on $pkg"; }
	rm -rf "$kernel_dir.new"
	mkdir -p "$kernel_dir.new/modules"
	cp "$vmlinuz" "$kernel_dir.new/vmlinuz"
	# Load order: each module's dependencies (modules.dep lists them nearest first)
	# before it; modules built into the kernel are skipped.
	local want=(virtio_pci virtio_blk) order=() m d f
	declare -A seen=()
	add() {
		local path=$1 name
		name=$(basename "${path%%.ko*}")
		[[ -n ${seen[$name]:-} ]] && return 0
		seen[$name]=1
		local deps
		deps=$(awk -F': *' -v p="$path" '$1 == p { print $2 }' "$moddir/modules.dep")
		local rev=() x
		for x in $deps; do rev=("$x" "${rev[@]}"); done
		for x in "${rev[@]}"; do add "$x"; done
		order+=("$path")
	}
	for m in "${want[@]}"; do
		if grep -qE "/$m\.ko" "$moddir/modules.builtin" 2>/dev/null; then continue; fi
		d=$(grep -oE "^[^:]*/$m\.ko[^:]*" "$moddir/modules.dep" | head -n 1)
		[[ -n $d ]] || { rm -rf "$tmp"; die "$pkg has no module $m"; }
		add "$d"
	done
	for d in "${order[@]}"; do
		f=$(basename "${d%%.ko*}").ko
		case $d in
		*.ko.xz) xz -dc "$moddir/$d" >"$kernel_dir.new/modules/$f" ;;
		*.ko.zst) zstd -qdc "$moddir/$d" >"$kernel_dir.new/modules/$f" ;;
		*) cp "$moddir/$d" "$kernel_dir.new/modules/$f" ;;
		esac
		echo "$f" >>"$kernel_dir.new/modules.load"
	done
	touch "$kernel_dir.new/modules.load"
	echo "$pkg" >"$kernel_dir.new/package"
	rm -rf "$tmp" "$kernel_dir"
	mv "$kernel_dir.new" "$kernel_dir"
}
guest_kernel

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
