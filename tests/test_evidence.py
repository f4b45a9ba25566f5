"""Evidence in every verdict: a probe killed at its bound or failing says what its client
held and got so far (connections read from the kernel in the client's namespace)."""

from __future__ import annotations

import json
import re
import subprocess
import time

from conftest import write

STALLED = """\
name: evidence-stalled-download
description: files.test stops sending after 50000 bytes; the clients wait until their bound
serve:
  - name: files.test
    http: {size: 2000000}
faults:
  - type: hang
    at: after-bytes
    bytes: 50000
    destinations: [files.test]
    ports: [80]
expect:
  during:
    - name: curl waits on the stalled download
      run: curl -sS --noproxy '*' -o /dev/null http://files.test/blob
      timeout: 2s
    - name: the agent waits on it too
      http: http://files.test/blob
      timeout: 2s
    - name: a failing probe lists connections too (none left here)
      run: curl -sS --noproxy '*' -m 1 -o /dev/null http://files.test/blob
      exit: 0
"""


def test_a_hung_probe_shows_the_stalled_connection_its_client_held(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, STALLED)), "--json", str(report), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    probes = json.loads(report.read_text())["scenarios"][0]["probes"]
    curl, agent, failing = probes
    assert [curl["verdict"], agent["verdict"], failing["verdict"]] == ["hung", "hung", "failed"]
    for probe, process in ((curl, "curl"), (agent, "python")):
        seen = probe["evidence"]["connections"]
        held = [c for c in seen if c["pid"] is not None]
        assert len(held) == 1, seen
        assert all(c["state"] != "time-wait" for c in seen), seen
        conn = held[0]
        assert (conn["to"], conn["remote"], conn["state"]) == ("files.test", "198.18.1.10:80",
                                                                "established")
        # the hang lets 50000 bytes through (headers included), then nothing comes
        assert 40_000 <= conn["received"] <= 50_000, conn
        assert 0.5 <= conn["idle"] <= 2.5, conn
        assert conn["process"].startswith(process) and conn["pid"] > 0, conn
    # curl -m 1 ended by itself: what is left of its socket no process holds any more
    assert "connections" in failing["evidence"]
    assert all(c["pid"] is None for c in failing["evidence"]["connections"])
    out = " ".join(result.stdout.split())
    assert "connection: curl[" in out and "-> files.test 198.18.1.10:80 established" in out, out


STALLED_PULL = """\
name: evidence-stalled-pull
description: the CDN stops sending each blob after 3 MB; dockerd pulls big:1 from Hub directly
lab: registry
faults:
  - type: hang
    at: after-bytes
    bytes: 3000000
    destinations: [production.cloudflare.docker.com]
    ports: [443]
expect:
  during:
    - name: the pull stalls on the CDN
      docker_pull: registry-1.docker.io/library/big:1
      timeout: 8s
  after:
    - name: dockerd lets go of the CDN once the hang is reverted
      connections: {to: cdn, established: 0}
      within: 5s
"""


def test_a_hung_pull_shows_bytes_per_layer_and_dockerd_s_connections(chaos, tmp_path, lab_binaries):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, STALLED_PULL)), "--json", str(report), timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    pull, after = json.loads(report.read_text())["scenarios"][0]["probes"]
    assert pull["verdict"] == "hung", pull
    layers = pull["evidence"]["layers"]
    assert len(layers) == 4, layers  # big:1: busybox, then 16, 8 and 4 MB of random bytes
    stalled = [e for e in layers if e["state"] == "downloading"]
    assert stalled and all(0 < e["bytes"] <= 3_000_000 < e["size"] for e in stalled), layers
    assert all(e["idle"] >= 1 for e in stalled), layers
    assert re.fullmatch(r"layer [1-4]/4 stalled at [0-9.]+ (MB|kB) of [0-9.]+ MB, idle [0-9.]+ s",
                        pull["evidence"]["stalled"]), pull["evidence"]
    # dockerd (not the probe's own process, long gone) holds the stalled CDN connections
    held = [c for c in pull["evidence"]["connections"] if c["to"] == "production.cloudflare.docker.com"]
    assert held and all(c["process"] == "dockerd" and c["state"] == "established" for c in held), held
    assert sum(c["received"] for c in held) >= sum(e["bytes"] for e in stalled), (held, layers)
    out = " ".join(result.stdout.split())
    assert "pull: layer " in out and "connection: dockerd[" in out, out
    assert after["verdict"] == "passed", after  # `cdn` names the lab's CDN


ASSERTIONS = """\
name: evidence-http-headers-and-size
description: response headers and body size are checked; error and count probes say what came
serve:
  - name: files.test
    http: {size: 3000}
faults:
  - type: dns
    names: [gone.test]
    answer: nxdomain
expect:
  during:
    - name: headers and size as served
      http: http://files.test/blob
      response_headers:
        content-length: "3000"
        Content-Type: {contains: text/}
        Retry-After: null
      body_size: 3000
    - name: wrong headers and size fail
      http: http://files.test/blob
      response_headers: {Content-Type: application/json, Accept-Ranges: null, X-Cache: {contains: HIT}}
      body_size: {at_least: 5000}
    - name: an expected error says which
      run: curl -sS --noproxy '*' -m 1 http://gone.test/
      exit: nonzero
    - name: no answer is expected and seen
      http: http://files.test:81/
      status: error
    - name: a count says what it counted
      dns_queries: {name: gone.test, at_least: 1}
"""


def test_http_headers_body_size_and_observed_lines(chaos, tmp_path):
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, ASSERTIONS)), "--json", str(report), timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    probes = {p["name"]: p for p in json.loads(report.read_text())["scenarios"][0]["probes"]}
    good, bad = probes["headers and size as served"], probes["wrong headers and size fail"]
    assert good["verdict"] == "passed" and len(good["checks"]) == 5, good["checks"]
    assert good["observed"] == ""  # about neither an error nor a count: nothing to add
    failed = {(c["what"], c["observed"]) for c in bad["checks"] if not c["ok"]}
    assert failed == {("header Content-Type", "'text/plain'"), ("header Accept-Ranges", "'bytes'"),
                      ("header X-Cache", "absent"), ("body size", "3000 bytes")}, bad["checks"]
    error = probes["an expected error says which"]
    assert error["verdict"] == "passed"
    assert re.fullmatch(r"exit 6: curl: \(6\) Could not resolve host: gone.test", error["observed"]), error
    answer = probes["no answer is expected and seen"]
    assert answer["verdict"] == "passed", answer
    assert answer["observed"].startswith("no answer (refused: "), answer
    count = probes["a count says what it counted"]
    assert count["verdict"] == "passed" and re.fullmatch(r"[1-9]\d* queries", count["observed"]), count
    out = " ".join(result.stdout.split())
    for probe in (error, answer, count):
        assert f"observed: {probe['observed']}" in out, out


def _probe(data: dict, handle):
    from chaos.probes.connections import ConnectionsProbe
    from chaos.probes.run import run_probe

    session = handle.session
    return run_probe(ConnectionsProbe.model_validate(data), "after", session.place, session.journal)


def test_connections_expectation_against_a_stalled_transfer(chaos_sandbox, tcp_faults):
    from chaos.sandbox.sockets import tcp_connections

    address = chaos_sandbox.serve("files.test", size=2_000_000)
    tcp_faults.hang("files.test", at="after-bytes", bytes=50000)
    # a client that outlives any probe: what a dockerd with a stalled layer is
    client = subprocess.Popen(["ip", "netns", "exec", chaos_sandbox.client, "curl", "-sS", "--noproxy",
                               "*", "-o", "/dev/null", "http://files.test/blob"])
    try:
        deadline = time.monotonic() + 10
        while not any(c.received >= 40_000 for c in tcp_connections(chaos_sandbox.client, {address: ""})):
            assert time.monotonic() < deadline, "curl never got the first bytes"
            time.sleep(0.1)
        leak = _probe({"connections": {"to": "files.test", "established": 0}}, chaos_sandbox)
        assert leak.verdict == "failed", leak
        assert [(c.what, c.expected, c.observed) for c in leak.checks] == [
            ("established connections to files.test", "0", "1")]
        (held,) = [c for c in leak.evidence["connections"] if c["state"] == "established"]
        assert (held["process"], held["pid"]) == ("curl", client.pid), held
        assert 40_000 <= held["received"] <= 50_000, held
        assert leak.observed.startswith("1 established, 1 open; curl["), leak.observed
        assert _probe({"connections": {"to": "files.test", "port": 80, "established": 1}},
                      chaos_sandbox).ok
        assert _probe({"connections": {"to": address, "port": 443, "open": 0}}, chaos_sandbox).ok
    finally:
        client.kill()
        client.wait()
    # the client gone, the count settles within its bound
    gone = _probe({"connections": {"to": "files.test", "established": 0}, "within": "3s"},
                  chaos_sandbox)
    assert gone.ok, gone


UNKNOWN_SERVER = """\
name: evidence-unknown-server
serve:
  - name: files.test
  - name: mirror.test
expect:
  after:
    - connections: {to: cdn, established: 0}
"""

SENT_ELSEWHERE = """\
name: evidence-sent-elsewhere
serve:
  - name: files.test
  - name: mirror.test
faults:
  - type: hosts-entry
    names: [files.test]
    address: 198.18.1.11
expect:
  during:
    - connections: {to: files.test, established: 0}
  after:
    - connections: {to: files.test, established: 0}
"""


def test_connections_it_cannot_see_are_refused(chaos, tmp_path):
    path = write(tmp_path, UNKNOWN_SERVER)
    for command in ("validate", "run"):
        result = chaos(command, str(path))
        out = result.stdout + result.stderr
        assert result.returncode == 2, out
        assert f"{path}:7:" in out and "unknown server 'cdn': the scenario knows files.test, mirror.test" in out
    no_count = chaos("validate", str(write(tmp_path, UNKNOWN_SERVER.replace(", established: 0", ""))))
    assert no_count.returncode == 2 and "give established or open" in no_count.stdout + no_count.stderr
    # while the hosts entry sends files.test's clients to mirror.test, a count of connections
    # to files.test's own address would miss them: refused in `during`, fine in `after`
    path = write(tmp_path, SENT_ELSEWHERE, "elsewhere.yaml")
    result = chaos("validate", str(path))
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert f"{path}:11:25: expect.during[0].connections.to: faults[0] sends files.test's clients to " \
           "another address" in out, out
    assert "expect.after" not in out, out
