"""Console output with rich: a live line while a step runs, then one line per result."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from chaos.durations import format_duration
from chaos.runner import Reporter

MARKS = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "hung": "[magenta]⧗ hung[/]",
         "error": "[red]! error[/]"}


class ConsoleReporter(Reporter):
    def __init__(self, console: Console | None = None, verbose: bool = False) -> None:
        # soft_wrap: long lines (file:line: messages) must stay whole in CI logs and greps
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.verbose = verbose
        self._status = None

    def _live(self, text: str) -> None:
        # A spinner line on a terminal; in CI (no terminal) plain lines, nothing redrawn.
        if self.console.is_terminal:
            if self._status is None:
                self._status = self.console.status(escape(text))
                self._status.start()
            else:
                self._status.update(escape(text))
        elif self.verbose:
            self.console.print(f"  … {escape(text)}")

    def _stop_live(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def scenario_start(self, scenario, file, run_id) -> None:
        self.console.print(f"[bold]{escape(scenario.name)}[/] [dim]{escape(file)} · run {run_id}[/]")

    def step(self, text: str) -> None:
        self._live(text)

    def probe_start(self, phase: str, name: str) -> None:
        self._live(f"{phase}: {name}")

    def probe_done(self, result) -> None:
        self._stop_live()
        mark = MARKS.get(result.verdict, result.verdict)
        self.console.print(f"  {mark} [dim]{result.phase:<6}[/] {escape(result.name)} "
                           f"[dim]{format_duration(result.duration)}[/]")
        if not result.ok:
            self.console.print(f"      [red]{escape(result.message())}[/]")
            for key in ("stderr", "stdout"):
                text = (result.detail.get(key) or "").strip()
                if text:
                    self.console.print(f"      [dim]{key}: {escape(text[-300:])}[/]")

    def fault(self, label: str, on: bool, t: float) -> None:
        self._stop_live()
        state = "[yellow]on [/]" if on else "[blue]off[/]"
        self.console.print(f"  ⚡ fault {state} {escape(label)} [dim]at {t:.2f}s[/]")

    def fault_stuck(self, label: str, t: float) -> None:
        self._stop_live()
        self.console.print(f"  ⚡ fault [red]stuck[/] {escape(label)} [dim]at {t:.2f}s: "
                           "could not revert it[/]")

    def scenario_done(self, result) -> None:
        self._stop_live()
        colour = {"passed": "green", "failed": "red"}.get(result.status, "red")
        for error in result.errors:
            self.console.print(f"  [red]{escape(error)}[/]")
        from chaos.report.timeline import text

        for line in text(result):
            self.console.print(f"  [dim]{escape(line)}[/]")
        passed = sum(p.ok for p in result.probes)
        self.console.print(f"  [{colour}]{result.status}[/] {passed}/{len(result.probes)} probes "
                           f"passed in {format_duration(result.duration)}\n")
