"""discard: bytes in one direction are read and thrown away, then the connection closes."""

from __future__ import annotations

from typing import Literal

from chaos.faults.tcp_rule import TcpFault
from chaos.injectors.tcp_toxics import End, Toxic
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field


class Discard(TcpFault):
    """Bytes in `direction` are read and thrown away: the sender sees them leave, the receiver
    gets nothing. After `for` the connection is closed (FIN); without `for` it stays open.
    Switched off, the stream flows again (what was discarded is lost). Toxiproxy's `timeout`."""

    type: Literal["discard"] = "discard"
    """The fault type."""
    for_: Duration | None = Field(None, alias="for")
    """How long bytes are discarded before the connection closes (default: until the client
    gives up or the fault is switched off)."""

    def toxic(self, rule):
        return DiscardToxic(rule)

    def label(self) -> str:
        return self.name or f"discard {self.direction} for {self.for_ or 'ever'}"


class DiscardToxic(Toxic):
    """Fires at the start of each direction the rule selects and reads it into the void."""

    p: Discard

    def budget(self, direction: str) -> int | None:
        return 0 if direction in self.rule.directions else None

    async def fire(self, pump) -> None:
        import asyncio

        from chaos.injectors.tcp_relay import CHUNK

        loop = asyncio.get_running_loop()
        revoked = loop.create_future()
        self.rule.waiter(revoked)
        deadline = None if self.p.for_ is None else loop.time() + self.p.for_
        while not self.rule.revoked:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                raise End("discard-then-close", "close")
            recv = loop.create_task(loop.sock_recv(pump.src, CHUNK))
            await asyncio.wait({recv, revoked}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if not recv.done():
                # wait for the cancelled read to unwind before anything closes its socket
                recv.cancel()
                await asyncio.wait({recv})
                continue
            if not recv.cancelled() and recv.exception() is None and not recv.result():
                raise End("discard-then-close", "close")  # the sender finished: so does this
            if recv.exception() is not None:
                raise recv.exception()  # type: ignore[misc]
