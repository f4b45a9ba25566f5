"""chaos.sandbox.sockets: the TCP connections of a namespace, read with sock_diag."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from chaos.probes.evidence import size
from chaos.sandbox.enter import in_netns
from chaos.sandbox.sockets import tcp_connections

# A client that connects, asks, and then reads nothing more (the server's bytes pile up in
# its receive queue), until its stdin closes.
CLIENT = """
import socket, sys
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"GET")
print("connected", flush=True)
sys.stdin.read()
"""


def test_a_stalled_download_shows_bytes_idle_time_and_its_process(netns):
    server = in_netns(netns, socket.create_server, ("127.0.0.1", 0))
    other = in_netns(netns, socket.create_server, ("127.0.0.2", 0))
    port = server.getsockname()[1]
    client = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "connected"
        conn, _ = server.accept()
        conn.sendall(b"x" * 50_000)
        # a connection to an address that is not asked for, and one in the host namespace
        stray = in_netns(netns, socket.create_connection, other.getsockname(),
                         source_address=("127.0.0.2", 0))
        host_server = socket.create_server(("127.0.0.1", 0))
        host_client = socket.create_connection(host_server.getsockname())
        time.sleep(1.2)

        seen = tcp_connections(netns, {"127.0.0.1": "files.test"})
        outbound = [c for c in seen if c.remote == f"127.0.0.1:{port}"]
        assert len(outbound) == 1, seen
        held = outbound[0]
        assert (held.to, held.state, held.received, held.unread) == ("files.test", "established",
                                                                    50_000, 50_000)
        assert 1.0 <= held.idle < 10, held
        assert (held.pid, held.process) == (client.pid, os.path.basename(sys.executable)[:15])
        # the server's end is in the namespace too (its peer is the client's address)
        assert all(c.remote.startswith("127.0.0.1:") for c in seen)
        assert not any(c.remote == f"127.0.0.2:{other.getsockname()[1]}" for c in seen)
        assert len(seen) == 2, seen  # the host namespace's connection is not in there

        # every peer when none are named; a socket made here inside the namespace is ours
        everything = tcp_connections(netns)
        strays = [c for c in everything if c.remote == f"127.0.0.2:{other.getsockname()[1]}"]
        assert [(c.to, c.pid) for c in strays] == [("127.0.0.2", os.getpid())]
        for sock in (stray, host_client, host_server):
            sock.close()
    finally:
        client.stdin.close()
        client.wait(timeout=10)
    # Closed by the client: the kernel still finishes the socket, no process holds it.
    left = [c for c in tcp_connections(netns, {"127.0.0.1": "files.test"})
            if c.remote == f"127.0.0.1:{port}"]
    assert [(c.pid, c.state != "established") for c in left] in ([], [(None, True)]), left
    conn.close()
    server.close()
    other.close()


def test_a_missing_namespace_is_an_error():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tcp_connections("chaos-no-such-namespace")


def test_sizes_read_like_docker_prints_them():
    assert [size(n) for n in (12, 50_000, 10_000_000, 16_777_216)] == [
        "12 bytes", "50.0 kB", "10.0 MB", "16.8 MB"]
