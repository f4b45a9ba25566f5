"""HTTP faults through mitmproxy: real curl and http.client, a real origin, real sockets.

Each test asserts what a user sees: curl's exit code and message, the time to failure, the
bytes received, the 200/206 sequence of a resuming client. Most tests share one proxy on
loopback (rules are files: each test switches its own on and off); transparent mode runs in
two namespaces this file creates; the journal tests use CHAOS_STATE_DIR=tmp_path.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from chaos import processes
from chaos.injectors import iptables
from chaos.injectors.http_proxy import HttpRedirect, HttpRule, mitmdump_executable, start_http_proxy, undo_rule
from chaos.journal import Journal, is_alive, unfinished
from chaos.sandbox.enter import in_netns

pytestmark = pytest.mark.skipif(
    not (shutil.which("curl") and Path(mitmdump_executable()).exists()),
    reason="needs curl and mitmdump (pip install mitmproxy)",
)

BLOB = random.Random(7).randbytes(1 << 20)  # 1 MiB, deterministic
BIG = 256 << 20
FAULTS = Path(__file__).resolve().parents[1] / "chaos" / "injectors" / "http_faults"
SEEN: list[str] = []  # request targets the origin got, in order


# -- the origin ------------------------------------------------------------------------------

class Origin(BaseHTTPRequestHandler):
    """/blob* honours Range, /norange* ignores it, /chunked* has no Content-Length,
    /big* streams 256 MiB, anything else answers ``hello <path>``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.answer(body=True)

    def do_HEAD(self) -> None:
        self.answer(body=False)

    def do_POST(self) -> None:
        self.answer(body=True, sent=self.rfile.read(int(self.headers.get("content-length", 0))))

    do_PUT = do_POST

    def send_json(self, doc: dict, body: bool) -> None:
        text = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        if body:
            self.wfile.write(text)

    def answer(self, body: bool, sent: bytes = b"") -> None:
        path = self.path.split("?", 1)[0]
        SEEN.append(self.path)
        if path.startswith("/echo"):  # what the origin got, as JSON
            self.send_json({"method": self.command, "target": self.path, "body": sent.decode(),
                            "headers": [[k.lower(), v] for k, v in self.headers.items()]}, body)
        elif path.startswith("/json"):  # a manifest-like document
            self.send_json({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                            "config": {"digest": "sha256:" + "0" * 64, "size": 7}}, body)
        elif path.startswith("/blob"):
            self.send_blob(body, ranges=True)
        elif path.startswith("/norange"):
            self.send_blob(body, ranges=False)
        elif path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for i in range(0, len(BLOB), 65536):
                chunk = BLOB[i:i + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif path.startswith("/big"):
            self.send_response(200)
            self.send_header("content-length", str(BIG))
            self.end_headers()
            chunk = bytes(1 << 20)
            for _ in range(BIG >> 20):
                self.wfile.write(chunk)
        else:
            text = f"hello {path}\n".encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(text)))
            self.end_headers()
            if body:
                self.wfile.write(text)

    def send_blob(self, body: bool, ranges: bool) -> None:
        start, end = 0, len(BLOB) - 1
        m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("range") or "")
        if ranges and m:
            start = int(m.group(1))
            end = min(int(m.group(2)), end) if m.group(2) else end
            self.send_response(206)
            self.send_header("content-range", f"bytes {start}-{end}/{len(BLOB)}")
        else:
            self.send_response(200)
        if ranges:
            self.send_header("accept-ranges", "bytes")
        self.send_header("content-length", str(end - start + 1))
        self.end_headers()
        if body:
            self.wfile.write(BLOB[start:end + 1])


class OriginServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client the proxy reset mid-request is what the reset faults are for: say nothing.
        # Anything else is still printed.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def serving(sock: socket.socket, tls: ssl.SSLContext | None = None):
    """Serve Origin on an already bound socket (it may belong to another namespace)."""
    sock.listen(64)
    port = sock.getsockname()[1]
    server = OriginServer(sock.getsockname()[:2], Origin, bind_and_activate=False)
    server.socket.close()
    server.socket = tls.wrap_socket(sock, server_side=True) if tls else sock
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()


def bound(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def free_port() -> int:
    with contextlib.closing(bound()) as s:
        return s.getsockname()[1]


# -- clients ---------------------------------------------------------------------------------

@dataclass
class Curl:
    rc: int
    status: int
    size: int
    body: bytes
    headers: dict
    err: str
    elapsed: float


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(extra)
    return env


def curl(url: str, *args: str, proxy=None, netns: str | None = None, out: Path | None = None,
         env: dict | None = None) -> Curl:
    """Run curl, return what a user sees: exit code, status, bytes, body, headers, message."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    body_file = out or tmp / f"chaos-curl-{secrets.token_hex(6)}"
    head_file = tmp / f"chaos-curl-{secrets.token_hex(6)}.h"
    argv = ["curl", "-sS", "-o", str(body_file), "-D", str(head_file),
            "-w", "%{http_code} %{size_download}", *args, url]
    if proxy is not None:
        argv[1:1] = ["-x", proxy.url]
    start = time.monotonic()
    done = subprocess.run(processes.netns_argv(netns, argv), capture_output=True, text=True,
                          env=env or clean_env(), timeout=30)
    elapsed = time.monotonic() - start
    try:
        body = body_file.read_bytes() if body_file.exists() else b""
        headers = {}
        if head_file.exists():
            for line in head_file.read_text(errors="replace").splitlines():
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
    finally:
        if out is None:
            body_file.unlink(missing_ok=True)
        head_file.unlink(missing_ok=True)
    code, _, size = done.stdout.strip().rpartition("\n")[2].partition(" ")
    return Curl(done.returncode, int(code or 0), int(size or 0), body, headers,
                done.stderr.strip(), elapsed)


def via_proxy(proxy, method: str, url: str, headers: dict | None = None, body: bytes | None = None):
    """One request with http.client through the (regular) proxy: (status, headers, body)."""
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
    try:
        conn.request(method, url, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_for(predicate, timeout: float = 5.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    """A self-signed certificate for the HTTPS origin (127.0.0.1)."""
    d = tmp_path_factory.mktemp("origin-tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
        check=True, capture_output=True)
    return d


@pytest.fixture(scope="module")
def origin():
    with serving(bound()) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tls_origin(certs):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "cert.pem", certs / "key.pem")
    with serving(bound(), tls=ctx) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    base = tmp_path_factory.mktemp("state")
    j = Journal.create(f"http-faults-{secrets.token_hex(4)}", base=base)
    yield j
    failures = j.rollback()
    j.finish()
    assert not failures, failures


@pytest.fixture(scope="module")
def proxy(journal, certs, tmp_path_factory):
    p = start_http_proxy(journal, netns=None, listen=f"127.0.0.1:{free_port()}", mode="regular",
                         run_dir=journal.run_dir / "http-proxy",
                         confdir=tmp_path_factory.mktemp("mitmproxy-conf"),
                         upstream_ca=certs / "cert.pem")
    yield p
    p.stop()
    assert not p.alive()


@pytest.fixture
def rules(proxy, journal):
    """rules(dict) switches a rule on; every rule is switched off after the test."""
    applied = []

    def add(rule: dict) -> HttpRule:
        r = proxy.rule(rule)
        r.apply(journal)
        applied.append(r)
        return r

    yield add
    for r in applied:
        assert not r.revert(journal)


def log_for(proxy, path: str) -> list[dict]:
    """The finished requests for ``path`` (one still in flight has no outcome yet)."""
    return [e for e in proxy.requests() if e["path"] == path and not e["in_flight"]]


# -- http-error ------------------------------------------------------------------------------

CDN_STATUSES = [500, 502, 503, 504, 520, 521, 522, 523, 524, 525, 526]


def test_http_error_cdn_family(proxy, origin, rules):
    for status in CDN_STATUSES:
        rules({"id": f"err-{status}", "fault": "http-error", "status": status,
               "match": {"path": f"/err/{status}"}})
    for status in CDN_STATUSES:
        r = curl(f"{origin}/err/{status}", proxy=proxy)
        assert (r.rc, r.status) == (0, status)
        assert r.headers["server"] == "cloudflare"
        assert re.fullmatch(r"[0-9a-f]{16}-FRA", r.headers["cf-ray"])
        assert r.headers["content-type"].startswith("text/html")
        assert f"Error {status}".encode() in r.body and b"<!DOCTYPE html>" in r.body
    assert b"Connection timed out" in curl(f"{origin}/err/522", proxy=proxy).body
    failing = curl(f"{origin}/err/503", "--fail", proxy=proxy)
    assert failing.rc == 22 and "returned error: 503" in failing.err
    passing = curl(f"{origin}/err/other", proxy=proxy)
    assert (passing.rc, passing.status, passing.body) == (0, 200, b"hello /err/other\n")


def test_http_error_403_bot_answer_is_plain_text_1010(proxy, origin, rules):
    rules({"id": "bot-1010", "fault": "http-error", "status": 403, "match": {"path": "/deny/*"}})
    r = curl(f"{origin}/deny/me", proxy=proxy)
    assert (r.rc, r.status, r.body) == (0, 403, b"error code: 1010")
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["server"] == "cloudflare" and "cf-ray" in r.headers


def test_http_error_delay_makes_the_client_wait(proxy, origin, rules):
    rules({"id": "slow-524", "fault": "http-error", "status": 524, "delay": 0.8,
           "match": {"path": "/slow524"}})
    r = curl(f"{origin}/slow524", proxy=proxy)
    assert r.status == 524 and 0.75 <= r.elapsed < 3


def test_match_by_host_method_and_probability(proxy, origin, rules):
    port = origin.rsplit(":", 1)[1]
    rules({"id": "post-localhost", "fault": "http-error", "status": 502,
           "match": {"host": "localhost", "method": "POST", "path": "/m/*"}})
    assert via_proxy(proxy, "POST", f"http://localhost:{port}/m/x", body=b"x")[0] == 502
    assert via_proxy(proxy, "POST", f"http://127.0.0.1:{port}/m/x", body=b"x")[0] == 200
    assert via_proxy(proxy, "GET", f"http://localhost:{port}/m/x")[0] == 200
    assert via_proxy(proxy, "POST", f"http://localhost:{port}/other", body=b"x")[0] == 200

    rules({"id": "coin", "fault": "http-error", "status": 503, "probability": 0.5,
           "match": {"path": "/coin"}})
    with pytest.raises(ValueError, match="probability"):  # the model's range: (0, 1]
        rules({"id": "never", "fault": "http-error", "status": 500, "probability": 0.0})
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
    statuses = []
    for path in ["/coin"] * 60:
        conn.request("GET", f"{origin}{path}")
        resp = conn.getresponse()
        resp.read()
        statuses.append((path, resp.status))
    conn.close()
    failed = sum(1 for p, s in statuses if p == "/coin" and s == 503)
    assert 10 <= failed <= 50, failed  # 5 standard deviations around 30


def test_rules_switch_while_running_sighup_and_broken_files(proxy, origin, rules):
    assert curl(f"{origin}/live", proxy=proxy).status == 200
    rule = rules({"id": "live", "fault": "http-error", "status": 503, "match": {"path": "/live"}})
    assert curl(f"{origin}/live", proxy=proxy).status == 503
    # Edited in place (no rename): SIGHUP makes the proxy rescan at once.
    rule.path.write_text(json.dumps({**rule.rule, "status": 502}))
    proxy.reload()
    # (within 0.5 s: the periodic rescan is 1 s away, only the signal explains a quick 502)
    assert wait_for(lambda: curl(f"{origin}/live", proxy=proxy).status == 502, timeout=0.5)
    rule.revert(proxy.journal)
    assert curl(f"{origin}/live", proxy=proxy).status == 200
    # A broken rule file is logged and skipped, the proxy keeps serving.
    broken = proxy.rules_dir / "broken.json"
    broken.write_text("{not json")
    try:
        assert curl(f"{origin}/live", proxy=proxy).status == 200
        assert wait_for(lambda: "broken.json ignored" in proxy.log_path.read_text())
    finally:
        broken.unlink()
    with pytest.raises(ValueError):
        HttpRule(proxy.rules_dir, {"id": "bad", "fault": "http-error", "status": 299})


# -- bot-mitigation --------------------------------------------------------------------------

def test_bot_challenge_by_user_agent_and_headers(proxy, origin, rules):
    rules({"id": "ua", "fault": "bot-mitigation", "action": "challenge",
           "signature": {"user_agent": "^curl/"}, "match": {"path": "/bot/*"}})
    r = curl(f"{origin}/bot/a", proxy=proxy)
    assert (r.rc, r.status) == (0, 403)
    assert r.headers["cf-mitigated"] == "challenge" and r.headers["server"] == "cloudflare"
    assert b"<title>Just a moment...</title>" in r.body
    human = curl(f"{origin}/bot/a", "-A", "Mozilla/5.0 (X11; Linux x86_64)", proxy=proxy)
    assert (human.status, human.body) == (200, b"hello /bot/a\n")

    rules({"id": "nolang", "fault": "bot-mitigation", "action": "challenge", "status": 503,
           "signature": {"header_absent": ["accept-language"], "header_present": ["accept"]},
           "match": {"path": "/bot2/*"}})
    assert curl(f"{origin}/bot2/a", proxy=proxy).status == 503
    assert curl(f"{origin}/bot2/a", "-H", "Accept-Language: en", proxy=proxy).status == 200


def test_request_log_shows_a_request_in_flight_then_its_outcome(proxy, origin, rules):
    rules({"id": "held", "fault": "bot-mitigation", "action": "hang", "hang_seconds": 1.5,
           "signature": {"user_agent": "curl"}, "match": {"path": "/held"}})
    client = threading.Thread(target=curl, args=(f"{origin}/held",), kwargs={"proxy": proxy})
    client.start()
    try:
        held = wait_for(lambda: [e for e in proxy.requests() if e["path"] == "/held"], timeout=3)
        assert held and held[0]["in_flight"] is True and "status" not in held[0]
    finally:
        client.join()
    (done,) = wait_for(lambda: log_for(proxy, "/held"), timeout=3)
    assert done["in_flight"] is False and done["status"] is None and done["ended"] != "complete"


@pytest.mark.parametrize("action, extra, curl_args, rc, message, seconds", [
    ("drop", {}, [], 52, "Empty reply from server", (0, 1)),
    ("reset", {}, [], 56, "Connection reset by peer", (0, 1)),
    ("hang", {"hang_seconds": 1.0}, [], 52, "Empty reply from server", (0.95, 3)),
    ("hang", {}, ["--max-time", "1"], 28, "Operation timed out", (0.95, 3)),
])
def test_bot_drop_reset_hang(proxy, origin, rules, action, extra, curl_args, rc, message, seconds):
    path = f"/bot-{action}-{len(extra)}"
    rules({"id": f"b-{action}-{len(extra)}", "fault": "bot-mitigation", "action": action,
           "signature": {"user_agent": "curl"}, **extra, "match": {"path": path}})
    r = curl(f"{origin}{path}", *curl_args, proxy=proxy)
    assert r.rc == rc and message in r.err, (r.rc, r.err)
    assert seconds[0] <= r.elapsed < seconds[1]
    assert r.size == 0
    entry = wait_for(lambda: log_for(proxy, path), timeout=3)
    assert entry and entry[0]["status"] is None and entry[0]["fault"] == "bot-mitigation"
    # A forever-hang ends with its client, not later.
    assert entry[0]["duration"] < seconds[1]
    ok = curl(f"{origin}{path}", "-A", "Mozilla/5.0", proxy=proxy)
    assert (ok.rc, ok.status) == (0, 200)


def test_bot_rate_limit_is_per_client(proxy, origin, rules):
    rules({"id": "rate", "fault": "bot-mitigation", "action": "challenge",
           "signature": {"rate": {"requests": 3, "per": 30}}, "match": {"path": "/rate"}})
    first = [curl(f"{origin}/rate", proxy=proxy).status for _ in range(5)]
    assert first == [200, 200, 200, 403, 403]
    other = curl(f"{origin}/rate", "--interface", "127.0.0.2", proxy=proxy)
    assert other.status == 200  # another client's budget is its own


# -- http-451 --------------------------------------------------------------------------------

def test_geo_451_by_client_range(proxy, origin, rules):
    rules({"id": "geo-es", "fault": "geo-block", "action": "http-451", "region": "ES",
           "block": ["127.0.0.1"], "blocked_by": "https://blocker.example/",
           "match": {"clients": ["127.0.0.2/32"]}})
    r = curl(f"{origin}/geo", "--interface", "127.0.0.2", proxy=proxy)
    assert (r.rc, r.status) == (0, 451)
    assert r.headers["link"] == '<https://blocker.example/>; rel="blocked-by"'
    assert b"not available in your region (ES)" in r.body
    assert curl(f"{origin}/geo", proxy=proxy).status == 200  # 127.0.0.1 is elsewhere


# -- partial ---------------------------------------------------------------------------------

@pytest.mark.parametrize("then, path, curl_args, rc, message, seconds", [
    ("close", "/blob/close", [], 18, "transfer closed with 948576 bytes remaining", (0, 2)),
    ("close", "/chunked/close", [], 18, "transfer closed", (0, 2)),
    ("reset", "/blob/reset", [], 56, "Connection reset by peer", (0, 2)),
    ("hang", "/blob/hang", ["--max-time", "1.5"], 28, "with 100000 out of 1048576 bytes", (1.4, 4)),
])
def test_partial_first_n_bytes_then(proxy, origin, rules, then, path, curl_args, rc, message, seconds):
    rules({"id": f"cut-{then}-{path.strip('/').replace('/', '-')}", "fault": "partial",
           "bytes": 100_000, "then": then, "match": {"path": path}})
    r = curl(f"{origin}{path}", *curl_args, proxy=proxy)
    assert r.rc == rc and message in r.err, (r.rc, r.err)
    assert (r.status, r.size, r.body) == (200, 100_000, BLOB[:100_000])
    assert seconds[0] <= r.elapsed < seconds[1]
    entry = wait_for(lambda: log_for(proxy, path), timeout=3)
    assert entry[0]["bytes"] == 100_000 and entry[0]["rule"].startswith("cut-")


@pytest.mark.parametrize("path", ["/blob/resume", "/norange/resume"])
def test_partial_resuming_client_sees_206_sequence(proxy, origin, rules, tmp_path, path):
    """curl -C - in a retry loop: 300 kB per try, each retry a Range request answered 206
    (by the origin, or by the proxy when the origin ignores Range)."""
    rules({"id": f"resume-{path.split('/')[1]}", "fault": "partial", "bytes": 300_000,
           "cut_ranges": True, "match": {"path": path}})
    out = tmp_path / "download"
    codes = []
    for _ in range(8):
        r = curl(f"{origin}{path}", "-C", "-", proxy=proxy, out=out)
        codes.append((r.rc, r.status))
        if r.rc == 0:
            break
    assert codes == [(18, 200), (18, 206), (18, 206), (0, 206)]
    assert out.read_bytes() == BLOB
    log = log_for(proxy, path)
    assert [(e["status"], e["range"], e["bytes"]) for e in log] == [
        (200, None, 300_000),
        (206, "bytes=300000-", 300_000),
        (206, "bytes=600000-", 300_000),
        (206, "bytes=900000-", len(BLOB) - 900_000),
    ]
    assert sum(e["status"] == 206 for e in log) >= 1  # http_requests: {status: 206, at_least: 1}


def test_partial_passes_range_requests_whole_and_answers_them_correctly(proxy, origin, rules, tmp_path):
    rules({"id": "once", "fault": "partial", "bytes": 1000, "match": {"path": "/norange/once"}})
    out = tmp_path / "download"
    first = curl(f"{origin}/norange/once", proxy=proxy, out=out)
    assert (first.rc, first.size) == (18, 1000)
    second = curl(f"{origin}/norange/once", "-C", "-", proxy=proxy, out=out)
    assert (second.rc, second.status) == (0, 206)
    assert second.headers["content-range"] == f"bytes 1000-{len(BLOB) - 1}/{len(BLOB)}"
    assert out.read_bytes() == BLOB
    status, headers, body = via_proxy(proxy, "GET", f"{origin}/norange/once",
                                      headers={"Range": "bytes=10-19"})
    assert (status, headers["content-range"], body) == (206, f"bytes 10-19/{len(BLOB)}", BLOB[10:20])
    status, headers, body = via_proxy(proxy, "GET", f"{origin}/norange/once",
                                      headers={"Range": "bytes=-5"})
    assert (status, body) == (206, BLOB[-5:])
    status, headers, body = via_proxy(proxy, "GET", f"{origin}/norange/once",
                                      headers={"Range": f"bytes={len(BLOB)}-"})
    assert (status, headers["content-range"], body) == (416, f"bytes */{len(BLOB)}", b"")


def test_request_log_fields(proxy, origin):
    curl(f"{origin}/logged?q=1", "-H", "Range: bytes=0-", proxy=proxy)
    entry = wait_for(lambda: log_for(proxy, "/logged?q=1"))[0]
    assert set(entry) >= {"time", "client", "method", "path", "range", "status", "bytes"}
    assert (entry["client"], entry["method"], entry["range"], entry["status"], entry["bytes"]) == (
        "127.0.0.1", "GET", "bytes=0-", 200, len(b"hello /logged\n"))
    assert abs(entry["time"] - time.time()) < 30


def test_large_body_streams_with_flat_memory(proxy, origin):
    def rss_kib() -> int:
        for line in Path(f"/proc/{proxy.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    before, peak = rss_kib(), 0
    result = {}
    thread = threading.Thread(target=lambda: result.update(
        r=curl(f"{origin}/big", proxy=proxy, out=Path(os.devnull))))
    thread.start()
    while thread.is_alive():
        peak = max(peak, rss_kib())
        time.sleep(0.02)
    thread.join()
    assert (result["r"].rc, result["r"].size) == (0, BIG)
    assert peak - before < 64 * 1024, f"RSS grew by {(peak - before) // 1024} MiB for a 256 MiB body"


@pytest.mark.parametrize("wait_ack", [True, False])
def test_partial_reset_without_waiting_for_acks_loses_what_a_slow_client_did_not_get(
        proxy, origin, rules, wait_ack):
    """With wait_ack false the RST goes as the Nth byte reaches the kernel: a client that is
    not reading has fewer than N bytes, as with a real reset; with it, exactly N."""
    n = 400_000
    path = f"/blob/slow-{wait_ack}"
    rules({"id": "cut", "fault": "partial", "bytes": n, "then": "reset", "wait_ack": wait_ack,
           "match": {"path": path}})
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a small window: a slow reader
    sock.connect((proxy.host, proxy.port))
    sock.sendall(f"GET {origin}{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    time.sleep(1.0)  # not reading while the proxy writes the N bytes
    sock.settimeout(5)
    data = bytearray()
    with pytest.raises(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    sock.close()
    head, _, got = bytes(data).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and got == BLOB[:len(got)]
    if wait_ack:
        assert len(got) == n
    else:
        assert len(got) < n // 2, len(got)


# -- content faults: http-respond, http-replace, http-patch, http-abort, http-delay ----------

PORTAL = "<!DOCTYPE html><html><body><h1>Wi-Fi login</h1></body></html>"


def seen_since(mark: int, prefix: str) -> list[str]:
    return [t for t in SEEN[mark:] if t.startswith(prefix)]


def test_http_respond_any_status_and_body_origin_never_asked(proxy, origin, rules):
    rules({"id": "portal", "fault": "http-respond", "status": 200, "body": PORTAL,
           "headers": {"x-portal": "yes"}, "match": {"path": "/v2/*", "method": "GET"}})
    rules({"id": "blob", "fault": "http-respond", "body_random": 1000, "match": {"path": "/rand"}})
    rules({"id": "teapot", "fault": "http-respond", "status": 418, "body_base64": "AAEC/w==",
           "content_type": "image/x-test", "match": {"path": "/tea"}})
    mark = len(SEEN)
    r = curl(f"{origin}/v2/library/alpine/manifests/latest", "--fail", proxy=proxy)
    assert (r.rc, r.status, r.body.decode()) == (0, 200, PORTAL)
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["x-portal"] == "yes" and r.headers["content-length"] == str(len(PORTAL))
    one, two = curl(f"{origin}/rand", proxy=proxy), curl(f"{origin}/rand", proxy=proxy)
    assert (one.status, len(one.body), len(two.body)) == (200, 1000, 1000) and one.body != two.body
    assert one.headers["content-type"] == "application/octet-stream"
    tea = curl(f"{origin}/tea", proxy=proxy)
    assert (tea.status, tea.body, tea.headers["content-type"]) == (418, b"\x00\x01\x02\xff", "image/x-test")
    assert seen_since(mark, "/v2") == seen_since(mark, "/rand") == seen_since(mark, "/tea") == []
    head = curl(f"{origin}/v2/x", "-I", proxy=proxy)  # HEAD is not GET: passes to the origin
    assert head.status == 200 and seen_since(mark, "/v2") == ["/v2/x"]


def test_http_replace_request_path_method_queries_headers_body(proxy, origin, rules):
    rules({"id": "rq", "fault": "http-replace", "target": "request", "path": "/echo/new",
           "method": "put", "queries": {"a": "9", "c": "3"}, "headers": {"x-r": "1"},
           "body": '{"k": 1}', "match": {"path": "/echo/old"}})
    status, _, body = via_proxy(proxy, "POST", f"{origin}/echo/old?a=1&b=2", body=b"orig",
                                headers={"content-type": "text/plain"})
    seen = json.loads(body)
    assert status == 200 and seen["method"] == "PUT" and seen["body"] == '{"k": 1}'
    assert seen["target"] == "/echo/new?a=9&b=2&c=3"
    headers = dict(seen["headers"])
    assert headers["x-r"] == "1" and headers["content-type"] == "application/json"
    assert headers["content-length"] == "8"
    untouched = json.loads(via_proxy(proxy, "GET", f"{origin}/echo/other?a=1")[2])
    assert (untouched["method"], untouched["target"]) == ("GET", "/echo/other?a=1")


def test_http_replace_response_code_headers_and_body_of_a_streamed_blob(proxy, origin, rules):
    rules({"id": "rs", "fault": "http-replace", "target": "response", "code": 200, "body": PORTAL,
           "headers": {"cache-control": "no-store"}, "response_match": {"status": 200},
           "match": {"path": "/blob/portal"}})
    rules({"id": "never", "fault": "http-replace", "target": "response", "code": 500,
           "response_match": {"status": 404}, "match": {"path": "/blob/kept"}})
    mark = len(SEEN)
    r = curl(f"{origin}/blob/portal", proxy=proxy)  # 1 MiB: streams through the proxy
    assert (r.rc, r.status, r.body.decode()) == (0, 200, PORTAL)
    assert r.headers["content-length"] == str(len(PORTAL)) and r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert seen_since(mark, "/blob/portal") == ["/blob/portal"]  # the origin was asked
    kept = curl(f"{origin}/blob/kept", proxy=proxy)
    assert (kept.rc, kept.status, kept.body) == (0, 200, BLOB)


@pytest.mark.parametrize("path, n", [("/json/m", 20), ("/chunked/c", 1000), ("/blob/t", 300_000)])
def test_http_replace_truncate_is_a_complete_short_answer(proxy, origin, rules, path, n):
    rules({"id": "cut", "fault": "http-replace", "target": "response", "truncate": n,
           "match": {"path": path}})
    whole = curl(f"{origin}{path}x", proxy=proxy).body  # not matched: the origin's body
    r = curl(f"{origin}{path}", proxy=proxy)
    assert (r.rc, r.status, r.size) == (0, 200, n)  # curl saw a complete answer of N bytes
    assert r.body == whole[:n] and len(whole) > n
    if "content-length" in r.headers:
        assert r.headers["content-length"] == str(n)
    else:
        assert r.headers["transfer-encoding"] == "chunked"


def test_http_patch_merges_json_and_adds_headers_and_queries(proxy, origin, rules):
    rules({"id": "pr", "fault": "http-patch", "target": "response", "match": {"path": "/json/p"},
           "json": {"config": {"digest": "sha256:bad"}, "mediaType": None},
           "headers": [["x-a", "1"], ["x-a", "2"]]})
    rules({"id": "pq", "fault": "http-patch", "match": {"path": "/echo/p"},
           "json": {"added": True}, "queries": [["x", "1"]], "headers": [["x-b", "2"]]})
    conn = http.client.HTTPConnection(proxy.host, proxy.port, timeout=10)
    conn.request("GET", f"{origin}/json/p")
    resp = conn.getresponse()
    status, added, body = resp.status, resp.headers.get_all("x-a"), resp.read()
    conn.close()
    assert status == 200 and added == ["1", "2"]
    assert json.loads(body) == {"schemaVersion": 2, "config": {"digest": "sha256:bad", "size": 7}}
    seen = json.loads(via_proxy(proxy, "POST", f"{origin}/echo/p?x=0", body=b'{"orig": 1}',
                                headers={"content-type": "application/json", "x-b": "1"})[2])
    assert json.loads(seen["body"]) == {"orig": 1, "added": True}
    assert seen["target"] == "/echo/p?x=0&x=1"
    assert [v for k, v in seen["headers"] if k == "x-b"] == ["1", "2"]


@pytest.mark.parametrize("target, how, rc, message, asked", [
    ("request", "close", 52, "Empty reply from server", False),
    ("request", "reset", 56, "Connection reset by peer", False),
    ("response", "close", 52, "Empty reply from server", True),
])
def test_http_abort_request_or_response(proxy, origin, rules, target, how, rc, message, asked):
    path = f"/abort/{target}/{how}"
    rules({"id": "ab", "fault": "http-abort", "target": target, "how": how, "match": {"path": path}})
    mark = len(SEEN)
    r = curl(f"{origin}{path}", proxy=proxy)
    assert r.rc == rc and message in r.err and r.elapsed < 2
    assert seen_since(mark, path) == ([path] if asked else [])


@pytest.mark.parametrize("target", ["request", "response"])
def test_http_delay_request_or_response(proxy, origin, rules, target):
    path = f"/delay/{target}"
    rules({"id": "d", "fault": "http-delay", "target": target, "delay": "600ms",
           "match": {"path": path, "headers": {"x-slow": "y*"}}})
    r = curl(f"{origin}{path}", "-H", "x-slow: yes", proxy=proxy)
    assert (r.rc, r.status, r.body) == (0, 200, f"hello {path}\n".encode())
    assert 0.55 <= r.elapsed < 3
    fast = curl(f"{origin}{path}", "-H", "x-slow: no", proxy=proxy)  # the header does not match
    assert fast.status == 200 and fast.elapsed < 0.5


# -- HTTPS -----------------------------------------------------------------------------------

def test_https_with_the_generated_ca(proxy, tls_origin, rules, tmp_path):
    assert proxy.ca_cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    ok = curl(f"{tls_origin}/tls/ok", "--cacert", str(proxy.ca_cert), proxy=proxy)
    assert (ok.rc, ok.status, ok.body) == (0, 200, b"hello /tls/ok\n")
    untrusted = curl(f"{tls_origin}/tls/ok", proxy=proxy)
    assert untrusted.rc == 60 and "SSL certificate problem" in untrusted.err

    rules({"id": "tls-503", "fault": "http-error", "status": 503, "match": {"path": "/tls/err"}})
    err = curl(f"{tls_origin}/tls/err", "--cacert", str(proxy.ca_cert), proxy=proxy)
    assert (err.rc, err.status) == (0, 503) and err.headers["server"] == "cloudflare"

    # Python's http.client through a CONNECT tunnel, trusting the CA.
    host, port = tls_origin.rsplit("/", 1)[1].split(":")
    ctx = ssl.create_default_context(cafile=str(proxy.ca_cert))
    conn = http.client.HTTPSConnection(proxy.host, proxy.port, context=ctx, timeout=10)
    conn.set_tunnel(host, int(port))
    conn.request("GET", "/tls/err")
    resp = conn.getresponse()
    assert resp.status == 503 and b"Error 503" in resp.read()
    conn.close()

    # A probe run with client_env(): SSL_CERT_FILE + https_proxy, as the runner does.
    code = f"import urllib.request; print(urllib.request.urlopen('{tls_origin}/tls/env').read().decode())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=clean_env(**proxy.client_env()), timeout=20)
    assert done.returncode == 0 and done.stdout == "hello /tls/env\n\n", done.stderr
    assert log_for(proxy, "/tls/env")


# -- mitmdump run by hand ----------------------------------------------------------------------

def test_all_addons_run_under_a_mitmdump_started_by_hand(origin, proxy, tmp_path):
    """The documented command line: every fault type acts, the request log sees them."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for rule in [
        {"id": "e", "fault": "http-error", "status": 504, "match": {"path": "/alone/err"}},
        {"id": "b", "fault": "bot-mitigation", "action": "challenge",
         "signature": {"user_agent": "curl"}, "match": {"path": "/alone/bot"}},
        {"id": "g", "fault": "geo-block", "action": "http-451", "region": "ES",
         "block": ["127.0.0.1"], "match": {"path": "/alone/geo", "clients": ["127.0.0.0/8"]}},
        {"id": "p", "fault": "partial", "bytes": 5000, "match": {"path": "/blob/alone"}},
    ]:
        (rules_dir / f"{rule['id']}.json").write_text(json.dumps(rule))
    expect = {  # path -> what curl sees: exit code, status
        "/alone/err": (0, 504), "/alone/bot": (0, 403), "/alone/geo": (0, 451),
        "/blob/alone": (18, 200), "/alone/none": (0, 200),
    }
    port = free_port()
    argv = [mitmdump_executable(), "-s", str(FAULTS / "all.py"), "--listen-host", "127.0.0.1",
            "-p", str(port), "--set", f"chaos_rules_dir={rules_dir}",
            "--set", f"chaos_request_log={tmp_path / 'log.jsonl'}",
            "--set", f"confdir={proxy.confdir}"]  # its CA exists: no keygen race
    with open(tmp_path / "mitmdump.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        def ready():
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            return False

        assert wait_for(lambda: ready() or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, (tmp_path / "mitmdump.log").read_text()

        class ByHand:
            url = f"http://127.0.0.1:{port}"

        for path, seen in expect.items():
            r = curl(f"{origin}{path}", proxy=ByHand)
            assert (r.rc, r.status) == seen, (path, r)
        log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
        assert [(e["path"], e["fault"]) for e in log if e["event"] == "end"] == [
            ("/alone/err", "http-error"), ("/alone/bot", "bot-mitigation"),
            ("/alone/geo", "geo-block"), ("/blob/alone", "partial"), ("/alone/none", None)]
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- transparent mode in namespaces ----------------------------------------------------------

@pytest.fixture
def namespaces():
    """Two namespaces joined by a veth pair: client 198.18.<n>.1, server 198.18.<n>.2."""
    tag = secrets.token_hex(3)
    client, server = f"chaos-hc{tag}", f"chaos-hs{tag}"
    a, b = f"ch{tag}a", f"ch{tag}b"
    net = random.randint(100, 250)
    created = []

    def ip(*args, ns=None):
        subprocess.run(processes.netns_argv(ns, ["ip", *args]), check=True, capture_output=True)

    try:
        for ns in (client, server):
            ip("netns", "add", ns)
            created.append(ns)
            ip("link", "set", "lo", "up", ns=ns)
        ip("link", "add", a, "netns", client, "type", "veth", "peer", "name", b, "netns", server)
        ip("addr", "add", f"198.18.{net}.1/30", "dev", a, ns=client)
        ip("addr", "add", f"198.18.{net}.2/30", "dev", b, ns=server)
        ip("link", "set", a, "up", ns=client)
        ip("link", "set", b, "up", ns=server)
        yield client, server, f"198.18.{net}.2"
    finally:
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        assert not {client, server} & set(subprocess.run(
            ["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


def test_transparent_mode_redirects_the_targets_port(namespaces, tmp_path, monkeypatch):
    client, server, server_ip = namespaces
    monkeypatch.setenv("CHAOS_STATE_DIR", str(tmp_path))
    journal = Journal.create(f"http-tp-{secrets.token_hex(3)}")
    sock = in_netns(server, lambda: bound(server_ip, 8000))
    with serving(sock):
        try:
            proxy = start_http_proxy(journal, netns=client, listen="127.0.0.1:8080",
                                     mode="transparent", run_dir=journal.run_dir / "http-proxy",
                                     confdir=tmp_path / "conf")
            url = f"http://{server_ip}:8000/tp"
            direct = curl(url, netns=client)
            assert (direct.status, direct.body) == (200, b"hello /tp\n") and not proxy.requests()

            redirect = HttpRedirect(client, [8000, 8443], 8080, destinations=[f"{server_ip}/32"])
            assert "nat" not in iptables.save(client, "ipv4")  # nothing made it appear yet
            redirect.apply(journal)
            redirect.apply(journal)  # idempotent: still one jump
            jumps = [r for r in iptables.save(client, "ipv4")["nat"].rules if r.endswith(f"-j {redirect.chain}")]
            assert len(jumps) == 1, jumps
            seen = curl(url, netns=client)
            assert (seen.status, seen.body) == (200, b"hello /tp\n")
            assert [(e["host"], e["path"]) for e in proxy.requests()] == [(server_ip, "/tp")]

            rule = proxy.rule({"id": "tp-503", "fault": "http-error", "status": 503})
            rule.apply(journal)
            assert curl(url, netns=client).status == 503
            rule.revert(journal)

            # servers and ports match the original destination: a rule for another server or
            # port lets this request pass, one for its own acts
            for i, match in enumerate([{"servers": ["192.0.2.0/24"]}, {"ports": [8443, "9000:9100"]},
                                       {"servers": [server_ip], "ports": ["7999:8001"]}]):
                rule = proxy.rule({"id": f"tp-m{i}", "fault": "http-error", "status": 503,
                                   "match": match})
                rule.apply(journal)
                assert curl(url, netns=client).status == (503 if i == 2 else 200), match
                rule.revert(journal)
            with pytest.raises(ValueError, match="match.servers: an empty list"):
                proxy.rule({"id": "tp-none", "fault": "http-error", "match": {"servers": []}})

            assert not redirect.revert(journal)
            assert curl(url, netns=client).status == 200
            assert len(proxy.requests()) == 5  # the last request went direct
            # the chain is gone, and so is the nat table the redirect made appear
            assert "nat" not in iptables.save(client, "ipv4")
            assert not iptables.remove_chain(client, "ipv4", "nat", redirect.chain)  # idempotent
            assert not iptables.remove_chain("chaos-no-such-ns-x", "ipv4", "nat", redirect.chain)
        finally:
            failures = journal.rollback()
            journal.finish()
    assert not failures
    with pytest.raises(ValueError):
        HttpRedirect("", [80], 8080)
    with pytest.raises(ValueError):
        HttpRedirect(client, [8080], 8080)


# -- journal and recovery --------------------------------------------------------------------

def test_recover_kills_the_proxy_and_removes_rules(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAOS_STATE_DIR", str(tmp_path))
    journal = Journal.create(f"http-rec-{secrets.token_hex(3)}")
    proxy = start_http_proxy(journal, netns=None, listen=f"127.0.0.1:{free_port()}",
                             mode="reverse:http://127.0.0.1:9", run_dir=journal.run_dir / "hp",
                             confdir=tmp_path / "conf")
    rule = proxy.rule({"id": "rec", "fault": "http-error", "status": 500})
    rule.apply(journal)
    assert rule.path.exists() and proxy.alive()
    kinds = [json.loads(line).get("kind") for line in journal.path.read_text().splitlines()]
    assert kinds[1:] == ["process", "http-rule"]  # both on disk before they existed

    # The runner dies here; recovery reads the journal from disk, as `chaos recover` does.
    found = [j for j in unfinished(tmp_path) if j.run_id == journal.run_id]
    assert len(found) == 1
    crashed = found[0]
    crashed.reopen()
    assert not crashed.undo_entries(crashed.pending())
    assert not rule.path.exists()
    assert not is_alive(proxy.pid, proxy.entry.undo["start"])
    assert not proxy.accepts()
    # Undo functions are idempotent: a second recovery finds nothing left to do.
    undo_rule({"path": str(rule.path)})
    processes.undo(proxy.entry.undo)
    crashed.finish()
    journal.finish()  # the dead runner's handle: entries still pending in it, so only closes


def test_start_fails_cleanly_when_the_port_is_taken(tmp_path, monkeypatch):
    monkeypatch.setenv("CHAOS_STATE_DIR", str(tmp_path))
    journal = Journal.create(f"http-busy-{secrets.token_hex(3)}")
    with contextlib.closing(bound()) as taken:
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises((RuntimeError, TimeoutError)):
            start_http_proxy(journal, netns=None, listen=f"127.0.0.1:{port}",
                             run_dir=journal.run_dir / "hp", confdir=tmp_path / "conf", timeout=10)
    assert not journal.pending()  # the process was stopped and its record undone
    journal.finish()
