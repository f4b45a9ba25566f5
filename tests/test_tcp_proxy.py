"""The TCP fault proxy, end to end: a real proxy process, real backends, real clients.

One proxy process serves the whole module (started through start_tcp_proxy, journaled); each
test switches its toxics on with TcpToxic and off again in teardown, so tests are fast and
leave the proxy clean. Transparent mode runs in two namespaces the fixture creates.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

from chaos.injectors import iptables
from chaos.injectors.tcp_proxy import NatRedirect, TcpToxic, start_tcp_proxy, undo_toxic
from chaos.injectors.tcp_toxics import RuleError
from chaos.journal import Journal, is_alive

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("curl"),
                                reason="needs root (namespaces, iptables) and curl")

PATTERN = bytes(range(256)) * 4096  # 1 MiB; bodies are prefixes of it, so content is checkable


def body(n: int) -> bytes:
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


# -- backends --------------------------------------------------------------------------------
class RawHandler(socketserver.BaseRequestHandler):
    """One command line, then: 'send N' (N pattern bytes, close), 'echo' (until EOF),
    'sink TOKEN' (count what arrives under TOKEN). Anything else is kept in ``strangers``."""

    def handle(self) -> None:
        sock = self.request
        line = b""
        while not line.endswith(b"\n"):
            chunk = sock.recv(1)
            if not chunk:
                break
            line += chunk
        cmd, _, arg = line.decode(errors="replace").strip().partition(" ")
        if cmd not in ("send", "echo", "sink"):
            while chunk := sock.recv(65536):
                line += chunk
            self.server.strangers.append(line)
            return
        if cmd == "send":
            sock.sendall(body(int(arg)))
        elif cmd == "echo":
            while data := sock.recv(65536):
                sock.sendall(data)
        elif cmd == "sink":
            while data := sock.recv(65536):
                self.server.sunk[arg] += len(data)


class HttpHandler(http.server.BaseHTTPRequestHandler):
    """GET /bytes/N answers N pattern bytes; every request path is remembered."""

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        n = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/bytes/") else 2
        self.send_response(200)
        self.send_header("Content-Length", str(n))
        self.end_headers()
        self.wfile.write(body(n))

    def log_message(self, *args) -> None:
        pass


def _serve(server) -> None:
    threading.Thread(target=server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def backends():
    raw = socketserver.ThreadingTCPServer(("127.0.0.1", 0), RawHandler)
    raw.daemon_threads = True
    raw.sunk = defaultdict(int)
    raw.strangers = []
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HttpHandler)
    web.daemon_threads = True
    web.paths = []
    _serve(raw)
    _serve(web)
    yield {"raw": raw, "web": web}
    raw.shutdown()
    web.shutdown()
    raw.server_close()
    web.server_close()


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    j = Journal.create(f"tcp-{secrets.token_hex(4)}", base=tmp_path_factory.mktemp("state"))
    yield j
    failures = j.rollback()
    j.finish()
    assert not failures, failures


@pytest.fixture(scope="module")
def proxy(journal, backends):
    raw_port = backends["raw"].server_address[1]
    web_port = backends["web"].server_address[1]
    config = {"listeners": [
        {"name": "raw", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{raw_port}"},
        {"name": "web", "listen": "127.0.0.1:0", "upstream": f"127.0.0.1:{web_port}"},
    ]}
    p = start_tcp_proxy(journal, netns=None, config=config, run_dir=journal.run_dir)
    yield p
    p.stop(journal)
    assert not is_alive(p.pid, p.start)


@pytest.fixture
def toxic(proxy, journal):
    """toxic(rule) switches a rule on for this test; teardown switches it off (journal undo)."""
    applied = []

    def add(**rule) -> TcpToxic:
        t = TcpToxic(proxy, rule)
        t.apply(journal)
        applied.append(t)
        return t

    yield add
    for t in reversed(applied):
        assert not t.revert(journal)
    assert not list(proxy.rules_dir.glob("*.json"))


# -- clients ---------------------------------------------------------------------------------
def curl(proxy, path: str, *args: str, timeout: float = 3.0, netns: str | None = None,
         url: str | None = None):
    """-> (exit code, stderr message, bytes received, seconds)."""
    host, port = proxy.address("web") if proxy else (None, None)
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}",
            *args, url or f"http://{host}:{port}{path}"]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5)
    size, seconds = done.stdout.split()
    return done.returncode, done.stderr.strip(), int(size), float(seconds)


def connect(proxy, command: str) -> socket.socket:
    sock = socket.create_connection(proxy.address("raw"), timeout=5)
    sock.sendall(command.encode() + b"\n")
    return sock


def read_all(sock: socket.socket, timeout: float = 5.0):
    """-> (bytes, how it ended: 'eof' | 'reset' | 'timeout', seconds, read sizes)."""
    sock.settimeout(timeout)
    data, sizes, start = bytearray(), [], time.monotonic()
    try:
        while chunk := sock.recv(65536):
            data += chunk
            sizes.append(len(chunk))
        end = "eof"
    except ConnectionResetError:
        end = "reset"
    except TimeoutError:
        end = "timeout"
    return bytes(data), end, time.monotonic() - start, sizes


def fetch(proxy, command: str, timeout: float = 5.0):
    """connect + command + read_all, where a reset may come at any step (a reset at once can
    beat connect() returning or the command being sent)."""
    try:
        sock = connect(proxy, command)
    except ConnectionResetError:
        return b"", "reset", 0.0, []
    try:
        return read_all(sock, timeout)
    finally:
        sock.close()


def wait_log(proxy, predicate, timeout: float = 3.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in reversed(proxy.connections()):
            if predicate(record):
                return record
        time.sleep(0.01)
    raise AssertionError(f"no such connection in the log: {proxy.connections()[-5:]}")


def local_port(sock: socket.socket) -> str:
    return f"127.0.0.1:{sock.getsockname()[1]}"


# -- pass-through ----------------------------------------------------------------------------
def test_pass_through_relays_bytes_and_logs_the_connection(proxy, backends):
    rc, err, size, _ = curl(proxy, "/bytes/3000000")
    assert (rc, err, size) == (0, "", 3_000_000)
    sock = connect(proxy, "send 123456")
    client = local_port(sock)
    data, end, _, _ = read_all(sock)
    sock.close()
    assert (data, end) == (body(123456), "eof")
    record = wait_log(proxy, lambda r: r["client"] == client)
    assert record["toxics"] == [] and record["end"] == "eof"
    assert record["bytes_down"] == 123456 and record["bytes_up"] == len("send 123456\n")
    assert record["destination"] == f"127.0.0.1:{backends['raw'].server_address[1]}"


def test_half_close_is_passed_on(proxy):
    sock = connect(proxy, "echo")
    sock.sendall(b"hello")
    sock.shutdown(socket.SHUT_WR)
    data, end, _, _ = read_all(sock)
    sock.close()
    assert (data, end) == (b"hello", "eof")


def test_unreachable_upstream_resets_the_client(journal, tmp_path):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, not listening: connections to it are refused
    config = {"listeners": [{"name": "x", "listen": "127.0.0.1:0",
                             "upstream": f"127.0.0.1:{dead.getsockname()[1]}"}]}
    p = start_tcp_proxy(journal, netns=None, config=config, run_dir=tmp_path)
    try:
        sock = socket.create_connection(p.address("x"))
        _, end, seconds, _ = read_all(sock)
        assert end == "reset" and seconds < 1
        assert wait_log(p, lambda r: True)["end"] == "upstream-connect-failed: Connection refused"
    finally:
        p.stop(journal)
        dead.close()


def test_a_bad_config_fails_start_with_the_reason(journal, tmp_path):
    config = {"listeners": [{"name": "x", "listen": "127.0.0.1:0", "upstream": "registry.test:443"}]}
    with pytest.raises(RuntimeError, match="expected IP:port, got 'registry.test:443'"):
        start_tcp_proxy(journal, netns=None, config=config, run_dir=tmp_path, timeout=5)
    started = [e for e in journal.entries if e.what == "tcp proxy (x)"]
    assert started and all(e.undone for e in started)  # the failed process was reaped


# -- hang ------------------------------------------------------------------------------------
def test_hang_at_accept_never_answers_and_never_contacts_upstream(proxy, toxic, backends):
    toxic(id="h", toxic="hang", at="accept")
    before = len(backends["web"].paths)
    rc, err, size, seconds = curl(proxy, "/bytes/10", "--max-time", "0.6")
    assert rc == 28 and "Operation timed out" in err and "0 bytes received" in err
    assert size == 0 and 0.55 < seconds < 1.5
    assert len(backends["web"].paths) == before
    record = wait_log(proxy, lambda r: r["toxics"] == ["h:hang"])
    assert record["end"] == "client-closed" and record["bytes_up"] == 0


def test_hang_after_request_reaches_upstream_but_no_response(proxy, toxic, backends):
    toxic(id="h", toxic="hang", at="after-request")
    rc, err, size, _ = curl(proxy, "/bytes/77", "--max-time", "0.6")
    assert rc == 28 and "0 bytes received" in err and size == 0
    assert backends["web"].paths[-1] == "/bytes/77"


def test_hang_after_bytes_keeps_the_connection_open(proxy, toxic):
    toxic(id="h", toxic="hang", at="after-bytes", bytes=1000)
    sock = connect(proxy, "send 5000")
    data, end, _, _ = read_all(sock, timeout=0.5)
    assert (data, end) == (body(1000), "timeout")  # no FIN, no RST: it just stops
    sock.close()
    rc, err, _, _ = curl(proxy, "/bytes/5000", "--max-time", "0.5")
    assert rc == 28 and "Operation timed out" in err


def test_hang_upstream_direction_stalls_the_request(proxy, toxic, backends):
    toxic(id="h", toxic="hang", at="after-bytes", bytes=100, direction="upstream")
    token = secrets.token_hex(4)
    sock = connect(proxy, f"sink {token}")
    sock.sendall(b"y" * 50_000)
    time.sleep(0.3)
    # the command line (len "sink xxxxxxxx\n" = 14) counts towards the 100 bytes
    assert backends["raw"].sunk[token] == 100 - 14
    sock.close()


def test_hang_for_a_duration_then_resumes(proxy, toxic):
    toxic(id="h", toxic="hang", at="accept", **{"for": "400ms"}, then=None)  # null: the default
    rc, err, size, seconds = curl(proxy, "/bytes/1000")
    assert (rc, err, size) == (0, "", 1000)
    assert 0.4 <= seconds < 0.6


@pytest.mark.parametrize("then, ending", [("close", "eof"), ("reset", "reset")])
def test_hang_then_close_or_reset(proxy, toxic, then, ending):
    toxic(id="h", toxic="hang", at="after-request", **{"for": 0.3}, then=then)
    sock = connect(proxy, "send 100")
    data, end, seconds, _ = read_all(sock)
    sock.close()
    assert (data, end) == (b"", ending)
    assert 0.28 < seconds < 0.5


def test_client_that_gives_up_is_let_go_at_once(proxy, toxic):
    toxic(id="h", toxic="hang", at="accept")
    sock = connect(proxy, "send 10")
    client = local_port(sock)
    time.sleep(0.1)
    closed = time.time()
    sock.close()
    record = wait_log(proxy, lambda r: r["client"] == client)
    assert record["end"] == "client-closed"
    assert record["time"] + record["duration"] - closed < 0.1


# -- slow ------------------------------------------------------------------------------------
def test_slow_latency_adds_to_each_round_trip(proxy, toxic):
    toxic(id="s", toxic="slow", latency=0.1, direction="both")
    sock = connect(proxy, "echo")
    sock.settimeout(2)
    rtts = []
    for _ in range(3):
        start = time.monotonic()
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        rtts.append(time.monotonic() - start)
    sock.close()
    assert all(0.2 <= rtt < 0.3 for rtt in rtts), rtts


def test_slow_jitter_varies_the_delay(proxy, toxic):
    toxic(id="s", toxic="slow", latency=0.05, jitter=0.04)
    sock = connect(proxy, "echo")
    sock.settimeout(2)
    rtts = []
    for _ in range(8):
        start = time.monotonic()
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        rtts.append(time.monotonic() - start)
    sock.close()
    assert all(0.01 - 0.005 <= rtt < 0.15 for rtt in rtts), rtts
    assert max(rtts) - min(rtts) > 0.01, rtts


def test_slow_rate_caps_bandwidth(proxy, toxic):
    toxic(id="s", toxic="slow", rate=400_000)
    rc, _, size, seconds = curl(proxy, "/bytes/200000")
    assert (rc, size) == (0, 200_000)
    assert 0.45 < seconds < 0.8  # 200 kB at 400 kB/s


def test_slow_drip_sends_n_bytes_every_t(proxy, toxic):
    toxic(id="s", toxic="slow", drip={"bytes": 10, "every": 0.05})
    sock = connect(proxy, "send 50")
    data, end, seconds, sizes = read_all(sock)
    sock.close()
    assert (data, end) == (body(50), "eof")
    assert max(sizes) <= 10 and len(sizes) == 5
    assert 0.2 <= seconds < 0.4


def test_slow_slicer_cuts_into_small_delayed_segments(proxy, toxic):
    toxic(id="s", toxic="slow", slicer={"size": 100, "variation": 50, "delay": 0.02})
    sock = connect(proxy, "send 3000")
    data, end, seconds, sizes = read_all(sock)
    sock.close()
    assert (data, end) == (body(3000), "eof")
    assert len(sizes) >= 15  # at most 150 bytes a segment: 20 or more, unless reads merged some
    assert seconds >= 19 * 0.02 * 0.9


def test_slow_close_holds_the_fin_back(proxy, toxic):
    toxic(id="s", toxic="slow", close_delay=0.4)
    sock = connect(proxy, "send 1000")
    sock.settimeout(2)
    start = time.monotonic()
    got = b""
    while len(got) < 1000:
        got += sock.recv(65536)
    first = time.monotonic() - start
    data, end, _, _ = read_all(sock)
    total = time.monotonic() - start
    sock.close()
    assert got == body(1000) and (data, end) == (b"", "eof")
    assert first < 0.15 and 0.4 <= total < 0.6


# -- reset, close, garbage ---------------------------------------------------------------------
def test_reset_at_once(proxy, toxic, backends):
    toxic(id="r", toxic="reset")
    before = len(backends["web"].paths)
    sock = socket.create_connection(proxy.address("raw"))
    _, end, seconds, _ = read_all(sock)
    sock.close()
    assert end == "reset" and seconds < 0.3
    rc, err, size, _ = curl(proxy, "/bytes/10")
    assert rc in (7, 55, 56) and size == 0, err  # the RST may beat curl's request or its read
    assert len(backends["web"].paths) == before


def test_reset_after_a_delay_is_a_recv_failure_for_curl(proxy, toxic):
    toxic(id="r", toxic="reset", delay=0.2)
    rc, err, size, seconds = curl(proxy, "/bytes/10")
    assert rc == 56 and err == "curl: (56) Recv failure: Connection reset by peer"
    assert size == 0 and 0.2 <= seconds < 0.4


def test_reset_after_n_bytes(proxy, toxic):
    toxic(id="r", toxic="reset", after=20_000)
    sock = connect(proxy, "send 100000")
    data, end, _, _ = read_all(sock)
    sock.close()
    assert end == "reset" and data == body(20_000)[: len(data)] and len(data) <= 20_000
    rc, err, size, _ = curl(proxy, "/bytes/100000")
    assert rc == 56 and "Connection reset by peer" in err and size < 20_000


@pytest.mark.parametrize("wait_ack", [False, True])
def test_reset_after_n_bytes_loses_what_a_slow_reader_did_not_get(proxy, toxic, wait_ack):
    """A real RST throws away what the receiver has not acknowledged: a client that is not
    reading when the Nth byte leaves has fewer than N bytes and resumes from there. With
    wait_ack the RST waits for its ACKs, and it has exactly N."""
    n = 400_000
    toxic(id="r", toxic="reset", after=n, wait_ack=wait_ack)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a small window: a slow reader
    sock.connect(proxy.address("raw"))
    sock.sendall(b"send 1000000\n")
    time.sleep(0.5)  # not reading while the proxy writes the N bytes
    data, end, _, _ = read_all(sock)
    sock.close()
    assert end == "reset" and data == body(n)[:len(data)]
    if wait_ack:
        assert len(data) == n
    else:
        assert len(data) < n // 2, len(data)  # what its window held, not N


def test_close_with_no_response(proxy, toxic):
    toxic(id="c", toxic="reset", how="fin")
    rc, err, size, seconds = curl(proxy, "/bytes/10")
    assert rc == 52 and err == "curl: (52) Empty reply from server" and size == 0
    assert seconds < 0.3


def test_close_mid_stream(proxy, toxic):
    toxic(id="c", toxic="reset", how="fin", after=5000)
    sock = connect(proxy, "send 100000")
    data, end, _, _ = read_all(sock)
    sock.close()
    assert (data, end) == (body(5000), "eof")  # a clean FIN, not a reset
    rc, err, _, _ = curl(proxy, "/bytes/100000")
    assert rc == 18 and "transfer closed with" in err and "bytes remaining to read" in err


def test_garbage_instead_of_the_response(proxy, toxic, backends):
    toxic(id="g", toxic="garbage", bytes=300)
    before = len(backends["web"].paths)
    sock = connect(proxy, "send 1000")
    data, end, _, _ = read_all(sock)
    sock.close()
    assert end == "eof" and len(data) == 300 and data != body(300)
    rc, err, _, _ = curl(proxy, "/bytes/10")
    assert rc in (1, 8) and ("HTTP/0.9" in err or "Weird server reply" in err), err
    assert len(backends["web"].paths) == before


def test_garbage_upstream_reaches_the_server_instead_of_the_request(proxy, toxic, backends):
    toxic(id="g", toxic="garbage", bytes=400, direction="upstream")
    sock = connect(proxy, "send 10")
    data, end, _, _ = read_all(sock)
    sock.close()
    assert (data, end) == (b"", "eof")  # the server took it for no command and hung up
    garbage = backends["raw"].strangers[-1]
    assert len(garbage) == 400 and b"send 10" not in garbage


# -- rules: probability, match, reload ---------------------------------------------------------
def test_probability_is_rolled_per_connection(proxy, toxic):
    toxic(id="p", toxic="reset", probability=0.5)
    before = len(proxy.connections())
    outcomes = [fetch(proxy, "send 10")[1] for _ in range(200)]
    resets = outcomes.count("reset")
    assert 60 <= resets <= 140 and resets + outcomes.count("eof") == 200
    deadline = time.monotonic() + 3  # a line is written just after its sockets are closed
    while len(records := proxy.connections()[before:]) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sum(r["toxics"] == ["p:reset"] for r in records) == resets


def test_match_on_destination_and_listener(proxy, toxic, backends):
    toxic(id="m1", toxic="reset", how="fin", match={"port": backends["web"].server_address[1]})
    toxic(id="m2", toxic="reset", match={"addr": "198.18.0.0/15"})
    toxic(id="m3", toxic="reset", match={"listener": "web", "addr": "127.0.0.1"}, delay=5)
    rc, _, _, seconds = curl(proxy, "/bytes/10")  # m1 fits (and acts first), m3 fits too
    assert rc == 52 and seconds < 1
    sock = connect(proxy, "send 10")  # raw listener: nothing fits
    data, end, _, _ = read_all(sock)
    sock.close()
    assert (data, end) == (body(10), "eof")
    record = wait_log(proxy, lambda r: r["listener"] == "web")
    assert record["toxics"] == ["m1:close", "m3:reset"]


def test_switching_on_affects_new_connections_only(proxy, toxic):
    open_conn = connect(proxy, "echo")
    open_conn.settimeout(2)
    toxic(id="r", toxic="reset")
    open_conn.sendall(b"still here")
    assert open_conn.recv(100) == b"still here"
    assert fetch(proxy, "send 10")[1] == "reset"
    open_conn.close()


def test_switching_off_releases_held_connections(proxy, journal):
    t = TcpToxic(proxy, {"id": "h", "toxic": "hang", "at": "after-request"})
    t.apply(journal)
    sock = connect(proxy, "send 2000")
    sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        sock.recv(10)
    released = time.monotonic()
    assert not t.revert(journal)
    data, end, _, _ = read_all(sock)
    sock.close()
    assert (data, end) == (body(2000), "eof") and time.monotonic() - released < 0.2
    assert curl(proxy, "/bytes/10")[0] == 0


def test_switching_off_stops_a_pending_reset_and_slow_pacing(proxy, journal):
    reset = TcpToxic(proxy, {"id": "r", "toxic": "reset", "delay": 5})
    slow = TcpToxic(proxy, {"id": "s", "toxic": "slow", "drip": {"bytes": 1, "every": 1}})
    reset.apply(journal)
    slow.apply(journal)
    sock = connect(proxy, "send 5000")
    time.sleep(0.2)
    switched = time.monotonic()
    assert not reset.revert(journal) and not slow.revert(journal)
    data, end, _, _ = read_all(sock)
    sock.close()
    # no reset ever comes, and the 5000 bytes do not take 5000 s
    assert (data, end) == (body(5000), "eof") and time.monotonic() - switched < 0.5


def test_a_rule_the_proxy_rejects_is_reported_and_others_keep_working(proxy, toxic):
    with pytest.raises(RuleError, match="at: Input should be"):
        TcpToxic(proxy, {"id": "bad", "toxic": "hang", "at": "later"})
    with pytest.raises(RuleError, match="unknown key"):
        TcpToxic(proxy, {"id": "bad", "toxic": "reset", "afterr": 3})
    with pytest.raises(RuleError, match="at: first-byte needs after: 0"):
        TcpToxic(proxy, {"id": "bad", "toxic": "reset", "at": "first-byte", "after": 10})
    with pytest.raises(RuleError, match="match.port: an empty list"):
        TcpToxic(proxy, {"id": "bad", "toxic": "reset", "how": "fin", "match": {"port": []}})
    broken = proxy.rules_dir / "broken.json"
    broken.write_text("{not json")
    try:
        toxic(id="c", toxic="reset", how="fin")
        status = json.loads((proxy.rules_dir / ".status").read_text())
        assert "broken.json" in status["errors"] and list(status["rules"]) == ["c"]
        assert curl(proxy, "/bytes/10")[0] == 52
    finally:
        broken.unlink()


# -- journal -----------------------------------------------------------------------------------
def test_recovery_undoes_toxic_and_process(tmp_path, monkeypatch, backends):
    monkeypatch.setenv("CHAOS_STATE_DIR", str(tmp_path))
    journal = Journal.create("crashed")
    config = {"listeners": [{"name": "raw", "listen": "127.0.0.1:0",
                             "upstream": f"127.0.0.1:{backends['raw'].server_address[1]}"}]}
    p = start_tcp_proxy(journal, netns=None, config=config, run_dir=journal.run_dir)
    held = None
    try:
        TcpToxic(p, {"id": "h", "toxic": "hang", "at": "accept"}).apply(journal)
        rule_file = p.rules_dir / "h.json"
        assert rule_file.exists()
        held = socket.create_connection(p.address("raw"))
        time.sleep(0.1)
        # what `chaos recover` does: read the journal from disk, undo what is pending
        on_disk = Journal.read(journal.path)
        assert [e.kind for e in on_disk.pending()] == ["process", "tcp-toxic"]
        on_disk.reopen()
        assert not on_disk.undo_entries(on_disk.pending())
        assert not rule_file.exists() and not is_alive(p.pid, p.start)
        undo_toxic(on_disk.entries[1].undo)  # idempotent: nothing left to do
        assert Journal.read(journal.path).pending() == []
        assert p.connections()[-1]["end"] == "proxy-stopped"
    finally:
        if held:
            held.close()
        p.proc.wait(timeout=5)


# -- transparent mode --------------------------------------------------------------------------
@pytest.fixture
def netpair(tmp_path):
    """Two namespaces joined by a veth: the client side (proxy runs there) and a server side
    with an HTTP server on 198.18.<n>.2:8080."""
    tag = secrets.token_hex(3)
    client, server = f"chaos-tpc-{tag}", f"chaos-tps-{tag}"
    net = f"198.18.{int(tag[:2], 16)}"
    sh = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True)  # noqa: E731
    web = None
    try:
        sh("ip", "netns", "add", client)
        sh("ip", "netns", "add", server)
        sh("ip", "link", "add", f"ch{tag}a", "netns", client, "type", "veth",
           "peer", "name", f"ch{tag}b", "netns", server)
        for ns, dev, addr in ((client, f"ch{tag}a", f"{net}.1"), (server, f"ch{tag}b", f"{net}.2")):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        (tmp_path / "www").mkdir()
        (tmp_path / "www" / "file").write_bytes(body(50_000))
        web = subprocess.Popen(["ip", "netns", "exec", server, sys.executable, "-m", "http.server",
                                "--bind", f"{net}.2", "--directory", str(tmp_path / "www"), "8080"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while subprocess.run(["ip", "netns", "exec", client, "curl", "-sf", "-o", "/dev/null",
                              f"http://{net}.2:8080/file"]).returncode != 0:
            assert time.monotonic() < deadline, "http server in the namespace did not come up"
            time.sleep(0.05)
        yield {"client": client, "server": server, "addr": f"{net}.2", "url": f"http://{net}.2:8080/file"}
    finally:
        if web:
            web.kill()
            web.wait()
        for ns in (client, server):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_transparent_mode_through_nat_redirect(netpair, tmp_path):
    journal = Journal.create("transparent", base=tmp_path / "state")
    config = {"listeners": [{"name": "t", "listen": "127.0.0.1:0", "transparent": True}]}
    p = start_tcp_proxy(journal, netns=netpair["client"], config=config, run_dir=tmp_path)
    port = p.address("t")[1]
    redirect = NatRedirect(netpair["client"], [(netpair["addr"], 8080)], port)
    ns = netpair["client"]
    try:
        redirect.apply(journal)
        redirect.apply(journal)  # idempotent: still one jump, one rule
        saved = subprocess.run(["ip", "netns", "exec", ns, "iptables-save", "-t", "nat"],
                               capture_output=True, text=True, check=True).stdout
        assert saved.count(f"-j {redirect.chain}") == 1 and saved.count("REDIRECT") == 1

        # no client settings: curl goes to the server's address, the proxy sees and relays it
        rc, err, size, _ = curl(None, "", netns=ns, url=netpair["url"])
        assert (rc, err, size) == (0, "", 50_000)
        record = wait_log(p, lambda r: r["listener"] == "t")
        assert record["destination"] == f"{netpair['addr']}:8080" and record["end"] == "eof"

        # a connection straight to the listener has no other destination: reset, not looped
        rc, _, _, _ = curl(None, "", netns=ns, url=f"http://127.0.0.1:{port}/file")
        assert rc in (7, 56)
        assert wait_log(p, lambda r: r["end"] == "no-original-destination")["destination"] is None

        # lists of addresses and ports: a rule for other servers leaves this one alone
        TcpToxic(p, {"id": "o", "toxic": "reset", "match": {"addr": ["192.0.2.1", "192.0.2.8/29"],
                                                            "port": [80, 8080]}}).apply(journal)
        assert curl(None, "", netns=ns, url=netpair["url"])[:3] == (0, "", 50_000)
        TcpToxic(p, {"id": "r", "toxic": "reset", "delay": 0.1,
                     "match": {"addr": ["192.0.2.1", netpair["addr"]],
                               "port": [80, 8080]}}).apply(journal)
        rc, err, _, _ = curl(None, "", netns=ns, url=netpair["url"])
        assert rc == 56 and "Connection reset by peer" in err

        before = len(p.connections())
        assert not redirect.revert(journal)
        assert "nat" not in iptables.save(ns, "ipv4")  # chain gone, and the table it made appear
        assert not iptables.remove_chain(ns, "ipv4", "nat", redirect.chain)  # idempotent
        rc, _, size, _ = curl(None, "", netns=ns, url=netpair["url"])  # direct again: no toxic
        assert (rc, size) == (0, 50_000) and len(p.connections()) == before
    finally:
        assert not journal.rollback()
        journal.finish()
        p.proc.wait(timeout=5)
