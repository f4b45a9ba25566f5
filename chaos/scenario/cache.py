"""The validated-scenario cache: what pydantic made of a scenario file, kept for the next run.

`chaos run` validates each file (chaos/scenario/load.py) and records the result here: the
tree of models (each one's class and field values) and the file's source map. A later
`chaos run` of the same bytes, by the same code, rebuilds the models on the plain base
(chaos/scenario/light.py) without importing PyYAML or pydantic (chaos/fastrun.py).

An entry lives at ``<state dir>/scenario-cache/<key>.json``, mode 0600. The key hashes the
file's bytes, the chaos version and a fingerprint of chaos's code (the models, their
validators and everything they call are in it): a changed file, version or model misses.
An entry is written atomically and read only if it is a regular file of this user that no
one else may write; its values are decoded only into the types listed here and classes of
chaos's own modules. Anything else, or any decoding trouble, is a miss: the normal path.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import os
import sys
from pathlib import Path
from typing import Any

import chaos

FORMAT = 1
MAX_BYTES = 1 << 20  # as chaos.scenario.load: a larger file is not a scenario
_IP_TYPES: dict[str, Any] = {cls.__name__: cls for cls in (
    ipaddress.IPv4Address, ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network,
    ipaddress.IPv4Interface, ipaddress.IPv6Interface)}


class Uncacheable(Exception):
    """A value the cache does not record (a plugin's model, an unexpected type)."""


def folder(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / "scenario-cache"


@functools.cache  # once per process: every file of a command is keyed with it
def code_fingerprint() -> str:
    """Every source file of the chaos package, by path, size and modification time."""
    root = os.path.dirname(os.path.abspath(chaos.__file__))
    h = hashlib.sha256()
    stack = [root]
    while stack:
        top = stack.pop()
        with os.scandir(top) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False) and entry.name != "__pycache__":
                    stack.append(entry.path)
                elif entry.name.endswith(".py"):
                    st = entry.stat()
                    h.update(f"{entry.path[len(root):]}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def key(raw: bytes) -> str:
    h = hashlib.sha256(f"chaos scenario cache {FORMAT}\0{chaos.__version__}\0{code_fingerprint()}\0".encode())
    h.update(raw)
    return h.hexdigest()


# -- writing (after pydantic validated) ------------------------------------------------------

def _class_ref(cls: type) -> list:
    """[module, qualname, extra fields]: a class built at run time (`scenario_model`'s
    Scenario and Expect) is named by its nearest importable base and the fields it adds."""
    for base in cls.__mro__:
        module = sys.modules.get(base.__module__)
        if getattr(module, base.__qualname__, None) is base:
            if not base.__module__.startswith("chaos."):
                raise Uncacheable(f"{cls.__module__}.{cls.__qualname__} is not chaos's own")
            extra = [] if base is cls else [n for n in cls.model_fields if n not in base.model_fields]  # type: ignore[attr-defined]
            return [base.__module__, base.__qualname__, extra]
    raise Uncacheable(f"{cls!r} has no importable base")


def encode(value: Any) -> Any:
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        return {"$f": repr(value)}  # inf and nan too
    if kind is list:
        return [encode(v) for v in value]
    if kind is tuple:
        return {"$t": [encode(v) for v in value]}
    if kind is dict:
        return {"$d": [[encode(k), encode(v)] for k, v in value.items()]}
    if kind.__name__ in _IP_TYPES and _IP_TYPES[kind.__name__] is kind:
        return {"$ip": [kind.__name__, str(value)]}
    fields = getattr(kind, "model_fields", None)
    if isinstance(fields, dict) and hasattr(value, "model_fields_set"):
        return {"$m": _class_ref(kind), "v": {n: encode(getattr(value, n)) for n in fields},
                "s": sorted(value.model_fields_set)}
    raise Uncacheable(f"a {kind.__name__} value")


def _encode_source(source: Any) -> dict:
    return {"values": [[list(p), *pos] for p, pos in source.values.items()],
            "keys": [[list(p), *pos] for p, pos in source.keys.items()]}


# Fault kinds whose injectors validate their rule with the fault's model in this process,
# as the fault server will (chaos.injectors.rule_service.fault_params): the light models
# cannot, so a scenario with one of them always takes the normal path.
RULE_BASES = (("chaos.faults.http_rule", "HttpFault"), ("chaos.faults.tcp_rule", "TcpFault"),
              ("chaos.faults.dns", "Dns"))


def _validates_rules(fault: Any) -> bool:
    for module, name in RULE_BASES:  # not imported: no fault of that kind was built
        base = getattr(sys.modules.get(module), name, None)
        if base is not None and isinstance(fault, base):
            return True
    return False


def store(state_dir: str | os.PathLike, raw: bytes, scenario: Any) -> bool:
    """Record a validated scenario; False (and nothing written) when it cannot be."""
    if any(_validates_rules(fault) for fault in getattr(scenario, "faults", [])):
        return False
    try:
        entry = {"format": FORMAT, "key": key(raw), "scenario": encode(scenario),
                 "source": _encode_source(scenario._source)}
        text = json.dumps(entry, separators=(",", ":"))
    except (Uncacheable, AttributeError, TypeError, ValueError):
        return False
    where = folder(state_dir)
    tmp = where / f".{entry['key']}.{os.getpid()}.tmp"
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, where / f"{entry['key']}.json")
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


# -- reading (the light run path) -------------------------------------------------------------

def find(state_dir: str | os.PathLike, path: str | os.PathLike) -> dict | None:
    """The entry for this file's current bytes, None on a miss (or a file not to trust)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return None
        entry_key = key(raw)
        fd = os.open(folder(state_dir) / f"{entry_key}.json", os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not _trusted(st):
                return None
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != entry_key:
        return None
    return entry


def _trusted(st: os.stat_result) -> bool:
    import stat

    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


class _Decoder:
    def __init__(self) -> None:
        from chaos.scenario.modelbase import BaseModel

        self.base = BaseModel
        self.classes: dict[tuple, type] = {}

    def model_class(self, ref: Any) -> Any:
        module, qualname, extra = ref
        if not (isinstance(module, str) and module.startswith("chaos.") and isinstance(qualname, str)
                and isinstance(extra, list) and all(isinstance(n, str) for n in extra)):
            raise ValueError("bad class reference")
        cache_key = (module, qualname, tuple(extra))
        if cache_key not in self.classes:
            from importlib import import_module

            cls: Any = import_module(module)
            for part in qualname.split("."):
                cls = getattr(cls, part)
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise ValueError(f"{module}.{qualname} is not a model")
            if extra:
                from chaos.scenario.modelbase import create_model

                added: Any = {n: (Any, None) for n in extra}
                cls = create_model(qualname, __base__=cls, **added)
            self.classes[cache_key] = cls
        return self.classes[cache_key]

    def decode(self, value: Any) -> Any:
        if value is None or type(value) in (bool, int, str):
            return value
        if type(value) is list:
            return [self.decode(v) for v in value]
        if type(value) is not dict or len(value) not in (1, 3):
            raise ValueError("bad value")
        if "$f" in value:
            return float(value["$f"])
        if "$t" in value:
            return tuple(self.decode(v) for v in value["$t"])
        if "$d" in value:
            return {self.decode(k): self.decode(v) for k, v in value["$d"]}
        if "$ip" in value:
            name, text = value["$ip"]
            return _IP_TYPES[name](text)
        cls = self.model_class(value["$m"])
        values, fields_set = value["v"], value["s"]
        if not (isinstance(values, dict) and set(values) == set(cls.model_fields)
                and isinstance(fields_set, list) and set(fields_set) <= set(values)):
            raise ValueError(f"{cls.__name__}: the fields do not match")
        return cls.model_construct({n: self.decode(v) for n, v in values.items()}, set(fields_set))


def rebuild(entry: dict, name: str) -> Any:
    """The Scenario of an entry, on the light models; ValueError if the entry does not fit."""
    from chaos.scenario.source import SourceMap

    try:
        scenario = _Decoder().decode(entry["scenario"])
        source = SourceMap(name)
        for table, rows in (("values", entry["source"]["values"]), ("keys", entry["source"]["keys"])):
            for path, line, col in rows:
                if not (all(type(p) in (str, int) for p in path) and type(line) is int and type(col) is int):
                    raise ValueError("bad source map")
                getattr(source, table)[tuple(path)] = (line, col)
    except (KeyError, TypeError, AttributeError, ImportError, RecursionError) as exc:
        raise ValueError(f"cache entry does not fit: {exc}") from None
    if not hasattr(scenario, "expect") or not hasattr(scenario, "faults"):
        raise ValueError("cache entry is not a scenario")
    scenario._source = source
    return scenario
