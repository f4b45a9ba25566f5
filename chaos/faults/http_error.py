"""http-error: a CDN or registry answers error pages instead of content (the CDN outage)."""

from __future__ import annotations

from typing import Literal

from chaos.faults.http_rule import HttpRequestsFault, answer_rule
from chaos.injectors.http_faults import pages
from chaos.injectors.http_faults.rules import FaultAddon
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field


class HttpError(HttpRequestsFault):
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


    @classmethod
    def http_addon(cls) -> FaultAddon:
        return HttpErrorAddon()

    def label(self) -> str:
        where = f" for {self.match.host}" if self.match and self.match.host else ""
        return self.name or f"http-error {self.status}{where}"


class HttpErrorAddon(FaultAddon):
    """Answers matching requests with a CDN error; the origin is never contacted."""

    async def request(self, flow, rules) -> None:
        rule = await answer_rule(flow, rules)
        if rule is not None:
            flow.response = make_response(rule.params, flow.request.pretty_host)


def make_response(p: HttpError, host: str):
    """The mitmproxy Response a CDN edge would send for these parameters."""
    from mitmproxy import http

    ray = pages.ray_id()
    body = p.body or ("code" if p.status == 403 else "page")
    if body == "page":
        content, ctype = pages.error_page(p.status, host, ray), "text/html; charset=UTF-8"
    elif body == "code":
        content = pages.error_code_body(1010 if p.error_code is None else p.error_code)
        ctype = "text/plain; charset=UTF-8"
    else:
        content, ctype = b"", "text/plain; charset=UTF-8"
    extra = dict(p.headers)
    if p.retry_after is not None:
        extra["retry-after"] = str(p.retry_after)
    headers = pages.cdn_headers(content_type=ctype, ray=ray, extra=extra)
    response = http.Response.make(p.status, content, headers)
    response.reason = pages.reason(p.status)
    return response
