"""Read a lab server's access log (combined log format) to prove where a pull was served.

The registries write it through gorilla's CombinedLoggingHandler on stdout, the front
servers write the same format, so one parser reads all four logs. ``mark()`` and
``since(mark)`` bracket an action: "the upstream saw nothing while the client pulled".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.journal import Entry, Journal

_LINE = re.compile(
    r'^(?P<client>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r'(?P<status>\d{3}) (?P<size>\d+|-)(?: "(?P<referer>[^"]*)" "(?P<agent>[^"]*)")?'
)


@dataclass(frozen=True)
class Request:
    """One access-log line."""

    client: str
    method: str
    path: str
    status: int
    size: int
    agent: str = ""

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.status}"


class AccessLog:
    """An access log file that may still be growing; unparsable lines (app logs) are skipped."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def mark(self) -> int:
        """A position to read from later with ``since``."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def since(self, mark: int = 0) -> list[Request]:
        try:
            with open(self.path, "rb") as f:
                f.seek(mark)
                data = f.read()
        except FileNotFoundError:
            return []
        out = []
        # A line still being written has no newline yet: leave it for the next read.
        for raw in data.split(b"\n")[:-1]:
            m = _LINE.match(raw.decode("utf-8", "replace"))
            if m:
                size = m["size"]
                out.append(Request(m["client"], m["method"], m["path"], int(m["status"]),
                                   0 if size == "-" else int(size), m["agent"] or ""))
        return out

    def requests(self) -> list[Request]:
        return self.since(0)

    def matching(self, mark: int = 0, *, method: str | None = None,
                 path: str | None = None) -> list[Request]:
        """Requests since ``mark`` whose method equals ``method`` and path contains ``path``."""
        return [r for r in self.since(mark)
                if (method is None or r.method == method) and (path is None or path in r.path)]


def format_line(client: str, method: str, path: str, status: int, size: int, agent: str) -> str:
    """A combined-log-format line, as the front servers write it."""
    when = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
    return f'{client} - - [{when}] "{method} {path} HTTP/1.1" {status} {size} "" "{agent}"\n'


class LabServer:
    """What a lab server (registry, cache, token server, CDN) offers scenarios: its access
    log, and a way to stop it on purpose ("registry down"). Needs ``access_log``, ``journal``
    and ``entry`` (its process record) on the instance."""

    access_log: Path
    journal: Journal | None
    entry: Entry | None

    @property
    def access(self) -> AccessLog:
        return AccessLog(self.access_log)

    def stop(self) -> None:
        """Kill it now; its journal record is closed, so rollback skips it."""
        if self.journal is None or self.entry is None:
            raise RuntimeError(f"{type(self).__name__} was not started under a journal")
        self.journal.undo(self.entry)
