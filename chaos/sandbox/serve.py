"""A small HTTP(S) server a scenario starts in the sandbox world: `python -m chaos.sandbox.serve`.

It answers every GET/HEAD with the given status and body (Range requests get 206), every
POST/PUT with the status and ``received <bytes>`` once it has read the body, and prints
``ready`` once listening so the runner knows it can start probing.
"""

from __future__ import annotations

import argparse
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler(status: int, body: bytes, log):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "chaos-serve"

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
                self.wfile.write(data)

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
            self.wfile.write(data)

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
    parser.add_argument("--listen", required=True, help="address:port")
    parser.add_argument("--status", type=int, default=200)
    parser.add_argument("--body", default="ok\n")
    parser.add_argument("--size", type=int, default=0, help="serve this many bytes instead of --body")
    parser.add_argument("--log", help="access log file (default: stderr)")
    parser.add_argument("--cert", help="answer HTTPS with this certificate (PEM) ...")
    parser.add_argument("--key", help="... and this private key (PEM)")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    body = (b"x" * args.size) if args.size else args.body.encode()
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    log = open(args.log, "a", encoding="utf-8") if args.log else sys.stderr
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), handler(args.status, body, log))
    if args.cert:
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)
        # The handshake runs in each request's thread (not in accept): a client that
        # connects and says nothing holds up only itself.
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
