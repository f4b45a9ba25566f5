"""tcp: one TCP connect from where the clients live; how it ended is judged."""

from __future__ import annotations

from typing import Literal

from chaos.probes.base import ProbeBase
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field


class TcpProbe(ProbeBase):
    """Open one TCP connection from inside the sandbox."""

    kind = "tcp"
    key = "tcp"

    tcp: str = Field(pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$")
    """host:port to connect to."""
    connect: Literal["ok", "refused", "timeout", "unreachable", "error"] = "ok"
    """What must happen: ok, refused (RST), timeout (no answer), unreachable (no route),
    error (any failure)."""
    connect_timeout: Duration = 3.0
    """How long the connect waits before it counts as a timeout."""

    def observe(self, place, journal, result) -> None:
        from chaos.probes import expect
        from chaos.probes.result import ERROR, HUNG
        from chaos.probes.run import ask_agent

        target = place.expand(self.tcp)
        host, _, port = target.rpartition(":")
        observed = ask_agent({"probe": "tcp", "host": host.strip("[]"), "port": int(port),
                              "timeout": self.connect_timeout}, place, journal,
                             self.connect_timeout + 5.0)
        result.duration = observed.get("duration", 0.0)
        result.detail.update(target=target, **{k: v for k, v in observed.items() if k != "duration"})
        if observed.get("error") == "agent":
            result.verdict = ERROR
            return
        if observed.get("error") == "timeout":  # the agent itself was killed (a resolver hang)
            result.verdict = HUNG
            return
        seen = observed.get("connect", "error")
        ok = seen == self.connect or (self.connect == "error" and seen != "ok")
        detail = f"{seen} ({observed['message']})" if observed.get("message") else seen
        result.checks.append(expect.Check("connect", self.connect, detail, ok))
        if self.connect != "ok":  # about an error: which one came
            result.observed = detail
        result.checks += expect.within_check(self.within, result.duration)
