#!/usr/bin/env bash
# drfs tier benchmark: three volumes of one host writing more than their replica site's link
# carries, replicated by one `drfs daemon` (the link shared by tier and deadline, link/doc.go)
# against today's way, one `drfs mount` per volume with its own fixed --bwlimit, in one run.
#
# The replica site is a network namespace (drfs-dr, 10.77.0.2) behind a veth pair
# (drfs-hq 10.77.0.1 here), shaped to TIERS_RATE Mbit/s in both directions with TIERS_RTT ms
# of round trip: netem (delay + rate) when the kernel has it; otherwise tbf for the rate on
# both veth ends and, for the delay, a TCP relay in the namespace that holds each chunk half
# the round trip in each direction (bench/tiers.py relay) in front of `drfs serve`. HTTPS with
# mutual TLS: `drfs certs init` for site dr, `drfs certs request` for site hq, signed by dr.
#
# Volumes (incompressible data: fio randwrite bs=64k O_DIRECT --refill_buffers
# --buffer_compress_percentage=0 into a sparse file made through the mount):
#   gold    RPO 30 s,  tier 1, TIERS_GOLD bytes/s
#   silver  RPO 5 min, tier 2, TIERS_SILVER bytes/s
#   bronze  RPO 1 h,   tier 3, TIERS_BRONZE bytes/s
# Modes (TIERS_MODES, in this order):
#   daemon         drfs daemon, the three volumes on site dr, bandwidth unset (measured)
#   daemon-budget  the same with bandwidth: the link rate
#   mount-equal    three drfs mount --rpo R --bwlimit LINK/3
#   mount-prop     three drfs mount --rpo R --bwlimit LINK*rate/sum(rates)
# Every second, `drfs status --json` (--socket for the daemon, --state per volume for the
# mounts), the metrics endpoint(s) and tx_bytes of drfs-hq are sampled. Reported per volume:
# RPO violations (status rpo_violations), lag p50/p99/max as drfs reports it and as the
# samples' journal and acknowledged seqs give it, bytes written and shipped
# (drfs_shipper_wire_bytes_total), when the lag passed the target, when drfs first named
# the volume at risk and when it said the miss would come; per mode: the link's utilisation (drfs-hq tx bytes / link rate) over the
# seconds when any volume had work (pending bytes or lag > 0). Results go to
# bench/results/DATE-tiers[-N].md (machine described) and DATE-tiers[-N]-samples.tsv.
#
# Environment:
#   TIERS_DURATION  seconds of writes per mode (default 240)
#   TIERS_MODES     modes to run (default "daemon mount-equal mount-prop")
#   TIERS_RATE      link rate, Mbit/s (default 20)
#   TIERS_RTT       link round trip, ms (default 40)
#   TIERS_GOLD, TIERS_SILVER, TIERS_BRONZE  write rates, bytes/s (default 1000000 900000 1600000)
#   TIERS_FILE_SIZE size of each volume's sparse file (default 16G)
#   TIERS_KEEP      1: keep the scratch dir (logs, status samples, data)
#   TIERS_OUT       results file (default bench/results/DATE-tiers.md)
#   BENCH_DIR       parent of the scratch dir (default /var/tmp; not tmpfs)
#   BENCH_NO_BUILD  if 1, use the existing bin/drfs
#   BENCH_DRFS      drfs binary to use instead of building bin/drfs
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

DURATION=${TIERS_DURATION:-240}
MODES=${TIERS_MODES:-daemon mount-equal mount-prop}
MODES=${MODES//,/ }
RATE_MBIT=${TIERS_RATE:-20}
RTT_MS=${TIERS_RTT:-40}
FILE_SIZE=${TIERS_FILE_SIZE:-16G}
PARENT=${BENCH_DIR:-/var/tmp}
LINK_BPS=$((RATE_MBIT * 1000000 / 8))

VOLS=(gold silver bronze)
declare -A RPO=([gold]=30s [silver]=5m [bronze]=1h)
declare -A RPO_S=([gold]=30 [silver]=300 [bronze]=3600)
declare -A TIER=([gold]=1 [silver]=2 [bronze]=3)
declare -A WRATE=([gold]=${TIERS_GOLD:-1000000} [silver]=${TIERS_SILVER:-900000} [bronze]=${TIERS_BRONZE:-1600000})

NS=drfs-dr HQIF=drfs-hq DRIF=drfs-dr0 HQIP=10.77.0.1 DRIP=10.77.0.2 PORT=9740 SPORT=9741

die() { echo "tiers: $*" >&2; exit 1; }
log() { echo "tiers: $*" >&2; }

for m in $MODES; do
	case $m in daemon | daemon-budget | mount-equal | mount-prop) ;; *) die "unknown mode '$m' in TIERS_MODES" ;; esac
done
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespace, tc, FUSE)"
for c in ip tc fio python3 mountpoint truncate curl; do
	command -v "$c" >/dev/null || die "$c not found (run scripts/deps.sh)"
done
[[ -c /dev/fuse ]] || die "/dev/fuse missing"
if ip netns list | grep -qw "$NS" || ip link show "$HQIF" >/dev/null 2>&1; then
	die "netns $NS or link $HQIF exists: another bench-tiers runs, or a crashed one left them (ip netns del $NS; ip link del $HQIF)"
fi

DRFS=${BENCH_DRFS:-$ROOT/bin/drfs}
if [[ ${BENCH_NO_BUILD:-0} != 1 && -z ${BENCH_DRFS:-} ]]; then
	log "building bin/drfs"
	go build -o bin/drfs ./cmd/drfs || { rm -f bin/drfs; die "building drfs failed"; }
fi
[[ -x $DRFS ]] || die "$DRFS missing"

# ---- scratch and cleanup --------------------------------------------------
mkdir -p "$PARENT"
S=$(mktemp -d "$PARENT/drfs-tiers.XXXXXX")
[[ $(df -T "$S" | awk 'NR==2 {print $2}') == tmpfs ]] && log "warning: $S is on tmpfs"
mkdir -p "$S/logs"
PIDS=() # primaries (daemon or mounts), stopped by stop_primaries
SERVE_PID="" RELAY_PID="" SAMPLER_PID="" FIO_PIDS=()

stop_pid() { # PID [SECONDS]: SIGTERM, wait, then SIGKILL
	local pid=$1 n=$((${2:-30} * 10)) i
	[[ -n $pid ]] || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < n; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "warning: pid $pid did not exit ${2:-30} s after SIGTERM; SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

umount_under() { # DIR: lazy-unmount whatever is still mounted below DIR
	local m
	for m in $(awk -v s="$1/" 'index($2, s) == 1 {print $2}' /proc/mounts); do
		log "warning: $m still mounted; umount -l"
		umount -l "$m" 2>/dev/null || fusermount3 -uz "$m" 2>/dev/null || true
	done
}

stop_primaries() {
	local p
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do stop_pid "$p" 30; done
	PIDS=()
	umount_under "$S"
}

cleanup() {
	local rc=$? p
	for p in "${FIO_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	[[ -n $SAMPLER_PID ]] && stop_pid "$SAMPLER_PID" 5
	stop_primaries
	stop_pid "$SERVE_PID" 10
	stop_pid "$RELAY_PID" 5
	ip netns del "$NS" 2>/dev/null || true
	ip link del "$HQIF" 2>/dev/null || true
	if ((rc != 0)); then
		for f in "$S"/logs/*.log; do
			[[ -s $f ]] && { echo "--- $f (last 10 lines) ---" >&2; tail -n 10 "$f" >&2; }
		done
	fi
	if awk -v s="$S/" 'index($2, s) == 1 {found=1} END {exit !found}' /proc/mounts; then
		log "warning: mounts remain under $S; not removing it"
	elif [[ ${TIERS_KEEP:-0} == 1 ]]; then
		log "kept $S"
	else
		rm -rf "$S"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# ---- the replica site: namespace, veth, shaping ---------------------------
log "netns $NS: $HQIF $HQIP <-> $DRIF $DRIP, $RATE_MBIT Mbit/s, $RTT_MS ms round trip"
ip netns add "$NS"
ip link add "$HQIF" type veth peer name "$DRIF"
ip link set "$DRIF" netns "$NS"
ip addr add "$HQIP/24" dev "$HQIF"
ip link set "$HQIF" up
ip netns exec "$NS" ip addr add "$DRIP/24" dev "$DRIF"
ip netns exec "$NS" ip link set "$DRIF" up
ip netns exec "$NS" ip link set lo up
if tc qdisc add dev "$HQIF" root netem delay "${RTT_MS}ms" rate "${RATE_MBIT}mbit" limit 100000 2>/dev/null; then
	ip netns exec "$NS" tc qdisc add dev "$DRIF" root netem rate "${RATE_MBIT}mbit" limit 100000
	RELAY=0
	SHAPING="netem on both veth ends: $HQIF (hq->dr) \`delay ${RTT_MS}ms rate ${RATE_MBIT}mbit limit 100000\`, $DRIF (dr->hq) \`rate ${RATE_MBIT}mbit\`"
else
	# No sch_netem in this kernel: tbf for the rate, a relay for the delay.
	tc qdisc add dev "$HQIF" root tbf rate "${RATE_MBIT}mbit" burst 32kb latency 50ms
	ip netns exec "$NS" tc qdisc add dev "$DRIF" root tbf rate "${RATE_MBIT}mbit" burst 32kb latency 50ms
	RELAY=1
	SHAPING="tbf \`rate ${RATE_MBIT}mbit burst 32kb latency 50ms\` on both veth ends ($HQIF hq->dr, $DRIF dr->hq);"
	SHAPING+=" the kernel has no sch_netem, so the ${RTT_MS} ms round trip is a TCP relay in the namespace"
	SHAPING+=" ($DRIP:$PORT -> 127.0.0.1:$SPORT, bench/tiers.py relay) holding every chunk $((RTT_MS / 2)) ms each way"
fi
log "$SHAPING"

# ---- certificates (README section 2) --------------------------------------
C=$S/certs
"$DRFS" certs init --out "$C/dr" --site dr --host "$DRIP" >/dev/null
"$DRFS" certs request --out "$C/hq" --site hq --host "$HQIP" >/dev/null
"$DRFS" certs sign --ca "$C/dr" --site hq --out "$C/hq-signed" "$C/hq/hq.csr" >/dev/null
cp "$C/hq-signed/"{ca,primary,replica}.pem "$C/hq/"

if ((RELAY)); then
	ip netns exec "$NS" python3 "$ROOT/bench/tiers.py" relay --listen "$DRIP:$PORT" --to "127.0.0.1:$SPORT" \
		--delay-ms "$((RTT_MS / 2))" >"$S/logs/relay.log" 2>&1 &
	RELAY_PID=$!
	for _ in $(seq 100); do grep -q '^relaying$' "$S/logs/relay.log" && break; sleep 0.1; done
	grep -q '^relaying$' "$S/logs/relay.log" || die "relay did not start: $(cat "$S/logs/relay.log")"
	SERVE_LISTEN=127.0.0.1:$SPORT
else
	SERVE_LISTEN=$DRIP:$PORT
fi
URL=https://$DRIP:$PORT

start_serve() { # MODE: a fresh replica directory per mode
	mkdir -p "$S/$1/replica"
	ip netns exec "$NS" "$DRFS" serve --dir "$S/$1/replica" --listen "$SERVE_LISTEN" --certs "$C/dr" \
		>"$S/logs/$1-serve.log" 2>&1 &
	SERVE_PID=$!
	for _ in $(seq 300); do
		grep -q '^serving$' "$S/logs/$1-serve.log" && return 0
		kill -0 "$SERVE_PID" 2>/dev/null || { SERVE_PID=""; die "drfs serve exited: $(tail -n 3 "$S/logs/$1-serve.log")"; }
		sleep 0.1
	done
	die "drfs serve not ready after 30 s"
}

# handshake_rtt: the TLS handshake with drfs serve over the link (one round trip and the
# crypto), best of 3, as a check of the delay; the server then refuses the certless client.
handshake_rtt() {
	local i best=""
	for i in 1 2 3; do
		best+=$(curl -sk --max-time 5 -o /dev/null -w '%{time_connect} %{time_appconnect}' "$URL/" 2>/dev/null || true)$'\n'
	done
	awk 'NF == 2 && $2 > 0 {d = ($2 - $1) * 1000; if (best == "" || d < best) best = d}
		END {if (best == "") print "n/a"; else printf "%.0f ms\n", best}' <<<"$best"
}
HANDSHAKE=""

# status_ok ARGS...: every volume that `drfs status ARGS --json` shows is replicating (an
# empty volume has nothing to sync first).
status_ok() {
	"$DRFS" status --json "$@" 2>/dev/null | python3 -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:  # the daemon does not answer yet
    sys.exit(1)
vs = [v.get("status") or {} for v in d["volumes"]] if "volumes" in d else [d]
sys.exit(0 if vs and all(v.get("replication_state") == "replicating" for v in vs) else 1)'
}

wait_status() { # DESCRIPTION ARGS...: up to 60 s
	local what=$1 i
	shift
	for i in $(seq 300); do
		status_ok "$@" && return 0
		sleep 0.2
	done
	die "$what not replicating after 60 s: $("$DRFS" status "$@" 2>&1 | tail -n 8)"
}

bwlimit_of() { # MODE VOLUME
	case $1 in
	mount-equal) echo $((LINK_BPS / 3)) ;;
	mount-prop) echo $((LINK_BPS * WRATE[$2] / (WRATE[gold] + WRATE[silver] + WRATE[bronze]))) ;;
	*) echo 0 ;;
	esac
}

declare -A MODE_NOTE
RESULTS=()
TSV=$S/samples.tsv
LOAD_START=$(loadavg)

run_mode() {
	local mode=$1 d=$S/$1 v sampler_args=() metrics_urls=() logs=()
	log "== $mode: starting"
	mkdir -p "$d"
	start_serve "$mode"
	[[ -n $HANDSHAKE ]] || HANDSHAKE=$(handshake_rtt)
	for v in "${VOLS[@]}"; do mkdir -p "$d/$v.src" "$d/$v.state" "$d/$v"; done
	case $mode in
	daemon | daemon-budget)
		local mport sock=$d/drfs.sock cfg=$d/drfs.yaml
		mport=$(free_port)
		{
			echo "certs: $C/hq"
			echo "socket: $sock"
			echo "metrics:"
			echo "  listen: 127.0.0.1:$mport"
			echo "sites:"
			echo "  dr:"
			echo "    url: $URL"
			[[ $mode == daemon-budget ]] && echo "    bandwidth: $LINK_BPS"
			echo "volumes:"
			for v in "${VOLS[@]}"; do
				echo "  - name: $v"
				echo "    source: $d/$v.src"
				echo "    state: $d/$v.state"
				echo "    mountpoint: $d/$v"
				echo "    replica: dr"
				echo "    rpo: ${RPO[$v]}"
				echo "    tier: ${TIER[$v]}"
			done
		} >"$cfg"
		cp "$cfg" "$S/logs/$mode-drfs.yaml"
		"$DRFS" daemon --config "$cfg" >"$S/logs/$mode-daemon.log" 2>&1 &
		PIDS+=($!)
		wait_status "drfs daemon" --socket "$sock"
		sampler_args=(--socket "$sock")
		metrics_urls=(--metrics "http://127.0.0.1:$mport/metrics")
		logs=(--log "$S/logs/$mode-daemon.log")
		;;
	mount-*)
		for v in "${VOLS[@]}"; do
			local mport
			mport=$(free_port)
			"$DRFS" mount --source "$d/$v.src" --state "$d/$v.state" --volume "$v" --certs "$C/hq" \
				--replica "$URL" --rpo "${RPO[$v]}" --bwlimit "$(bwlimit_of "$mode" "$v")" \
				--metrics "127.0.0.1:$mport" "$d/$v" >"$S/logs/$mode-$v.log" 2>&1 &
			PIDS+=($!)
			sampler_args+=(--state "$v=$d/$v.state")
			metrics_urls+=(--metrics "http://127.0.0.1:$mport/metrics")
			logs+=(--log "$S/logs/$mode-$v.log")
		done
		for v in "${VOLS[@]}"; do
			for _ in $(seq 600); do
				mountpoint -q "$d/$v" && break
				sleep 0.1
			done
			mountpoint -q "$d/$v" || die "drfs mount $v did not mount: $(tail -n 3 "$S/logs/$mode-$v.log")"
			wait_status "drfs mount $v" --state "$d/$v.state"
		done
		;;
	esac
	python3 "$ROOT/bench/tiers.py" sample --out "$d/samples.jsonl" --iface "$HQIF" --drfs "$DRFS" \
		"${sampler_args[@]}" "${metrics_urls[@]}" >"$S/logs/$mode-sampler.log" 2>&1 &
	SAMPLER_PID=$!
	sleep 1.5
	# Made just before the writes: an RPO schedule ships a small change only when its lag
	# nears half the target, so the lag of every volume counts from here.
	for v in "${VOLS[@]}"; do truncate -s "$FILE_SIZE" "$d/$v/disk.img"; done
	local t0 t1 lo0
	lo0=$(loadavg)
	t0=$(now)
	log "$mode: writing for $DURATION s (gold ${WRATE[gold]}, silver ${WRATE[silver]}, bronze ${WRATE[bronze]} B/s)"
	FIO_PIDS=()
	for v in "${VOLS[@]}"; do
		fio --name="$v" --filename="$d/$v/disk.img" --rw=randwrite --bs=64k --rate="${WRATE[$v]}" \
			--direct=1 --ioengine=psync --refill_buffers --buffer_compress_percentage=0 --randrepeat=0 \
			--norandommap --size="$FILE_SIZE" --allow_file_create=0 --time_based --runtime="$DURATION" \
			--output-format=json >"$d/$v-fio.json" 2>"$S/logs/$mode-$v-fio.err" &
		FIO_PIDS+=($!)
	done
	local p rc=0
	for p in "${FIO_PIDS[@]}"; do wait "$p" || rc=1; done
	FIO_PIDS=()
	t1=$(now)
	((rc == 0)) || log "warning: $mode: a fio run failed: $(cat "$S/logs/$mode"-*-fio.err | tail -n 3)"
	sleep 1.5 # one more sample after the writes
	stop_pid "$SAMPLER_PID" 5
	SAMPLER_PID=""
	MODE_NOTE[$mode]="load average (1/5/15 min) at the start of the writes: $lo0; at their end: $(loadavg)"
	# What an operator sees at the end of the writes.
	if [[ $mode == daemon* ]]; then
		"$DRFS" status "${sampler_args[@]}" >"$S/logs/$mode-status.txt" 2>&1 || true
	else
		for v in "${VOLS[@]}"; do "$DRFS" status --state "$d/$v.state" >>"$S/logs/$mode-status.txt" 2>&1 || true; done
	fi
	stop_primaries
	stop_pid "$SERVE_PID" 10
	SERVE_PID=""

	local vargs=()
	for v in "${VOLS[@]}"; do
		vargs+=(--volume "$v:${RPO_S[$v]}:${TIER[$v]}:${WRATE[$v]}:$(bwlimit_of "$mode" "$v"):$d/$v-fio.json")
	done
	python3 "$ROOT/bench/tiers.py" summary --mode "$mode" --samples "$d/samples.jsonl" --start "$t0" --end "$t1" \
		--link-bps "$LINK_BPS" "${vargs[@]}" "${logs[@]}" --out "$S/result-$mode.json" --tsv "$TSV"
	RESULTS+=("$S/result-$mode.json")
	cp "$d/samples.jsonl" "$S/logs/$mode-samples.jsonl"
	[[ ${TIERS_KEEP:-0} == 1 ]] || rm -rf "$d"
	log "$mode: done"
	python3 "$ROOT/bench/tiers.py" report "$S/result-$mode.json" >&2
}

for m in $MODES; do run_mode "$m"; done

# ---- report ---------------------------------------------------------------
OUT=${TIERS_OUT:-$(results_path tiers)}
mkdir -p "$(dirname "$OUT")"
python3 "$ROOT/bench/tiers.py" report "${RESULTS[@]}" >"$S/table.md"
SUM=$((WRATE[gold] + WRATE[silver] + WRATE[bronze]))
{
	echo "# drfs tier benchmark $(date +%F)"
	echo
	echo "Three volumes of one host write more than the replica site's link carries: one \`drfs daemon\`"
	echo "sharing the link by tier and deadline against one \`drfs mount\` per volume with a fixed \`--bwlimit\`,"
	echo "in one run on one machine. MB = 10^6 bytes. Quote ratios and verdicts, not absolute numbers."
	echo
	cat "$S/table.md"
	echo
	echo "## Parameters"
	echo
	echo "- link: $RATE_MBIT Mbit/s = $LINK_BPS B/s each way, $RTT_MS ms round trip (TLS handshake with drfs serve over it: $HANDSHAKE); $SHAPING."
	echo "  Utilisation is tx bytes of $HQIF (hq->dr, with TCP/IP/TLS overhead) over $LINK_BPS B/s, counted over the"
	echo "  1-s intervals that began with work (some volume's pending bytes > 0 or lag > 0)."
	echo "- replication: HTTPS with mutual TLS, \`drfs certs init --site dr --host $DRIP\`,"
	echo "  \`drfs certs request --site hq\`, \`drfs certs sign --ca dr --site hq\`; \`drfs serve\` in netns $NS, one fresh replica directory per mode."
	echo "- volumes: gold RPO 30s tier 1 ${WRATE[gold]} B/s, silver RPO 5m tier 2 ${WRATE[silver]} B/s, bronze RPO 1h tier 3"
	echo "  ${WRATE[bronze]} B/s: sum $SUM B/s = $(python3 -c "print('%.0f' % (100 * $SUM / $LINK_BPS))") % of the link, gold+silver"
	echo "  $(python3 -c "print('%.0f' % (100 * (${WRATE[gold]} + ${WRATE[silver]}) / $LINK_BPS))") %."
	echo "- writes: \`fio --rw=randwrite --bs=64k --rate=R --direct=1 --ioengine=psync --refill_buffers"
	echo "  --buffer_compress_percentage=0 --norandommap --time_based --runtime=$DURATION\` per volume, all three at once, into a"
	echo "  $FILE_SIZE sparse file made by truncate through the mount (so nothing needed an initial sync)."
	echo "- modes: $MODES, ${DURATION} s of writes each, one after the other."
	echo "  - daemon: \`drfs daemon\`, site dr without \`bandwidth\` (capacity measured by the link)."
	echo "  - daemon-budget: the same with \`bandwidth: $LINK_BPS\`."
	echo "  - mount-equal: \`drfs mount --rpo R --bwlimit $((LINK_BPS / 3))\` each (the link in three equal shares)."
	echo "  - mount-prop: \`--bwlimit\` in proportion to the write rates: gold $(bwlimit_of mount-prop gold), silver $(bwlimit_of mount-prop silver), bronze $(bwlimit_of mount-prop bronze)."
	echo "- sampling: every second \`drfs status --json\` (\`--socket\` of the daemon; \`--state\` of each mount), the metrics endpoint(s)"
	echo "  and /sys/class/net/$HQIF/statistics/tx_bytes. \"drfs\": the volume's own \`lag_seconds\` and \`rpo_violations\` (counted"
	echo "  every 20 ms by the shipper) at the end of the writes. \"seqs\": the age of the oldest record the replica has not"
	echo "  acknowledged, from the samples' \`journal_seq\` and \`acked_seq\` (when journal_seq reached acked_seq+1, interpolated"
	echo "  between samples; one 64 KiB write is one record), independent of drfs's lag clock; its violations are the samples"
	echo "  where it went over the target (1-s resolution). \"lag passed RPO at\" is the first such sample; \"named at risk\""
	echo "  is the first sample with \`link.at_risk\`, its \`miss_in_seconds\` and the time that predicts (samples at risk / all)."
	echo "  Per-second samples: $(basename "${OUT%.md}")-samples.tsv."
	echo
	echo "## Notes"
	echo
	echo "- The machine has 2 cores and other engineers' tests may have been running: load average before the run $LOAD_START, after $(loadavg)."
	for m in $MODES; do
		echo "- $m: ${MODE_NOTE[$m]}."
		python3 - "$S/result-$m.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
if r["sample_errors"]:
    print("  - %d of %d status samples failed, e.g. %s" % (r["sample_errors"], r["samples"], "; ".join(r["first_errors"])[:300]))
L = r["link"]
if L.get("capacity_first_t") is not None:
    print("  - the link first reported a measured capacity %.0f s after the writes began" % L["capacity_first_t"])
for v in r["volumes"]:
    ln = v.get("last_link") or {}
    print("  - %s at the end: lag %.1f s, pending %.1f MB, planned %.2f MB/s, predicted lag %.0f s, at risk %s%s" % (
        v["name"], v["last_lag"] or 0, (v["last_pending"] or 0) / 1e6, (ln.get("planned_bytes_per_second") or 0) / 1e6,
        ln.get("predicted_lag_seconds") or 0, ln.get("at_risk"),
        (", miss in %.0f s" % ln["miss_in_seconds"]) if ln.get("miss_in_seconds") else ""))
lines = r["log_lines"]
if lines:
    print("  - %d log lines about RPO misses or risk; the first ones:" % len(lines))
    print()
    print("    ```")
    for l in lines[:6]:
        print("    " + l)
    print("    ```")
    print()
PY
		echo "  - status at the end of the writes:"
		echo
		echo '    ```'
		sed 's/^/    /' "$S/logs/$m-status.txt"
		echo '    ```'
		echo
	done
	echo
	machine_section "$S"
} >"$S/report.md" # written here first, so that the machine section's git state is not dirtied by it
cp "$S/report.md" "$OUT"
cp "$TSV" "${OUT%.md}-samples.tsv"

echo
cat "$S/table.md"
echo
echo "results: $OUT (samples: ${OUT%.md}-samples.tsv)"
