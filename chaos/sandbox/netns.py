"""The sandbox: a client namespace and a "world" namespace joined by a veth pair.

    client ns  chaos-<id>-c   veth c<id>  198.18.0.2/24   route 198.18.0.0/15 via 198.18.0.1
    world  ns  chaos-<id>-w   veth w<id>  198.18.0.1/24   servers on 198.18.1.N/32 (on lo)

Nothing is routed anywhere else: there is no default route, so a client in the sandbox can
reach only the world. The client has its own /etc/netns/<ns>/hosts (the scenario's zone) and
resolv.conf, which ``ip netns exec`` binds over /etc, so the machine's files are never edited.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from chaos.journal import Journal
from chaos.sandbox import files

WORLD_LINK = ipaddress.ip_interface("198.18.0.1/24")
CLIENT_LINK = ipaddress.ip_interface("198.18.0.2/24")
SANDBOX_NET = ipaddress.ip_network("198.18.0.0/15")
SERVER_NET = ipaddress.ip_network("198.18.1.0/24")
# Resolver settings of the sandbox: nothing listens on 127.0.0.1:53 unless a DNS fault starts
# the fake server, so an unknown name fails at once instead of waiting for a timeout.
RESOLV_CONF = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"


def _netns():
    from pyroute2 import netns  # heavy import: only when a sandbox is built

    return netns


def _iproute(name: str):
    from pyroute2 import IPRoute

    return IPRoute(netns=name)


@dataclass
class Sandbox:
    run_id: str
    client: str = ""
    world: str = ""
    zone: dict[str, str] = field(default_factory=dict)
    _next_server: int = 10

    def __post_init__(self) -> None:
        self.client = self.client or f"{self.run_id}-c"
        self.world = self.world or f"{self.run_id}-w"

    @property
    def etc_dir(self) -> Path:
        return files.NETNS_ETC / self.client

    @property
    def hosts_path(self) -> Path:
        return self.etc_dir / "hosts"

    @property
    def resolv_path(self) -> Path:
        return self.etc_dir / "resolv.conf"

    def create(self, journal: Journal) -> None:
        """Build both namespaces, the link between them and the client's /etc files."""
        netns = _netns()
        for name in (self.client, self.world):
            journal.record("netns", {"name": name}, f"network namespace {name}")
            netns.create(name)
        short = self.run_id.removeprefix("chaos-")
        c_if, w_if = f"c{short}"[:15], f"w{short}"[:15]
        with _iproute(self.client) as ipr:
            ipr.link("add", ifname=c_if, kind="veth", peer={"ifname": w_if, "net_ns_fd": self.world})
        self._configure(self.client, c_if, CLIENT_LINK)
        self._configure(self.world, w_if, WORLD_LINK)
        with _iproute(self.client) as ipr:
            ipr.route("add", dst=str(SANDBOX_NET), gateway=str(WORLD_LINK.ip))
        files.ensure_dir(journal, files.NETNS_ETC)
        files.make_dir(journal, self.etc_dir, f"sandbox files {self.etc_dir}")
        self.write_hosts()
        self.resolv_path.write_text(RESOLV_CONF)

    @staticmethod
    def _configure(name: str, ifname: str, iface: ipaddress.IPv4Interface) -> None:
        with _iproute(name) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.link("set", index=lo, state="up")
            index = ipr.link_lookup(ifname=ifname)[0]
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            ipr.link("set", index=index, state="up")

    def add_server_address(self, address: str | None = None) -> str:
        """An address in the world for one server: given, or the next free 198.18.1.N."""
        if address is None:
            address = str(SERVER_NET.network_address + self._next_server)
            self._next_server += 1
        with _iproute(self.world) as ipr:
            lo = ipr.link_lookup(ifname="lo")[0]
            ipr.addr("add", index=lo, address=address, prefixlen=32)
        return address

    def write_hosts(self) -> None:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        lines += [f"{addr}\t{name}" for name, addr in self.zone.items()]
        self.hosts_path.write_text("\n".join(lines) + "\n")


def undo(record: dict) -> None:
    try:
        _netns().remove(record["name"])
    except FileNotFoundError:
        pass  # never created, or already removed
