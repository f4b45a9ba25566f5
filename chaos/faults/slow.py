"""slow: latency, bandwidth caps, drips, small segments, a late FIN (netem is not in this kernel)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Literal

from chaos.faults.tcp_rule import TcpFault
from chaos.injectors.tcp_toxics import Toxic
from chaos.scenario.model import Duration, Strict
from chaos.scenario.modelbase import Field, model_validator

if TYPE_CHECKING:
    from chaos.injectors.tcp_toxics import Rule


class Drip(Strict):
    """A few bytes at a time: `bytes` every `every`."""

    bytes: int = Field(ge=1)
    """Bytes let through at each step."""
    every: Duration
    """Time between two steps."""


class Slicer(Strict):
    """The stream cut into small segments with a pause between them."""

    size: int = Field(ge=1)
    """Average segment size in bytes."""
    variation: int = Field(0, ge=0)
    """Segment sizes vary by up to this many bytes either way (smaller than `size`)."""
    delay: Duration = 0.0
    """Pause between two segments."""

    @model_validator(mode="after")
    def _smaller(self):
        if self.variation >= self.size:
            raise ValueError("variation: must be smaller than size")
        return self


class Slow(TcpFault):
    """Bytes arrive late: any combination of added `latency` (+- `jitter`), a `rate` cap,
    a `drip` (N bytes every T), a `slicer` (small segments with a delay between them) and a
    `close_delay` (the FIN held back)."""

    type: Literal["slow"] = "slow"
    """The fault type."""
    latency: Duration = 0.0
    """Added to every chunk of data."""
    jitter: Duration = 0.0
    """The latency varies by up to this much either way (chunks stay in order)."""
    rate: int | None = Field(None, ge=1)
    """Bytes per second."""
    drip: Drip | None = None
    """N bytes every T ({bytes: 1, every: 1s}); not together with `slicer`."""
    slicer: Slicer | None = None
    """Small segments with a delay between them ({size: 100, delay: 10ms})."""
    close_delay: Duration = 0.0
    """Hold the end of the stream (the FIN) back this long."""
    @model_validator(mode="after")
    def _one_cutter(self):
        if self.drip and self.slicer:
            raise ValueError("drip and slicer: pick one (both cut the stream into pieces)")
        return self

    def toxic(self, rule):
        return SlowToxic(rule)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.model_dump(
            mode="json", include={"latency", "jitter", "rate", "drip", "slicer", "close_delay"},
            exclude_none=True).items() if v]
        return self.name or f"slow {' '.join(parts)}"


class SlowToxic(Toxic):
    """Paces the bytes of the rule's directions (see ``Shaper``)."""

    p: Slow

    def shaper(self, direction: str):
        return Shaper(self.rule, self.p) if direction in self.rule.directions else None


class Shaper:
    """One direction's pacing state for a slow rule (per connection, per direction)."""

    def __init__(self, rule: Rule, p: Slow) -> None:
        self.rule, self.p = rule, p
        self.next_at = 0.0    # earliest time of the next piece (drip/slicer spacing, rate)
        self.last_due = 0.0   # latency: keeps chunks in order when jitter would swap them
        self.rng = random.Random()

    async def shape(self, data: bytes, read_at: float) -> AsyncIterator[bytes]:
        import asyncio  # here: the plan imports this module and needs no event loop

        loop = asyncio.get_running_loop()
        p = self.p
        if p.latency or p.jitter:
            delay = max(0.0, p.latency + self.rng.uniform(-p.jitter, p.jitter))
            self.last_due = max(self.last_due, read_at + delay)
            await self._sleep_until(loop, self.last_due)
        for piece in self._pieces(data):
            await self._sleep_until(loop, self.next_at)
            yield piece
            now = loop.time()
            gap = 0.0
            if p.drip:
                gap = p.drip.every
            elif p.slicer:
                gap = p.slicer.delay
            if p.rate:
                gap = max(gap, len(piece) / p.rate)
            self.next_at = max(now, self.next_at) + gap if gap else 0.0

    def _pieces(self, data: bytes):
        p = self.p
        sizes: Iterator[int]
        if p.drip:
            size = p.drip.bytes
            sizes = iter(lambda: size, None)
        elif p.slicer:
            size, spread = p.slicer.size, p.slicer.variation
            low, high = size - spread, size + spread
            sizes = iter(lambda: self.rng.randint(low, high), None)
        elif p.rate:
            # pieces of ~10 ms worth, so the cap holds within a chunk, not only between chunks
            size = max(1, int(p.rate / 100))
            sizes = iter(lambda: size, None)
        else:
            yield data
            return
        view = memoryview(data)
        while view:
            if self.rule.revoked:
                yield bytes(view)
                return
            n = next(sizes)
            yield bytes(view[:n])
            view = view[n:]

    async def _sleep_until(self, loop, when: float) -> None:
        await self.rule.sleep(when - loop.time())

    async def at_eof(self) -> None:
        await self.rule.sleep(self.p.close_delay)
