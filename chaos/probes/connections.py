"""connections: count the TCP connections a client holds to a server, read from the kernel.

`connections: {to: cdn, established: 0}` in `after` fails the gate while a client still
holds a connection a fault stalled (a lab dockerd keeps one to the CDN for minutes after
the pull was given up). The count comes from sock_diag inside the client's namespace (or
the `region:`'s): every socket of that namespace is seen, whichever process holds it.
"""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from chaos.probes.base import ProbeBase
from chaos.scenario.model import Strict

POLL = 0.2  # seconds between two readings while `within` lets the count settle


def _lab_roles() -> dict[str, str]:
    """The lab's component names (as `requests:` takes them) -> their host names."""
    from chaos.lab.topology import Topology

    t = Topology
    return {"upstream": t.registry_host, "registry": t.registry_host, "auth": t.auth_host,
            "cdn": t.cdn_host, "cache": t.cache_host}


def resolve(to: str, servers: dict) -> str | None:
    """The address of ``to`` (a lab component, a name the run knows, an address); None:
    unknown."""
    try:
        return str(ipaddress.ip_address(to))
    except ValueError:
        pass
    name = _lab_roles().get(to, to).lower().rstrip(".")
    return str(servers[name]) if name in servers else None


def known(servers: dict) -> str:
    """The names `to:` takes in this run, for an error message."""
    names = set(servers)
    if _lab_roles()["cdn"] in servers:
        names |= set(_lab_roles())
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

    def prepare(self, ctx) -> None:
        if resolve(self.connections.to, ctx.zone) is None:
            ctx.fail(("connections", "to"), f"unknown server {self.connections.to!r}: the run "
                                            f"knows {known(ctx.zone)} (or give an address)")

    def observe(self, place, journal, result) -> None:
        import time

        from chaos.probes import expect
        from chaos.probes.evidence import connection_line
        from chaos.sandbox.sockets import tcp_connections

        want = self.connections
        address = resolve(want.to, place.servers)
        if address is None:
            raise RuntimeError(f"unknown server {want.to!r} (the run knows {known(place.servers)})")
        start = time.monotonic()
        while True:
            held = [c for c in tcp_connections(place.netns, {address: want.to})
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
