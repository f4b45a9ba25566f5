"""route-blackhole: routes that send a registry's addresses nowhere (DZone's second recipe)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chaos.faults.base import ByFamily, Fault, InContainer
from chaos.scenario.model import Destination


class RouteBlackhole(Fault, InContainer, ByFamily):
    """Add routes that drop traffic to the destinations, through netlink.

    `blackhole` discards silently (connect fails with EINVAL at once for local senders),
    `unreachable` answers "No route to host", `prohibit` answers "Permission denied".
    """

    type: Literal["route-blackhole"] = "route-blackhole"
    """The fault type."""
    destinations: list[Destination] = Field(min_length=1)
    """CIDRs, addresses or host names (resolved when the run is planned)."""
    kind: Literal["blackhole", "unreachable", "prohibit"] = "blackhole"
    """The route type."""
    region: str | None = None
    """Only the clients of this region (in the lab: `default` the docker host, `cache` the
    cache); default: every client."""

    def injectors(self, ctx):
        from chaos.injectors.routes import RouteInjector

        nets = []
        for index, dest in enumerate(self.destinations):
            nets += ctx.destinations(dest, ("destinations", index), self.family)
        return [RouteInjector([str(n) for n in nets], self.kind, netns)
                for netns, _ in ctx.client_sides(self.region, self.container)]

    def label(self) -> str:
        family = "" if self.family == "both" else f" ({self.family})"
        return self.name or f"{self.kind} route {', '.join(self.destinations)}{family}"
