"""TCP proxy fault types end to end: the proxy at the world's edge, curl in the sandbox."""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIOS, assert_same, snapshot, write
from stats import binomial_bounds

TEMPLATE = """\
name: tcp-{type}
description: registry.test's connections get a {type} fault
serve:
  - name: registry.test
    http: {{size: 200000}}
faults:
  - type: {type}
    destinations: [registry.test]
    ports: [80]
{params}
expect:
  during:
    - name: symptom
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{{size_download}}' http://registry.test/blob
      exit: {exit}
{check}
  after:
    - http: http://registry.test/blob
      within: 2s
"""

CASES = [
    # type, params, curl exit, extra check, minimum duration
    ("hang", "    at: after-bytes\n    bytes: 50000", 28, "      stdout: {regex: '^[1-9][0-9]{4}$'}", 2.9),
    ("slow", "    latency: 300ms", 0, "      stdout: {contains: '200000'}", 0.3),
    ("slow", "    rate: 100000", 0, "      stdout: {contains: '200000'}", 1.5),
    ("reset", "    after: 20000", 56, "      stderr: {contains: 'reset'}", 0.0),
    ("reset", "    how: fin\n    after: 20000", 18, "      stderr: {contains: 'transfer closed'}", 0.0),
    # garbage where the status line should be: curl refuses it, nothing counts as received
    ("garbage", "    bytes: 64", "nonzero",
     "      stdout: {regex: '^0$'}\n"
     "      stderr: {regex: 'Received HTTP/0.9 when not allowed|Unsupported HTTP version'}", 0.0),
    # garbage mid-body: 20000 real bytes (headers included) and 64 random ones, then the close
    ("garbage", "    bytes: 64\n    after: 20000", 18,
     "      stdout: {regex: '^(19[89][0-9][0-9]|200[0-5][0-9]|2006[0-4])$'}\n"
     "      stderr: {contains: 'transfer closed with'}", 0.0),
]


@pytest.mark.parametrize("kind,params,exit,check,at_least", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_tcp_fault_shows_its_symptom(chaos, tmp_path, kind, params, exit, check, at_least):
    text = TEMPLATE.format(type=kind, params=params, exit=exit, check=check)
    report = tmp_path / "r.json"
    before = snapshot()
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    probe = json.loads(report.read_text())["scenarios"][0]["probes"][0]
    assert probe["duration"] >= at_least
    assert_same(before, snapshot())


PROBABILITY = """\
name: tcp-reset-probability
description: a third of the connections to registry.test are reset at once
seed: 7
serve:
  - name: registry.test
faults:
  - type: reset
    destinations: [registry.test]
    ports: [80]
    probability: 0.3
expect:
  during:
    - name: count the resets
      run: |
        n=0
        for i in $(seq {n}); do curl -s --noproxy '*' -m 2 -o /dev/null http://registry.test/ || n=$((n+1)); done
        echo "$n"
      within: 60s
"""


def test_probability_is_rolled_per_connection_from_the_seed(chaos, tmp_path):
    """probability 0.3 over 150 connections: the share reset is within the binomial 99%
    bounds, and the scenario's seed makes a second run reset the very same count."""
    n = 150
    low, high = binomial_bounds(n, 0.3)
    counts = []
    for run in range(2):
        report = tmp_path / f"r{run}.json"
        result = chaos("run", str(write(tmp_path, PROBABILITY.replace("{n}", str(n)))), "--json", str(report))
        assert result.returncode == 0, result.stdout
        probe = json.loads(report.read_text())["scenarios"][0]["probes"][0]
        counts.append(int(probe["detail"]["stdout"]))
    assert low <= counts[0] <= high, (counts, (low, high))
    assert counts[0] == counts[1], counts


DIRECTION = """\
name: tcp-slow-{direction}
description: a 100 kB/s cap on registry.test, {direction} only
serve:
  - name: registry.test
    http: {{size: 300000}}
faults:
  - type: slow
    rate: 100000
    direction: {direction}
    destinations: [registry.test]
    ports: [80]
expect:
  during:
    - name: download
      run: curl -sS --noproxy '*' -m 10 -o /dev/null -w '%{{size_download}}' http://registry.test/blob
      stdout: {{regex: '^300000$'}}
    - name: upload
      run: |
        f=$(mktemp); head -c 300000 /dev/zero > "$f"
        curl -sS --noproxy '*' -m 10 -H 'Expect:' --data-binary @"$f" http://registry.test/up
        rm -f "$f"
      stdout: {{contains: received 300000}}
"""


@pytest.mark.parametrize("direction,slowed", [("upstream", "upload"), ("downstream", "download")])
def test_direction_slows_only_its_own_bytes(chaos, tmp_path, direction, slowed):
    """300 kB each way at a 100 kB/s cap: the capped direction takes seconds, the other not."""
    report = tmp_path / "r.json"
    before = snapshot()
    result = chaos("run", str(write(tmp_path, DIRECTION.format(direction=direction))), "--json", str(report))
    assert result.returncode == 0, result.stdout
    took = {p["name"]: p["duration"] for p in json.loads(report.read_text())["scenarios"][0]["probes"]}
    fast = ({"upload", "download"} - {slowed}).pop()
    assert took[slowed] >= 2.0 and took[fast] < 1.0, took
    assert_same(before, snapshot())


def test_shipped_hang_scenario(chaos):
    result = chaos("run", str(SCENARIOS / "upstream-accepts-never-answers.yaml"))
    assert result.returncode == 0, result.stdout


def test_probability_and_typos_are_checked(chaos, tmp_path):
    text = TEMPLATE.format(type="reset", params="    aftr: 1", exit=0, check="")
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2 and "faults[0].aftr: unknown key 'aftr' (did you mean 'after'?)" in result.stderr


TWO_FAULTS = """\
name: tcp-faults-keep-to-their-servers
description: >
  Two TCP faults share the edge proxy: a hang on two servers (all default ports) must not
  reach the third server, whose own fault only slows it.
serve:
  - name: x.test
    http: {body: "x-body\\n"}
  - name: y.test
    http: {body: "y-body\\n"}
  - name: z.test
    http: {body: "z-body\\n"}
faults:
  - type: hang
    at: accept
    destinations: [x.test, y.test]
  - type: slow
    latency: 300ms
    destinations: [z.test]
    ports: [80]
expect:
  during:
    - name: x.test hangs
      run: curl -sS --noproxy '*' -m 1 http://x.test/
      exit: 28
    - name: y.test hangs
      run: curl -sS --noproxy '*' -m 1 http://y.test/
      exit: 28
    - name: z.test is slow, not hung
      run: curl -sS --noproxy '*' -m 3 http://z.test/
      stdout: {contains: z-body}
  after:
    - http: http://x.test/
      within: 2s
"""


def test_a_rule_acts_only_on_its_own_servers(chaos, tmp_path):
    """A fault with several destinations keeps its match: the other fault's server is spared."""
    report = tmp_path / "r.json"
    before = snapshot()
    result = chaos("run", str(write(tmp_path, TWO_FAULTS)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    probes = {p["name"]: p for p in json.loads(report.read_text())["scenarios"][0]["probes"]}
    assert probes["z.test is slow, not hung"]["duration"] >= 0.3  # its own rule still applies
    assert_same(before, snapshot())


SHARED_PORT = """\
name: tcp-and-http-on-one-port
serve:
  - name: x.test
  - name: y.test
faults:
  - type: hang
    destinations: [{tcp_dest}]
    ports: [80]
  - type: http-error
    status: 503
    match: {{host: x.test}}
    ports: [80]
expect:
  during:
    - {{http: "http://x.test/", status: 503}}
    - name: y.test hangs
      run: curl -sS --noproxy '*' -m 1 http://y.test/
      exit: 28
"""


def test_tcp_and_http_fault_on_one_server_port_is_refused(chaos, tmp_path):
    """Both would redirect x.test:80 at the edge, to two proxies: only one could ever act."""
    before = snapshot()
    path = write(tmp_path, SHARED_PORT.format(tcp_dest="x.test"))
    result = chaos("run", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # the console wraps long lines
    assert (f"{path}:12:12: faults[1].ports: port 80 of 198.18.1.10 (x.test) is also taken by "
            f"faults[0] (hang at {path}:6:5)") in out, out
    assert "TCP and the HTTP fault proxy cannot share a server port" in out
    assert_same(before, snapshot())


def test_tcp_and_http_faults_on_different_servers_both_act(chaos, tmp_path):
    before = snapshot()
    result = chaos("run", str(write(tmp_path, SHARED_PORT.format(tcp_dest="y.test"))))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())
