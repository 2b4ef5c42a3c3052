#!/usr/bin/env bash
# drfs demo: two sites on this machine, hq and dr, and one VM whose disk lives on
# drfs. The VM is a real QEMU guest (TCG, no KVM needed: Debian's kernel and a
# busybox initramfs) that appends numbered, synced records to its disk and checks
# at every boot that the records it finds are a gapless run. The story: replicate
# hq -> dr; planned failover to dr (zero loss, measured pause); the VM runs on dr;
# reverse and fail back, counting the bytes that travel each way; then hq dies
# mid-write (kill -9), dr is promoted to the latest point, the disk checks clean,
# the VM boots from it and carries on, and hq comes back fenced.
#
#   make demo                            install what is missing, build, run this
#   DRFS=/path/to/drfs scripts/demo.sh   use that binary (no build)
#   DEMO_DIR=/some/dir                   parent of the scratch dir (default /var/tmp)
#   DEMO_KEEP=1                          keep the scratch dir
#
# Needs what `scripts/deps.sh demo` installs. Exits 0 only if every check passed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
T0=$(date +%s.%N)

if [[ -t 1 ]]; then
	step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
	why() { printf '\033[2m    %s\033[0m\n' "$*"; }
else
	step() { printf '\n==> %s\n' "$*"; }
	why() { printf '    %s\n' "$*"; }
fi
die() { echo "demo: FAILED: $*" >&2; exit 1; }
# show CMD...: print a command as typed (relative paths, words with spaces quoted).
show() {
	local a out=
	for a in "$@"; do
		[[ $a == "$DRFS" ]] && a=drfs
		[[ $a =~ [[:space:]] ]] && a="'$a'"
		out+="${out:+ }$a"
	done
	printf '$ %s\n' "$out"
}
run() { show "$@"; "$@"; }
# runh N CMD...: run, show the first N lines of its output (all of it if it fails).
runh() {
	local n=$1 out
	shift
	show "$@"
	out=$("$@" 2>&1) || { echo "$out"; die "$1 $2 failed"; }
	head -n "$n" <<<"$out" | sed 's/; on the replica site run:$//'
}

KERNEL_DIR=/var/cache/drfs-demo/guest-kernel
for c in qemu-img qemu-system-x86_64 busybox cpio mountpoint python3; do
	command -v "$c" >/dev/null || die "$c not found (run scripts/deps.sh demo)"
done
[[ -s $KERNEL_DIR/vmlinuz ]] || die "no guest kernel in $KERNEL_DIR (run scripts/deps.sh demo)"

if [[ -n ${DRFS:-} ]]; then
	DRFS=$(realpath "$DRFS")
else
	go build -o bin/drfs ./cmd/drfs
	DRFS=$PWD/bin/drfs
fi

D=$(mktemp -d "${DEMO_DIR:-/var/tmp}/drfs-demo.XXXXXX")
mkdir -p "$D/hq/vms" "$D/hq/state" "$D/hq/mnt" "$D/dr/mnt" "$D/logs"
declare -A PIDS=() # pid -> what, for everything started in the background
NLOG=0

# stop PID: SIGTERM and wait (30 s); returns the exit status.
stop() {
	local pid=$1 rc=0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		echo "demo: ${PIDS[$pid]} (pid $pid) did not stop 30 s after SIGTERM; killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	# (with stderr closed: bash reports a job killed by a signal there)
	exec 9>&2 2>/dev/null
	wait "$pid" || rc=$?
	exec 2>&9 9>&-
	unset "PIDS[$pid]"
	return $rc
}
# unmount DIR: detach DIR if anything is mounted there (also a FUSE mount whose daemon died).
unmount() {
	local p
	p=$(realpath -m "$1")
	if grep -q " $p fuse" /proc/mounts; then
		umount -l "$p" 2>/dev/null || fusermount3 -uz "$p" 2>/dev/null || true
	fi
}

cleanup() {
	local rc=$? pid
	set +e
	for pid in "${!PIDS[@]}"; do [[ ${PIDS[$pid]} == guest* ]] && kill -KILL "$pid" 2>/dev/null; done
	for pid in "${!PIDS[@]}"; do [[ ${PIDS[$pid]} == daemon* ]] && stop "$pid" >/dev/null 2>&1; done
	for pid in "${!PIDS[@]}"; do stop "$pid" >/dev/null 2>&1; done
	unmount "$D/hq/mnt"
	unmount "$D/hq/build-mnt"
	unmount "$D/dr/mnt"
	if ((rc != 0)); then
		for f in "$D"/logs/*; do
			[[ -s $f ]] && { echo "--- $f (last 15 lines) ---" >&2; tail -n 15 "$f" >&2; }
		done
	fi
	if [[ ${DEMO_KEEP:-0} == 1 ]]; then
		echo "demo: kept $D"
	elif ! mountpoint -q "$D/hq/mnt" 2>/dev/null && ! mountpoint -q "$D/dr/mnt" 2>/dev/null; then
		rm -rf "$D"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd "$D"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
DR_PORT=$(free_port) HQ_PORT=$(free_port)

# wait_line LOG LINE PID WHAT: wait (60 s) for LINE on a line of its own in LOG.
wait_line() {
	for _ in $(seq 600); do
		grep -qx "$2" "$1" && return 0
		kill -0 "$3" 2>/dev/null || { wait "$3" || true; die "$4 exited: $(tail -n 5 "$1")"; }
		sleep 0.1
	done
	die "$4 not ready after 60 s: $(tail -n 5 "$1")"
}

# status STATE FIELD: one field of the primary's drfs status --json.
status() { "$DRFS" status --state "$1" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$2"; }
# wait_state STATE WANT: wait (60 s) for replication_state WANT.
wait_state() {
	local s=
	for _ in $(seq 600); do
		s=$(status "$1" replication_state 2>/dev/null || true)
		[[ $s == "$2" ]] && return 0
		sleep 0.1
	done
	die "replication_state of $1 is ${s:-unknown} after 60 s, want $2"
}

# conf FILE: write stdin to FILE and show it (paths relative to the scratch dir).
conf() {
	cat >"$1"
	echo "\$ cat $1"
	sed "s|$D/||g; s/^/    /" "$1"
}

# serve SITE CONFIG: the replica server of SITE, configured by CONFIG.
serve() {
	show "$DRFS" serve --config "$2" \&
	local log=logs/$1-serve-$((++NLOG)).log
	"$DRFS" serve --config "$2" >"$log" 2>&1 &
	PIDS[$!]="serve on $1"
	eval "${1^^}_SERVE=$!"
	wait_line "$log" serving $! "drfs serve on $1"
}

# wait_running CONFIG PID WHAT LOG: wait (60 s) until every volume of the daemon is mounted.
wait_running() {
	for _ in $(seq 600); do
		"$DRFS" status --config "$1" --json 2>/dev/null | python3 -c '
import json, sys
v = json.load(sys.stdin)["volumes"]
sys.exit(0 if v and all(x["state"] == "running" for x in v) else 1)' && return 0
		kill -0 "$2" 2>/dev/null || { wait "$2" || true; die "$3 exited: $(tail -n 5 "$4")"; }
		sleep 0.1
	done
	die "$3: not every volume is mounted after 60 s: $(tail -n 5 "$4")"
}

# daemon SITE CONFIG: drfs daemon on SITE, every volume of CONFIG; waits until all are mounted.
daemon() {
	show "$DRFS" daemon --config "$2" \&
	local log=logs/$1-daemon-$((++NLOG)).log
	"$DRFS" daemon --config "$2" >"$log" 2>&1 &
	PIDS[$!]="daemon on $1"
	eval "${1^^}_DAEMON=$!"
	wait_running "$2" $! "drfs daemon on $1" "$log"
}

# reload CONFIG: drfs reload, showing what changed.
reload() { show "$DRFS" reload --config "$1"; "$DRFS" reload --config "$1" | sed 's/^/    /' || die "drfs reload failed"; }

# wire PORT: bytes the daemon with metrics on PORT sent for volume vms since it started.
wire() {
	python3 - "$1" <<-'EOF'
		import sys, urllib.request
		want = ("drfs_shipper_wire_bytes_total", "drfs_shipper_resync_bytes_total")
		tot = 0.0
		for line in urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=10).read().decode().splitlines():
		    f = line.split()
		    if len(f) == 2 and f[0].split("{")[0] in want and 'volume="vms"' in f[0]:
		        tot += float(f[1])
		print(int(tot))
	EOF
}
kib() { awk -v b="$1" 'BEGIN { printf "%.1f KiB", b / 1024 }'; }

# The guest: Debian's kernel, a busybox initramfs whose /init is scripts/demo-guest-init.sh.
mkdir -p guest/root/bin guest/root/modules guest/root/proc guest/root/sys guest/root/dev
cp "$(command -v busybox)" guest/root/bin/busybox
for a in sh mount insmod cat cut dd printf tr awk sleep sync poweroff; do ln -s busybox "guest/root/bin/$a"; done
cp "$KERNEL_DIR"/modules/*.ko guest/root/modules/ 2>/dev/null || true
cp "$KERNEL_DIR/modules.load" guest/root/modules.load
install -m 0755 "$REPO/scripts/demo-guest-init.sh" guest/root/init
(cd guest/root && find . | cpio -o -H newc --quiet | gzip -1 >../initrd.gz)
BIOS=()
[[ -e /usr/share/qemu/qboot.rom ]] && BIOS=(-bios /usr/share/qemu/qboot.rom) # boots faster than SeaBIOS

# guest NAME DISK EXPECT COUNT BOOT SITE: boot the VM from DISK in the background;
# its serial console goes to logs/guest-NAME.log. werror=stop: an I/O error pauses
# the VM instead of reaching the guest (what the README recommends for failover).
guest() {
	local log=logs/guest-$1.log
	echo "boot the VM on $6 from $2 (serial console: $log)"
	qemu-system-x86_64 -accel tcg "${BIOS[@]}" -m 192 -display none -vga none -nic none -no-reboot \
		-serial "file:$log" -kernel "$KERNEL_DIR/vmlinuz" -initrd guest/initrd.gz \
		-append "console=ttyS0 quiet panic=-1 drfs.expect=$3 drfs.count=$4 drfs.boot=$5 drfs.site=$6" \
		-drive "file=$2,format=qcow2,if=virtio,cache=none,werror=stop,rerror=stop" \
		</dev/null >"logs/qemu-$1.log" 2>&1 &
	PIDS[$!]="guest $1"
	GUEST=$! GUEST_LOG=$log
}
synced() { { grep -a -o '^synced [0-9]*' "$GUEST_LOG" 2>/dev/null || echo "synced 0"; } | tail -n 1 | cut -d' ' -f2; }
# guest_check: wait (90 s) for the boot-time check; print its result, fail unless ok.
guest_check() {
	for _ in $(seq 900); do
		grep -aq 'guest: check ok\|CHECK FAILED' "$GUEST_LOG" 2>/dev/null && break
		kill -0 "$GUEST" 2>/dev/null || break
		sleep 0.1
	done
	grep -a '^guest: ' "$GUEST_LOG" 2>/dev/null | sed 's/^/    /' || true
	grep -aq 'guest: check ok' "$GUEST_LOG" || die "the guest's check failed: $(tail -n 5 "$GUEST_LOG")"
	FOUND=$(grep -a -o 'check ok: records 1\.\.[0-9]*' "$GUEST_LOG" | grep -o '[0-9]*$')
}
# wait_synced N: wait (60 s) until the guest has synced record N.
wait_synced() {
	for _ in $(seq 600); do
		(($(synced) >= $1)) && return 0
		kill -0 "$GUEST" 2>/dev/null || die "the guest stopped at record $(synced): $(tail -n 5 "$GUEST_LOG")"
		sleep 0.1
	done
	die "the guest synced only $(synced) records in 60 s, want $1"
}
# guest_done: wait (60 s) for the guest to power off.
guest_done() {
	for _ in $(seq 600); do kill -0 "$GUEST" 2>/dev/null || break; sleep 0.1; done
	stop "$GUEST" || die "QEMU exited with status $?: $(tail -n 5 "logs/qemu-${PIDS[$GUEST]#guest }.log" 2>/dev/null)"
	grep -a '^guest: appended' "$GUEST_LOG" | sed 's/^/    /'
}
stop_guest() { stop "$GUEST" || true; }

step "certificates: dr keeps the CA; hq makes its own key and sends a request"
why "each site has its own identity; the CA key never leaves dr, and no secret travels"
runh 1 "$DRFS" certs init --out dr/certs --site dr
runh 1 "$DRFS" certs request --out hq/certs --site hq
runh 1 "$DRFS" certs sign --ca dr/certs --site hq --out dr/for-hq hq/certs/hq.csr
run cp dr/for-hq/ca.pem dr/for-hq/primary.pem dr/for-hq/replica.pem hq/certs/

step "replicate: dr serves replicas; hq runs every volume of the host from one file"
why "each volume is one consistency group; vms (the VM) ships continuously to dr, build hourly to a disk nearby"
conf dr/serve.yaml <<EOF
dir: $D/dr/replica
listen: 127.0.0.1:$DR_PORT
certs: $D/dr/certs
keep-points: 48            # recovery points kept (keep-for would also protect by age)
volumes:
  - name: vms
    allow: hq              # only site hq's primary may ship vms here
EOF
serve dr dr/serve.yaml
mkdir -p hq/build hq/build-state hq/build-mnt hq/nearby
HQ_METRICS=$(free_port) DR_METRICS=$(free_port)
hq_conf() { # hq_conf [VMS-ENTRY]: hq's configuration, with the entry of vms if given
	conf hq/drfs.yaml <<-EOF
		socket: $D/hq/drfs.sock
		certs: $D/hq/certs
		metrics:
		  listen: 127.0.0.1:$HQ_METRICS
		sites:
		  dr:
		    url: https://127.0.0.1:$DR_PORT
		  nearby:
		    url: file://$D/hq/nearby
		volumes:
		  - name: build
		    source: $D/hq/build
		    state: $D/hq/build-state
		    mountpoint: $D/hq/build-mnt
		    replica: nearby
		    rpo: 1h
		    tier: 5
		$1
	EOF
}
VMS_HQ="  - name: vms
    source: $D/hq/vms
    state: $D/hq/state
    mountpoint: $D/hq/mnt
    replica: dr
    interval: continuous
    tier: 1"
hq_conf "$VMS_HQ"
run "$DRFS" daemon --config hq/drfs.yaml --check
daemon hq hq/drfs.yaml
wait_state hq/state replicating
run qemu-img create -q -f qcow2 hq/mnt/vm1.qcow2 64M
echo "build output" >hq/build-mnt/artifact.txt
guest hq1 hq/mnt/vm1.qcow2 0 0 1 hq
guest_check
wait_synced 150
run "$DRFS" status --config hq/drfs.yaml

step "planned failover hq -> dr, while the VM writes"
why "zero loss: guest writes pause, the last log ships, dr promotes at exactly that seq, hq turns read-only"
runh 2 "$DRFS" failover --planned --state hq/state
prev=-1
while (($(synced) != prev)); do prev=$(synced); sleep 1; done
N1=$(synced)
echo "the VM on hq synced records 1..$N1; its next write got EROFS and QEMU paused it (werror=stop)"
stop_guest
echo "hq: $(status hq/state replication_state)"
why "vms leaves hq's configuration; build, untouched, never notices"
hq_conf ""
reload hq/drfs.yaml
stop "$DR_SERVE" || die "drfs serve on dr did not stop cleanly"

step "reverse: hq becomes dr's replica, without a copy"
why "hq's source directory becomes a replica directory; only what changed since the common seq will travel"
runh 1 "$DRFS" reverse --state hq/state --dir hq/replica
conf hq/serve.yaml <<EOF
dir: $D/hq/replica
listen: 127.0.0.1:$HQ_PORT
certs: $D/hq/certs
volumes:
  - name: vms
    allow: dr
EOF
serve hq hq/serve.yaml
dr_conf() { # dr_conf DATA-DIR [SITE-URL]: dr running vms from its promoted replica
	local repl=""
	[[ -n ${2:-} ]] && repl="sites:
  hq:
    url: $2
"
	conf dr/drfs.yaml <<-EOF
		socket: $D/dr/drfs.sock
		certs: $D/dr/certs
		metrics:
		  listen: 127.0.0.1:$DR_METRICS
		${repl}volumes:
		  - name: vms
		    source: $D/$1/vms/data
		    state: $D/$1/vms/primary
		    mountpoint: $D/dr/mnt
		${2:+    replica: hq}
		${2:+    interval: continuous}
	EOF
}
dr_conf dr/replica "https://127.0.0.1:$HQ_PORT"
daemon dr dr/drfs.yaml
DR_STATE=dr/replica/vms/primary

step "the VM runs on dr: every record it synced on hq must be there"
guest dr1 dr/mnt/vm1.qcow2 "$N1" 300 2 dr
guest_check
guest_done
N2=$(synced)
run "$DRFS" sync --state "$DR_STATE" >/dev/null
b=$(wire "$DR_METRICS")
echo "dr -> hq: $(kib "$b") on the wire (compressed) for the $((N2 - N1)) records written on dr: the 64 MiB disk was not copied"

step "fail back dr -> hq: the same commands, the other way"
why "a planned failover to hq, then dr is reversed into hq's replica and vms comes back into hq's configuration"
runh 2 "$DRFS" failover --planned --state "$DR_STATE"
stop "$DR_DAEMON" || die "drfs daemon on dr did not stop cleanly"
stop "$HQ_SERVE" || die "drfs serve on hq did not stop cleanly"
why "dr/replica still holds the old replica's state: the reversed volume goes to a new directory"
runh 1 "$DRFS" reverse --state dr/replica/vms/primary --dir dr/replica2
sed -i "s|$D/dr/replica\$|$D/dr/replica2|" dr/serve.yaml
serve dr dr/serve.yaml
hq_conf "  - name: vms
    source: $D/hq/replica/vms/data
    state: $D/hq/replica/vms/primary
    mountpoint: $D/hq/mnt
    replica: dr
    interval: continuous
    tier: 1"
reload hq/drfs.yaml
wait_running hq/drfs.yaml "$HQ_DAEMON" "drfs daemon on hq" /dev/null
HQ_STATE=hq/replica/vms/primary
wait_state "$HQ_STATE" replicating
guest hq2 hq/mnt/vm1.qcow2 "$N2" 0 3 hq
guest_check
wait_synced $((N2 + 150))
R=$(synced)
run "$DRFS" sync --state "$HQ_STATE" >/dev/null
b=$(wire "$HQ_METRICS")
echo "hq -> dr: $(kib "$b") on the wire for the ~$((R - N2)) records written on hq since the failback"

step "the bad day: hq dies mid-write"
why "kill -9 of drfs and of the VM: no last log, no goodbye; dr only has what it acknowledged"
wait_synced $((R + 100))
show kill -9 "$HQ_DAEMON" "$GUEST"
{ # (stderr closed: bash reports jobs killed by a signal there)
	kill -KILL "$HQ_DAEMON" "$GUEST"
	stop "$HQ_DAEMON" || true
	stop "$GUEST" || true
} 2>/dev/null
N3=$(synced)
unmount hq/mnt
unmount hq/build-mnt
echo "the VM on hq had synced records 1..$N3"

step "dr: promote the latest recovery point, forced"
why "--force: hq cannot hand over; if it comes back it is fenced"
show "$DRFS" points --dir dr/replica2 --volume vms
"$DRFS" points --dir dr/replica2 --volume vms | sed -n '1p;$p'
stop "$DR_SERVE" || die "drfs serve on dr did not stop cleanly"
runh 1 "$DRFS" promote --dir dr/replica2 --volume vms --force

step "the promoted disk checks clean"
run qemu-img check dr/replica2/vms/data/vm1.qcow2
dr_conf dr/replica2
daemon dr dr/drfs.yaml
guest dr2 dr/mnt/vm1.qcow2 "$R" 100 4 dr
guest_check
guest_done
((FOUND <= N3 + 1)) || die "dr holds records hq never wrote"
if ((FOUND < N3)); then
	echo "records $((FOUND + 1))..$N3, synced on hq in its last moments, had not reached dr: the replication lag at the crash"
else
	echo "no record the VM synced on hq was lost: replication had kept up to the moment it died"
fi

step "hq comes back: its drfs replays its journals, ships to dr, and is refused"
why "two primaries are detected, never merged: hq keeps serving its guests but stops shipping vms"
serve dr dr/serve.yaml
daemon hq hq/drfs.yaml
wait_state "$HQ_STATE" fenced
run "$DRFS" status --state "$HQ_STATE"
run "$DRFS" status --config hq/drfs.yaml

step "demo OK in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
