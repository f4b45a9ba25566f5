"""garbage: random bytes instead of the response, then close (a corrupted path)."""

from __future__ import annotations

import os
from typing import Literal

from chaos.faults.tcp_rule import TcpFault
from chaos.injectors.tcp_toxics import Drain, End, Toxic
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field


class Garbage(TcpFault):
    """Send `bytes` random bytes instead of the rest of the stream (after `after` real ones),
    then close: what a broken middlebox or a corrupted path looks like to a client."""

    type: Literal["garbage"] = "garbage"
    """The fault type."""
    bytes: int = Field(64, ge=1)
    """How many random bytes are sent before the close."""
    after: int = Field(0, ge=0)
    """Real bytes that pass first (0: garbage at once; the server is never contacted)."""
    delay: Duration = 0.0
    """Wait this long before the garbage."""

    def toxic(self, rule):
        return GarbageToxic(rule)


class GarbageToxic(Toxic):
    """Downstream: the client gets garbage then FIN (``after`` 0: the upstream is never
    contacted). Upstream: the server gets garbage then FIN; its answer still comes back."""

    p: Garbage

    async def on_accept(self, conn) -> None:
        if self.p.after == 0 and "downstream" in self.rule.directions and await self._armed():
            await conn.send_client(os.urandom(self.p.bytes))
            raise End("garbage", "close")

    def budget(self, direction: str) -> int | None:
        if direction == "upstream" and self.p.after == 0 and direction in self.rule.directions:
            return 0
        return self._after(direction)

    async def fire(self, pump) -> None:
        if not await self._armed():
            return
        await pump.write(os.urandom(self.p.bytes))
        if pump.direction == "downstream":
            raise End("garbage", "close")
        raise Drain()
