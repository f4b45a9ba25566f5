"""Toxic rules for the TCP proxy: the rule file format, and what each toxic does to a connection.

A rule is one JSON file in the proxy's rules directory::

    {"id": "cdn-slow", "toxic": "slow", "direction": "downstream", "probability": 0.5,
     "match": {"addr": "198.18.0.2", "port": 443}, "latency": 0.2, "jitter": 0.05}

Common keys: ``id`` (required), ``toxic`` (required), ``direction`` (``upstream`` = client to
server, ``downstream`` = server to client, ``both``; default downstream), ``probability``
(rolled once per connection, default 1), ``match`` (``addr`` IP or CIDR, ``port``, each
also a list of them, ``listener``: all given keys must fit the connection's destination).
Times are seconds (a number, or "250ms", "1.5s"), sizes bytes, ``rate`` bytes per second.
A key set to null counts as not given; an unknown key is an error (a typo must not pass for
a fault). The toxics and their own keys are the classes below (``TOXICS``).

Each toxic is a small class with hooks the proxy calls (see ``Toxic``), one instance per
connection it applies to. It never touches the proxy's internals: it holds, writes or ends
the connection through the few calls the ``Conn``/``Pump`` objects offer.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import random
import re
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from chaos.durations import parse_duration

DIRECTIONS = ("upstream", "downstream")


class RuleError(ValueError):
    """A rule file that cannot be used; the message says which key and why."""


class End(Exception):
    """Raised by a toxic to end the whole connection: ``how`` is 'reset' (RST) or 'close' (FIN)."""

    def __init__(self, reason: str, how: str) -> None:
        super().__init__(reason)
        self.reason, self.how = reason, how


class Drain(Exception):
    """Raised by a toxic to stop one direction: its receiver gets a FIN, its sender is read and discarded."""


# -- parameter checks --------------------------------------------------------------------------
def _seconds(value: Any, key: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise RuleError(f"{key}: {exc}") from None


def _count(value: Any, key: str, *, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RuleError(f"{key}: expected an integer >= {least}, got {value!r}")
    return value


def _choice(value: Any, key: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise RuleError(f"{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _table(value: Any, key: str, keys: dict[str, Any]) -> dict:
    """A nested object with exactly the known keys (defaults filled in)."""
    if not isinstance(value, dict):
        raise RuleError(f"{key}: expected an object, got {value!r}")
    value = {k: v for k, v in value.items() if v is not None}
    unknown = set(value) - set(keys)
    if unknown:
        raise RuleError(f"{key}: unknown key(s) {', '.join(sorted(unknown))}")
    return {**keys, **value}


# -- the rule ------------------------------------------------------------------------------------
class Match:
    """Which connections a rule applies to: destination address/network, port, listener name.
    ``addr`` and ``port`` also take lists (any of them fits): one fault, several servers."""

    def __init__(self, spec: Any) -> None:
        spec = _table(spec, "match", {"addr": None, "port": None, "listener": None})
        addrs, ports = _listed(spec["addr"], "match.addr"), _listed(spec["port"], "match.port")
        try:
            self.nets = [ipaddress.ip_network(a, strict=False) for a in addrs]
        except (TypeError, ValueError) as exc:
            raise RuleError(f"match.addr: {exc}") from None
        self.ports = {_count(p, "match.port", least=1) for p in ports}
        self.listener = spec["listener"]

    def fits(self, addr: str, port: int, listener: str) -> bool:
        return ((not self.nets or any(ipaddress.ip_address(addr) in n for n in self.nets))
                and (not self.ports or port in self.ports)
                and (self.listener is None or self.listener == listener))


def _listed(value: Any, key: str) -> list:
    """A match value: one item or a non-empty list of them (an empty list would match nothing
    and is more likely a planning slip than a wish)."""
    if value is None:
        return []
    if isinstance(value, list):
        if not value:
            raise RuleError(f"{key}: an empty list matches nothing; leave the key out instead")
        return value
    return [value]


class Rule:
    """One parsed rule file. ``revoked`` is set when a reload removes or changes it: toxics
    acting on open connections check it and stop (a hang resumes, a slow stream runs free)."""

    COMMON = ("id", "toxic", "direction", "probability", "match")

    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, dict):
            raise RuleError("a rule is a JSON object")
        self.spec = spec
        spec = {k: v for k, v in spec.items() if v is not None}  # null means "not given"
        if not isinstance(spec.get("id"), str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", spec["id"]):
            raise RuleError(f"id: required, letters, digits, '_', '.', '-' (it names the rule file),"
                            f" got {spec.get('id')!r}")
        self.id: str = spec["id"]
        toxic = TOXICS.get(str(spec.get("toxic")))
        if toxic is None:
            raise RuleError(f"toxic: expected one of {', '.join(TOXICS)}, got {spec.get('toxic')!r}")
        self.toxic: type[Toxic] = toxic
        direction = _choice(spec.get("direction", "downstream"), "direction", (*DIRECTIONS, "both"))
        self.directions = DIRECTIONS if direction == "both" else (direction,)
        self.probability = spec.get("probability", 1.0)
        if isinstance(self.probability, bool) or not isinstance(self.probability, (int, float)) \
                or not 0 <= self.probability <= 1:
            raise RuleError(f"probability: expected a number in [0, 1], got {self.probability!r}")
        self.match = Match(spec.get("match") or {})
        params = {k: v for k, v in spec.items() if k not in self.COMMON}
        unknown = set(params) - set(self.toxic.defaults)
        if unknown:
            raise RuleError(f"unknown key(s) for toxic {self.toxic.name}: {', '.join(sorted(unknown))}"
                            f" (known: {', '.join(self.toxic.defaults) or 'none'})")
        self.params = self.toxic.check({**self.toxic.defaults, **params})
        self.revoked = False
        self._waiters: set[asyncio.Future] = set()

    @property
    def key(self) -> str:
        """Identity across reloads: same id and same content means the same rule."""
        return json.dumps(self.spec, sort_keys=True)

    def applies(self, addr: str, port: int, listener: str, rng: random.Random) -> bool:
        return self.match.fits(addr, port, listener) and (
            self.probability >= 1 or rng.random() < self.probability)

    def waiter(self, future: asyncio.Future) -> None:
        """Register a hold that must end (result 'revoked') when this rule is revoked."""
        self._waiters.add(future)
        future.add_done_callback(self._waiters.discard)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep that ends early when this rule is revoked."""
        if self.revoked or seconds <= 0:
            return
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiter(future)
        timer = loop.call_later(seconds, _settle, future, "elapsed")
        try:
            await future
        finally:
            timer.cancel()

    def revoke(self) -> None:
        self.revoked = True
        for future in list(self._waiters):
            if not future.done():
                future.set_result("revoked")

    def describe(self) -> str:
        return f"{self.id}:{self.toxic.name}"


def _settle(future: asyncio.Future, result: str) -> None:
    if not future.done():
        future.set_result(result)


def rule_digest(spec: dict) -> str:
    """What the proxy reports per loaded rule in .status: injectors wait to see their version."""
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def parse_rule(spec: Any) -> Rule:
    """Check a rule (a dict as written to a rule file); raises RuleError saying what is wrong."""
    return Rule(spec)


# -- toxics --------------------------------------------------------------------------------------
class Toxic:
    """A rule's behaviour on one connection. Hooks, all optional:

    - ``on_accept(conn)``: before the proxy connects upstream; may hold or end the connection.
    - ``budget(direction)``: bytes that pass in that direction before ``fire`` runs (None: never).
    - ``fire(pump)``: runs once the budget is reached; may hold, write, raise End or Drain.
    - ``shaper(direction)``: an object with ``shape(data, read_at)`` (async iterator of pieces
      to write) and ``at_eof()``, for toxics that delay bytes.

    A direction with no budget and no shaper is relayed zero-copy by the kernel (splice).
    """

    name: ClassVar[str]
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.p = rule.params

    @classmethod
    def check(cls, p: dict) -> dict:
        return p

    async def on_accept(self, conn) -> None:
        return None

    def budget(self, direction: str) -> int | None:
        return None

    async def fire(self, pump) -> None:
        return None

    def shaper(self, direction: str):
        return None

    def _after(self, direction: str) -> int | None:
        """Budget for the toxics that act after ``after`` bytes (0: at accept, in on_accept)."""
        return self.p["after"] if self.p["after"] > 0 and direction in self.rule.directions else None

    async def _armed(self) -> bool:
        """Wait ``delay``; False if the rule was switched off by then (nothing happens)."""
        await self.rule.sleep(self.p["delay"])
        return not self.rule.revoked


class Hang(Toxic):
    """Nothing more comes back: at ``accept`` (TCP connects, the upstream is never contacted),
    ``after-request`` (the request reaches the upstream, no response byte comes back) or
    ``after-bytes`` (``bytes`` pass in ``direction``, then the stream stalls, connection open).
    ``duration`` seconds (null: forever), ``then`` what happens when it elapses: ``resume``
    (held bytes flow again), ``close`` (FIN) or ``reset`` (RST). A client that closes ends it."""

    name = "hang"
    defaults = {"at": "after-request", "bytes": 0, "duration": None, "then": "resume"}

    @classmethod
    def check(cls, p: dict) -> dict:
        p["at"] = _choice(p["at"], "at", ("accept", "after-request", "after-bytes"))
        p["bytes"] = _count(p["bytes"], "bytes")
        p["duration"] = _seconds(p["duration"], "duration", allow_none=True)
        p["then"] = _choice(p["then"], "then", ("resume", "close", "reset"))
        return p

    async def on_accept(self, conn) -> None:
        if self.p["at"] == "accept":
            await self._hold(conn)

    def budget(self, direction: str) -> int | None:
        if self.p["at"] == "after-request":
            return 0 if direction == "downstream" else None
        if self.p["at"] == "after-bytes" and direction in self.rule.directions:
            return self.p["bytes"]
        return None

    async def fire(self, pump) -> None:
        await self._hold(pump.conn)

    async def _hold(self, conn) -> None:
        outcome = await conn.hold(self.rule, self.p["duration"])
        if outcome == "client-closed":
            raise End("client-closed", "close")
        if outcome == "elapsed" and self.p["then"] != "resume":
            raise End(f"hang-then-{self.p['then']}", self.p["then"])


class Reset(Toxic):
    """RST (SO_LINGER 0) to both peers after ``after`` bytes in ``direction``, or at once
    (``after`` 0: right after accept, the upstream is never contacted); ``delay`` waits first."""

    name = "reset"
    defaults = {"after": 0, "delay": 0}

    @classmethod
    def check(cls, p: dict) -> dict:
        p["after"], p["delay"] = _count(p["after"], "after"), _seconds(p["delay"], "delay")
        return p

    async def on_accept(self, conn) -> None:
        if self.p["after"] == 0 and await self._armed():
            raise End("reset", "reset")

    def budget(self, direction: str) -> int | None:
        return self._after(direction)

    async def fire(self, pump) -> None:
        if await self._armed():
            raise End("reset", "reset")


class Close(Toxic):
    """Clean FIN to both peers after ``after`` bytes in ``direction`` (mid-stream), or with no
    response at all (``after`` 0: the upstream is never contacted); ``delay`` waits first."""

    name = "close"
    defaults = {"after": 0, "delay": 0}
    check = Reset.check

    async def on_accept(self, conn) -> None:
        if self.p["after"] == 0 and await self._armed():
            raise End("close", "close")

    def budget(self, direction: str) -> int | None:
        return self._after(direction)

    async def fire(self, pump) -> None:
        if await self._armed():
            raise End("close", "close")


class Garbage(Toxic):
    """``bytes`` random bytes instead of the rest of the stream after ``after`` real bytes,
    then close. Downstream: the client gets garbage then FIN (``after`` 0: the upstream is never
    contacted). Upstream: the server gets garbage then FIN; its answer still comes back."""

    name = "garbage"
    defaults = {"after": 0, "bytes": 512, "delay": 0}

    @classmethod
    def check(cls, p: dict) -> dict:
        p["after"], p["delay"] = _count(p["after"], "after"), _seconds(p["delay"], "delay")
        p["bytes"] = _count(p["bytes"], "bytes", least=1)
        return p

    async def on_accept(self, conn) -> None:
        if self.p["after"] == 0 and "downstream" in self.rule.directions and await self._armed():
            await conn.send_client(os.urandom(self.p["bytes"]))
            raise End("garbage", "close")

    def budget(self, direction: str) -> int | None:
        if direction == "upstream" and self.p["after"] == 0 and direction in self.rule.directions:
            return 0
        return self._after(direction)

    async def fire(self, pump) -> None:
        if not await self._armed():
            return
        await pump.write(os.urandom(self.p["bytes"]))
        if pump.direction == "downstream":
            raise End("garbage", "close")
        raise Drain()


class Slow(Toxic):
    """Bytes arrive late: ``latency`` (+- ``jitter``) added per chunk, ``rate`` bytes/s cap,
    ``drip`` {bytes, every} (N bytes every T s), ``slicer`` {size, variation, delay} (small
    segments with a delay between them), ``close_delay`` (the FIN held back). Any combination."""

    name = "slow"
    defaults = {"latency": 0, "jitter": 0, "rate": None, "drip": None, "slicer": None,
                "close_delay": 0}

    @classmethod
    def check(cls, p: dict) -> dict:
        for key in ("latency", "jitter", "close_delay"):
            p[key] = _seconds(p[key], key)
        if p["rate"] is not None:
            if isinstance(p["rate"], bool) or not isinstance(p["rate"], (int, float)) or p["rate"] <= 0:
                raise RuleError(f"rate: expected bytes per second > 0, got {p['rate']!r}")
        if p["drip"] is not None:
            d = _table(p["drip"], "drip", {"bytes": 1, "every": None})
            p["drip"] = {"bytes": _count(d["bytes"], "drip.bytes", least=1),
                         "every": _seconds(d["every"], "drip.every")}
        if p["slicer"] is not None:
            s = _table(p["slicer"], "slicer", {"size": None, "variation": 0, "delay": 0})
            p["slicer"] = {"size": _count(s["size"], "slicer.size", least=1),
                           "variation": _count(s["variation"], "slicer.variation"),
                           "delay": _seconds(s["delay"], "slicer.delay")}
            if p["slicer"]["variation"] >= p["slicer"]["size"]:
                raise RuleError("slicer.variation: must be smaller than slicer.size")
        if p["drip"] and p["slicer"]:
            raise RuleError("drip and slicer: pick one (both cut the stream into pieces)")
        return p

    def shaper(self, direction: str):
        return Shaper(self.rule, self.p) if direction in self.rule.directions else None


class Shaper:
    """One direction's pacing state for a slow rule (per connection, per direction)."""

    def __init__(self, rule: Rule, p: dict) -> None:
        self.rule, self.p = rule, p
        self.next_at = 0.0    # earliest time of the next piece (drip/slicer spacing, rate)
        self.last_due = 0.0   # latency: keeps chunks in order when jitter would swap them
        self.rng = random.Random()

    async def shape(self, data: bytes, read_at: float) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        p = self.p
        if p["latency"] or p["jitter"]:
            delay = max(0.0, p["latency"] + self.rng.uniform(-p["jitter"], p["jitter"]))
            self.last_due = max(self.last_due, read_at + delay)
            await self._sleep_until(loop, self.last_due)
        for piece in self._pieces(data):
            await self._sleep_until(loop, self.next_at)
            yield piece
            now = loop.time()
            gap = 0.0
            if p["drip"]:
                gap = p["drip"]["every"]
            elif p["slicer"]:
                gap = p["slicer"]["delay"]
            if p["rate"]:
                gap = max(gap, len(piece) / p["rate"])
            self.next_at = max(now, self.next_at) + gap if gap else 0.0

    def _pieces(self, data: bytes):
        p = self.p
        if p["drip"]:
            size = p["drip"]["bytes"]
            sizes = iter(lambda: size, None)
        elif p["slicer"]:
            size, spread = p["slicer"]["size"], p["slicer"]["variation"]
            low, high = size - spread, size + spread
            sizes = iter(lambda: self.rng.randint(low, high), None)
        elif p["rate"]:
            # pieces of ~10 ms worth, so the cap holds within a chunk, not only between chunks
            size = max(1, int(p["rate"] / 100))
            sizes = iter(lambda: size, None)
        else:
            yield data
            return
        view = memoryview(data)
        while view:
            if self.rule.revoked:
                yield bytes(view)
                return
            n = next(sizes)
            yield bytes(view[:n])
            view = view[n:]

    async def _sleep_until(self, loop, when: float) -> None:
        await self.rule.sleep(when - loop.time())

    async def at_eof(self) -> None:
        await self.rule.sleep(self.p["close_delay"])


TOXICS: dict[str, type[Toxic]] = {t.name: t for t in (Hang, Slow, Reset, Close, Garbage)}
