"""Which namespace and address each lab component gets. Pure description: nothing here
changes the system (chaos.lab.netns builds it).

    hub ns    bridge chXXXXXXb 198.18.0.1/24   "the internet"
              registry-1.docker.io              198.18.0.10:443  upstream docker-registry
              auth.docker.io                    198.18.0.11:443  token server
              production.cloudflare.docker.com  198.18.0.12:443  CDN for blobs
    cache ns  cache.chaos.test                  198.18.0.20:443  pull-through cache
    client ns (dockerd, skopeo)                 198.18.0.30

With ``ipv6`` (a dual-stack scenario) every part also gets an IPv6 address from 2001:2::/64
(bridge ::1, upstream ::10, token server ::11, CDN ::12, cache ::20, client ::30) and every
service name resolves to both families.

The cache and the client each sit in their own namespace, joined to the hub's bridge by a
veth pair, so a fault can be applied from one point of view (inside the client or inside
the cache) without touching the other.
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Service:
    """A lab endpoint: the name clients use, where it listens, which namespace holds it."""

    role: str
    host: str
    address: str
    port: int
    netns: str
    address6: str | None = None
    """Its IPv6 address in a dual-stack lab (None: IPv4 only)."""

    @property
    def addresses(self) -> list[str]:
        """Every address it listens on, IPv4 first."""
        return [self.address, *([self.address6] if self.address6 else [])]

    @property
    def url(self) -> str:
        return f"https://{self.host}" if self.port == 443 else f"https://{self.host}:{self.port}"

    @property
    def hostport(self) -> str:
        """Name as written in an image reference (``cache.chaos.test/library/busybox:1``)."""
        return self.host if self.port == 443 else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Link:
    """A veth pair: ``hub_if`` is enslaved to the hub's bridge, ``peer_if`` lives in ``netns``."""

    netns: str
    hub_if: str
    peer_if: str
    address: str
    address6: str | None = None


@dataclass(frozen=True)
class Topology:
    """Names and addresses of one lab; ``tag`` (random hex) makes every name unique."""

    tag: str
    subnet: str = "198.18.0.0/24"
    registry_host: str = "registry-1.docker.io"
    auth_host: str = "auth.docker.io"
    cdn_host: str = "production.cloudflare.docker.com"
    cache_host: str = "cache.chaos.test"
    extra_hosts: dict[str, str] = field(default_factory=dict)
    resolver: str | None = None
    """Address of a DNS server the lab's namespaces resolve through (a run's fake DNS, for
    DNS faults); None: the service names are in every namespace's hosts file instead."""
    ipv6: bool = False
    """Every part is dual-stack (IPv6 from ``subnet6``)."""
    subnet6: str = "2001:2::/64"

    @classmethod
    def new(cls, **kw) -> Topology:
        return cls(tag=secrets.token_hex(3), **kw)

    def __post_init__(self) -> None:
        net = ipaddress.ip_network(self.subnet)
        lab_range = ipaddress.IPv4Network("198.18.0.0/15")
        if not (isinstance(net, ipaddress.IPv4Network) and net.subnet_of(lab_range)) or net.num_addresses < 64:
            raise ValueError(f"lab subnet {self.subnet} must be a /26 or larger inside 198.18.0.0/15")

    def _ip(self, n: int) -> str:
        return str(ipaddress.ip_network(self.subnet)[n])

    def _ip6(self, n: int) -> str | None:
        return str(ipaddress.ip_network(self.subnet6)[n]) if self.ipv6 else None

    @property
    def bridge_address6(self) -> str | None:
        return self._ip6(1)

    @property
    def cache_address6(self) -> str | None:
        """The cache's IPv6 address (None: IPv4 only)."""
        return self._ip6(0x20)

    @property
    def client_address6(self) -> str | None:
        return self._ip6(0x30)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen

    # -- namespaces ----------------------------------------------------------------------
    @property
    def hub_ns(self) -> str:
        return f"chaos-{self.tag}-hub"

    @property
    def cache_ns(self) -> str:
        return f"chaos-{self.tag}-cache"

    @property
    def client_ns(self) -> str:
        return f"chaos-{self.tag}-cli"

    @property
    def namespaces(self) -> list[str]:
        return [self.hub_ns, self.cache_ns, self.client_ns]

    # -- wiring ----------------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"ch{self.tag}b"

    @property
    def bridge_address(self) -> str:
        return self._ip(1)

    @property
    def links(self) -> list[Link]:
        return [
            Link(self.cache_ns, f"ch{self.tag}c", f"ch{self.tag}c0", self._ip(20), self._ip6(0x20)),
            Link(self.client_ns, f"ch{self.tag}k", f"ch{self.tag}k0", self._ip(30), self._ip6(0x30)),
        ]

    @property
    def client_address(self) -> str:
        return self._ip(30)

    # -- services ---------------------------------------------------------------------------
    @property
    def registry(self) -> Service:
        return Service("registry", self.registry_host, self._ip(10), 443, self.hub_ns, self._ip6(0x10))

    @property
    def auth(self) -> Service:
        return Service("auth", self.auth_host, self._ip(11), 443, self.hub_ns, self._ip6(0x11))

    @property
    def cdn(self) -> Service:
        return Service("cdn", self.cdn_host, self._ip(12), 443, self.hub_ns, self._ip6(0x12))

    @property
    def cache(self) -> Service:
        return Service("cache", self.cache_host, self._ip(20), 443, self.cache_ns, self.cache_address6)

    @property
    def services(self) -> list[Service]:
        return [self.registry, self.auth, self.cdn, self.cache]

    def service(self, role: str) -> Service:
        for s in self.services:
            if s.role == role:
                return s
        raise KeyError(f"no lab service {role!r} (have: {', '.join(s.role for s in self.services)})")

    def hosts_text(self) -> str:
        """The /etc/hosts every lab namespace sees (ip netns exec binds /etc/netns/<ns>/hosts)."""
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        if self.resolver is None:
            lines += [f"{addr} {s.host}" for s in self.services for addr in s.addresses]
        lines += [f"{addr} {name}" for name, addr in self.extra_hosts.items()]
        return "\n".join(lines) + "\n"

    def resolv_text(self) -> str:
        """resolv.conf of every lab namespace: the lab's resolver, or one where nothing
        listens (names come from the hosts file; anything else fails at once)."""
        return f"nameserver {self.resolver or '127.0.0.1'}\noptions timeout:1 attempts:1\n"

    def describe(self) -> dict:
        """Plain data for reports and ``chaos lab status``."""
        return {
            "namespaces": {"hub": self.hub_ns, "cache": self.cache_ns, "client": self.client_ns},
            "services": {s.role: {"host": s.host, "address": s.address, "port": s.port,
                                  "netns": s.netns, **({"address6": s.address6} if s.address6 else {})}
                         for s in self.services},
            "client_address": self.client_address,
        }
