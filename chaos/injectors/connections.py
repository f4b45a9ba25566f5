"""The TCP connections a fault meets when it starts: listed for the report, reset on demand.

A packet-level fault (packet-filter, route-blackhole, geo-block) does different things to a
connection that was open before it and to one made after: a pooled keep-alive connection
hangs where a new one times out at its dial. ``OpenConnections`` runs first among the fault's
injectors: it reads the namespace's sockets (sock_diag, chaos.sandbox.sockets) to the
faulted destinations for the report (``connections()``), and with ``reset`` destroys
them (SOCK_DESTROY, as ``ss -K``: the client's socket fails with ECONNABORTED at once, the
kernel sends the server a RST) before the fault's own change, so a client that reconnects
meets the fault.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence

from chaos.injectors.base import Injector
from chaos.journal import Journal

GONE = ("time-wait", "close")  # no longer a connection anyone can use


def _port_ranges(ports: Sequence[int | str]) -> list[tuple[int, int]]:
    out = []
    for p in ports:
        lo, _, hi = str(p).replace("-", ":").partition(":")
        out.append((int(lo), int(hi or lo)))
    return out


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


class OpenConnections(Injector):
    """Lists (and with ``reset`` destroys) the TCP connections of ``netns`` whose peer is in
    ``nets`` (empty: any) on ``ports`` (empty: any)."""

    kind = "connections"

    def __init__(self, netns: str | None, nets: Sequence[str], ports: Sequence[int | str] = (),
                 *, reset: bool = False, where: str = "",
                 names: dict[str, str] | None = None) -> None:
        super().__init__()
        self.netns, self.reset = netns, reset
        self.names = names or {}  # address -> the name the run gives it
        self.nets = [ipaddress.ip_network(n, strict=False) for n in nets]
        self.ports = _port_ranges(ports)
        self.where = where or (netns or "the host")
        self.found: list[dict] | None = None

    def describe(self) -> str:
        what = "reset" if self.reset else "list"
        return f"{what} open TCP connections in {self.where}"

    def _wanted(self, remote: str) -> bool:
        host, port = _split(remote)
        addr = ipaddress.ip_address(host)
        return ((not self.nets or any(addr in n for n in self.nets))
                and (not self.ports or any(lo <= port <= hi for lo, hi in self.ports)))

    def apply(self, journal: Journal) -> None:
        self.found = None
        if self.reset:  # nothing to undo (a reset connection stays reset): on record anyway
            self.record(journal, {"netns": self.netns})
            found = self.connections()
            for c in found:
                c["reset"] = self._destroy(c["local"], c["remote"])

    def connections(self) -> list[dict]:
        """The connections open at this fault's start. Read in ``apply`` when it resets
        them (or when another injector needs them first), else on the first call after it:
        the runner asks once the fault is in effect, so reading the sockets never delays
        the fault itself (what it leaves open stays open meanwhile)."""
        if self.found is None:
            from chaos.sandbox.sockets import tcp_connections

            found = [c.to_dict() for c in tcp_connections(self.netns)
                     if c.state not in GONE and self._wanted(c.remote)]
            for c in found:
                c["to"] = self.names.get(c["to"], c["to"])
                c["where"] = self.where
            self.found = found
        return self.found

    def _destroy(self, local: str, remote: str) -> bool:
        """SOCK_DESTROY through ``ss -K`` for exactly this connection (its 4-tuple)."""
        from chaos.sandbox.enter import in_netns

        done = in_netns(self.netns, subprocess.run,
                        ["ss", "-K", "-t", "-n", "-H", "src", local, "dst", remote],
                        capture_output=True, text=True, timeout=10)
        return done.returncode == 0 and bool(done.stdout.strip())


def undo(record: dict) -> None:
    """A reset connection cannot be opened again: nothing to undo."""
    return None
