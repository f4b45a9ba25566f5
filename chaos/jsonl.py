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


def requests(records: list[dict]) -> list[dict]:
    """A request log of ``start`` and ``end`` records (``event``, one ``id`` per request) ->
    one record per request, in start order: the start's fields updated with the end's (the
    start's ``time`` stays), and ``in_flight`` true while the end has not been written. An
    end whose start is not in the log, and a record without ``event``, stand alone."""
    out: list[dict] = []
    started: dict = {}
    for record in records:
        event = record.get("event")
        if event is None:
            out.append({**record, "in_flight": False})
        elif event == "start":
            request = {k: v for k, v in record.items() if k != "event"}
            request["in_flight"] = True
            started[record.get("id")] = request
            out.append(request)
        elif event == "end":
            ended = {k: v for k, v in record.items() if k != "event"}
            request = started.pop(record.get("id"), None)
            if request is None:
                out.append({**ended, "in_flight": False})
            else:
                ended.pop("time", None)
                request.update(ended, in_flight=False)
    return out
