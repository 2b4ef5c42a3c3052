#!/usr/bin/env bash
# drfs benchmark (design.md, "Performance method").
#
# In ONE run, runs the same fio profiles on
#   raw        the source directory itself (no FUSE)
#   loop-nopt  bin/drfsloop, kernel passthrough off (daemon sees every I/O:
#              the honest ceiling for drfs)
#   loop-pt    bin/drfsloop --passthrough (the kernel's ceiling)
#   drfs       bin/drfs mount --source SRC --state STATE MNT
# and prints IOPS and ratios; writes the table as markdown to
# bench/results/YYYY-MM-DD-<rev|wip>.md with the machine described.
#
# Environment:
#   BENCH_RUNTIME   seconds per profile (default 10)
#   BENCH_RAMP      ramp seconds per profile (default 2)
#   BENCH_SIZE      test file size per target (default 1G)
#   BENCH_TARGETS   subset of "raw loop-nopt loop-pt drfs" (space/comma separated)
#   BENCH_PROFILES  subset of profile names (see PROFILES below)
#   BENCH_DIR       parent of the scratch dir (default /var/tmp; not tmpfs)
#   BENCH_OUT       results file (default bench/results/DATE-REV.md)
#   BENCH_NO_BUILD  if 1, use existing bin/ binaries instead of building
#   BENCH_DRFS      drfs binary to use instead of building bin/drfs
#   BENCH_REPLICATION  if 0, skip the replication benchmark (bench/replication.sh,
#                   run after the fio section; see its header for its settings)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

RUNTIME=${BENCH_RUNTIME:-10}
RAMP=${BENCH_RAMP:-2}
SIZE=${BENCH_SIZE:-1G}
TARGETS=${BENCH_TARGETS:-raw loop-nopt loop-pt drfs}
TARGETS=${TARGETS//,/ }
PARENT=${BENCH_DIR:-/var/tmp}

# name | fio arguments. IOPS of 16k-randrw70 is read+write; for
# 1M-seqwrite IOPS equals MiB/s.
PROFILES=(
	"4k-randwrite-qd1|--rw=randwrite --bs=4k --iodepth=1 --direct=1"
	"4k-randwrite-qd16|--rw=randwrite --bs=4k --iodepth=16 --direct=1"
	"4k-randread-qd16|--rw=randread --bs=4k --iodepth=16 --direct=1"
	"4k-randwrite-fsync-qd1|--rw=randwrite --bs=4k --iodepth=1 --direct=1 --fsync=1"
	"16k-randrw70-qd8|--rw=randrw --rwmixread=70 --bs=16k --iodepth=8 --direct=1"
	"1M-seqwrite-qd4|--rw=write --bs=1M --iodepth=4 --direct=1"
)
if [[ -n ${BENCH_PROFILES:-} ]]; then
	sel=()
	for p in "${PROFILES[@]}"; do
		for want in ${BENCH_PROFILES//,/ }; do
			[[ ${p%%|*} == "$want" ]] && sel+=("$p")
		done
	done
	((${#sel[@]})) || { echo "bench: BENCH_PROFILES matches no profile" >&2; exit 2; }
	PROFILES=("${sel[@]}")
fi

die() { echo "bench: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }
want_target() { [[ " $TARGETS " == *" $1 "* ]]; }

for t in $TARGETS; do
	case $t in raw | loop-nopt | loop-pt | drfs) ;; *) die "unknown target '$t' in BENCH_TARGETS" ;; esac
done
[[ $(id -u) -eq 0 ]] || log "warning: not root; FUSE mounts with allow_other/passthrough may fail"
for c in fio python3 mountpoint; do
	command -v "$c" >/dev/null || die "$c not found (run scripts/deps.sh)"
done

# ---- binaries -------------------------------------------------------------
DRFS_NA=""
DRFS_BIN=${BENCH_DRFS:-$ROOT/bin/drfs}
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
	if want_target loop-nopt || want_target loop-pt; then
		go build -o bin/drfsloop ./cmd/drfsloop || die "building drfsloop failed"
	fi
	if want_target drfs && [[ -z ${BENCH_DRFS:-} ]]; then
		if ! out=$(go build -o bin/drfs ./cmd/drfs 2>&1); then
			rm -f bin/drfs # never benchmark a stale binary
			DRFS_NA="build failed: $(head -c 300 <<<"$out" | tr '\n' ' ')"
			log "drfs: $DRFS_NA"
		fi
	fi
fi
if want_target drfs && [[ -z $DRFS_NA && ! -x $DRFS_BIN ]]; then
	DRFS_NA="$DRFS_BIN missing"
fi

# ---- scratch --------------------------------------------------------------
mkdir -p "$PARENT"
S=$(mktemp -d "$PARENT/drfs-bench.XXXXXX")
FSTYPE=$(df -T "$S" | awk 'NR==2 {print $2}')
[[ $FSTYPE == tmpfs ]] && log "warning: $S is on tmpfs; O_DIRECT numbers will be meaningless"

DAEMON_PID=""
DAEMON_MNT=""

is_mounted() { mountpoint -q "$1" 2>/dev/null || grep -qs " $1 " /proc/mounts; }

# stop_daemon: SIGTERM, wait up to 15 s, then lazy unmount and SIGKILL.
stop_daemon() {
	local pid=$DAEMON_PID mnt=$DAEMON_MNT
	DAEMON_PID="" DAEMON_MNT=""
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 150); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if is_mounted "$mnt"; then
		log "warning: $mnt still mounted after SIGTERM; umount -l"
		umount -l "$mnt" 2>/dev/null || fusermount3 -uz "$mnt" 2>/dev/null || true
	fi
	if kill -0 "$pid" 2>/dev/null; then
		log "warning: daemon $pid did not exit; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	stop_daemon
	local m left=0
	for m in $(awk -v s="$S/" 'index($2, s) == 1 {print $2}' /proc/mounts); do
		umount -l "$m" 2>/dev/null || true
	done
	if awk -v s="$S/" 'index($2, s) == 1 {found=1} END {exit !found}' /proc/mounts; then
		left=1
	fi
	if ((left)); then
		log "warning: mounts remain under $S; not removing it"
	else
		rm -rf "$S"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_daemon LOG MNT CMD...: start a FUSE daemon in the background and
# wait (30 s) until MNT is a mount point. Returns non-zero on failure.
start_daemon() {
	local logf=$1 mnt=$2
	shift 2
	"$@" >"$logf" 2>&1 &
	DAEMON_PID=$!
	DAEMON_MNT=$mnt
	for _ in $(seq 300); do
		if is_mounted "$mnt"; then
			return 0
		fi
		if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			wait "$DAEMON_PID" 2>/dev/null || true
			DAEMON_PID=""
			log "daemon exited before mounting: $(tail -n 5 "$logf" | tr '\n' ' ')"
			return 1
		fi
		sleep 0.1
	done
	log "timed out waiting for $mnt to be mounted: $(tail -n 5 "$logf" | tr '\n' ' ')"
	stop_daemon
	return 1
}

# ---- fio ------------------------------------------------------------------
declare -A IOPS    # [target,profile] -> IOPS
declare -A NOTE    # [target] -> note

iops_of() {
	python3 - "$1" <<'PY'
import json, sys
raw = open(sys.argv[1]).read()
# fio may print warnings before the JSON document.
d = json.loads(raw[raw.index("{"):])
j = d["jobs"][0]
if j.get("error"):
    sys.exit("fio job error %d" % j["error"])
print("%.0f" % (j["read"]["iops"] + j["write"]["iops"]))
PY
}

# run_target NAME DIR: lay out a SIZE file in DIR, then run every profile.
run_target() {
	local name=$1 dir=$2 f=$2/bench.dat p pname pargs out
	log "$name: laying out $SIZE in $dir"
	if ! fio --name=layout --filename="$f" --size="$SIZE" --rw=write --bs=1M \
		--ioengine=libaio --iodepth=4 --direct=1 --fallocate=none \
		--output-format=json >"$S/$name-layout.json" 2>"$S/$name-layout.err"; then
		NOTE[$name]="layout failed: $(tail -n 3 "$S/$name-layout.err" | tr '\n' ' ')"
		log "$name: ${NOTE[$name]}"
		return 1
	fi
	for p in "${PROFILES[@]}"; do
		pname=${p%%|*}
		pargs=${p#*|}
		out=$S/$name-$pname.json
		# shellcheck disable=SC2086 # pargs is a word list on purpose
		if fio --name="$pname" --filename="$f" --size="$SIZE" --ioengine=libaio \
			$pargs --time_based --runtime="$RUNTIME" --ramp_time="$RAMP" \
			--allow_file_create=0 --randrepeat=0 --norandommap --group_reporting \
			--output-format=json >"$out" 2>"$out.err" &&
			IOPS[$name,$pname]=$(iops_of "$out" 2>>"$out.err"); then
			log "$name: $pname ${IOPS[$name,$pname]} IOPS"
		else
			IOPS[$name,$pname]=err
			log "$name: $pname failed: $(tail -n 3 "$out.err" | tr '\n' ' ')"
		fi
	done
	rm -f "$f"
}

PT_STATE=""
if want_target raw; then
	mkdir -p "$S/raw"
	run_target raw "$S/raw" || true
fi
for t in loop-nopt loop-pt; do
	want_target "$t" || continue
	mkdir -p "$S/$t-src" "$S/$t-mnt"
	flags=()
	[[ $t == loop-pt ]] && flags=(--passthrough)
	if start_daemon "$S/$t.log" "$S/$t-mnt" "$ROOT/bin/drfsloop" "${flags[@]}" "$S/$t-src" "$S/$t-mnt"; then
		neg=$(grep -o 'passthrough negotiated: [a-z]*' "$S/$t.log" | awk '{print $3}' || true)
		NOTE[$t]="kernel passthrough negotiated: ${neg:-unknown}"
		[[ $t == loop-pt ]] && PT_STATE=${neg:-unknown}
		run_target "$t" "$S/$t-mnt" || true
		stop_daemon
	else
		NOTE[$t]="mount failed"
	fi
done
if want_target drfs; then
	if [[ -n $DRFS_NA ]]; then
		NOTE[drfs]="n/a: $DRFS_NA"
	else
		mkdir -p "$S/drfs-src" "$S/drfs-state" "$S/drfs-mnt"
		if start_daemon "$S/drfs.log" "$S/drfs-mnt" "$DRFS_BIN" mount \
			--source "$S/drfs-src" --state "$S/drfs-state" "$S/drfs-mnt"; then
			run_target drfs "$S/drfs-mnt" || true
			NOTE[drfs]="${NOTE[drfs]:+${NOTE[drfs]}; }state dir after run: $(du -sh "$S/drfs-state" 2>/dev/null | cut -f1)"
			stop_daemon
		else
			NOTE[drfs]="n/a: mount failed: $(tail -n 3 "$S/drfs.log" | tr '\n' ' ')"
		fi
	fi
fi

# ---- report ---------------------------------------------------------------
rev=wip
if git rev-parse -q --verify HEAD >/dev/null 2>&1; then
	rev=$(git rev-parse --short HEAD)
	[[ -z $(git status --porcelain 2>/dev/null) ]] || rev=wip
fi
OUT=${BENCH_OUT:-bench/results/$(date +%F)-$rev.md}
if [[ -z ${BENCH_OUT:-} && -e $OUT ]]; then
	n=2
	while [[ -e ${OUT%.md}-$n.md ]]; do n=$((n + 1)); done
	OUT=${OUT%.md}-$n.md
fi
mkdir -p "$(dirname "$OUT")"

cell() { # target profile
	if ! want_target "$1"; then echo "-"; return; fi
	local v=${IOPS[$1,$2]:-}
	[[ -n $v ]] && echo "$v" || echo "n/a"
}
ratio() { # a b
	python3 -c 'import sys
try: print("%.2fx" % (float(sys.argv[1]) / float(sys.argv[2])))
except Exception: print("-")' "$1" "$2"
}

{
	echo "| profile | raw | loop-nopt | loop-pt | drfs | drfs/loop-nopt | drfs/raw |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for p in "${PROFILES[@]}"; do
		pn=${p%%|*}
		r=$(cell raw "$pn") n=$(cell loop-nopt "$pn") t=$(cell loop-pt "$pn") d=$(cell drfs "$pn")
		echo "| $pn | $r | $n | $t | $d | $(ratio "$d" "$n") | $(ratio "$d" "$r") |"
	done
} >"$S/table.md"
{
	echo "| profile | loop-nopt/raw | loop-pt/raw |"
	echo "|---|---:|---:|"
	for p in "${PROFILES[@]}"; do
		pn=${p%%|*}
		r=$(cell raw "$pn")
		echo "| $pn | $(ratio "$(cell loop-nopt "$pn")" "$r") | $(ratio "$(cell loop-pt "$pn")" "$r") |"
	done
} >"$S/baseline.md"

{
	echo "# drfs benchmark $(date +%F) ($rev)"
	echo
	echo "IOPS from fio (libaio, O_DIRECT, ${RUNTIME}s + ${RAMP}s ramp per profile, $SIZE file per target)."
	echo "16k-randrw70 is read+write IOPS; for 1M-seqwrite IOPS = MiB/s. Quote ratios, not absolute numbers."
	echo
	cat "$S/table.md"
	echo
	echo "Baselines:"
	echo
	cat "$S/baseline.md"
	echo
	machine_section "$S"
	echo
	echo "## Notes"
	echo
	for t in $TARGETS; do
		echo "- $t: ${NOTE[$t]:-ok}"
	done
	echo "- profiles:"
	for p in "${PROFILES[@]}"; do
		echo "  - ${p%%|*}: \`${p#*|}\`"
	done
} >"$OUT"

echo
column -t -s '|' -o '|' "$S/table.md" 2>/dev/null | grep -v -- '---:' || cat "$S/table.md"
echo
column -t -s '|' -o '|' "$S/baseline.md" 2>/dev/null | grep -v -- '---:' || cat "$S/baseline.md"
echo
for t in $TARGETS; do echo "$t: ${NOTE[$t]:-ok}"; done
if want_target loop-pt && [[ $PT_STATE != true ]]; then
	echo "warning: loop-pt ran without kernel passthrough (negotiated: ${PT_STATE:-unknown})"
fi
echo "results: $OUT"

# ---- replication ----------------------------------------------------------
# Shipping cost against rsync, compression and replica lag: bench/replication.sh
# writes its own results file.
if [[ ${BENCH_REPLICATION:-1} != 0 ]]; then
	echo
	log "replication benchmark (bench/replication.sh)"
	repl_env=()
	if want_target drfs && [[ -z $DRFS_NA && -x $DRFS_BIN ]]; then
		repl_env=(BENCH_DRFS="$DRFS_BIN")
	fi
	env "${repl_env[@]}" bash "$ROOT/bench/replication.sh" || die "replication benchmark failed"
fi
