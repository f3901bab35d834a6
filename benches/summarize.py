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

# nginx-rtmp first: every ratio is "this server / nginx-rtmp".
SERVERS = ["nginx", "ringcast", "nomerge"]
NAMES = {"nginx": "nginx-rtmp", "ringcast": "ringcast (default)",
         "nomerge": "ringcast, merge_write_ms = 0"}


def get(label, *keys, default=None):
    r = runs.get(label)
    for k in keys:
        if r is None:
            return default
        r = r.get(k) if isinstance(r, dict) else None
    return default if r is None else r


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def ratio(base, v):
    return None if base in (None, 0) or v is None else v / base


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


present = [s for s in SERVERS if any(l.startswith(s + "-") for l in runs)]
others = [s for s in present if s != "nginx"]

print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}; "
      f"{nginx_version()} with libnginx-mod-rtmp. Server on CPU 0, load tool on CPU 1.\n")

# 1. Fan-out
steps = sorted({int(l.split("-")[-1]) for l in runs if "-fanout-" in l})
print("### Fan-out: one 2.5 Mb/s stream to N players\n")
print("Players are counted as behind when their delay p95 exceeds 1 s after the ramp, when they "
      "lost more than 1 % of frames, or when they failed. Each server runs until the first step "
      "with a player behind.\n")
print("| N | server | behind | egress Gb/s | server cores | CPU-s per GB | delay p50 / p99 ms | load tool cores |")
print("|---|---|---|---|---|---|---|---|")
sustained = {}
for n in steps:
    for s in present:
        l = f"{s}-fanout-{n}"
        if l not in runs:
            continue
        behind = get(l, "players_behind")
        if behind == 0:
            sustained[s] = max(sustained.get(s, 0), n)
        print(f"| {n} | {NAMES[s]} | {behind} | {fmt(get(l, 'egress_gbps'), '.3f')} | "
              f"{fmt(get(l, 'server', 'cpu_cores'))} | {fmt(get(l, 'server', 'cpu_seconds_per_gb'), '.3f')} | "
              f"{fmt(get(l, 'delay_ms', 'p50'), '.1f')} / {fmt(get(l, 'delay_ms', 'p99'), '.1f')} | "
              f"{fmt(get(l, 'load_tool_cores'))} |")
print()


def header(first):
    cols = " | ".join(NAMES[s] for s in present)
    ratios = " | ".join(f"{NAMES[s]} / nginx-rtmp" for s in others)
    print(f"| {first} | {cols} | {ratios} |")
    print("|" + "---|" * (1 + len(present) + len(others)))


def row(name, values, spec=".2f"):
    base = values.get("nginx")
    cells = " | ".join(fmt(values.get(s), spec) for s in present)
    rs = " | ".join(fmt(ratio(base, values.get(s))) for s in others)
    print(f"| {name} | {cells} | {rs} |")


header("fan-out")
row("players sustained on one core (largest step with nobody behind)",
    {s: sustained.get(s) for s in present}, ".0f")
common = [n for n in steps if all(f"{s}-fanout-{n}" in runs for s in present)]
if common:
    n = max(common)
    row(f"GB delivered per CPU-second at N={n}",
        {s: (lambda c: None if not c else 1 / c)(get(f"{s}-fanout-{n}", "server", "cpu_seconds_per_gb"))
         for s in present}, ".3f")
print()

# 2. Many streams
print("### Many streams: 500 publishers at 500 kb/s, one player each\n")
print("| server | players behind | egress Gb/s | server cores | CPU-s per GB | delay p50 / p99 ms | RSS peak MiB |")
print("|---|---|---|---|---|---|---|")
for s in present:
    l = f"{s}-streams-500"
    if l in runs:
        print(f"| {NAMES[s]} | {get(l, 'players_behind')} | {fmt(get(l, 'egress_gbps'), '.3f')} | "
              f"{fmt(get(l, 'server', 'cpu_cores'))} | {fmt(get(l, 'server', 'cpu_seconds_per_gb'), '.3f')} | "
              f"{fmt(get(l, 'delay_ms', 'p50'), '.1f')} / {fmt(get(l, 'delay_ms', 'p99'), '.1f')} | "
              f"{fmt((get(l, 'server', 'rss_peak_kib') or 0) / 1024, '.1f')} |")
print()

# 3 + 4. Delay and time to first frame
print("### Delay and time to first frame: 100 players joining a live 2.5 Mb/s stream (GOP 2 s)\n")
header("metric")
for name, keys in [("publish-to-play delay p50 ms", ("delay_ms", "p50")),
                   ("publish-to-play delay p99 ms", ("delay_ms", "p99")),
                   ("time to first frame p50 ms", ("ttff_ms", "p50")),
                   ("time to first frame p99 ms", ("ttff_ms", "p99"))]:
    row(name, {s: get(f"{s}-delay-100", *keys) for s in present}, ".1f")
print()

# 5. Memory
print("### Memory per player\n")


def per_player(label, n):
    start, end = get(label, "server", "rss_start_kib"), get(label, "server", "rss_peak_kib")
    return None if start is None or end is None else (end - start) / n


header("metric")
row("RSS per idle connected player, KiB (2000 players)",
    {s: per_player(f"{s}-idle-2000", 2000) for s in present}, ".1f")
if common:
    n = max(common)
    row(f"RSS per active player, KiB ({n} players of one 2.5 Mb/s stream)",
        {s: per_player(f"{s}-fanout-{n}", n) for s in present}, ".1f")
