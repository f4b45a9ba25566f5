"""route-blackhole: routes that send a registry's addresses nowhere (DZone's second recipe)."""

from __future__ import annotations

from typing import Literal

from chaos.faults.base import ByFamily, Established, Fault, InContainer
from chaos.injectors.base import shown
from chaos.scenario.model import Destination
from chaos.scenario.modelbase import Field


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
    established: Established = "drop"
    """What happens to the TCP connections already open when the routes change: `drop` (the
    kernel routes their next packets into the hole too: a pooled keep-alive connection
    hangs), `keep` (they go on over the route they had; only new connections meet the hole),
    `reset` (each is reset as the fault starts; the next connection meets the hole)."""

    def injectors(self, ctx):
        from chaos.injectors.connections import OpenConnections
        from chaos.injectors.routes import RouteInjector

        nets = []
        for index, dest in enumerate(self.destinations):
            nets += ctx.destinations(dest, ("destinations", index), self.family)
        # Names sharing an address (Hub's names on one CDN or stand-in) give one route each.
        nets = list(dict.fromkeys(str(n) for n in nets))
        out: list = []
        for netns, _ in ctx.client_sides(self.region, self.container):
            found = OpenConnections(netns, nets, reset=self.established == "reset",
                                    names=ctx.peer_names(), where=ctx.side_name(netns))
            out.append(found)
            if self.established == "keep":
                from chaos.injectors.routes import KeepConnections

                out.append(KeepConnections(netns, nets, found, tag=ctx.tag))
            out.append(RouteInjector(nets, self.kind, netns))
        return out

    def label(self) -> str:
        family = "" if self.family == "both" else f" ({self.family})"
        return self.name or f"{self.kind} route {shown(self.destinations)}{family}"
