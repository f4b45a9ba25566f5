"""http-replace: parts of the request or of the origin's answer replaced (HTTPChaos `replace`)."""

from __future__ import annotations

from typing import Literal

from chaos.faults.http_rule import HttpTargetFault, NewBody, pick_target
from chaos.injectors.http_faults import actions, content
from chaos.injectors.http_faults.rules import FaultAddon
from chaos.scenario.modelbase import Field, model_validator

REQUEST_ONLY = ("path", "method", "queries")
RESPONSE_ONLY = ("code", "truncate")


class HttpReplace(HttpTargetFault, NewBody):
    """Replace parts of matching requests (`target: request`: path, method, queries,
    headers, body) or of the origin's answers (`target: response`: status code, headers,
    body, or the body cut to its first `truncate` bytes as a complete answer).

    A 200 whose body is a captive portal's page while the origin was asked, a manifest cut
    short with a matching content-length, a blob replaced by other bytes. HTTPChaos
    `replace` (code, body, headers, path, method, queries) with the same `target`.
    """

    type: Literal["http-replace"] = "http-replace"
    """The fault type."""
    path: str | None = Field(None, pattern=r"^/")
    """`target: request`: the path the origin gets (the query stays unless this has one)."""
    method: str | None = Field(None, pattern=r"^[A-Za-z]+$")
    """`target: request`: the method the origin gets."""
    queries: dict[str, str] = {}
    """`target: request`: query parameters set to these values (added when absent)."""
    code: int | None = Field(None, ge=100, le=599)
    """`target: response`: the status code the client gets."""
    headers: dict[str, str] = {}
    """Headers set to these values (added when absent), on the request or the answer."""
    truncate: int | None = Field(None, ge=0)
    """`target: response`: only the body's first N bytes, with content-length N (a
    complete but truncated answer; `partial` is the broken transfer)."""

    @model_validator(mode="after")
    def _fits_target(self):
        wrong = REQUEST_ONLY if self.target == "response" else RESPONSE_ONLY
        given = [k for k in wrong if getattr(self, k) not in (None, {})]
        if given:
            other = "request" if self.target == "response" else "response"
            raise ValueError(f"{', '.join(given)} needs target: {other}")
        if self.truncate is not None and self.new_body() is not None:
            raise ValueError("give a new body or truncate, not both")
        if not (self.path or self.method or self.queries or self.code or self.headers
                or self.truncate is not None or self.new_body() is not None
                or self.content_type):
            raise ValueError("nothing to replace: give path, method, queries, code, headers, "
                             "a body, content_type or truncate")
        return self

    @classmethod
    def http_addon(cls) -> FaultAddon:
        return HttpReplaceAddon()


class HttpReplaceAddon(FaultAddon):
    async def request(self, flow, rules) -> None:
        rule = pick_target(flow, rules, "request")
        if rule is None:
            return
        actions.claim(flow, rule)
        p: HttpReplace = rule.params
        req = flow.request
        if p.method:
            req.method = p.method.upper()
        if p.path:
            query = req.query.fields
            req.path = p.path
            if "?" not in p.path:
                req.query = query
        for name, value in p.queries.items():
            req.query[name] = value
        for name, value in p.headers.items():
            req.headers[name] = value
        body = p.new_body()
        if body is not None:
            content.set_request_body(flow, body)
        ctype = p.new_content_type(p.headers)
        if ctype is not None:
            req.headers["content-type"] = ctype

    def responseheaders(self, flow, rules) -> None:
        rule = pick_target(flow, rules, "response")
        if rule is None:
            return
        actions.claim(flow, rule)
        p: HttpReplace = rule.params
        response = flow.response
        if p.code is not None:
            from chaos.injectors.http_faults import pages

            response.status_code, response.reason = p.code, pages.reason(p.code)
        for name, value in p.headers.items():
            response.headers[name] = value
        ctype = p.new_content_type(p.headers)
        if ctype is not None:
            response.headers["content-type"] = ctype
        body = p.new_body()
        if body is not None:
            content.replace_response_body(flow, body)
        elif p.truncate is not None:
            content.truncate_response_body(flow, p.truncate)

    async def response(self, flow) -> None:
        content.finish_response(flow)
