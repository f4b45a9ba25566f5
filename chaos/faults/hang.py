"""hang: the server accepts and never answers, or a download stops and the connection stays open."""

from __future__ import annotations

from typing import Literal

from chaos.faults.tcp_rule import TcpFault
from chaos.injectors.base import shown
from chaos.injectors.tcp_toxics import End, Toxic
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field


class Hang(TcpFault):
    """Connections are held: nothing more comes back, and the connection stays open.

    `accept`: TCP connects, then silence (the server is never contacted). `after-request`:
    the request reaches the server, no response byte comes back. `after-bytes`: `bytes` pass,
    then the stream stalls. For `for` (default: forever), then `then`.
    """

    type: Literal["hang"] = "hang"
    """The fault type."""
    at: Literal["accept", "after-request", "after-bytes"] = "after-request"
    """When the connection is held: at `accept` (the server is never contacted),
    `after-request` (no response byte comes back) or `after-bytes` (after `bytes`)."""
    bytes: int = Field(0, ge=0)
    """With `after-bytes`: how many bytes pass before the stall."""
    for_: Duration | None = Field(None, alias="for")
    """How long each connection is held (default: until the client gives up)."""
    then: Literal["resume", "close", "reset"] = "resume"
    """When `for` elapses: the held bytes flow again, or the connection closes or resets."""

    def toxic(self, rule):
        return HangToxic(rule)

    def label(self) -> str:
        return self.name or f"hang {self.at} {shown(self.destinations) or 'all'}:{','.join(map(str, self.ports))}"


class HangToxic(Toxic):
    """Holds the connection at ``at``; a client that closes ends it."""

    p: Hang

    async def on_accept(self, conn) -> None:
        if self.p.at == "accept":
            await self._hold(conn)

    def budget(self, direction: str) -> int | None:
        if self.p.at == "after-request":
            return 0 if direction == "downstream" else None
        if self.p.at == "after-bytes" and direction in self.rule.directions:
            return self.p.bytes
        return None

    async def fire(self, pump) -> None:
        await self._hold(pump.conn)

    async def _hold(self, conn) -> None:
        outcome = await conn.hold(self.rule, self.p.for_)
        if outcome == "client-closed":
            raise End("client-closed", "close")
        if outcome == "elapsed" and self.p.then != "resume":
            raise End(f"hang-then-{self.p.then}", self.p.then)
