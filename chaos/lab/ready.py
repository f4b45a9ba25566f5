"""Bounded readiness checks: a component that does not come up is reported, never waited on
forever. Each check names the component, the bound, and the last thing it saw."""

from __future__ import annotations

import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from chaos.lab import netns


class NotReady(RuntimeError):
    """A lab component did not become ready within its bound (or its process died)."""

    def __init__(self, what: str, reason: str, log: Path | None = None) -> None:
        self.what, self.reason, self.log = what, reason, log
        tail = _tail(log) if log else ""
        super().__init__(f"{what} not ready: {reason}" + (f"\n--- {log} (tail) ---\n{tail}" if tail else ""))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    # A Go panic's cause is on its first line, above a long stack: show that part instead.
    for i, line in enumerate(text):
        if line.startswith("panic: "):
            return "\n".join(text[max(0, i - 3):i + 3])
    return "\n".join(text[-lines:])


def wait_until(what: str, check: Callable[[], object], timeout: float, *,
               proc: subprocess.Popen | None = None, log: Path | None = None,
               interval: float = 0.05) -> object:
    """Call ``check`` until it returns a true value; raise NotReady after ``timeout`` seconds
    or as soon as ``proc`` exits. Exceptions from ``check`` count as "not yet"."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        if proc is not None and proc.poll() is not None:
            raise NotReady(what, f"process exited with status {proc.returncode}", log)
        try:
            result = check()
            if result:
                return result
            last = f"check returned {result!r}"
        except Exception as exc:  # any failure means "not up yet"
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise NotReady(what, f"not up within {timeout:g}s (last: {last})", log)
        time.sleep(interval)


def https_status(ns: str | None, address: str, port: int, host: str, ca_file: Path,
                 path: str = "/v2/", timeout: float = 2.0) -> int:
    """Status code of ``GET https://host{path}`` sent to address:port from inside ``ns``,
    verifying the server's certificate against the lab CA for ``host``."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    sock = netns.connect(ns, address, port, timeout)
    with ctx.wrap_socket(sock, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                    f"User-Agent: chaos-lab-ready\r\n\r\n".encode())
        status_line = tls.recv(256).split(b"\r\n", 1)[0].decode()
    return int(status_line.split()[1])
