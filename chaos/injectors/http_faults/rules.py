"""Rules for the HTTP fault addons: one JSON file per rule in a directory, reloaded live.

A rule file (``<rules dir>/<id>.json``) holds one object::

    {"id": "hub-503", "fault": "http-error", "status": 503, "probability": 1.0,
     "match": {"host": "registry-1.docker.io", "path": "/v2/*", "method": ["GET", "HEAD"],
               "clients": ["198.18.2.0/24"],
               "servers": ["198.18.1.10"], "ports": [80, "8000:8100"]}}

``every`` (N) makes a rule act on every Nth matching request only.
Every key besides ``id``, ``fault``, ``probability``, ``every`` and ``match`` is a parameter of the
fault. Each ``match`` key is optional; a rule without ``match`` matches every request.
``host`` and ``path`` are shell-style patterns (a string or a list of them), ``path_regex``
a regular expression searched in the path, ``clients`` CIDRs of the client's address,
``servers`` CIDRs of the server address the client connected to and ``ports`` its port
(numbers or "first:last" ranges): in transparent mode the original destination, so a rule
can keep to the servers its own redirect sends, whatever other faults redirect.

Reloading: every request costs one ``stat`` of the directory (a rename or unlink in it, as
``HttpRule`` does, changes its mtime); a full rescan runs at least once a second (files
edited in place) and at once after SIGHUP. So a fault goes on and off while mitmdump runs.
A broken rule file is logged and skipped, never fatal.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import json
import logging
import os
import random
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("chaos.http_faults")

RULES_DIR_OPTION = "chaos_rules_dir"
RESCAN_SECONDS = 1.0
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

# Bumped by SIGHUP; every RuleSet rescans when it sees a new value.
_hup_generation = 0


def add_options(loader) -> None:
    """Declare the option shared by every fault addon (same signature: declared once)."""
    loader.add_option(
        RULES_DIR_OPTION, str, "",
        "Directory of chaos fault rules, one JSON object per *.json file; empty: no rules.",
    )


def check_rules_dir(updated: set[str]) -> None:
    from mitmproxy import ctx, exceptions

    if RULES_DIR_OPTION in updated:
        path = getattr(ctx.options, RULES_DIR_OPTION)
        if path and not os.path.isdir(path):
            raise exceptions.OptionsError(f"{RULES_DIR_OPTION}: {path!r} is not a directory")


def _bump(*_args) -> None:
    global _hup_generation
    _hup_generation += 1


def install_sighup() -> None:
    """Make SIGHUP force a rescan (idempotent: every addon may call it)."""
    import asyncio

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _bump)
    except (RuntimeError, NotImplementedError, ValueError):
        signal.signal(signal.SIGHUP, _bump)


def valid_id(rule_id: str) -> bool:
    return bool(_ID.match(rule_id or ""))


def _patterns(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"match.{name} must be a string or a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Match:
    """Which requests a rule applies to; every given field must hold."""

    hosts: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    path_regex: re.Pattern | None = None
    methods: frozenset[str] = frozenset()
    clients: tuple = ()
    servers: tuple = ()
    ports: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, raw: Any) -> Match:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ValueError("match must be an object")
        unknown = set(raw) - {"host", "path", "path_regex", "method", "clients", "servers", "ports"}
        if unknown:
            raise ValueError(f"match: unknown keys {sorted(unknown)}")
        for key in ("servers", "ports"):  # a planned list left empty must not mean "any"
            if raw.get(key) == []:
                raise ValueError(f"match.{key}: an empty list matches nothing; leave it out")
        regex = raw.get("path_regex")
        return cls(
            hosts=tuple(h.lower() for h in _patterns(raw.get("host"), "host")),
            paths=_patterns(raw.get("path"), "path"),
            path_regex=re.compile(regex) if regex else None,
            methods=frozenset(m.upper() for m in _patterns(raw.get("method"), "method")),
            clients=_networks(raw.get("clients"), "clients"),
            servers=_networks(raw.get("servers"), "servers"),
            ports=_ports(raw.get("ports")),
        )

    def matches(self, flow) -> bool:
        req = flow.request
        if self.methods and req.method.upper() not in self.methods:
            return False
        if self.hosts:
            host = req.pretty_host.lower()
            if not any(fnmatch.fnmatchcase(host, p) for p in self.hosts):
                return False
        if self.paths or self.path_regex:
            path = req.path.split("?", 1)[0]
            if self.paths and not any(fnmatch.fnmatchcase(path, p) for p in self.paths):
                return False
            if self.path_regex and not self.path_regex.search(path):
                return False
        if self.clients:
            addr = client_ip(flow)
            if addr is None or not any(addr in net for net in self.clients):
                return False
        if self.servers or self.ports:
            addr, port = server_address(flow)
            if self.servers and (addr is None or not any(addr in net for net in self.servers)):
                return False
            if self.ports and (port is None or not any(lo <= port <= hi for lo, hi in self.ports)):
                return False
        return True


def _networks(value: Any, name: str) -> tuple:
    return tuple(ipaddress.ip_network(c, strict=False) for c in _patterns(value, name))


def _ports(value: Any) -> tuple[tuple[int, int], ...]:
    out = []
    for p in value if isinstance(value, list) else [] if value is None else [value]:
        ends = str(p).replace("-", ":").split(":")
        ok = not isinstance(p, bool) and len(ends) <= 2 and all(e.isdigit() for e in ends)
        lo, hi = (int(ends[0]), int(ends[-1])) if ok else (0, 0)
        if not 0 < lo <= hi < 65536:
            raise ValueError(f"match.ports: {p!r} is not a port 1..65535 or a range like 8000:8100")
        out.append((lo, hi))
    return tuple(out)


def server_address(flow):
    """(address, port) the client connected to: the original destination in transparent
    mode (mitmproxy sets it before any request); None for what is not known or not an IP."""
    try:
        host, port = flow.server_conn.address[:2]
    except (TypeError, ValueError, AttributeError):
        return None, None
    return _parse_ip(str(host)), port


def client_ip(flow):
    try:
        return _parse_ip(flow.client_conn.peername[0])
    except (TypeError, IndexError):
        return None


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str):
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    return addr.ipv4_mapped or addr if addr.version == 6 else addr


@dataclass(frozen=True)
class Rule:
    """One fault rule: what it does (``fault`` + ``params``), to what (``match``), how often."""

    id: str
    fault: str
    params: dict
    probability: float = 1.0
    match: Match = field(default_factory=Match)
    every: int = 1
    """Act only on every Nth matching request (a deterministic flap: 2 = every second one)."""

    def fires(self) -> bool:
        if self.every > 1:
            _SEEN[self.id] = _SEEN.get(self.id, 0) + 1
            if _SEEN[self.id] % self.every:
                return False
        return self.probability >= 1.0 or random.random() < self.probability


_SEEN: dict[str, int] = {}  # matching requests per rule id, for `every`


def parse_rule(raw: Any, check: Callable[[dict], dict]) -> Rule:
    if not isinstance(raw, dict):
        raise ValueError("a rule file holds one JSON object")
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not valid_id(rule_id):
        raise ValueError(f"id {rule_id!r}: letters, digits, '_', '.', '-' (at most 100)")
    probability = raw.get("probability", 1.0)
    if not isinstance(probability, (int, float)) or not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability {probability!r} is not within 0..1")
    every = raw.get("every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every {every!r}: a whole number >= 1")
    params = {k: v for k, v in raw.items() if k not in ("id", "fault", "probability", "match", "every")}
    return Rule(rule_id, raw["fault"], check(params), float(probability), Match.parse(raw.get("match")),
                every)


class RuleSet:
    """The rules of some fault kinds found in the rules directory, kept fresh.

    ``checks`` maps a fault name to a function validating and normalising its parameters
    (raise ValueError to reject the rule).
    """

    def __init__(self, checks: dict[str, Callable[[dict], dict]]) -> None:
        self.checks = checks
        self.directory = ""
        self._rules: list[Rule] = []
        self._dir_mtime: int | None = None
        self._files: dict[str, tuple[int, int]] = {}
        self._scanned_at = 0.0
        self._generation = _hup_generation
        self._reported: dict[str, tuple] = {}

    def configure(self, directory: str) -> None:
        self.directory = directory
        self._dir_mtime = None
        self._rescan(force=True)

    def rules(self) -> list[Rule]:
        if not self.directory:
            return self._rules
        try:
            dir_mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            dir_mtime = None
        if self._generation != _hup_generation:
            self._rescan(force=True)
        elif dir_mtime != self._dir_mtime or time.monotonic() - self._scanned_at > RESCAN_SECONDS:
            self._rescan()
        return self._rules

    def pick(self, flow) -> Rule | None:
        """The first rule (by id) matching this request whose probability draw fires."""
        for rule in self.rules():
            if rule.match.matches(flow) and rule.fires():
                return rule
        return None

    def _rescan(self, force: bool = False) -> None:
        self._scanned_at = time.monotonic()
        self._generation = _hup_generation
        if not self.directory:
            self._rules, self._files = [], {}
            return
        try:
            self._dir_mtime = os.stat(self.directory).st_mtime_ns
            entries = [e for e in os.scandir(self.directory)
                       if e.name.endswith(".json") and not e.name.startswith(".")]
            files = {}
            for e in entries:
                st = e.stat()
                files[e.path] = (st.st_mtime_ns, st.st_size)
        except OSError as exc:
            self._report(self.directory, ("dir", str(exc)), f"rules dir unreadable: {exc}")
            self._rules, self._files = [], {}
            return
        if files == self._files and not force:
            return
        self._files = files
        rules = []
        for path in sorted(files):
            try:
                with open(path, encoding="utf-8") as f:
                    raw = json.load(f)
                if not isinstance(raw, dict) or raw.get("fault") not in self.checks:
                    continue  # another addon's rule
                rules.append(parse_rule(raw, self.checks[raw["fault"]]))
            except (OSError, ValueError, TypeError, KeyError, re.error) as exc:
                self._report(path, files[path], f"rule {os.path.basename(path)} ignored: {exc}")
        self._rules = sorted(rules, key=lambda r: r.id)

    def _report(self, key: str, stamp: tuple, message: str) -> None:
        # Log a broken file once per version of it, not once per request.
        if self._reported.get(key) != stamp:
            self._reported[key] = stamp
            logger.error(message)


# -- parameter checks shared by the fault addons ---------------------------------------

def number(params: dict, name: str, default: float | None, *, minimum: float = 0.0) -> float | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ValueError(f"{name} must be a number >= {minimum}, not {value!r}")
    return float(value)


def choice(params: dict, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = params.get(name, default)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def headers(params: dict) -> dict[str, str]:
    value = params.get("headers") or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("headers must be an object of strings")
    return value


class RuleAddon:
    """What every fault addon shares: the rules of its fault kind (``FAULT`` checked by
    ``check``), the rules-dir option declared in ``load`` and checked in ``configure``, and
    the SIGHUP reload once mitmproxy runs."""

    FAULT: str = ""

    @staticmethod
    def check(params: dict) -> dict:
        raise NotImplementedError

    def __init__(self) -> None:
        self.rules = RuleSet({self.FAULT: self.check})

    def load(self, loader) -> None:
        add_options(loader)

    def configure(self, updated) -> None:
        check_rules_dir(updated)
        if RULES_DIR_OPTION in updated:
            from mitmproxy import ctx

            self.rules.configure(ctx.options.chaos_rules_dir)

    def running(self) -> None:
        install_sighup()
