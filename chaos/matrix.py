"""The resilience matrix: each library scenario run for each chosen client and cache.

A cell is one ``chaos run`` child (``--client``, ``--cache``, ``--json``, ``--junit``) of one
scenario: a child per cell keeps every run's revert and crash story the one `chaos run`
has (its own journal, `chaos recover` for a killed one), and a cell that hangs is ended with
SIGTERM like any run, which then reverts. The page (chaos/report/matrix_page.py) links
each cell's reports, written into the matrix folder.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chaos.errors import ExitStatus

CACHES = ("distribution", "nginx")
CLIENTS = ("dockerd", "containerd", "podman", "skopeo")
CELLS = "cells"  # the cells' reports, in the matrix folder
TERM_GRACE = 60.0  # seconds a timed-out cell gets to revert after SIGTERM


@dataclass
class Cell:
    file: str
    client: str
    cache: str
    verdict: str = "not run"  # passed | failed | hung | error | not run
    seconds: float = 0.0
    baseline: str | None = None  # as recorded | worse | better | not recorded
    why: str = ""
    exit_code: int | None = None

    @property
    def stem(self) -> str:
        return f"{Path(self.file).stem}.{self.client}.{self.cache}"

    @property
    def reports(self) -> dict[str, str]:
        """Paths relative to the matrix folder, for the page's links."""
        return {kind: f"{CELLS}/{self.stem}.{ext}"
                for kind, ext in (("json", "json"), ("junit", "xml"), ("log", "log"))}

    def to_dict(self) -> dict:
        return {"file": self.file, "client": self.client, "cache": self.cache,
                "verdict": self.verdict, "seconds": round(self.seconds, 2),
                "baseline": self.baseline, "why": self.why, "exit_code": self.exit_code,
                "reports": self.reports}


@dataclass
class Matrix:
    files: list[str]
    clients: list[str]
    caches: list[str]
    baseline_path: str | None = None
    cells: list[Cell] = field(default_factory=list)
    started: str = ""
    seconds: float = 0.0
    stopped: str = ""  # why the matrix ended before its last cell

    def __post_init__(self) -> None:
        if not self.cells:
            self.cells = [Cell(f, client, cache) for f in self.files
                          for client in self.clients for cache in self.caches]

    def to_dict(self) -> dict:
        return {"version": 1, "started": self.started, "seconds": round(self.seconds, 2),
                "clients": self.clients, "caches": self.caches, "files": self.files,
                "baseline": self.baseline_path, "stopped": self.stopped,
                "cells": [c.to_dict() for c in self.cells]}


def parse_list(text: str, known: tuple[str, ...], what: str) -> list[str]:
    """``a,b`` -> [a, b], each among ``known``; ValueError names the unknown ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise ValueError(f"--{what}: {', '.join(unknown) or 'nothing given'}: "
                         f"choose among {', '.join(known)}")
    return list(dict.fromkeys(names))


def split_client(name: str) -> tuple[str, str | None]:
    """A --clients entry: ``podman@5.4`` -> ``("podman", "5.4")``, ``podman`` -> ``("podman", None)``."""
    client, _, version = name.partition("@")
    return client, version or None


def parse_clients(text: str) -> list[str]:
    """``--clients``: each entry a client among CLIENTS with a known version or none (the
    system's), ``dockerd,podman@5.4``; ValueError names what is wrong."""
    from chaos.lab.generations import GenerationError, resolve_name

    names = [n.strip() for n in text.split(",") if n.strip()]
    parse_list(",".join(split_client(n)[0] for n in names), CLIENTS, "clients")
    for name in names:
        try:
            resolve_name(name)
        except GenerationError as exc:
            raise ValueError(f"--clients: {exc}") from None
    return list(dict.fromkeys(names))


def verdict_of(report: dict) -> str:
    """A finished run's verdict from its probes: hung beats failed beats passed (a hang is
    the most telling way to fail); a probe error or a broken run is an error."""
    verdicts = [p["verdict"] for p in report["probes"]]
    if report["exit_code"] not in (ExitStatus.OK, ExitStatus.EXPECTATION) or "error" in verdicts:
        return "error"
    for verdict in ("hung", "failed"):
        if verdict in verdicts:
            return verdict
    return "passed"


def baseline_of(report: dict) -> str | None:
    compared = report.get("baseline")
    if compared is None:
        return None
    if not compared["recorded"]:
        return "not recorded"
    if compared["worse"]:
        return "worse"
    return "better" if compared["better"] else "as recorded"


class _Stop:
    """SIGINT / SIGTERM to the matrix: passed on to the running cell (it reverts and
    reports), and no further cell starts."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.child: subprocess.Popen | None = None

    def __call__(self, signum, frame) -> None:
        self.signum = self.signum or signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def run_cell(cell: Cell, folder: Path, child_args: list[str], timeout: float,
             stop: _Stop) -> None:
    """Run one cell's child to its end (or SIGTERM it at ``timeout``) and judge it."""
    paths = {kind: folder / rel for kind, rel in cell.reports.items()}
    client, version = split_client(cell.client)
    argv = [sys.executable, "-m", "chaos", "run", cell.file, "--client", client,
            *(["--client-version", version] if version else []), "--cache", cell.cache,
            "--json", str(paths["json"]), "--junit", str(paths["junit"]), *child_args]
    for path in paths.values():
        path.unlink(missing_ok=True)  # a report from an earlier matrix must not stand in
    t0 = time.monotonic()
    timed_out = False
    with open(paths["log"], "wb") as log:
        log.write(f"$ chaos {shlex.join(argv[3:])}\n".encode())  # what the cell ran
        log.flush()
        # its own session: a terminal's Ctrl-C reaches it once, through _Stop, not twice
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        stop.child = child
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            child.terminate()  # the run reverts and writes its reports, like any SIGTERM
            try:
                child.wait(timeout=TERM_GRACE)
            except subprocess.TimeoutExpired:
                child.kill()  # its journal stays: `chaos recover` undoes what it left
                child.wait()
        finally:
            stop.child = None
    cell.seconds = time.monotonic() - t0
    cell.exit_code = child.returncode
    report = _report(paths["json"])
    if timed_out:
        cell.verdict, cell.why = "hung", f"no end within {timeout:g} s: stopped (SIGTERM)"
    elif report is None:
        cell.verdict, cell.why = "error", f"no report (exit {child.returncode}); see its log"
    else:
        cell.verdict = verdict_of(report)
        cell.baseline = baseline_of(report)
        if cell.verdict == "error":
            cell.why = "; ".join(report["errors"]) or f"{report['status']} (exit {report['exit_code']})"


def _report(path: Path) -> dict | None:
    try:
        (scenario,) = json.loads(path.read_text())["scenarios"]
    except (OSError, ValueError, KeyError):
        return None
    return scenario


def run_matrix(matrix: Matrix, folder: Path, child_args: list[str], timeout: float,
               echo: Callable[[str], None]) -> int:
    """Every cell in turn, a line per cell as it ends, the page after each (a matrix cut
    short still has its page); the exit status of the worst cell."""
    from chaos.report import matrix_page

    (folder / CELLS).mkdir(parents=True, exist_ok=True)
    matrix.started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    stop = _Stop()
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    t0 = time.monotonic()
    echo(f"matrix: {len(matrix.cells)} cells ({len(matrix.files)} scenario(s) × "
         f"{len(matrix.clients)} client(s) × {len(matrix.caches)} cache(s)) into {folder}")
    try:
        for n, cell in enumerate(matrix.cells, 1):
            if stop.signum is not None:
                matrix.stopped = f"stopped by {signal.Signals(stop.signum).name}"
                break
            run_cell(cell, folder, child_args, timeout, stop)
            matrix.seconds = time.monotonic() - t0
            matrix_page.write(matrix, folder)
            extra = f", baseline: {cell.baseline}" if cell.baseline else ""
            why = f" ({cell.why})" if cell.why else ""
            echo(f"[{n}/{len(matrix.cells)}] {Path(cell.file).stem}  {cell.client} × {cell.cache}"
                 f"  {cell.verdict}  {cell.seconds:.1f} s{extra}{why}")
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    matrix.seconds = time.monotonic() - t0
    matrix_page.write(matrix, folder)
    echo(f"matrix: {_tally(matrix)} in {matrix.seconds:.0f} s: {folder / 'index.html'}")
    if stop.signum is not None:
        return ExitStatus.TERMINATED if stop.signum == signal.SIGTERM else ExitStatus.INTERRUPTED
    return _exit_status(matrix)


def _tally(matrix: Matrix) -> str:
    counts: dict[str, int] = {}
    for cell in matrix.cells:
        counts[cell.verdict] = counts.get(cell.verdict, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in counts.items())


def _exit_status(matrix: Matrix) -> int:
    """With a baseline a cell fails only where it differs from the record (as `chaos run
    --baseline` does); without one, where it did not pass. A broken run wins."""
    if any(c.verdict == "error" for c in matrix.cells):
        return ExitStatus.INJECTION
    if matrix.baseline_path:
        bad = any(c.baseline != "as recorded" for c in matrix.cells)
    else:
        bad = any(c.verdict != "passed" for c in matrix.cells)
    return ExitStatus.EXPECTATION if bad else ExitStatus.OK
