"""Blackhole / unreachable / prohibit routes through netlink, in a namespace or the host.

One ``RouteInjector`` is one batch: its routes are checked against one dump of the routing
table, journaled as one record (one fsync), added through one socket in batches of messages
(``chaos.injectors.rtnetlink``), and removed the same way. The record lists every route of
the batch before any is added, so ``chaos recover`` after a crash part way deletes what was
added; deleting a route that was never added is a no-op (ESRCH), and a route that collides
with one already there is refused before the record is written, so its undo never touches
a route that is not ours.
"""

from __future__ import annotations

import errno
import ipaddress

from chaos.injectors.base import Injector, shown
from chaos.injectors.rtnetlink import RTM_DELROUTE, RTM_NEWROUTE, Route, Socket, collisions, network_text, route_key
from chaos.journal import Journal
from chaos.sandbox.enter import iproute as _iproute

KINDS = ("blackhole", "unreachable", "prohibit")


class RouteInjector(Injector):
    """Routes that send destinations nowhere: the routing-table way to cut a registry off."""

    kind = "route"

    def __init__(self, destinations: list[str], route_kind: str, netns: str | None,
                 table: int = 254) -> None:
        super().__init__()
        if route_kind not in KINDS:
            raise ValueError(f"route kind must be one of {', '.join(KINDS)}")
        # One route per network: two spellings of one network are one route, not a collision.
        keys: dict[Route, str] = {}
        for dst in destinations:
            key = route_key(dst, table)
            keys.setdefault(key, network_text(key))
        self.keys = keys
        self.destinations, self.route_kind, self.netns, self.table = (
            list(keys.values()), route_kind, netns, table)

    def describe(self) -> str:
        where = f" in {self.netns}" if self.netns else " on the host"
        return f"{self.route_kind} route {shown(self.destinations)}{where}"

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        with Socket(self.netns) as sock:
            taken = collisions(sock, self.keys)
            if taken:
                # Checked before the journal line: a crash between that line and the refusal
                # would leave a record whose undo deletes the user's route.
                raise RuntimeError(f"a route to {shown([self.keys[k] for k in taken])} already "
                                   f"exists in table {self.table}; refusing to replace it")
            entry = self.record(journal, self._record(self.destinations), self.describe())
            codes = sock.send_all(RTM_NEWROUTE, self.keys, self.route_kind)
        failed = {dst: code for dst, code in zip(self.destinations, codes, strict=True) if code}
        if not failed:
            return
        # Refused part way (a route added by someone else since the dump, or the kernel's
        # refusal): the record is narrowed to the routes that may be ours first, then the
        # whole batch forgotten, so no undo ever deletes a route that was there before ours.
        exists = [dst for dst, code in failed.items() if code == errno.EEXIST]
        self.record(journal, self._record([d for d in self.destinations if d not in exists]),
                    self.describe())
        journal.forget(entry)
        self.entries.remove(entry)
        dst, code = next(iter(failed.items()))
        if exists:
            raise RuntimeError(f"a route to {shown(exists)} already exists in table "
                               f"{self.table}; refusing to replace it")
        raise OSError(code, f"adding the {self.route_kind} route {dst}: {errno.errorcode.get(code, code)}")

    def _record(self, dsts: list[str]) -> dict:
        return {"netns": self.netns, "dsts": dsts, "kind": self.route_kind, "table": self.table}


def undo(record: dict) -> None:
    """Delete every route of the record through one socket; idempotent (a route that is not
    there, never added or gone, is skipped). Records of older versions hold one ``dst``."""
    dsts = record["dsts"] if "dsts" in record else [record["dst"]]
    try:
        with Socket(record["netns"]) as sock:
            codes = sock.send_all(RTM_DELROUTE, [route_key(d, record["table"]) for d in dsts],
                                  record["kind"])
    except FileNotFoundError:
        return  # the namespace is gone, and the routes with it
    failed = [(d, c) for d, c in zip(dsts, codes, strict=True) if c and c != errno.ESRCH]
    if failed:
        dst, code = failed[0]
        raise OSError(code, f"deleting {len(failed)} route(s), first {dst}: {errno.errorcode.get(code, code)}")


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
        return f"keep open connections to {shown(self.destinations)} on their routes{where}"

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
