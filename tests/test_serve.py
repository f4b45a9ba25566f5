"""chaos.sandbox.serve: the request records a `requests:` probe counts (start, then outcome)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chaos import jsonl
from chaos.sandbox.serve import CHUNK

SIZE = 8 << 20  # far more than the socket buffers hold: the answer stays in flight


@pytest.fixture
def server(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "chaos.sandbox.serve", "--listen",
                             f"127.0.0.1:{port}", "--size", str(SIZE), "--log",
                             str(tmp_path / "access.log"), "--events", str(events)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout.readline() == b"ready\n"
    yield port, events
    proc.kill()
    proc.wait()


def records(events: Path, timeout: float = 5.0, until=lambda r: bool(r)) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = jsonl.requests(jsonl.read(events))
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def test_a_request_is_recorded_at_its_start_and_its_outcome_at_its_end(server):
    port, events = server
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"GET /big HTTP/1.1\r\nHost: big.test\r\nRange: bytes=0-\r\n\r\n")
        # More than one write's worth of body: the server has counted its first write, and
        # the rest waits for this reader.
        got = b""
        while len(got.partition(b"\r\n\r\n")[2]) <= CHUNK:
            got += conn.recv(CHUNK)
        (held,) = records(events)
        assert held["in_flight"] is True and (held["method"], held["path"]) == ("GET", "/big")
        assert held["client"] == "127.0.0.1" and "status" not in held
        # A reset, not a close: the server's next write fails mid-answer.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    (cut,) = records(events, until=lambda r: r and not r[0]["in_flight"])
    assert cut["in_flight"] is False and cut["status"] == 206
    assert 0 < cut["bytes"] < SIZE and cut["ended"] != "complete"
    assert "Error" in cut["ended"], cut  # e.g. ConnectionResetError: ... / BrokenPipeError


def test_a_whole_answer_ends_complete_with_every_byte(server):
    port, events = server
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"HEAD /h HTTP/1.1\r\nHost: big.test\r\n\r\n")
        conn.recv(4096)
    (done,) = records(events, until=lambda r: r and not r[0]["in_flight"])
    assert (done["method"], done["status"], done["bytes"], done["ended"]) == ("HEAD", 200, 0, "complete")
