"""Planning: resolve a fault's targets to addresses, refuse what would break the machine.

Guardrails (refused before anything is applied, with the field that asked for it):
- a destination covering the whole address space (0.0.0.0/0, ::/0), in any mode;
- in host mode, the default routes' gateways (IPv4 and IPv6), host loopback (127.0.0.0/8,
  ::1), 0.0.0.0/8, the IPv4-mapped range ::ffff:0:0/96 and the address the SSH session
  comes from;
- in host mode, host names the machine needs itself (``guard_name``: localhost, its host
  name), for faults that redirect names.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from chaos.errors import NeedsMachine, PlanError

if TYPE_CHECKING:
    from chaos.sandbox.container import Containers
    from chaos.session import DnsService, HttpService, TcpService

Net = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]
CUT_OFF = {
    ipaddress.ip_network("0.0.0.0/8"): "\"this network\" (0.0.0.0/8: the unspecified address, "
                                       "what binding to any address means)",
    ipaddress.ip_network("::ffff:0:0/96"): "the IPv4-mapped range (::ffff:0:0/96: all of IPv4 "
                                           "as IPv6 sockets see it)",
}
"""Host mode: ranges a route or filter on which cuts the machine off like a default route."""


_RTF_REJECT = 0x0200  # an "unreachable" default (the kernel's own on lo): no gateway there


def default_gateways(ipv4: str = "/proc/net/route",
                     ipv6: str = "/proc/net/ipv6_route") -> list[ipaddress._BaseAddress]:
    """Gateways of the host's default routes, IPv4 and IPv6, read from /proc (no netlink
    import needed)."""
    gateways: list[ipaddress._BaseAddress] = []
    try:
        with open(ipv4) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1] == "00000000" and parts[7] == "00000000":
                    gateways.append(ipaddress.IPv4Address(int(parts[2], 16).to_bytes(4, "little")))
    except OSError:
        pass
    try:
        with open(ipv6) as f:
            for line in f:
                # dest, dest prefix, source, source prefix, next hop, metric, refs, use, flags, dev
                parts = line.split()
                if len(parts) < 10 or parts[1] != "00" or int(parts[0], 16) != 0:
                    continue
                hop = int(parts[4], 16)
                if hop and not int(parts[8], 16) & _RTF_REJECT:
                    gateways.append(ipaddress.IPv6Address(hop))
    except (OSError, ValueError):
        pass
    return gateways


LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")

_BLOCK_BEGIN = re.compile(rb"^# >>> (\S+) \(chaos:")
_BLOCK_END = re.compile(rb"^# <<< (\S+)\s*$")


def _hosts_lines(hosts: str):
    """(the chaos block a line is in or None, its address field, its names) for each entry."""
    block = None
    try:
        with open(hosts, "rb") as f:
            for raw in f:
                begin, end = _BLOCK_BEGIN.match(raw), _BLOCK_END.match(raw)
                if begin:
                    block = begin[1].decode("utf-8", "replace")
                    continue
                if end:
                    block = None
                    continue
                fields = raw.split(b"#", 1)[0].decode("utf-8", "replace").split()
                if fields:
                    yield block, fields[0], [n.lower().rstrip(".") for n in fields[1:]]
    except OSError:
        return


def machine_names(hosts: str = "/etc/hosts") -> set[str]:
    """Names this machine needs for itself: localhost, its host name, and every name the
    hosts file maps to a loopback address (Debian's `127.0.1.1 <hostname>`), outside the
    blocks chaos runs add (those are faults, see ``redirected_names``). Local only: no DNS
    lookup."""
    names = set(LOCAL_NAMES) | {socket.gethostname().lower()}
    for block, address, entry in _hosts_lines(hosts):
        try:
            loop = ipaddress.ip_address(address.split("%")[0]).is_loopback
        except ValueError:
            continue
        if loop and block is None:
            names.update(entry)
    return names


def redirected_names(hosts: str = "/etc/hosts") -> dict[str, str]:
    """Names a chaos run's block in the hosts file redirects -> that run's id."""
    out: dict[str, str] = {}
    for block, _, entry in _hosts_lines(hosts):
        if block is not None:
            # hosts-entry tags its block run id + fault index (+ v4/v6 for one family)
            run_id = re.sub(r"-e\d+(v[46])?$", "", block)
            out.update(dict.fromkeys(entry, run_id))
    return out


def run_state(run_id: str, state: str | os.PathLike | None = None) -> str:
    """How a run stands, for a message: alive (pid), dead with its journal, or unknown here."""
    from chaos.journal import Journal, state_dir as resolve

    path = resolve(state) / "runs" / run_id / "journal.jsonl"
    try:
        journal = Journal.read(path)
    except OSError:
        return f"no journal of it in {path.parent.parent}: a run with another state dir?"
    if journal.owner_alive():
        return f"still running, pid {journal.owner_pid}"
    return "its run is gone: `chaos recover` removes the block"


def ssh_client() -> ipaddress._BaseAddress | None:
    conn = os.environ.get("SSH_CONNECTION", "").split()
    try:
        return ipaddress.ip_address(conn[0]) if conn else None
    except ValueError:
        return None


@dataclass
class PlanContext:
    """What a fault needs to know to build its injectors, and the checks it must pass."""

    run_id: str
    host_mode: bool
    clients: Mapping[str, tuple[str | None, Path]]
    """Region -> (client namespace, its hosts file); in host mode {"host": (None, /etc/hosts)}."""
    zone: dict[str, str] = field(default_factory=dict)
    """Names the run knows (served names, `hosts:`) -> addresses."""
    world: str | None = None
    """The sandbox world namespace, where server-side faults act (None in host mode)."""
    region_ranges: Mapping[str, Net] = field(default_factory=dict)
    """Region -> its clients' source range."""
    dns: DnsService | None = None
    """The run's DNS service (chaos.session.DnsService); a fault that asks for it makes the
    session start the fake DNS server."""
    http: HttpService | None = None
    """The run's HTTP fault proxy (chaos.session.HttpService), started when a fault asks."""
    tcp: TcpService | None = None
    """The run's TCP fault proxy (chaos.session.TcpService), started when a fault asks."""
    run_dir: Path | None = None
    path: tuple = ()
    """Where in the scenario the fault being planned is (for error messages)."""
    containers: Containers | None = None
    """The docker daemon asked about `container:` targets (chaos.sandbox.container.Containers)."""
    prelude: list = field(default_factory=list)
    """Injectors the planned fault needs applied before its own (a container's netns handle)."""
    state_dir: str | os.PathLike | None = None
    """The run's state dir (to say whether another run named in /etc/hosts still runs)."""
    zone6: dict[str, str] = field(default_factory=dict)
    """Names of a dual-stack run -> their IPv6 address, beside the one in ``zone``."""
    dual_stack: bool = False
    """The sandbox's clients and servers have IPv6 addresses too."""
    region_ranges6: Mapping[str, Net] = field(default_factory=dict)
    """Region -> its clients' IPv6 source range (a dual-stack run)."""

    @property
    def tag(self) -> str:
        return self.run_id

    def client_sides(self, region: str | None = None,
                     container: str | None = None) -> list[tuple[str | None, Path]]:
        """Where client-side faults apply: every client namespace, one region's, or a
        running container's."""
        if container is not None:
            return [self.container_side(container)]
        if region is None or self.host_mode:
            return list(self.clients.values())
        if region not in self.clients:
            self.fail(("region",), f"unknown region {region!r} (regions: "
                                   f"{', '.join(r for r in self.clients if r != 'default') or 'none'})")
        return [self.clients[region]]

    def peer_names(self) -> dict[str, str]:
        """Address -> the name the run gives it (a server, a lab component)."""
        return {address: name for zone in (self.zone, self.zone6) for name, address in zone.items()}

    def side_name(self, netns: str | None) -> str:
        """How the report names a client side: its region (`default`, `cache` in the lab),
        else the namespace (a container's), else the host."""
        for region, (ns, _) in self.clients.items():
            if ns == netns:
                return region if netns or not self.host_mode else "the host"
        return netns or "the host"

    def owns(self, netns: str | None) -> bool:
        """A namespace this run made (sandbox or lab) and deletes at its end: nothing in it
        has to read as before once a fault is reverted, only stop acting."""
        return netns is not None and (netns == self.world
                                      or netns in {ns for ns, _ in self.clients.values()})

    def container_side(self, name: str) -> tuple[str, Path]:
        """A running container's namespace (by the handle the fault attaches first) and
        hosts file; refused here when the daemon does not know it or it is not running."""
        from chaos.injectors.netns_handle import NetnsHandle
        from chaos.sandbox.container import ContainerError

        if self.containers is None:
            raise NeedsMachine(self.path + ("container",),
                               "this session has no docker daemon to ask about containers")
        try:
            target = self.containers.resolve(name)
        except ContainerError as exc:
            raise NeedsMachine(self.path + ("container",), str(exc)) from None
        self.prelude.append(NetnsHandle(target, self.containers))
        return target.handle, target.hosts_path

    def fail(self, rel: tuple, message: str) -> NoReturn:
        raise PlanError(self.path + rel, message)

    def use_dns(self, rel: tuple = ()) -> DnsService:
        """The run's fake DNS server (started because a fault asked for it)."""
        if self.dns is None:
            self.fail(rel, "dns faults need the sandbox's or the lab's resolver (not --host)")
        self.dns.wanted = True
        return self.dns

    @property
    def edge_families(self) -> list[str]:
        """The families an edge redirect acts in: IPv6 too in a dual-stack run."""
        return ["ipv4", "ipv6"] if self.dual_stack else ["ipv4"]

    def use_http(self, rel: tuple = ()) -> HttpService:
        """The run's HTTP fault proxy at the world's edge (started because a fault asked)."""
        if self.http is None:
            self.fail(rel, "HTTP faults need the fault proxy of the sandbox or the lab (not --host)")
        self.http.wanted = True
        return self.http

    def use_tcp(self, rel: tuple = ()) -> TcpService:
        """The run's TCP fault proxy at the world's edge (started because a fault asked)."""
        if self.tcp is None or self.world is None:
            self.fail(rel, "TCP faults need the sandbox's fault proxy (not --host)")
        self.tcp.wanted = True
        return self.tcp

    def destinations(self, target: str, rel: tuple, family: str = "both") -> list[Net]:
        """A CIDR, an address or a name -> networks, each checked against the guardrails;
        only those of ``family`` (v4, v6, both): a name gives its address in that family,
        an address of the other family is refused."""
        nets = self._resolve(target, rel)
        if family != "both":
            version = 4 if family == "v4" else 6
            kept = [n for n in nets if n.version == version]
            if not kept:
                what = "IPv4" if version == 4 else "IPv6"
                self.fail(rel, f"{target} has no {what} address, and the fault is for family "
                               f"{family}" + ("" if self.dual_stack or self.host_mode else
                                              " (the sandbox is IPv4-only: set ipv6: true)"))
            nets = kept
        for net in nets:
            self.guard(net, rel)
        return nets

    def _resolve(self, target: str, rel: tuple) -> list[Net]:
        try:
            return [ipaddress.ip_network(target, strict=False)]
        except ValueError:
            pass
        name = target.lower().rstrip(".")
        if name in self.zone:
            return [ipaddress.ip_network(self.zone[name]),
                    *([ipaddress.ip_network(self.zone6[name])] if name in self.zone6 else [])]
        if not self.host_mode:
            self.fail(rel, f"cannot resolve {target!r}: the sandbox knows only "
                           f"{', '.join(sorted(self.zone)) or 'no names'} (add it to serve: or hosts:)")
        try:
            infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            self.fail(rel, f"cannot resolve {target!r}: {exc.strerror}")
        return sorted({ipaddress.ip_network(info[4][0]) for info in infos}, key=str)

    def guard_name(self, name: str, rel: tuple) -> None:
        """A host name a fault redirects: in host mode never one the machine needs itself
        (redirecting localhost or its own host name breaks services and sudo), nor one
        another run's block redirects already (each revert would fight the other's)."""
        if not self.host_mode:
            return
        other = redirected_names().get(name.lower().rstrip("."))
        if other is not None and other != self.run_id:
            self.fail(rel, f"{name} is already redirected in /etc/hosts by run {other} "
                           f"({run_state(other, self.state_dir)}); two runs cannot redirect "
                           "one name at once")
        if name.lower().rstrip(".") in machine_names():
            self.fail(rel, f"{name} is one of this machine's own names (localhost, its host "
                           "name, a loopback entry of /etc/hosts); refusing it in host mode")

    def guard(self, net: Net, rel: tuple) -> None:
        if net.prefixlen == 0:
            self.fail(rel, f"{net} covers every address (the default route); refusing it")
        if not self.host_mode:
            return  # the sandbox has no default route: only the rule above applies there
        for gateway in default_gateways():
            if gateway.version == net.version and gateway in net:
                self.fail(rel, f"{net} covers the default gateway {gateway}; refusing it")
        for loop in LOOPBACK:
            if loop.version == net.version and net.overlaps(loop):
                self.fail(rel, f"{net} overlaps host loopback {loop}; refusing it in host mode")
        for special, what in CUT_OFF.items():
            if special.version == net.version and net.overlaps(special):
                self.fail(rel, f"{net} overlaps {what}; refusing it in host mode")
        client = ssh_client()
        if client is not None and client.version == net.version and client in net:
            self.fail(rel, f"{net} covers {client}, where this SSH session comes from")
