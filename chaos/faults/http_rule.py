"""What HTTP fault types share: a rule for the edge proxy, and the redirect that feeds it.

An HTTP fault type is one module: an ``HttpFault`` subclass (its parameters) whose
``http_addon()`` returns its behaviour, a ``chaos.injectors.http_faults.rules.FaultAddon``
subclass defined next to it, and one line in ``chaos.faults.FAULTS``. The proxy rebuilds the
model from the rule file (``model_validate``), so the model's fields are the only declaration
of the parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import field_validator

from chaos.faults.base import Fault, Proxied
from chaos.injectors.base import Injector
from chaos.scenario.model import Strict, regex_text

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
