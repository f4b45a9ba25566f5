"""TCP fault proxy: start it, switch toxics on and off, send a namespace's traffic through it.

- ``start_tcp_proxy(journal, netns=..., config=..., run_dir=...)`` starts the proxy process
  (journaled like every process a run starts) and waits for it to say ``ready``.
- ``TcpToxic(proxy, rule)`` writes one rule file and has the proxy reload (SIGHUP); its undo
  removes the file and reloads again. A toxic switched on applies to new connections; one
  switched off also lets go of the open connections it acts on (held ones resume, slowed
  ones run at full speed); reset/close/garbage already done stay done.
- ``NatRedirect(netns, destinations, proxy_port)`` makes a namespace's own connections to
  ``addr:port`` land on a proxy in that namespace without client settings (iptables nat
  OUTPUT REDIRECT in its own chain): for wiring a proxy by hand. Scenario runs do not use
  it: the runner's TCP faults redirect at the world's edge with
  ``chaos.injectors.redirect.EdgeRedirect`` (nat PREROUTING in the world namespace).

The process itself is ``chaos.injectors.tcp_server``; ``python -m chaos.injectors.tcp_proxy``
runs it. Rule format: ``chaos.injectors.tcp_toxics``.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chaos.injectors import iptables, rule_service
from chaos.injectors.base import Injector
from chaos.injectors.redirect import Redirect
from chaos.injectors.tcp_server import PROXY_MARK
from chaos.injectors.tcp_toxics import parse_rule
from chaos.journal import Entry, Journal
from chaos.processes import spawn, stdout_of

RELOAD_TIMEOUT = 3.0


@dataclass
class TcpProxy:
    """A running proxy process. ``listeners`` maps listener name -> bound (host, port)."""

    proc: subprocess.Popen
    entry: Entry
    netns: str | None
    dir: Path
    listeners: dict[str, tuple[str, int]]

    @property
    def pid(self) -> int:
        return self.entry.undo["pid"]

    @property
    def start(self) -> int | None:
        return self.entry.undo["start"]

    @property
    def rules_dir(self) -> Path:
        return self.dir / "rules"

    @property
    def listeners_dir(self) -> Path:
        return self.dir / "listeners"

    @property
    def log_path(self) -> Path:
        return self.dir / "connections.jsonl"

    def address(self, listener: str) -> tuple[str, int]:
        return self.listeners[listener]

    def connections(self) -> list[dict]:
        """The connection log so far: one dict per ended connection."""
        from chaos import jsonl

        return jsonl.read(self.log_path)

    def stop(self, journal: Journal) -> None:
        """Stop the process (the journal's undo for it: SIGTERM to its group, then SIGKILL)."""
        journal.undo(self.entry)
        self.proc.wait()


def start_tcp_proxy(journal: Journal, *, netns: str | None, config: dict | str | os.PathLike,
                    run_dir: str | os.PathLike, timeout: float = 5.0) -> TcpProxy:
    """Start the proxy (inside netns) with its files in a new directory under run_dir."""
    if not isinstance(config, dict):
        config = dict(json.loads(Path(config).read_text(encoding="utf-8")))
    home = Path(tempfile.mkdtemp(prefix="tcp-proxy-", dir=run_dir))
    (home / "rules").mkdir()
    (home / "listeners").mkdir()
    config = {"listeners_dir": str(home / "listeners"), **config}
    (home / "config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    argv = [sys.executable, "-m", "chaos.injectors.tcp_proxy", "--config", str(home / "config.json"),
            "--rules-dir", str(home / "rules"), "--log", str(home / "connections.jsonl")]
    names = ",".join(spec["name"] for spec in config["listeners"])
    with open(home / "stderr.log", "wb") as stderr:
        proc, entry = spawn(journal, argv, netns=netns, what=f"tcp proxy ({names})",
                            stdout=subprocess.PIPE, stderr=stderr)
    try:
        line = _read_line(proc, timeout)
        if not line.startswith("ready "):
            raise RuntimeError(f"tcp proxy did not start within {timeout}s: "
                               f"{(home / 'stderr.log').read_text(errors='replace')[-2000:]}")
    except BaseException:
        journal.undo(entry)
        proc.wait()
        raise
    finally:
        stdout_of(proc).close()  # the proxy writes nothing after 'ready'
    bound = {name: _split_addr(addr) for name, addr in json.loads(line[6:]).items()}
    return TcpProxy(proc, entry, netns, home, bound)


def _read_line(proc: subprocess.Popen, timeout: float) -> str:
    """One stdout line, or what there is when the process exits or the time is up."""
    deadline = time.monotonic() + timeout
    data = b""
    out = stdout_of(proc)
    with selectors.DefaultSelector() as sel:
        sel.register(out, selectors.EVENT_READ)
        while b"\n" not in data and (left := deadline - time.monotonic()) > 0:
            if sel.select(left):
                chunk = os.read(out.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
    return data.decode(errors="replace").strip()


def _split_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


# -- toxics --------------------------------------------------------------------------------------
class TcpToxic(Injector):
    """One toxic rule in a running proxy: a rule file plus SIGHUP, confirmed by the proxy."""

    kind = "tcp-toxic"

    def __init__(self, proxy: TcpProxy, rule: dict) -> None:
        super().__init__()
        rule = {k: v for k, v in dict(rule).items() if v is not None}
        parse_rule(rule)  # a bad rule fails here, before anything is touched
        self.proxy, self.rule = proxy, rule

    def describe(self) -> str:
        r = self.rule
        extra = {k: v for k, v in r.items() if k not in ("id", "toxic", "direction", "probability")}
        return (f"tcp toxic {r['id']}: {r['toxic']} {r.get('direction', 'downstream')}"
                f" p={r.get('probability', 1)} {json.dumps(extra, sort_keys=True)}")

    def apply(self, journal: Journal) -> None:
        path = self.proxy.rules_dir / f"{self.rule['id']}.json"
        self.record(journal, {"path": str(path), "id": self.rule["id"], "pid": self.proxy.pid,
                              "start": self.proxy.start, "timeout": RELOAD_TIMEOUT})
        rule_service.put_rule(self.proxy.rules_dir, self.rule, pid=self.proxy.pid,
                              start=self.proxy.start, timeout=RELOAD_TIMEOUT, what="tcp proxy")


def undo_toxic(record: dict) -> None:
    """Remove the rule file and have the proxy drop the rule (nothing to do if it is gone)."""
    if "file" in record:  # a journal written before the rule service named it "path"
        record = {**record, "path": record["file"]}
    rule_service.drop_rule(record, "tcp proxy")


# -- listeners added while the proxy runs ---------------------------------------------------------
class ListenError(RuntimeError):
    """The proxy could not open a listener (address in use, bad address): its words."""


class TcpListener(Injector):
    """One plain listener (``listen`` -> ``upstream``) opened in a running proxy: a spec file
    in its listeners directory plus SIGHUP, confirmed by the proxy's ``.status``. Its undo
    removes the file: the proxy closes the listener and ends the connections it accepted."""

    kind = "tcp-listener"

    def __init__(self, proxy: TcpProxy, name: str, listen: str, upstream: str) -> None:
        super().__init__()
        rule_service.check_id(name)
        self.proxy, self.spec = proxy, {"name": name, "listen": listen, "upstream": upstream}
        self.address: str | None = None

    def describe(self) -> str:
        return f"tcp proxy listener {self.spec['name']}: {self.spec['listen']} -> {self.spec['upstream']}"

    def apply(self, journal: Journal) -> None:
        """Open it; ``address`` is then where it listens. ListenError if the proxy refused."""
        name = self.spec["name"]
        path = self.proxy.listeners_dir / f"{name}.json"
        self.record(journal, {"path": str(path), "name": name, "rules_dir": str(self.proxy.rules_dir),
                              "pid": self.proxy.pid, "start": self.proxy.start})
        rule_service.write_atomic(path, json.dumps(self.spec))
        status = rule_service.reload(
            self.proxy.pid, self.proxy.start, self.proxy.rules_dir,
            lambda s: name in s.get("listener_errors", {}) or name in s.get("listeners", {}),
            RELOAD_TIMEOUT, "tcp proxy")
        if status is None:
            raise RuntimeError(f"tcp proxy {self.proxy.pid} is not running")
        if name in status.get("listener_errors", {}):
            journal.undo(self.entries.pop())
            raise ListenError(status["listener_errors"][name])
        self.address = status["listeners"][name]


def undo_listener(record: dict) -> None:
    """Remove the listener's file; wait until the proxy has closed it (nothing to wait for
    if the proxy is gone)."""
    Path(record["path"]).unlink(missing_ok=True)
    rule_service.reload(record["pid"], record.get("start"), Path(record["rules_dir"]),
                        lambda s: record["name"] not in s.get("listeners", {}), RELOAD_TIMEOUT,
                        "tcp proxy")


# -- transparent redirect ------------------------------------------------------------------------
class NatRedirect(Redirect):
    """iptables nat OUTPUT REDIRECT of ``addr[:port]`` destinations to the proxy port, inside netns.

    Own chain ``chaos-tcp-<tag>``, jumped to from the top of nat OUTPUT (comment: the chain's
    name); the proxy's own upstream connections carry ``mark`` and are not redirected. The
    proxy must listen on 127.0.0.1 (REDIRECT sends locally made connections there) in the
    same namespace. Journal kind ``iptables`` (see ``chaos.injectors.redirect``).
    """

    hook = "OUTPUT"

    def __init__(self, netns: str, destinations: list[tuple[str, int]], proxy_port: int, *,
                 mark: int = PROXY_MARK, tag: str | None = None) -> None:
        chain = f"chaos-tcp-{tag or secrets.token_hex(4)}"
        if len(chain) > iptables.MAX_CHAIN:
            raise ValueError(f"chain name {chain!r} is longer than iptables allows (28)")
        super().__init__(netns, proxy_port, chain=chain, tag=chain)
        self.mark = mark
        self.destinations = [(str(addr), int(port)) for addr, port in destinations]

    def describe(self) -> str:
        dests = ", ".join(f"{a}:{p}" for a, p in self.destinations)
        return f"redirect {dests} to tcp proxy :{self.to_port} in {self.netns} ({self.chain})"

    def lines(self, family: str = "ipv4") -> list[str]:
        return [f"-A {self.chain} -p tcp -d {addr} --dport {port} -m mark ! --mark {self.mark}"
                f" -m comment --comment {self.chain} -j REDIRECT --to-ports {self.to_port}"
                for addr, port in self.destinations]


if __name__ == "__main__":
    from chaos.injectors.tcp_server import main

    main()
