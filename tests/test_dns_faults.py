"""The dns fault type end to end: curl in the sandbox resolving through the fake server."""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIOS, assert_same, snapshot, write

TEMPLATE = """\
name: dns-{answer}
description: registry.test answered with {answer}
serve:
  - name: registry.test
faults:
  - type: dns
    names: [registry.test]
    answer: {answer}
{extra}
expect:
  during:
    - name: symptom
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{{http_code}}' http://registry.test/
      exit: {exit}
      within: {within}
"""


@pytest.mark.parametrize("answer,extra,exit,within,at_least", [
    ("nxdomain", "", 6, "500ms", 0.0),
    ("servfail", "", 6, "500ms", 0.0),
    ("refused", "", 6, "500ms", 0.0),
    ("timeout", "", 6, "1.6s", 0.95),          # resolv.conf: timeout:1 attempts:1
    ("sinkhole", "", 7, "500ms", 0.0),         # 0.0.0.0: connection refused at once
    ("delay", "    delay: 400ms", 0, "1s", 0.4),
])
def test_each_answer_shows_its_symptom(chaos, tmp_path, answer, extra, exit, within, at_least):
    report = tmp_path / "r.json"
    text = TEMPLATE.format(answer=answer, extra=extra, exit=exit, within=within)
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    probe = json.loads(report.read_text())["scenarios"][0]["probes"][0]
    assert probe["duration"] >= at_least


@pytest.mark.parametrize("name", ["dns-nxdomain-registry.yaml", "dns-servfail-flaky.yaml"])
def test_shipped_dns_scenarios(chaos, name):
    before = snapshot()
    result = chaos("run", str(SCENARIOS / name))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


def test_dns_fault_needs_the_sandbox(chaos, tmp_path):
    text = TEMPLATE.format(answer="nxdomain", extra="", exit=6, within="1s").replace(
        "serve:\n  - name: registry.test\n", "")
    result = chaos("run", "--host", str(write(tmp_path, text)))
    assert result.returncode == 2 and "faults[0]: dns faults need the sandbox" in result.stdout


def test_missing_parameter_is_located(chaos, tmp_path):
    text = TEMPLATE.format(answer="rotate", extra="", exit=0, within="1s")
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2 and "s.yaml:6:5: faults[0]: answer rotate needs `addresses`" in result.stderr


def test_truncate_over_tcp_only_is_refused(chaos, tmp_path):
    text = TEMPLATE.format(answer="truncate", extra="    protocol: tcp", exit=0, within="1s")
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2 and "s.yaml:9:15: faults[0].protocol: truncate sets TC over UDP" in result.stderr


def test_dns_serve_alone_for_manual_testing(tmp_path, state_dir):
    import signal
    import socket
    import subprocess

    from conftest import chaos_cmd

    zone = write(tmp_path, "registry.test: 198.18.1.10\nmirror.test: [198.18.1.11]\n", "zone.yaml")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(chaos_cmd("dns", "serve", "--zone", str(zone), "--port", str(port),
                                      "--fault", "registry.test=servfail"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"

        def dig(name):
            return subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", name],
                                  capture_output=True, text=True).stdout

        assert "status: SERVFAIL" in dig("registry.test")
        assert "198.18.1.11" in dig("mirror.test")
        assert "status: REFUSED" in dig("elsewhere.test")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    servers = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--port {port}" not in servers, "the server must end with the command"


def test_dns_serve_rejects_a_bad_fault(chaos):
    result = chaos("dns", "serve", "--fault", "x.test=bogus")
    assert result.returncode == 2 and "Invalid value for '--fault': answer:" in result.stderr


def test_flapping_nxdomain_is_seen_on_and_off(chaos, tmp_path):
    """NXDOMAIN for 400 ms of every 800 ms, for 1.6 s; a lookup loop sees on/off/on/off."""
    text = """\
name: dns-flap
description: registry.test flaps between NXDOMAIN and its address
hosts:
  registry.test: 198.18.1.10
faults:
  - type: dns
    names: [registry.test]
    answer: nxdomain
    window: {for: 1600ms}
    flap: {period: 800ms, duty: 0.5}
expect:
  during:
    - name: lookups for 2.4 s, one run of statuses each
      run: |
        end=$(( $(date +%s%N) + 2400000000 ))
        while [ $(date +%s%N) -lt $end ]; do
          dig +tries=1 +time=1 registry.test | grep -o 'status: [A-Z]*'; sleep 0.05
        done | uniq -c
      stdout: {regex: "^ *\\\\d+ status: NXDOMAIN\\\\n *\\\\d+ status: NOERROR\\\\n *\\\\d+ \\
        status: NXDOMAIN\\\\n *\\\\d+ status: NOERROR\\\\n$"}
      within: 5s
    - name: the server answered the name all along
      dns_queries: registry.test
      at_least: 8
  after:
    - run: dig +short registry.test
      stdout: {regex: "^198\\\\.18\\\\.1\\\\.10$"}
"""
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout
    scenario = json.loads(report.read_text())["scenarios"][0]
    switches = [e["state"] for e in scenario["events"] if e["kind"] == "fault" and "due" in e]
    assert switches == ["on", "off", "on", "off"]
    runs = [line.split()[-1] for line in scenario["probes"][0]["detail"]["stdout"].splitlines()]
    assert runs == ["NXDOMAIN", "NOERROR", "NXDOMAIN", "NOERROR"]
    queries = scenario["probes"][1]["detail"]["queries"]
    assert {q["answer"] for q in queries} == {"nxdomain", "zone"}
