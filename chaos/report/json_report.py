"""The JSON report: every scenario's result, probe checks, and the timeline.

`probes` lists every declared probe in its declared order; one the run never reached has
verdict `skipped` and `detail.reason`. `counts` adds up the verdicts per scenario.
"""

from __future__ import annotations

import json
from pathlib import Path

VERDICTS = ("passed", "failed", "hung", "error", "skipped")


def scenario(result) -> dict:
    doc = result.to_dict()
    doc["counts"] = {v: sum(p.verdict == v for p in result.probes) for v in VERDICTS}
    return doc


def write(results, path: str | Path) -> None:
    doc = {"version": 1, "scenarios": [scenario(r) for r in results],
           "passed": all(r.exit_code == 0 for r in results)}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
