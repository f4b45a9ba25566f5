"""Rules of the HTTP fault proxy: one JSON file per rule in a directory, reloaded live.

A rule file (``<rules dir>/<id>.json``) holds one object::

    {"id": "hub-503", "fault": "http-error", "status": 503, "probability": 0.5,
     "match": {"host": "registry-1.docker.io", "path": "/v2/*", "method": ["GET", "HEAD"],
               "clients": ["198.18.2.0/24"],
               "servers": ["198.18.1.10"], "ports": [80, "8000:8100"]}}

``fault`` is a fault type whose model is an ``HttpFault`` (chaos.faults: http-error,
http-respond, http-abort, http-delay, http-replace, http-patch, partial, bot-mitigation,
geo-block). ``match`` is the proxy's own; every other key is a field
of the fault type's model (``probability``, ``every`` and its parameters), validated by that
model when the rule is loaded and nothing else: the hooks get the model. Each ``match`` key is
optional; a rule without ``match`` matches every request. ``host`` and ``path`` are
shell-style patterns (a string or a list of them), ``path_regex`` a regular expression
searched in the path, ``headers`` request headers (name -> value pattern) that must be
present, ``clients`` CIDRs of the client's address, ``servers`` CIDRs of the
server address the client connected to and ``ports`` its port (numbers or "first:last"
ranges): in transparent mode the original destination, so a rule can keep to the servers its
own redirect sends, whatever other faults redirect.

Reloading: every request costs one ``stat`` of the directory (a rename or unlink in it, as
``HttpRule`` does, changes its mtime); a full rescan runs at least once a second (files
edited in place) and at once after SIGHUP. So a fault goes on and off while mitmdump runs.
A broken rule file is logged and skipped, never fatal. (No ``.status`` file here, unlike the
DNS and TCP servers: writing one in the directory would change the mtime every request looks
at.)
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.injectors.rule_service import RuleError, check_id, fault_params, load_rules, roll

logger = logging.getLogger("chaos.http_faults")

RULES_DIR_OPTION = "chaos_rules_dir"
RESCAN_SECONDS = 1.0
ENGINE_KEYS = ("id", "fault", "match")  # the proxy's keys; the rest is the fault model's

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
    headers: tuple[tuple[str, str], ...] = ()
    """(name, value pattern) of request headers that must be present."""

    @classmethod
    def parse(cls, raw: Any) -> Match:
        raw = raw or {}
        if not isinstance(raw, dict):
            raise ValueError("match must be an object")
        unknown = set(raw) - {"host", "path", "path_regex", "method", "clients", "servers", "ports",
                              "headers"}
        if unknown:
            raise ValueError(f"match: unknown keys {sorted(unknown)}")
        for key in ("servers", "ports"):  # a planned list left empty must not mean "any"
            if raw.get(key) == []:
                raise ValueError(f"match.{key}: an empty list matches nothing; leave it out")
        try:
            regex = re.compile(raw["path_regex"]) if raw.get("path_regex") else None
        except re.error as exc:
            raise ValueError(f"match.path_regex: {exc}") from None
        return cls(
            hosts=tuple(h.lower() for h in _patterns(raw.get("host"), "host")),
            paths=_patterns(raw.get("path"), "path"),
            path_regex=regex,
            methods=frozenset(m.upper() for m in _patterns(raw.get("method"), "method")),
            clients=_networks(raw.get("clients"), "clients"),
            servers=_networks(raw.get("servers"), "servers"),
            ports=_ports(raw.get("ports")),
            headers=_headers(raw.get("headers")),
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
        if self.headers and not all(name in req.headers
                                    and fnmatch.fnmatchcase(req.headers[name], value)
                                    for name, value in self.headers):
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


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise ValueError("match.headers must be an object of header names and values")
    return tuple(value.items())


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
    """One fault rule: what it does (``fault`` + ``params``, the fault type's validated
    model), to what (``match``), how often."""

    id: str
    fault: str
    params: Any
    probability: float = 1.0
    match: Match = field(default_factory=Match)
    every: int = 1
    """Act only on every Nth matching request (a deterministic flap: 2 = every second one)."""

    def fires(self) -> bool:
        if self.every > 1:
            _SEEN[self.id] = _SEEN.get(self.id, 0) + 1
            if _SEEN[self.id] % self.every:
                return False
        return roll(self.probability)


_SEEN: dict[str, int] = {}  # matching requests per rule id, for `every`


def parse_rule(raw: Any) -> Rule:
    """A rule file's object -> Rule; raises RuleError (a ValueError) saying what is wrong."""
    from chaos.faults.http_rule import HttpFault

    if not isinstance(raw, dict):
        raise RuleError("a rule file holds one JSON object")
    raw = {k: v for k, v in raw.items() if v is not None}  # null means "not given"
    rule_id = check_id(raw.get("id"))
    params = {k: v for k, v in raw.items() if k not in ENGINE_KEYS}
    planned = set(params) & HttpFault.PLAN_ONLY  # the plan turns these into ``match``
    if planned:
        raise RuleError(f"unknown key(s) {', '.join(sorted(planned))} (give ``match``)")
    model = fault_params(raw.get("fault"), params, base=HttpFault)
    if not model.in_http_proxy():
        raise RuleError(f"this {model.type} fault is not applied by the HTTP proxy")
    return Rule(rule_id, model.type, model, getattr(model, "probability", None) or 1.0,
                Match.parse(raw.get("match")), getattr(model, "every", None) or 1)


def pick(flow, rules: list[Rule]) -> Rule | None:
    """The first rule (by id) matching this request whose probability draw fires."""
    for rule in rules:
        if rule.match.matches(flow) and rule.fires():
            return rule
    return None


class RuleSet:
    """The rules found in the rules directory, kept fresh, by fault type."""

    def __init__(self) -> None:
        self.directory = ""
        self._rules: dict[str, list[Rule]] = {}
        self._dir_mtime: int | None = None
        self._files: dict[str, tuple[int, int]] = {}
        self._scanned_at = 0.0
        self._generation = _hup_generation
        self._reported: dict[str, tuple] = {}

    def configure(self, directory: str) -> None:
        self.directory = directory
        self._dir_mtime = None
        self._rescan(force=True)

    def by_fault(self) -> dict[str, list[Rule]]:
        """Fault type -> its rules by id, types in registry order."""
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

    def _rescan(self, force: bool = False) -> None:
        from chaos.faults import FAULTS

        self._scanned_at = time.monotonic()
        self._generation = _hup_generation
        if not self.directory:
            self._rules, self._files = {}, {}
            return
        try:
            self._dir_mtime = os.stat(self.directory).st_mtime_ns
            entries = [e for e in os.scandir(self.directory)
                       if e.name.endswith(".json") and not e.name.startswith(".")]
            files = {}
            for e in entries:
                st = e.stat()
                files[e.name] = (st.st_mtime_ns, st.st_size)
        except OSError as exc:
            self._report(self.directory, ("dir", str(exc)), f"rules dir unreadable: {exc}")
            self._rules, self._files = {}, {}
            return
        if files == self._files and not force:
            return
        self._files = files
        rules, errors = load_rules(Path(self.directory), parse_rule, lambda r: r.id)
        for name, error in errors.items():
            self._report(name, files.get(name, ()), f"rule {name} ignored: {error}")
        by_fault: dict[str, list[Rule]] = {}
        for fault in FAULTS:
            mine = sorted((r for r in rules if r.fault == fault), key=lambda r: r.id)
            if mine:
                by_fault[fault] = mine
        self._rules = by_fault

    def _report(self, key: str, stamp: tuple, message: str) -> None:
        # Log a broken file once per version of it, not once per request.
        if self._reported.get(key) != stamp:
            self._reported[key] = stamp
            logger.error(message)


class FaultAddon:
    """An HTTP fault type's behaviour in the proxy: mitmproxy hooks that also get the rules
    of that type (already matched to nothing: call ``pick``). One instance per fault type per
    proxy, made when a rule of the type first appears (``HttpFault.http_addon``)."""

    async def request(self, flow, rules: list[Rule]) -> None:
        return None

    def responseheaders(self, flow, rules: list[Rule]) -> None:
        """The origin's status and headers are in, the body is not. Not async (the hook runs
        for every answer); to hold the answer, ``flow.intercept()`` and resume it later."""
        return None

    async def response(self, flow) -> None:
        return None

    def error(self, flow) -> None:
        return None
