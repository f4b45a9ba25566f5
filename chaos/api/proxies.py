"""Toxiproxy's proxies and toxics, kept in the project's TCP fault proxy.

A proxy is a plain listener of one TCP fault proxy process (``TcpListener``), a toxic one
rule of it (``TcpToxic``, matched by the listener's name); both are journal records, so
``/reset``, shutdown and ``chaos recover`` undo them like a run's. The behaviour of each
call (defaults, checks and their order, errors) follows Toxiproxy 2.x's ApiServer,
ProxyCollection and ToxicCollection; where it cannot, docs/api.md says so.
"""

from __future__ import annotations

import itertools
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

from chaos.api.toxics import TOXICS, rule
from chaos.injectors.rule_service import RuleError
from chaos.injectors.tcp_proxy import ListenError, TcpListener, TcpProxy, TcpToxic
from chaos.injectors.tcp_server import format_addr
from chaos.journal import Journal


class ApiError(Exception):
    """An error as Toxiproxy reports it: ``{"error": message, "status": status}``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message, self.status = message, status

    def joined(self, detail: str) -> ApiError:
        return ApiError(f"{self.message}: {detail}", self.status)


BAD_BODY = ApiError("bad request body", 400)
MISSING_FIELD = ApiError("missing required field", 400)
PROXY_NOT_FOUND = ApiError("proxy not found", 404)
PROXY_EXISTS = ApiError("proxy already exists", 409)
INVALID_STREAM = ApiError("stream was invalid, can be either upstream or downstream", 400)
INVALID_TOXIC_TYPE = ApiError("invalid toxic type", 400)
TOXIC_EXISTS = ApiError("toxic already exists", 409)
TOXIC_NOT_FOUND = ApiError("toxic not found", 404)
STREAMS = ("upstream", "downstream")  # Toxiproxy lists a proxy's toxics in this order


def field_of(body: dict, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    """A JSON field of the expected kind (Go's decoder refuses the others), or the default."""
    value = body.get(key, default)
    if value is None:
        return default
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _kinds(kind))
    if not ok:
        raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(value)} into field {key}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _json_kind(value: Any) -> str:
    return {bool: "bool", str: "string", list: "array", dict: "object"}.get(type(value), "number")


def resolve(address: str, what: str) -> tuple[str, int]:
    """host:port -> (IP, port), as Go's net package would resolve it (IPv4 first, an empty
    host: every address)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise BAD_BODY.joined(f"{what}: expected host:port, got {address!r}")
    host = host.strip("[]")
    if not host:
        return "::", int(port)
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BAD_BODY.joined(f"{what}: cannot resolve {host!r}: {exc.strerror}") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    return str(infos[0][4][0]), int(port)


@dataclass
class Toxic:
    name: str
    type: str
    stream: str
    toxicity: float
    attributes: dict[str, int]
    rule_id: str
    injector: TcpToxic | None = None

    def json(self) -> dict:
        # Go writes a float32 1 as 1, not 1.0
        toxicity = int(self.toxicity) if self.toxicity.is_integer() else self.toxicity
        return {"attributes": self.attributes, "name": self.name, "type": self.type,
                "stream": self.stream, "toxicity": toxicity}


@dataclass
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    key: str  # the TCP proxy's listener name (Toxiproxy's names may hold any character)
    toxics: dict[str, Toxic] = field(default_factory=dict)
    listener: TcpListener | None = None

    def toxic_list(self) -> list[Toxic]:
        return [t for stream in STREAMS for t in self.toxics.values() if t.stream == stream]

    def json(self) -> dict:
        return {"name": self.name, "listen": self.listen, "upstream": self.upstream,
                "enabled": self.enabled, "toxics": [t.json() for t in self.toxic_list()]}


class Proxies:
    """Every proxy of the server; one lock, as Toxiproxy's collections have."""

    def __init__(self, tcp: TcpProxy, journal: Journal) -> None:
        self.tcp, self.journal = tcp, journal
        self.proxies: dict[str, Proxy] = {}
        self.lock = threading.RLock()
        self._numbers = itertools.count(1)

    # -- proxies ---------------------------------------------------------------------------
    def get(self, name: str) -> Proxy:
        try:
            return self.proxies[name]
        except KeyError:
            raise PROXY_NOT_FOUND from None

    def create(self, body: Any) -> Proxy:
        name, listen, upstream, enabled = self._proxy_fields(body, "")
        with self.lock:
            if name in self.proxies:
                raise PROXY_EXISTS
            proxy = self._new(name, listen, upstream)
            if enabled:
                self.start(proxy)
            self.proxies[name] = proxy
            return proxy

    def _proxy_fields(self, body: Any, where: str) -> tuple[str, str, str, bool]:
        if not isinstance(body, dict):
            raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(body)} into a proxy")
        name = field_of(body, "name", str, "")
        listen = field_of(body, "listen", str, "")
        upstream = field_of(body, "upstream", str, "")
        enabled = field_of(body, "enabled", bool, True)
        if not name:
            raise MISSING_FIELD.joined(f"name{where}")
        if not upstream:
            raise MISSING_FIELD.joined(f"upstream{where}")
        return name, listen or "127.0.0.1:0", upstream, enabled

    def _new(self, name: str, listen: str, upstream: str) -> Proxy:
        resolve(upstream, "upstream")  # refused now, not at each connection
        resolve(listen, "listen")
        return Proxy(name, listen, upstream, False, f"p{next(self._numbers)}")

    def start(self, proxy: Proxy) -> None:
        """Listen (Toxiproxy's ``start``): its address is then the bound one, kept for a
        later re-enable."""
        if proxy.enabled:
            return
        listen = format_addr(resolve(proxy.listen, "listen"))
        upstream = format_addr(resolve(proxy.upstream, "upstream"))
        listener = TcpListener(self.tcp, proxy.key, listen, upstream)
        try:
            listener.apply(self.journal)
        except ListenError as exc:
            raise ApiError(f"listen tcp {listen}: {exc}", 500) from None
        assert listener.address is not None  # set by apply
        proxy.listener, proxy.listen, proxy.enabled = listener, listener.address, True

    def stop(self, proxy: Proxy) -> None:
        """Stop listening and close every connection the proxy holds."""
        if proxy.listener is not None:
            self._revert(proxy.listener)
            proxy.listener = None
        proxy.enabled = False

    def update(self, name: str, body: Any) -> Proxy:
        with self.lock:
            proxy = self.get(name)
            if not isinstance(body, dict):
                raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(body)} into a proxy")
            listen = field_of(body, "listen", str, proxy.listen)
            upstream = field_of(body, "upstream", str, proxy.upstream)
            enabled = field_of(body, "enabled", bool, proxy.enabled)
            if self._differs(proxy, listen, upstream):
                self.stop(proxy)
                resolve(upstream, "upstream")
                proxy.listen, proxy.upstream = listen, upstream
            if enabled != proxy.enabled:
                self.start(proxy) if enabled else self.stop(proxy)
            return proxy

    def _differs(self, proxy: Proxy, listen: str, upstream: str) -> bool:
        return format_addr(resolve(listen, "listen")) != proxy.listen or upstream != proxy.upstream

    def delete(self, name: str) -> None:
        with self.lock:
            proxy = self.get(name)
            self._drop(proxy)
            del self.proxies[name]

    def _drop(self, proxy: Proxy) -> None:
        self.stop(proxy)
        for toxic in list(proxy.toxics.values()):
            self._switch_off(toxic)
        proxy.toxics.clear()

    def populate(self, body: Any) -> tuple[list[Proxy], ApiError | None]:
        """Create or replace each proxy of the list (an unchanged one stays as it is); the
        ones done, and the error that stopped the rest."""
        if not isinstance(body, list):
            raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(body)} into a list of proxies")
        wanted = [self._proxy_fields(item, f" at proxy {i}") for i, item in enumerate(body, 1)]
        done: list[Proxy] = []
        with self.lock:
            for name, listen, upstream, enabled in wanted:
                try:
                    existing = self.proxies.get(name)
                    if existing is not None and not self._differs(existing, listen, upstream):
                        done.append(existing)
                        continue
                    proxy = self._new(name, listen, upstream)
                    if existing is not None:
                        self._drop(existing)
                        del self.proxies[name]
                    if enabled:
                        self.start(proxy)
                    self.proxies[name] = proxy
                    done.append(proxy)
                except ApiError as exc:
                    return done, exc
        return done, None

    def reset(self) -> None:
        """Every proxy enabled again, every toxic removed."""
        with self.lock:
            for proxy in self.proxies.values():
                self.start(proxy)
                for toxic in list(proxy.toxics.values()):
                    self._switch_off(toxic)
                proxy.toxics.clear()

    # -- toxics ----------------------------------------------------------------------------
    def add_toxic(self, proxy_name: str, body: Any) -> Toxic:
        with self.lock:
            proxy = self.get(proxy_name)
            if not isinstance(body, dict):
                raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(body)} into a toxic")
            toxic_type = field_of(body, "type", str, "")
            stream = field_of(body, "stream", str, "downstream")
            toxicity = float(field_of(body, "toxicity", (int, float), 1.0))
            name = field_of(body, "name", str, "")
            if stream.lower() not in STREAMS:
                raise INVALID_STREAM
            stream = stream.lower()
            name = name or f"{toxic_type}_{stream}"
            if toxic_type not in TOXICS:
                raise INVALID_TOXIC_TYPE
            if name in proxy.toxics:
                raise TOXIC_EXISTS
            attributes = self._attributes(TOXICS[toxic_type].attributes, body)
            toxic = Toxic(name, toxic_type, stream, toxicity, attributes,
                          f"{proxy.key}-t{next(self._numbers)}")
            self._switch_on(proxy, toxic)
            proxy.toxics[name] = toxic
            return toxic

    def update_toxic(self, proxy_name: str, toxic_name: str, body: Any) -> Toxic:
        with self.lock:
            proxy = self.get(proxy_name)
            toxic = proxy.toxics.get(toxic_name)
            if toxic is None:
                raise TOXIC_NOT_FOUND
            if not isinstance(body, dict):
                raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(body)} into a toxic")
            attributes = self._attributes(toxic.attributes, body)
            toxicity = float(field_of(body, "toxicity", (int, float), toxic.toxicity))
            new = Toxic(toxic.name, toxic.type, toxic.stream, toxicity, attributes, toxic.rule_id)
            self._switch_on(proxy, new, replaces=toxic)
            proxy.toxics[toxic_name] = new
            return new

    def remove_toxic(self, proxy_name: str, toxic_name: str) -> None:
        with self.lock:
            proxy = self.get(proxy_name)
            toxic = proxy.toxics.pop(toxic_name, None)
            if toxic is None:
                raise TOXIC_NOT_FOUND
            self._switch_off(toxic)

    @staticmethod
    def _attributes(current: dict[str, int], body: dict) -> dict[str, int]:
        given = field_of(body, "attributes", dict, {})
        attributes = dict(current)
        for key in attributes:  # Go's decoder ignores keys the toxic does not have
            value = given.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise BAD_BODY.joined(f"json: cannot unmarshal {_json_kind(value)} {value!r}"
                                      f" into field attributes.{key} of type int64")
            attributes[key] = int(value)
        return attributes

    def _switch_on(self, proxy: Proxy, toxic: Toxic, replaces: Toxic | None = None) -> None:
        """Write the toxic's rule (a new version replaces the old one in place: the proxy
        revokes the old rule and loads the new one in one reload)."""
        spec = rule(toxic.type, toxic.attributes, toxic.stream, toxic.toxicity, toxic.rule_id, proxy.key)
        if spec is None:  # toxicity 0: it never acts
            if replaces is not None:
                self._switch_off(replaces)
            return
        try:
            injector = TcpToxic(self.tcp, spec)
        except RuleError as exc:
            raise BAD_BODY.joined(f"attributes: {exc}") from None
        injector.apply(self.journal)
        toxic.injector = injector
        if replaces is not None and replaces.injector is not None:
            for entry in replaces.injector.entries:
                self.journal.forget(entry)  # same rule file: the new record undoes it

    def _switch_off(self, toxic: Toxic) -> None:
        if toxic.injector is not None:
            self._revert(toxic.injector)
            toxic.injector = None

    def _revert(self, injector: TcpListener | TcpToxic) -> None:
        failures = injector.revert(self.journal)
        if failures:
            raise ApiError("; ".join(map(str, failures)), 500)

    def close(self) -> None:
        """Everything off (shutdown): the journal's rollback does the rest."""
        with self.lock:
            for proxy in self.proxies.values():
                self._drop(proxy)
            self.proxies.clear()
