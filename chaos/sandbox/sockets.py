"""The TCP connections of a network namespace, read from the kernel (sock_diag / inet_diag).

A probe that fails or is killed says which connections its client held at that moment:
to which server, in which state, how many bytes came in and how long no byte came. The
kernel answers for every socket of the namespace, so nothing is missed (no parsing of
`ss`). A socket is attributed to the process holding it by its inode (/proc/PID/fd), looked
up only among the processes inside that namespace; a socket no process holds any more (the
client closed it, the kernel still finishes it) has no owner.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from chaos.sandbox.enter import in_netns, netns_path

STATES = {1: "established", 2: "syn-sent", 3: "syn-recv", 4: "fin-wait-1", 5: "fin-wait-2",
          6: "time-wait", 7: "close", 8: "close-wait", 9: "last-ack", 10: "listen", 11: "closing"}
_INFO = 1 << (2 - 1)  # INET_DIAG_INFO: ask for struct tcp_info with each socket
_NOT_LISTENING = ((1 << 12) - 1) & ~(1 << 10)


@dataclass
class Connection:
    """One TCP socket of the namespace, as the kernel saw it when it was read."""

    local: str
    remote: str
    """address:port ([v6]:port) of the peer."""
    to: str
    """The name the scenario gives the peer (a server, a lab component), else its address."""
    state: str
    received: int
    """Bytes of payload the kernel received on it (read by the client or not)."""
    unread: int
    """Of those, bytes still waiting in the receive queue."""
    idle: float
    """Seconds since the last byte of payload came in (since it opened, if none came)."""
    pid: int | None = None
    process: str | None = None
    """Command name of the process holding the socket (None: no process holds it)."""

    def to_dict(self) -> dict:
        return asdict(self)


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _read(families) -> list:
    from pyroute2.netlink.diag import DiagSocket  # heavy import: only when evidence is taken

    found = []
    with DiagSocket() as diag:
        diag.bind()
        for family in families:
            found += diag.get_sock_stats(family=family, states=_NOT_LISTENING, extensions=_INFO)
    return found


def _owners(netns: str | None, inodes: set[int]) -> dict[int, tuple[int, str]]:
    """inode -> (pid, command name) of the processes holding those sockets: first among the
    processes inside ``netns`` (clients run there), then, for what is left, every other (a
    process may hold a socket it made inside a namespace it is not in)."""
    if not inodes:
        return {}
    try:
        ns = os.stat(netns_path(netns) if netns else "/proc/self/ns/net").st_ino
    except OSError:
        ns = None
    inside: list[Path] = []
    outside: list[Path] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                (inside if os.stat(entry / "ns" / "net").st_ino == ns else outside).append(entry)
            except OSError:  # ended while we looked
                continue
    want = {f"socket:[{i}]": i for i in inodes}
    owners: dict[int, tuple[int, str]] = {}
    for group in (inside, outside):
        for proc in group:
            if len(owners) == len(want):
                return owners
            try:
                for fd in os.scandir(proc / "fd"):
                    inode = want.get(os.readlink(fd.path))
                    if inode is not None and inode not in owners:
                        owners[inode] = (int(proc.name), (proc / "comm").read_text().strip())
            except OSError:  # the process ended while we looked, or a descriptor closed
                continue
    return owners


def tcp_connections(netns: str | None, peers: dict[str, str] | None = None) -> list[Connection]:
    """The TCP connections (every state but listen) inside ``netns`` (None: this one).

    ``peers`` maps address -> name: only connections to those addresses are kept, named so
    (None: every connection, named by address)."""
    messages = in_netns(netns, _read, (socket.AF_INET, socket.AF_INET6))
    kept = []
    for msg in messages:
        remote = msg["idiag_dst"].removeprefix("::ffff:")
        if peers is not None and remote not in peers:
            continue
        info = msg.get_attr("INET_DIAG_INFO") or {}
        kept.append((msg, remote, info))
    owners = _owners(netns, {m["idiag_inode"] for m, _, _ in kept if m["idiag_inode"]})
    found = []
    for msg, remote, info in kept:
        pid, comm = owners.get(msg["idiag_inode"], (None, None))
        found.append(Connection(
            local=_hostport(msg["idiag_src"].removeprefix("::ffff:"), msg["idiag_sport"]),
            remote=_hostport(remote, msg["idiag_dport"]),
            to=(peers or {}).get(remote, remote),
            state=STATES.get(msg["idiag_state"], str(msg["idiag_state"])),
            received=int(info.get("tcpi_bytes_received", 0)), unread=int(msg["idiag_rqueue"]),
            idle=int(info.get("tcpi_last_data_recv", 0)) / 1000.0, pid=pid, process=comm))
    return found
