#!/usr/bin/env bash
# drfs replication benchmark (design.md, "Performance method": shipping).
#
# One run, two processes on loopback talking HTTPS with mutual TLS
# (`drfs serve --certs` = replica site, `drfs mount --certs --replica` = primary):
#
#  a) one cycle vs rsync: a random IMAGE_SIZE raw image is created in the source
#     directory before mounting, replicated (initial sync) and synced; then 1%
#     of it is changed through the mount (random 4 KiB O_DIRECT writes of fresh
#     random data) and ONE `drfs sync` cycle ships it (mounted with
#     --interval 1h so nothing ships by itself). Measured: encoded bytes
#     (drfs_shipper_wire_bytes_total delta), TCP payload bytes both ways on the
#     replication connection (ss; includes TLS and HTTP), wall time of
#     `drfs sync`, CPU of both drfs processes (/proc/PID/stat utime+stime).
#     The same change is then shipped by `rsync --inplace --no-whole-file
#     --stats` from the changed image to a copy of the image as it was before
#     the change; bytes are rsync's "Total bytes sent" + "received" (what its
#     sender and receiver processes exchange, even locally), CPU and wall time
#     from /usr/bin/time.
#  b) compression: an EXT4_SIZE image on the mount, attached to a loop device,
#     mkfs.ext4, a real directory tree (TREE) copied in, unmounted; `drfs sync`;
#     raw change-log bytes / encoded bytes.
#  c) lag: remounted with --interval continuous; fio random 64 KiB O_DIRECT
#     writes at LAG_RATE for LAG_RUNTIME s; `drfs status --json` lag_seconds
#     sampled every 100 ms; p50/p99/max.
#
# The replica's copy is compared with the source byte for byte after a) and c).
# Results go to bench/results/DATE-replication[-N].md (machine described) and a
# summary table is printed.
#
# Environment:
#   REPL_IMAGE_SIZE   size of the raw image in MiB (default 2048)
#   REPL_CHANGE_IOS   4 KiB writes for the 1% change (default 5243)
#   REPL_EXT4_SIZE    ext4 image size (default 512M)
#   REPL_TREE         directory tree copied into the ext4 image (default: GOROOT)
#   REPL_LAG_RUNTIME  seconds of steady writes for c) (default 30)
#   REPL_LAG_RATE     fio --rate for c) (default 20m)
#   REPL_OUT          results file (default bench/results/DATE-replication.md)
#   BENCH_DIR         parent of the scratch dir (default /var/tmp; not tmpfs)
#   BENCH_NO_BUILD    if 1, use the existing bin/drfs
#   BENCH_DRFS        drfs binary to use instead of building bin/drfs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

IMAGE_MIB=${REPL_IMAGE_SIZE:-2048}
CHANGE_IOS=${REPL_CHANGE_IOS:-5243}
EXT4_SIZE=${REPL_EXT4_SIZE:-512M}
TREE=${REPL_TREE:-$(go env GOROOT 2>/dev/null || true)}
LAG_RUNTIME=${REPL_LAG_RUNTIME:-30}
LAG_RATE=${REPL_LAG_RATE:-20m}
PARENT=${BENCH_DIR:-/var/tmp}

die() { echo "replication: $*" >&2; exit 1; }
log() { echo "replication: $*" >&2; }

[[ $(id -u) -eq 0 ]] || die "must run as root (FUSE mount with allow_other, loop devices, mount)"
for c in fio rsync python3 curl ss losetup mkfs.ext4 mountpoint cmp /usr/bin/time; do
	command -v "$c" >/dev/null || die "$c not found (run scripts/deps.sh)"
done
[[ -d $TREE ]] || die "REPL_TREE '$TREE' is not a directory"

DRFS=${BENCH_DRFS:-$ROOT/bin/drfs}
if [[ ${BENCH_NO_BUILD:-0} != 1 && -z ${BENCH_DRFS:-} ]]; then
	log "building bin/drfs"
	go build -o bin/drfs ./cmd/drfs || { rm -f bin/drfs; die "building drfs failed"; }
fi
[[ -x $DRFS ]] || die "$DRFS missing"

# ---- scratch and cleanup --------------------------------------------------
mkdir -p "$PARENT"
S=$(mktemp -d "$PARENT/drfs-repl.XXXXXX")
[[ $(df -T "$S" | awk 'NR==2 {print $2}') == tmpfs ]] && log "warning: $S is on tmpfs"
VOL=vm # volume name = base name of the source dir
SRC=$S/$VOL STATE=$S/state MNT=$S/mnt REP=$S/replica CERTS=$S/certs
mkdir -p "$SRC" "$STATE" "$MNT" "$REP"

SERVE_PID="" MOUNT_PID="" LOOPDEV="" EXT4MNT=$S/ext4 SAMPLER_PID=""

stop_pid() { # PID: SIGTERM, wait up to 30 s, then SIGKILL
	local pid=$1 i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "warning: pid $pid did not exit after SIGTERM; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

stop_mount() {
	local pid=$MOUNT_PID rc=0
	MOUNT_PID=""
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	local i
	for i in $(seq 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "warning: drfs mount $pid did not exit 30 s after SIGTERM; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	if mountpoint -q "$MNT" 2>/dev/null; then
		log "warning: $MNT still mounted after drfs exited; umount -l"
		umount -l "$MNT" 2>/dev/null || true
	fi
	return $rc
}

cleanup() {
	local rc=$?
	[[ -n $SAMPLER_PID ]] && { kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; }
	mountpoint -q "$EXT4MNT" 2>/dev/null && { umount "$EXT4MNT" 2>/dev/null || umount -l "$EXT4MNT" 2>/dev/null || true; }
	[[ -n $LOOPDEV ]] && { losetup -d "$LOOPDEV" 2>/dev/null || true; }
	stop_mount || true
	stop_pid "$SERVE_PID"
	if ((rc != 0)); then
		for f in "$S/mount.log" "$S/serve.log"; do
			[[ -s $f ]] && { echo "--- $f (last 15 lines) ---" >&2; tail -n 15 "$f" >&2; }
		done
	fi
	if awk -v s="$S/" 'index($2, s) == 1 {found=1} END {exit !found}' /proc/mounts; then
		log "warning: mounts remain under $S; not removing it"
	elif [[ ${REPL_KEEP:-0} == 1 ]]; then
		log "kept $S"
	else
		rm -rf "$S"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- helpers --------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
MPORT=$(free_port)
while [[ $MPORT == "$PORT" ]]; do MPORT=$(free_port); done

# cpu_ticks PID...: sum of utime+stime in clock ticks (fields 14, 15 of /proc/PID/stat;
# the comm field "(drfs)" has no spaces).
cpu_ticks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
TCK=$(getconf CLK_TCK)

# metric NAME: value of a metric on the primary's --metrics endpoint, summed over its series
# (one per volume: the mount's).
metric() {
	curl -fsS "http://127.0.0.1:$MPORT/metrics" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {sum += $2; found=1} END {if (found) printf "%.0f\n", sum; exit !found}'
}

# tcp_snapshot: one line per established TCP connection to the replica port,
# "local peer bytes_received", from both ends (both are on this machine).
tcp_snapshot() {
	ss -tinH state established "( sport = :$PORT or dport = :$PORT )" | python3 -c '
import re, sys
lines = sys.stdin.read().splitlines()
cur = None
for l in lines:
    if not l.startswith((" ", "\t")):
        f = l.split()
        cur = (f[-2], f[-1])
        continue
    m = re.search(r"bytes_received:(\d+)", l)
    print(cur[0], cur[1], m.group(1) if m else 0)
'
}

# tcp_delta PORT BEFORE AFTER: prints "to_replica from_replica", or "n/a n/a"
# when a connection of BEFORE is gone (its bytes would be lost).
tcp_delta() {
	python3 - "$1" "$2" "$3" <<'PY'
import sys
port = sys.argv[1]
def load(p):
    d = {}
    for l in open(p):
        a, b, n = l.split()
        d[(a, b)] = int(n)
    return d
b, a = load(sys.argv[2]), load(sys.argv[3])
if any(k not in a for k in b):
    print("n/a n/a"); sys.exit()
to_rep = from_rep = 0
for k, n in a.items():
    d = n - b.get(k, 0)
    if k[0].endswith(":" + port):   # replica's end: received from the primary
        to_rep += d
    else:                           # primary's end: received from the replica
        from_rep += d
print(to_rep, from_rep)
PY
}

# start_mount INTERVAL: start the primary and wait until it is mounted.
start_mount() {
	"$DRFS" mount --source "$SRC" --state "$STATE" --certs "$CERTS" \
		--replica "https://127.0.0.1:$PORT" --interval "$1" --metrics "127.0.0.1:$MPORT" \
		"$MNT" >>"$S/mount.log" 2>&1 &
	MOUNT_PID=$!
	local i
	for i in $(seq 600); do
		grep -q '^mounted$' "$S/mount.log" && mountpoint -q "$MNT" && return 0
		kill -0 "$MOUNT_PID" 2>/dev/null || { MOUNT_PID=""; die "drfs mount exited before mounting"; }
		sleep 0.1
	done
	die "drfs mount did not mount within 60 s"
}

status_field() { "$DRFS" status --state "$STATE" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1]))' "$1"; }

# wait_replicating: wait until the initial sync / resync is done.
wait_replicating() {
	local i st
	for i in $(seq 1800); do
		st=$(status_field replication_state 2>/dev/null || true)
		[[ $st == replicating ]] && return 0
		[[ $st == fenced ]] && die "replication is fenced: $("$DRFS" status --state "$STATE")"
		sleep 0.2
	done
	die "not replicating after 6 min: $("$DRFS" status --state "$STATE")"
}

now() { date +%s.%N; }
fsub() { python3 -c 'import sys; print("%.3f" % (float(sys.argv[1]) - float(sys.argv[2])))' "$1" "$2"; }
fdiv() { python3 -c 'import sys
try: print("%.1f" % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception: print("n/a")' "$1" "$2"; }
mib() { python3 -c 'import sys
try: print("%.2f MiB" % (float(sys.argv[1]) / 1048576))
except Exception: print("n/a")' "$1"; }
secs() { python3 -c 'import sys; print("%.2f" % (int(sys.argv[1]) / int(sys.argv[2])))' "$1" "$TCK"; }

declare -A R # results

# ---- a) one cycle vs rsync ------------------------------------------------
log "a) creating a ${IMAGE_MIB} MiB random raw image in the source dir"
head -c "$((IMAGE_MIB << 20))" /dev/urandom >"$SRC/disk.img"
log "a) keeping the pre-change copy for rsync"
cp "$SRC/disk.img" "$S/rsync-replica.img"

"$DRFS" certs --out "$CERTS" >/dev/null
"$DRFS" serve --dir "$REP" --listen "127.0.0.1:$PORT" --certs "$CERTS" >"$S/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 300); do
	grep -q '^serving$' "$S/serve.log" && break
	kill -0 "$SERVE_PID" 2>/dev/null || { SERVE_PID=""; die "drfs serve exited: $(tail -n 3 "$S/serve.log")"; }
	sleep 0.1
done
grep -q '^serving$' "$S/serve.log" || die "drfs serve not ready after 30 s"

t0=$(now)
start_mount 1h
wait_replicating
"$DRFS" sync --state "$STATE" >/dev/null
R[initial_s]=$(fsub "$(now)" "$t0")
R[initial_wire]=$(metric drfs_shipper_wire_bytes_total)
log "a) initial sync done in ${R[initial_s]} s ($(mib "${R[initial_wire]}") encoded)"

log "a) changing 1%: $CHANGE_IOS random 4 KiB O_DIRECT writes through the mount"
c0=$(cpu_ticks "$MOUNT_PID")
fio --name=change --filename="$MNT/disk.img" --rw=randwrite --bs=4k --number_ios="$CHANGE_IOS" \
	--size="${IMAGE_MIB}M" --direct=1 --ioengine=psync --refill_buffers --randrepeat=0 \
	--allow_file_create=0 --output-format=json >"$S/change.json" 2>"$S/change.err" ||
	die "fio change failed: $(tail -n 3 "$S/change.err")"
R[journal_cpu]=$(secs $(($(cpu_ticks "$MOUNT_PID") - c0)))
R[change_bytes]=$(python3 -c 'import json,sys; r=open(sys.argv[1]).read(); print(json.loads(r[r.index("{"):])["jobs"][0]["write"]["io_bytes"])' "$S/change.json")

w0=$(metric drfs_shipper_wire_bytes_total) r0=$(metric drfs_shipper_raw_bytes_total)
tcp_snapshot >"$S/tcp0"
cp0=$(cpu_ticks "$MOUNT_PID") cr0=$(cpu_ticks "$SERVE_PID")
t0=$(now)
"$DRFS" sync --state "$STATE" >"$S/sync-a.out" 2>&1 || die "drfs sync failed: $(cat "$S/sync-a.out")"
t1=$(now)
cp1=$(cpu_ticks "$MOUNT_PID") cr1=$(cpu_ticks "$SERVE_PID")
tcp_snapshot >"$S/tcp1"
w1=$(metric drfs_shipper_wire_bytes_total) r1=$(metric drfs_shipper_raw_bytes_total)
R[sync_s]=$(fsub "$t1" "$t0")
R[wire]=$((w1 - w0)) R[raw]=$((r1 - r0))
read -r R[tcp_to] R[tcp_from] < <(tcp_delta "$PORT" "$S/tcp0" "$S/tcp1")
R[cpu_primary]=$(secs $((cp1 - cp0))) R[cpu_replica]=$(secs $((cr1 - cr0)))
R[cpu_drfs]=$(secs $((cp1 - cp0 + cr1 - cr0)))
log "a) drfs: $(cat "$S/sync-a.out")"
if [[ ${R[tcp_to]} == n/a ]]; then
	R[tcp_total]=n/a
else
	R[tcp_total]=$((R[tcp_to] + R[tcp_from]))
fi

log "a) verifying the replica's copy"
cmp "$SRC/disk.img" "$REP/$VOL/data/disk.img" || die "replica's disk.img differs from the source after drfs sync"

log "a) rsync --inplace --no-whole-file of the same change"
/usr/bin/time -f "%U %S %e" -o "$S/rsync.time" \
	rsync --inplace --no-whole-file --stats "$SRC/disk.img" "$S/rsync-replica.img" >"$S/rsync.out" 2>&1 ||
	die "rsync failed: $(tail -n 5 "$S/rsync.out")"
cmp "$SRC/disk.img" "$S/rsync-replica.img" || die "rsync's copy differs from the source"
R[rs_sent]=$(awk -F': ' '/^Total bytes sent/ {gsub(/,/, "", $2); print $2}' "$S/rsync.out")
R[rs_recv]=$(awk -F': ' '/^Total bytes received/ {gsub(/,/, "", $2); print $2}' "$S/rsync.out")
R[rs_literal]=$(awk -F': ' '/^Literal data/ {gsub(/,| bytes/, "", $2); print $2}' "$S/rsync.out")
R[rs_bytes]=$((R[rs_sent] + R[rs_recv]))
read -r ru rsys rwall <"$S/rsync.time"
R[rs_cpu]=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) + float(sys.argv[2])))' "$ru" "$rsys")
R[rs_wall]=$rwall
rm -f "$S/rsync-replica.img"
R[bytes_ratio]=$(fdiv "${R[rs_bytes]}" "${R[wire]}")
R[tcp_ratio]=$(fdiv "${R[rs_bytes]}" "${R[tcp_total]}")
R[cpu_ratio]=$(fdiv "${R[rs_cpu]}" "${R[cpu_drfs]}")
# drfs pays part of its cost when the writes happen (journaling); rsync pays it all at sync.
R[cpu_incl]=$(python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) + float(sys.argv[2])))' "${R[cpu_drfs]}" "${R[journal_cpu]}")
R[cpu_incl_ratio]=$(fdiv "${R[rs_cpu]}" "${R[cpu_incl]}")
log "a) drfs ${R[wire]} B encoded (${R[tcp_total]} B TCP) in ${R[sync_s]} s, ${R[cpu_drfs]} CPU s;" \
	"rsync ${R[rs_bytes]} B in ${R[rs_wall]} s, ${R[rs_cpu]} CPU s"

# ---- b) compression on an ext4 image --------------------------------------
log "b) ext4 ($EXT4_SIZE) on a loop device over the mount, copying $TREE"
truncate -s "$EXT4_SIZE" "$MNT/ext4.img"
LOOPDEV=$(losetup --find --show "$MNT/ext4.img")
mkfs.ext4 -q -F "$LOOPDEV"
mkdir -p "$EXT4MNT"
mount "$LOOPDEV" "$EXT4MNT"
cp -a "$TREE" "$EXT4MNT/tree"
R[tree_bytes]=$(du -sb "$EXT4MNT/tree" | cut -f1)
R[tree_files]=$(find "$EXT4MNT/tree" -type f | wc -l)
umount "$EXT4MNT"
losetup -d "$LOOPDEV"
LOOPDEV=""
sync
w0=$(metric drfs_shipper_wire_bytes_total) r0=$(metric drfs_shipper_raw_bytes_total)
t0=$(now)
"$DRFS" sync --state "$STATE" >"$S/sync-b.out" 2>&1 || die "drfs sync failed: $(cat "$S/sync-b.out")"
R[b_sync_s]=$(fsub "$(now)" "$t0")
w1=$(metric drfs_shipper_wire_bytes_total) r1=$(metric drfs_shipper_raw_bytes_total)
R[b_wire]=$((w1 - w0)) R[b_raw]=$((r1 - r0))
R[b_ratio]=$(python3 -c 'import sys
try: print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception: print("n/a")' "${R[b_raw]}" "${R[b_wire]}")
cmp "$SRC/ext4.img" "$REP/$VOL/data/ext4.img" || die "replica's ext4.img differs from the source after drfs sync"
log "b) raw ${R[b_raw]} B / encoded ${R[b_wire]} B = ${R[b_ratio]}x"

# ---- c) lag under steady load, continuous mode ----------------------------
log "c) remounting with --interval continuous"
stop_mount || die "drfs mount exited with an error on SIGTERM"
start_mount continuous
wait_replicating
"$DRFS" sync --state "$STATE" >/dev/null
python3 - "$DRFS" "$STATE" "$S/lag.tsv" <<'PY' &
import json, subprocess, sys, time
drfs, state, out = sys.argv[1:4]
f = open(out, "w", buffering=1)
t0 = time.monotonic()
nxt = t0
while True:
    p = subprocess.run([drfs, "status", "--state", state, "--json"], capture_output=True, text=True)
    t = time.monotonic() - t0
    try:
        d = json.loads(p.stdout)
        f.write("%.3f\t%s\t%s\t%s\t%s\n" % (t, d.get("lag_seconds"), d.get("acked_seq"),
                                           d.get("journal_seq"), d.get("pending_bytes")))
    except Exception:
        f.write("%.3f\terr\t%s\n" % (t, (p.stderr or "").strip().replace("\n", " ")))
    nxt += 0.1
    time.sleep(max(0, nxt - time.monotonic()))
PY
SAMPLER_PID=$!
c0=$(cpu_ticks "$MOUNT_PID") cr0=$(cpu_ticks "$SERVE_PID") w0=$(metric drfs_shipper_wire_bytes_total)
fio --name=lag --filename="$MNT/disk.img" --rw=randwrite --bs=64k --rate="$LAG_RATE" --direct=1 \
	--ioengine=psync --refill_buffers --randrepeat=0 --size="${IMAGE_MIB}M" --allow_file_create=0 \
	--time_based --runtime="$LAG_RUNTIME" --output-format=json >"$S/lag.json" 2>"$S/lag.err" ||
	die "fio lag load failed: $(tail -n 3 "$S/lag.err")"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""
R[c_cpu_primary]=$(secs $(($(cpu_ticks "$MOUNT_PID") - c0)))
R[c_cpu_replica]=$(secs $(($(cpu_ticks "$SERVE_PID") - cr0)))
R[c_wire]=$(($(metric drfs_shipper_wire_bytes_total) - w0))
R[c_bw]=$(python3 -c 'import json,sys; r=open(sys.argv[1]).read(); j=json.loads(r[r.index("{"):])["jobs"][0]["write"]; print("%.1f" % (j["bw_bytes"] / 1e6))' "$S/lag.json")
read -r R[lag_n] R[lag_err] R[lag_p50] R[lag_p99] R[lag_max] < <(python3 - "$S/lag.tsv" <<'PY'
import sys
v, err = [], 0
for l in open(sys.argv[1]):
    f = l.rstrip("\n").split("\t")
    try:
        v.append(float(f[1]))
    except (ValueError, IndexError):
        err += 1
v.sort()
q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))] if v else float("nan")
print(len(v), err, "%.3f" % q(0.5), "%.3f" % q(0.99), "%.3f" % (v[-1] if v else float("nan")))
PY
)
t0=$(now)
"$DRFS" sync --state "$STATE" >"$S/sync-c.out" 2>&1 || die "drfs sync failed: $(cat "$S/sync-c.out")"
R[c_sync_s]=$(fsub "$(now)" "$t0")
cmp "$SRC/disk.img" "$REP/$VOL/data/disk.img" || die "replica's disk.img differs from the source after the lag run"
log "c) lag p50 ${R[lag_p50]} s, p99 ${R[lag_p99]} s, max ${R[lag_max]} s over ${R[lag_n]} samples"
"$DRFS" status --state "$STATE" >"$S/status-primary.txt" 2>&1 || true
R[retries]=$(metric drfs_shipper_retries_total || echo n/a)
"$DRFS" status --dir "$REP" >"$S/status-replica.txt" 2>&1 || true
stop_mount || die "drfs mount exited with an error on SIGTERM"


# ---- report ---------------------------------------------------------------
pass() { python3 -c 'import sys
try: print("yes" if eval(sys.argv[1]) else "**no**")
except Exception: print("n/a")' "$1"; }
OUT=${REPL_OUT:-$(results_path replication)}
mkdir -p "$(dirname "$OUT")"
PCT=$(python3 -c 'import sys; print("%.2f%%" % (100 * int(sys.argv[1]) / (int(sys.argv[2]) << 20)))' "${R[change_bytes]}" "$IMAGE_MIB")
{
	echo "| measurement | drfs | rsync | rsync/drfs | target | met |"
	echo "|---|---:|---:|---:|---:|---|"
	echo "| a) bytes for one cycle (encoded change log) | $(mib "${R[wire]}") | $(mib "${R[rs_bytes]}") | ${R[bytes_ratio]}x | >=10x | $(pass "${R[bytes_ratio]} >= 10") |"
	echo "| a) bytes for one cycle (TCP payload both ways, incl. TLS+HTTP) | $(mib "${R[tcp_total]}") | $(mib "${R[rs_bytes]}") | ${R[tcp_ratio]}x | >=10x | $(pass "${R[tcp_ratio]} >= 10") |"
	echo "| a) CPU s for one cycle (drfs: primary+replica) | ${R[cpu_drfs]} | ${R[rs_cpu]} | ${R[cpu_ratio]}x | >=20x | $(pass "${R[cpu_ratio]} >= 20") |"
	echo "| a) wall s for one cycle | ${R[sync_s]} | ${R[rs_wall]} | $(fdiv "${R[rs_wall]}" "${R[sync_s]}")x | | |"
	echo "| b) compression raw/encoded (ext4 + $(mib "${R[tree_bytes]}") tree) | ${R[b_ratio]}x | | | | |"
	echo "| c) lag p50 / p99 / max s at ${R[c_bw]} MB/s | ${R[lag_p50]} / ${R[lag_p99]} / ${R[lag_max]} | | | p99 < 1 s | $(pass "${R[lag_p99]} < 1") |"
} >"$S/summary.md"
{
	echo "# drfs replication benchmark $(date +%F)"
	echo
	echo "Two processes on loopback, HTTPS with mutual TLS (\`drfs certs\`, \`drfs serve --certs\`,"
	echo "\`drfs mount --certs --replica https://127.0.0.1:PORT\`). Quote ratios, not absolute numbers."
	echo
	cat "$S/summary.md"
	echo
	echo "## a) one cycle vs rsync"
	echo
	echo "${IMAGE_MIB} MiB raw image of random data, created in the source directory before mounting;"
	echo "initial sync $(mib "${R[initial_wire]}") encoded in ${R[initial_s]} s. Change: $CHANGE_IOS random 4 KiB"
	echo "O_DIRECT writes of fresh random data (fio --refill_buffers) through the mount, $(mib "${R[change_bytes]}") = $PCT of the image;"
	echo "mounted with \`--interval 1h\`, then one \`drfs sync\`. The replica's copy was compared with \`cmp\` afterwards: equal."
	echo
	echo "| | value |"
	echo "|---|---:|"
	echo "| drfs raw change-log bytes (drfs_shipper_raw_bytes_total delta) | ${R[raw]} |"
	echo "| drfs encoded bytes (drfs_shipper_wire_bytes_total delta) | ${R[wire]} |"
	echo "| drfs TCP payload primary->replica / replica->primary (ss bytes_received) | ${R[tcp_to]} / ${R[tcp_from]} |"
	echo "| drfs \`drfs sync\` wall s | ${R[sync_s]} |"
	echo "| drfs CPU s primary / replica during the cycle | ${R[cpu_primary]} / ${R[cpu_replica]} |"
	echo "| drfs primary CPU s while journaling the writes (before the cycle; not in the ratio) | ${R[journal_cpu]} |"
	echo "| drfs CPU s cycle + journaling / rsync CPU ratio with it | ${R[cpu_incl]} / ${R[cpu_incl_ratio]}x |"
	echo "| rsync total bytes sent / received | ${R[rs_sent]} / ${R[rs_recv]} |"
	echo "| rsync literal data | ${R[rs_literal]} |"
	echo "| rsync CPU s (user+sys, all its processes) / wall s | ${R[rs_cpu]} / ${R[rs_wall]} |"
	echo
	echo "rsync ran local-to-local (\`rsync --inplace --no-whole-file --stats\`, both files in the page cache),"
	echo "so its bytes are what its sender and receiver processes exchanged; it has no encryption, while drfs's"
	echo "TCP bytes include TLS and HTTP."
	echo
	echo "## b) compression"
	echo
	echo "$EXT4_SIZE sparse image on the mount, attached to a loop device, \`mkfs.ext4\`, \`cp -a $TREE\`"
	echo "(${R[tree_files]} files, ${R[tree_bytes]} bytes), unmounted, one \`drfs sync\` (${R[b_sync_s]} s)."
	echo "Raw change-log bytes ${R[b_raw]}, encoded ${R[b_wire]}: **${R[b_ratio]}x**. Replica's copy compared equal."
	echo
	echo "## c) lag under steady load"
	echo
	echo "\`--interval continuous\`; fio randwrite bs=64k O_DIRECT --rate=$LAG_RATE for ${LAG_RUNTIME} s on the"
	echo "${IMAGE_MIB} MiB image (achieved ${R[c_bw]} MB/s); \`drfs status --json\` lag_seconds sampled every 100 ms"
	echo "(${R[lag_n]} samples, ${R[lag_err]} failed). Lag p50 ${R[lag_p50]} s, p99 ${R[lag_p99]} s, max ${R[lag_max]} s."
	echo "Encoded bytes shipped during the load: ${R[c_wire]}; CPU s primary ${R[c_cpu_primary]}, replica ${R[c_cpu_replica]}."
	echo "Final \`drfs sync\` ${R[c_sync_s]} s; replica's copy compared equal. drfs_shipper_retries_total of the continuous-mode mount: ${R[retries]}."
	echo
	echo "Status at the end (primary):"
	echo
	echo '```'
	cat "$S/status-primary.txt"
	echo '```'
	echo
	echo "Replica:"
	echo
	echo '```'
	cat "$S/status-replica.txt"
	echo '```'
	echo
	machine_section "$S"
} >"$OUT"
cp "$S/lag.tsv" "${OUT%.md}-lag.tsv"

echo
column -t -s '|' -o '|' "$S/summary.md" 2>/dev/null | grep -v -- '---:' || cat "$S/summary.md"
echo "results: $OUT (lag samples: ${OUT%.md}-lag.tsv)"
