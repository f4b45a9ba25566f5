"""Packet-level fault types end to end: every action's symptom, regions, the shipped incidents."""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIOS, assert_same, snapshot, write

FILTER = """\
name: filter-{action}
description: the registry port filtered with {action}
serve:
  - name: registry.test
faults:
  - type: packet-filter
    destinations: [registry.test]
    ports: [80]
    action: {action}
expect:
  during:
    - name: symptom
      run: curl -sS --noproxy '*' -m 2 http://registry.test/
      exit: {exit}
      stderr: {{regex: "{message}"}}
      within: {within}
    - name: another port is untouched
      tcp: registry.test:81
      connect: refused
  after:
    - http: http://registry.test/
"""


@pytest.mark.parametrize("action,exit,message,within,at_least", [
    ("drop", 28, "timed out", "3s", 1.9),           # the client waits for its own timeout
    ("reject-reset", 7, "Couldn't connect|refused", "500ms", 0.0),   # RST: at once
    ("reject-icmp", 7, "Couldn't connect|refused", "500ms", 0.0),    # port unreachable: at once
])
def test_packet_filter_actions_show_their_symptom(chaos, tmp_path, action, exit, message, within, at_least):
    before = snapshot()
    text = FILTER.format(action=action, exit=exit, message=message, within=within)
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    symptom = json.loads(report.read_text())["scenarios"][0]["probes"][0]
    assert symptom["duration"] >= at_least
    assert_same(before, snapshot())


def test_dry_run_prints_the_batches_and_changes_nothing(chaos, tmp_path, state_dir):
    before = snapshot()
    text = FILTER.format(action="reject-reset", exit=7, message="x", within="1s")
    result = chaos("run", "--dry-run", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dry run" in result.stdout and "faults[0] packet-filter reject-reset" in result.stdout
    assert "--dport 80" in result.stdout and "-j REJECT --reject-with tcp-reset" in result.stdout
    assert "-I OUTPUT 1 -m comment" in result.stdout
    assert not state_dir.exists(), "a dry run writes no journal"
    assert_same(before, snapshot())
    bad = text.replace("destinations: [registry.test]", "destinations: [nowhere.test]")
    result = chaos("run", "--dry-run", str(write(tmp_path, bad, "bad.yaml")))
    assert result.returncode == 2 and "faults[0].destinations[0]" in result.stdout


def test_packet_filter_match_and_region_reach_only_their_clients(chaos, tmp_path):
    text = """\
name: ttl-and-region
description: only the region whose kernel sends TTL 128, only to the CDN, is cut
regions:
  lin: {range: 198.18.70.0/24, os: linux}
  win: {range: 198.18.71.0/24, os: windows}
serve:
  - name: cdn.test
faults:
  - type: packet-filter
    destinations: [cdn.test]
    action: reject-reset
    match: {ttl: 128}
expect:
  during:
    - {region: win, tcp: "cdn.test:80", connect: refused}
    - {region: lin, tcp: "cdn.test:80", connect: ok}
    - {tcp: "cdn.test:80", connect: ok}
"""
    result = chaos("run", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("name", ["cdn-geo-block-es.yaml", "dockerhub-bot-mitigation-drop.yaml"])
def test_shipped_packet_incidents_pass_and_leave_nothing(chaos, name):
    before = snapshot()
    result = chaos("run", str(SCENARIOS / name))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


GEO_REJECT = """\
name: geo-reject
description: the CDN refuses Spain's connections at once; the US still gets it
regions:
  ES: 198.18.64.0/24
  US: 198.18.65.0/24
serve:
  - name: cdn.test
    http: {body: "blob\\n"}
faults:
  - type: geo-block
    region: ES
    block: [cdn.test]
    action: reject
expect:
  during:
    - name: refused at once from Spain
      region: ES
      run: curl -sS --noproxy '*' -m 3 http://cdn.test/x
      exit: 7
      stderr: {regex: "Couldn't connect|refused"}
      within: 500ms
    - {region: ES, tcp: "cdn.test:80", connect: refused}
    - {region: US, http: "http://cdn.test/x", status: 200, body: {contains: blob}}
  after:
    - {region: ES, http: "http://cdn.test/x", status: 200}
"""


def test_geo_block_reject_fails_fast_from_the_region_only(chaos, tmp_path):
    before = snapshot()
    result = chaos("run", str(write(tmp_path, GEO_REJECT)))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


def test_geo_block_refuses_an_unknown_region(chaos, tmp_path):
    text = (SCENARIOS / "cdn-geo-block-es.yaml").read_text()
    result = chaos("run", str(write(tmp_path, text.replace("region: ES\n    block", "region: FR\n    block"))))
    assert result.returncode == 2 and "faults[0].region: unknown region 'FR'" in result.stdout


def test_geo_block_ports_are_checked_where_they_are_written(chaos, tmp_path):
    ports = '    action: http-451\n    ports: [80, "90:85"]\n'
    text = GEO_REJECT.replace("    action: reject\n", ports)
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2 and "s.yaml:14:17: faults[0].ports[1]: port '90:85'" in result.stderr


PROFILES = """\
name: profile-signatures
description: regions whose kernels differ only in MSS or window scaling, picked out by it
regions:
  lin: {range: 198.18.72.0/24, os: linux}
  small: {range: 198.18.73.0/24, mss: 1200}
  nows: {range: 198.18.74.0/24, window_scaling: false}
serve:
  - name: cdn.test
    http: {size: 300000}
faults:
  - type: bot-mitigation
    signature: {mss: 1200}
    destinations: [cdn.test]
    action: reset
  - type: bot-mitigation
    signature: {tcp_option: 3, tcp_option_absent: true, tcp_flags: {mask: "SYN,ACK", set: SYN}}
    destinations: [cdn.test]
expect:
  before:
    - {name: the clamp alone breaks nothing, region: small, http: "http://cdn.test/layer"}
    - {name: nor does window scaling off, region: nows, http: "http://cdn.test/layer"}
  during:
    - name: the clamped region's download is refused at once
      region: small
      run: curl -sS --noproxy '*' -m 3 -o /dev/null http://cdn.test/layer
      exit: 7
      stderr: {regex: "Couldn't connect|refused"}
      within: 500ms
    - name: the region without window scaling gets no answer
      region: nows
      tcp: cdn.test:80
      connect: timeout
      connect_timeout: 1s
    - name: the plain Linux region downloads it all
      region: lin
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{size_download}' http://cdn.test/layer
      stdout: {contains: "300000"}
    - {name: so does the default client, http: "http://cdn.test/layer"}
  after:
    - {region: small, http: "http://cdn.test/layer"}
    - {region: nows, http: "http://cdn.test/layer"}
"""


def test_region_mss_and_window_scaling_are_signatures_for_their_region_only(chaos, tmp_path):
    before = snapshot()
    result = chaos("run", str(write(tmp_path, PROFILES)))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


def test_mss_signature_with_after_bytes_is_refused_at_load(chaos, tmp_path):
    text = PROFILES.replace("    action: reset\n", "    after_bytes: 1000\n")
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2 and "signature.mss matches SYNs only" in result.stderr


# An ICMP echo over a raw socket (no ping on the test machines): "reply", or the error.
ECHO = """\
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1)
body = bytes([8, 0, 0, 0, 0x12, 0x34, 0, 1]) + b"chaos!"
c = sum(int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body), 2))
c = ~((c & 0xFFFF) + (c >> 16)) & 0xFFFF
try:
    s.sendto(body[:2] + c.to_bytes(2, "big") + body[4:], (socket.gethostbyname(sys.argv[1]), 0))
    while True:
        data = s.recv(2048)
        if data[(data[0] & 15) * 4] == 0:
            sys.exit(print("reply"))
except OSError as e:
    sys.exit(f"echo failed: {e}")
"""

ICMP_FILTER = """\
name: icmp-{action}
description: echo requests to one server filtered; TCP to it and echo to another still work
serve:
  - name: registry.test
  - name: other.test
faults:
  - type: packet-filter
    destinations: [registry.test]
    protocol: icmp
    action: {action}
expect:
  before:
    - {{run: "python3 {echo} registry.test", stdout: {{contains: reply}}}}
  during:
    - name: the echo is refused by the client's own stack (no wait for a reply)
      run: python3 {echo} registry.test
      exit: 1
      stderr: {{contains: "Operation not permitted"}}
    - {{name: TCP to the same server works, http: "http://registry.test/"}}
    - {{name: echo to another server works, run: "python3 {echo} other.test", stdout: {{contains: reply}}}}
  after:
    - {{run: "python3 {echo} registry.test", stdout: {{contains: reply}}}}
"""


@pytest.mark.parametrize("action", ["drop", "reject-icmp"])
def test_packet_filter_icmp_stops_echo_but_not_tcp(chaos, tmp_path, action):
    # In a client's OUTPUT both actions fail sendto() with EPERM (as for UDP, see
    # docs/packet-filter.md): the echo never leaves the namespace.
    echo = write(tmp_path, ECHO, "echo.py")
    before = snapshot()
    result = chaos("run", str(write(tmp_path, ICMP_FILTER.format(action=action, echo=echo))))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


BOT_RESET = """\
name: bot-reset
description: the Windows-profile download is reset once it carried 100 kB; Linux finishes
regions:
  lin: {range: 198.18.66.0/24, os: linux}
  win: {range: 198.18.67.0/24, os: windows}
serve:
  - name: cdn.test
    http: {size: 1000000}
faults:
  - type: bot-mitigation
    signature: {ttl: 128}
    destinations: [cdn.test]
    after_bytes: 100000
    action: reset
expect:
  during:
    - name: the Windows-profile download starts, then dies at once with a reset
      region: win
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{size_download}' http://cdn.test/layer
      exit: 56
      stderr: {contains: "reset by peer"}
      stdout: {regex: "^[1-9][0-9]{4,5}$", not_contains: "1000000"}
      within: 1s
    - name: the Linux-profile download completes
      region: lin
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{size_download}' http://cdn.test/layer
      stdout: {contains: "1000000"}
  after:
    - name: the Windows-profile download completes once the rule is gone
      region: win
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{size_download}' http://cdn.test/layer
      stdout: {contains: "1000000"}
"""


def test_bot_mitigation_reset_kills_the_profiled_download_fast(chaos, tmp_path):
    before = snapshot()
    result = chaos("run", str(write(tmp_path, BOT_RESET)))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


# N connects, each with a timeout (default 0.5 s); prints how many were answered.
CONNECTS = """\
import socket, sys
host, n, ok = sys.argv[1], int(sys.argv[2]), 0
timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
for _ in range(n):
    try:
        socket.create_connection((host, 80), timeout=timeout).close()
        ok += 1
    except OSError:
        pass
print(ok)
"""

BOT_SHARE = """\
name: bot-share
description: half of the Windows-profile packets are dropped, none of the Linux ones
regions:
  lin: {{range: 198.18.66.0/24, os: linux}}
  win: {{range: 198.18.67.0/24, os: windows}}
serve:
  - name: cdn.test
faults:
  - type: bot-mitigation
    signature: {{ttl: 128}}
    destinations: [cdn.test]
    probability: 0.5
expect:
  during:
    - {{name: win, region: win, run: "python3 {script} cdn.test {n}"}}
    # 3 s: a SYN the server's full backlog dropped after the win probe is retransmitted at
    # 1 s; the rule never drops a TTL-64 packet, so every connect is answered.
    - {{name: lin, region: lin, run: "python3 {script} cdn.test 10 3", stdout: {{contains: "10"}}}}
"""


def test_bot_mitigation_probability_drops_a_share_of_packets(chaos, tmp_path):
    # A connect succeeds when its SYN passes (the SYN-ACK is not filtered, the client's ACK
    # does not matter to connect()): Binomial(n, 0.5). With n = 40, 8..32 holds except with
    # probability ~2e-5 each side; 0 (p = 1) and 40 (no rule) are far outside.
    n = 40
    script = write(tmp_path, CONNECTS, "connects.py")
    report = tmp_path / "r.json"
    text = BOT_SHARE.format(script=script, n=n)
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    probes = {p["name"]: p for p in json.loads(report.read_text())["scenarios"][0]["probes"]}
    answered = int(probes["win"]["detail"]["stdout"])
    assert 8 <= answered <= 32, f"{answered} of {n} connects answered at probability 0.5"
