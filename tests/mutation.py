"""The mutation campaign: the registry library against deliberately broken labs.

Each mutant (chaos/lab/mutants.py) runs the library once through the real CLI with
``--baseline``; a scenario *kills* a mutant when a probe's verdict is worse than the
baseline records for the normal lab. Used by `scripts/mutation-campaign` (the whole table,
docs/registry-library.md) and by tests/test_mutation.py (a CI-sized slice).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "scenarios" / "registry"
BASELINE = LIBRARY / "baseline.json"


@dataclass
class Cell:
    """One scenario against one mutant."""

    outcome: str  # killed | survived | error
    worse: list[str] = field(default_factory=list)
    error: str = ""


def run_mutant(mutant: str, scenarios: list[Path], *, timeout: float = 1800,
               echo=lambda line: None) -> dict[str, Cell]:
    """Scenario name -> Cell, for one mutant over ``scenarios`` (one `chaos run`)."""
    with tempfile.TemporaryDirectory(prefix="chaos-mutant-") as tmp:
        report = Path(tmp) / "report.json"
        env = {**os.environ, "CHAOS_LAB_MUTANT": mutant}
        argv = [sys.executable, "-m", "chaos", "run", *map(str, scenarios),
                "--baseline", str(BASELINE), "--json", str(report)]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            echo(line.rstrip("\n"))
        proc.wait(timeout)
        if not report.exists():
            raise RuntimeError(f"mutant {mutant}: chaos run exited {proc.returncode} with no report")
        doc = json.loads(report.read_text())
    cells = {}
    for s in doc["scenarios"]:
        worse = (s.get("baseline") or {}).get("worse", [])
        if s["status"] not in ("passed", "failed"):
            cells[s["name"]] = Cell("error", error="; ".join(s["errors"])[:300])
        else:
            cells[s["name"]] = Cell("killed" if worse else "survived", worse)
    return cells


def table(results: dict[str, dict[str, Cell]], files: dict[str, str]) -> list[str]:
    """A Markdown table: a row per scenario, a column per mutant, then the verdicts."""
    mutants = list(results)
    names = list(files)
    lines = ["| scenario | " + " | ".join(f"`{m}`" for m in mutants) + " |",
             "|---|" + "---|" * len(mutants)]
    for name in names:
        cells = []
        for m in mutants:
            cell = results[m].get(name)
            cells.append("—" if cell is None else {"killed": f"**killed** ({len(cell.worse)})",
                                                   "survived": "survived",
                                                   "error": "error"}[cell.outcome])
        lines.append(f"| {files[name]} | " + " | ".join(cells) + " |")
    return lines


def verdicts(results: dict[str, dict[str, Cell]]) -> tuple[list[str], list[str]]:
    """Mutants no scenario killed, and scenarios that killed no mutant."""
    alive = [m for m, cells in results.items()
             if not any(c.outcome == "killed" for c in cells.values())]
    names = {n for cells in results.values() for n in cells}
    idle = sorted(n for n in names
                  if not any(cells.get(n) and cells[n].outcome == "killed"
                             for cells in results.values()))
    return alive, idle
