"""Send TCP connections to a local fault proxy with an iptables nat REDIRECT.

``EdgeRedirect`` is what the runner uses: nat PREROUTING in the sandbox world (or the lab's
hub). The world is where the servers live, so a proxy there stands where a CDN edge stands:
it sees every client's real source address (regions), and its own connections to the
servers leave through OUTPUT, which the redirect never touches (no loop, no exemptions).
The proxy finds the original destination with SO_ORIGINAL_DST (transparent mode).

``tcp_proxy.NatRedirect`` and ``http_proxy.HttpRedirect`` redirect a namespace's own
connections instead (nat OUTPUT), exempting the proxy's sockets. All three are one
``Redirect``: an own chain plus one jump, installed and removed through
``chaos.injectors.iptables`` (journal kind ``iptables``), so applying twice leaves one jump
and a nat table the change made appear is dropped again on revert.

Open connections when a fault switches: on, an ``EdgeRedirect`` forgets the tracking of the
open connections it would have taken, so they are reset at their next request and their
clients reconnect into the fault (a kept-alive connection does not escape it); off, the
connections the proxy carries go on through it, answered by the server, because
``TrackConnections``, put in before the first redirect, keeps connection tracking on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from chaos.injectors import iptables
from chaos.injectors.base import Clash, Injector
from chaos.injectors.packet_filter import ipv4_text, port_chunks, port_text
from chaos.journal import Journal


def port_texts(ports, to_port: int) -> list[str]:
    """Ports or "first:last" ranges in iptables' spelling, sorted; never the proxy's own."""
    texts = sorted({port_text(p) for p in ports}, key=lambda t: [int(x) for x in t.split(":")])
    for text in texts:
        first, last = _span(text)
        if first <= to_port <= last:
            raise ValueError(f"port {to_port} is the proxy's own: redirecting it would loop")
    return texts


def _span(text: str) -> tuple[int, int]:
    first, _, last = text.partition(":")
    return int(first), int(last or first)


class NatChain(Injector):
    """nat ``hook`` jumps to ``chain``, whose rules are ``lines()``; in a namespace only."""

    kind: ClassVar[str] = "iptables"
    hook: ClassVar[str]

    def __init__(self, netns: str, *, chain: str, tag: str,
                 families: Sequence[str] = ("ipv4",)) -> None:
        super().__init__()
        if not netns:
            raise ValueError(f"{type(self).__name__} acts in a network namespace, never the host's")
        self.netns, self.chain, self.tag = netns, chain, tag
        self.families = list(families)
        """ipv4, and ipv6 in a dual-stack sandbox (whose IPv6 connections it takes too)."""

    def lines(self, family: str = "ipv4") -> list[str]:
        raise NotImplementedError

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        by_family = {f: lines for f in self.families if (lines := self.lines(f))}
        before = iptables.snapshot(self.netns, list(by_family))
        self.record(journal, iptables.undo_record(self.netns, "nat", self.hook, self.chain,
                                                  self.tag, before))
        iptables.install(self.netns, "nat", self.hook, self.chain, self.tag, by_family, before)


class TrackConnections(NatChain):
    """Connection tracking kept on at the edge from before the first redirect.

    With nf_tables a namespace tracks connections only while some rule needs it, so removing
    the last redirect would switch tracking off, and with it the address translation of
    every connection the proxy carries: their next packets go to the server, which knows
    nothing of them, and they are reset. With tracking on throughout they go on through the
    proxy, fault off. The rule itself never acts (invalid packets never reach nat).
    """

    hook = "PREROUTING"

    def __init__(self, netns: str, *, tag: str, families: Sequence[str] = ("ipv4",)) -> None:
        super().__init__(netns, chain=iptables.chain_name(tag, "track"), tag=tag, families=families)

    def describe(self) -> str:
        return f"connection tracking at the edge in {self.netns}"

    def lines(self, family: str = "ipv4") -> list[str]:
        return [f'-A {self.chain} -m conntrack --ctstate INVALID -m comment --comment "{self.tag}" '
                f"-j RETURN"]


class Redirect(NatChain):
    """A nat chain whose rules REDIRECT to ``to_port``."""

    def __init__(self, netns: str, to_port: int, *, chain: str, tag: str,
                 families: Sequence[str] = ("ipv4",)) -> None:
        super().__init__(netns, chain=chain, tag=tag, families=families)
        self.to_port = int(to_port)


class EdgeRedirect(Redirect):
    hook = "PREROUTING"

    def __init__(self, netns: str, ports: Sequence[int | str], to_port: int, *, tag: str, name: str,
                 destinations: Sequence[str] = (), proxy: str = "",
                 families: Sequence[str] = ("ipv4",)) -> None:
        super().__init__(netns, to_port, chain=iptables.chain_name(tag, name), tag=tag,
                         families=families)
        self.ports = port_texts(ports, to_port)
        self.destinations = list(destinations)
        self.proxy = proxy or f"port {to_port}"
        """Which proxy the redirect feeds (``HTTP``, ``TCP``), for messages."""

    def describe(self) -> str:
        where = ",".join(self.destinations) or "any server"
        return f"redirect tcp {','.join(map(str, self.ports))} to {where} -> proxy :{self.to_port} in {self.netns}"

    def lines(self, family: str = "ipv4") -> list[str]:
        import ipaddress

        version = 6 if family == "ipv6" else 4
        ours = [d for d in self.destinations
                if ipaddress.ip_network(d, strict=False).version == version]
        if self.destinations and not ours:
            return []  # no server of this family to redirect
        dests: list[str | None] = [*ours] or [None]
        return [f"-A {self.chain} -p tcp" + (f" -d {d}" if d else "")
                + f' -m multiport --dports {",".join(chunk)} -m comment --comment "{self.tag}"'
                + f" -j REDIRECT --to-ports {self.to_port}"
                for d in dests for chunk in port_chunks(self.ports)]

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        super().apply(journal)
        forget_open_connections(self.netns, self.ports, self.destinations)

    def clash(self, other: object, zone: dict[str, str]) -> Clash | None:
        """Another edge redirect to another proxy that takes in a server port this one
        takes: only the first installed would act (``Exclusive``)."""
        if not isinstance(other, EdgeRedirect) or other.to_port == self.to_port:
            return None
        hit = self.overlap(other)
        if not hit:
            return None
        port, dest = hit
        names = {addr: name for name, addr in zone.items()}
        server = f"{dest} ({names[dest]})" if dest in names else dest or "every server"
        return Clash(("ports",), f"port {port} of {server}", (
            f"the {self.proxy} and the {other.proxy} fault proxy cannot share a server port "
            "(only the first redirect installed would act); give the faults different ports "
            "or destinations"))

    def overlap(self, other: EdgeRedirect) -> tuple[int, str | None] | None:
        """The lowest port and a destination both redirects take in (None: any server), or
        None when they never meet."""
        import ipaddress

        ports = [max(a, c) for a, b in map(_span, self.ports) for c, d in map(_span, other.ports)
                 if max(a, c) <= min(b, d)]
        nets = [[ipaddress.ip_network(d, strict=False) for d in r.destinations] for r in (self, other)]
        common: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network | None]
        if not all(nets):  # one of them takes every server: the other's (if any) meet it
            common = [*(nets[0] or nets[1]), None][:1]
        else:
            common = [max(a, b, key=lambda n: n.prefixlen) for a in nets[0] for b in nets[1]
                      if a.version == b.version and a.overlaps(b)][:1]
        if not ports or not common:
            return None
        dest = common[0]
        return min(ports), None if dest is None else str(
            dest.network_address if dest.prefixlen == dest.max_prefixlen else dest)


def forget_open_connections(netns: str, ports: list[str], destinations: list[str]) -> int:
    """Drop the tracking of open TCP connections to ``ports`` (of ``destinations``; none:
    any server) in ``netns``; how many. A redirect acts only on a connection's first
    tracked packet, so without this a kept-alive connection opened before the fault would
    escape it. Forgotten, its next packet from the client is tracked anew, redirected, and
    the proxy, which never saw it open, resets it: the client reconnects and meets the
    fault, as through a real edge that broke."""
    import ipaddress

    from chaos.sandbox.enter import in_netns

    spans = [_span(text) for text in ports]

    def forget() -> int:
        try:
            tracked = _tracked_tcp()
        except FileNotFoundError:  # a kernel without conntrack's /proc file: ask netlink
            tracked = _tracked_tcp_netlink()
        doomed = [t for t in tracked if any(a <= t[3] <= b for a, b in spans)]
        if doomed and destinations:
            # Only now, and single addresses as a set: a fault with thousands of
            # destinations parsed them all, and compared each connection with each.
            hosts, nets = set(), []
            for d in destinations:
                text = ipv4_text(d)
                if text is not None and text.endswith("/32"):
                    hosts.add(text[:-3])
                else:
                    nets.append(ipaddress.ip_network(d, strict=False))
            doomed = [t for t in doomed if t[1] in hosts
                      or any(ipaddress.ip_address(t[1]) in net for net in nets)]
        if doomed:  # netlink only now: a pyroute2 socket's dump costs more than the whole read
            _untrack(doomed)
        return len(doomed)

    return in_netns(netns, forget)


def _tracked_tcp() -> list[tuple[str, str, int, int]]:
    """(saddr, daddr, sport, dport) of the calling thread's namespace's tracked TCP
    connections (IPv4 and IPv6), original direction, from /proc (cheap: no netlink socket)."""
    found = []
    with open("/proc/thread-self/net/nf_conntrack", encoding="ascii") as table:
        for line in table:
            fields = line.split()
            if fields[0] not in ("ipv4", "ipv6") or fields[2] != "tcp":
                continue
            orig: dict[str, str] = {}
            for field in fields:  # the first src=, dst=, sport=, dport= are the original's
                key, sep, value = field.partition("=")
                if sep and key in ("src", "dst", "sport", "dport"):
                    orig.setdefault(key, value)
            found.append((orig["src"], orig["dst"], int(orig["sport"]), int(orig["dport"])))
    return found


def _tracked_tcp_netlink() -> list[tuple[str, str, int, int]]:
    from pyroute2 import Conntrack

    with Conntrack() as ct:
        return [(e.tuple_orig.saddr, e.tuple_orig.daddr, e.tuple_orig.sport, e.tuple_orig.dport)
                for e in ct.dump_entries()
                if e.tuple_orig.proto == 6 and e.tuple_orig.family in (2, 10)]


def _untrack(tuples) -> None:
    for family in (2, 10):  # AF_INET, AF_INET6: a netlink socket speaks for one family
        ours = [t for t in tuples if (":" in t[0]) == (family == 10)]
        if ours:
            _untrack_family(family, ours)


def _untrack_family(family: int, tuples) -> None:
    import errno

    from pyroute2 import Conntrack
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    with Conntrack(nfgen_family=family) as ct:
        for saddr, daddr, sport, dport in tuples:
            try:
                ct.delete(NFCTAttrTuple(family=family, saddr=saddr, daddr=daddr, proto=6,
                                        sport=sport, dport=dport))
            except NetlinkError as exc:  # it ended meanwhile
                if exc.code != errno.ENOENT:
                    raise
