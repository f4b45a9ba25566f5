"""The TCP proxy's side of a TCP fault: the rule file, and the hooks a toxic implements.

A rule is one JSON file in the proxy's rules directory (written by ``TcpToxic``)::

    {"id": "cdn-slow", "toxic": "slow", "direction": "downstream", "probability": 0.5,
     "match": {"addr": "198.18.0.2", "port": 443}, "latency": 0.2, "jitter": 0.05}

``id`` names the file; ``toxic`` is a TCP fault type (a ``TcpFault`` in ``chaos.faults``:
hang, slow, reset, garbage, ...); ``match`` (``addr`` IP or CIDR, ``port``, each also a list
of them, ``listener``: all given keys must fit the connection's destination) is the proxy's
own. Every other key is a field of the fault type's model (``direction``, ``probability``
and its parameters), validated by that model and nothing else. A key set to null counts as
not given; an unknown key is an error (a typo must not pass for a fault).

Each fault type's behaviour is a ``Toxic`` subclass in its own module, with hooks the proxy
calls, one instance per connection it applies to. It never touches the proxy's internals: it
holds, writes or ends the connection through the few calls the ``Conn``/``Pump`` objects
offer. The fault modules are imported when a rule first names their type.
"""

from __future__ import annotations

import ipaddress
import json
from typing import TYPE_CHECKING, Any

from chaos.injectors.rule_service import RuleError, check_id, fault_params, roll

if TYPE_CHECKING:
    import asyncio
    import random

DIRECTIONS = ("upstream", "downstream")
ENGINE_KEYS = ("id", "toxic", "match", "live")  # the proxy's keys; the rest is the fault model's


class End(Exception):
    """Raised by a toxic to end the whole connection: ``how`` is 'reset' (RST) or 'close' (FIN)."""

    def __init__(self, reason: str, how: str) -> None:
        super().__init__(reason)
        self.reason, self.how = reason, how


class Drain(Exception):
    """Raised by a toxic to stop one direction: its receiver gets a FIN, its sender is read and discarded."""


def _count(value: Any, key: str, *, least: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise RuleError(f"{key}: expected an integer >= {least}, got {value!r}")
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
    """One parsed rule file. ``fault`` is the fault type's validated model. ``revoked`` is set
    when a reload removes or changes the rule: toxics acting on open connections check it and
    stop (a hang resumes, a slow stream runs free)."""

    def __init__(self, spec: Any) -> None:
        from chaos.faults.tcp_rule import TcpFault

        if not isinstance(spec, dict):
            raise RuleError("a rule is a JSON object")
        self.spec = spec
        spec = {k: v for k, v in spec.items() if v is not None}  # null means "not given"
        self.id: str = check_id(spec.get("id"))
        params = {k: v for k, v in spec.items() if k not in ENGINE_KEYS}
        planned = set(params) & TcpFault.PLAN_ONLY  # the plan turns these into ``match``
        if planned:
            raise RuleError(f"unknown key(s) {', '.join(sorted(planned))} (give ``match``)")
        self.fault = fault_params(spec.get("toxic"), params, base=TcpFault)
        direction = self.fault.direction
        self.directions = DIRECTIONS if direction == "both" else (direction,)
        self.probability: float = self.fault.probability or 1.0
        self.match = Match(spec.get("match") or {})
        # live: also act on the connections open when the rule is loaded (as a Toxiproxy
        # toxic does); else only on those accepted after
        self.live = spec.get("live", False)
        if not isinstance(self.live, bool):
            raise RuleError(f"live: expected true or false, got {self.live!r}")
        self.revoked = False
        self._waiters: set[asyncio.Future] = set()

    def toxic(self) -> Toxic:
        """This rule's behaviour for one new connection."""
        return self.fault.toxic(self)

    @property
    def key(self) -> str:
        """Identity across reloads: same id and same content means the same rule."""
        return json.dumps(self.spec, sort_keys=True)

    def applies(self, addr: str, port: int, listener: str, rng: random.Random) -> bool:
        return self.match.fits(addr, port, listener) and roll(self.probability, rng)

    def waiter(self, future: asyncio.Future) -> None:
        """Register a hold that must end (result 'revoked') when this rule is revoked."""
        self._waiters.add(future)
        future.add_done_callback(self._waiters.discard)

    async def sleep(self, seconds: float) -> None:
        """asyncio.sleep that ends early when this rule is revoked."""
        if self.revoked or seconds <= 0:
            return
        import asyncio  # here: a fault module imports this file at plan time, without a loop

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
        return f"{self.id}:{self.fault.toxic_name}"


def _settle(future: asyncio.Future, result: str) -> None:
    if not future.done():
        future.set_result(result)


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

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.p = rule.fault  # the validated model: its fields are the parameters

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
        return self.p.after if self.p.after > 0 and direction in self.rule.directions else None

    async def _armed(self) -> bool:
        """Wait ``delay``; False if the rule was switched off by then (nothing happens)."""
        await self.rule.sleep(self.p.delay)
        return not self.rule.revoked
