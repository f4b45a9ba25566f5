"""partial: downloads stop after N bytes; Range requests still get 206 (resuming clients finish)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaos.faults.base import Fault
from chaos.faults.http_rule import HttpMatch, http_injectors, http_proxied
from chaos.scenario.model import Duration


class Partial(Fault):
    """Serve only the first `bytes` of matching response bodies, then close, reset or hang.

    Range requests are answered 206 with Content-Range, so a client that resumes (`curl -C -`,
    dockerd retrying a layer) can finish, one cut at a time with `cut_ranges`.
    """

    type: Literal["partial"] = "partial"
    """The fault type."""
    bytes: int = Field(ge=0)
    """Body bytes served before the cut."""
    then: Literal["close", "reset", "hang"] = "close"
    """What happens at the cut: a clean close, a TCP reset, or nothing more at all."""
    hang_seconds: Duration | None = None
    """With `then: hang`: close after this long (default: hang until the client gives up)."""
    cut_ranges: bool = False
    """Cut Range requests too (a resuming client then advances `bytes` per try)."""
    match: HttpMatch | None = None
    """Only these requests (default: every request through the proxy)."""
    ports: list[int] = [80, 443]
    """Server ports whose traffic goes through the fault proxy."""
    probability: float | None = Field(None, gt=0, le=1)
    """Cut this share of matching responses; the rest pass whole."""

    def proxied(self):
        return http_proxied(self)

    def injectors(self, ctx):
        rule = self.model_dump(mode="json", include={"bytes", "then", "hang_seconds", "cut_ranges"},
                               exclude_none=True)
        return http_injectors(ctx, self, {"fault": "partial", **rule}, self.ports)

    def label(self) -> str:
        return self.name or f"partial {self.bytes} B then {self.then}"
