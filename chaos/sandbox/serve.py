"""A small HTTP(S) server a scenario starts in the sandbox world: `python -m chaos.sandbox.serve`.

It answers every GET/HEAD with the given status and body (Range requests get 206), every
POST/PUT with the status and ``received <bytes>`` once it has read the body, and prints
``ready`` once listening so the runner knows it can start probing.

Two logs: ``--log``, one text line per answered request (for people and grep), and
``--events``, JSON lines a `requests:` probe counts: a ``start`` record as soon as a
request's headers are read, an ``end`` record with its outcome (status, body bytes sent,
how the connection ended) once it is over. A request with a start and no end yet is in
flight: counted, and shown so.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 65536  # body bytes per write: a cut connection shows how far the answer got


class Events:
    """The ``--events`` file: start and end records, one JSON line each, from many threads."""

    def __init__(self, path: str | None) -> None:
        self.file = open(path, "a", encoding="utf-8", buffering=1) if path else None
        self.lock = threading.Lock()
        self.ids = itertools.count(1)

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self.lock:  # one write per line: lines never interleave
            self.file.write(line)


def handler(status: int, body: bytes, log, records: Events | None = None):
    events = records or Events(None)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "chaos-serve"
        request_id: int | None = None
        sent = 0
        answered: int | None = None

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            self.request_id, self.sent, self.answered = next(events.ids), 0, None
            events.write({"event": "start", "id": self.request_id, "time": time.time(),
                          "client": self.client_address[0], "method": self.command,
                          "path": self.path, "range": self.headers.get("Range")})
            return True

        def handle_one_request(self) -> None:
            ended = "complete"
            try:
                super().handle_one_request()
            except OSError as exc:  # the client reset or closed mid-answer, or TLS broke
                ended, self.close_connection = f"{type(exc).__name__}: {exc}"[:200], True
            finally:
                if self.request_id is not None:
                    events.write({"event": "end", "id": self.request_id, "end_time": time.time(),
                                  "status": self.answered, "bytes": self.sent, "ended": ended})
                    self.request_id = None

        def send_response(self, code: int, message: str | None = None) -> None:
            self.answered = code
            super().send_response(code, message)

        def send_body(self, data: bytes) -> None:
            for start in range(0, len(data), CHUNK):
                chunk = data[start:start + CHUNK]
                self.wfile.write(chunk)
                self.sent += len(chunk)

        def do_GET(self) -> None:  # http.server's naming
            code, data, extra = status, body, {}
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            if match and status == 200 and int(match[1]) < len(body):
                start = int(match[1])
                end = min(int(match[2]) if match[2] else len(body) - 1, len(body) - 1)
                code, data = 206, body[start:end + 1]
                extra["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "text/plain")
            self.send_header("Accept-Ranges", "bytes")
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.send_body(data)

        do_HEAD = do_GET

        def do_POST(self) -> None:
            # An upload: read the whole body (its pace is what a slowed upstream shows),
            # then say how much came.
            left = int(self.headers.get("Content-Length") or 0)
            received = 0
            while left > 0 and (chunk := self.rfile.read(min(left, 65536))):
                received, left = received + len(chunk), left - len(chunk)
            data = f"received {received}\n".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.send_body(data)

        do_PUT = do_POST

        def log_message(self, fmt: str, *args) -> None:
            # One access-log line per request (client, request line, status, range): what
            # scenarios count, e.g. the 206 answers a resuming client got.
            line = f"{self.client_address[0]} {fmt % args} range={self.headers.get('Range', '-')}\n"
            log.write(line)
            log.flush()

    return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen", required=True, action="append",
                        help="address:port, [IPv6 address]:port; once per address (a "
                             "dual-stack server listens on both)")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--body", default="ok\n")
    parser.add_argument("--size", type=int, default=0, help="serve this many bytes instead of --body")
    parser.add_argument("--log", help="access log file (default: stderr)")
    parser.add_argument("--events", help="JSON-lines file of request start and end records")
    parser.add_argument("--cert", help="answer HTTPS with this certificate (PEM) ...")
    parser.add_argument("--key", help="... and this private key (PEM)")
    args = parser.parse_args(argv)
    body = (b"x" * args.size) if args.size else args.body.encode()
    log = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    answer = handler(args.status, body, log, Events(args.events))  # one log, one id count
    servers = [_server(listen, answer, args.cert, args.key) for listen in args.listen]
    print("ready", flush=True)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


def _server(listen: str, answer, cert: str | None, key: str | None) -> ThreadingHTTPServer:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    server = (_Server6 if ":" in host else _Server)((host, int(port)), answer)
    if cert:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        # The handshake runs in each request's thread (not in accept): a client that
        # connects and says nothing holds up only itself.
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    return server


if __name__ == "__main__":
    main()
