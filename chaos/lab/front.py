"""The Hub-like front: a token server (auth.docker.io) and a blob CDN
(production.cloudflare.docker.com), each its own process on its own address (one per
family in a dual-stack lab: the process listens on each, so its access log keeps every
client's own address).

Together with the upstream registry they behave like Docker Hub:

    GET https://registry-1.docker.io/v2/...   -> 401, WWW-Authenticate: Bearer realm="https://auth.docker.io/token",service="registry.docker.io"
    GET https://auth.docker.io/token?scope=.. -> {"token": <JWT signed by a lab-CA-issued key>}
    GET .../blobs/sha256:..  (with token)      -> 307 Location: https://production.cloudflare.docker.com/docker/registry/v2/blobs/...
    GET https://production.cloudflare.docker.com/...  -> the blob bytes (Range supported)

The 401 challenge and the 307 come from docker-registry itself (``auth: token`` and the
``redirect`` storage middleware, see chaos.lab.registry): the registry really checks the
tokens, so "registry up, auth down" fails the way Hub does, and blob GETs really leave for
another host, so "registry up, CDN blocked" does too. Only the token issuer and the CDN
are Python: small threaded ``http.server`` processes (stdlib, no mitmproxy - it would add a
proxy hop and 100 MB of dependencies to serve two endpoints; HTTP faults are injected by
the fault injectors in front of these servers, not inside them).

Run alone: ``python -m chaos.lab.front auth|cdn --listen ADDR:PORT [--listen [ADDR6]:PORT] ...``
(see --help).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from chaos.journal import Entry, Journal
from chaos.lab.accesslog import LabServer, format_line
from chaos.lab.topology import Service

#: Credentials that may push (the lab seeds images with them); anonymous callers get pull only.
PUSH_USER, PUSH_PASSWORD = "chaos", "chaos-lab"
TOKEN_LIFETIME = 300


# -- tokens ------------------------------------------------------------------------------
def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenSigner:
    """Signs registry tokens (JWT, ES256) the way docker-registry's ``auth: token`` checks
    them: the header carries the signing certificate (x5c), which must chain to the
    registry's ``rootcertbundle`` (the lab CA)."""

    def __init__(self, cert_pem: bytes, key_pem: bytes, issuer: str, service: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = serialization.load_pem_private_key(key_pem, None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("the token signer's key must be an EC key (tokens are ES256)")
        self._key = key
        der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
        self._x5c = [base64.b64encode(der).decode()]
        self.issuer, self.service = issuer, service

    def token(self, subject: str, access: list[dict], lifetime: int = TOKEN_LIFETIME) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256", "x5c": self._x5c}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + lifetime,
                  "nbf": now - 1, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)  # JOSE wants r||s, not DER
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def parse_scope(scope: str) -> dict | None:
    """``repository:library/busybox:pull,push`` -> access entry (the name may hold ':' for a port)."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return {"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]}


# -- servers -------------------------------------------------------------------------------
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "chaos-lab"
    sys_version = ""
    timeout = 60  # a stalled client must not hold a thread forever
    server: _Server

    def setup(self) -> None:
        # The TLS handshake runs here, in the connection's own thread: a client that stalls
        # mid-handshake (a typical fault) must not block accept() for everyone else.
        self.request.settimeout(self.timeout)
        self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, *args) -> None:  # stderr noise; the access log is written below
        pass

    def _done(self, status: int, size: int) -> None:
        self.server.log(format_line(self.client_address[0], self.command, self.path, status,
                                    size, self.headers.get("User-Agent", "")))

    def _send(self, status: int, body: bytes, ctype: str = "application/json",
              headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self._done(status, len(body))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    signer: TokenSigner  # the auth server's, set by main()
    root: Path  # the CDN's: the upstream's storage root, set by main()

    def __init__(self, addr, handler, tls: ssl.SSLContext, access_log: Path) -> None:
        if ":" in addr[0]:  # read by TCPServer.__init__ when it makes the socket
            self.address_family = socket.AF_INET6
        super().__init__(addr, handler)
        self.tls = tls
        self._log = open(access_log, "a", buffering=1, encoding="utf-8")
        self._log_lock = threading.Lock()

    def log(self, line: str) -> None:
        with self._log_lock:
            self._log.write(line)

    def handle_error(self, request, client_address) -> None:
        pass  # resets and TLS failures are what chaos tests cause; not worth a traceback


class AuthHandler(_Handler):
    """GET/POST /token: anonymous callers get pull, PUSH_USER gets what it asks for."""

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
            if (user, pw) == (PUSH_USER, PUSH_PASSWORD):
                return user
        return None

    def _token(self, params: dict[str, list[str]]) -> None:
        user = self._user()
        if self.command == "POST" and params.get("grant_type") == ["password"]:
            if (params.get("username", [""])[0], params.get("password", [""])[0]) == (PUSH_USER, PUSH_PASSWORD):
                user = PUSH_USER
        access = []
        for scope in params.get("scope", []):
            for one in scope.split(" "):
                entry = parse_scope(one)
                if entry is None:
                    continue
                if user is None:
                    entry["actions"] = [a for a in entry["actions"] if a == "pull"]
                access.append(entry)
        token = self.server.signer.token(user or "", access)
        body = json.dumps({"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        self._send(200, body.encode())

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/token":
            self._token(urllib.parse.parse_qs(url.query))
        elif url.path == "/healthz":
            self._send(200, b"{}")
        else:
            self._send(404, b'{"details":"not found"}')

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
        if urllib.parse.urlsplit(self.path).path == "/token":
            self._token(form)
        else:
            self._send(404, b'{"details":"not found"}')


class CDNHandler(_Handler):
    """GET/HEAD of any file under the upstream's storage root, as the registry's redirect
    names it (``/docker/registry/v2/blobs/sha256/ab/<digest>/data``); Range supported."""

    def _file(self) -> Path | None:
        rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
        root = self.server.root
        target = (root / rel).resolve()
        if root not in target.parents or not target.is_file():
            return None
        return target

    def do_GET(self) -> None:
        if self.path == "/healthz":
            return self._send(200, b"ok", "text/plain")
        target = self._file()
        if target is None:
            return self._send(404, b"<html><body>404 Not Found</body></html>", "text/html")
        size = target.stat().st_size
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range", "")
        if rng.startswith("bytes="):
            first, _, last = rng[6:].split(",")[0].partition("-")
            try:
                if first:
                    start, end = int(first), (int(last) if last else size - 1)
                else:  # suffix range: the last N bytes
                    start = max(0, size - int(last))
            except ValueError:
                start = size  # unparsable: answer 416 below
            end = min(end, size - 1)
            if start > end:
                return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "public, max-age=14400")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        sent = 0
        if self.command != "HEAD":
            with open(target, "rb") as f:
                f.seek(start)
                while sent < length:
                    chunk = f.read(min(65536, length - sent))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
        self._done(status, sent)

    do_HEAD = do_GET


def _tls_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos.lab.front", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="role", required=True)
    for role in ("auth", "cdn"):
        s = sub.add_parser(role)
        s.add_argument("--listen", type=_listen, required=True, action="append",
                       help="ADDRESS:PORT or [IPV6]:PORT; once per address")
        s.add_argument("--cert", required=True)
        s.add_argument("--key", required=True)
        s.add_argument("--access-log", type=Path, required=True)
        if role == "auth":
            s.add_argument("--signer-cert", required=True)
            s.add_argument("--signer-key", required=True)
            s.add_argument("--issuer", required=True)
            s.add_argument("--service", required=True)
        else:
            s.add_argument("--root", type=Path, required=True, help="upstream storage root")
    args = p.parse_args(argv)
    handler = AuthHandler if args.role == "auth" else CDNHandler
    tls = _tls_context(args.cert, args.key)
    servers = [_Server(addr, handler, tls, args.access_log) for addr in args.listen]
    for server, (host, port) in zip(servers, args.listen, strict=True):
        if args.role == "auth":
            server.signer = TokenSigner(Path(args.signer_cert).read_bytes(),
                                        Path(args.signer_key).read_bytes(), args.issuer, args.service)
        else:
            server.root = args.root.resolve()
        print(f"{args.role} listening on {host}:{port}", file=sys.stderr, flush=True)
    # One thread per address; both write the same access log (O_APPEND, a line per write).
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                         daemon=True).start()
    try:
        servers[0].serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    return 0


# -- starting them in the lab ------------------------------------------------------------------
@dataclass
class FrontServer(LabServer):
    """A running auth or CDN process."""

    role: str
    service: Service
    proc: subprocess.Popen
    access_log: Path
    app_log: Path
    entry: Entry | None = None
    journal: Journal | None = None


def spawn_front(journal, role: str, service, argv_tail: list[str], log_dir: Path) -> FrontServer:
    """Start ``python -m chaos.lab.front <role>`` in the service's namespace (journaled).
    Readiness is checked separately (``wait_front``) so several servers boot in parallel."""
    from chaos.processes import spawn

    access_log, app_log = log_dir / f"{role}.access.log", log_dir / f"{role}.log"
    listen = [a for addr in service.addresses
              for a in ("--listen", f"[{addr}]:{service.port}" if ":" in addr else f"{addr}:{service.port}")]
    argv = [sys.executable, "-m", "chaos.lab.front", role, *listen,
            "--access-log", str(access_log), *argv_tail]
    with open(app_log, "ab") as err:
        proc, entry = spawn(journal, argv, netns=service.netns, what=f"lab {role} {service.host}",
                            stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return FrontServer(role, service, proc, access_log, app_log, entry, journal)


def start_auth(journal, service, ca, signer, log_dir: Path, *, issuer: str,
               registry_service: str) -> FrontServer:
    """Spawn the token server for ``service`` (auth.docker.io) with a lab-CA leaf and the
    token signer key pair."""
    leaf = ca.issue(service.role, [service.host], service.addresses)
    return spawn_front(journal, "auth", service,
                       ["--cert", str(leaf.cert), "--key", str(leaf.key),
                        "--signer-cert", str(signer.cert), "--signer-key", str(signer.key),
                        "--issuer", issuer, "--service", registry_service], log_dir)


def start_cdn(journal, service, ca, storage_root: Path, log_dir: Path) -> FrontServer:
    """Spawn the CDN serving blobs straight from the upstream's storage directory."""
    leaf = ca.issue(service.role, [service.host], service.addresses)
    return spawn_front(journal, "cdn", service,
                       ["--cert", str(leaf.cert), "--key", str(leaf.key), "--root", str(storage_root)],
                       log_dir)


def wait_front(server: FrontServer, ca_file: Path, timeout: float) -> None:
    from chaos.lab.ready import https_status, wait_until

    svc = server.service
    def healthy(addr: str) -> Callable[[], bool]:
        return lambda: https_status(svc.netns, addr, svc.port, svc.host, ca_file, "/healthz",
                                    timeout=1.0) == 200

    for addr in svc.addresses:  # each family it listens on
        wait_until(f"{server.role} ({svc.host} {addr}:{svc.port} in {svc.netns})", healthy(addr),
                   timeout, proc=server.proc, log=server.app_log)


if __name__ == "__main__":
    raise SystemExit(main())
