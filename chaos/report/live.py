"""The console of `chaos run -j`: one live line per running scenario, each result whole.

A result is a child run's own console output, printed whole once it and every scenario
given before it have ended, so the log reads as a serial run's would. On a terminal a live
line per running scenario (rich) shows its latest step below the results; elsewhere (CI
logs, pipes) nothing is redrawn: the plan, then the results.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from chaos.jobs import Board, Job

if TYPE_CHECKING:
    from rich.live import Live
    from rich.spinner import Spinner


class PlainBoard(Board):
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def plan(self, lines: list[str]) -> None:
        for line in lines:
            self._print(f"chaos run -j: {line}")
        self._print("")

    def result(self, job: Job) -> None:
        if job.result is None:
            self._print(f"{job.name} {job.path} · not started: {_why_not(job)}\n")
            return
        text = "\n".join(job.output).rstrip("\n")
        self._print(text + "\n")


def _why_not(job: Job) -> str:
    from chaos.jobs import _not_started

    return _not_started(job).errors[0]


class LiveBoard(PlainBoard):
    """On a terminal: the same results, and below them a spinner line per running scenario
    with how long it has run and the last line it printed."""

    def __init__(self) -> None:
        from rich.console import Console

        super().__init__()
        self.console = Console(highlight=False, soft_wrap=True)
        self.spinners: dict[int, Spinner] = {}
        self.jobs: list[Job] = []
        self.ended: list[Job] = []
        self.live: Live | None = None

    def _print(self, text: str) -> None:
        from rich.text import Text

        self.console.print(Text(text))

    def _render(self):
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        now = time.monotonic()
        for job in self.jobs:
            spinner = self.spinners.setdefault(job.index, Spinner("dots"))
            grid.add_row(spinner, Text(job.name, style="bold"),
                         Text(f"{now - job.started:4.0f}s", style="dim"),
                         Text(job.last, style="dim", no_wrap=True, overflow="ellipsis"))
        for job in self.ended:
            status = job.result.status if job.result is not None else "?"
            grid.add_row(Text("✓" if status == "passed" else "✗", style="green" if status == "passed" else "red"),
                         Text(job.name, style="bold"), Text(""),
                         Text(f"{status}; shown once the scenarios before it end", style="dim"))
        return grid

    def running(self, jobs: list[Job], ended: list[Job]) -> None:
        from rich.live import Live

        self.jobs, self.ended = list(jobs), list(ended)
        if self.live is None:
            self.live = Live(get_renderable=self._render, console=self.console,
                             refresh_per_second=8, transient=True)
            self.live.start()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def board() -> Board:
    return LiveBoard() if sys.stdout.isatty() else PlainBoard()
