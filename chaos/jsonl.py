"""Logs as JSON lines, read while their writer may still be appending."""

from __future__ import annotations

import json
from pathlib import Path


def read(path: str | Path) -> list[dict]:
    """Every complete record so far, oldest first; a missing file is an empty log, and a last
    line still being written (or torn by a killed writer) is left out."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return out
