"""The JSON report: every scenario's result, probe checks, and the timeline."""

from __future__ import annotations

import json
from pathlib import Path


def write(results, path: str | Path) -> None:
    doc = {"version": 1, "scenarios": [r.to_dict() for r in results],
           "passed": all(r.exit_code == 0 for r in results)}
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
