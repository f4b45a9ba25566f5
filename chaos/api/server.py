"""The HTTP side of `chaos serve`: Toxiproxy 2.x's routes, status codes and bodies, and the
server's life: a journal like a run's, the TCP fault proxy it starts, and the revert of
everything at shutdown (SIGTERM, SIGINT) or ``/reset``.

Bodies are as Toxiproxy's Go server writes them: compact JSON, an error as
``{"error": ..., "status": ...}`` plus a newline in a ``text/plain`` response (Go's
``http.Error``), 201 for a new proxy and for ``/populate``, 204 for deletes and ``/reset``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from chaos.api.faults import SandboxFaults
from chaos.api.proxies import BAD_BODY, ApiError, Proxies

VERSION = "2.12.0"  # the Toxiproxy API version spoken (clients may compare it)

Route = tuple[str, re.Pattern, str]
ROUTES: list[Route] = [
    ("POST", re.compile(r"/reset"), "reset"),
    ("GET", re.compile(r"/proxies"), "proxy_index"),
    ("POST", re.compile(r"/proxies"), "proxy_create"),
    ("POST", re.compile(r"/populate"), "populate"),
    ("GET", re.compile(r"/proxies/([^/]+)"), "proxy_show"),
    ("POST PATCH", re.compile(r"/proxies/([^/]+)"), "proxy_update"),
    ("DELETE", re.compile(r"/proxies/([^/]+)"), "proxy_delete"),
    ("GET", re.compile(r"/proxies/([^/]+)/toxics"), "toxic_index"),
    ("POST", re.compile(r"/proxies/([^/]+)/toxics"), "toxic_create"),
    ("GET", re.compile(r"/proxies/([^/]+)/toxics/([^/]+)"), "toxic_show"),
    ("POST PATCH", re.compile(r"/proxies/([^/]+)/toxics/([^/]+)"), "toxic_update"),
    ("DELETE", re.compile(r"/proxies/([^/]+)/toxics/([^/]+)"), "toxic_delete"),
    ("GET", re.compile(r"/version"), "version"),
    # beyond Toxiproxy (chaos/api/faults.py)
    ("GET", re.compile(r"/chaos/sandbox"), "sandbox_show"),
    ("POST", re.compile(r"/chaos/servers"), "server_create"),
    ("GET", re.compile(r"/chaos/servers/([^/]+)/requests"), "server_requests"),
    ("GET", re.compile(r"/chaos/faults"), "fault_index"),
    ("POST", re.compile(r"/chaos/faults"), "fault_create"),
    ("GET", re.compile(r"/chaos/faults/([^/]+)"), "fault_show"),
    ("DELETE", re.compile(r"/chaos/faults/([^/]+)"), "fault_delete"),
    ("GET", re.compile(r"/chaos/dns/queries"), "dns_queries"),
    ("GET", re.compile(r"/chaos/http/requests"), "http_requests"),
    ("GET", re.compile(r"/chaos/proxies/([^/]+)/connections"), "proxy_connections"),
]


class Reply:
    def __init__(self, status: int, body: Any = None, raw: bytes | None = None,
                 content_type: str = "application/json") -> None:
        self.status, self.content_type = status, content_type
        if raw is not None:
            self.body = raw
        elif body is None:
            self.body = b""
        else:
            self.body = json.dumps(body, separators=(",", ":")).encode()


def error_reply(exc: ApiError) -> Reply:
    text = json.dumps({"error": exc.message, "status": exc.status}, separators=(",", ":"))
    return Reply(exc.status, raw=(text + "\n").encode(), content_type="text/plain; charset=utf-8")


class Api:
    """The routes over a ``Proxies`` (Toxiproxy's) and a ``SandboxFaults`` (the project's
    own fault types); ``extra``: more routes."""

    def __init__(self, proxies: Proxies, faults: SandboxFaults,
                 extra: list[tuple[str, re.Pattern, Callable[..., Reply]]] | None = None) -> None:
        self.proxies, self.faults = proxies, faults
        self.extra = extra or []

    def handle(self, method: str, path: str, body: bytes) -> Reply:
        routes: list[tuple[str, re.Pattern, str | Callable[..., Reply]]] = [*ROUTES, *self.extra]
        for methods, pattern, target in routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if method not in methods.split():
                continue
            args = [unquote(g) for g in match.groups()]
            handler = getattr(self, target) if isinstance(target, str) else target
            try:
                return handler(*args, body) if _takes_body(method) else handler(*args)
            except ApiError as exc:
                return error_reply(exc)
        if any(p.fullmatch(path) for _, p, _ in routes):
            return Reply(405)  # gorilla/mux: a known path, another method, no body
        return Reply(404, raw=b"404 page not found\n", content_type="text/plain; charset=utf-8")

    # -- Toxiproxy's routes ----------------------------------------------------------------
    def reset(self, body: bytes) -> Reply:
        self.proxies.reset()
        self.faults.reset()
        return Reply(204)

    def proxy_index(self) -> Reply:
        with self.proxies.lock:
            return Reply(200, {name: p.json() for name, p in self.proxies.proxies.items()})

    def proxy_create(self, body: bytes) -> Reply:
        return Reply(201, self.proxies.create(decode(body)).json())

    def populate(self, body: bytes) -> Reply:
        done, error = self.proxies.populate(decode(body))
        listed = [p.json() for p in done] or None  # Go marshals an empty result as null
        if error is None:
            return Reply(201, {"proxies": listed})
        return Reply(error.status, {"error": error.message, "status": error.status, "proxies": listed})

    def proxy_show(self, name: str) -> Reply:
        with self.proxies.lock:
            return Reply(200, self.proxies.get(name).json())

    def proxy_update(self, name: str, body: bytes) -> Reply:
        return Reply(200, self.proxies.update(name, decode(body)).json())

    def proxy_delete(self, name: str) -> Reply:
        self.proxies.delete(name)
        return Reply(204)

    def toxic_index(self, name: str) -> Reply:
        with self.proxies.lock:
            return Reply(200, [t.json() for t in self.proxies.get(name).toxic_list()])

    def toxic_create(self, name: str, body: bytes) -> Reply:
        return Reply(200, self.proxies.add_toxic(name, decode(body)).json())

    def toxic_show(self, name: str, toxic: str) -> Reply:
        with self.proxies.lock:
            found = self.proxies.get(name).toxics.get(toxic)
            if found is None:
                from chaos.api.proxies import TOXIC_NOT_FOUND

                raise TOXIC_NOT_FOUND
            return Reply(200, found.json())

    def toxic_update(self, name: str, toxic: str, body: bytes) -> Reply:
        return Reply(200, self.proxies.update_toxic(name, toxic, decode(body)).json())

    def toxic_delete(self, name: str, toxic: str) -> Reply:
        self.proxies.remove_toxic(name, toxic)
        return Reply(204)

    def version(self) -> Reply:
        return Reply(200, raw=f'{{"version": "{VERSION}"}}\n'.encode(),
                     content_type="application/json;charset=utf-8")

    # -- beyond Toxiproxy ------------------------------------------------------------------
    def sandbox_show(self) -> Reply:
        return Reply(200, self.faults.describe())

    def server_create(self, body: bytes) -> Reply:
        return Reply(201, self.faults.add_server(decode(body)))

    def fault_index(self) -> Reply:
        return Reply(200, self.faults.all())

    def fault_create(self, body: bytes) -> Reply:
        return Reply(201, self.faults.add(decode(body)))

    def fault_show(self, fault_id: str) -> Reply:
        return Reply(200, self.faults.get(fault_id))

    def fault_delete(self, fault_id: str) -> Reply:
        self.faults.remove(fault_id)
        return Reply(204)

    def server_requests(self, name: str) -> Reply:
        requests = self.faults.server_requests(name)
        return Reply(200, {"count": len(requests), "requests": requests})

    def dns_queries(self) -> Reply:
        queries = self.faults.dns_queries()
        return Reply(200, {"count": len(queries), "queries": queries})

    def http_requests(self) -> Reply:
        requests = self.faults.http_requests()
        return Reply(200, {"count": len(requests), "requests": requests})

    def proxy_connections(self, name: str) -> Reply:
        """The connections of a proxy that have ended (the TCP proxy logs each at its end:
        one still open is not in it yet)."""
        with self.proxies.lock:
            key = self.proxies.get(name).key
        ended = [c for c in self.proxies.tcp.connections() if c["listener"] == key]
        return Reply(200, {"ended": len(ended), "connections": ended})


def _takes_body(method: str) -> bool:
    return method in ("POST", "PATCH")


def decode(body: bytes) -> Any:
    try:
        return json.loads(body or b"null")
    except ValueError as exc:
        raise BAD_BODY.joined(str(exc)) from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as client libraries expect
    # headers and body leave in two writes: with Nagle on, the second waits for the
    # client's delayed ACK, which made every call on a kept-alive connection ~40 ms
    disable_nagle_algorithm = True
    api: Api  # set on the subclass the server makes

    def _body(self) -> bytes:
        """The request body: by Content-Length, or chunked (as some clients send it, e.g.
        Node's http without a length); left unread, it would be taken for the next request."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                body += self.rfile.read(size)
                self.rfile.readline()  # the CRLF after each chunk
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._body()
        if self.headers.get("User-Agent", "").startswith("Mozilla/"):
            # Toxiproxy's guard against a web page driving an unauthenticated API
            reply = Reply(403, raw=b"User agent not allowed\n", content_type="text/plain; charset=utf-8")
        else:
            try:
                reply = self.api.handle(self.command, urlsplit(self.path).path, body)
            except Exception as exc:  # an API error is the client's answer, never a dead thread
                reply = error_reply(ApiError(f"{type(exc).__name__}: {exc}", 500))
        self.send_response(reply.status)
        if reply.status not in (204, 304):
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.status not in (204, 304):
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class HttpServer6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class Server:
    """The HTTP server, its TCP fault proxy and its journal, from start to revert."""

    def __init__(self, host: str, port: int, state_dir: str | None = None) -> None:
        from chaos.injectors.tcp_proxy import start_tcp_proxy
        from chaos.journal import Journal
        from chaos.session import new_run_id

        self.journal = Journal.create(f"serve-{new_run_id()}", state_dir)
        self.journal.note(event="serve", listen=f"{host}:{port}")
        try:
            self.tcp = start_tcp_proxy(self.journal, netns=None, config={"listeners": []},
                                       run_dir=self.journal.run_dir)
            self.proxies = Proxies(self.tcp, self.journal)
            self.faults = SandboxFaults(state_dir)
            self.api = Api(self.proxies, self.faults)
            handler = type("BoundHandler", (Handler,), {"api": self.api})
            http_class = HttpServer6 if ":" in host else ThreadingHTTPServer
            self.http = http_class((host.strip("[]"), port), handler)
            self.http.daemon_threads = True
        except BaseException:
            self.journal.rollback()
            self.journal.finish()
            raise

    @property
    def address(self) -> str:
        host, port = self.http.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def serve_forever(self) -> None:
        self.http.serve_forever(poll_interval=0.1)

    def close(self) -> list:
        """Stop answering, then revert everything (toxics, listeners, the proxy process)."""
        self.http.server_close()
        failures: list = []
        try:
            self.proxies.close()
        except ApiError as exc:
            failures.append(exc.message)
        failures += self.faults.close()
        failures += self.journal.rollback()
        self.journal.finish()
        return failures


def serve(host: str, port: int, state_dir: str | None = None, echo=print) -> int:
    """`chaos serve`: run until SIGTERM or SIGINT; the exit status (3: something not undone)."""
    from chaos.processes import signals_held_back

    stop = threading.Event()
    started: list[Server] = []

    def _stop(signum, frame) -> None:
        # a signal during start-up is taken once the server is whole: then it stops at once
        stop.set()
        if started:
            threading.Thread(target=started[0].http.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    server = Server(host, port, state_dir)
    started.append(server)
    echo(f"chaos serve: Toxiproxy API on http://{server.address} (run {server.journal.run_id})")
    sys.stdout.flush()
    if not stop.is_set():
        server.serve_forever()
    with signals_held_back():
        failures = server.close()
    for failure in failures:
        echo(f"could not undo: {failure}")
    return 3 if failures else 0
