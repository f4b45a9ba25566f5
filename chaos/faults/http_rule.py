"""What HTTP fault types share: a rule for the edge proxy, and the redirect that feeds it.

An HTTP fault type is one module: an ``HttpFault`` subclass (its parameters) whose
``http_addon()`` returns its behaviour, a ``chaos.injectors.http_faults.rules.FaultAddon``
subclass defined next to it, and one line in ``chaos.faults.FAULTS``. The proxy rebuilds the
model from the rule file (``model_validate``), so the model's fields are the only declaration
of the parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar, Literal

from chaos.faults.base import Fault, Proxied
from chaos.injectors.base import Injector
from chaos.scenario.model import Strict, regex_text
from chaos.scenario.modelbase import Field, field_validator, model_validator

if TYPE_CHECKING:
    from chaos.injectors.http_faults.rules import FaultAddon


class HttpMatch(Strict):
    """Which requests a rule acts on; every given key must hold."""

    host: str | list[str] | None = None
    """Host name pattern(s), shell style (`*.docker.io`)."""
    path: str | list[str] | None = None
    """Path pattern(s), shell style; `*` also crosses `/` (`/v2/*/blobs/*`)."""
    path_regex: str | None = None
    """A regular expression searched in the path (re.search)."""
    method: str | list[str] | None = None
    """Request method(s), e.g. GET or [GET, HEAD]."""
    headers: dict[str, str] | None = None
    """Request headers that must be present with these values (names in any case; a value
    is a shell pattern, `*` any value). HTTPChaos `request_headers`."""

    @field_validator("path_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return regex_text(value)


def http_proxied(fault) -> Proxied:
    """What http_injectors redirects for a fault with `match:` and `ports:`: the matched
    hosts (every server when none is given or one is a pattern)."""
    match = getattr(fault, "match", None)
    hosts = match.host if match is not None else None
    return Proxied.of("http", fault.ports, [hosts] if isinstance(hosts, str) else hosts)


class HttpFault(Fault):
    """A fault type the HTTP fault proxy applies (for some of its settings, at least)."""

    # Fields the plan turns into the rule's ``match`` and redirect (or that only the run
    # uses): never in a rule file. Every other field is.
    PLAN_ONLY: ClassVar[frozenset[str]] = frozenset(
        {"type", "name", "window", "flap", "match", "ports"})

    @classmethod
    def http_addon(cls) -> FaultAddon:
        """This type's behaviour in the proxy (a FaultAddon of its module), made once."""
        raise NotImplementedError

    def in_http_proxy(self) -> bool:
        """Whether these settings act in the HTTP proxy (a type may act elsewhere too)."""
        return True

    def rule_params(self) -> dict:
        """The rule file's fault keys: this model's JSON form, less what the plan consumes."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True,
                               exclude=set(self.PLAN_ONLY))

    def proxied(self) -> Proxied | None:
        """What crosses the HTTP proxy (None: these settings act elsewhere, e.g. a filter)."""
        return http_proxied(self) if self.in_http_proxy() else None

    def injectors(self, ctx):
        """The redirect of ``ports`` (a field of the subclass) and the rule, for ``match``."""
        return http_injectors(ctx, self, getattr(self, "ports", [80, 443]))


def http_injectors(ctx, fault: HttpFault, ports: Sequence[int | str], clients: Sequence[str] = (),
                   match: dict | None = None,
                   destinations: list[str] | None = None) -> list[Injector]:
    """A redirect of the fault's ports at the world's edge, then its rule in the proxy.

    The redirect goes to ``destinations`` when given, else it is narrowed to the matched
    hosts when the sandbox knows their addresses.
    """
    from chaos.injectors.redirect import EdgeRedirect
    from chaos.injectors.rule_service import LateRule

    http = ctx.use_http()
    index = ctx.path[-1] if ctx.path else 0
    if match is None:
        given = getattr(fault, "match", None)  # an HttpMatch, in the types that have one
        match = given.model_dump(exclude_none=True) if given is not None else {}
    if clients:
        match["clients"] = list(clients)
    hosts = match.get("host")
    hosts = [hosts] if isinstance(hosts, str) else hosts or []
    if destinations is None:
        destinations = [a for h in hosts for a in (ctx.zone[h], ctx.zone6.get(h)) if a] \
            if hosts and all(h in ctx.zone for h in hosts) else []
    rule = {"id": f"fault-{index}", "fault": fault.type, "match": match, **fault.rule_params()}
    try:
        redirect = EdgeRedirect(ctx.world, ports, http.PORT, tag=ctx.tag, name=f"h{index}",
                                destinations=destinations, proxy="HTTP",
                                families=ctx.edge_families)
    except ValueError as exc:  # a port range that takes in the proxy's own port
        ctx.fail(("ports",), str(exc))
    return [redirect, LateRule("http-rule", http, f"http {fault.type} rule {rule['id']}",
                               lambda http: _rule(http, rule))]


def _rule(http, rule: dict) -> Injector:
    from chaos.injectors.http_proxy import HttpRule

    return HttpRule(http.proxy.rules_dir, rule)


class ResponseMatch(Strict):
    """Which origin answers a `target: response` rule acts on; every given key must hold."""

    status: int | list[int] | None = None
    """The origin's status code(s). HTTPChaos `code`."""
    headers: dict[str, str] | None = None
    """Response headers that must be present with these values (names in any case; a value
    is a shell pattern). HTTPChaos `response_headers`."""

    def matches(self, response) -> bool:
        """Whether a mitmproxy Response fits."""
        from fnmatch import fnmatchcase

        if self.status is not None:
            wanted = [self.status] if isinstance(self.status, int) else self.status
            if response.status_code not in wanted:
                return False
        return all(name in response.headers and fnmatchcase(response.headers[name], value)
                   for name, value in (self.headers or {}).items())


class HttpRequestsFault(HttpFault):
    """An HTTP fault type that picks requests by `match:` at `ports:`, and acts on a share
    of them (`probability`) or on every Nth (`every`)."""

    match: HttpMatch | None = None
    """Only these requests (default: every request through the proxy)."""
    ports: list[int] = [80, 443]
    """Server ports whose traffic goes through the fault proxy. HTTPChaos `port`."""
    probability: float | None = Field(None, gt=0, le=1)
    """Act on this share of matching requests; the rest pass."""
    every: int | None = Field(None, ge=2)
    """Act on every Nth matching request only (a deterministic flap)."""


async def answer_rule(flow, rules):
    """For a type that answers in the origin's place: the rule that answers this flow,
    claimed and its `delay` waited out (None: the flow is not this type's)."""
    from chaos.injectors.http_faults import actions
    from chaos.injectors.http_faults.rules import pick

    rule = pick(flow, rules)
    if rule is None:
        return None
    actions.claim(flow, rule)
    if rule.params.delay:
        import asyncio  # here: the plan imports this module and needs no event loop

        await asyncio.sleep(rule.params.delay)
    return rule


class HttpTargetFault(HttpRequestsFault):
    """What the HTTPChaos-like types share (http-abort, http-delay, http-replace, http-patch):
    a `target` (the request on its way to the origin, or the origin's answer on its way
    back), which requests, which answers, how often."""

    target: Literal["request", "response"] = "request"
    """`request`: act on the request before the origin sees it; `response`: on the origin's
    answer before the client sees it (the origin got the request). HTTPChaos `target`."""
    response_match: ResponseMatch | None = None
    """With `target: response`: only answers with this status / these headers."""

    @model_validator(mode="after")
    def _response_match_needs_response(self):
        if self.response_match is not None and self.target != "response":
            raise ValueError("response_match needs target: response (the origin's answer is "
                             "not known before the request is sent)")
        return self

    def label(self) -> str:
        where = f" {self.match.host}" if self.match and isinstance(self.match.host, str) else ""
        return self.name or f"{self.type} {self.target}{where}"


def pick_target(flow, rules, target: str):
    """The first rule of ``target`` that matches this flow (its answer too, for responses)
    and whose draw fires."""
    from chaos.injectors.http_faults.rules import pick

    mine = [r for r in rules if r.params.target == target]
    if target == "response":
        mine = [r for r in mine if r.params.response_match is None
                or r.params.response_match.matches(flow.response)]
    return pick(flow, mine) if mine else None


class NewBody(Strict):
    """A body of the scenario's choosing (at most one of `body`, `body_base64`, `body_random`)."""

    body: str | None = None
    """The body as text (sent UTF-8): a captive portal's HTML page, a JSON document."""
    body_base64: str | None = None
    """The body as base64 bytes. HTTPChaos `replace.body` (base64 there too)."""
    body_random: int | None = Field(None, ge=0)
    """This many random bytes, new ones each time (a blob whose digest never matches)."""
    content_type: str | None = None
    """The `content-type` header (default with a body, unless `headers` has one: text/html
    for text starting with `<`, application/json for text starting with `{` or `[`,
    text/plain for other text, application/octet-stream for bytes)."""

    @model_validator(mode="after")
    def _one_body(self):
        given = [k for k in ("body", "body_base64", "body_random") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of body, body_base64, body_random (not {' and '.join(given)})")
        if self.body_base64 is not None:
            import base64
            import binascii

            try:
                base64.b64decode(self.body_base64, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"body_base64: not base64 ({exc})") from None
        return self

    def new_body(self) -> bytes | None:
        """The body to send (None: none was given)."""
        if self.body is not None:
            return self.body.encode()
        if self.body_base64 is not None:
            import base64

            return base64.b64decode(self.body_base64)
        if self.body_random is not None:
            import os

            return os.urandom(self.body_random)
        return None

    def new_content_type(self, headers: dict[str, str] | None = None) -> str | None:
        """`content_type`, else the guess for the body unless ``headers`` (the fault's own)
        name a content-type already; None: leave it as it is."""
        if self.content_type is not None:
            return self.content_type
        if any(name.lower() == "content-type" for name in headers or {}):
            return None
        if self.body is not None:
            text = self.body.lstrip()
            if text.startswith("<"):
                return "text/html; charset=utf-8"
            if text.startswith(("{", "[")):
                return "application/json"
            return "text/plain; charset=utf-8"
        if self.body_base64 is not None or self.body_random is not None:
            return "application/octet-stream"
        return None
