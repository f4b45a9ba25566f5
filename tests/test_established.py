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

def ask(sock, host):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
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

HOSTS = ("keep.test", "drop.test", "reset.test")
held = {h: socket.create_connection((h, 80), timeout=1.5) for h in HOSTS}
for h in HOSTS:
    outcome(h + " first", lambda: ask(held[h], h))
time.sleep(max(0.0, 2.5 - (time.monotonic() - t0)))  # the faults went on at 1 s
for h in HOSTS:
    outcome(h + " open", lambda: ask(held[h], h))
for h in HOSTS:
    outcome(h + " new", lambda: ask(socket.create_connection((h, 80), timeout=1), h))
"""

FAULTS = {
    "packet-filter": "type: packet-filter\n    destinations: [{host}]\n    ports: [80]",
    "route-blackhole": "type: route-blackhole\n    destinations: [{host}]",
    "geo-block": "type: geo-block\n    region: ES\n    block: [{host}]\n    ports: [80]",
}
NEW = {"packet-filter": "timeout", "route-blackhole": "Invalid argument", "geo-block": "timeout"}
OPEN = {"keep": "200", "drop": "timeout", "reset": "Software caused connection abort"}

SCENARIO = """\
name: established-{fault}
description: keep-alive connections opened before the faults, used after they started
regions:
  ES: 198.18.64.0/24
serve:
  - name: keep.test
  - name: drop.test
  - name: reset.test
faults:
{faults}
expect:
  during:
    - name: the open connections, then new ones
      region: ES
      timeout: 15s
      run: |
        python3 - <<'EOF'
{client}
        EOF
      stdout: {{regex: "{expected}"}}
  after:
    - {{region: ES, http: "http://keep.test/"}}
    - {{region: ES, http: "http://drop.test/"}}
    - {{region: ES, http: "http://reset.test/"}}
"""


@pytest.mark.parametrize("fault", list(FAULTS))
def test_open_connections_kept_dropped_or_reset(chaos, tmp_path, fault):
    """One fault per mode, each on its own server: the client holds a keep-alive connection
    to each from before the faults, and asks again on it once they are on."""
    before = snapshot()
    faults = "\n".join(f"  - {FAULTS[fault].format(host=f'{mode}.test')}\n"
                       f"    established: {mode}\n    window: {{after: 1s}}"
                       for mode in OPEN)
    client = "\n".join(("        " + line) if line else "" for line in CLIENT.strip().splitlines())
    expected = "".join(f"{m}.test first 200\\\\n" for m in OPEN)
    expected += "".join(f"{m}.test open {OPEN[m]}\\\\n" for m in OPEN)
    expected += "".join(f"{m}.test new {NEW[fault]}\\\\n" for m in OPEN)
    text = SCENARIO.format(fault=fault, faults=faults, client=client, expected=f"^{expected}$")
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    events = json.loads(report.read_text())["scenarios"][0]["events"]
    ons = [e for e in events if e["kind"] == "fault" and e["state"] == "on"]
    assert len(ons) == 3
    for mode, on in zip(OPEN, ons, strict=True):  # each fault lists the connection to its own server
        held = [c for c in on["connections"] if c["process"] == "python3"]
        assert [(c["to"], c["state"], c["where"]) for c in held] == \
            [(f"{mode}.test", "established", "ES")], on
        assert held[0].get("reset", False) == (mode == "reset")
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
