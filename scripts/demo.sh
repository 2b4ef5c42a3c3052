#!/usr/bin/env bash
# drfs demo: two sites on this machine. The replica site runs `drfs serve`, the
# primary site mounts drfs over a directory of VM disks and replicates it
# continuously over HTTPS with mutual TLS. A qcow2 disk is created on the mount
# and written with QEMU's own I/O tool; we watch the replica catch up, sync,
# prove the replica's disk equals the primary's and list the recovery points.
#
#   scripts/demo.sh                      build bin/drfs and run
#   DRFS=/path/to/drfs scripts/demo.sh   use that binary (no build)
#   DEMO_DIR=/some/dir                   parent of the scratch dir (default /var/tmp)
#   DEMO_KEEP=1                          keep the scratch dir
#
# Exits 0 only if every check passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

if [[ -t 1 ]]; then
	step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
	step() { printf '\n==> %s\n' "$*"; }
fi
die() { echo "demo: FAILED: $*" >&2; exit 1; }
run() {
	local a out=
	for a in "$@"; do
		[[ $a =~ [[:space:]] ]] && a="'$a'"
		out+="${out:+ }$a"
	done
	printf '$ %s\n' "$out"
	"$@"
}

for c in qemu-img qemu-io mountpoint python3 cmp; do
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
# Primary site: the real disks live in primary/vms (the volume is named after
# it), drfs keeps its journal in primary/state and serves primary/mnt.
# Replica site: replica/ holds volume vms in replica/vms/data.
mkdir -p "$D/primary/vms" "$D/primary/state" "$D/primary/mnt" "$D/replica"
SERVE_PID="" MOUNT_PID=""

# stop PID NAME: SIGTERM and wait (30 s); prints the exit status, returns it.
stop() {
	local pid=$1 name=$2 rc=0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		echo "demo: $name (pid $pid) did not stop 30 s after SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" || rc=$?
	echo "$name exited with status $rc"
	return $rc
}

cleanup() {
	local rc=$?
	if [[ -n $MOUNT_PID ]]; then stop "$MOUNT_PID" "drfs mount" >/dev/null 2>&1 || true; fi
	if mountpoint -q "$D/primary/mnt" 2>/dev/null; then
		umount -l "$D/primary/mnt" 2>/dev/null || fusermount3 -uz "$D/primary/mnt" 2>/dev/null || true
	fi
	if [[ -n $SERVE_PID ]]; then stop "$SERVE_PID" "drfs serve" >/dev/null 2>&1 || true; fi
	if ((rc != 0)); then
		for f in "$D/primary.log" "$D/replica.log"; do
			[[ -s $f ]] && { echo "--- $f (last 20 lines) ---" >&2; tail -n 20 "$f" >&2; }
		done
	fi
	if [[ ${DEMO_KEEP:-0} == 1 ]]; then
		echo "demo: kept $D"
	elif ! mountpoint -q "$D/primary/mnt" 2>/dev/null; then
		rm -rf "$D"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$D"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)

# wait_line LOG LINE PID WHAT: wait (60 s) for LINE on a line of its own in LOG.
wait_line() {
	for _ in $(seq 600); do
		grep -qx "$2" "$1" && return 0
		kill -0 "$3" 2>/dev/null || { wait "$3" || true; die "$4 exited: $(tail -n 5 "$1")"; }
		sleep 0.1
	done
	die "$4 not ready after 60 s: $(tail -n 5 "$1")"
}

# progress: one line with the primary's and the replica's view of replication.
progress() {
	local p r
	p=$("$DRFS" status --state primary/state --json)
	r=$("$DRFS" status --dir replica --json)
	python3 -c '
import json, sys
p, r = json.loads(sys.argv[1]), json.loads(sys.argv[2])
r = r[0] if r else {}
print("  primary: %-11s journal seq %5d  acked seq %5d  lag %6.3fs  pending %8.1f KiB   |   replica: applied seq %5s  consistent %s" % (
    p.get("replication_state"), p.get("journal_seq", 0), p.get("acked_seq", 0), p.get("lag_seconds", 0),
    p.get("pending_bytes", 0) / 1024, r.get("applied_seq", "-"), r.get("consistent", "-")))
' "$p" "$r"
}
field() { "$DRFS" status --state primary/state --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# caught_up: the replica has acknowledged everything journaled so far.
caught_up() {
	"$DRFS" status --state primary/state --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if d["replication_state"] == "replicating" and d["acked_seq"] >= d["journal_seq"] and d["pending_bytes"] == 0 else 1)'
}

step "create certificates for both sites (a CA, a primary and a replica certificate)"
run "$DRFS" certs --out certs
run ls certs

step "replica site: drfs serve on 127.0.0.1:$PORT (HTTPS, client certificates required)"
printf '$ %s serve --dir replica --listen 127.0.0.1:%s --certs certs &\n' "$DRFS" "$PORT"
"$DRFS" serve --dir replica --listen "127.0.0.1:$PORT" --certs certs >replica.log 2>&1 &
SERVE_PID=$!
wait_line replica.log serving "$SERVE_PID" "drfs serve"
echo "replica site is serving (pid $SERVE_PID)"

step "primary site: mount drfs over primary/vms, replicating continuously"
printf '$ %s mount --source primary/vms --state primary/state --certs certs \\\n      --replica https://127.0.0.1:%s --interval continuous primary/mnt &\n' "$DRFS" "$PORT"
"$DRFS" mount --source primary/vms --state primary/state --certs certs \
	--replica "https://127.0.0.1:$PORT" --interval continuous primary/mnt >primary.log 2>&1 &
MOUNT_PID=$!
wait_line primary.log mounted "$MOUNT_PID" "drfs mount"
mountpoint -q primary/mnt || die "primary/mnt is not a mount point"
run grep " $D/primary/mnt " /proc/mounts
for _ in $(seq 300); do [[ $(field replication_state) == replicating ]] && break; sleep 0.1; done
run "$DRFS" status --state primary/state

step "create a qcow2 VM disk on the mount"
run qemu-img create -f qcow2 primary/mnt/vm1.qcow2 1G

step "write 256 MiB of 0xab with qemu-io (O_DIRECT, cache=none), watching the replica catch up"
printf "$ qemu-io -f qcow2 -t none -c 'write -P 0xab 0 256M' primary/mnt/vm1.qcow2 &\n"
qemu-io -f qcow2 -t none -c 'write -P 0xab 0 256M' primary/mnt/vm1.qcow2 >qemu-io.log 2>&1 &
QPID=$!
while kill -0 "$QPID" 2>/dev/null; do
	progress
	sleep 0.5
done
wait "$QPID" || die "qemu-io failed: $(cat qemu-io.log)"
cat qemu-io.log
echo "qemu-io is done; the replica keeps catching up:"
for i in $(seq 100); do
	progress
	caught_up && break
	sleep 0.2
done

step "second burst: 64 MiB of 0xcd at 128 MiB and 1 MiB of 0xef at 900 MiB, then flush"
run qemu-io -f qcow2 -t none -c 'write -P 0xcd 128M 64M' -c 'write -P 0xef 900M 1M' -c flush primary/mnt/vm1.qcow2
progress

step "drfs sync: ship everything journaled so far and wait for the replica's acknowledgement"
run "$DRFS" sync --state primary/state
progress
caught_up || die "the replica has not acknowledged everything after drfs sync"

step "status on both sides"
run "$DRFS" status --state primary/state
run "$DRFS" status --dir replica

step "the replica's disk equals the primary's"
run ls -la primary/vms replica/vms/data
run qemu-img compare -f qcow2 -F qcow2 primary/vms/vm1.qcow2 replica/vms/data/vm1.qcow2 ||
	die "qemu-img compare: the replica's disk differs from the primary's"
run cmp primary/vms/vm1.qcow2 replica/vms/data/vm1.qcow2 ||
	die "the replica's file is not byte-identical to the primary's"
echo "byte-identical"
run qemu-img check replica/vms/data/vm1.qcow2 || die "qemu-img check failed on the replica's disk"
run qemu-io -f qcow2 -r -c 'read -P 0xab 0 128M' -c 'read -P 0xcd 128M 64M' -c 'read -P 0xab 192M 64M' \
	-c 'read -P 0xef 900M 1M' -c 'read -P 0 256M 1M' replica/vms/data/vm1.qcow2 >qemu-io-verify.log 2>&1 ||
	die "reading the patterns back from the replica failed: $(cat qemu-io-verify.log)"
cat qemu-io-verify.log
grep -q 'Pattern verification failed' qemu-io-verify.log && die "pattern mismatch on the replica's disk"

step "recovery points on the replica (the seqs the volume can be rolled back to)"
run "$DRFS" points --dir replica --volume vms

step "stop both sites cleanly (SIGTERM)"
pid=$MOUNT_PID
MOUNT_PID=""
stop "$pid" "drfs mount (primary)" || die "drfs mount did not stop cleanly"
mountpoint -q primary/mnt && die "primary/mnt is still mounted after drfs exited"
echo "primary/mnt is unmounted"
pid=$SERVE_PID
SERVE_PID=""
stop "$pid" "drfs serve (replica)" || die "drfs serve did not stop cleanly"
run "$DRFS" status --state primary/state
grep -q 'stopped cleanly' primary.log || die "primary did not report a clean stop"
run qemu-img compare -f qcow2 -F qcow2 primary/vms/vm1.qcow2 replica/vms/data/vm1.qcow2 ||
	die "after stopping, the replica's disk differs from the primary's"

step "demo OK: the replica site holds an identical, consistent copy of the VM disk"
