"""slow: latency, bandwidth caps, drips, small segments, a late FIN (netem is not in this kernel)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from chaos.faults.tcp_rule import TcpFault
from chaos.scenario.model import Duration, Strict


class Drip(Strict):
    bytes: int = Field(ge=1)
    every: Duration


class Slicer(Strict):
    size: int = Field(ge=1)
    variation: int = Field(0, ge=0)
    delay: Duration = 0.0


class Slow(TcpFault):
    """Bytes arrive late: any combination of added `latency` (+- `jitter`), a `rate` cap,
    a `drip` (N bytes every T), a `slicer` (small segments with a delay between them) and a
    `close_delay` (the FIN held back)."""

    type: Literal["slow"] = "slow"
    latency: Duration = 0.0
    jitter: Duration = 0.0
    rate: int | None = Field(None, ge=1)
    """Bytes per second."""
    drip: Drip | None = None
    slicer: Slicer | None = None
    close_delay: Duration = 0.0
    toxic: ClassVar[str] = "slow"

    def toxic_params(self) -> dict:
        return self.model_dump(mode="json", include={"latency", "jitter", "rate", "drip", "slicer",
                                                      "close_delay"}, exclude_none=True)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.toxic_params().items() if v]
        return self.name or f"slow {' '.join(parts)}"
