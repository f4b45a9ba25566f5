"""Beyond Toxiproxy: the project's own fault types over the same API, in a sandbox the
server owns (routes under ``/chaos/``, docs/api.md).

A fault is the JSON of a scenario's ``faults:`` item, validated by its type's own model
(``chaos.faults.FAULTS``) and planned and applied by a ``Session`` exactly as a run or the
``chaos_sandbox`` fixture does: DNS faults on the sandbox's fake DNS server, HTTP faults
in its HTTP fault proxy, packet filters, routes and hosts entries in its namespaces. The
session is opened at the first call that needs it (its own journal, so a killed server is
recovered like a run) and closed by shutdown; ``/reset`` reverts its faults.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from chaos.api.proxies import ApiError

FAULT_NOT_FOUND = ApiError("fault not found", 404)


class SandboxFaults:
    def __init__(self, state_dir: str | None) -> None:
        self.state_dir = state_dir
        self.session: Any = None  # chaos.session.Session, once opened
        self.faults: dict[str, tuple[Any, Any]] = {}  # id -> (model, FaultSwitch)
        self.servers: dict[str, str] = {}  # name -> address
        self.lock = threading.RLock()
        self._numbers = itertools.count(1)

    def _opened(self):
        if self.session is None:
            from chaos.session import Session

            session = Session(state_dir=self.state_dir)
            try:
                session.open()
            except BaseException:
                session.close()
                raise
            self.session = session
        return self.session

    # -- the sandbox -------------------------------------------------------------------------
    def describe(self) -> dict:
        """Where clients must run to see these faults, and the names the sandbox knows."""
        with self.lock:
            session = self._opened()
            sandbox = session.sandbox
            return {"run": session.run_id, "world": sandbox.world,
                    "clients": {name: c.netns for name, c in sandbox.clients.items()},
                    "servers": dict(self.servers),
                    "services": {"dns": session.dns.server is not None,
                                 "http": session.http.proxy is not None,
                                 "tcp": session.tcp.proxy is not None}}

    def add_server(self, body: Any) -> dict:
        """A server in the sandbox's world, as a scenario's ``serve:`` item."""
        from pydantic import ValidationError

        from chaos.scenario.model import Serve

        try:
            server = Serve.model_validate(body)
        except ValidationError as exc:
            raise ApiError(_errors(exc), 400) from None
        with self.lock:
            session = self._opened()
            if server.name in self.servers:
                raise ApiError("server already exists", 409)
            address = session.add_server(server)
            self.servers[server.name] = address
            return {"name": server.name, "address": address}

    # -- faults ----------------------------------------------------------------------------
    def add(self, body: Any) -> dict:
        """Validate, plan and apply one fault now; 400 with the model's or the plan's words."""
        from chaos.errors import PlanError
        from chaos.injectors.rule_service import RuleError, fault_params

        if not isinstance(body, dict):
            raise ApiError("bad request body: a fault is a JSON object", 400)
        try:
            model = fault_params(body.get("type"), body)
        except RuleError as exc:
            raise ApiError(f"invalid fault: {exc}", 400) from None
        if model.window is not None or model.flap is not None:  # never quietly ignored
            raise ApiError("invalid fault: window and flap are not scheduled here: POST the"
                           " fault when it should start and DELETE it when it should end", 400)
        with self.lock:
            session = self._opened()
            fault_id = f"f{next(self._numbers)}"
            try:
                switch = session.plan(model, ("faults", fault_id))
            except PlanError as exc:
                raise ApiError(f"invalid fault: {exc.message}", 400) from None
            session.ensure_services()
            try:
                switch.apply(session.journal)
            except BaseException:
                switch.revert(session.journal)
                raise
            self.faults[fault_id] = (model, switch)
            return self._json(fault_id)

    def _json(self, fault_id: str) -> dict:
        model, switch = self.faults[fault_id]
        return {"id": fault_id, "fault": model.model_dump(mode="json", by_alias=True, exclude_none=True),
                "applied": [i.describe() for i in switch.injectors]}

    def all(self) -> list[dict]:
        with self.lock:
            return [self._json(i) for i in self.faults]

    def get(self, fault_id: str) -> dict:
        with self.lock:
            if fault_id not in self.faults:
                raise FAULT_NOT_FOUND
            return self._json(fault_id)

    def remove(self, fault_id: str) -> None:
        with self.lock:
            if fault_id not in self.faults:
                raise FAULT_NOT_FOUND
            _, switch = self.faults.pop(fault_id)
            failures = switch.revert(self.session.journal)
            if failures:
                raise ApiError("could not revert: " + "; ".join(map(str, failures)), 500)

    def reset(self) -> None:
        with self.lock:
            for fault_id in reversed(list(self.faults)):
                self.remove(fault_id)

    # -- what the servers saw ------------------------------------------------------------------
    def server_requests(self, name: str) -> list[dict]:
        """Every request a server made through ``/chaos/servers`` received, from its own
        records (whatever the faults did on the way; one still being answered is in flight)."""
        from chaos import jsonl

        with self.lock:
            if name not in self.servers:
                raise ApiError("server not found", 404)
            return jsonl.requests(jsonl.read(self.session.server_events(name)))

    def dns_queries(self) -> list[dict]:
        """Every query the fake DNS server answered; refused while it does not run, since
        then it sees nothing and "0 queries" would be a lie."""
        with self.lock:
            server = self.session.dns.server if self.session is not None else None
            if server is None:
                raise ApiError("the fake DNS server is not running (no dns fault yet): it"
                               " cannot see queries", 409)
            return server.queries()

    def http_requests(self) -> list[dict]:
        """Requests the HTTP fault proxy saw: only those to the ports its faults redirect."""
        with self.lock:
            proxy = self.session.http.proxy if self.session is not None else None
            if proxy is None:
                raise ApiError("the HTTP fault proxy is not running (no HTTP fault yet): it"
                               " cannot see requests", 409)
            return proxy.requests()

    def close(self) -> list:
        with self.lock:
            if self.session is None:
                return []
            self.faults.clear()
            return self.session.close()


def _errors(exc: Any) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                     for e in exc.errors(include_url=False))
