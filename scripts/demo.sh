#!/usr/bin/env bash
# drfs demo: mount drfs over a directory, put a qcow2 VM disk in it, write
# to it with QEMU's own I/O tool, and watch the journal grow.
#
#   scripts/demo.sh              build bin/drfs and run
#   DRFS=/path/to/drfs scripts/demo.sh   use that binary (no build)
#   DEMO_DIR=/some/dir           parent of the scratch dir (default /var/tmp)
#   DEMO_KEEP=1                  keep the scratch dir
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [[ -t 1 ]]; then
	step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
	step() { printf '\n==> %s\n' "$*"; }
fi
die() { echo "demo: $*" >&2; exit 1; }
run() {
	local a out=
	for a in "$@"; do
		[[ $a =~ [[:space:]] ]] && a="'$a'"
		out+="${out:+ }$a"
	done
	printf '$ %s\n' "$out"
	"$@"
}

for c in qemu-img qemu-io mountpoint; do
	command -v "$c" >/dev/null || die "$c not found (run scripts/deps.sh)"
done

if [[ -n ${DRFS:-} ]]; then
	DRFS=$(realpath "$DRFS")
else
	step "build bin/drfs"
	run go build -o bin/drfs ./cmd/drfs
	DRFS=$PWD/bin/drfs
fi

D=$(mktemp -d "${DEMO_DIR:-/var/tmp}/drfs-demo.XXXXXX")
mkdir -p "$D/src" "$D/state" "$D/mnt"
PID=""

cleanup() {
	local rc=$?
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID" 2>/dev/null || true
		for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
	fi
	if mountpoint -q "$D/mnt" 2>/dev/null; then
		umount -l "$D/mnt" 2>/dev/null || fusermount3 -uz "$D/mnt" 2>/dev/null || true
	fi
	if [[ -n $PID ]] && kill -0 "$PID" 2>/dev/null; then
		kill -KILL "$PID" 2>/dev/null || true
	fi
	if ((rc != 0)) && [[ -s $D/drfs.log ]]; then
		echo "--- drfs log (last 20 lines) ---" >&2
		tail -n 20 "$D/drfs.log" >&2
	fi
	if [[ ${DEMO_KEEP:-0} == 1 ]]; then
		echo "demo: kept $D"
	elif ! mountpoint -q "$D/mnt" 2>/dev/null; then
		rm -rf "$D"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$D"

journal_size() {
	if [[ -d state/journal ]]; then
		run du -sh state/journal
		run ls -la state/journal
	else
		run du -sh state
		run ls -la state
	fi
}

step "mount drfs: source=$D/src state=$D/state mountpoint=$D/mnt"
printf '$ %s mount --source src --state state mnt &\n' "$DRFS"
"$DRFS" mount --source src --state state mnt >drfs.log 2>&1 &
PID=$!
for _ in $(seq 300); do
	mountpoint -q mnt && break
	kill -0 "$PID" 2>/dev/null || { wait "$PID" || true; PID=""; die "drfs mount exited before mounting"; }
	sleep 0.1
done
mountpoint -q mnt || die "mnt not mounted after 30 s"
run grep " $D/mnt " /proc/mounts

step "create a qcow2 VM disk on the mount"
run qemu-img create -f qcow2 mnt/vm1.qcow2 1G

step "first write burst: 64 MiB of 0xab, O_DIRECT (cache=none)"
run qemu-io -f qcow2 -t none -c 'write -P 0xab 0 64M' mnt/vm1.qcow2
journal_size
run "$DRFS" status --state state

step "second write burst: 32 MiB of 0xcd at 32 MiB, then flush"
run qemu-io -f qcow2 -t none -c 'write -P 0xcd 32M 32M' -c flush mnt/vm1.qcow2
journal_size
run "$DRFS" status --state state

step "read back and check the image through the mount"
run qemu-io -f qcow2 -t none -c 'read -P 0xab 0 32M' -c 'read -P 0xcd 32M 32M' -c 'read -P 0 64M 1M' mnt/vm1.qcow2
run qemu-img check mnt/vm1.qcow2
run qemu-img info mnt/vm1.qcow2

step "stop drfs (SIGTERM) and wait"
run kill -TERM "$PID"
rc=0
wait "$PID" || rc=$?
PID=""
echo "drfs exited with status $rc"
if mountpoint -q mnt; then
	die "mnt is still mounted after drfs exited"
fi
echo "mnt is unmounted"
((rc == 0)) || die "drfs mount exited with status $rc"

step "the source directory holds the same, consistent image"
run ls -la src
run qemu-img check src/vm1.qcow2
run qemu-io -f qcow2 -r -c 'read -P 0xab 0 32M' -c 'read -P 0xcd 32M 32M' src/vm1.qcow2

step "demo OK"
