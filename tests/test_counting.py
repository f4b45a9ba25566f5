"""Counting probes see everything they count, or the scenario is refused (issue #14).

Refusals go through `chaos validate` and `chaos run` (file:line, exit 2, nothing applied);
the counts themselves are real runs in the sandbox through the CLI.
"""

from __future__ import annotations

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
