#!/usr/bin/env python3
"""Turns the raw measurements of packaging/bench/live.sh into figures: prints
the comparison table and the short-lived / latency / memory lines, and writes
everything as JSON with --out FILE.

Usage: report.py RAW_DIR [--out FILE]

Each tool counts bytes its own way, so each is compared with the link in its
own unit (figures from the interface's counters, `ip -s -j link`, which count
whole Ethernet frames, 14 header bytes each; IPv4 only, no options in the lab):
  netmond    layer-3 bytes (IP header + payload)  = link bytes - 14 x packets
  bandwhich  IP payload (TCP/UDP header + data)   = link bytes - 34 x packets
  nethogs    whole frames (pcap wire length)      = link bytes
The generator's count (iperf3's sent payload) is brought to the same unit by
adding each packet's headers: IPv4 20 + TCP 20 + timestamps 12 = 52 bytes for
layer 3 (32 for bandwhich's unit, 66 for whole frames), times the packets the
link sent in the run (the iperf3 client is the only sender in the namespace),
plus one MSS (1448 bytes at the lab's MTU 1500) per retransmitted segment that
iperf3 reports: retransmissions cross the wire again but are not in iperf3's
sent count (0.05% of a run at ~15k retransmits).

netmond is measured once per attribution mode, as tools named
`netmond-ebpf` and `netmond-socket-lookup` (plain `netmond` in raw dirs of
older runs). In eBPF mode most of its cost is kernel time in the sender's
context, so besides the monitor's own CPU each run gives the whole machine's
non-idle CPU per GB (/proc/stat over the same window) and its margin over
the paired iperf3-alone run.
"""

import argparse
import glob
import json
import os
import re
import statistics
import sys

ETH = 14
IP4 = 20
TCP_TS = 32  # TCP header 20 + timestamp option 12 (Linux default)
MSS = 1500 - IP4 - TCP_TS  # lab veth MTU 1500
OVERHEAD = {"l3": ETH, "l4": ETH + IP4, "frame": 0}
HDR = {"l3": IP4 + TCP_TS, "l4": TCP_TS, "frame": ETH + IP4 + TCP_TS}
UNIT = {"netmond": "l3", "bandwhich": "l4", "nethogs": "frame"}


def base(tool):
    """The program a tool name runs: netmond-ebpf and netmond-socket-lookup
    are both netmond."""
    return "netmond" if tool.startswith("netmond") else tool
UNIT_TEXT = {"l3": "layer-3 bytes", "l4": "IP payload bytes", "frame": "frame bytes"}


def load(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_text(path, default=""):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return default


def read_int(path):
    t = read_text(path).strip()
    return int(t) if t else None


def pct(a, b):
    if a is None or not b:
        return None
    return 100.0 * a / b


def link(path):
    """tx/rx bytes and packets of the interface (`ip -s -j link show`)."""
    d = load(path)
    if not d:
        return None
    s = d[0].get("stats64") or d[0].get("stats")
    return {
        "tx_bytes": s["tx"]["bytes"], "tx_packets": s["tx"]["packets"],
        "rx_bytes": s["rx"]["bytes"], "rx_packets": s["rx"]["packets"],
    }


def link_delta(a, b):
    la, lb = link(a), link(b)
    if not la or not lb:
        return None
    d = {k: lb[k] - la[k] for k in la}
    d["bytes"] = d["tx_bytes"] + d["rx_bytes"]
    d["packets"] = d["tx_packets"] + d["rx_packets"]
    return d


def in_unit(d, unit, direction=""):
    """Link bytes of a delta in a tool's unit; direction '' (both), tx, rx."""
    b = d[f"{direction}_bytes" if direction else "bytes"]
    p = d[f"{direction}_packets" if direction else "packets"]
    return b - OVERHEAD[unit] * p


def proc_status(path):
    t = read_text(path)
    out = {}
    # RssFile is mostly libpcap's capture ring (capture.buffer_mib, mmapped
    # from the kernel), RssAnon the daemon's own heap: reported apart.
    for key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", t, re.M)
        out[key] = int(m.group(1)) if m else None
    return out


def mb(kb):
    return None if kb is None else kb / 1024.0


def iperf(path):
    d = load(path)
    if not d or "end" not in d:
        return None
    e = d["end"]
    return {
        "gbps": e["sum_received"]["bits_per_second"] / 1e9,
        "sent_bytes": e["sum_sent"]["bytes"],
        "received_bytes": e["sum_received"]["bytes"],
        "retransmits": e["sum_sent"].get("retransmits"),
    }


def cpu_secs(a, b, clk):
    x, y = read_int(a), read_int(b)
    if x is None or y is None:
        return None
    return (y - x) / clk


def machine_ticks(path):
    """(non-idle, all) clock ticks of the machine from a saved "cpu" line of
    /proc/stat: user nice system idle iowait irq softirq steal [guest...];
    guest time is already inside user, idle and iowait are not busy."""
    f = read_text(path).split()
    if len(f) < 9 or f[0] != "cpu":
        return None
    v = [int(x) for x in f[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7], sum(v))


def machine_cpu(a, b, clk):
    """Non-idle CPU seconds of the whole machine (all CPUs) between two
    snapshots, and the busy share of the window."""
    x, y = machine_ticks(a), machine_ticks(b)
    if x is None or y is None:
        return None, None
    busy, total = y[0] - x[0], y[1] - x[1]
    return busy / clk, (busy / total if total else None)


def bpf_memlock(path):
    """Kernel memory of netmond's eBPF maps and programs (memlock lines of the
    fdinfo of its bpf descriptors, bytes) and how many maps / programs."""
    t = read_text(path, None)
    if t is None:
        return None
    maps = len(re.findall(r"^map_type:", t, re.M))
    progs = len(re.findall(r"^prog_type:", t, re.M))
    mem = sum(int(x) for x in re.findall(r"^memlock:\s+(\d+)", t, re.M))
    return {"maps": maps, "programs": progs, "memlock_bytes": mem}


def iperf_cpu(path):
    """iperf3's own CPU figures (% of one CPU: client, server)."""
    d = load(path) or {}
    c = (d.get("end") or {}).get("cpu_utilization_percent") or {}
    return {"client_total_pct": c.get("host_total"), "client_system_pct": c.get("host_system"),
            "server_total_pct": c.get("remote_total")}


# ------------------------------------------------------------ tool output


def nethogs_totals(path):
    """nethogs -t -v 2: blocks of "prog/pid/uid<TAB>sent<TAB>received" with
    cumulative bytes per process. Returns {(prog, pid): [sent, recv]} with
    the largest value seen (a process's row goes away some time after it
    exits, its last totals stay in the log)."""
    tot = {}
    for line in read_text(path).splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        key, sent, recv = parts
        bits = key.rsplit("/", 2)
        if len(bits) != 3:
            continue
        prog, pid = os.path.basename(bits[0]) or bits[0], bits[1]
        try:
            s, r = float(sent), float(recv)
        except ValueError:
            continue
        cur = tot.setdefault((prog, pid), [0.0, 0.0])
        cur[0], cur[1] = max(cur[0], s), max(cur[1], r)
    return tot


BW_PROC = re.compile(r'^process: <\d+> "(.*)" up/down Bps: (\d+)/(\d+) connections: \d+')


def bandwhich_totals(path):
    """bandwhich --raw: each second, one `process:` line per process with
    bytes per second averaged over the last 5 one-second samples. With at
    least 5 idle seconds before and after the traffic (live.sh waits), the
    sum of the printed values over all refreshes equals the bytes seen.
    Returns {name: [up, down]}."""
    tot = {}
    for line in read_text(path).splitlines():
        m = BW_PROC.match(line)
        if not m:
            continue
        cur = tot.setdefault(m.group(1), [0, 0])
        cur[0] += int(m.group(2))
        cur[1] += int(m.group(3))
    return tot


# --------------------------------------------------------------- phases


def netmond_iface(status, iface):
    for i in (status or {}).get("interfaces", []):
        if i.get("name") == iface:
            return i.get("capture") or {}
    return None


def top_rows(top):
    return (top or {}).get("processes", [])


def bulk(raw, meta, tool):
    d = os.path.join(raw, f"bulk-{tool}")
    a = os.path.join(raw, f"alone-{tool}")
    clk = meta["clk_tck"]
    ip_alone, ip_mon = iperf(f"{a}/iperf.json"), iperf(f"{d}/iperf.json")
    r = {"tool": tool, "alone_gbps": ip_alone and ip_alone["gbps"],
         "gbps": ip_mon and ip_mon["gbps"], "iperf3_sent_bytes": ip_mon and ip_mon["sent_bytes"],
         "iperf3_retransmits": ip_mon and ip_mon["retransmits"]}
    r["slowdown_pct"] = (100.0 * (r["alone_gbps"] - r["gbps"]) / r["alone_gbps"]
                         if r["alone_gbps"] and r["gbps"] is not None else None)
    ld = link_delta(f"{d}/link_before.json", f"{d}/link_after.json")
    r["link"] = ld
    unit = UNIT[base(tool)]
    r["unit"] = UNIT_TEXT[unit]
    cpu = cpu_secs(f"{d}/cpu_before", f"{d}/cpu_after", clk)
    r["cpu_secs"] = cpu
    r["gb_observed"] = ld and ld["bytes"] / 1e9  # link bytes, the same for every tool
    r["cpu_s_per_gb"] = cpu / r["gb_observed"] if cpu is not None and ld and ld["bytes"] else None
    # The whole machine, this run and its paired alone run (same window).
    mc, busy = machine_cpu(f"{d}/stat_before", f"{d}/stat_after", clk)
    r["machine_cpu_secs"], r["machine_busy_share"] = mc, busy
    r["machine_cpu_s_per_gb"] = mc / r["gb_observed"] if mc is not None and ld and ld["bytes"] else None
    la = link_delta(f"{a}/link_before.json", f"{a}/link_after.json")
    amc, abusy = machine_cpu(f"{a}/stat_before", f"{a}/stat_after", clk)
    r["alone_machine_cpu_secs"], r["alone_machine_busy_share"] = amc, abusy
    r["alone_machine_cpu_s_per_gb"] = amc / (la["bytes"] / 1e9) if amc is not None and la and la["bytes"] else None
    r["marginal_machine_cpu_s_per_gb"] = (
        r["machine_cpu_s_per_gb"] - r["alone_machine_cpu_s_per_gb"]
        if r["machine_cpu_s_per_gb"] is not None and r["alone_machine_cpu_s_per_gb"] is not None else None)
    r["iperf3_cpu"] = iperf_cpu(f"{d}/iperf.json")
    r["alone_iperf3_cpu"] = iperf_cpu(f"{a}/iperf.json")
    ps = proc_status(f"{d}/proc_status")
    r["peak_rss_mb"] = mb(ps["VmHWM"])
    r["rss_mb"] = mb(ps["VmRSS"])
    r["rss_anon_mb"] = mb(ps["RssAnon"])
    r["rss_file_mb"] = mb(ps["RssFile"])
    pid = str(read_int(f"{d}/iperf.pid"))
    # The generator's count in this tool's unit (see the module doc).
    expected_up = None
    if ip_mon and ld:
        expected_up = (ip_mon["sent_bytes"] + MSS * (ip_mon["retransmits"] or 0)
                       + HDR[unit] * ld["tx_packets"])
    r["expected_iperf3_up_bytes"] = expected_up
    link_unit = in_unit(ld, unit) if ld else None
    r["link_bytes_in_unit"] = link_unit
    if base(tool) == "netmond":
        r["attribution"] = (load(f"{d}/status_start.json") or {}).get("attribution")
        r["bpf"] = bpf_memlock(f"{d}/bpf_fdinfo")
        b = netmond_iface(load(f"{d}/status_before.json"), meta["iface"])
        e = netmond_iface(load(f"{d}/status_after.json"), meta["iface"])
        if b is not None and e is not None:
            cnt = {k: e.get(k, 0) - b.get(k, 0) for k in
                   ("bytes_counted", "packets_counted", "packets_received", "packets_dropped",
                    "packets_if_dropped", "packets_malformed")}
            r["capture"] = cnt
            r["counted_bytes"] = cnt["bytes_counted"]
            r["counted_pct"] = pct(cnt["bytes_counted"], link_unit)
            r["counted_pct_of_link_bytes_incl_ethernet"] = pct(cnt["bytes_counted"], ld["bytes"]) if ld else None
            r["counted_packets_pct"] = pct(cnt["packets_counted"], ld["packets"]) if ld else None
            r["kernel_drops"] = cnt["packets_dropped"] + cnt["packets_if_dropped"]
        row = next((p for p in top_rows(load(f"{d}/top.json")) if str(p.get("pid")) == pid), None)
        r["credited_up_bytes"] = row and row.get("up_bytes")
        r["credited_down_bytes"] = row and row.get("down_bytes")
        r["credited_pct"] = pct(r["credited_up_bytes"], expected_up)
        r["credited_pct_of_link_tx"] = pct(r["credited_up_bytes"], in_unit(ld, unit, "tx")) if ld else None
        r["credited_pct_of_payload"] = pct(r["credited_up_bytes"], ip_mon and ip_mon["sent_bytes"])
    elif tool == "nethogs":
        tot = nethogs_totals(f"{d}/tool.log")
        counted = sum(s + rv for s, rv in tot.values())
        r["counted_bytes"] = counted
        r["counted_pct"] = pct(counted, link_unit)
        mine = [v for (prog, p), v in tot.items() if p == pid]
        r["credited_up_bytes"] = mine[0][0] if mine else 0
        r["credited_pct"] = pct(r["credited_up_bytes"], expected_up)
        r["rows"] = {f"{k[0]}/{k[1]}": v for k, v in tot.items()}
    elif tool == "bandwhich":
        tot = bandwhich_totals(f"{d}/tool.log")
        counted = sum(u + dn for u, dn in tot.values())
        r["counted_bytes"] = counted
        r["counted_pct"] = pct(counted, link_unit)
        # bandwhich's raw output names processes, not pids; iperf3 is the
        # only iperf3 in the monitored namespace (the server is in the peer's).
        r["credited_up_bytes"] = tot.get("iperf3", [0, 0])[0]
        r["credited_pct"] = pct(r["credited_up_bytes"], expected_up)
        r["rows"] = tot
    return r


def short(raw, meta, tool):
    d = os.path.join(raw, f"short-{tool}")
    if not os.path.isdir(d):
        return None
    unit = UNIT[base(tool)]
    clk = meta["clk_tck"]
    r = {"tool": tool, "unit": UNIT_TEXT[unit]}
    curls = [ln.split() for ln in read_text(f"{d}/curl.txt").splitlines() if ln.strip()]
    ok = [c for c in curls if len(c) == 2 and c[0] == "200"]
    r["curl_runs"] = len(curls)
    r["curl_ok"] = len(ok)
    r["curl_payload_bytes"] = sum(int(c[1]) for c in ok)
    r["curl_expected_payload"] = meta["curl_runs"] * meta["file_size"]
    l1 = link_delta(f"{d}/link_0.json", f"{d}/link_1.json")
    l2 = link_delta(f"{d}/link_1.json", f"{d}/link_2.json")
    r["curl_link_bytes_in_unit"] = l1 and in_unit(l1, unit)
    r["rr_link_bytes_in_unit"] = l2 and in_unit(l2, unit)
    rr = load(f"{d}/rr.json", {}) or {}
    r["rr"] = rr
    r["cpu_secs"] = cpu_secs(f"{d}/cpu_0", f"{d}/cpu_2", clk)
    # Same workload for every tool: the machine's busy seconds compare them.
    r["machine_cpu_secs"], r["machine_busy_share"] = machine_cpu(f"{d}/stat_0", f"{d}/stat_2", clk)
    ps = proc_status(f"{d}/proc_status")
    r["peak_rss_mb"] = mb(ps["VmHWM"])
    rr_pid = str(rr.get("pid"))
    if base(tool) == "netmond":
        top = load(f"{d}/top.json")
        rows = top_rows(top)
        cu = [p for p in rows if p.get("name") == "curl"]
        r["curl_processes"] = len(cu)
        r["curl_credited_bytes"] = sum(p.get("up_bytes", 0) + p.get("down_bytes", 0) for p in cu)
        r["curl_credited_down_bytes"] = sum(p.get("down_bytes", 0) for p in cu)
        row = next((p for p in rows if str(p.get("pid")) == rr_pid), None)
        r["rr_credited_bytes"] = row and row.get("up_bytes", 0) + row.get("down_bytes", 0)
        un = (top or {}).get("unattributed") or {}
        r["unattributed_bytes"] = un.get("up_bytes", 0) + un.get("down_bytes", 0)
        r["unattributed_reasons"] = {x.get("reason"): x.get("up_bytes", 0) + x.get("down_bytes", 0)
                                     for x in un.get("reasons", [])}
        st = load(f"{d}/status.json") or {}
        r["attribution"] = st.get("attribution")
        r["attribution_p50_us"] = st.get("attribution_p50_us")
        r["attribution_p99_us"] = st.get("attribution_p99_us")
        r["coverage"] = st.get("coverage")
    elif tool == "nethogs":
        tot = nethogs_totals(f"{d}/tool.log")
        cu = {k: v for k, v in tot.items() if k[0] == "curl"}
        r["curl_processes"] = len(cu)
        r["curl_credited_bytes"] = sum(s + rv for s, rv in cu.values())
        r["curl_credited_down_bytes"] = sum(rv for _, rv in cu.values())
        mine = [v for (prog, p), v in tot.items() if p == rr_pid]
        r["rr_credited_bytes"] = sum(mine[0]) if mine else 0
        r["counted_bytes"] = sum(s + rv for s, rv in tot.values())
        r["rows"] = {f"{k[0]}/{k[1]}": v for k, v in tot.items() if k[0] != "curl"}
    elif tool == "bandwhich":
        tot = bandwhich_totals(f"{d}/tool.log")
        r["curl_credited_bytes"] = sum(tot.get("curl", [0, 0]))
        r["curl_credited_down_bytes"] = tot.get("curl", [0, 0])[1]
        # By name: the only python in the monitored namespace is the client.
        r["rr_credited_bytes"] = sum(sum(v) for k, v in tot.items() if k.startswith("python"))
        r["counted_bytes"] = sum(u + dn for u, dn in tot.values())
        r["rows"] = tot
    r["curl_credited_pct"] = pct(r["curl_credited_bytes"], r["curl_link_bytes_in_unit"])
    r["curl_credited_down_pct_of_payload"] = pct(r["curl_credited_down_bytes"], r["curl_expected_payload"])
    r["rr_credited_pct"] = pct(r["rr_credited_bytes"], r["rr_link_bytes_in_unit"])
    return r


def memory(raw, meta):
    d = os.path.join(raw, "memory")
    if not os.path.isdir(d):
        return None
    r = {"tool": meta.get("memory_tool", "netmond")}
    idle = proc_status(f"{d}/proc_idle")
    k10 = proc_status(f"{d}/proc_10k")
    after = proc_status(f"{d}/proc_status")
    s10 = load(f"{d}/status_10k.json") or {}
    sa = load(f"{d}/status_after.json") or {}
    r["idle_rss_mb"] = mb(idle["VmRSS"])
    r["flows_10k_active"] = s10.get("flows_active")
    r["flows_10k_rss_mb"] = mb(k10["VmRSS"])
    r["flows_10k_hwm_mb"] = mb(k10["VmHWM"])
    r["flows_10k_anon_mb"] = mb(k10["RssAnon"])
    r["flows_10k_file_mb"] = mb(k10["RssFile"])
    r["idle_anon_mb"] = mb(idle["RssAnon"])
    r["flood_anon_after_mb"] = mb(after["RssAnon"])
    r["flood"] = load(f"{d}/flood.json")
    r["flood_rss_after_mb"] = mb(after["VmRSS"])
    r["flood_hwm_mb"] = mb(after["VmHWM"])
    r["flows_active_after"] = sa.get("flows_active")
    r["flows_evicted"] = sa.get("flows_evicted", 0) - s10.get("flows_evicted", 0)
    # Seconds after the flood until flows_active + flows_evicted stopped
    # growing (every flood flow filed), as live.sh waited for it.
    r["flood_drain_secs"] = read_int(f"{d}/drain_secs")
    r["bpf"] = bpf_memlock(f"{d}/bpf_fdinfo")
    r["packets_dropped_during_flood"] = sa.get("packets_dropped", 0) - s10.get("packets_dropped", 0)
    r["handoff_dropped_during_flood"] = sa.get("handoff_dropped", 0) - s10.get("handoff_dropped", 0)
    probes = []
    for ln in read_text(f"{d}/probe.txt").splitlines():
        p = ln.split()
        if len(p) == 3:
            probes.append((int(p[0]), int(p[1]), int(p[2])))
    r["status_probes"] = len(probes)
    r["status_failures"] = sum(1 for p in probes if p[1] != 0 or p[0] > 2000)
    r["status_max_ms"] = max((p[0] for p in probes), default=None)
    r["status_p50_ms"] = statistics.median([p[0] for p in probes]) if probes else None
    r["flood_sampled_peak_rss_mb"] = mb(max((p[2] for p in probes), default=None))
    return r


def fmt(v, f="{:.2f}", none="n/a"):
    return none if v is None else f.format(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("--out")
    a = ap.parse_args()
    meta = load(os.path.join(a.raw, "meta.json"))
    if not meta:
        sys.exit(f"report.py: no meta.json in {a.raw}")
    tools = meta["tools"]
    res = {"meta": meta, "bulk": {}, "short": {}, "memory": None}
    rt = read_int(os.path.join(a.raw, "runtime_secs"))
    res["runtime_secs"] = rt
    for t in tools:
        if os.path.isdir(os.path.join(a.raw, f"bulk-{t}")):
            res["bulk"][t] = bulk(a.raw, meta, t)
        s = short(a.raw, meta, t)
        if s:
            res["short"][t] = s
    netmonds = [t for t in tools if base(t) == "netmond"]
    if netmonds:
        res["memory"] = memory(a.raw, meta)
        # Per mode: the socket-lookup path's latency is the one with a target.
        res["attribution_latency_us"] = {
            t: {"p50": (res["short"].get(t) or {}).get("attribution_p50_us"),
                "p99": (res["short"].get(t) or {}).get("attribution_p99_us")} for t in netmonds}
    alone = [b["alone_gbps"] for b in res["bulk"].values() if b.get("alone_gbps")]
    res["alone_gbps"] = {"mean": statistics.mean(alone) if alone else None,
                         "min": min(alone, default=None), "max": max(alone, default=None),
                         "runs": alone}
    amc = [b["alone_machine_cpu_s_per_gb"] for b in res["bulk"].values()
           if b.get("alone_machine_cpu_s_per_gb") is not None]
    res["alone_machine_cpu_s_per_gb"] = {"mean": statistics.mean(amc) if amc else None,
                                         "min": min(amc, default=None), "max": max(amc, default=None),
                                         "runs": amc}
    la = read_text(os.path.join(a.raw, "loadavg_end.json"), None)
    res["loadavg_end"] = json.loads(la) if la else None

    # ------------------------------------------------------------ print
    w = sys.stdout.write
    w("\nnetmon live benchmark  (%s, kernel %s, %s CPUs, load at start %s, at end %s)\n" % (
        meta.get("started"), meta["host"]["kernel"], meta["host"]["cpus"],
        " ".join(meta["host"]["loadavg_start"]), " ".join(res["loadavg_end"] or ["n/a"])))
    hdr = ["tool", "iperf3 Gbit/s", "slowdown %", "counted % of link", "credited to iperf3 %",
           "tool CPU s/GB", "machine CPU s/GB", "marginal machine s/GB", "peak RSS MB"]
    rows = []
    al = res["alone_gbps"]
    am = res["alone_machine_cpu_s_per_gb"]
    rows.append(["iperf3 alone", "%s (%s-%s)" % (fmt(al["mean"]), fmt(al["min"]), fmt(al["max"])),
                 "-", "-", "-", "-", "%s (%s-%s)" % (fmt(am["mean"], "{:.3f}"), fmt(am["min"], "{:.3f}"),
                                                     fmt(am["max"], "{:.3f}")), "-", "-"])
    for t in tools:
        b = res["bulk"].get(t)
        if not b:
            continue
        rows.append([t, fmt(b["gbps"]), fmt(b["slowdown_pct"], "{:.1f}"), fmt(b.get("counted_pct"), "{:.2f}"),
                     fmt(b.get("credited_pct"), "{:.2f}"), fmt(b["cpu_s_per_gb"], "{:.4f}"),
                     fmt(b["machine_cpu_s_per_gb"], "{:.3f}"),
                     fmt(b["marginal_machine_cpu_s_per_gb"], "{:+.3f}"),
                     fmt(b["peak_rss_mb"], "{:.1f}")])
    widths = [max(len(str(r[i])) for r in rows + [hdr]) for i in range(len(hdr))]
    line = lambda r: "| " + " | ".join(str(c).ljust(widths[i]) for i, c in enumerate(r)) + " |\n"
    w(line(hdr))
    w("|" + "|".join("-" * (x + 2) for x in widths) + "|\n")
    for r in rows:
        w(line(r))
    w("\n(slowdown: against the paired iperf3-alone run just before; counted and credited: in\n"
      " each tool's own byte unit, see report.py; CPU s per GB of link bytes in the run: the\n"
      " tool's own process, the whole machine's non-idle time, and that minus the paired\n"
      " iperf3-alone run's = the tool's marginal cost, kernel work included)\n")
    for t in netmonds:
        nb = res["bulk"].get(t)
        if not (nb and nb.get("capture")):
            continue
        c, ld = nb["capture"], nb["link"]
        bp = nb.get("bpf") or {}
        w("%s on the veth: %d of %d link packets (%s%%), %d bytes = %s%% of link layer-3 bytes "
          "(%s%% of link bytes with Ethernet headers), kernel drops %d; credited to iperf3 %s B = "
          "%s%% of iperf3 payload+headers, %s%% of link tx layer-3 bytes\n" % (
              t, c["packets_counted"], ld["packets"], fmt(nb.get("counted_packets_pct")), c["bytes_counted"],
              fmt(nb.get("counted_pct")), fmt(nb.get("counted_pct_of_link_bytes_incl_ethernet")),
              nb.get("kernel_drops", 0), nb.get("credited_up_bytes"), fmt(nb.get("credited_pct")),
              fmt(nb.get("credited_pct_of_link_tx"))))
        w("  attribution %s; eBPF %d maps + %d programs, %s MB locked kernel memory (outside RSS); "
          "machine busy %s%% (alone %s%%); iperf3 CPU client %s%% + server %s%% "
          "(alone %s%% + %s%%)\n" % (
              nb.get("attribution"), bp.get("maps", 0), bp.get("programs", 0),
              fmt(bp.get("memlock_bytes", 0) / 1048576.0, "{:.1f}"),
              fmt(nb["machine_busy_share"] and 100 * nb["machine_busy_share"], "{:.0f}"),
              fmt(nb["alone_machine_busy_share"] and 100 * nb["alone_machine_busy_share"], "{:.0f}"),
              fmt(nb["iperf3_cpu"]["client_total_pct"], "{:.0f}"),
              fmt(nb["iperf3_cpu"]["server_total_pct"], "{:.0f}"),
              fmt(nb["alone_iperf3_cpu"]["client_total_pct"], "{:.0f}"),
              fmt(nb["alone_iperf3_cpu"]["server_total_pct"], "{:.0f}")))
    w("\nshort-lived (credited to the process, % of the link bytes of the run in the tool's unit):\n")
    for t in tools:
        s = res["short"].get(t)
        if not s:
            continue
        who = ("%d curl pids" % s["curl_processes"]) if "curl_processes" in s else "matched by name"
        w("  %-21s %d curl (%d ok): %s%% credited to curl (%s; down = %s%% of "
          "%d x %d B payload); %s short TCP conns (%s ok): %s%% credited to the client; CPU %s s "
          "(machine %s s)\n" % (
              t, s["curl_runs"], s["curl_ok"], fmt(s["curl_credited_pct"], "{:.1f}"), who,
              fmt(s["curl_credited_down_pct_of_payload"], "{:.1f}"), meta["curl_runs"], meta["file_size"],
              meta["rr_conns"], s["rr"].get("conns_ok"), fmt(s["rr_credited_pct"], "{:.1f}"),
              fmt(s["cpu_secs"]), fmt(s["machine_cpu_secs"])))
        if base(t) == "netmond":
            w("  %-21s unattributed by reason (bytes): %s; coverage %s\n" % (
                "", s.get("unattributed_reasons"), fmt(s.get("coverage"), "{:.4f}")))
    if netmonds:
        for t, lat in res["attribution_latency_us"].items():
            # eBPF records the owner when the socket is made: no lookup to time.
            note = (" (no lookups: owners recorded at socket creation)"
                    if (res["short"].get(t) or {}).get("attribution") == "ebpf" else "")
            w("attribution latency (%s status after the short-lived runs): p50 %s us, p99 %s us%s\n" % (
                t, lat["p50"], lat["p99"], note))
        m = res["memory"]
        if m:
            fl = m["flood"] or {}
            w("memory (%s): idle RSS %s MB (anon %s); %s live flows: RSS %s MB (HWM %s MB; anon %s MB, "
              "file-backed %s MB = mostly the mmapped pcap ring)\n" % (
                m["tool"], fmt(m["idle_rss_mb"], "{:.1f}"), fmt(m["idle_anon_mb"], "{:.1f}"), m["flows_10k_active"],
                fmt(m["flows_10k_rss_mb"], "{:.1f}"), fmt(m["flows_10k_hwm_mb"], "{:.1f}"),
                fmt(m["flows_10k_anon_mb"], "{:.1f}"), fmt(m["flows_10k_file_mb"], "{:.1f}")))
            w("flood: %s distinct-flow datagrams in %s s: peak RSS %s MB (HWM), RSS after %s MB, "
              "(anon %s MB), flows active %s, evicted %s (table settled %s s after the flood), "
              "kernel drops %s, deferred hand-offs %s; "
              "netmonctl status %d probes, %d slower than 2 s or failed, median %s ms, max %s ms\n" % (
                  fl.get("sent"), fl.get("secs"), fmt(m["flood_hwm_mb"], "{:.1f}"),
                  fmt(m["flood_rss_after_mb"], "{:.1f}"), fmt(m["flood_anon_after_mb"], "{:.1f}"),
                  m["flows_active_after"], m["flows_evicted"], m["flood_drain_secs"],
                  m["packets_dropped_during_flood"],
                  m["handoff_dropped_during_flood"], m["status_probes"], m["status_failures"],
                  m["status_p50_ms"], m["status_max_ms"]))
    if rt is not None:
        w("runtime: %d s\n" % rt)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, sort_keys=True)
            f.write("\n")
        w("results written to %s\n" % a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
