"""Blackhole / unreachable / prohibit routes through netlink (pyroute2), in a namespace or the host."""

from __future__ import annotations

import errno
import ipaddress

from chaos.injectors.base import Injector
from chaos.journal import Journal
from chaos.sandbox.enter import iproute as _iproute

KINDS = ("blackhole", "unreachable", "prohibit")


def _route_args(dst: str, kind: str, table: int) -> dict:
    net = ipaddress.ip_network(dst, strict=False)
    return {"dst": str(net), "type": kind, "table": table,
            "family": 10 if net.version == 6 else 2}


class RouteInjector(Injector):
    """Routes that send destinations nowhere: the routing-table way to cut a registry off."""

    kind = "route"

    def __init__(self, destinations: list[str], route_kind: str, netns: str | None,
                 table: int = 254) -> None:
        super().__init__()
        if route_kind not in KINDS:
            raise ValueError(f"route kind must be one of {', '.join(KINDS)}")
        self.destinations, self.route_kind, self.netns, self.table = (
            destinations, route_kind, netns, table)

    def describe(self) -> str:
        where = f" in {self.netns}" if self.netns else " on the host"
        return f"{self.route_kind} route {', '.join(self.destinations)}{where}"

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        from pyroute2 import NetlinkError

        with _iproute(self.netns) as ipr:
            for dst in self.destinations:
                if _exists(ipr, dst, self.table):
                    # Checked before the journal line: a crash between that line and the
                    # refusal below would leave a record whose undo deletes the user's route.
                    raise RuntimeError(f"a route to {dst} already exists in table "
                                       f"{self.table}; refusing to replace it")
                record = {"netns": self.netns, "dst": dst, "kind": self.route_kind,
                          "table": self.table}
                entry = self.record(journal, record, f"{self.route_kind} route {dst}"
                                    + (f" in {self.netns}" if self.netns else " on the host"))
                try:
                    ipr.route("add", **_route_args(dst, self.route_kind, self.table))
                except NetlinkError as exc:
                    journal.forget(entry)  # not ours: a revert must never delete it
                    if exc.code == errno.EEXIST:
                        raise RuntimeError(f"a route to {dst} already exists in table "
                                           f"{self.table}; refusing to replace it") from None
                    raise


def _exists(ipr, dst: str, table: int) -> bool:
    """A route to exactly ``dst`` that ours would collide with: same table, prefix and
    priority (ours gets the kernel's default: none for IPv4, 1024 for IPv6)."""
    args = _route_args(dst, "unicast", table)
    net = ipaddress.ip_network(args["dst"])
    ours = 1024 if net.version == 6 else None
    for route in ipr.route("dump", family=args["family"]):
        if (route.get_attr("RTA_TABLE") or route["table"]) != table or route["dst_len"] != net.prefixlen:
            continue
        if ipaddress.ip_address(route.get_attr("RTA_DST") or ("::" if net.version == 6 else "0.0.0.0")) \
                == net.network_address and (route.get_attr("RTA_PRIORITY") or None) == ours:
            return True
    return False


def undo(record: dict) -> None:
    from pyroute2 import NetlinkError

    try:
        with _iproute(record["netns"]) as ipr:
            ipr.route("del", **_route_args(record["dst"], record["kind"], record["table"]))
    except NetlinkError as exc:
        if exc.code != errno.ESRCH:  # ESRCH: the route is not there (never added, or gone)
            raise
    except FileNotFoundError:
        pass  # the namespace is gone, and the route with it


KEEP_PRIORITY = 100  # before `main` (32766): a kept connection's rule is read first


class KeepConnections(Injector):
    """Policy rules that keep the connections ``found`` listed on the route they had.

    Applied between the listing and the route change: the route each kept peer had is
    copied into a table of our own, and one `ip rule` per connection (its exact 4-tuple)
    sends that connection's lookups there. The kernel looks a socket's route up again when
    the routes change, so without them an open connection meets the hole too.
    """

    kind = "ip-rule"

    def __init__(self, netns: str | None, destinations: list[str], found, tag: str) -> None:
        super().__init__()
        self.netns, self.destinations, self.found = netns, destinations, found
        digest = int.from_bytes(f"{tag}:{netns}".encode()[-8:], "big")
        self.table = 10_000 + digest % 50_000  # ours alone: a run's tag names it

    def describe(self) -> str:
        where = f" in {self.netns}" if self.netns else " on the host"
        return f"keep open connections to {', '.join(self.destinations)} on their routes{where}"

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        copied: set[str] = set()
        for conn in self.found.connections():
            if conn.get("state") != "established":
                continue
            local, lport = _split(conn["local"])
            remote, rport = _split(conn["remote"])
            if remote not in copied:
                self._copy_route(journal, remote)
                copied.add(remote)
            six = ":" in remote
            spec = ["pref", str(KEEP_PRIORITY), "from", local, "to", remote, "ipproto", "tcp",
                    "sport", str(lport), "dport", str(rport), "lookup", str(self.table)]
            self.record(journal, {"netns": self.netns, "six": six, "spec": spec},
                        f"ip rule {' '.join(spec)}")
            _ip(self.netns, six, "rule", "add", *spec)

    def _copy_route(self, journal: Journal, remote: str) -> None:
        with _iproute(self.netns) as ipr:
            route = ipr.route("get", dst=remote)[0]
            attrs = {"gateway": route.get_attr("RTA_GATEWAY"), "oif": route.get_attr("RTA_OIF"),
                     "prefsrc": route.get_attr("RTA_PREFSRC")}
            net = ipaddress.ip_network(remote)
            dst = str(net)
            entry = journal.record("route", {"netns": self.netns, "dst": dst, "kind": "unicast",
                                             "table": self.table},
                                   f"route {dst} in table {self.table} (kept connections)")
            self.entries.append(entry)
            try:
                ipr.route("add", dst=dst, table=self.table, family=10 if net.version == 6 else 2,
                          **{k: v for k, v in attrs.items() if v is not None})
            except Exception:
                journal.forget(entry)
                raise


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]"), int(port)


def _ip(netns: str | None, six: bool, *args: str) -> None:
    import subprocess

    from chaos.sandbox.enter import in_netns

    argv = ["ip", *(["-6"] if six else []), *args]
    done = in_netns(netns, subprocess.run, argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip()}")


def undo_rule(record: dict) -> None:
    """Delete one kept connection's rule (gone already, or its namespace: nothing to do)."""
    try:
        _ip(record["netns"], record["six"], "rule", "del", *record["spec"])
    except FileNotFoundError:
        return
    except RuntimeError as exc:
        if "No such file or directory" not in str(exc):
            raise
