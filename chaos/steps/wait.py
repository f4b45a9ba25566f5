"""wait: let time pass between two probes or steps (a fault's window, a cache's expiry)."""

from __future__ import annotations

from chaos.scenario.model import Duration
from chaos.steps.base import StepBase


class WaitStep(StepBase):
    """Wait this long, then go on with the phase."""

    key = "wait"
    needs_lab = False
    wait: Duration
    """How long, e.g. 2s."""

    def describe(self) -> str:
        from chaos.durations import format_duration

        return f"wait {format_duration(self.wait)}"

    def act(self, lab, journal, limit) -> str:
        import time

        time.sleep(self.wait)
        return f"waited {self.wait:g}s"
