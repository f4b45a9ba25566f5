"""stop, start, restart: a lab component (cache, upstream, auth, cdn, dockerd)."""

from __future__ import annotations

from typing import Literal

from chaos.steps.base import StepBase

Component = Literal["cache", "upstream", "registry", "auth", "cdn", "dockerd"]


class StopStep(StepBase):
    """Stop a lab component: its process is killed (SIGTERM, then SIGKILL), as a crash or
    an operator would. Faults that are on stay on."""

    key = "stop"
    stop: Component
    """`cache`, `upstream` (registry-1.docker.io; also `registry`), `auth`, `cdn` or
    `dockerd` (the client's)."""

    def describe(self) -> str:
        return f"stop {self.stop}"

    def act(self, lab, journal, limit) -> str:
        from chaos.lab import components

        return f"{self.stop} stopped" if components.stop(lab, self.stop) else \
            f"{self.stop} was not running"


class StartStep(StepBase):
    """Start a stopped lab component again, with its configuration and storage (a cache
    keeps what it had cached); one whose process still runs is only waited for. Passes
    once it answers its readiness check (`GET /v2/`,
    `/healthz` or dockerd's `/_ping`), within the step's bound (`within`, else `timeout`,
    else 30s); a component that does not come up fails the step and the run goes on."""

    key = "start"
    start: Component
    """The component (as for `stop`)."""

    def describe(self) -> str:
        return f"start {self.start}"

    def act(self, lab, journal, limit) -> str:
        from chaos.lab import components

        if components.start(lab, self.start, limit):
            return f"{self.start} started and ready"
        return f"{self.start} was running; it answers"


class RestartStep(StepBase):
    """Stop, then start a lab component (as `stop` and `start`), for example the cache
    while the upstream is failing: distribution asks the upstream for its auth challenge
    when it starts."""

    key = "restart"
    restart: Component
    """The component (as for `stop`)."""

    def describe(self) -> str:
        return f"restart {self.restart}"

    def act(self, lab, journal, limit) -> str:
        from chaos.lab import components

        components.stop(lab, self.restart)
        components.start(lab, self.restart, limit)
        return f"{self.restart} restarted and ready"
