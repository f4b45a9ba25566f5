"""The probe agent: one HTTP request or TCP connect, result as JSON on stdout.

Run inside a namespace (`ip netns exec NS python -m chaos.probes.agent ...`) so the request
uses the sandbox's routes, hosts file and resolver; called in-process in host mode. It
imports only the standard library, to start fast.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import ssl
import sys
import time
from urllib.parse import urlsplit

BODY_KEEP = 4096  # bytes of the body kept for checks and the report


def _error(exc: BaseException) -> dict:
    code = getattr(exc, "errno", None)
    if isinstance(exc, (socket.timeout, TimeoutError)):
        kind = "timeout"
    elif isinstance(exc, socket.gaierror):
        kind = "resolve"
    elif code == errno.ECONNREFUSED:
        kind = "refused"
    elif code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EINVAL, errno.EACCES, errno.EPERM):
        kind = "unreachable"
    elif code == errno.ECONNRESET:
        kind = "reset"
    else:
        kind = "error"
    return {"error": kind, "message": f"{type(exc).__name__}: {exc}"}


def http_request(url: str, method: str = "GET", headers: dict | None = None,
                 timeout: float = 30.0) -> dict:
    parts = urlsplit(url)
    start = time.monotonic()
    try:
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        path = parts.path or "/"
        conn.request(method, path + (f"?{parts.query}" if parts.query else ""),
                     headers=headers or {})
        resp = conn.getresponse()
        body, size = b"", 0
        while chunk := resp.read(65536):
            size += len(chunk)
            if len(body) < BODY_KEEP:
                body += chunk[: BODY_KEEP - len(body)]
        conn.close()
        return {"status": resp.status, "reason": resp.reason, "bytes": size,
                "body": body.decode("utf-8", "replace"), "headers": dict(resp.getheaders()),
                "duration": time.monotonic() - start}
    except Exception as exc:  # any failure is the observation
        return {**_error(exc), "duration": time.monotonic() - start}


def tcp_connect(host: str, port: int, timeout: float = 3.0) -> dict:
    start = time.monotonic()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
        return {"connect": "ok", "address": address[0], "duration": time.monotonic() - start}
    except Exception as exc:
        result = _error(exc)
        return {"connect": result["error"], "message": result["message"],
                "duration": time.monotonic() - start}


def main(argv: list[str]) -> None:
    request = json.loads(argv[0])
    what = request.pop("probe")
    result = http_request(**request) if what == "http" else tcp_connect(**request)
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
