"""The sandbox: client namespaces and a "world" namespace, each client joined to it by a veth.

    client ns   chaos-<id>-c      veth c<id>0  198.18.0.2/24   world side 198.18.0.1/24
    region ns   chaos-<id>-<r>    veth c<id>N  <range>.2       world side <range>.1
    world  ns   chaos-<id>-w      servers on 198.18.1.N/32 (on lo)

A dual-stack sandbox (`ipv6:`) adds the same in IPv6, from 2001:2::/48: the client
2001:2::2/64 (world side 2001:2::1), regions <range6>::2, servers 2001:2:0:1::N/128 on the
world's lo. Addresses are added without duplicate address detection (`nodad`): a new
address would otherwise stay "tentative", unusable, for a second or two.

Each client routes 198.18.0.0/15 to the world and nothing else (no default route), so a
client in the sandbox can reach only the world. Regions (`regions:` in a scenario) are more
clients with source addresses from their own range, for faults that treat them differently
(geo blocks). Each client has its own /etc/netns/<ns>/hosts (the scenario's zone) and
resolv.conf, which ``ip netns exec`` binds over /etc, so the machine's files are never edited.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from chaos.journal import Journal
from chaos.sandbox import files

DEFAULT_REGION = "default"
DEFAULT_LINK = ipaddress.IPv4Network("198.18.0.0/24")
SANDBOX_NET = ipaddress.ip_network("198.18.0.0/15")
SERVER_NET = ipaddress.ip_network("198.18.1.0/24")
DEFAULT_LINK6 = ipaddress.IPv6Network("2001:2::/64")
SANDBOX_NET6 = ipaddress.ip_network("2001:2::/48")
SERVER_NET6 = ipaddress.ip_network("2001:2:0:1::/64")
_IFA_F_NODAD = 0x02  # usable at once: no duplicate address detection on a link we made


def region_link6(index: int) -> ipaddress.IPv6Network:
    """A region's default IPv6 range in a dual-stack run (``index``: its place in `regions:`)."""
    return ipaddress.IPv6Network(f"2001:2:0:{0x100 + index:x}::/64")


# Resolver settings of the sandbox: without a fake DNS server nothing listens on 127.0.0.1:53,
# so an unknown name fails at once instead of waiting for a timeout; with one, a dropped
# query costs one second (timeout:1 attempts:1), see docs/dns.md.
def resolv_conf(nameserver: str | None) -> str:
    return f"nameserver {nameserver or '127.0.0.1'}\noptions timeout:1 attempts:1\n"


def _netns():
    from pyroute2 import netns  # heavy import: only when a sandbox is built

    return netns


def create_whole(netns, name: str) -> None:
    """``netns.create`` (pyroute2 makes the namespace in a child process) with signals held
    back until the namespace exists."""
    from chaos.processes import signals_held_back

    with signals_held_back():
        netns.create(name)


def _iproute(name: str):
    from chaos.sandbox.enter import iproute  # made inside the namespace, no fork per socket

    return iproute(name)


@dataclass
class Client:
    region: str
    netns: str
    link: ipaddress.IPv4Network
    profile: dict = field(default_factory=dict)
    """Kernel defaults of another OS family: {"os_family": ..., "ttl": ..., "mss": ...}
    (keyword arguments of chaos.injectors.client_profile.client_profile)."""
    link6: ipaddress.IPv6Network | None = None
    """Its IPv6 link in a dual-stack sandbox (None: IPv4 only)."""

    @property
    def address(self) -> str:
        return str(self.link.network_address + 2)

    @property
    def gateway(self) -> str:
        return str(self.link.network_address + 1)

    @property
    def address6(self) -> str | None:
        return None if self.link6 is None else str(self.link6.network_address + 2)

    @property
    def gateway6(self) -> str | None:
        return None if self.link6 is None else str(self.link6.network_address + 1)

    @property
    def etc_dir(self) -> Path:
        return files.NETNS_ETC / self.netns

    @property
    def hosts_path(self) -> Path:
        return self.etc_dir / "hosts"

    @property
    def resolv_path(self) -> Path:
        return self.etc_dir / "resolv.conf"


def client_namespace(run_id: str, region: str) -> str:
    return f"{run_id}-c" if region == DEFAULT_REGION else f"{run_id}-{region.lower()}"


@dataclass
class Sandbox:
    run_id: str
    zone: dict[str, str] = field(default_factory=dict)
    regions: dict = field(default_factory=dict)
    """Region name -> chaos.scenario.model.Region."""
    clients: dict[str, Client] = field(default_factory=dict)
    resolver: str | None = None
    """The fake DNS server's address when the run has one: clients resolve through it, and
    the hosts files then hold only localhost (as on a real host)."""
    zone6: dict[str, str] = field(default_factory=dict)
    """Names -> their IPv6 address (a dual-stack sandbox), beside ``zone``."""
    dual_stack: bool = False

    def __post_init__(self) -> None:
        six = self.dual_stack
        self.clients = {DEFAULT_REGION: Client(DEFAULT_REGION, client_namespace(self.run_id, DEFAULT_REGION),
                                               DEFAULT_LINK, link6=DEFAULT_LINK6 if six else None)}
        for index, (name, region) in enumerate(self.regions.items()):
            link6 = (region.range6 or region_link6(index)) if six else None
            self.clients[name] = Client(name, client_namespace(self.run_id, name), region.range,
                                        region.profile(), link6=link6)

    @property
    def world(self) -> str:
        return f"{self.run_id}-w"

    @property
    def client(self) -> str:
        """The default client namespace."""
        return self.clients[DEFAULT_REGION].netns

    @property
    def hosts_path(self) -> Path:
        return self.clients[DEFAULT_REGION].hosts_path

    def create(self, journal: Journal) -> None:
        """Build the namespaces, the links between them and the clients' /etc files."""
        netns = _netns()
        for name in [self.world] + [c.netns for c in self.clients.values()]:
            journal.record("netns", {"name": name}, f"network namespace {name}")
            create_whole(netns, name)
        self._up(self.world, "lo")
        files.ensure_dir(journal, files.NETNS_ETC)
        short = self.run_id.removeprefix("chaos-")
        for index, client in enumerate(self.clients.values()):
            c_if, w_if = f"c{short}{index}"[:15], f"w{short}{index}"[:15]
            with _iproute(client.netns) as ipr:
                ipr.link("add", ifname=c_if, kind="veth", peer={"ifname": w_if, "net_ns_fd": self.world})
            self._up(client.netns, "lo")
            self._address(client.netns, c_if, client.address, client.link.prefixlen)
            self._address(self.world, w_if, client.gateway, client.link.prefixlen)
            with _iproute(client.netns) as ipr:
                ipr.route("add", dst=str(SANDBOX_NET), gateway=client.gateway)
            if client.link6 is not None:
                prefix = client.link6.prefixlen
                self._address(client.netns, c_if, str(client.address6), prefix)
                self._address(self.world, w_if, str(client.gateway6), prefix)
                with _iproute(client.netns) as ipr:
                    ipr.route("add", dst=str(SANDBOX_NET6), gateway=client.gateway6, family=10)
            files.make_dir(journal, client.etc_dir, f"sandbox files {client.etc_dir}")
            client.resolv_path.write_text(resolv_conf(self.resolver))  # created: no bind mount yet
            if client.profile:
                from chaos.injectors.client_profile import client_profile

                client_profile(client.netns, tag=self.run_id, **client.profile).apply(journal)
        self.write_hosts()

    @staticmethod
    def _up(name: str, ifname: str) -> None:
        with _iproute(name) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], state="up")

    def _address(self, name: str, ifname: str, address: str, prefixlen: int) -> None:
        six = ipaddress.ip_address(address).version == 6
        with _iproute(name) as ipr:
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=index, address=address, prefixlen=prefixlen,
                     **({"flags": _IFA_F_NODAD} if six else {}))
            ipr.link("set", index=index, state="up")

    def add_server_address(self, address: str) -> None:
        """A server's own address in the world (on its loopback)."""
        six = ipaddress.ip_address(address).version == 6
        with _iproute(self.world) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.addr("add", index=lo, address=address, prefixlen=128 if six else 32,
                     **({"flags": _IFA_F_NODAD} if six else {}))

    def write_resolver(self) -> None:
        """Point the clients at the fake DNS server after the fact (in place: the files may
        be bind-mounted into running clients), and drop the zone from the hosts files."""
        for client in self.clients.values():
            with open(client.resolv_path, "r+") as f:
                f.write(resolv_conf(self.resolver))
                f.truncate()
        self.write_hosts()

    def write_hosts(self) -> None:
        """The zone (unless the fake DNS server has it) in each client's hosts file; the
        blocks of hosts-entry faults applied already stay (names served later come here)."""
        from chaos.injectors.hosts_file import rewrite_keeping_blocks

        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if self.resolver is None:
            lines += [f"{addr}\t{name}" for name, addr in self.zone.items()]
            lines += [f"{addr}\t{name}" for name, addr in self.zone6.items()]
        for client in self.clients.values():
            rewrite_keeping_blocks(client.hosts_path, lines)


def undo(record: dict) -> None:
    try:
        _netns().remove(record["name"])
    except FileNotFoundError:
        pass  # never created, or already removed
