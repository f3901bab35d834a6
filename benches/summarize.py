#!/usr/bin/env python3
"""Turns the ringcast-load JSON reports of benches/compare.sh into Markdown tables with ratios."""
import glob
import json
import os
import platform
import subprocess
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "target/bench"
runs = {}
for path in glob.glob(os.path.join(out, "*.json")):
    with open(path) as f:
        r = json.load(f)
    runs[r["label"]] = r

SERVERS = ["nginx", "ringcast"]


def get(label, *keys, default=None):
    r = runs.get(label)
    for k in keys:
        if r is None:
            return default
        r = r.get(k) if isinstance(r, dict) else None
    return default if r is None else r


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def ratio(a, b):
    return None if a in (None, 0) or b is None else b / a


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nginx_version():
    try:
        return subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    except OSError:
        return "nginx not found"


print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}; "
      f"{nginx_version()} with libnginx-mod-rtmp. Server on CPU 0, load tool on CPU 1.\n")

# 1. Fan-out
steps = sorted({int(l.split("-")[-1]) for l in runs if "-fanout-" in l})
print("### Fan-out: one 2.5 Mb/s stream to N players\n")
print("| N | server | behind | egress Gb/s | server cores | CPU-s per GB | delay p99 ms | load tool cores |")
print("|---|---|---|---|---|---|---|---|")
sustained = {}
for n in steps:
    for s in SERVERS:
        l = f"{s}-fanout-{n}"
        if l not in runs:
            continue
        behind = get(l, "players_behind")
        if behind == 0:
            sustained[s] = max(sustained.get(s, 0), n)
        print(f"| {n} | {s} | {behind} | {fmt(get(l, 'egress_gbps'), '.3f')} | "
              f"{fmt(get(l, 'server', 'cpu_cores'))} | {fmt(get(l, 'server', 'cpu_seconds_per_gb'), '.3f')} | "
              f"{fmt(get(l, 'delay_ms', 'p99'), '.1f')} | {fmt(get(l, 'load_tool_cores'))} |")
print()
common = [n for n in steps if all(f"{s}-fanout-{n}" in runs for s in SERVERS)]
print("| fan-out summary | nginx-rtmp | ringcast | ringcast / nginx |")
print("|---|---|---|---|")
sn, sr = sustained.get("nginx"), sustained.get("ringcast")
print(f"| players sustained on one core (largest step with nobody behind) | {sn or '-'} | {sr or '-'} | "
      f"{fmt(ratio(sn, sr))} |")
if common:
    n = max(common)
    gbn = get(f"nginx-fanout-{n}", "server", "cpu_seconds_per_gb")
    gbr = get(f"ringcast-fanout-{n}", "server", "cpu_seconds_per_gb")
    egn = None if not gbn else 1 / gbn
    egr = None if not gbr else 1 / gbr
    print(f"| egress per CPU-second at N={n} (GB/s of one core) | {fmt(egn, '.3f')} | {fmt(egr, '.3f')} | "
          f"{fmt(ratio(egn, egr))} |")
print()

# 2. Many streams
print("### Many streams: 500 publishers at 500 kb/s, one player each\n")
print("| server | players behind | egress Gb/s | server cores | CPU-s per GB | delay p50 / p99 ms | RSS peak MiB |")
print("|---|---|---|---|---|---|---|")
for s in SERVERS:
    l = f"{s}-streams-500"
    if l in runs:
        print(f"| {s} | {get(l, 'players_behind')} | {fmt(get(l, 'egress_gbps'), '.3f')} | "
              f"{fmt(get(l, 'server', 'cpu_cores'))} | {fmt(get(l, 'server', 'cpu_seconds_per_gb'), '.3f')} | "
              f"{fmt(get(l, 'delay_ms', 'p50'), '.1f')} / {fmt(get(l, 'delay_ms', 'p99'), '.1f')} | "
              f"{fmt((get(l, 'server', 'rss_peak_kib') or 0) / 1024, '.1f')} |")
print()

# 3 + 4. Delay and time to first frame
print("### Delay and time to first frame: 100 players joining a live 2.5 Mb/s stream (GOP 2 s)\n")
print("| metric | nginx-rtmp | ringcast | ringcast / nginx |")
print("|---|---|---|---|")
for name, keys in [("publish-to-play delay p50 ms", ("delay_ms", "p50")),
                   ("publish-to-play delay p99 ms", ("delay_ms", "p99")),
                   ("time to first frame p50 ms", ("ttff_ms", "p50")),
                   ("time to first frame p99 ms", ("ttff_ms", "p99"))]:
    a, b = get("nginx-delay-100", *keys), get("ringcast-delay-100", *keys)
    print(f"| {name} | {fmt(a, '.1f')} | {fmt(b, '.1f')} | {fmt(ratio(a, b))} |")
print()

# 5. Memory
print("### Memory per player\n")
print("| metric | nginx-rtmp | ringcast | ringcast / nginx |")
print("|---|---|---|---|")


def per_player(label, n):
    start, end = get(label, "server", "rss_start_kib"), get(label, "server", "rss_peak_kib")
    return None if start is None or end is None else (end - start) / n


a, b = per_player("nginx-idle-2000", 2000), per_player("ringcast-idle-2000", 2000)
print(f"| RSS per idle connected player, KiB (2000 players) | {fmt(a, '.1f')} | {fmt(b, '.1f')} | {fmt(ratio(a, b))} |")
if common:
    n = max(common)
    a, b = per_player(f"nginx-fanout-{n}", n), per_player(f"ringcast-fanout-{n}", n)
    print(f"| RSS per active player, KiB ({n} players of one 2.5 Mb/s stream) | {fmt(a, '.1f')} | {fmt(b, '.1f')} | "
          f"{fmt(ratio(a, b))} |")
