"""`chaos serve` through the real toxiproxy-python client (PyPI, 0.1.1), with real loopback sockets.

The client library is used as its users use it: ``Toxiproxy().create``, ``proxy.add_toxic``,
``destroy_toxic``, ``disable``/``enable``, ``populate``, ``reset``. It has no call to update a
toxic, so updates go through its own ``APIConsumer.post`` (what it would send). It needs no
shim on Python 3.11 (its ``future`` dependency imports there).

Each toxic's effect is checked on what a client socket sees: the backend answers a line
``N\\n`` with N bytes, then closes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
import toxiproxy  # the test extra toxiproxy-python, as its users install it
from toxiproxy.api import APIConsumer
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

from chaos.journal import is_alive
from conftest import ROOT, chaos_cmd


# -- the backend -------------------------------------------------------------------------------
class Backend:
    """Answers ``N\\n`` with N bytes of b"x" and a close (``N+\\n``: and stays open until the
    client closes, at most 5 s); notes when each request arrived."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.arrived: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            try:
                while not data.endswith(b"\n"):
                    chunk = conn.recv(100)
                    if not chunk:
                        return
                    data += chunk
                self.arrived.append(time.monotonic())
                conn.sendall(b"x" * int(data.rstrip(b"+\n")))
                if data.endswith(b"+\n"):
                    conn.settimeout(5)
                    conn.recv(1)
            except OSError:
                return


@pytest.fixture(scope="module")
def backend():
    b = Backend()
    yield b
    b.sock.close()


@pytest.fixture
def server(toxiproxy):
    """toxiproxy-python pointed at the session's `chaos serve` (the plugin's fixture)."""
    APIConsumer.host, APIConsumer.port = toxiproxy.host, toxiproxy.port
    return toxiproxy_client()


def toxiproxy_client():
    return toxiproxy.Toxiproxy()


def address(proxy) -> tuple[str, int]:
    host, _, port = proxy.listen.rpartition(":")
    return host, int(port)


def fetch(proxy, n: int, timeout: float = 5.0, *, stay: bool = False
          ) -> tuple[bytes, float, list[tuple[float, int]]]:
    """Ask for n bytes (``stay``: the backend keeps the connection open after them); (what
    came, seconds until EOF, [(time, size) of each read])."""
    start = time.monotonic()
    reads = []
    data = b""
    with socket.create_connection(address(proxy), timeout=timeout) as s:
        s.sendall(b"%d%s\n" % (n, b"+" if stay else b""))
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            reads.append((time.monotonic() - start, len(chunk)))
            data += chunk
    return data, time.monotonic() - start, reads


def api(method: str, path: str, body=None) -> tuple[int, str, str]:
    """Raw call: (status, content type, body), for what the client library hides."""
    url = f"http://{APIConsumer.host}:{APIConsumer.port}{path}"
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


# -- proxies -------------------------------------------------------------------------------------
def test_proxy_lifecycle_and_json(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="shop db")  # any name
    assert proxy.enabled is True and proxy.listen.startswith("127.0.0.1:")
    assert address(proxy)[1] != 0  # the bound port, as Toxiproxy reports it
    assert fetch(proxy, 1000)[0] == b"x" * 1000
    listed = server.proxies()
    assert set(listed) == {"shop db"} and listed["shop db"].listen == proxy.listen
    status, ctype, body = api("GET", "/proxies/shop%20db")
    assert status == 200 and ctype == "application/json"
    assert json.loads(body) == {"name": "shop db", "listen": proxy.listen,
                                "upstream": f"127.0.0.1:{backend.port}", "enabled": True, "toxics": []}
    deadline = time.monotonic() + 5  # the TCP proxy logs a connection when it has ended
    while (seen := json.loads(api("GET", "/chaos/proxies/shop%20db/connections")[2]))["ended"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert seen["ended"] == 1 and seen["connections"][0]["bytes_down"] == 1000
    with pytest.raises(ProxyExists):
        server.create(upstream=f"127.0.0.1:{backend.port}", name="shop db")
    assert proxy.destroy()
    assert server.proxies() == {}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address(proxy), timeout=2).close()


def test_errors_are_toxiproxys(server, backend):
    assert api("GET", "/proxies/nope") == (404, "text/plain; charset=utf-8",
                                           '{"error":"proxy not found","status":404}\n')
    assert api("POST", "/proxies", {"name": "a"})[2] == (
        '{"error":"missing required field: upstream","status":400}\n')
    assert api("POST", "/proxies", b"{")[0] == 400
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="a")
    with pytest.raises(InvalidToxic, match="stream was invalid"):
        proxy.add_toxic(type="latency", stream="sideways")
    with pytest.raises(InvalidToxic, match="invalid toxic type"):
        proxy.add_toxic(type="wobble")
    proxy.add_toxic(type="latency", attributes={"latency": 1})
    status, _, body = api("POST", "/proxies/a/toxics", {"type": "latency"})
    assert (status, json.loads(body)) == (409, {"error": "toxic already exists", "status": 409})
    with pytest.raises(NotFound):
        proxy.destroy_toxic("latency_upstream")
    assert api("GET", "/proxies/a/toxics/nope")[0] == 404
    assert api("PUT", "/proxies")[0] == 405
    status, _, body = api("PATCH", "/proxies/a", {"enabled": False})  # PATCH, as newer clients send
    assert status == 200 and json.loads(body)["enabled"] is False
    assert '"toxicity":1}' in api("PATCH", "/proxies/a/toxics/latency_downstream", {"toxicity": 1})[2]
    assert api("GET", "/nowhere")[:1] == (404,)
    req = urllib.request.Request(f"http://{APIConsumer.host}:{APIConsumer.port}/version",
                                 headers={"User-Agent": "Mozilla/5.0"})
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(req, timeout=5)
    assert json.loads(server.version()) == {"version": "2.12.0"}


def test_chunked_bodies_and_keep_alive(server, backend):
    """A body sent chunked (Node's http without a length does) is read whole, and the next
    request on the same connection is answered too."""
    body = json.dumps({"name": "chunky", "upstream": f"127.0.0.1:{backend.port}"}).encode()
    request = (b"POST /proxies HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"%x\r\n%s\r\n" % (10, body[:10]) + b"%x\r\n%s\r\n" % (len(body) - 10, body[10:])
               + b"0\r\n\r\n" + b"GET /proxies/chunky HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection((APIConsumer.host, APIConsumer.port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            data += s.recv(65536)
    assert data.startswith(b"HTTP/1.1 201 ") and b"HTTP/1.1 200 " in data
    assert server.get_proxy("chunky").upstream == f"127.0.0.1:{backend.port}"


def test_disable_cuts_connections_and_enable_listens_again(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="db")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})  # holds an open connection
    held = socket.create_connection(address(proxy), timeout=5)
    held.sendall(b"10\n")
    time.sleep(0.2)
    before = proxy.listen
    with proxy.down():
        assert held.recv(10) == b""  # cut, as Toxiproxy's disable does
        assert server.proxies()["db"].enabled is False
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address(proxy), timeout=2).close()
    held.close()
    assert server.proxies()["db"].listen == before  # the same port again
    proxy.destroy_toxic("timeout_downstream")
    assert fetch(proxy, 100)[0] == b"x" * 100


def test_populate_and_reset(server, backend):
    up = f"127.0.0.1:{backend.port}"
    made = server.populate([{"name": "one", "upstream": up, "listen": "127.0.0.1:0"},
                            {"name": "two", "upstream": up, "listen": "127.0.0.1:0"}])
    assert sorted(p.name for p in made) == ["one", "two"]
    status, _, body = api("POST", "/populate", [{"name": "three"}])
    assert (status, json.loads(body)) == (400, {"error": "missing required field: upstream at proxy 1",
                                               "status": 400})
    one = server.get_proxy("one")
    one.add_toxic(type="limit_data", attributes={"bytes": 10})
    one.disable()
    assert server.reset()
    one = server.get_proxy("one")
    assert one.enabled and one.toxics() == {}
    assert fetch(one, 500)[0] == b"x" * 500


# -- each toxic, with its effect -------------------------------------------------------------------
@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_latency(server, backend, stream):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="lat")
    assert fetch(proxy, 10)[1] < 0.2
    proxy.add_toxic(type="latency", stream=stream, attributes={"latency": 300, "jitter": 50})
    data, took, _ = fetch(proxy, 10)
    assert data == b"x" * 10 and 0.25 <= took < 1.5
    proxy.destroy_toxic(f"latency_{stream}")
    assert fetch(proxy, 10)[1] < 0.2


def test_update_toxic_changes_it(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="upd")
    proxy.add_toxic(type="latency", name="slow", attributes={"latency": 100})
    assert 0.08 <= fetch(proxy, 10)[1] < 0.6
    reply = APIConsumer.post("/proxies/upd/toxics/slow", json={"attributes": {"latency": 700}}).json()
    assert reply == {"attributes": {"latency": 700, "jitter": 0}, "name": "slow", "type": "latency",
                     "stream": "downstream", "toxicity": 1}
    assert fetch(proxy, 10)[1] >= 0.65
    APIConsumer.post("/proxies/upd/toxics/slow", json={"toxicity": 0})  # never acts
    assert fetch(proxy, 10)[1] < 0.2
    assert proxy.get_toxic("slow").toxicity == 0


def test_bandwidth(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="bw")
    proxy.add_toxic(type="bandwidth", attributes={"rate": 100})  # KB/s
    data, took, _ = fetch(proxy, 60_000)
    assert len(data) == 60_000 and 0.5 <= took < 1.5


def test_slow_close(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="sc")
    proxy.add_toxic(type="slow_close", attributes={"delay": 500})
    data, took, reads = fetch(proxy, 100)
    assert data == b"x" * 100 and reads[0][0] < 0.2 and took >= 0.45


def test_timeout(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="to")
    proxy.add_toxic(type="timeout", attributes={"timeout": 400})
    data, took, _ = fetch(proxy, 100, stay=True)
    assert data == b"" and 0.35 <= took < 1.5  # nothing, then closed
    proxy.destroy_toxic("timeout_downstream")
    proxy.add_toxic(type="timeout", attributes={"timeout": 0})  # never closes
    with socket.create_connection(address(proxy), timeout=0.6) as s:
        s.sendall(b"100+\n")
        with pytest.raises(TimeoutError):
            s.recv(100)


def test_reset_peer(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="rp")
    proxy.add_toxic(type="reset_peer", attributes={"timeout": 300})
    count = len(backend.arrived)
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        fetch(proxy, 100)
    assert time.monotonic() - start >= 0.25
    assert len(backend.arrived) == count + 1  # as in Toxiproxy, the request got there first


def test_slicer(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="sl")
    proxy.add_toxic(type="slicer", attributes={"average_size": 100, "size_variation": 20,
                                               "delay": 20_000})  # microseconds
    data, took, reads = fetch(proxy, 1000)
    assert data == b"x" * 1000 and len(reads) >= 7 and took >= 0.12
    assert all(size <= 120 for _, size in reads)


DEFAULTS = {"latency": {"latency": 0, "jitter": 0}, "bandwidth": {"rate": 0}, "slow_close": {"delay": 0},
            "timeout": {"timeout": 0}, "reset_peer": {"timeout": 0},
            "slicer": {"average_size": 0, "size_variation": 0, "delay": 0}, "limit_data": {"bytes": 0}}
GIVEN = {"latency": {"latency": 20}, "bandwidth": {"rate": 1000}, "slow_close": {"delay": 20},
         "timeout": {"timeout": 20}, "reset_peer": {"timeout": 20},
         "slicer": {"average_size": 64, "size_variation": 8}, "limit_data": {"bytes": 100}}


@pytest.mark.parametrize("stream", ["upstream", "downstream"])
@pytest.mark.parametrize("kind", list(GIVEN))
def test_each_toxic_is_added_updated_and_removed(server, backend, kind, stream):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="each")
    proxy.add_toxic(type=kind, stream=stream, attributes=GIVEN[kind], toxicity=0.9)
    name = f"{kind}_{stream}"
    toxic = proxy.get_toxic(name)
    assert (toxic.type, toxic.stream, toxic.toxicity) == (kind, stream, 0.9)
    assert toxic.attributes == {**DEFAULTS[kind], **GIVEN[kind]}  # every attribute, as Go writes them
    key, value = next(iter(GIVEN[kind].items()))
    updated = APIConsumer.post(f"/proxies/each/toxics/{name}", json={"attributes": {key: value * 2}}).json()
    assert updated["attributes"] == {**DEFAULTS[kind], **GIVEN[kind], key: value * 2}
    assert updated["toxicity"] == 0.9  # kept: not in the update
    proxy.destroy_toxic(name)
    assert proxy.toxics() == {}
    data, took, _ = fetch(proxy, 1000)
    assert data == b"x" * 1000 and took < 0.5


def upload(proxy, size: int, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send a request padded to ``size`` bytes (the backend's int() skips the spaces); (the
    answer, seconds until EOF)."""
    start = time.monotonic()
    data = b""
    with socket.create_connection(address(proxy), timeout=timeout) as s:
        s.sendall(b" " * (size - 4) + b"10+\n")
        while chunk := s.recv(65536):
            data += chunk
            if len(data) == 10:
                break
    return data, time.monotonic() - start


def test_upstream_bandwidth_and_slicer(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="up")
    assert upload(proxy, 60_000)[1] < 0.3
    proxy.add_toxic(type="bandwidth", stream="upstream", attributes={"rate": 100})
    data, took = upload(proxy, 60_000)
    assert data == b"x" * 10 and 0.5 <= took < 1.5
    proxy.destroy_toxic("bandwidth_upstream")
    proxy.add_toxic(type="slicer", stream="upstream", attributes={"average_size": 100, "delay": 20_000})
    data, took = upload(proxy, 1000)
    assert data == b"x" * 10 and took >= 0.15


def test_upstream_timeout_and_reset_peer(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="up2")
    count = len(backend.arrived)
    proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 300})
    data, took, _ = fetch(proxy, 10)
    assert data == b"" and 0.25 <= took < 1.5 and len(backend.arrived) == count  # the request never got there
    proxy.destroy_toxic("timeout_upstream")
    proxy.add_toxic(type="reset_peer", stream="upstream", attributes={"timeout": 200})
    start = time.monotonic()
    with pytest.raises(ConnectionResetError):
        fetch(proxy, 10)
    assert time.monotonic() - start >= 0.15


def test_toxicity_is_rolled_per_connection(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="half")
    proxy.add_toxic(type="limit_data", attributes={"bytes": 1}, toxicity=0.5)
    cut = sum(fetch(proxy, 10)[0] == b"x" for _ in range(60))
    assert 10 <= cut <= 50  # binomial(60, 0.5): outside this once in ~10^6 runs


def test_limit_data(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="ld")
    proxy.add_toxic(type="limit_data", attributes={"bytes": 1000})
    assert fetch(proxy, 50_000)[0] == b"x" * 1000


def test_limit_data_upstream(server, backend):
    proxy = server.create(upstream=f"127.0.0.1:{backend.port}", name="ldu")
    proxy.add_toxic(type="limit_data", stream="upstream", attributes={"bytes": 2})
    count = len(backend.arrived)
    assert fetch(proxy, 50)[0] == b""  # "50" passed, the newline never did
    time.sleep(0.1)
    assert len(backend.arrived) == count


# -- journal: a killed server is recovered, a live one never touched -----------------------------------
def test_killed_server_is_recovered_and_live_one_left_alone(tmp_path, backend):
    env = {**os.environ, "CHAOS_STATE_DIR": str(tmp_path / "state")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(chaos_cmd("serve", "--listen", f"127.0.0.1:{port}"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert "Toxiproxy API on" in (proc.stdout.readline() if proc.stdout else "")
        APIConsumer.host, APIConsumer.port = "127.0.0.1", port
        proxy = toxiproxy_client().create(upstream=f"127.0.0.1:{backend.port}", name="k")
        proxy.add_toxic(type="latency", attributes={"latency": 200})
        # and a fault of the project's own: a sandbox (namespaces, the fake DNS server)
        assert api("POST", "/chaos/faults", {"type": "dns", "names": ["a.test"], "answer": "servfail"})[0] == 201
        sandbox = json.loads(api("GET", "/chaos/sandbox")[2])
        recover = subprocess.run(chaos_cmd("recover"), cwd=ROOT, env=env, capture_output=True, text=True)
        assert "still running" in recover.stdout
        assert fetch(proxy, 10)[1] >= 0.18  # untouched
        runs = [r for r in (tmp_path / "state" / "runs").iterdir() if r.name.startswith("serve-")]
        proxy_process = next(json.loads(line)["undo"]
                             for line in (runs[0] / "journal.jsonl").read_text().splitlines()
                         if '"kind":"process"' in line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert fetch(proxy, 10)[1] >= 0.18  # the orphaned TCP proxy still serves
        recover = subprocess.run(chaos_cmd("recover"), cwd=ROOT, env=env, capture_output=True, text=True)
        assert recover.returncode == 0, recover.stdout + recover.stderr
        assert "recovered (3 change(s) undone)" in recover.stdout  # process, listener, toxic
        assert f"{sandbox['run']}: recovered" in recover.stdout
        netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert sandbox["world"] not in netns and sandbox["clients"]["default"] not in netns
        assert not is_alive(proxy_process["pid"], proxy_process["start"])  # a zombie counts as gone
        assert list((tmp_path / "state" / "runs").iterdir()) == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address(proxy), timeout=2).close()
    finally:
        proc.kill()
        proc.wait()


def test_shutdown_reverts_everything(tmp_path, backend):
    env = {**os.environ, "CHAOS_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen(chaos_cmd("serve", "--listen", "127.0.0.1:0"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        APIConsumer.host, APIConsumer.port = "127.0.0.1", int(line.split("http://")[1].split()[0].rsplit(":", 1)[1])
        proxy = toxiproxy_client().create(upstream=f"127.0.0.1:{backend.port}", name="s")
        proxy.add_toxic(type="latency", attributes={"latency": 10})
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert list((tmp_path / "state" / "runs").iterdir()) == []
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address(proxy), timeout=2).close()
    finally:
        proc.kill()
        proc.wait()


def test_bad_listen_exits_2(chaos, state_dir):
    result = chaos("serve", "--listen", "198.18.0.1:8474")
    assert result.returncode == 2 and "--allow-remote" in result.stderr
    result = chaos("serve", "--listen", "nowhere")
    assert result.returncode == 2 and "expected IP:PORT" in result.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        result = chaos("serve", "--listen", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.returncode == 2 and "Address already in use" in result.stderr
    assert list((state_dir / "runs").iterdir()) == []  # its TCP proxy was stopped again


# -- toxics reach connections that are already open, as in Toxiproxy ------------------------------
def ask(sock: socket.socket, n: int, pad: int = 0) -> tuple[bytes, float]:
    """One more request (``pad`` spaces first) on an open connection to the backend below."""
    start = time.monotonic()
    sock.sendall(b" " * pad + b"%d\n" % n)
    data = b""
    while len(data) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


class Repeater(Backend):
    """Answers every line ``N`` of a connection with N bytes, until the client closes."""

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            try:
                for line in lines:
                    conn.sendall(b"x" * int(line))
            except (OSError, ValueError):  # gone, or cut mid-line (limit_data upstream)
                return


@pytest.fixture(scope="module")
def repeater():
    r = Repeater()
    yield r
    r.sock.close()


@pytest.mark.parametrize("stream", ["downstream", "upstream"])
def test_a_toxic_added_acts_on_open_connections(server, repeater, stream):
    proxy = server.create(upstream=f"127.0.0.1:{repeater.port}", name="live")
    with socket.create_connection(address(proxy), timeout=5) as s:
        assert ask(s, 100) == (b"x" * 100, pytest.approx(0, abs=0.2))  # the kernel relays it
        proxy.add_toxic(type="latency", stream=stream, attributes={"latency": 300})
        data, took = ask(s, 100)
        assert data == b"x" * 100 and took >= 0.28  # the same connection, now slow
        proxy.destroy_toxic(f"latency_{stream}")
        data, took = ask(s, 100)
        assert data == b"x" * 100 and took < 0.2
        proxy.add_toxic(type="limit_data", stream=stream, attributes={"bytes": 50})
        data, _ = ask(s, 1000, pad=100)
        assert len(data) == (50 if stream == "downstream" else 0)  # counted from when it came
        assert s.recv(10) == b""


def test_live_toxics_stack_and_a_disable_still_cuts(server, repeater):
    proxy = server.create(upstream=f"127.0.0.1:{repeater.port}", name="stack")
    proxy.add_toxic(type="latency", name="first", attributes={"latency": 100})  # toxic path from accept
    with socket.create_connection(address(proxy), timeout=5) as s:
        assert ask(s, 10)[1] >= 0.09
        proxy.add_toxic(type="latency", name="second", attributes={"latency": 200})
        assert ask(s, 10)[1] >= 0.28  # joined the pump the first made: the two add up
        proxy.add_toxic(type="timeout", stream="upstream", attributes={"timeout": 0})
        s.sendall(b"10\n")  # dropped
        time.sleep(0.3)
        proxy.disable()
        assert s.recv(10) == b""
    proxy.enable()
