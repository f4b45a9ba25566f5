"""The HTTP proxy injector: mitmdump with the chaos fault addons, rules switched by files.

    proxy = start_http_proxy(journal, netns="chaos-client-1a2b", listen="127.0.0.1:8080",
                             mode="regular", run_dir=run_dir / "http-proxy", confdir=lab_dir / "mitmproxy")
    rule = HttpRule(proxy.rules_dir, {"id": "hub-503", "fault": "http-error", "status": 503,
                                      "match": {"host": "registry-1.docker.io"}})
    rule.apply(journal)   # the fault is on at the proxy's next request
    rule.revert(journal)  # and off again
    proxy.requests()      # every request seen: time, client, method, path, range, status, bytes

The proxy process is journaled (kind "process", killed by pid + start time); each rule file
(kind "http-rule") and each transparent-mode redirect (kind "iptables") is journaled
before it exists, so ``chaos recover`` removes them after a crash.

Transparent mode: ``HttpRedirect`` adds an iptables nat OUTPUT REDIRECT of the target's ports
to the proxy inside a namespace. The proxy's own upstream connections must escape that
redirect: transparent mitmdump runs with group id ``PROXY_GID`` and the rule skips sockets of
that group (``-m owner ! --gid-owner``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from chaos.injectors.base import Injector
from chaos.injectors.packet_filter import port_chunks
from chaos.injectors.redirect import Redirect, port_texts
from chaos.injectors.rule_service import write_atomic
from chaos.journal import Entry, Journal, is_alive
from chaos.processes import spawn
from chaos.sandbox.enter import in_netns

FAULTS_DIR = Path(__file__).with_name("http_faults")
ALL_ADDONS = "all.py"  # the fault types' addons behind one, then the request log
# Group id of a transparent-mode mitmdump, exempt from the REDIRECT (any unused number works).
PROXY_GID = 47145
STREAM_LARGE_BODIES = "256k"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


# -- running things inside a namespace ---------------------------------------------------

def parse_listen(listen: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(listen, tuple):
        return listen[0], int(listen[1])
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen {listen!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _connectable(host: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)


# -- the proxy process -------------------------------------------------------------------

def mitmdump_executable() -> str:
    beside = Path(sys.executable).with_name("mitmdump")
    return str(beside) if beside.exists() else (shutil.which("mitmdump") or "mitmdump")


def check_mode(mode: str) -> str:
    if mode in ("regular", "transparent") or (mode.startswith("reverse:") and "://" in mode):
        return mode
    raise ValueError(f"mode {mode!r}: expected regular, transparent or reverse:URL")


def mitmdump_argv(*, listen: tuple[str, int], mode: str, confdir: Path,
                  rules_dir: Path | None = None, request_log: Path | None = None,
                  addons: bool = True, upstream_ca: str | os.PathLike | None = None,
                  options: dict[str, Any] | None = None) -> list[str]:
    """The mitmdump command line; ``addons=False`` gives the plain peer a benchmark compares to."""
    host, port = listen
    sets = {
        "confdir": str(confdir),
        # Bodies above this stream through (flat memory); smaller ones are buffered.
        "stream_large_bodies": STREAM_LARGE_BODIES,
        # Do not contact the origin before a request needs it: faults answer for hosts that
        # are down or do not exist, and CONNECT succeeds without the origin.
        "connection_strategy": "lazy",
        "flow_detail": 0,
        "termlog_verbosity": "warn",
    }
    if upstream_ca:
        sets["ssl_verify_upstream_trusted_ca"] = str(upstream_ca)
    argv = [mitmdump_executable(), "--mode", check_mode(mode), "--listen-host", host,
            "--listen-port", str(port)]
    if addons:
        sets["chaos_rules_dir"] = str(rules_dir)
        sets["chaos_request_log"] = str(request_log)
        argv += ["-s", str(FAULTS_DIR / ALL_ADDONS)]
    sets.update(options or {})
    for key, value in sets.items():
        value = str(value).lower() if isinstance(value, bool) else value
        argv += ["--set", f"{key}={value}"]
    return argv


def addon_env() -> dict[str, str]:
    """The environment for mitmdump: the addons import this very chaos package first. Else a
    checkout run next to another installed chaos would load that copy's addons, which may not
    know a rule this code checked and wrote (it would be skipped: a fault that never fires)."""
    root = str(FAULTS_DIR.parents[2])
    rest = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + rest if rest else "")}


def write_ca_bundle(ca_cert: Path, bundle: Path) -> Path:
    """``ca_cert`` plus the system's CAs in one file (clients that take one CA file then
    trust both the proxy and the real world); returns ``bundle``."""
    parts = [ca_cert.read_text()]
    if SYSTEM_CA_BUNDLE.exists():
        parts.append(SYSTEM_CA_BUNDLE.read_text())
    bundle.write_text("\n".join(parts))
    return bundle


def trust_env(bundle: Path) -> dict[str, str]:
    """The variables that make OpenSSL, curl and Python requests trust ``bundle``."""
    return {name: str(bundle) for name in ("SSL_CERT_FILE", "CURL_CA_BUNDLE", "REQUESTS_CA_BUNDLE")}


class HttpProxy:
    """A running mitmdump with the fault addons, journaled as a process of the run.

    Files in ``run_dir``: ``rules/`` (one JSON file per active rule), ``requests.jsonl``
    (the request log), ``mitmdump.log``, ``ca-bundle.pem`` (proxy CA + system CAs).
    """

    def __init__(self, journal: Journal, proc: subprocess.Popen, entry: Entry, *,
                 netns: str | None, host: str, port: int, mode: str, run_dir: Path,
                 confdir: Path) -> None:
        self.journal, self.proc, self.entry = journal, proc, entry
        self.netns, self.host, self.port, self.mode = netns, host, port, mode
        self.run_dir, self.confdir = run_dir, confdir
        self.rules_dir = run_dir / "rules"
        self.request_log = run_dir / "requests.jsonl"
        self.log_path = run_dir / "mitmdump.log"

    def __repr__(self) -> str:
        return f"HttpProxy({self.mode} {self.url} netns={self.netns} pid={self.pid})"

    @property
    def pid(self) -> int:
        return self.entry.undo["pid"]

    @property
    def url(self) -> str:
        host = _connectable(self.host)
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def ca_cert(self) -> Path:
        """The proxy's CA certificate (PEM): what a client must trust for HTTPS."""
        return self.confdir / "mitmproxy-ca-cert.pem"

    def ca_bundle(self) -> Path:
        """The proxy CA plus the system's CAs in one file, for SSL_CERT_FILE and friends."""
        return write_ca_bundle(self.ca_cert, self.run_dir / "ca-bundle.pem")

    def client_env(self) -> dict[str, str]:
        """Environment for a probe: trust the proxy's CA; in regular mode, use the proxy."""
        env = trust_env(self.ca_bundle())
        if self.mode == "regular":
            for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
                env[name] = self.url
        return env

    def alive(self) -> bool:
        return is_alive(self.pid, self.entry.undo.get("start"))

    def accepts(self) -> bool:
        def probe() -> bool:
            try:
                socket.create_connection((_connectable(self.host), self.port), timeout=0.5).close()
                return True
            except OSError:
                return False

        return in_netns(self.netns, probe)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.proc.returncode}: {self.log_tail()}")
            if self.accepts() and self.ca_cert.exists():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"mitmdump not accepting on {self.url} after {timeout}s: "
                                   f"{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def requests(self) -> list[dict]:
        """Every request the proxy got, in the order they began, those still in flight
        marked so (see request_log.py for the fields)."""
        from chaos import jsonl

        return jsonl.requests(jsonl.read(self.request_log))

    def rule(self, rule: dict) -> HttpRule:
        return HttpRule(self.rules_dir, rule)

    def reload(self) -> None:
        """Rescan the rules now (SIGHUP); only needed after editing a rule file in place."""
        if self.alive():
            os.kill(self.pid, signal.SIGHUP)

    def stop(self) -> None:
        self.journal.undo(self.entry)


def start_http_proxy(journal: Journal, *, netns: str | None, listen: str | tuple[str, int],
                     mode: str = "regular", run_dir: str | os.PathLike,
                     confdir: str | os.PathLike, timeout: float = 10.0,
                     upstream_ca: str | os.PathLike | None = None,
                     options: dict[str, Any] | None = None) -> HttpProxy:
    """Start mitmdump with every fault addon and wait until it accepts connections.

    ``mode``: "regular" (clients configured to use the proxy), "transparent" (pair it with
    ``HttpRedirect`` in the same namespace) or "reverse:URL" (the proxy stands in for URL).
    ``confdir`` holds the CA (created there on first start, reused after): one per lab or
    run. ``upstream_ca``: a CA file the proxy trusts for HTTPS origins (a lab's registry).
    ``options``: more ``--set`` options for mitmdump.
    """
    host, port = parse_listen(listen)
    check_mode(mode)
    run_dir, confdir = Path(run_dir), Path(confdir)
    (run_dir / "rules").mkdir(parents=True, exist_ok=True)
    confdir.mkdir(parents=True, exist_ok=True)
    argv = mitmdump_argv(listen=(host, port), mode=mode, confdir=confdir,
                         rules_dir=run_dir / "rules", request_log=run_dir / "requests.jsonl",
                         upstream_ca=upstream_ca, options=options)
    if mode == "transparent":
        # Still root, but in its own group: HttpRedirect lets this group's sockets through.
        argv = ["setpriv", f"--regid={PROXY_GID}", "--clear-groups", *argv]
    where = f" in {netns}" if netns else ""
    with open(run_dir / "mitmdump.log", "ab") as log:
        proc, entry = spawn(journal, argv, netns=netns, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, env=addon_env(),
                            what=f"mitmdump {mode} on {host}:{port}{where}")
    proxy = HttpProxy(journal, proc, entry, netns=netns, host=host, port=port, mode=mode,
                      run_dir=run_dir, confdir=confdir)
    try:
        proxy.wait_ready(timeout)
    except BaseException:
        proxy.stop()
        raise
    return proxy


# -- rules -------------------------------------------------------------------------------

def check_rule(rule: dict) -> None:
    """Validate a rule as the proxy will (the fault type's model); raises ValueError."""
    from chaos.injectors.http_faults import rules

    rules.parse_rule(rule)


class HttpRule(Injector):
    """One fault rule file in a proxy's rules directory: on while the file exists."""

    kind = "http-rule"

    def __init__(self, rules_dir: str | os.PathLike, rule: dict) -> None:
        super().__init__()
        check_rule(rule)
        self.rules_dir = Path(rules_dir)
        self.rule = dict(rule)
        self.path = self.rules_dir / f"{rule['id']}.json"

    def describe(self) -> str:
        return f"http {self.rule['fault']} rule {self.rule['id']} ({self.rules_dir})"

    def apply(self, journal: Journal) -> None:
        self.record(journal, {"path": str(self.path)})
        # Written aside, then renamed in: the addons never read half a file, and the rename
        # changes the directory's mtime, which they stat on every request.
        write_atomic(self.path, json.dumps(self.rule, indent=1))


def undo_rule(record: dict) -> None:
    try:
        os.unlink(record["path"])
    except FileNotFoundError:
        pass


# -- transparent mode --------------------------------------------------------------------

class HttpRedirect(Redirect):
    """Inside a namespace, send TCP connections to ``ports`` (optionally only towards
    ``destinations``) to the local transparent proxy on ``to_port``.

    nat OUTPUT jumps to an own chain ``CHAOS-HTTP-<tag>``; the jump and every rule carry the
    comment ``chaos-http-redirect-<tag>``; sockets of group ``exempt_gid`` (the proxy) are
    skipped. Installed and removed through ``chaos.injectors.iptables`` (journal kind
    ``iptables``). Never in the host's namespace.
    """

    hook = "OUTPUT"

    def __init__(self, netns: str, ports: Iterable[int], to_port: int, *,
                 destinations: Iterable[str] = (), exempt_gid: int = PROXY_GID,
                 tag: str | None = None) -> None:
        tag = tag or secrets.token_hex(4)
        super().__init__(netns, to_port, chain=f"CHAOS-HTTP-{tag}", tag=f"chaos-http-redirect-{tag}")
        self.ports = port_texts(ports, self.to_port)
        if not self.ports:
            raise ValueError("HttpRedirect needs at least one port")
        self.destinations = list(destinations)
        self.exempt_gid = exempt_gid

    def describe(self) -> str:
        to = f" to {','.join(self.destinations)}" if self.destinations else ""
        return (f"redirect tcp ports {','.join(self.ports)}{to} -> "
                f"127.0.0.1:{self.to_port} in {self.netns}")

    def lines(self, family: str = "ipv4") -> list[str]:
        tail = (f"-m owner ! --gid-owner {self.exempt_gid} -m comment --comment {self.tag} "
                f"-j REDIRECT --to-ports {self.to_port}")
        dests: list[str | None] = [*self.destinations] or [None]
        return [f"-A {self.chain} -p tcp " + (f"-d {dest} " if dest else "")
                + f"-m multiport --dports {','.join(chunk)} {tail}"
                for chunk in port_chunks(self.ports) for dest in dests]
