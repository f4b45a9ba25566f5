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
_LO = 1  # the loopback's index in every network namespace (the kernel registers it first)


def region_link6(index: int) -> ipaddress.IPv6Network:
    """A region's default IPv6 range in a dual-stack run (``index``: its place in `regions:`)."""
    return ipaddress.IPv6Network(f"2001:2:0:{0x100 + index:x}::/64")


# Resolver settings of the sandbox: without a fake DNS server nothing listens on 127.0.0.1:53,
# so an unknown name fails at once instead of waiting for a timeout; with one, a dropped
# query costs one second (timeout:1 attempts:1), see docs/dns.md.
def resolv_conf(nameserver: str | None) -> str:
    return f"nameserver {nameserver or '127.0.0.1'}\noptions timeout:1 attempts:1\n"


def _netns():
    from pyroute2 import netns  # heavy import: only when a sandbox is removed

    return netns


_MS_REC, _MS_BIND, _MS_SHARED = 0x4000, 0x1000, 0x100000
_CLONE_NEWNET = 0x40000000


def _mount(libc, source: bytes, target: bytes, flags: int) -> int:
    return libc.mount(source, target, b"none", flags, None)


def _unshare_and_bind(path: Path) -> None:
    """In a thread of its own (a namespace belongs to a thread): a new network namespace,
    bound on ``path`` so it outlives the thread. What ``ip netns add`` does, without forking."""
    import ctypes
    import os

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(_CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"unshare: {os.strerror(code)}")
    if _mount(libc, b"/proc/thread-self/ns/net", str(path).encode(), _MS_BIND) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bind {path}: {os.strerror(code)}")


def create_whole(name: str) -> None:
    """A named network namespace (/run/netns/<name>, as ``ip netns add`` makes it), made by a
    thread of this process rather than pyroute2's forked child, with signals held back until
    it is whole: a half-made one (the mount point without its mount) would outlive the run."""
    import ctypes
    import os

    from chaos.processes import signals_held_back
    from chaos.sandbox.enter import in_thread, netns_path

    path = netns_path(name)
    libc = ctypes.CDLL(None, use_errno=True)
    with signals_held_back():
        path.parent.mkdir(exist_ok=True)
        # /run/netns shared, so that mounts made here reach other mount namespaces (those of
        # `ip netns exec`); bound on itself first when it is not a mount point yet (iproute2).
        rundir = str(path.parent).encode()
        if _mount(libc, b"", rundir, _MS_SHARED | _MS_REC) != 0:
            if _mount(libc, rundir, rundir, _MS_BIND | _MS_REC) != 0 or \
                    _mount(libc, b"", rundir, _MS_SHARED | _MS_REC) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"share {path.parent}: {os.strerror(code)}")
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
        try:
            in_thread(_unshare_and_bind, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise


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
        for name in [self.world] + [c.netns for c in self.clients.values()]:
            journal.record("netns", {"name": name}, f"network namespace {name}")
            create_whole(name)
        files.ensure_dir(journal, files.NETNS_ETC)
        short = self.run_id.removeprefix("chaos-")
        # One netlink socket per namespace for the whole build: each one made costs a thread.
        _not_a_router(self.world)  # before its veths exist: each copies `default` when made
        with _iproute(self.world) as world:
            world.link("set", index=_LO, state="up")
            for index, client in enumerate(self.clients.values()):
                c_if, w_if = f"c{short}{index}"[:15], f"w{short}{index}"[:15]
                with _iproute(client.netns) as ipr:
                    ipr.link("add", ifname=c_if, kind="veth", peer={"ifname": w_if, "net_ns_fd": self.world})
                    ipr.link("set", index=_LO, state="up")
                    c_index = ipr.link_lookup(ifname=c_if)[0]
                    w_index = world.link_lookup(ifname=w_if)[0]
                    _address(ipr, c_index, client.address, client.link.prefixlen)
                    _address(world, w_index, client.gateway, client.link.prefixlen)
                    ipr.link("set", index=c_index, state="up")
                    world.link("set", index=w_index, state="up")
                    ipr.route("add", dst=str(SANDBOX_NET), gateway=client.gateway)
                    if client.link6 is not None:
                        # On links already up: an IPv6 address added while its link is down
                        # leaves the first connection over it waiting a second.
                        _address(ipr, c_index, str(client.address6), client.link6.prefixlen)
                        _address(world, w_index, str(client.gateway6), client.link6.prefixlen)
                        ipr.route("add", dst=str(SANDBOX_NET6), gateway=client.gateway6, family=10)
                files.make_dir(journal, client.etc_dir, f"sandbox files {client.etc_dir}")
                client.resolv_path.write_text(resolv_conf(self.resolver))  # created: no bind mount yet
                if client.profile:
                    from chaos.injectors.client_profile import client_profile

                    client_profile(client.netns, tag=self.run_id, **client.profile).apply(journal)
        self.write_hosts()

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


def _not_a_router(netns: str) -> None:
    """IPv4 forwarding off in the world, whatever the machine has. A new namespace takes
    IPv4's `all` and `default` settings from the machine's own (IPv6 starts from the kernel's
    defaults): with the machine forwarding (a docker host), a SYN to an address nobody in
    the world has would be answered "network unreachable" at once instead of going
    unanswered, as it does on the internet."""
    from chaos.sandbox.enter import in_netns

    def write() -> None:
        for conf in ("all", "default"):
            Path(f"/proc/sys/net/ipv4/conf/{conf}/forwarding").write_text("0")

    in_netns(netns, write)


def _address(ipr, index: int, address: str, prefixlen: int) -> None:
    six = ipaddress.ip_address(address).version == 6
    ipr.addr("add", index=index, address=address, prefixlen=prefixlen,
             **({"flags": _IFA_F_NODAD} if six else {}))


def undo(record: dict) -> None:
    try:
        _netns().remove(record["name"])
    except FileNotFoundError:
        pass  # never created, or already removed
