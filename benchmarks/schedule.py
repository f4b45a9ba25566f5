"""Schedule accuracy: how late scheduled fault switches (window, flap) happen in a real run.

    sudo .venv/bin/python benchmarks/schedule.py [--runs 3]

Runs ``chaos run --json`` of a sandbox scenario whose faults switch on a schedule: a route
blackhole flapping every 100 ms for 2 s, a hosts entry on for a 1 s window, and a packet
filter on for a 0.6 s window, and reads the timeline of the JSON report: each scheduled
fault event has ``due`` (when the schedule wanted it) and ``began`` (when the switch
started), and ``t`` (when it was done), in seconds since the run started.

    late to start  = began - due     (the scheduler's own accuracy)
    late in effect = t - due         (plus the time the switch itself takes)

Peer: none; the target is absolute: switches within 10-20 ms of when they are due. Hang
ends (the other half of the schedule figure) are measured by benchmarks/tcp_proxy.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import chaos_argv, figure, median, need_root, pct

TARGET_MS = 20.0
SCENARIO = """\
name: bench-schedule
description: scheduled switches only; the probes do not matter here
serve:
  - name: reg.test
    http: {port: 80}
faults:
  - type: route-blackhole
    name: route flap
    destinations: [198.18.1.200/32]
    flap: {period: 200ms, duty: 0.5}
    window: {after: 100ms, for: 2s}
  - type: hosts-entry
    name: hosts window
    names: [other.test]
    window: {after: 250ms, for: 1s}
  - type: packet-filter
    name: filter window
    destinations: [198.18.1.201/32]
    window: {after: 1150ms, for: 600ms}
expect:
  during:
    - run: "true"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 run")
    parser.add_argument("--events", action="store_true", help="print every scheduled switch")
    args = parser.parse_args()
    need_root()
    runs = 1 if args.quick else args.runs
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-schedule-"))
    start, effect = defaultdict(list), defaultdict(list)
    try:
        (work / "s.yaml").write_text(SCENARIO)
        for i in range(runs):
            report = work / f"r{i}.json"
            proc = subprocess.run(chaos_argv() + ["run", str(work / "s.yaml"), "--json", str(report),
                                                  "--state-dir", str(work / "state")],
                                  capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                raise SystemExit(f"chaos run exited {proc.returncode}")
            events = json.loads(report.read_text())["scenarios"][0]["events"]
            for e in events:
                if e.get("kind") == "fault" and "due" in e:
                    start[e["fault"]].append((e["began"] - e["due"]) * 1000)
                    effect[e["fault"]].append((e["t"] - e["due"]) * 1000)
                    if args.events:
                        print(f"  {e['fault']:14s} {e['state']:3s} due {e['due']:.4f} began "
                              f"{e['began']:.4f} done {e['t']:.4f}")
                    start["all"].append((e["began"] - e["due"]) * 1000)
                    effect["all"].append((e["t"] - e["due"]) * 1000)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not start["all"]:
        raise SystemExit("the report has no scheduled fault events (no `due` in its timeline)")
    print(f"scheduled switches, {runs} run(s), {len(start['all'])} switches, {os.cpu_count()} CPUs")
    print(f"  {'fault':14s} {'n':>3s}  late to start p50 / p95 / max (ms)   late in effect p50 / max")
    for name in [k for k in start if k != "all"] + ["all"]:
        s, e = start[name], effect[name]
        print(f"  {name:14s} {len(s):3d}  {median(s):6.2f} / {pct(s, .95):6.2f} / {max(s):6.2f}"
              f"            {median(e):6.2f} / {max(e):6.2f}")
    s, e = start["all"], effect["all"]
    figure("schedule: window/flap switch starts late by",
           f"p50 {median(s):.1f} ms, max {max(s):.1f} ms", "-", "-",
           f"within {TARGET_MS:g} ms", max(s) <= TARGET_MS)
    slowest = max((k for k in effect if k != "all"), key=lambda k: max(effect[k]))
    figure("schedule: switch in effect late by (incl. inject time)",
           f"p50 {median(e):.1f} ms, max {max(e):.1f} ms ({slowest})", "-", "-",
           f"within {TARGET_MS:g} ms", max(e) <= TARGET_MS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
