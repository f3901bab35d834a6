#!/usr/bin/env python3
"""Turns the reports of benches/compare.sh (target/bench/compare/*.json) into Markdown tables:
one row per server and step, and the ratios at matched latency settings."""
import glob
import json
import os
import platform
import subprocess
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "target/bench/compare"
runs = {}
for path in glob.glob(os.path.join(out, "*.json")):
    with open(path) as f:
        r = json.load(f)
    runs[r["label"]] = r

# A run of explicit budgets only stands for the default too: ringcast-D, D from
# conf/default.toml.
try:
    import re
    _default = re.search(r"^merge_write_ms\s*=\s*(\d+)", open("conf/default.toml").read(), re.M)
    _default = _default and _default.group(1)
except OSError:
    _default = None
if _default and not any(l.startswith("ringcast-") and not l.split("-")[1].isdigit()
                        for l in runs):
    for label in list(runs):
        prefix = f"ringcast-{_default}-"
        if label.startswith(prefix):
            runs["ringcast-" + label[len(prefix):]] = runs[label]

SERVERS = ["nginx", "srs", "srs-low", "ringcast", "ringcast-350", "ringcast-0"]
NAMES = {
    "nginx": "nginx-rtmp",
    "srs": "SRS (default: mw_latency 350)",
    "srs-low": "SRS (min_latency, mw_latency 0)",
    "ringcast": f"ringcast (default{', ' + _default + ' ms' if _default else ''})",
    "ringcast-350": "ringcast, merge_write_ms = 350",
    "ringcast-0": "ringcast, merge_write_ms = 0",
}
# Other budgets (SERVERS="ringcast-50 ..."), in order of their budget.
_extra = sorted({l.split("-")[1] for l in runs if l.startswith("ringcast-")
                 and l.split("-")[1].isdigit() and f"ringcast-{l.split('-')[1]}" not in SERVERS},
                key=int)
for _b in _extra:
    SERVERS.append(f"ringcast-{_b}")
    NAMES[f"ringcast-{_b}"] = f"ringcast, merge_write_ms = {_b}"
# (ringcast setting, the setting it is matched with)
PAIRS = [("ringcast-350", "srs"), ("ringcast-0", "srs-low"), ("ringcast", "srs"),
         ("ringcast-0", "nginx"), ("ringcast", "nginx")]


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
    return None if a is None or b in (None, 0) else a / b


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        return (r.stdout + r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "not found"


present = [s for s in SERVERS if any(l.startswith(s + "-") for l in runs)]
print(f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.system()} {platform.release()}; "
      f"{version(['nginx', '-v'])}; SRS {version(['../shared/peers/srs', '-v'])}. "
      "Server on CPU 0, load tool (and rtmpdump) on CPU 1.\n")


def steps(prefix):
    found = set()
    for label in runs:
        for s in present:
            if label.startswith(f"{s}-{prefix}"):
                rest = label[len(s) + 1 + len(prefix):]
                if rest.isdigit():
                    found.add(int(rest))
    return sorted(found)


def row(label, server):
    r = runs.get(label)
    if r is None:
        return None
    d = r.get("delay_ms") or {}
    t = r.get("ttff_ms") or {}
    s = r.get("server") or {}
    gap = r.get("max_gap_ms") or {}
    return (f"| {NAMES[server]} | {r.get('players_connected', '-')} of {r.get('players', '-')} | "
            f"{r.get('players_behind', '-')} | {fmt(s.get('cpu_cores'))} | "
            f"{fmt(s.get('cpu_seconds_per_gb'), '.3f')} | {fmt(d.get('p50'), '.1f')} / "
            f"{fmt(d.get('p99'), '.1f')} | {fmt(t.get('p50'), '.1f')} | {fmt(gap.get('max'), '.0f')} | "
            f"{fmt(r.get('load_tool_cores'))} |")


HEAD = ("| server | connected | behind | server cores | CPU-s per GB | delay p50 / p99 ms | "
        "first frame p50 ms | longest gap ms | load tool cores |\n"
        "|---|---|---|---|---|---|---|---|---|")


def table(title, label_of):
    print(f"### {title}\n")
    print(HEAD)
    for s in present:
        line = row(label_of(s), s)
        if line:
            print(line)
    print()


def ratios(title, label_of):
    lines = []
    for a, b in PAIRS:
        if a in present and b in present:
            ca = get(label_of(a), "server", "cpu_seconds_per_gb")
            cb = get(label_of(b), "server", "cpu_seconds_per_gb")
            da = get(label_of(a), "delay_ms", "p99")
            db = get(label_of(b), "delay_ms", "p99")
            lines.append(f"| {NAMES[a]} / {NAMES[b]} | {fmt(ratio(ca, cb))} | {fmt(ratio(da, db))} |")
    if lines:
        print(f"Ratios, {title} (below 1: ringcast spends less / waits less):\n")
        print("| pair | CPU-s per GB | delay p99 |\n|---|---|---|")
        print("\n".join(lines))
        print()


table("120 players of one 1 Mb/s stream (load tool)", lambda s: f"{s}-120")
ratios("120 load-tool players", lambda s: f"{s}-120")

print("### 120 rtmpdump players of one 1 Mb/s stream\n")
print("| server | recordings | server cores | CPU-s per GB | RSS MiB |\n|---|---|---|---|---|")
for s in present:
    r = runs.get(f"{s}-rtmpdump")
    if r:
        sv = r["server"]
        print(f"| {NAMES[s]} | {r['players_connected']} | {fmt(sv['cpu_cores'])} | "
              f"{fmt(sv['cpu_seconds_per_gb'], '.3f')} | {fmt(sv['rss_end_kib'] / 1024, '.1f')} |")
print()
lines = []
for a, b in PAIRS:
    ca = get(f"{a}-rtmpdump", "server", "cpu_seconds_per_gb")
    cb = get(f"{b}-rtmpdump", "server", "cpu_seconds_per_gb")
    if ca and cb:
        lines.append(f"| {NAMES[a]} / {NAMES[b]} | {fmt(ratio(ca, cb))} |")
if lines:
    print("| pair | CPU-s per GB |\n|---|---|")
    print("\n".join(lines))
    print()

for n in steps("fanout-"):
    table(f"Fan-out: {n} players of one 2.5 Mb/s stream", lambda s, n=n: f"{s}-fanout-{n}")
    ratios(f"{n} players", lambda s, n=n: f"{s}-fanout-{n}")

for n in steps("streams-"):
    table(f"Many streams: {n} streams of 600 kb/s, one player each",
          lambda s, n=n: f"{s}-streams-{n}")
    ratios(f"{n} streams", lambda s, n=n: f"{s}-streams-{n}")

print("### Memory: 2000 idle players (a stream nobody publishes)\n")
print("Per player: the RSS growth over the 2000 connections the load tool opened (SRS answers the")
print("play of an unpublished stream only once it is published, so few count as connected).\n")
print("| server | answered play | RSS start → end MiB | KiB per player |\n|---|---|---|---|")
for s in present:
    r = runs.get(f"{s}-idle")
    if r and r.get("server"):
        sv = r["server"]
        per = (sv["rss_end_kib"] - sv["rss_start_kib"]) / max(1, r["players"])
        print(f"| {NAMES[s]} | {r['players_connected']} | {sv['rss_start_kib'] / 1024:.1f} → "
              f"{sv['rss_end_kib'] / 1024:.1f} | {per:.1f} |")
print()

# The latency budget's trade-off: every ringcast-N of the run (N = rtmp.merge_write_ms).
budgets = sorted(int(s[len("ringcast-"):]) for s in present if s[len("ringcast-"):].isdigit())
if len(budgets) > 1:
    cols = [("120", "120 players"), ("rtmpdump", "120 rtmpdump")]
    cols += [(f"fanout-{n}", f"{n} players") for n in steps("fanout-")]
    cols += [(f"streams-{n}", f"{n} streams") for n in steps("streams-")]
    cols = [c for c in cols if any(f"ringcast-{b}-{c[0]}" in runs for b in budgets)]
    print("### The latency budget: rtmp.merge_write_ms against delay and CPU\n")
    print("Each cell: delay p50 / p99 ms, then CPU-s per GB (rtmpdump: CPU only).\n")
    print("| budget ms | " + " | ".join(t for _, t in cols) + " |")
    print("|---|" + "---|" * len(cols))
    for b in budgets:
        cells = []
        for key, _ in cols:
            r = runs.get(f"ringcast-{b}-{key}")
            if r is None:
                cells.append("-")
                continue
            d = r.get("delay_ms") or {}
            cpu = fmt((r.get("server") or {}).get("cpu_seconds_per_gb"), ".3f")
            if d:
                cells.append(f"{fmt(d.get('p50'), '.0f')} / {fmt(d.get('p99'), '.0f')}, {cpu}")
            else:
                cells.append(cpu)
        print(f"| {b} | " + " | ".join(cells) + " |")
    print()
