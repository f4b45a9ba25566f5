"""Can a counting probe see everything it counts? Judged from the scenario alone.

A count is only worth something if its source saw all the traffic it counts, for the whole
span it counts ("zero upstream requests" from a log the upstream's traffic never reached
passes on nothing). Each counting kind answers ``blind_spot`` (chaos.probes.base) with a
check from here; ``chaos validate`` and ``chaos run`` refuse the scenario with those
reasons before anything is applied (chaos.scenario.load).

Only an upper bound (`count`, `at_most`) can pass on traffic its source missed; a probe
with `at_least` alone can only fail then, so it needs its source to see the traffic at
some point of its span, not throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.faults.base import Fault, Proxied

PHASES = ("before", "during", "after")
LOCAL_NAMES = ("localhost", "ip6-localhost", "ip6-loopback")
"""Names every client's hosts file keeps: never asked of a DNS server."""


@dataclass(frozen=True)
class Span:
    """What a probe counts over: its phase, from the phase's start or the run's."""

    phase: str
    since: str

    @property
    def faults_off_part(self) -> bool:
        """Does it take in time when no fault is on (before `during`, or after it)?"""
        return self.phase != "during" or self.since == "run"

    @property
    def faults_on_part(self) -> bool:
        """Does it take in the `during` phase, when faults are on?"""
        return self.phase == "during" or (self.since == "run" and self.phase == "after")

    def text(self) -> str:
        if self.since == "run":
            return f"the run up to this `{self.phase}` probe (since: run)"
        return f"the `{self.phase}` phase"


def upper_bound(probe) -> bool:
    """Could a count that missed traffic pass? (`count` or `at_most` given.)"""
    return probe.count is not None or probe.at_most is not None


def blind_spots(scenario) -> list[tuple[tuple, str]]:
    """(path in the scenario, reason) for every counting probe that cannot see what it counts
    (the kinds that count answer ``blind_spot``: CountedProbe, connections)."""
    out = []
    for phase in PHASES:
        for index, probe in enumerate(getattr(scenario.expect, phase)):
            if not hasattr(probe, "blind_spot"):
                continue
            found = probe.blind_spot(scenario, Span(phase, getattr(probe, "since", "phase")))
            if found is not None:
                rel, reason = found
                out.append((("expect", phase, index) + rel, reason))
    return out


# -- the servers a scenario knows ------------------------------------------------------------

def lab_hosts() -> dict[str, str]:
    """The lab's roles -> their host names (the Hub services are at the world's edge)."""
    from chaos.lab.topology import Topology

    t = Topology
    return {"upstream": t.registry_host, "registry": t.registry_host, "auth": t.auth_host,
            "cdn": t.cdn_host, "cache": t.cache_host}


def endpoint(scenario, host: str) -> tuple[str | None, int | None, str]:
    """(address, port, what it is) of a server the scenario names; None where unknown."""
    for server in scenario.serve:
        if server.name == host:
            address = str(server.address) if server.address else None
            return address, server.http.port, "serve"
    if scenario.lab is not None:
        hosts = lab_hosts()
        if host == hosts["cache"]:
            return None, None, "lab-cache"
        if host in hosts.values():
            return None, 443, "lab"
    if host in scenario.hosts:
        return str(scenario.hosts[host]), None, "hosts"
    return None, None, "unknown"


def known_names(scenario) -> set[str]:
    """Every server name the scenario gives an address to (the zone of its run)."""
    names = {server.name for server in scenario.serve} | set(scenario.hosts)
    if scenario.lab is not None:
        names |= set(lab_hosts().values())
    return names


def renaming(scenario, host: str, *, elsewhere: bool = False, hosts_file: bool = False) -> list[int]:
    """Faults that make clients resolve ``host`` otherwise: to another server's address
    (``elsewhere``: an HTTP fault narrowed to the host's own address no longer sees them),
    or from their hosts files (``hosts_file``: the DNS server never hears of it)."""
    out = []
    for index, fault in enumerate(scenario.faults):
        renamed = fault.renamed()
        if renamed is None or not renamed.matches(host):
            continue
        if (elsewhere and renamed.elsewhere) or (hosts_file and renamed.hosts_file):
            out.append(index)
    return out


def server_ports(scenario) -> set[int] | None:
    """Every port the scenario's servers at the world's edge listen on (None: not known)."""
    if scenario.lab is not None:
        return {443}
    if scenario.hosts or not scenario.serve:
        return None
    return {server.http.port for server in scenario.serve}


def proxied(scenario, proxy: str) -> list[tuple[int, Fault, Proxied]]:
    """(index, fault, what it redirects) of the faults that send traffic through ``proxy``."""
    out = []
    for index, fault in enumerate(scenario.faults):
        cover = fault.proxied()
        if cover is not None and cover.proxy == proxy:
            out.append((index, fault, cover))
    return out


def covered(scenario, proxy: str, host: str) -> tuple[list[int], list[int]]:
    """Faults that redirect ``host``'s traffic through ``proxy``: (for the whole `during`
    phase, for part of it); "*" asks for every server."""
    address, port, _ = endpoint(scenario, host) if host != "*" else (None, None, "")
    ports = server_ports(scenario) if host == "*" else None
    whole: list[int] = []
    part: list[int] = []
    for index, fault, cover in proxied(scenario, proxy):
        if host == "*":
            hit = cover.hosts is None and ports is not None and all(
                cover.covers(None, None, p) for p in ports)
        else:
            hit = cover.covers(host, address, port)
        if hit:
            (whole if fault.on_throughout() else part).append(index)
    return whole, part


def faults_text(indexes: list[int]) -> str:
    return ", ".join(f"faults[{i}]" for i in indexes)


# -- what each counting kind cannot see -------------------------------------------------------

def http_requests(probe, scenario, span: Span) -> tuple[tuple, str] | None:
    """The HTTP fault proxy logs what HTTP faults redirect to it, while they are on."""
    host = probe.http_requests.lower().rstrip(".")
    whole, part = covered(scenario, "http", host)
    _, port, what = endpoint(scenario, host) if host != "*" else (None, None, "")
    where = "every server's traffic" if host == "*" else f"{host}'s traffic"
    if what == "lab-cache":
        return ("http_requests",), (
            f"{host} is the lab's cache, on the clients' side of the world's edge: its traffic "
            "never crosses the HTTP fault proxy; count at the cache with `requests: cache`")
    server = next((role for role, name in lab_hosts().items() if name == host), host) \
        if what == "lab" else host
    alternative = (f", or count at the server with `requests: {server}` (its own log sees "
                   "every request)") if what in ("serve", "lab") and probe.client is None else ""
    moved = renaming(scenario, host, elsewhere=True) if host != "*" else []
    if moved and upper_bound(probe) and span.faults_on_part:
        everywhere = [i for i, f, c in proxied(scenario, "http")
                      if c.hosts is None and f.on_throughout() and c.covers(None, None, port)]
        if not everywhere:
            return ("http_requests",), (
                f"cannot count {where}: while {faults_text(moved)} is on, clients connect to "
                f"another address for {host}, and no HTTP fault on every server (no `match: "
                "host`) is on for the whole `during` phase to see them there" + alternative)
        whole = everywhere
    if upper_bound(probe):
        if whole and not span.faults_off_part:
            return None
        if span.faults_off_part:
            why = (f"{span.text()} takes in time when no fault is on, and the proxy sees only "
                   "what faults redirect while they are on")
        elif part:
            why = (f"{where} crosses it only while {faults_text(part)} is on (a window or "
                   "flap), not for the whole `during` phase")
        elif host == "*" and server_ports(scenario) is None:
            why = ("the ports of the `hosts:` servers are not known, so no fault can be "
                   "shown to redirect every server")
        else:
            why = f"no HTTP fault redirects {where}"
        add = ("an HTTP fault on every server (no `match: host`"
               + (f", ports: {sorted(server_ports(scenario) or [])}" if host == "*" else "")
               + ")") if host == "*" else (
            f"an HTTP fault on it (`match: {{host: {host}}}`"
            + (f", `ports: [{port}]`" if port else "") + ")")
        count = "in the `during` phase with since: phase" if span.faults_off_part else ""
        return ("http_requests",), (
            f"cannot count {where}: http_requests counts what crosses the HTTP fault proxy, "
            f"and {why}. Add {add} on for the whole `during` phase (no window or flap)"
            + (f" and count {count}" if count else "") + alternative)
    if span.faults_on_part and (whole or part or (host == "*" and proxied(scenario, "http"))):
        return None  # a lower bound: seeing part of the traffic cannot make it pass falsely
    why = (f"{span.text()} has no fault on" if not span.faults_on_part
           else f"no HTTP fault redirects {where}")
    return ("http_requests",), (
        f"cannot count {where}: http_requests counts what crosses the HTTP fault proxy, and "
        f"{why}, so it would count nothing{alternative}")


def requests(probe, scenario, span: Span) -> tuple[tuple, str] | None:
    """A server's own access log sees every request to it; behind a fault proxy, though,
    the client it names is the proxy."""
    name = probe.requests
    roles = lab_hosts()
    served = [s.name for s in scenario.serve]
    if name in roles:
        if scenario.lab is None:
            return ("requests",), (
                f"`requests: {name}` counts a lab server's access log and this scenario has no "
                "`lab: registry`" + (f"; its serve: servers are counted by name ({', '.join(served)})"
                                     if served else ""))
        host = roles[name]
    elif name in served:
        host = name
    else:
        known = ([f"the lab's {', '.join(r for r in roles)}"] if scenario.lab is not None
                 else []) + ([f"the serve: servers {', '.join(served)}"] if served else [])
        return ("requests",), (
            f"no access log for {name!r}: requests counts "
            + (" and ".join(known) if known else "the lab's servers (`lab: registry`) or the "
               "scenario's serve: servers, and this scenario has neither"))
    if probe.client is None or not upper_bound(probe) or not span.faults_on_part:
        return None
    if endpoint(scenario, host)[2] == "lab-cache":
        return None
    port = endpoint(scenario, host)[1]
    behind = [index for proxy in ("http", "tcp") for index, _, cover in proxied(scenario, proxy)
              if cover.may_cover(host, port, known_names(scenario))]
    if not behind:
        return None
    return ("client",), (
        f"cannot count {name}'s requests from {probe.client}: while {faults_text(behind)} "
        f"is on, {host}'s traffic goes through a fault proxy and its log names the proxy, "
        f"not the client; count at the proxy with `http_requests: {host}` and `client:`")


def dns_queries(probe, scenario, span: Span) -> tuple[tuple, str] | None:
    """The fake DNS server logs what the clients ask it; a name a hosts file answers is
    never asked (the run's clients resolve through it once it is wanted)."""
    name = probe.dns_queries.lower().rstrip(".")
    if name in LOCAL_NAMES:
        return ("dns_queries",), (
            f"{name} is answered by every client's hosts file and never asked of the DNS "
            "server, so it would count nothing")
    if scenario.lab is not None and name in scenario.hosts:
        return ("dns_queries",), (
            f"{name} is in `hosts:`, which the lab writes into its hosts files: clients "
            "never ask the DNS server for it; serve it from the DNS server instead (drop it "
            "from hosts:) or count another name")
    if not upper_bound(probe) or not span.faults_on_part:
        return None
    overridden = renaming(scenario, name, hosts_file=True)
    if not overridden:
        return None
    return ("dns_queries",), (
        f"cannot count the queries for {name}: while {faults_text(overridden)} is on, the "
        "clients' hosts files answer it and the DNS server never hears of it; point the "
        "name elsewhere with a `dns` fault (answer: sinkhole) instead, or count it outside "
        "that fault's time")
