"""reset: connections reset (RST) or closed (FIN) at once or after N bytes."""

from __future__ import annotations

from typing import Literal

from chaos.faults.tcp_rule import TcpFault
from chaos.injectors.tcp_toxics import End, Toxic
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field, model_validator

ACK_POLL = 0.01
ACK_WAIT = 30.0


class Reset(TcpFault):
    """End connections: `how: rst` sends a TCP reset (SO_LINGER 0: "Connection reset by
    peer"), `how: fin` a clean close (a short read, "transfer closed with N bytes remaining").
    `after` bytes in `direction` (0: at once, with no response at all)."""

    type: Literal["reset"] = "reset"
    """The fault type."""
    how: Literal["rst", "fin"] = "rst"
    """`rst`: a TCP reset ("Connection reset by peer"); `fin`: a clean close (a short read)."""
    after: int = Field(0, ge=0)
    """Bytes that pass first (0: right after the connection is accepted)."""
    delay: Duration = 0.0
    """Wait this long before ending it."""
    at: Literal["accept", "first-byte"] = "accept"
    """With `after: 0`: end it right after accept (the server is never contacted), or at
    the first byte in `direction` (dropped: the server sees the request, the client gets
    no answer). Toxiproxy's `reset_peer` is `first-byte`."""
    wait_ack: bool = False
    """With `after`: false (default), the RST goes as soon as the Nth byte is handed to the
    kernel, and whatever the receiver has not got yet is lost with it, as with a real reset
    (a slow reader resumes from what it really received, fewer than N bytes); true, the RST
    waits until the receiver acknowledged all N bytes (it then has exactly N)."""

    @model_validator(mode="after")
    def _first_byte_alone(self):
        if self.at == "first-byte" and self.after:
            raise ValueError("at: first-byte needs after: 0 (it acts on the first byte)")
        return self

    @property
    def toxic_name(self) -> str:
        return "reset" if self.how == "rst" else "close"

    def toxic(self, rule):
        return ResetToxic(rule)

    def label(self) -> str:
        return self.name or f"reset ({self.how}) after {self.after} B"


class ResetToxic(Toxic):
    """RST (SO_LINGER 0) or FIN to both peers after ``after`` bytes in ``direction``, or at
    once (``after`` 0: right after accept, the upstream is never contacted); ``delay`` first."""

    p: Reset

    async def on_accept(self, conn) -> None:
        if self.p.after == 0 and self.p.at == "accept" and await self._armed():
            raise self._end()

    def budget(self, direction: str) -> int | None:
        if self.p.at == "first-byte":
            return 0 if direction in self.rule.directions else None
        return self._after(direction)

    async def fire(self, pump) -> None:
        if self.p.at == "first-byte" and not await self._first_byte(pump):
            return  # switched off meanwhile: the stream flows
        if not await self._armed():
            return
        if self.p.wait_ack:
            await self._acked(pump)
        raise self._end()

    async def _acked(self, pump) -> None:
        """Until the receiver has acknowledged every byte written (at most ACK_WAIT: a
        receiver that stopped reading is reset anyway), or the rule is switched off."""
        waited = 0.0
        while pump.unacked() and waited < ACK_WAIT and not self.rule.revoked:
            await self.rule.sleep(ACK_POLL)
            waited += ACK_POLL

    async def _first_byte(self, pump) -> bool:
        """Take (and drop) the first byte, or its end; False if the rule is revoked first."""
        import asyncio

        loop = asyncio.get_running_loop()
        revoked = loop.create_future()
        self.rule.waiter(revoked)
        recv = loop.create_task(loop.sock_recv(pump.src, 1))
        await asyncio.wait({recv, revoked}, return_when=asyncio.FIRST_COMPLETED)
        if recv.done():
            return True
        recv.cancel()
        await asyncio.wait({recv})  # unwound before anything may close its socket
        return False

    def _end(self) -> End:
        how = "reset" if self.p.how == "rst" else "close"
        return End(how, how)
