"""http: one HTTP request from where the clients live; status, headers, body and time are
judged."""

from __future__ import annotations

from typing import Annotated, Literal

from chaos.probes.base import ProbeBase
from chaos.scenario.model import Strict, TextMatch
from chaos.scenario.modelbase import Field


class SizeRange(Strict):
    """A size in bytes between two bounds (either may be left out)."""

    at_least: int | None = Field(None, ge=0)
    """At least this many bytes."""
    at_most: int | None = Field(None, ge=0)
    """At most this many bytes."""


class HttpProbe(ProbeBase):
    """Make one HTTP request from inside the sandbox."""

    kind = "http"
    key = "http"

    http: str = Field(pattern=r"^https?://")
    """The URL."""
    method: str = "GET"
    """The request method (GET, HEAD, POST, ...)."""
    status: int | list[int] | Literal["error"] = 200
    """Expected status code(s), or `error` when no HTTP answer must come back."""
    body: TextMatch | None = None
    """Checks on the response body."""
    headers: dict[str, str] = {}
    """Request headers."""
    response_headers: dict[str, str | TextMatch | None] = {}
    """Checks on response headers (names in any case): the value it must equal, checks on
    it (`{contains: ...}`), or null: the header must be absent."""
    body_size: Annotated[int, Field(ge=0)] | SizeRange | None = None
    """The body's size in bytes: exactly this, or `{at_least: N, at_most: M}`."""

    def observe(self, place, journal, result) -> None:
        from chaos.probes import evidence, expect
        from chaos.probes.result import ERROR, HUNG
        from chaos.probes.run import ask_agent, bound

        limit = bound(self)
        url = place.expand(self.http)
        # In a namespace the agent is killed at the bound, after its connections were read
        # (the evidence); its own socket timeout, a little later, only backs that up.
        timeout = limit if place.netns is None else limit + 1.0
        observed = ask_agent({"probe": "http", "url": url, "method": self.method,
                              "headers": self.headers, "timeout": timeout}, place, journal, limit,
                             at_bound=lambda: evidence.take_connections(place, result))
        result.duration = observed.get("duration", 0.0)
        result.detail.update(url=url, **{k: v for k, v in observed.items() if k != "duration"})
        if observed.get("error") == "timeout":
            result.verdict = HUNG
            return
        if observed.get("error") == "agent":
            result.verdict = ERROR
            return
        result.checks.append(expect.status_check(self.status, observed))
        statuses = self.status if isinstance(self.status, list) else [self.status]
        if self.status == "error" or any(isinstance(s, int) and s >= 400 for s in statuses):
            result.observed = expect.http_observed(observed)
        result.checks += expect.text_checks("body", self.body, observed.get("body", ""))
        result.checks += expect.header_checks(self.response_headers, observed)
        result.checks += expect.size_checks("body size", self.body_size, observed)
        result.checks += expect.within_check(self.within, result.duration)
