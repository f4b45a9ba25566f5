"""`established: keep | drop | reset`: what a packet-level fault does to a connection that was
open before it started, seen by a real client holding a keep-alive connection in the sandbox,
and the connections the report lists at the fault's start."""

from __future__ import annotations

import json

import pytest

from conftest import assert_same, snapshot, write

CLIENT = r"""
import socket, time
t0 = time.monotonic()
REQ = b"GET / HTTP/1.1\r\nHost: registry.test\r\n\r\n"

def ask(sock):
    sock.sendall(REQ)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return "closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    size = int(next(l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")))
    while len(body) < size:
        body += sock.recv(4096)
    return head.split(b" ")[1].decode()

def outcome(what, fn):
    try:
        print(what, fn(), flush=True)
    except socket.timeout:
        print(what, "timeout", flush=True)
    except OSError as exc:
        print(what, exc.strerror, flush=True)

s = socket.create_connection(("registry.test", 80), timeout=1.5)
outcome("first", lambda: ask(s))
time.sleep(max(0.0, 2.5 - (time.monotonic() - t0)))  # the fault went on at 1 s
outcome("open", lambda: ask(s))
outcome("new", lambda: ask(socket.create_connection(("registry.test", 80), timeout=1)))
"""

FAULTS = {
    "packet-filter": "type: packet-filter\n    destinations: [registry.test]\n    ports: [80]",
    "route-blackhole": "type: route-blackhole\n    destinations: [registry.test]",
    "geo-block": "type: geo-block\n    region: ES\n    block: [registry.test]\n    ports: [80]",
}
NEW = {"packet-filter": "timeout", "route-blackhole": "Invalid argument", "geo-block": "timeout"}
OPEN = {"keep": "200", "drop": "timeout", "reset": "Software caused connection abort"}

SCENARIO = """\
name: established-{established}
description: a keep-alive connection opened before the fault, used after it started
regions:
  ES: 198.18.64.0/24
serve:
  - name: registry.test
faults:
  - {fault}
    established: {established}
    window: {{after: 1s}}
expect:
  during:
    - name: the open connection, then a new one
      region: ES
      timeout: 10s
      run: |
        python3 - <<'EOF'
{client}
        EOF
      stdout: {{regex: "(?s)first 200\\nopen {open}\\nnew {new}\\n"}}
  after:
    - {{region: ES, http: "http://registry.test/"}}
"""


@pytest.mark.parametrize("established", ["keep", "drop", "reset"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_open_connection_kept_dropped_or_reset(chaos, tmp_path, fault, established):
    before = snapshot()
    client = "\n".join(("        " + line) if line else "" for line in CLIENT.strip().splitlines())
    text = SCENARIO.format(fault=FAULTS[fault], established=established, client=client,
                           open=OPEN[established], new=NEW[fault])
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    events = json.loads(report.read_text())["scenarios"][0]["events"]
    on = next(e for e in events if e["kind"] == "fault" and e["state"] == "on")
    held = [c for c in on["connections"] if c["process"] == "python3"]
    assert len(held) == 1 and held[0]["to"] == "registry.test", on["connections"]
    assert held[0]["state"] == "established" and held[0]["where"] == "ES"
    assert held[0].get("reset", False) == (established == "reset")
    assert "open at its start (ES): python3[" in result.stdout
    assert_same(before, snapshot())


def test_kept_connections_rules_and_table_are_undone(tmp_path):
    """`established: keep` on routes adds an ip rule per open connection and a table of its
    own; the journal takes both away again (the revert and `chaos recover` path)."""
    import secrets
    import subprocess

    from chaos.injectors.routes import KeepConnections
    from chaos.journal import Journal

    class Found:
        def connections(self):
            return [{"state": "established", "local": "198.18.99.1:40000",
                     "remote": "198.18.99.2:80"}]

    netns = f"chaos-keep-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        def ip(*args: str) -> str:
            return subprocess.run(["ip", "-n", netns, *args], check=True, capture_output=True,
                                  text=True).stdout
        ip("link", "add", "d0", "type", "veth", "peer", "name", "d1")  # no dummy module here
        ip("addr", "add", "198.18.99.1/24", "dev", "d0")
        ip("link", "set", "d0", "up")
        ip("link", "set", "d1", "up")
        journal = Journal.create(f"keep-{secrets.token_hex(3)}", base=tmp_path)
        keep = KeepConnections(netns, ["198.18.99.2/32"], Found(), tag="chaos-test")
        keep.apply(journal)
        rules = ip("rule", "show")
        assert f"from 198.18.99.1 to 198.18.99.2 ipproto tcp sport 40000 dport 80 lookup {keep.table}" in rules
        assert "198.18.99.2 dev d0" in ip("route", "show", "table", str(keep.table))
        assert not keep.revert(journal)
        assert "ipproto tcp" not in ip("rule", "show")
        assert ip("route", "show", "table", str(keep.table)).strip() == ""
        assert not keep.revert(journal)  # twice: nothing more to do
        journal.finish()
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
