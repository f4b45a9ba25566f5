"""connections: count the TCP connections a client holds to a server, read from the kernel.

`connections: {to: cdn, established: 0}` in `after` fails the gate while a client still
holds a connection a fault stalled (a lab dockerd keeps one to the CDN for minutes after
the pull was given up). The count comes from sock_diag inside the client's namespace (or
the `region:`'s): every socket of that namespace is seen, whichever process holds it.
"""

from __future__ import annotations

import ipaddress

from chaos.probes.base import ProbeBase
from chaos.probes.coverage import lab_hosts
from chaos.scenario.model import Strict
from chaos.scenario.modelbase import Field, model_validator

POLL = 0.2  # seconds between two readings while `within` lets the count settle


def resolve(to: str, servers: dict) -> str | None:
    """The address of ``to`` (a lab component, a name the run knows, an address); None:
    unknown."""
    try:
        return str(ipaddress.ip_address(to))
    except ValueError:
        pass
    name = lab_hosts().get(to, to).lower().rstrip(".")
    return str(servers[name]) if name in servers else None


def addresses(to: str, place) -> dict[str, str]:
    """Every address of ``to`` (both families in a dual-stack run) -> ``to``; empty: unknown."""
    address = resolve(to, place.servers)
    if address is None:
        return {}
    name = lab_hosts().get(to, to).lower().rstrip(".")
    v6 = place.servers6.get(name) if address != to else None
    return {address: to, **({str(v6): to} if v6 else {})}


def known(servers: dict) -> str:
    """The names `to:` takes in this run, for an error message."""
    names = set(servers)
    if lab_hosts()["cdn"] in servers:
        names |= set(lab_hosts())
    return ", ".join(sorted(names)) or "no names"


class ConnectionCount(Strict):
    """Which connections `connections:` counts and how many there must be."""

    to: str
    """The server: a lab component (upstream, registry, auth, cdn, cache), a name of
    `serve:` or `hosts:`, or an address."""
    port: int | None = Field(None, ge=1, le=65535)
    """Only connections to this port of the server."""
    established: int | None = Field(None, ge=0)
    """Exactly this many connections must be established."""
    open: int | None = Field(None, ge=0)
    """Exactly this many must be open in any state but time-wait (established, half-closed,
    or closed by the client and not yet finished by the kernel)."""

    @model_validator(mode="after")
    def _some_count(self):
        if self.established is None and self.open is None:
            raise ValueError("give established or open (how many connections there must be)")
        return self


class ConnectionsProbe(ProbeBase):
    """Count the TCP connections the client holds to a server, read from the kernel in the
    client's namespace (every socket there, whichever process holds it): e.g. none may stay
    established to the CDN once a stalled pull was given up. With `within`, the count may
    take up to that long to hold (it is read again every 0.2 s)."""

    kind = "connections"
    key = "connections"
    has_client = False  # it reads the client's connections; it has none of its own

    connections: ConnectionCount
    """`{to: SERVER, established: N}` and/or `open: N`, optionally `port:`."""

    def describe(self) -> str:
        return f"connections to {self.connections.to}"

    def blind_spot(self, scenario, span):
        """Unknown to the scenario, or sent elsewhere by a fault while it counts: refused
        (chaos.probes.coverage), since `established: 0` would pass on connections it
        cannot see."""
        from chaos.probes import coverage

        to = self.connections.to
        try:
            ipaddress.ip_address(to)
            return None
        except ValueError:
            pass
        host = lab_hosts().get(to, to).lower().rstrip(".") if scenario.lab else to.lower().rstrip(".")
        if host not in coverage.known_names(scenario):
            known = sorted(coverage.known_names(scenario) | (set(lab_hosts()) if scenario.lab else set()))
            return ("connections", "to"), (f"unknown server {to!r}: the scenario knows "
                                           f"{', '.join(known) or 'no names'} (or give an address)")
        sending = coverage.renaming(scenario, host, elsewhere=True) if span.faults_on_part else []
        if sending:
            return ("connections", "to"), (
                f"faults[{sending[0]}] sends {host}'s clients to another address while it is on: "
                f"connections to {to} would miss theirs; give `to:` that address instead")
        return None

    def observe(self, place, journal, result) -> None:
        import time

        from chaos.probes import expect
        from chaos.probes.evidence import connection_line
        from chaos.sandbox.sockets import tcp_connections

        want = self.connections
        peers = addresses(want.to, place)  # a dual-stack server is reached over either family
        if not peers:
            raise RuntimeError(f"unknown server {want.to!r} (the run knows {known(place.servers)})")
        start = time.monotonic()
        while True:
            held = [c for c in tcp_connections(place.netns, peers)
                    if want.port is None or c.remote.rsplit(":", 1)[1] == str(want.port)]
            established = sum(c.state == "established" for c in held)
            still_open = sum(c.state != "time-wait" for c in held)
            checks = [expect.Check(f"{label} connections to {want.to}", str(bound), str(n), n == bound)
                      for label, bound, n in (("established", want.established, established),
                                              ("open", want.open, still_open)) if bound is not None]
            waited = time.monotonic() - start
            if all(c.ok for c in checks) or waited >= (self.within or 0):
                break
            time.sleep(POLL)
        result.duration = waited
        result.checks += checks
        result.observed = f"{established} established, {still_open} open" + "".join(
            f"; {connection_line(c.to_dict())}" for c in held if c.state != "time-wait")
        result.evidence["connections"] = [c.to_dict() for c in held]
