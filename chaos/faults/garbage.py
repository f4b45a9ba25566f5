"""garbage: random bytes instead of the response, then close (a corrupted path)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from chaos.faults.tcp_rule import TcpFault
from chaos.scenario.model import Duration


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
    toxic: ClassVar[str] = "garbage"

    def toxic_params(self) -> dict:
        return {"bytes": self.bytes, "after": self.after, "delay": self.delay}
