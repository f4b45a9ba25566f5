"""slow: latency, bandwidth caps, drips, small segments, a late FIN (netem is not in this kernel)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from chaos.faults.tcp_rule import TcpFault
from chaos.scenario.model import Duration, Strict


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
    toxic: ClassVar[str] = "slow"

    def toxic_params(self) -> dict:
        return self.model_dump(mode="json", include={"latency", "jitter", "rate", "drip", "slicer",
                                                      "close_delay"}, exclude_none=True)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.toxic_params().items() if v]
        return self.name or f"slow {' '.join(parts)}"
