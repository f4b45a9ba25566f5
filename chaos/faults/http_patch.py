"""http-patch: a JSON merge patch on the body, headers and queries added (HTTPChaos `patch`)."""

from __future__ import annotations

from typing import Any, Literal

from chaos.faults.http_rule import HttpTargetFault, pick_target
from chaos.injectors.http_faults import actions, content
from chaos.injectors.http_faults.rules import FaultAddon
from chaos.scenario.modelbase import Field, model_validator


class HttpPatch(HttpTargetFault):
    """Patch matching requests or the origin's answers: merge `json` into the JSON body (RFC
    7396: objects merge, null removes a key), add `headers`, add `queries` (requests).

    A manifest whose digest or media type was changed on the way, a token answer without
    its `expires_in`. HTTPChaos `patch` (body of type JSON, headers, queries).
    """

    type: Literal["http-patch"] = "http-patch"
    """The fault type."""
    json_: Any = Field(None, alias="json")
    """An RFC 7396 JSON merge patch for the body (a body that is not JSON passes as it is).
    HTTPChaos `patch.body` with `type: JSON`."""
    headers: list[tuple[str, str]] = []
    """Headers added (beside any of the same name): `[[Set-Cookie, a=1], [Set-Cookie, b=2]]`."""
    queries: list[tuple[str, str]] = []
    """`target: request`: query parameters added: `[[foo, bar]]`."""

    @model_validator(mode="after")
    def _something(self):
        if self.queries and self.target == "response":
            raise ValueError("queries needs target: request")
        if self.json_ is None and not self.headers and not self.queries:
            raise ValueError("nothing to patch: give json, headers or queries")
        return self

    @classmethod
    def http_addon(cls) -> FaultAddon:
        return HttpPatchAddon()


class HttpPatchAddon(FaultAddon):
    async def request(self, flow, rules) -> None:
        rule = pick_target(flow, rules, "request")
        if rule is None:
            return
        actions.claim(flow, rule)
        p: HttpPatch = rule.params
        req = flow.request
        for name, value in p.queries:
            req.query.add(name, value)
        for name, value in p.headers:
            req.headers.add(name, value)
        if p.json_ is not None:
            content.patch_request_json(flow, p.json_)

    def responseheaders(self, flow, rules) -> None:
        rule = pick_target(flow, rules, "response")
        if rule is None:
            return
        actions.claim(flow, rule)
        p: HttpPatch = rule.params
        for name, value in p.headers:
            flow.response.headers.add(name, value)
        if p.json_ is not None:
            content.patch_response_json(flow, p.json_)

    async def response(self, flow) -> None:
        content.finish_response(flow)
