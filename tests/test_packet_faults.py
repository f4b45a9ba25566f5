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
