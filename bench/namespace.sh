#!/usr/bin/env bash
# Namespace-operation benchmark: what a create, a rename and an unlink cost through drfs, whose
# namespace changes are durable in the source and in the journal before they return, against
# go-fuse's loopback with passthrough off (a daemon that sees every request but syncs nothing)
# in the same run. Each round: create a file, write 4 KiB, close, rename it, unlink it.
#
#   bench/namespace.sh                      build bin/drfs, bin/drfsloop and run
#   BENCH_DRFS=/path/to/drfs                use that drfs binary
#   BENCH_NS_ROUNDS=N                       rounds per target (default 500)
#   BENCH_DIR=/var/tmp                      parent of the scratch dir
#   BENCH_OUT=FILE                          results file (default bench/results/DATE-namespace.md)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ROUNDS=${BENCH_NS_ROUNDS:-500}
DRFS=${BENCH_DRFS:-$ROOT/bin/drfs}
if [[ -z ${BENCH_DRFS:-} ]]; then
	go build -o bin/drfs ./cmd/drfs
fi
go build -o bin/drfsloop ./cmd/drfsloop
S=$(mktemp -d "${BENCH_DIR:-/var/tmp}/drfs-bench-ns.XXXXXX")
PID=""
cleanup() {
	[[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	for m in "$S"/*-mnt; do mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }; done
	rm -rf "$S"
}
trap cleanup EXIT

# rounds DIR: seconds for ROUNDS create/write/close/rename/unlink rounds in DIR.
rounds() {
	python3 - "$1" "$ROUNDS" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
buf = b"x" * 4096
t0 = time.monotonic()
for i in range(n):
    a, b = os.path.join(d, f"f{i}"), os.path.join(d, f"g{i}")
    fd = os.open(a, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, buf)
    os.close(fd)
    os.rename(a, b)
    os.unlink(b)
print(f"{time.monotonic() - t0:.3f}")
PY
}

wait_mounted() {
	for _ in $(seq 300); do
		mountpoint -q "$1" && return 0
		sleep 0.1
	done
	echo "bench: $1 not mounted" >&2
	exit 1
}

declare -A SECS
for t in raw loop-nopt drfs; do
	mkdir -p "$S/$t-src" "$S/$t-mnt" "$S/$t-state"
	case $t in
	raw) SECS[$t]=$(rounds "$S/$t-src"); continue ;;
	loop-nopt) "$ROOT/bin/drfsloop" "$S/$t-src" "$S/$t-mnt" >"$S/$t.log" 2>&1 & ;;
	drfs) "$DRFS" mount --source "$S/$t-src" --state "$S/$t-state" --checkpoint-interval 1h "$S/$t-mnt" >"$S/$t.log" 2>&1 & ;;
	esac
	PID=$!
	wait_mounted "$S/$t-mnt"
	SECS[$t]=$(rounds "$S/$t-mnt")
	kill "$PID"
	wait "$PID" 2>/dev/null || true
	PID=""
	mountpoint -q "$S/$t-mnt" && umount -l "$S/$t-mnt"
done

out=${BENCH_OUT:-$(results_path namespace)}
{
	echo "# drfs namespace benchmark ($(date +%F))"
	echo
	echo "$ROUNDS rounds of create + write 4 KiB + close + rename + unlink, one thread. drfs makes"
	echo "each namespace change durable in the source (parent directory fsynced) and in the journal"
	echo "(fdatasync) before it returns; the loopback syncs nothing. Ratios within this run."
	echo
	echo "| target | seconds | rounds/s | vs loop-nopt |"
	echo "|---|---:|---:|---:|"
	for t in raw loop-nopt drfs; do
		python3 -c "
s=${SECS[$t]}; l=${SECS[loop-nopt]}
print(f'| $t | {s:.2f} | {$ROUNDS/s:.0f} | {l/s:.2f}x |')"
	done
	echo
	echo "drfs binary: $DRFS"
	echo
	machine_section "$S"
} >"$out"
cat "$out"
