"""Counting probes see everything they count, or the scenario is refused (issue #14).

Refusals go through `chaos validate` and `chaos run` (file:line, exit 2, nothing applied);
the counts themselves are real runs in the sandbox through the CLI.
"""

from __future__ import annotations

import json
import re

import pytest

from conftest import write

# The false pass: two servers, a hosts-entry fault on an unrelated name, two
# requests to upstream.test, and a proxy count that cannot see them.
FALSE_PASS = """\
name: false-pass
serve:
  - name: upstream.test
  - name: cache.test
faults:
  - type: hosts-entry
    names: [unrelated.test]
expect:
  during:
    - run: curl -sS -o /dev/null http://upstream.test/a && curl -sS -o /dev/null http://upstream.test/b
    - name: zero upstream requests
      http_requests: upstream.test
      count: 0
"""


def test_the_false_pass_is_refused_by_validate_with_file_and_line(chaos, tmp_path):
    path = write(tmp_path, FALSE_PASS)
    result = chaos("validate", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"{path}:12:22: expect.during[1].http_requests: cannot count "
                           "upstream.test's traffic"), line
    # What cannot be observed, and what to add.
    assert "no HTTP fault redirects upstream.test's traffic" in line
    assert "match: {host: upstream.test}" in line and "`requests: upstream.test`" in line


def test_the_false_pass_is_refused_by_run_before_anything_is_applied(chaos, tmp_path, state_dir):
    result = chaos("run", str(write(tmp_path, FALSE_PASS)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert ":12:22: expect.during[1].http_requests: cannot count" in result.stderr
    # No journal: no run began (a sandbox would have journaled its namespaces first).
    assert not state_dir.exists() or not any(state_dir.rglob("*")), list(state_dir.rglob("*"))


@pytest.mark.parametrize("probe, where, reason", [
    # The proxy sees a windowed fault's traffic only inside the window.
    ("http_requests: upstream.test\n      count: 0", "http_requests",
     "crosses it only while faults[0] is on (a window or flap)"),
    # Before the faults no proxy redirect is on; since: run reaches back there too.
    ("http_requests: upstream.test\n      at_most: 1\n      since: run", "http_requests",
     "takes in time when no fault is on"),
    # requests: needs a log: the lab's servers, or a serve: server by name.
    ("requests: upstream\n      count: 0", "requests",
     "counts a lab server's access log and this scenario has no `lab: registry`"),
    ("requests: nowhere.test\n      count: 0", "requests", "no access log for 'nowhere.test'"),
    # Behind the fault proxy a server's log names the proxy, not the client.
    ("requests: upstream.test\n      client: 198.18.0.2\n      count: 0", "client",
     "its log names the proxy, not the client"),
    # A hosts file answers the name while the hosts-entry is on: the DNS server never hears.
    ("dns_queries: other.test\n      count: 0", "dns_queries",
     "the clients' hosts files answer it"),
    ("dns_queries: localhost\n      at_least: 1", "dns_queries", "never asked of the DNS server"),
])
def test_counts_that_cannot_see_their_traffic_are_refused(chaos, tmp_path, probe, where, reason):
    text = f"""\
name: blind
serve:
  - name: upstream.test
faults:
  - type: http-error
    match: {{host: upstream.test}}
    ports: [80]
    window: {{after: 1s}}
  - type: hosts-entry
    names: [other.test]
expect:
  during:
    - {probe}
"""
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert re.search(rf"s\.yaml:1[34]:\d+: expect\.during\[0\]\.{where}: .*{re.escape(reason)}",
                     result.stderr), result.stderr


@pytest.mark.parametrize("probe", [
    "http_requests: upstream.test\n      at_least: 1",  # a lower bound: part of the time is enough
    "requests: upstream.test\n      count: 0",  # the server's own log sees every request
    "requests: upstream.test\n      client: 198.18.0.2\n      at_least: 1",
    "dns_queries: upstream.test\n      count: 0",
])
def test_counts_that_see_their_traffic_validate(chaos, tmp_path, probe):
    text = f"""\
name: seen
serve:
  - name: upstream.test
faults:
  - type: http-error
    match: {{host: upstream.test}}
    ports: [80]
    window: {{after: 1s}}
expect:
  during:
    - {probe}
"""
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stdout + result.stderr


def probes_by_name(report) -> dict:
    return {p["name"]: p for p in json.loads(report.read_text())["scenarios"][0]["probes"]}


# Every counting probe where its traffic is there: `count: 0` fails on it; method and
# since pick what they should. The HTTP fault passes everything (its path is never asked),
# so the proxy sees the requests without changing them.
COUNTS = """\
name: counts
serve:
  - name: upstream.test
faults:
  - type: http-error
    match: {host: upstream.test, path: /never}
    ports: [80]
  - type: dns
    names: [nothing.test]
    answer: nxdomain
expect:
  before:
    - run: curl -sS --noproxy '*' -o /dev/null http://upstream.test/early
  during:
    - run: >-
        curl -sS --noproxy '*' -o /dev/null http://upstream.test/a &&
        curl -sS --noproxy '*' -o /dev/null -I http://upstream.test/b
    - {name: proxy saw none, http_requests: upstream.test, count: 0}
    - {name: server saw none, requests: upstream.test, count: 0}
    - {name: resolver was asked nothing, dns_queries: upstream.test, count: 0}
    - {name: proxy saw one HEAD, http_requests: upstream.test, method: HEAD, count: 1}
    - {name: server saw one HEAD, requests: upstream.test, method: HEAD, count: 1}
    - {name: server saw two this phase, requests: upstream.test, count: 2}
  after:
    - {name: none after the faults, requests: upstream.test, count: 0}
    - {name: three since the run began, requests: upstream.test, since: run, count: 3}
    - {name: resolver was asked since the run began, dns_queries: upstream.test, since: run, at_least: 3}
"""


def test_each_count_fails_when_its_traffic_is_there_and_none_was_expected(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, COUNTS)), "--json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    probes = probes_by_name(report)
    failed = {name for name, p in probes.items() if p["verdict"] != "passed"}
    assert failed == {"proxy saw none", "server saw none", "resolver was asked nothing"}, probes
    assert probes["proxy saw none"]["checks"][0]["observed"] == "2"
    assert probes["server saw none"]["checks"][0]["observed"].startswith("2 (GET /a 200; HEAD /b 200")
    assert int(probes["resolver was asked nothing"]["checks"][0]["observed"]) >= 2  # A (+ AAAA)
    assert [r["method"] for r in probes["proxy saw none"]["detail"]["requests"]] == ["GET", "HEAD"]


IN_FLIGHT = """\
name: in-flight
serve:
  - name: big.test
    http: {size: 20000000}
  - name: slow.test
faults:
  - type: http-error
    match: {host: slow.test}
    ports: [80]
    status: 503
    delay: 20s
expect:
  during:
    - name: start two requests that outlive their probe
      run: >-
        for host in big.test slow.test; do
        setsid curl -sS --noproxy '*' -m 20 --limit-rate 100k -o /dev/null http://$host/ </dev/null >/dev/null 2>&1 &
        echo $! >> {logs}/clients; done; sleep 1
    - {name: the download is counted in flight, requests: big.test, count: 1}
    - {name: no download expected, requests: big.test, at_most: 0}
    - {name: the held request is counted in flight, http_requests: slow.test, count: 1}
    - name: end them
      run: kill $(cat {logs}/clients); sleep 0.5
    - {name: the download ended, requests: big.test, count: 1}
"""


def test_a_request_in_flight_is_counted_and_shown_in_flight(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, IN_FLIGHT)), "--json", str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    probes = probes_by_name(report)
    failed = {name for name, p in probes.items() if p["verdict"] != "passed"}
    assert failed == {"no download expected"}, probes
    assert probes["no download expected"]["checks"][0]["observed"].startswith("1 (1 in flight")
    (download,) = probes["the download is counted in flight"]["detail"]["requests"]
    assert download["in_flight"] is True and download["path"] == "/"
    (held,) = probes["the held request is counted in flight"]["detail"]["requests"]
    assert held["in_flight"] is True and held.get("status") is None
    (ended,) = probes["the download ended"]["detail"]["requests"]
    # Cut by the client's end: 200 with part of the bytes, and how the connection ended.
    assert ended["in_flight"] is False and ended["status"] == 200
    assert 0 < ended["bytes"] < 20_000_000 and ended["ended"] != "complete", ended


def test_run_scenario_refuses_a_blind_count_built_in_code(state_dir):
    import yaml

    from chaos.runner import run_scenario
    from chaos.scenario.model import scenario_model

    # Not through load: the runner's plan refuses it before anything is applied.
    scenario = scenario_model({"hosts-entry"}).model_validate(yaml.safe_load(FALSE_PASS))
    result = run_scenario(scenario)
    assert (result.status, result.exit_code) == ("invalid", 2)
    assert "expect.during[1].http_requests: cannot count upstream.test's traffic" in result.errors[0]
    assert not state_dir.exists() or not any(state_dir.rglob("*"))


@pytest.mark.parametrize("extra_fault, probe, refused", [
    # A hosts entry sends upstream.test's clients to cache.test's address, which the
    # upstream-only HTTP fault does not redirect: the proxy would miss them.
    ("{type: hosts-entry, names: [upstream.test], address: 198.18.1.11}",
     "http_requests: upstream.test\n      count: 0", "clients connect to another address"),
    ("{type: dns, names: ['*.test'], answer: sinkhole, address: 198.18.1.11}",
     "http_requests: upstream.test\n      count: 0", "clients connect to another address"),
    ("{type: dns, names: ['*.test'], answer: servfail}", "http_requests: upstream.test\n      count: 0", None),
    # To loopback no request reaches any server: nothing to miss.
    ("{type: hosts-entry, names: [upstream.test]}", "http_requests: upstream.test\n      count: 0", None),
    # A fault naming a host the run does not know redirects every server: it may stand in
    # front of upstream.test, whose log would then name the proxy.
    ("{type: slow, destinations: [198.18.1.0/24], latency: 1s}",
     "requests: cache.test\n      client: 198.18.0.2\n      count: 0", "its log names the proxy"),
    ("{type: http-error, match: {host: [cache.test, elsewhere.example]}}",
     "requests: upstream.test\n      client: 198.18.0.2\n      count: 0", "its log names the proxy"),
    # The HTTP fault names only upstream.test, which the run knows: cache.test is direct.
    ("{type: hosts-entry, names: [other.test]}",
     "requests: cache.test\n      client: 198.18.0.2\n      count: 0", None),
])
def test_counts_see_through_redirected_names(chaos, tmp_path, extra_fault, probe, refused):
    text = f"""\
name: moved
serve:
  - {{name: upstream.test, address: 198.18.1.10}}
  - {{name: cache.test, address: 198.18.1.11}}
faults:
  - {{type: http-error, match: {{host: upstream.test}}, ports: [80]}}
  - {extra_fault}
expect:
  during:
    - {probe}
"""
    result = chaos("validate", str(write(tmp_path, text)))
    if refused is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2 and refused in result.stderr, result.stderr
