"""The registry library one scenario at a time vs `chaos run -j 4`, in the same run.

    sudo .venv/bin/python benchmarks/jobs.py            # the whole library, both ways (about 10 min)
    sudo .venv/bin/python benchmarks/jobs.py --quick    # four of its scenarios
    sudo .venv/bin/python benchmarks/jobs.py --jobs auto

Runs `chaos run scenarios/registry/ --baseline scenarios/registry/baseline.json` and then
the same with `-j 4`, each through the CLI as a user runs it, and prints the wall time of
each, their ratio (target <= 0.4x on 2 cores) and whether both runs kept every verdict the
baseline records (a faster gate that changes verdicts is worth nothing). Each run is one
process tree with its own state dir; each leaves nothing (checked with `chaos recover`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import chaos_argv, figure, need_root

REPO = Path(__file__).resolve().parent.parent
LIBRARY = REPO / "scenarios" / "registry"
BASELINE = LIBRARY / "baseline.json"
QUICK = ["01-hosts-redirect-upstream.yaml", "06-dns-failures.yaml", "08-token-server-down.yaml",
         "09-rate-limited-manifests.yaml"]
TARGET = 0.4


def used_mib() -> float:
    """Memory in use on the machine (MemTotal - MemAvailable), MiB."""
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


class PeakMemory:
    """The most memory in use while a run goes on, sampled every 0.2 s, over the start."""

    def __init__(self) -> None:
        import threading

        self.start, self.peak = used_mib(), 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.stop.wait(0.2):
            self.peak = max(self.peak, used_mib() - self.start)

    def done(self) -> float:
        self.stop.set()
        self.thread.join()
        return self.peak


def _children_cpu() -> float:
    """CPU seconds of the waited-for process trees (a daemon that left its tree is not in it)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(paths: list[str], jobs: str, workdir: Path) -> dict:
    state = workdir / f"state-{jobs}"
    report = workdir / f"report-{jobs}.json"
    argv = [*chaos_argv(), "run", *paths, "--baseline", str(BASELINE), "--json", str(report),
            *(["-j", jobs] if jobs != "1" else [])]
    env = {**os.environ, "CHAOS_STATE_DIR": str(state)}
    t0, memory, cpu0 = time.monotonic(), PeakMemory(), _children_cpu()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    wall, peak, cpu = time.monotonic() - t0, memory.done(), _children_cpu() - cpu0
    doc = json.loads(report.read_text()) if report.exists() else {"scenarios": []}
    recover = subprocess.run([*chaos_argv(), "recover"], cwd=REPO, env=env, capture_output=True,
                             text=True)
    return {"jobs": jobs, "wall": wall, "exit": proc.returncode, "peak_mib": peak, "cpu": cpu,
            "scenarios": len(doc["scenarios"]),
            "sum": sum(s["duration"] for s in doc["scenarios"]),
            "durations": {s["name"]: round(s["duration"], 2) for s in doc["scenarios"]},
            "left": recover.stdout.strip(), "tail": proc.stdout[-600:] + proc.stderr[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    parser.add_argument("--jobs", default="4", help="-j of the side-by-side run (default 4)")
    args = parser.parse_args()
    need_root()
    paths = [str(LIBRARY / name) for name in QUICK] if args.quick else [str(LIBRARY)]
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="chaos-bench-jobs-") as tmp:
        serial = run(paths, "1", Path(tmp))
        side = run(paths, args.jobs, Path(tmp))
    for r in (serial, side):
        print(f"-j {r['jobs']:<4} wall {r['wall']:6.1f} s  exit {r['exit']}  {r['scenarios']} scenarios, "
              f"their runs add up to {r['sum']:.1f} s; CPU {r['cpu']:.0f} s; memory at peak +{r['peak_mib']:.0f} MiB "
              f"(machine-wide); recover: {r['left']}", flush=True)
        print(f"  per scenario: {r['durations']}", flush=True)
        if r["exit"] != 0:
            print(f"  output ends: {r['tail']}", flush=True)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    ratio = side["wall"] / serial["wall"]
    kept = serial["exit"] == 0 and side["exit"] == 0
    clean = all(r["left"] == "nothing to recover" for r in (serial, side))
    print(f"ratio -j {args.jobs} / serial: {ratio:.2f}x (target <= {TARGET}x); every verdict as the "
          f"baseline records in both: {kept}; nothing left: {clean}", flush=True)
    label = "registry library" + (" (4 scenarios)" if args.quick else "")
    figure(f"{label}, chaos run -j {args.jobs}",
           f"{side['wall']:.1f} s (exit {side['exit']}), +{side['peak_mib']:.0f} MiB at peak",
           f"serial {serial['wall']:.1f} s (exit {serial['exit']}), +{serial['peak_mib']:.0f} MiB",
           f"{ratio:.2f}x",
           f"<= {TARGET}x, verdicts as the baseline", ratio <= TARGET and kept and clean)
    sys.exit(0 if kept and clean else 1)


if __name__ == "__main__":
    main()
