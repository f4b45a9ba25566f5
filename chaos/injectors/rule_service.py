"""The rule service the DNS, TCP and HTTP fault servers share.

A server reads its rules from a directory, one JSON object per ``<id>.json``. The run's side
writes a file aside and renames it in (a server never reads half a file), then has the
server reload (SIGHUP) and waits for the server's ``.status`` to show the rule's digest: the
fault is live from then on. Removing a rule is the reverse. The server side loads every file
with the fault type's own model (``fault_params``: the only check of a fault's parameters)
and writes ``.status`` after each reload::

    {"generation": 3, "pid": 812, "rules": {"fault-0": "<digest>"}, "errors": {"x.json": "..."}}

Nothing here imports pydantic or the fault modules at import time: servers pay for a fault
type's model only when a rule names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from chaos.injectors.base import Injector
from chaos.injectors.dir_watch import DirWatch
from chaos.journal import Journal, is_alive

STATUS_FILE = ".status"
RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
R = TypeVar("R")
ALIVE_EVERY = 0.05  # seconds: how soon a wait notices that its server died without answering


class RuleError(ValueError):
    """A rule that cannot be used; the message names the key and says why."""


def check_id(value: Any) -> str:
    """A rule id: it names the rule file, so letters, digits, '_', '.', '-' (at most 100)."""
    if not isinstance(value, str) or not RULE_ID.match(value):
        raise RuleError(f"id: required, letters, digits, '_', '.', '-' (it names the rule file),"
                        f" got {value!r}")
    return value


def digest(rule: dict) -> str:
    """What a server reports per loaded rule in .status: the writer waits to see its version."""
    return hashlib.sha1(json.dumps(rule, sort_keys=True).encode()).hexdigest()[:16]


def roll(probability: float | None, rng: random.Random | None = None) -> bool:
    """Whether a rule with this probability acts this time (None or >= 1: always)."""
    if probability is None or probability >= 1:
        return True
    return (rng or random).random() < probability


def fault_params(fault_type: Any, params: dict, *, base: type | None = None) -> Any:
    """The validated model of fault type ``fault_type`` from a rule's parameters.

    ``base``: the model class the type must derive from (the engine's kind of fault).
    Validation is the model's own; its errors become one RuleError naming the keys.
    """
    from pydantic import ValidationError

    from chaos.faults import fault_class, known_type

    if not isinstance(fault_type, str) or not known_type(fault_type):  # plugins' types too
        raise RuleError(f"unknown fault type {fault_type!r}")
    cls = fault_class(fault_type)
    if base is not None and not issubclass(cls, base):
        raise RuleError(f"fault type {fault_type!r} is not applied by this server")
    try:
        return cls.model_validate(params)
    except ValidationError as exc:
        raise RuleError("; ".join(_message(err) for err in exc.errors(include_url=False))) from None


def _message(err: Mapping[str, Any]) -> str:
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "missing":
        return f"{where}: missing required key"
    return f"{where}: {msg} (got {err['input']!r:.60})" if where else msg


# -- the writer's side ------------------------------------------------------------------------
def write_atomic(path: Path, text: str) -> None:
    """Write aside (a name no reader loads), then rename: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_status(rules_dir: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(rules_dir) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def reload(pid: int, start: int | None, rules_dir: Path, done: Callable[[dict], bool],
           timeout: float, what: str) -> dict | None:
    """SIGHUP the server (if it is still that process) and wait until ``done(status)``.

    Returns the status, or None when the server is gone (nothing to wait for).
    """
    if not is_alive(pid, start):
        return None
    watch = DirWatch(rules_dir)  # before the signal: its answer cannot slip past
    before = read_status(rules_dir).get("generation", 0)
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    return wait_status(watch, rules_dir, lambda s: s.get("generation", 0) > before and done(s),
                       pid, start, timeout, f"{what} {pid} did not reload its rules")


def wait_status(watch: DirWatch, rules_dir: Path, done: Callable[[dict], bool], pid: int,
                start: int | None, timeout: float, late: str) -> dict | None:
    """Re-read .status each time the folder changes until ``done(status)``; None when the
    server is gone, TimeoutError (``late``) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        status = read_status(rules_dir)
        if done(status):
            return status
        if not is_alive(pid, start):
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{late} within {timeout}s")
        watch.wait(min(left, ALIVE_EVERY))


def put_rule(rules_dir: Path, rule: dict, *, pid: int, start: int | None, timeout: float,
             what: str) -> None:
    """Write ``<id>.json`` and wait until the server has loaded this version of it."""
    path = rules_dir / f"{rule['id']}.json"
    text = json.dumps(rule, indent=1)
    write_atomic(path, text)
    want = digest(json.loads(text))  # what the server reads (tuples become lists)
    status = reload(pid, start, rules_dir,
                    lambda s: s.get("rules", {}).get(rule["id"]) == want
                    or path.name in s.get("errors", {}), timeout, what)
    if status is None:
        raise RuntimeError(f"{what} {pid} is not running: cannot add rule {rule['id']!r}")
    if path.name in status.get("errors", {}):
        raise RuleError(f"{what} rejected rule {rule['id']!r}: {status['errors'][path.name]}")


def drop_rule(record: dict, what: str) -> None:
    """Undo of ``put_rule`` (from a journal record: path, id, pid, start): remove the file and
    wait until the server no longer has the rule; nothing to wait for if it is gone."""
    path = Path(record["path"])
    path.unlink(missing_ok=True)
    reload(record["pid"], record.get("start"), path.parent,
           lambda s: record["id"] not in s.get("rules", {}), record.get("timeout", 3.0), what)


# -- the server's side ------------------------------------------------------------------------
def load_rules(rules_dir: Path, parse: Callable[[dict], R],
               key: Callable[[R], str]) -> tuple[list[R], dict[str, str]]:
    """Every ``*.json`` in rules_dir by file name, parsed; errors by file name (skipped).
    ``key`` gives a parsed rule's id (an id two files use: the second is an error)."""
    rules, errors, ids = [], {}, set()
    for path in sorted(rules_dir.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise RuleError("a rule is a JSON object")
            rule = parse(data)
            if key(rule) in ids:
                raise RuleError(f"id {key(rule)!r} is already used by another file")
        except (OSError, ValueError, TypeError) as exc:  # JSONDecodeError, RuleError
            errors[path.name] = str(exc)
            continue
        ids.add(key(rule))
        rules.append(rule)
    return rules, errors


def write_status(rules_dir: Path, generation: int, rules: dict[str, str],
                 errors: dict[str, str], **extra: Any) -> None:
    """``rules``: id -> digest (of the rule as read) of every loaded rule."""
    status = {"generation": generation, "pid": os.getpid(), "rules": rules, "errors": errors,
              **extra}
    write_atomic(rules_dir / STATUS_FILE, json.dumps(status))


# -- a rule for a server the session starts later ---------------------------------------------
class LateRule(Injector):
    """A rule planned before its server runs: ``make(server)`` builds the real injector when
    the session applies it (the server is started by then). One journal kind with it."""

    def __init__(self, kind: str, service: Any, text: str,
                 make: Callable[[Any], Injector]) -> None:
        super().__init__()
        self.kind = kind  # type: ignore[misc]  # the inner's kind: its undo is the one recorded
        self.service, self.text, self.make = service, text, make

    def describe(self) -> str:
        return self.text

    def apply(self, journal: Journal) -> None:
        inner = self.make(self.service)
        inner.entries = self.entries  # one list: revert() undoes what the inner recorded
        inner.apply(journal)
