"""What HTTP fault types share: a rule for the edge proxy, and the redirect that feeds it."""

from __future__ import annotations

from collections.abc import Sequence

from chaos.faults.base import Proxied
from chaos.injectors.base import Injector
from chaos.scenario.model import Strict


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


def http_proxied(fault) -> Proxied:
    """What http_injectors redirects for a fault with `match:` and `ports:`: the matched
    hosts (every server when none is given or one is a pattern)."""
    match = getattr(fault, "match", None)
    hosts = match.host if match is not None else None
    return Proxied.of("http", fault.ports, [hosts] if isinstance(hosts, str) else hosts)


def http_injectors(ctx, fault, rule: dict, ports: Sequence[int | str], clients: Sequence[str] = (),
                   match: dict | None = None,
                   destinations: list[str] | None = None) -> list[Injector]:
    """A redirect of the fault's ports at the world's edge, then its rule in the proxy.

    The redirect goes to ``destinations`` when given, else it is narrowed to the matched
    hosts when the sandbox knows their addresses.
    """
    from chaos.injectors.redirect import EdgeRedirect

    http = ctx.use_http()
    index = ctx.path[-1] if ctx.path else 0
    if match is None:
        match = fault.match.model_dump(exclude_none=True) if getattr(fault, "match", None) else {}
    if clients:
        match["clients"] = list(clients)
    hosts = match.get("host")
    hosts = [hosts] if isinstance(hosts, str) else hosts or []
    if destinations is None:
        destinations = [ctx.zone[h] for h in hosts] if hosts and all(
            h in ctx.zone for h in hosts) else []
    full = {"id": f"fault-{index}", "fault": rule.pop("fault"), "match": match, **rule}
    if getattr(fault, "probability", None) is not None:
        full["probability"] = fault.probability
    try:
        redirect = EdgeRedirect(ctx.world, ports, http.PORT, tag=ctx.tag, name=f"h{index}",
                                destinations=destinations)
    except ValueError as exc:  # a port range that takes in the proxy's own port
        ctx.fail(("ports",), str(exc))
    return [redirect, ProxyRule(http, full)]


class ProxyRule(Injector):
    """A rule file for the run's HTTP proxy, which starts only when the session opens."""

    kind = "http-rule"

    def __init__(self, http, rule: dict) -> None:
        super().__init__()
        from chaos.injectors.http_proxy import check_rule

        check_rule(rule)  # a bad rule fails at plan time, before anything changes
        self.http, self.rule = http, rule

    def describe(self) -> str:
        return f"http {self.rule['fault']} rule {self.rule['id']}"

    def apply(self, journal) -> None:
        from chaos.injectors.http_proxy import HttpRule

        inner = HttpRule(self.http.proxy.rules_dir, self.rule)
        inner.entries = self.entries  # one list: revert() undoes what the inner recorded
        inner.apply(journal)
