"""Whole-process time of a trivial scenario: `chaos run` against Chaos Toolkit's `chaos run`.

    .venv/bin/python benchmarks/process_time.py [--runs 20]

Ours: ``chaos run --host trivial.yaml`` (one ``run: "true"`` probe, no fault, no sandbox;
the journal is written and fsynced as in every run). The warm-up's first run validates the
file and records it in the validated-scenario cache, so the timed runs are cache hits
(chaos/fastrun.py: no click, PyYAML or pydantic); ``chaos run (validating)`` adds
``--client dockerd`` (the default, an option the cached path does not take), so it
validates every time, as every run did before the cache. Peer: Chaos Toolkit's ``chaos run`` of
the equivalent experiment (one process probe running ``true``; ``--no-version-check`` so it
does not call PyPI, ``--no-log-file``, its journal written to a temporary file). Chaos
Toolkit lives in its own venv (its CLI is also called ``chaos``):

    python3 -m venv /opt/chaostoolkit-venv && /opt/chaostoolkit-venv/bin/pip install chaostoolkit

Runs alternate (ours, peer, peer, ours, ...) after a warm-up; the figure is the median wall
time, the ratio the median of per-round ratios; CPU time (user + system of the child) is
shown too, as a busy machine disturbs it less. Target: <= 0.6x Chaos Toolkit. Timed in the
same rounds, to show what limits it: ``python -c pass``, and the import of pydantic
(``pydantic.main``, what a model needs) alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CTK_INSTALL, VENV_BIN, alternate, chaos_argv, count_arg, ctk_argv, figure, median, round_ratio

SCENARIO = """\
name: trivial
description: one trivial probe, no fault
expect:
  during:
    - run: "true"
"""
EXPERIMENT = {
    "version": "1.0.0", "title": "trivial", "description": "one trivial probe, no fault",
    "method": [{"type": "probe", "name": "true", "provider": {"type": "process", "path": "true"}}],
}


def main() -> int:
    runs = count_arg(__doc__, "runs", default=20, quick=8)
    ctk = ctk_argv()
    if ctk is None:
        print(f"skipped: Chaos Toolkit is not installed; {CTK_INSTALL}")
        figure("process time, trivial scenario", "-", "Chaos Toolkit: not installed", "-",
               "<= 0.6x Chaos Toolkit", None)
        return 0
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-process-"))
    try:
        (work / "trivial.yaml").write_text(SCENARIO)
        (work / "experiment.json").write_text(json.dumps(EXPERIMENT))
        commands = {
            "chaos run": chaos_argv() + ["run", "--host", "trivial.yaml",
                                         "--state-dir", str(work / "state")],
            "chaos run (validating)": chaos_argv() + ["run", "--host", "trivial.yaml", "--client",
                                                      "dockerd", "--state-dir", str(work / "state")],
            "chaostoolkit run": ctk + ["--no-version-check", "--no-log-file", "run",
                                       "--journal-path", str(work / "journal.json"),
                                       "experiment.json"],
        }
        # What limits the figure, timed in the same rounds: the interpreter starting, and
        # the import of pydantic (what the scenario models need), alone.
        python = [str(VENV_BIN / "python")] if (VENV_BIN / "python").exists() else [sys.executable]
        floors = {"python -c pass": python + ["-c", "pass"],
                  "import pydantic": python + ["-c", "import pydantic.main"]}
        t = alternate({**commands, **floors}, runs, warmup=2, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours, peer = t["chaos run"], t["chaostoolkit run"]
    wall_ratio = round_ratio(ours["wall"], peer["wall"])
    cpu_ratio = round_ratio(ours["cpu"], peer["cpu"])
    print(f"whole process, trivial scenario, median of {runs} alternating runs, "
          f"{os.cpu_count()} CPUs")
    for name, v in t.items():
        print(f"  {name:22s} wall {median(v['wall']) * 1000:6.1f} ms   CPU "
              f"{median(v['cpu']) * 1000:6.1f} ms")
    print(f"  ratio ours/Chaos Toolkit: wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x "
          "(medians of per-round ratios)")
    validating = t["chaos run (validating)"]
    print(f"  validating every time: wall {round_ratio(validating['wall'], peer['wall']):.2f}x, "
          f"CPU {round_ratio(validating['cpu'], peer['cpu']):.2f}x Chaos Toolkit")
    cost = [a - b for a, b in zip(t["import pydantic"]["wall"], t["python -c pass"]["wall"], strict=True)]
    print(f"  import pydantic alone (beyond the interpreter's start): {median(cost) * 1000:.1f} ms"
          f" = {round_ratio(cost, peer['wall']):.2f}x Chaos Toolkit's whole run")
    figure("process time, trivial scenario (--host)", f"{median(ours['wall']) * 1000:.0f} ms",
           f"Chaos Toolkit chaos run {median(peer['wall']) * 1000:.0f} ms",
           f"{wall_ratio:.2f}x (CPU {cpu_ratio:.2f}x)", "<= 0.6x Chaos Toolkit", wall_ratio <= 0.6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
