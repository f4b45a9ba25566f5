"""Packet filter injector: drop or reject matching packets with iptables, in our own chain.

One ``PacketFilter`` owns one chain per address family, named from the run tag; each rule's
first line carries the tag in a comment, and the only rule outside that chain is the single jump into
it from the hook (OUTPUT in a client namespace, FORWARD in a router, INPUT in a server).
Applying is one ``iptables-restore --noflush`` batch per family, removing is another
(``chaos.injectors.iptables``).

What a client sees (measured, see docs/packet-filter.md):

- ``drop``: nothing comes back, the client hangs until its own timeout.
- ``reject-reset``: a TCP RST: "Connection refused" on connect, "Connection reset by peer"
  on an established connection, at once.
- ``reject-icmp``: an ICMP error: "Connection refused" (port-unreachable) or "No route to
  host" (host-unreachable, admin-prohibited) on connect. Linux ignores these on an
  established TCP connection, which then hangs like ``drop``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar

from chaos.injectors import iptables
from chaos.injectors.base import Injector
from chaos.journal import Journal

ACTIONS = ("drop", "reject-reset", "reject-icmp")
HOOKS = ("INPUT", "FORWARD", "OUTPUT")
_ICMP_REJECT = {  # reject_with -> (IPv4 type, IPv6 type)
    "port-unreachable": ("icmp-port-unreachable", "icmp6-port-unreachable"),
    "host-unreachable": ("icmp-host-unreachable", "icmp6-addr-unreachable"),
    "net-unreachable": ("icmp-net-unreachable", "icmp6-no-route"),
    "admin-prohibited": ("icmp-admin-prohibited", "icmp6-adm-prohibited"),
}
_PROTOCOLS = {"tcp": ("tcp", "tcp"), "udp": ("udp", "udp"), "icmp": ("icmp", "ipv6-icmp")}
_TCP_FLAGS = {"SYN", "ACK", "FIN", "RST", "URG", "PSH", "ALL", "NONE"}
_MULTIPORT_MAX = 15  # multiport takes 15 ports; a range counts as two


@dataclass
class FilterRule:
    """One match -> action. Every field left empty matches everything.

    sources / destinations: CIDRs, addresses or ``first-last`` ranges, IPv4 and IPv6 mixed
    (each family gets the rules for its own addresses). ``ports`` are destination ports
    (``443``, ``"8000:8100"``). ``ttl`` is ``{"eq"|"lt"|"gt": n}`` as the packet carries it
    at the hook: in FORWARD the router has already decremented it (a TTL-128 client shows
    127); for IPv6 it matches the hop limit. ``length`` is the IP packet length range
    ``(min, max)``. ``tcp_flags`` is ``(mask, set)`` like ``("SYN,ACK", "SYN")``.
    ``tcp_option`` matches segments carrying that TCP option kind (3 window scale,
    8 timestamps), or lacking it with ``tcp_option_absent``. ``mss`` is a range of the MSS
    option (SYN only). ``probability`` acts on that share of matching packets;
    ``after_bytes`` only once the connection carried that many bytes (both directions).
    """

    action: str = "drop"
    destinations: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    protocol: str | None = None
    ports: list[int | str] = field(default_factory=list)
    reject_with: str = "port-unreachable"
    ttl: dict[str, int] | None = None
    length: tuple[int, int] | None = None
    tcp_flags: tuple[str, str] | None = None
    tcp_option: int | None = None
    tcp_option_absent: bool = False
    mss: tuple[int, int] | None = None
    dscp: int | None = None
    probability: float | None = None
    after_bytes: int | None = None
    only_families: list[str] | None = None
    """Only these address families ("ipv4", "ipv6"; None: each that has addresses)."""

    @classmethod
    def from_dict(cls, data: dict) -> FilterRule:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown packet filter rule fields: {sorted(unknown)}")
        return cls(**data)

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action {self.action!r}: expected one of {ACTIONS}")
        if self.action == "reject-reset":
            if self.protocol not in (None, "tcp"):
                raise ValueError("reject-reset answers with a TCP RST: protocol must be tcp")
            self.protocol = "tcp"
        if self.protocol is not None and self.protocol not in _PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: expected tcp, udp or icmp")
        if self.reject_with not in _ICMP_REJECT:
            raise ValueError(f"reject_with {self.reject_with!r}: expected one of "
                             f"{tuple(_ICMP_REJECT)}")
        self.destinations = [str(a) for a in self.destinations]
        self.sources = [str(a) for a in self.sources]
        self.ports = [port_text(p) for p in self.ports]
        if self.ports and self.protocol not in ("tcp", "udp"):
            raise ValueError("ports need protocol tcp or udp")
        if self.ttl is not None:
            self.ttl = _ttl(self.ttl)
        self.length = _range(self.length, "length", 0, 65535)
        self.mss = _range(self.mss, "mss", 0, 65535)
        if isinstance(self.tcp_flags, str):
            self.tcp_flags = tuple(self.tcp_flags.split())
        if self.tcp_flags is not None:
            self.tcp_flags = _tcp_flags(self.tcp_flags)
        if self.tcp_option is not None and not 0 <= self.tcp_option <= 255:
            raise ValueError(f"tcp_option {self.tcp_option}: expected an option kind 0..255")
        if self.tcp_option_absent and self.tcp_option is None:
            raise ValueError("tcp_option_absent needs tcp_option")
        tcp_only = self.tcp_flags or self.tcp_option is not None or self.mss
        if tcp_only and self.protocol != "tcp":
            raise ValueError("tcp_flags, tcp_option and mss need protocol tcp")
        if self.dscp is not None and not 0 <= self.dscp <= 63:
            raise ValueError(f"dscp {self.dscp}: expected 0..63")
        if self.probability is not None and not 0 < self.probability <= 1:
            raise ValueError(f"probability {self.probability}: expected 0 < p <= 1")
        if self.only_families is not None and not set(self.only_families) <= set(iptables.FAMILIES):
            raise ValueError(f"only_families {self.only_families!r}: expected ipv4 and/or ipv6")
        if self.after_bytes is not None and self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")
        # Parsed once (a list of thousands was parsed three times per family), and
        # mixed-family sources/destinations fail here, not at apply time.
        self._by_family = _split(self.sources), _split(self.destinations)
        self.families()

    def split(self) -> tuple[dict[str, list[tuple[str, str]]], dict[str, list[tuple[str, str]]]]:
        """(sources, destinations), each family -> its (kind, text) entries."""
        return self._by_family

    def families(self) -> list[str]:
        """The address families this rule has anything to match in."""
        src, dst = self._by_family
        found = [f for f in iptables.FAMILIES
                 if (not self.sources or src[f]) and (not self.destinations or dst[f])
                 and (self.only_families is None or f in self.only_families)]
        if not found:
            raise ValueError("sources and destinations share no address family"
                             + (f" within {', '.join(self.only_families)}"
                                if self.only_families else ""))
        return found


def port_text(p: int | str) -> str:
    """A port or range (443, "8000:8100", "8000-8100") as iptables writes it; ValueError if not."""
    text = str(p).replace("-", ":")
    parts = text.split(":")
    if len(parts) > 2 or not all(x.isdigit() and 0 < int(x) < 65536 for x in parts) \
            or int(parts[0]) > int(parts[-1]):
        raise ValueError(f"port {p!r}: expected 1..65535 or a range like 8000:8100")
    return text


def _ttl(ttl) -> dict[str, int]:
    if isinstance(ttl, int):
        ttl = {"eq": ttl}
    if len(ttl) != 1 or next(iter(ttl)) not in ("eq", "lt", "gt"):
        raise ValueError(f"ttl {ttl!r}: expected exactly one of eq, lt, gt")
    (op, value), = ttl.items()
    if not 0 <= int(value) <= 255:
        raise ValueError(f"ttl {value}: expected 0..255")
    return {op: int(value)}


def _range(value, name: str, low: int, high: int) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        value = (value, value)
    if isinstance(value, str):
        value = tuple(int(x) for x in value.replace("-", ":").split(":"))
    lo, hi = (int(x) for x in value)
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} {value!r}: expected {low} <= min <= max <= {high}")
    return lo, hi


def _tcp_flags(value) -> tuple[str, str]:
    mask, comp = (str(x).upper() for x in value)
    for flag in (*mask.split(","), *comp.split(",")):
        if flag not in _TCP_FLAGS:
            raise ValueError(f"tcp flag {flag!r}: expected {sorted(_TCP_FLAGS)}")
    return mask, comp


def _address(text: str) -> tuple[str, str, str]:
    """-> (family, "net" | "range", normalized text)."""
    v4 = ipv4_text(text)
    if v4 is not None:
        return "ipv4", "net", v4
    if "-" in text:
        first, last = (ipaddress.ip_address(x.strip()) for x in text.split("-", 1))
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"address range {text!r}: ends differ in family or order")
        return f"ipv{first.version}", "range", f"{first}-{last}"
    net = ipaddress.ip_network(text, strict=False)
    return f"ipv{net.version}", "net", str(net)


def ipv4_text(text: str) -> str | None:
    """An IPv4 address or CIDR as ``ip_network(strict=False)`` writes it, None if it is not
    one; without ``ipaddress`` objects, which were most of the cost of a long list."""
    address, _, length = text.partition("/")
    if ":" in address or "-" in text or "." not in address:
        return None
    try:
        raw = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        prefix = int(length) if length else 32
    except (OSError, ValueError):
        return None
    if not 0 <= prefix <= 32 or (length and not length.isdigit()):
        return None
    raw &= ~((1 << (32 - prefix)) - 1) & 0xFFFFFFFF
    return f"{socket.inet_ntop(socket.AF_INET, raw.to_bytes(4, 'big'))}/{prefix}"


def _split(addresses: list[str]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {f: [] for f in iptables.FAMILIES}
    for text in addresses:
        family, kind, value = _address(text)
        out[family].append((kind, value))
    return out


def port_chunks(ports: list[str]) -> list[list[str]]:
    chunks: list[list[str]] = []
    current: list[str] = []
    used = 0
    for p in ports:
        cost = 2 if ":" in p else 1
        if used + cost > _MULTIPORT_MAX:
            chunks.append(current)
            current, used = [], 0
        current.append(p)
        used += cost
    return [*chunks, current] if current else chunks


def _l4_match(rule: FilterRule, port: str | None) -> list[str]:
    """One ``-m tcp`` (or ``-m udp``) for every header option: iptables-nft 1.8.9 keeps only
    the last of two ``-m tcp`` in a rule, silently (found while building this)."""
    opts = ["--dport", port] if port else []
    if rule.protocol == "tcp":
        if rule.tcp_option is not None:
            opts += ["!"] * rule.tcp_option_absent + ["--tcp-option", str(rule.tcp_option)]
        mask, comp = rule.tcp_flags or ("", "")
        masked = set(mask.split(","))
        if rule.action == "reject-reset" and "RST" not in comp.split(",") and not (
                masked & {"RST", "ALL"}):
            # The kernel's own RST passes OUTPUT again; matching it here would swallow it.
            mask, comp = ",".join(x for x in (mask, "RST") if x), comp or "NONE"
        if mask:
            opts += ["--tcp-flags", mask, comp]
    return ["-m", rule.protocol, *opts] if opts and rule.protocol else []  # ports need a protocol


def rule_lines(rule: FilterRule, family: str, chain: str, comment: str) -> list[str]:
    """The ``-A chain ...`` lines for one rule in one family (empty if it has none there)."""
    if family not in rule.families():
        return []
    v6 = family == "ipv6"
    by_source, by_destination = rule.split()
    srcs: list[tuple[str, str] | None] = [*by_source[family]] or [None]
    dsts: list[tuple[str, str] | None] = [*by_destination[family]] or [None]
    chunks = port_chunks([str(p) for p in rule.ports]) or [[]]  # port_text() made them text
    lines: list[str] = []
    for src in srcs:
        for dst in dsts:
            for ports in chunks:
                spec = [f"-A {chain}"]
                ranges = []
                for flag, addr in (("s", src), ("d", dst)):
                    if addr and addr[0] == "net":
                        spec.append(f"-{flag} {addr[1]}")
                    elif addr:
                        ranges.append(f"--{'src' if flag == 's' else 'dst'}-range {addr[1]}")
                if rule.protocol:
                    spec.append(f"-p {_PROTOCOLS[rule.protocol][v6]}")
                if ranges:
                    spec.append("-m iprange " + " ".join(ranges))
                single = ports[0] if len(ports) == 1 and ":" not in ports[0] else None
                if ports and not single:
                    spec.append("-m multiport --dports " + ",".join(ports))
                l4 = _l4_match(rule, single)
                spec += [" ".join(l4)] if l4 else []
                spec += _extra_matches(rule, v6)
                if not lines:  # first line only: on every line of a long list it slowed the restore
                    spec.append(f'-m comment --comment "{comment}"')
                spec.append(_target(rule, v6))
                lines.append(" ".join(spec))
    return lines


def _extra_matches(rule: FilterRule, v6: bool) -> list[str]:
    out = []
    if rule.ttl:
        (op, value), = rule.ttl.items()
        out.append(f"-m hl --hl-{op} {value}" if v6 else f"-m ttl --ttl-{op} {value}")
    if rule.length:
        out.append(f"-m length --length {rule.length[0]}:{rule.length[1]}")
    if rule.mss:
        out.append(f"-m tcpmss --mss {rule.mss[0]}:{rule.mss[1]}")
    if rule.dscp is not None:
        out.append(f"-m dscp --dscp {rule.dscp}")
    if rule.after_bytes is not None:
        out.append(f"-m connbytes --connbytes {rule.after_bytes}: "
                   "--connbytes-dir both --connbytes-mode bytes")
    if rule.probability is not None and rule.probability < 1:
        # Last, so only packets that match everything else draw a random number.
        out.append(f"-m statistic --mode random --probability {rule.probability:.6f}")
    return out


def _target(rule: FilterRule, v6: bool) -> str:
    if rule.action == "drop":
        return "-j DROP"
    if rule.action == "reject-reset":
        return "-j REJECT --reject-with tcp-reset"
    return f"-j REJECT --reject-with {_ICMP_REJECT[rule.reject_with][v6]}"


def filter_lines(rules: list[FilterRule], family: str, chain: str, tag: str) -> list[str]:
    """The ``-A chain ...`` lines of every rule in one family, each rule's first line tagged
    with its number."""
    return [line for i, rule in enumerate(rules, 1)
            for line in rule_lines(rule, family, chain, f"{tag} r{i} {rule.action}")]


def render_batch(rules: list[FilterRule], *, chain: str, hook: str, tag: str,
                 family: str) -> str:
    """The ``iptables-restore --noflush`` batch that installs ``rules`` for one family."""
    lines = filter_lines(rules, family, chain, tag)
    return iptables.install_batch("filter", hook, chain, tag, lines) if lines else ""


class PacketFilter(Injector):
    """Drop or reject packets matching ``rules`` at ``hook`` inside ``netns``.

    ``rules`` are ``FilterRule`` objects or plain dicts of the same fields. ``name`` makes
    the chain unique when one run installs several filters in one namespace (the fault's
    index is a good choice); by default it is a hash of the rules. ``scratch``: the
    namespace is the run's own and goes with it, so a revert need not leave ``iptables-save``
    reading as before (the filter table may stay), only the filter gone.
    """

    kind: ClassVar[str] = "iptables"

    def __init__(self, rules: list[FilterRule | dict], *, netns: str | None, tag: str,
                 hook: str = "OUTPUT", name: str | None = None, scratch: bool = False) -> None:
        super().__init__()
        if hook not in HOOKS:
            raise ValueError(f"hook {hook!r}: expected one of {HOOKS}")
        if not rules:
            raise ValueError("a packet filter needs at least one rule")
        self.rules = [r if isinstance(r, FilterRule) else FilterRule.from_dict(r) for r in rules]
        self.netns, self.tag, self.hook, self.scratch = netns, tag, hook, scratch
        digest = hashlib.sha1(repr((hook, [asdict(r) for r in self.rules])).encode())
        self.chain = iptables.chain_name(tag, name or "pf" + digest.hexdigest()[:6])

    def render(self) -> dict[str, str]:
        """family -> batch text, only for families that get rules (`chaos run --dry-run`
        prints it)."""
        return {family: iptables.install_batch("filter", self.hook, self.chain, self.tag, lines)
                for family, lines in self._lines().items()}

    def _lines(self) -> dict[str, list[str]]:
        """family -> its rule lines, only for families that get any."""
        by_family = {f: filter_lines(self.rules, f, self.chain, self.tag) for f in iptables.FAMILIES}
        return {family: lines for family, lines in by_family.items() if lines}

    def apply(self, journal: Journal) -> None:
        lines = self._lines()
        # In a scratch namespace (the run's own, deleted at its end) the tables are not read
        # first: a revert only has to stop the filter, and is one batch (docs/benchmarks.md).
        before = ({f: None for f in lines} if self.scratch
                  else iptables.snapshot(self.netns, lines))
        self.record(journal, iptables.undo_record(self.netns, "filter", self.hook, self.chain, self.tag,
                                                  before))
        iptables.install(self.netns, "filter", self.hook, self.chain, self.tag, lines, before)

    def describe(self) -> str:
        first = self.rules[0]
        what = first.action + (f" {first.protocol}" if first.protocol else "")
        if first.destinations:
            what += " -> " + ",".join(first.destinations[:3])
        if first.ports:
            what += " port " + ",".join(map(str, first.ports[:3]))
        more = f" (+{len(self.rules) - 1} rules)" if len(self.rules) > 1 else ""
        return f"iptables {self.hook} in {self.netns or 'host'} [{self.chain}]: {what}{more}"

