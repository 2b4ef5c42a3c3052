#!/usr/bin/env python3
"""Helpers of bench/tiers.sh (run by it, not by hand).

  relay   --listen HOST:PORT --to HOST:PORT --delay-ms D
          TCP relay that holds every chunk D ms in each direction: the link's delay when
          the kernel has no sch_netem (the rate is shaped by tbf on the veth).
  sample  --out FILE --iface IF --drfs BIN (--socket SOCK | --state NAME=DIR ...)
          [--metrics URL ...] [--interval S]
          one JSON line per interval until SIGTERM: wall time, tx/rx bytes of IF, every
          volume's lag, pending bytes, RPO violations and link status, and the
          drfs_shipper_wire_bytes_total of every volume.
  summary --mode M --samples FILE --start T --end T --link-bps B --out FILE
          --volume NAME:RPO_S:TIER:RATE:BWLIMIT:FIO_JSON ... [--log FILE ...] [--tsv FILE]
          one mode's numbers as JSON (and its samples appended to a TSV).
  report  RESULT.json ...
          the markdown tables of bench/results/DATE-tiers.md.
"""
import argparse
import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request


# ---- relay ------------------------------------------------------------------

async def _pipe(reader, writer, delay):
    q = asyncio.Queue(maxsize=256)  # at most 256 chunks (16 MiB) held: backpressure

    async def pump():
        while True:
            data = await reader.read(65536)
            await q.put((time.monotonic() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await q.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    await asyncio.gather(pump(), send())


async def _relay(listen, to, delay):
    lhost, lport = listen.rsplit(":", 1)
    thost, tport = to.rsplit(":", 1)

    async def handle(cr, cw):
        try:
            sr, sw = await asyncio.open_connection(thost, int(tport))
        except OSError:
            cw.close()
            return
        tasks = [asyncio.ensure_future(_pipe(cr, sw, delay)), asyncio.ensure_future(_pipe(sr, cw, delay))]
        try:
            await asyncio.gather(*tasks)
        except Exception:
            pass
        finally:
            for t in tasks:
                t.cancel()
            for w in (cw, sw):
                w.close()

    srv = await asyncio.start_server(handle, lhost, int(lport), reuse_address=True)
    print("relaying", flush=True)
    async with srv:
        await srv.serve_forever()


def cmd_relay(a):
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(_relay(a.listen, a.to, a.delay_ms / 1000.0))


# ---- sample -----------------------------------------------------------------

def _read_int(path):
    with open(path) as f:
        return int(f.read())


_SERIES = re.compile(r'^(\w+)\{([^}]*)\}\s+(\S+)')


def _scrape(url):
    """{volume: {metric: value}} of the drfs_shipper_* series labelled by volume."""
    out = {}
    try:
        body = urllib.request.urlopen(url, timeout=2).read().decode()
    except Exception:
        return out
    for line in body.splitlines():
        m = _SERIES.match(line)
        if not m or not m.group(1).startswith(("drfs_shipper_wire_bytes_total", "drfs_shipper_rpo_violations_total",
                                               "drfs_link_wire_bytes_total")):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        if "volume" in labels:
            out.setdefault(labels["volume"], {})[m.group(1)] = float(m.group(3))
    return out


def _vol(st):
    """The fields a sample keeps of one volume's flat status object."""
    if not st:
        return None
    keep = ("lag_seconds", "pending_bytes", "rpo_violations", "replication_state", "acked_seq", "journal_seq",
            "last_error")
    v = {k: st.get(k) for k in keep}
    v["link"] = st.get("link")
    return v


def _status(drfs, args):
    p = subprocess.run([drfs, "status", "--json"] + args, capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise RuntimeError((p.stderr or p.stdout).strip().replace("\n", " "))
    return json.loads(p.stdout)


def cmd_sample(a):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    states = [s.split("=", 1) for s in a.state]
    sysdir = "/sys/class/net/%s/statistics/" % a.iface
    nxt = time.monotonic()
    with open(a.out, "w", buffering=1) as f:
        while not stop:
            rec = {"t": time.time(), "tx": _read_int(sysdir + "tx_bytes"), "rx": _read_int(sysdir + "rx_bytes"),
                   "volumes": {}, "errors": []}
            try:
                if a.socket:
                    st = _status(a.drfs, ["--socket", a.socket])
                    for v in st.get("volumes", []):
                        rec["volumes"][v["name"]] = _vol(v.get("status"))
                    rec["links"] = [{k: l.get(k) for k in ("site", "capacity_bytes_per_second",
                                                          "measured_bytes_per_second", "busy_ratio",
                                                          "budget_bytes_per_second")}
                                    for l in st.get("links", [])]
                else:
                    for name, d in states:
                        rec["volumes"][name] = _vol(_status(a.drfs, ["--state", d]))
            except Exception as e:  # one failed sample is recorded, not fatal
                rec["errors"].append(str(e))
            rec["metrics"] = {}
            for url in a.metrics:
                rec["metrics"].update(_scrape(url))
            rec["t_end"] = time.time()
            f.write(json.dumps(rec) + "\n")
            nxt += a.interval
            while not stop and time.monotonic() < nxt:
                time.sleep(min(0.05, max(0, nxt - time.monotonic())))


# ---- summary ----------------------------------------------------------------

def _pct(v, p):
    v = sorted(v)
    if not v:
        return None
    return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]


def _seq_lags(samples, name):
    """{sample index: age of the oldest record the replica has not acknowledged}, from the
    journal_seq and acked_seq of the samples: the time journal_seq reached acked_seq+1,
    interpolated between the two samples around it (the writes are steady). Independent of
    drfs's own lag clock."""
    pts = [(s["t"], s["volumes"][name]["journal_seq"]) for s in samples
           if (s["volumes"].get(name) or {}).get("journal_seq") is not None]
    out = {}
    for i, s in enumerate(samples):
        st = s["volumes"].get(name)
        if not st or st.get("journal_seq") is None or st.get("acked_seq") is None:
            continue
        want = st["acked_seq"] + 1
        if st["journal_seq"] < want:
            out[i] = 0.0
            continue
        born = pts[0][0]
        for (t0, j0), (t1, j1) in zip(pts, pts[1:]):
            if j1 >= want:
                born = t0 if j0 >= want else t0 + (want - j0) / (j1 - j0) * (t1 - t0)
                break
        out[i] = max(0.0, s["t"] - born)
    return out


def cmd_summary(a):
    samples = [json.loads(l) for l in open(a.samples)]
    win = [s for s in samples if a.start <= s["t"] <= a.end + 0.5]
    index = {id(s): i for i, s in enumerate(samples)}
    vols = []
    for spec in a.volume:
        name, rpo, tier, rate, bwlimit, fio = spec.split(":", 5)
        vols.append({"name": name, "rpo": float(rpo), "tier": int(tier), "rate": int(rate),
                     "bwlimit": int(bwlimit), "fio": fio})
    res = {"mode": a.mode, "start": a.start, "end": a.end, "duration": a.end - a.start,
           "link_bps": a.link_bps, "samples": len(win),
           "sample_errors": sum(1 for s in win if s["errors"]),
           "first_errors": [e for s in win for e in s["errors"]][:3], "volumes": [], "link": {}}

    for v in vols:
        r = dict(v)
        try:
            raw = open(v["fio"]).read()
            j = json.loads(raw[raw.index("{"):])["jobs"][0]
            r["written"] = j["write"]["io_bytes"]
            r["fio_error"] = j.get("error", 0)
        except Exception as e:
            r["written"], r["fio_error"] = None, str(e)
        seq_lag = _seq_lags(samples, v["name"])
        lags, crossed, over = [], None, False
        slags, scrossed, sover, sviol, sover_secs, prev_t = [], None, False, 0, 0.0, None
        predicted = []  # (t, t + miss_in) of the samples at risk
        risk_first, risk_samples, max_pending = None, 0, 0
        viol_first = viol_last = None
        wire_first = wire_last = None
        for s in win:
            st = s["volumes"].get(v["name"])
            rel = s["t"] - a.start
            sl = seq_lag.get(index[id(s)])
            if sl is not None:
                slags.append(sl)
                if sl > v["rpo"] and not sover:
                    sviol += 1
                    scrossed = rel if scrossed is None else scrossed
                sover = sl > v["rpo"]
                if sover and prev_t is not None:
                    sover_secs += s["t"] - prev_t
                prev_t = s["t"]
            m = s.get("metrics", {}).get(v["name"], {})
            w = m.get("drfs_shipper_wire_bytes_total")
            if w is not None:
                wire_first = w if wire_first is None else wire_first
                wire_last = w
            if not st:
                continue
            lag = st["lag_seconds"] or 0.0
            lags.append(lag)
            max_pending = max(max_pending, st["pending_bytes"] or 0)
            if viol_first is None:
                viol_first = st["rpo_violations"]
            viol_last = st["rpo_violations"]
            if lag > v["rpo"] and not over and crossed is None:
                crossed = rel
            over = lag > v["rpo"]
            ln = st.get("link") or {}
            if ln.get("at_risk"):
                risk_samples += 1
                if ln.get("miss_in_seconds"):
                    predicted.append((rel, rel + ln["miss_in_seconds"]))
                if risk_first is None:
                    risk_first = {"t": rel, "miss_in": ln.get("miss_in_seconds"),
                                  "predicted_lag": ln.get("predicted_lag_seconds"),
                                  "planned_bps": ln.get("planned_bytes_per_second"),
                                  "write_bps": ln.get("write_bytes_per_second")}
        r.update({"lag_p50": _pct(lags, 0.5), "lag_p99": _pct(lags, 0.99), "lag_max": max(lags) if lags else None,
                  "violations": viol_last, "violations_at_start": viol_first, "lag_passed_rpo_at": crossed,
                  "seq_lag_p50": _pct(slags, 0.5), "seq_lag_p99": _pct(slags, 0.99),
                  "seq_lag_max": max(slags) if slags else None, "seq_violations": sviol,
                  "seq_lag_passed_rpo_at": scrossed, "seq_seconds_over": sover_secs,
                  # When the samples at risk before the real crossing said the miss would come.
                  "predicted_miss_at": _pct([p for t, p in predicted if scrossed is None or t < scrossed], 0.5),
                  "at_risk_first": risk_first, "at_risk_samples": risk_samples, "max_pending": max_pending,
                  "shipped": (wire_last - wire_first) if wire_first is not None else None})
        last = next((s for s in reversed(win) if s["volumes"].get(v["name"])), None)
        r["last_link"] = (last["volumes"][v["name"]] or {}).get("link") if last else None
        r["last_lag"] = (last["volumes"][v["name"]] or {}).get("lag_seconds") if last else None
        r["last_pending"] = (last["volumes"][v["name"]] or {}).get("pending_bytes") if last else None
        res["volumes"].append(r)

    # Link: bytes on the shaped interface over the intervals that start with work waiting.
    busy_bytes, busy_secs, per_sec, work_secs_all = 0, 0.0, [], 0
    for p, s in zip(win, win[1:]):
        work = any(st and ((st["pending_bytes"] or 0) > 0 or (st["lag_seconds"] or 0) > 0)
                   for st in p["volumes"].values())
        dt = s["t"] - p["t"]
        if not work or dt <= 0:
            continue
        busy_bytes += s["tx"] - p["tx"]
        busy_secs += dt
        per_sec.append((s["tx"] - p["tx"]) / dt / a.link_bps)
    links = [s["links"][0] for s in win if s.get("links")]
    res["link"] = {
        "work_seconds": busy_secs,
        "util": busy_bytes / busy_secs / a.link_bps if busy_secs else None,
        "tx_bps": busy_bytes / busy_secs if busy_secs else None,
        "util_p10": _pct(per_sec, 0.10), "util_p50": _pct(per_sec, 0.5), "util_min": min(per_sec) if per_sec else None,
        "seconds_below_50": sum(1 for u in per_sec if u < 0.5),
        "capacity_end": links[-1]["capacity_bytes_per_second"] if links else None,
        "measured_end": links[-1]["measured_bytes_per_second"] if links else None,
        "budget": links[-1]["budget_bytes_per_second"] if links else None,
        "busy_ratio_mean": sum(l["busy_ratio"] for l in links) / len(links) if links else None,
        "capacity_first_t": next((s["t"] - a.start for s in win if s.get("links")
                                  and s["links"][0]["measured_bytes_per_second"]), None),
    }
    # Log lines the operator would see: RPO misses and risk announcements.
    res["log_lines"] = []
    for path in a.log:
        try:
            for line in open(path, errors="replace"):
                if re.search(r"RPO target", line):
                    res["log_lines"].append(line.rstrip()[:400])
        except OSError:
            pass
    json.dump(res, open(a.out, "w"), indent=1)
    if a.tsv:
        names = [v["name"] for v in vols]
        with open(a.tsv, "a") as f:
            if f.tell() == 0:
                f.write("\t".join(["mode", "t", "link_busy"] + ["%s_%s" % (n, k) for n in names
                                                               for k in ("lag", "seq_lag", "pending", "at_risk")]) + "\n")
            lagmap = {n: _seq_lags(samples, n) for n in names}
            for p, s in zip(win, win[1:]):
                row = [a.mode, "%.1f" % (s["t"] - a.start),
                       "%.3f" % ((s["tx"] - p["tx"]) / max(1e-9, s["t"] - p["t"]) / a.link_bps)]
                for n in names:
                    st = s["volumes"].get(n) or {}
                    sl = lagmap[n].get(index[id(s)])
                    row += ["%.1f" % (st.get("lag_seconds") or 0), "n/a" if sl is None else "%.1f" % sl,
                            str(st.get("pending_bytes") or 0),
                            "1" if (st.get("link") or {}).get("at_risk") else "0"]
                f.write("\t".join(row) + "\n")


# ---- report -----------------------------------------------------------------

def _f(x, fmt="%.1f", none="n/a"):
    return none if x is None else fmt % x


def _mb(x):
    return _f(None if x is None else x / 1e6, "%.2f")


def cmd_report(a):
    rs = [json.load(open(p)) for p in a.results]
    print("| mode | volume | RPO / tier | limit MB/s | written MB/s | shipped MB/s | RPO violations drfs / seqs "
          "| s over RPO (seqs) | lag drfs p50 / p99 / max s | lag seqs p50 / p99 / max s | lag (seqs) passed RPO at "
          "| named at risk: first (miss in) | predicted miss at (median) |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|---|---|---|---|")
    for r in rs:
        d = r["duration"]
        for v in r["volumes"]:
            rpo = "%gs" % v["rpo"] if v["rpo"] < 120 else ("%gmin" % (v["rpo"] / 60) if v["rpo"] < 3600 else "%gh" % (v["rpo"] / 3600))
            limit = _mb(v["bwlimit"]) if v["bwlimit"] else "-"
            crossed = "t=%.0fs" % v["seq_lag_passed_rpo_at"] if v["seq_lag_passed_rpo_at"] is not None else "never"
            rf = v["at_risk_first"]
            risk = ("t=%.0fs (%.0fs); %d/%d samples" % (rf["t"], rf["miss_in"] or 0, v["at_risk_samples"], r["samples"])
                    if rf else "no")
            pm = "t=%.0fs" % v["predicted_miss_at"] if v.get("predicted_miss_at") is not None else "-"
            viol = v["violations"]
            if viol is not None and v["violations_at_start"]:
                viol = "%d (%d before)" % (viol, v["violations_at_start"])
            bad = lambda x: "**%s**" % x if v["name"] == "gold" and x not in (0, None) else ("n/a" if x is None else x)
            print("| %s | %s | %s / %d | %s | %s | %s | %s / %s | %.0f | %s / %s / %s | %s / %s / %s | %s | %s | %s |" % (
                r["mode"], v["name"], rpo, v["tier"], limit,
                _mb(v["written"] / d if v["written"] is not None else None),
                _mb(v["shipped"] / d if v["shipped"] is not None else None),
                bad(viol), bad(v["seq_violations"]), v["seq_seconds_over"],
                _f(v["lag_p50"]), _f(v["lag_p99"]), _f(v["lag_max"]),
                _f(v["seq_lag_p50"]), _f(v["seq_lag_p99"]), _f(v["seq_lag_max"]), crossed, risk, pm))
    print()
    print("| mode | link busy while work waits | seconds with work | per-second busy p10 / p50 / min "
          "| seconds < 50 % | shipped (all) MB/s | drfs capacity / measured MB/s (end) | drfs busy_ratio mean "
          "| gold 0 violations (drfs and seqs) | link >= 90 % |")
    print("|---|---:|---:|---|---:|---:|---|---:|---|---|")
    for r in rs:
        L = r["link"]
        gold = next((v for v in r["volumes"] if v["name"] == "gold"), None)
        gold_ok = "n/a" if not gold or gold["violations"] is None else (
            "yes" if gold["violations"] == 0 and gold["seq_violations"] == 0 else "**no**")
        util_ok = "n/a" if L["util"] is None else ("yes" if L["util"] >= 0.9 else "**no**")
        shipped = sum(v["shipped"] or 0 for v in r["volumes"]) / r["duration"]
        cap = "%s / %s" % (_mb(L["capacity_end"]), _mb(L["measured_end"])) if L["capacity_end"] is not None else "-"
        print("| %s | %s | %.0f | %s / %s / %s | %d | %s | %s | %s | %s | %s |" % (
            r["mode"], _f(None if L["util"] is None else 100 * L["util"], "%.1f %%"), L["work_seconds"],
            _f(None if L["util_p10"] is None else 100 * L["util_p10"], "%.0f %%"),
            _f(None if L["util_p50"] is None else 100 * L["util_p50"], "%.0f %%"),
            _f(None if L["util_min"] is None else 100 * L["util_min"], "%.0f %%"),
            L["seconds_below_50"], _mb(shipped), cap,
            _f(L["busy_ratio_mean"], "%.2f", "-"), gold_ok, util_ok))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("relay")
    p.add_argument("--listen", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--delay-ms", type=float, default=20)
    p = sub.add_parser("sample")
    p.add_argument("--out", required=True)
    p.add_argument("--iface", required=True)
    p.add_argument("--drfs", required=True)
    p.add_argument("--socket")
    p.add_argument("--state", action="append", default=[])
    p.add_argument("--metrics", action="append", default=[])
    p.add_argument("--interval", type=float, default=1.0)
    p = sub.add_parser("summary")
    p.add_argument("--mode", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--link-bps", type=float, required=True)
    p.add_argument("--volume", action="append", default=[])
    p.add_argument("--log", action="append", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--tsv")
    p = sub.add_parser("report")
    p.add_argument("results", nargs="+")
    a = ap.parse_args()
    {"relay": cmd_relay, "sample": cmd_sample, "summary": cmd_summary, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
