"""Lab namespaces and their wiring (journal kind ``lab-netns``), and sockets opened inside them.

A stand-in for chaos.sandbox until the lead swaps it in: namespaces are made with
``ip netns add`` and everything else lives inside them, so deleting the namespaces removes
the bridge, the veth pairs and the addresses. The root namespace is never touched: veth
pairs are created inside the hub namespace with their peer placed straight into the other.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from chaos.journal import Journal
from chaos.lab import paths
from chaos.lab.topology import Topology
from chaos.sandbox.enter import in_netns

KIND = "lab-netns"
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")


def _ip(*args: str, timeout: float = 10) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=timeout)


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(journal: Journal, name: str) -> None:
    """Create a named network namespace; its undo deletes it (idempotent)."""
    if exists(name):
        raise FileExistsError(f"network namespace {name} already exists")
    journal.record(KIND, {"name": name}, f"netns {name}")
    from chaos.processes import signals_held_back

    with signals_held_back():  # a signal raised while run() waits would kill `ip` part-way
        _ip("netns", "add", name)
    _ip("-n", name, "link", "set", "lo", "up")


def undo(record: dict) -> None:
    name = record["name"]
    if not exists(name):
        return
    # ip netns delete only unmounts /run/netns/<name>; a leftover process would keep the
    # namespace alive, but the processes are recorded after it and so killed first.
    subprocess.run(["ip", "netns", "delete", name], check=True, capture_output=True, timeout=10)


def build(journal: Journal, topo: Topology) -> None:
    """Create the lab's namespaces, bridge, veth pairs, addresses and hosts files."""
    for ns in topo.namespaces:
        add(journal, ns)
    hub, plen = topo.hub_ns, topo.prefixlen
    _ip("-n", hub, "link", "add", topo.bridge, "type", "bridge")
    _ip("-n", hub, "addr", "add", f"{topo.bridge_address}/{plen}", "dev", topo.bridge)
    for svc in topo.services:
        if svc.netns == hub:
            _ip("-n", hub, "addr", "add", f"{svc.address}/{plen}", "dev", topo.bridge)
    if topo.bridge_address6:
        _ip("-n", hub, "addr", "add", f"{topo.bridge_address6}/64", "dev", topo.bridge, "nodad")
        for svc in topo.services:
            if svc.netns == hub and svc.address6:
                _ip("-n", hub, "addr", "add", f"{svc.address6}/64", "dev", topo.bridge, "nodad")
    _ip("-n", hub, "link", "set", topo.bridge, "up")
    for link in topo.links:
        _ip("-n", hub, "link", "add", link.hub_if, "type", "veth",
            "peer", "name", link.peer_if, "netns", link.netns)
        _ip("-n", hub, "link", "set", link.hub_if, "master", topo.bridge, "up")
        _ip("-n", link.netns, "addr", "add", f"{link.address}/{plen}", "dev", link.peer_if)
        if link.address6:  # nodad: usable at once, not "tentative" for a second or two
            _ip("-n", link.netns, "addr", "add", f"{link.address6}/64", "dev", link.peer_if, "nodad")
        _ip("-n", link.netns, "link", "set", link.peer_if, "up")
    # The client's own address goes on its veth (above); the cache's service address is the
    # cache namespace's veth address, so nothing else to add there.
    paths.make_dir(journal, ETC_NETNS, tree=False)
    for ns in topo.namespaces:
        d = paths.make_dir(journal, ETC_NETNS / ns)
        (d / "hosts").write_text(topo.hosts_text())
        (d / "resolv.conf").write_text(topo.resolv_text())  # never the host's resolver
    if topo.resolver is not None:  # the resolver's address lives on the hub's bridge
        _ip("-n", hub, "addr", "add", f"{topo.resolver}/{plen}", "dev", topo.bridge)


def keep_sys_argv(ns: str | None, argv: list[str]) -> list[str]:
    """Run argv in netns ``ns`` with a private mount namespace, like ``ip netns exec`` but
    without remounting /sys: ip netns exec mounts a fresh sysfs, which hides
    /sys/fs/cgroup, and dockerd refuses to start without cgroups ("Devices cgroup isn't
    mounted"). Like ip netns exec, each /etc/netns/<ns>/<file> is bind-mounted over
    /etc/<file> (once, at start: edit those files in place, do not replace them). Mounts
    made inside (dockerd's data-root bind) stay private and die with the process. The pid
    is kept through every exec, so the journaled pid is the daemon's. ``ns`` None: the
    machine's own network namespace, still with a private mount namespace (a host drill's
    dockerd)."""
    if ns is None:
        return ["unshare", "--mount", "--propagation", "slave", *argv]
    etc = ETC_NETNS / ns
    script = (f'for f in "{etc}"/*; do [ -e "$f" ] && [ -e "/etc/${{f##*/}}" ] && '
              f'mount --bind "$f" "/etc/${{f##*/}}"; done; exec "$@"')
    return ["unshare", "--mount", "--propagation", "slave",
            "nsenter", f"--net={NETNS_DIR / ns}", "sh", "-c", script, "chaos-enter", *argv]


# -- sockets inside a namespace ------------------------------------------------------------
def socket_in(netns: str | None, family: int = socket.AF_INET,
              type: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket created inside ``netns`` (it stays there whichever thread uses it)."""
    return in_netns(netns, socket.socket, family, type)


def connect(netns: str | None, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to address:port (IPv4 or IPv6) made from inside ``netns``."""
    sock = socket_in(netns, socket.AF_INET6 if ":" in address else socket.AF_INET)
    sock.settimeout(timeout)
    try:
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock
