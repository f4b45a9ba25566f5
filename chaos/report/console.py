"""Console output: a live line while a step runs, then one line per result.

rich only on a terminal (spinner, colours). Elsewhere (CI logs, pipes) the same lines in
plain text, without importing rich: its import is a cost in every run's start-up
(docs/benchmarks.md), and off a terminal rich printed plain lines anyway.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from chaos.durations import format_duration
from chaos.probes.evidence import lines as evidence_lines
from chaos.runner import Reporter

if TYPE_CHECKING:
    from rich.status import Status

MARKS = {"passed": ("green", "✓"), "failed": ("red", "✗"), "hung": ("magenta", "⧗ hung"),
         "error": ("red", "! error")}


class _Plain:
    """What ConsoleReporter needs of a rich Console, for a stream that is not a terminal."""

    is_terminal = False

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    @staticmethod
    def paint(style: str, text: str) -> str:
        return text

    def print(self, line: str = "") -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


class _Rich:
    def __init__(self, console=None) -> None:
        from rich.console import Console

        # soft_wrap: long lines (file:line: messages) must stay whole in logs and greps
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.is_terminal = self.console.is_terminal

    @staticmethod
    def paint(style: str, text: str) -> str:
        from rich.markup import escape

        return f"[{style}]{escape(text)}[/]"

    def print(self, line: str = "") -> None:
        self.console.print(line)

    def status(self, text: str) -> Status:
        from rich.markup import escape

        return self.console.status(escape(text))


class ConsoleReporter(Reporter):
    def __init__(self, console=None, verbose: bool = False) -> None:
        """``console``: a rich Console to print to (default: rich on a terminal, else plain
        lines on stdout)."""
        self.out = _Rich(console) if console is not None or sys.stdout.isatty() else _Plain()
        self.verbose = verbose
        self._status: Status | None = None

    def _live(self, text: str) -> None:
        # A spinner line on a terminal; in CI (no terminal) plain lines, nothing redrawn.
        if isinstance(self.out, _Rich) and self.out.is_terminal:
            if self._status is None:
                self._status = self.out.status(text)
                self._status.start()
            else:
                self._status.update(self.out.paint("default", text))
        elif self.verbose:
            self.out.print(f"  … {text}")

    def _stop_live(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def scenario_start(self, scenario, file, run_id) -> None:
        paint = self.out.paint
        self.out.print(f"{paint('bold', scenario.name)} {paint('dim', f'{file} · run {run_id}')}")

    def step(self, text: str) -> None:
        self._live(text)

    def probe_start(self, phase: str, name: str) -> None:
        self._live(f"{phase}: {name}")

    def probe_done(self, result) -> None:
        self._stop_live()
        paint = self.out.paint
        style, mark = MARKS.get(result.verdict, ("default", result.verdict))
        self.out.print(f"  {paint(style, mark)} {paint('dim', f'{result.phase:<6}')} "
                       f"{paint('default', result.name)} "
                       f"{paint('dim', format_duration(result.duration))}")
        if not result.ok:
            self.out.print(f"      {paint('red', result.message())}")
        if result.observed:
            self.out.print(f"      {paint('dim', f'observed: {result.observed}')}")
        if not result.ok:
            for key in ("traceback", "stderr", "stdout"):
                text = (result.detail.get(key) or "").strip()
                if text:
                    self.out.print(f"      {paint('dim', f'{key}: {text[-300:]}')}")
        for line in evidence_lines(result.evidence):
            self.out.print(f"      {paint('dim', line)}")

    def fault(self, label: str, on: bool, t: float) -> None:
        self._stop_live()
        paint = self.out.paint
        state = paint("yellow", "on ") if on else paint("blue", "off")
        self.out.print(f"  ⚡ fault {state} {paint('default', label)} {paint('dim', f'at {t:.2f}s')}")

    def fault_connections(self, label: str, connections: list[dict]) -> None:
        from chaos.probes.evidence import connection_line

        paint = self.out.paint
        if not connections:
            self.out.print(f"      {paint('dim', 'open connections at its start: none')}")
        for c in connections:
            what = ", reset" if c.get("reset") else ""
            line = f"open at its start ({c.get('where')}): {connection_line(c)}{what}"
            self.out.print(f"      {paint('dim', line)}")

    def fault_stuck(self, label: str, t: float) -> None:
        self._stop_live()
        paint = self.out.paint
        self.out.print(f"  ⚡ fault {paint('red', 'stuck')} {paint('default', label)} "
                       f"{paint('dim', f'at {t:.2f}s: could not revert it')}")

    def scenario_done(self, result) -> None:
        self._stop_live()
        paint = self.out.paint
        colour = {"passed": "green", "failed": "red"}.get(result.status, "red")
        for error in result.errors:
            self.out.print(f"  {paint('red', error)}")
        from chaos.report.timeline import text

        for line in text(result):
            self.out.print(f"  {paint('dim', line)}")
        passed = sum(p.ok for p in result.probes)
        # Never-run probes share the reason printed above (the run's first error).
        not_run = sum(p.verdict == "skipped" for p in result.probes)
        skipped = f", {not_run} not run" if not_run else ""
        self.out.print(f"  {paint(colour, result.status)} {passed}/{len(result.probes)} probes "
                       f"passed{skipped} in {format_duration(result.duration)}\n")
