"""Rules of the fake DNS server, the injector that switches them, and a handle on the server.

A rule is one JSON file ``<rules dir>/<id>.json`` (the rule service,
``chaos.injectors.rule_service``); the server reads every ``*.json`` there at start and again
on SIGHUP. The file is the ``dns`` fault model's JSON dump plus an ``id``
(``chaos.faults.dns.Dns.rule``); the server rebuilds that model (``model_validate``: the only
check of the parameters) and turns it into the ``Rule`` it answers with. Keys with ``null``
count as absent; an unknown key is an error.

    {"id": "hub-down", "names": ["*.docker.io"], "answer": "servfail", "probability": 0.3}

``truncate`` acts on UDP only: over TCP it does not decide, so the next matching rule (say
one with ``protocol: tcp``) or the zone answers the client's retry.

This module does not import dnslib, nor pydantic until a rule is read.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.injectors import rule_service
from chaos.injectors.base import Injector, shown
from chaos.injectors.dir_watch import DirWatch
from chaos.injectors.rule_service import STATUS_FILE, RuleError, check_id, read_status, write_atomic
from chaos.journal import Entry, Journal, is_alive

__all__ = ["STATUS_FILE", "DnsRule", "DnsServer", "Rule", "RuleError", "read_status",
           "start_dns_server", "undo"]


@dataclass(frozen=True)
class Rule:
    """One loaded rule: what the server does for the names it matches."""

    id: str
    names: tuple[str, ...]
    answer: str
    addresses: tuple[str, ...] = ()  # sinkhole, rotate
    ranges: tuple[str, ...] = ()  # random
    delay: float = 0.0
    probability: float = 1.0
    types: frozenset[str] | None = None
    protocol: str | None = None  # "udp" / "tcp": only queries over it; None: both
    digest: str = field(default="", compare=False)  # of the file as read, for .status

    @classmethod
    def from_dict(cls, data: Any) -> Rule:
        """A rule file's object -> Rule; RuleError (a ValueError) says what is wrong."""
        from chaos.faults.dns import Dns

        if not isinstance(data, Mapping):
            raise RuleError("a rule is a JSON object")
        d = {k: v for k, v in data.items() if v is not None}
        rule_id = check_id(d.pop("id", None))
        planned = set(d) & (Dns.PLAN_ONLY - {"type"})
        if planned:
            raise RuleError(f"{rule_id}: unknown key(s) {', '.join(sorted(planned))}")
        try:
            model = rule_service.fault_params("dns", d)
        except RuleError as exc:
            raise RuleError(f"{rule_id}: {exc}") from None
        return cls.from_model(rule_id, model, rule_service.digest(dict(data)))

    @classmethod
    def from_model(cls, rule_id: str, m: Any, digest: str = "") -> Rule:
        """The validated ``dns`` fault model -> what the server needs to answer."""
        addresses: list[str] = []
        if m.answer == "sinkhole":
            addresses = [str(m.address)] if m.address is not None else ["0.0.0.0", "::"]
        elif m.answer == "rotate":
            addresses = [str(a) for a in m.addresses]
        ranges = [m.range] if isinstance(m.range, str) else list(m.range or [])
        return cls(rule_id, tuple(m.names), m.answer, tuple(addresses),
                   tuple(ranges) if m.answer == "random" else (),
                   m.delay or 0.0 if m.answer == "delay" else 0.0, m.probability or 1.0,
                   frozenset(m.types) if m.types else None, m.protocol, digest)


def normalize_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def normalize_pattern(pattern: str, where: str) -> str:
    """An exact name, ``*.suffix`` or ``*`` (the zone's names; rules' are the model's)."""
    from chaos.faults.dns import name_pattern

    try:
        return name_pattern(pattern)
    except ValueError as exc:
        raise RuleError(f"{where}: {exc}") from None


def _address(value, where: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise RuleError(f"{where}: {value!r} is not an IP address") from None


class NameTable:
    """Patterns -> values; lookup gives the matches, most specific first.

    Exact names first, then wildcards by longest suffix, then ``*``; values of one pattern
    keep the order they were added in.
    """

    def __init__(self) -> None:
        self.exact: dict[str, list] = {}
        self.wild: dict[str, list] = {}  # suffix without "*." ("" for "*")

    def add(self, pattern: str, value) -> None:
        if pattern == "*":
            self.wild.setdefault("", []).append(value)
        elif pattern.startswith("*."):
            self.wild.setdefault(pattern[2:], []).append(value)
        else:
            self.exact.setdefault(pattern, []).append(value)

    def lookup(self, name: str) -> list:
        found = list(self.exact.get(name, ()))
        if self.wild:
            labels = name.split(".")
            for i in range(1, len(labels)):
                found += self.wild.get(".".join(labels[i:]), ())
            found += self.wild.get("", ())
        return found


def load_rules(rules_dir: str | os.PathLike) -> tuple[list[Rule], dict[str, str]]:
    """Every ``*.json`` in rules_dir, by file name; errors by file name (those are skipped)."""
    return rule_service.load_rules(Path(rules_dir), Rule.from_dict, lambda r: r.id)


def load_zone(data: Mapping) -> NameTable:
    """``{"name": ["198.18.1.10", "2001:db8::1"], "*.cdn.test": "198.18.1.11"}`` -> table."""
    table = NameTable()
    for name, addrs in data.items():
        addrs = [addrs] if isinstance(addrs, str) else list(addrs)
        table.add(normalize_pattern(name, "zone"), tuple(_address(a, f"zone: {name}") for a in addrs))
    return table


# -- the injector ------------------------------------------------------------------------------

class DnsRule(Injector):
    """Put one rule into a running fake DNS server (a file in its rules dir + SIGHUP).

    ``apply`` returns once the server has loaded the rule, so the fault is live from then on.
    """

    kind = "dns-rule"

    def __init__(self, rule: Mapping | Any, *, rules_dir: str | os.PathLike, pid: int,
                 start: int | None, timeout: float = 2.0) -> None:
        super().__init__()
        if hasattr(rule, "model_dump"):  # a pydantic model: its JSON form is the rule file
            rule = rule.model_dump(mode="json")
        self.rule = Rule.from_dict(rule)  # fail here, before anything changes
        self.data = {k: v for k, v in dict(rule).items() if v is not None}
        self.rules_dir = Path(rules_dir)
        self.pid, self.start, self.timeout = pid, start, timeout

    @property
    def path(self) -> Path:
        return self.rules_dir / f"{self.rule.id}.json"

    def describe(self) -> str:
        extra = f" p={self.rule.probability:g}" if self.rule.probability < 1 else ""
        return f"fake DNS: {shown(self.rule.names)} -> {self.rule.answer}{extra}"

    def apply(self, journal: Journal) -> None:
        if any(not e.undone for e in self.entries):
            return  # applied already: applying twice changes nothing
        if not is_alive(self.pid, self.start):
            raise RuntimeError(f"DNS server {self.pid} is not running: cannot add rule {self.rule.id}")
        if self.path.exists():
            raise RuntimeError(f"DNS rule {self.rule.id} exists already ({self.path})")
        self.record(journal, {"path": str(self.path), "id": self.rule.id, "rules_dir": str(self.rules_dir),
                              "pid": self.pid, "start": self.start, "timeout": self.timeout})
        rule_service.put_rule(self.rules_dir, self.data, pid=self.pid, start=self.start,
                              timeout=self.timeout, what="DNS server")


def undo(record: dict) -> None:
    """Delete the rule file; SIGHUP the server if it is still the process that loaded it."""
    rule_service.drop_rule(record, "DNS server")


# -- the server process ------------------------------------------------------------------------

@dataclass
class DnsServer:
    """A running fake DNS server (``python -m chaos.injectors.dns_server``) started by a run."""

    pid: int
    start: int | None
    listen: str
    port: int
    netns: str | None
    run_dir: Path
    entry: Entry | None = None  # its "process" record in the journal
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def rules_dir(self) -> Path:
        return self.run_dir / "rules"

    @property
    def log_path(self) -> Path:
        return self.run_dir / "queries.jsonl"

    @property
    def zone_path(self) -> Path:
        return self.run_dir / "zone.json"

    @property
    def stderr_path(self) -> Path:
        return self.run_dir / "server.stderr"

    def alive(self) -> bool:
        return is_alive(self.pid, self.start)

    def rule(self, rule: Mapping, timeout: float = 2.0) -> DnsRule:
        return DnsRule(rule, rules_dir=self.rules_dir, pid=self.pid, start=self.start, timeout=timeout)

    def flush(self, timeout: float = 2.0) -> None:
        """Make the server write out its buffered log (SIGUSR1) and wait until it has."""
        if not self.alive():
            return
        watch = DirWatch(self.rules_dir)  # the server says it flushed in .status
        before = read_status(self.rules_dir).get("flushes", 0)
        os.kill(self.pid, signal.SIGUSR1)
        rule_service.wait_status(watch, self.rules_dir, lambda s: s.get("flushes", 0) > before,
                                 self.pid, self.start, timeout,
                                 f"DNS server {self.pid} did not flush its log")

    def set_zone(self, zone: Mapping, timeout: float = 2.0) -> None:
        """Replace the zone (names served after the start) and wait until the server has it."""
        load_zone(zone)  # a bad zone fails here, with its name, not in the server
        write_atomic(self.zone_path, json.dumps(zone, indent=1))
        status = rule_service.reload(self.pid, self.start, self.rules_dir, lambda s: True,
                                     timeout, "DNS server")
        if status is None:
            raise RuntimeError(f"DNS server {self.pid} is not running: cannot change its zone")
        if "zone" in status.get("errors", {}):
            raise RuntimeError(f"DNS server refused its new zone: {status['errors']['zone']}")

    def queries(self) -> list[dict]:
        """Every query the server answered (or dropped) so far, oldest first."""
        from chaos import jsonl

        self.flush()
        return jsonl.read(self.log_path)

    def stop(self, journal: Journal) -> None:
        """Kill it through its journal record (so the record is marked undone)."""
        if self.entry is not None:
            journal.undo(self.entry)
        if self.proc is not None:
            self.proc.wait(timeout=5)


def start_dns_server(journal: Journal, *, netns: str | None, listen: str, zone: Mapping | str | os.PathLike,
                     run_dir: str | os.PathLike, port: int = 53, ttl: int = 1,
                     seed: int | None = None, timeout: float = 5.0) -> DnsServer:
    """Start the fake DNS server (in netns), journaled, and wait until it answers.

    ``zone`` maps names to addresses (or is a path to such a JSON file). ``run_dir`` (created)
    receives zone.json, rules/, queries.jsonl and server.stderr; the caller removes it.
    ``seed`` makes each rule's probability and random draws repeatable (per rule id).
    """
    from chaos.processes import spawn, stdout_of

    run_dir = Path(run_dir)
    server = DnsServer(0, None, listen, port, netns, run_dir)
    server.rules_dir.mkdir(parents=True, exist_ok=True)
    zone_data = zone if isinstance(zone, Mapping) else json.loads(Path(zone).read_text(encoding="utf-8"))
    load_zone(zone_data)  # a bad zone fails here, with its name, not in the child
    write_atomic(server.zone_path, json.dumps(zone_data, indent=1))
    argv = [sys.executable, "-m", "chaos.injectors.dns_server", "--listen", listen, "--port", str(port),
            "--zone", str(server.zone_path), "--rules-dir", str(server.rules_dir),
            "--log", str(server.log_path), "--ttl", str(ttl)]
    argv += ["--seed", str(seed)] if seed is not None else []
    with open(server.stderr_path, "ab") as err:
        proc, entry = spawn(journal, argv, netns=netns, what=f"fake DNS server on {listen}:{port}"
                            + (f" in {netns}" if netns else ""),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    server.pid, server.start, server.entry, server.proc = proc.pid, entry.undo.get("start"), entry, proc
    try:
        line = _read_line(proc, timeout)
    finally:
        stdout_of(proc).close()
    if line.strip() != b"ready":
        try:  # EOF on stdout: it is exiting; wait a moment for its status
            code = proc.wait(timeout=1.0) if not line else proc.poll()
        except subprocess.TimeoutExpired:
            code = None
        journal.undo(entry)  # kills it (if still there) and marks the record undone
        err_text = server.stderr_path.read_text(encoding="utf-8", errors="replace").strip()[-2000:]
        why = f"exited with status {code}" if code is not None else f"did not say 'ready' within {timeout}s"
        raise RuntimeError(f"fake DNS server on {listen}:{port} {why}" + (f":\n{err_text}" if err_text else ""))
    return server


def _read_line(proc: subprocess.Popen, timeout: float) -> bytes:
    from chaos.processes import stdout_of

    fd, buf = stdout_of(proc).fileno(), b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 256)
        if not chunk:
            break
        buf += chunk
    return buf
