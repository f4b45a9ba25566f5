"""Rules of the fake DNS server, the injector that switches them, and a handle on the server.

A rule is one JSON file ``<rules dir>/<id>.json``; the server reads every ``*.json`` there at
start and again on SIGHUP. The format is flat so a pydantic model can dump straight into it
(``model_dump(mode="json")``): keys with ``null`` count as absent and unknown keys (``type``,
``window``, ...) are ignored.

    {"id": "hub-down", "names": ["*.docker.io"], "answer": "servfail", "probability": 0.3}

``answer`` is one of ``ANSWERS``; its parameters:

- ``sinkhole``: ``address`` or ``addresses`` (default ``0.0.0.0`` for A and ``::`` for AAAA)
- ``delay``:    ``delay`` (seconds, or "250ms" / "1.5s" / ISO 8601 "PT0.25S")
- ``random``:   ``range``: one CIDR or a list (one per family); a fresh address each answer
- ``rotate``:   ``addresses``: all of them, in an order that rotates by one each answer
- optional for all: ``probability`` (0..1, default 1), ``types`` (e.g. ``["AAAA"]``: only
  those query types; default all), ``protocol`` (``udp`` or ``tcp``: only queries that came
  over it; default both), ``ttl`` (seconds, default the server's ``--ttl``).

``truncate`` acts on UDP only: over TCP it does not decide, so the next matching rule (say
one with ``protocol: tcp``) or the zone answers the client's retry.

This module does not import dnslib: faults and the runner can use it cheaply.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.injectors.base import Injector
from chaos.journal import Entry, Journal, is_alive

ANSWERS = ("nxdomain", "servfail", "refused", "timeout", "sinkhole", "delay", "truncate",
           "random", "rotate")
PROTOCOLS = ("udp", "tcp")
STATUS_FILE = ".status"  # written by the server after each reload / flush request
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$")
_ISO_DURATION = re.compile(r"^P(?:T(?:([0-9.]+)H)?(?:([0-9.]+)M)?(?:([0-9.]+)S)?)$")


class RuleError(ValueError):
    """A rule file that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Rule:
    """One parsed rule: what the server does for the names it matches."""

    id: str
    names: tuple[str, ...]
    answer: str
    addresses: tuple[str, ...] = ()  # sinkhole, rotate
    ranges: tuple[str, ...] = ()  # random
    delay: float = 0.0
    probability: float = 1.0
    types: frozenset[str] | None = None
    ttl: int | None = None
    protocol: str | None = None  # "udp" / "tcp": only queries over it; None: both

    @classmethod
    def from_dict(cls, data: Mapping) -> Rule:
        if not isinstance(data, Mapping):
            raise RuleError("a rule is a JSON object")
        d = {k: v for k, v in data.items() if v is not None}
        rule_id = d.get("id")
        if not isinstance(rule_id, str) or not _ID.match(rule_id):
            raise RuleError(f"id: {rule_id!r} is not a name of letters, digits, '_', '.', '-'")
        names = d.get("names")
        names = [names] if isinstance(names, str) else names
        if not names or not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RuleError(f"{rule_id}: names: a non-empty list of names is required")
        names = tuple(normalize_pattern(n, f"{rule_id}: names") for n in names)
        answer = str(d.get("answer", "")).lower()
        if answer not in ANSWERS:
            raise RuleError(f"{rule_id}: answer: {d.get('answer')!r} is not one of {', '.join(ANSWERS)}")
        probability = d.get("probability", 1.0)
        if not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
            raise RuleError(f"{rule_id}: probability: {probability!r} is not a number in 0..1")
        types = d.get("types")
        if types is not None:
            types = [types] if isinstance(types, str) else types
            if not isinstance(types, list) or not types:
                raise RuleError(f"{rule_id}: types: a list of query types like ['A', 'AAAA']")
            types = frozenset(str(t).upper() for t in types)
        ttl = d.get("ttl")
        if ttl is not None and (not isinstance(ttl, int) or ttl < 0):
            raise RuleError(f"{rule_id}: ttl: {ttl!r} is not a whole number of seconds >= 0")
        protocol = d.get("protocol")
        if protocol is not None:
            protocol = str(protocol).lower()
            if protocol not in PROTOCOLS:
                raise RuleError(f"{rule_id}: protocol: {d['protocol']!r} is not udp or tcp")
            if answer == "truncate" and protocol == "tcp":
                raise RuleError(f"{rule_id}: protocol: truncate sets TC over UDP; over tcp it never applies")

        addresses: list[str] = []
        if answer in ("sinkhole", "rotate"):
            raw = d.get("addresses", [d["address"]] if "address" in d else [])
            raw = [raw] if isinstance(raw, str) else raw
            addresses = [_address(a, f"{rule_id}: addresses") for a in raw]
            if answer == "sinkhole" and not addresses:
                addresses = ["0.0.0.0", "::"]
            if answer == "rotate" and not addresses:
                raise RuleError(f"{rule_id}: rotate needs addresses")
        ranges: list[str] = []
        if answer == "random":
            raw = d.get("range")
            raw = [raw] if isinstance(raw, str) else raw
            if not raw or not isinstance(raw, list):
                raise RuleError(f"{rule_id}: random needs range (a CIDR or a list of CIDRs)")
            for r in raw:
                try:
                    ranges.append(str(ipaddress.ip_network(str(r), strict=False)))
                except ValueError as exc:
                    raise RuleError(f"{rule_id}: range: {exc}") from None
        delay = 0.0
        if answer == "delay":
            if "delay" not in d:
                raise RuleError(f"{rule_id}: delay needs delay (seconds)")
            delay = parse_duration(d["delay"], f"{rule_id}: delay")
        return cls(rule_id, names, answer, tuple(addresses), tuple(ranges), delay,
                   float(probability), types, ttl, protocol)

    def to_dict(self) -> dict:
        d: dict = {"id": self.id, "names": list(self.names), "answer": self.answer,
                   "probability": self.probability}
        if self.addresses:
            d["addresses"] = list(self.addresses)
        if self.ranges:
            d["range"] = list(self.ranges)
        if self.answer == "delay":
            d["delay"] = self.delay
        if self.types is not None:
            d["types"] = sorted(self.types)
        if self.ttl is not None:
            d["ttl"] = self.ttl
        if self.protocol is not None:
            d["protocol"] = self.protocol
        return d


def normalize_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def normalize_pattern(pattern: str, where: str) -> str:
    """An exact name, ``*.suffix`` (any name below suffix, not suffix itself) or ``*``."""
    p = normalize_name(pattern)
    if not p or ("*" in p and p != "*" and not (p.startswith("*.") and "*" not in p[2:])):
        raise RuleError(f"{where}: {pattern!r} is not a name, '*.suffix' or '*'")
    return p


def parse_duration(value, where: str = "duration") -> float:
    """Seconds from a number, "250ms", "1.5s", "2m" or ISO 8601 "PT0.25S"."""
    if isinstance(value, bool):
        raise RuleError(f"{where}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value)
        m = _DURATION.match(text)
        iso = _ISO_DURATION.match(text.upper())
        if m:
            seconds = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
        elif iso and any(iso.groups()):
            h, mi, s = (float(g or 0) for g in iso.groups())
            seconds = h * 3600 + mi * 60 + s
        else:
            raise RuleError(f"{where}: {value!r} is not a duration like 0.25, '250ms' or '1.5s'")
    if not math.isfinite(seconds) or seconds < 0:
        raise RuleError(f"{where}: {value!r} is not a duration >= 0")
    return seconds


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
    rules, errors, seen = [], {}, set()
    for path in sorted(Path(rules_dir).glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            rule = Rule.from_dict(json.loads(path.read_text(encoding="utf-8")))
            if rule.id in seen:
                raise RuleError(f"{rule.id}: id used by another file")
        except (OSError, ValueError) as exc:  # JSONDecodeError and RuleError are ValueErrors
            errors[path.name] = str(exc)
            continue
        seen.add(rule.id)
        rules.append(rule)
    return rules, errors


def load_zone(data: Mapping) -> NameTable:
    """``{"name": ["198.18.1.10", "2001:db8::1"], "*.cdn.test": "198.18.1.11"}`` -> table."""
    table = NameTable()
    for name, addrs in data.items():
        addrs = [addrs] if isinstance(addrs, str) else list(addrs)
        table.add(normalize_pattern(name, "zone"), tuple(_address(a, f"zone: {name}") for a in addrs))
    return table


def write_atomic(path: Path, text: str) -> None:
    """Readers (the server on SIGHUP) never see half a file: write aside, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_status(rules_dir: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(rules_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


# -- the injector ------------------------------------------------------------------------------

def _signal_and_wait(pid: int, start: int | None, rules_dir: Path, done, timeout: float) -> dict | None:
    """SIGHUP the server (if it is still the same process) and wait until ``done(status)``.

    Returns the status, or None when the server is gone (nothing to wait for).
    """
    if not is_alive(pid, start):
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout
    while True:
        status = read_status(rules_dir)
        if done(status):
            return status
        if not is_alive(pid, start):
            return None
        if time.monotonic() > deadline:
            raise TimeoutError(f"DNS server {pid} did not reload its rules within {timeout}s")
        time.sleep(0.005)


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
        return f"fake DNS: {', '.join(self.rule.names)} -> {self.rule.answer}{extra}"

    def apply(self, journal: Journal) -> None:
        if any(not e.undone for e in self.entries):
            return  # applied already: applying twice changes nothing
        if not is_alive(self.pid, self.start):
            raise RuntimeError(f"DNS server {self.pid} is not running: cannot add rule {self.rule.id}")
        if self.path.exists():
            raise RuntimeError(f"DNS rule {self.rule.id} exists already ({self.path})")
        self.record(journal, {"path": str(self.path), "id": self.rule.id, "rules_dir": str(self.rules_dir),
                              "pid": self.pid, "start": self.start, "timeout": self.timeout})
        write_atomic(self.path, json.dumps(self.data, indent=1, default=str))
        name = self.path.name
        status = _signal_and_wait(
            self.pid, self.start, self.rules_dir,
            lambda s: self.rule.id in s.get("rules", ()) or name in s.get("errors", {}), self.timeout)
        if status is None:
            raise RuntimeError(f"DNS server {self.pid} exited while loading rule {self.rule.id}")
        if name in status.get("errors", {}):
            raise RuleError(f"DNS server refused {name}: {status['errors'][name]}")


def undo(record: dict) -> None:
    """Delete the rule file; SIGHUP the server if it is still the process that loaded it."""
    Path(record["path"]).unlink(missing_ok=True)
    rule_id = record.get("id")
    _signal_and_wait(record["pid"], record.get("start"), Path(record["rules_dir"]),
                     lambda s: rule_id not in s.get("rules", ()), record.get("timeout", 2.0))


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
        before = read_status(self.rules_dir).get("flushes", 0)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while read_status(self.rules_dir).get("flushes", 0) <= before:
            if not self.alive():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DNS server {self.pid} did not flush its log within {timeout}s")
            time.sleep(0.005)

    def set_zone(self, zone: Mapping, timeout: float = 2.0) -> None:
        """Replace the zone (names served after the start) and wait until the server has it."""
        load_zone(zone)  # a bad zone fails here, with its name, not in the server
        before = read_status(self.rules_dir).get("generation", 0)
        write_atomic(self.zone_path, json.dumps(zone, indent=1))
        status = _signal_and_wait(self.pid, self.start, self.rules_dir,
                                  lambda s: s.get("generation", 0) > before, timeout)
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
