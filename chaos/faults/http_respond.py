"""http-respond: an answer of the scenario's choosing, 200 included (a captive portal, a
middlebox); the origin is never asked."""

from __future__ import annotations

from typing import Literal

from chaos.faults.http_rule import HttpRequestsFault, NewBody, answer_rule
from chaos.injectors.http_faults.rules import FaultAddon
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import Field


class HttpRespond(HttpRequestsFault, NewBody):
    """Answer matching requests with any status, body, content type and headers; the request
    never reaches the origin.

    A captive portal or a proxy's login page answering 200 with HTML for a manifest, a CDN
    answering a blob whose digest does not match (`body_random`), a registry answering a
    truncated manifest with a complete-looking 200. (HTTPChaos has no exact equal: its
    `replace` with `target: Response` still asks the origin; see docs/http-faults.md.)
    """

    type: Literal["http-respond"] = "http-respond"
    """The fault type."""
    status: int = Field(200, ge=100, le=599)
    """The status answered (any, 200 included)."""
    headers: dict[str, str] = {}
    """Response headers (beside `content-type` and `content-length`)."""
    delay: Duration | None = None
    """Wait this long before answering."""

    @classmethod
    def http_addon(cls) -> FaultAddon:
        return HttpRespondAddon()

    def label(self) -> str:
        where = f" for {self.match.host}" if self.match and self.match.host else ""
        return self.name or f"http-respond {self.status}{where}"


class HttpRespondAddon(FaultAddon):
    """Answers matching requests itself; the origin is never contacted."""

    async def request(self, flow, rules) -> None:
        rule = await answer_rule(flow, rules)
        if rule is None:
            return
        from mitmproxy import http

        p: HttpRespond = rule.params
        headers = dict(p.headers)
        ctype = p.new_content_type(p.headers)
        if ctype is not None:
            headers["content-type"] = ctype
        flow.response = http.Response.make(p.status, p.new_body() or b"", headers)
