"""What every fault type shares: a schedule and the hook that turns params into injectors."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from chaos.scenario.model import Flap, Strict, Window
from chaos.scenario.modelbase import Field, model_validator

if TYPE_CHECKING:
    from chaos.injectors.base import Injector
    from chaos.plan import PlanContext


@dataclass(frozen=True)
class Proxied:
    """Traffic a fault sends through one of the run's fault proxies while it is on, read from
    its params alone (``chaos validate`` judges counting probes by it). It may say less than
    the fault really redirects (a count is then refused that could have been allowed), never
    more (a count would then pass on traffic nobody saw)."""

    proxy: Literal["http", "tcp"]
    ports: tuple[tuple[int, int], ...]
    """Server port ranges, first and last port."""
    hosts: frozenset[str] | None = None
    """Server names; None: every server on those ports."""
    nets: tuple[str, ...] = ()
    """Server addresses or CIDRs, beside ``hosts``."""

    def covers(self, host: str | None, address: str | None, port: int | None) -> bool:
        """Does a connection to ``host`` (at ``address``) on ``port`` go through the proxy?
        An unknown port or server is not covered unless every one is."""
        if port is None or not any(lo <= port <= hi for lo, hi in self.ports):
            return False
        if self.hosts is None:
            return True
        if host is not None and host in self.hosts:
            return True
        if address is None:
            return False
        return any(ipaddress.ip_address(address) in ipaddress.ip_network(n, strict=False)
                   for n in self.nets)

    def may_cover(self, host: str, port: int | None, known: set[str]) -> bool:
        """Could a connection to ``host`` on ``port`` go through the proxy? The opposite
        direction of ``covers``: an unknown port, a fault on addresses, or one naming a host
        the scenario does not know (its redirect is then not narrowed to servers) may."""
        if port is not None and not any(lo <= port <= hi for lo, hi in self.ports):
            return False
        return (self.hosts is None or host in self.hosts or bool(self.nets)
                or not self.hosts <= known)

    @classmethod
    def of(cls, proxy: Literal["http", "tcp"], ports, targets=None) -> Proxied:
        """From a fault's ports (numbers or "a:b" ranges) and targets (names, addresses,
        CIDRs; None or empty: every server)."""
        ranges = []
        for p in ports:
            lo, _, hi = str(p).replace("-", ":").partition(":")
            ranges.append((int(lo), int(hi or lo)))
        if not targets:
            return cls(proxy, tuple(ranges))
        names, nets = set(), []
        for target in targets:
            try:
                ipaddress.ip_network(target, strict=False)
                nets.append(target)
            except ValueError:
                names.add(target.lower().rstrip("."))
        if any("*" in n for n in names):  # a pattern: the redirect is not narrowed to servers
            return cls(proxy, tuple(ranges))
        return cls(proxy, tuple(ranges), frozenset(names), tuple(nets))


@dataclass(frozen=True)
class Renamed:
    """Names a fault makes the run's clients resolve otherwise while it is on."""

    names: tuple[str, ...]
    """Exact names or shell patterns (`*.docker.io`)."""
    elsewhere: bool
    """Clients then connect to another server's address (not loopback, not nowhere)."""
    hosts_file: bool
    """The clients' hosts files answer them: the DNS server is never asked."""

    def matches(self, name: str) -> bool:
        from fnmatch import fnmatch

        return any(fnmatch(name, pattern) for pattern in self.names)


class Fault(Strict):
    if TYPE_CHECKING:  # each fault type declares its own `type: Literal[...]` field
        type: str

    name: str | None = None
    """Shown in the console and the report (default: the type and its targets)."""
    window: Window | None = None
    """On only for part of the `during` phase."""
    flap: Flap | None = None
    """Switched on and off periodically during the `during` phase."""

    def injectors(self, ctx: PlanContext) -> list[Injector]:
        """The injectors that apply this fault; checks its targets through ``ctx``."""
        raise NotImplementedError

    def label(self) -> str:
        return self.name or self.type

    def proxied(self) -> Proxied | None:
        """Hook: the traffic this fault sends through a fault proxy while it is on (None:
        none). A fault that redirects traffic must say so here: counting probes rely on it."""
        return None

    def renamed(self) -> Renamed | None:
        """Hook: the names this fault makes the run's clients resolve otherwise (None:
        none). Counting probes rely on it: a name a hosts file answers is never asked of
        the DNS server, and requests sent to another address miss a narrowed redirect."""
        return None

    def on_throughout(self) -> bool:
        """On for the whole `during` phase: switched on before it starts, off after it ends."""
        if self.flap is not None:
            return False
        return self.window is None or (self.window.after == 0 and self.window.for_ is None)


class ByFamily(Strict):
    """The `family:` of the faults that act on one address family or both."""

    family: Literal["v4", "v6", "both"] = "both"
    """Act on IPv4 only, IPv6 only, or both (a dual-stack run's names have an address in
    each: `v6` breaks the IPv6 path while IPv4 works)."""

    def iptables_families(self) -> list[str] | None:
        """The packet filter's families (None: both)."""
        return None if self.family == "both" else ["ipv4" if self.family == "v4" else "ipv6"]


Established = Literal["keep", "drop", "reset"]
"""What a packet-level fault does to the TCP connections already open when it starts."""


class InContainer(Strict):
    """The `container:` target of the client-side faults (hosts, routes, filters)."""

    container: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """A running container (name or id) to act in instead of the clients: its own network
    namespace and /etc/hosts, found through the docker daemon (`docker:`, --docker-host,
    DOCKER_HOST or the local socket)."""

    @model_validator(mode="after")
    def _one_target(self):
        if self.container and getattr(self, "region", None):
            raise ValueError("container: and region: name two different targets; give one")
        return self
