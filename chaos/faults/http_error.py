"""http-error: a CDN or registry answers error pages instead of content (the CDN outage)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaos.faults.base import Fault
from chaos.faults.http_rule import HttpMatch, http_injectors, http_proxied
from chaos.scenario.model import Duration


class HttpError(Fault):
    """Answer matching requests with an HTTP error, the way a CDN does.

    5xx statuses come with a CDN-style HTML error page (`server: cloudflare`, a `cf-ray`
    id); 403 with the plain-text `error code: 1010` bot answer; 429 with `retry-after`.
    The request never reaches the server. Traffic reaches the fault proxy at the sandbox
    world's edge, redirected from `ports`.
    """

    type: Literal["http-error"] = "http-error"
    """The fault type."""
    status: Literal[500, 502, 503, 504, 520, 521, 522, 523, 524, 525, 526, 403, 429] = 503
    """The status answered: a 5xx (with the CDN's error page), 403 (`error code: 1010`)
    or 429 (rate limited)."""
    body: Literal["page", "code", "empty"] | None = None
    """`page`: the CDN's HTML page; `code`: `error code: N`; `empty`. Default: code for 403,
    page otherwise."""
    error_code: int | None = None
    """The N of `error code: N` (default 1010)."""
    delay: Duration | None = None
    """Wait this long before answering (a 522 really comes after the origin's timeout)."""
    retry_after: int | None = Field(None, ge=0)
    """Seconds in a `retry-after` header (429, 503)."""
    headers: dict[str, str] = {}
    """More response headers."""
    match: HttpMatch | None = None
    """Only these requests (default: every request through the proxy)."""
    ports: list[int] = [80, 443]
    """Server ports whose traffic goes through the fault proxy."""
    probability: float | None = Field(None, gt=0, le=1)
    """Answer this way for that share of requests; the rest pass."""
    every: int | None = Field(None, ge=2)
    """Answer this way for every Nth matching request only (a deterministic flap)."""

    def proxied(self):
        return http_proxied(self)

    def injectors(self, ctx):
        rule = self.model_dump(mode="json", include={"status", "body", "error_code", "delay",
                                                      "retry_after", "headers"}, exclude_none=True)
        if not rule.get("headers"):
            rule.pop("headers", None)
        if self.every:
            rule["every"] = self.every
        return http_injectors(ctx, self, {"fault": "http-error", **rule}, self.ports)

    def label(self) -> str:
        where = f" for {self.match.host}" if self.match and self.match.host else ""
        return self.name or f"http-error {self.status}{where}"
