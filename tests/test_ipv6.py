"""The dual-stack sandbox (`ipv6:`): servers, clients and regions with IPv6 addresses from
2001:2::/48 beside the IPv4 ones, and the `family:` of the faults, each proven with real
sockets in the run's own namespaces (curl -4 / -6), the machine left as it was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chaos.faults.hosts_entry import HostsEntry
from chaos.injectors.hosts_file import HostsBlock, remove_block, rewrite_keeping_blocks
from chaos.plan import redirected_names
from chaos.scenario.load import load_text
from conftest import LAB_BINARIES, ROOT, SCENARIOS, assert_same, chaos_cmd, require_binaries, snapshot, write

CURL = "curl -sS --noproxy '*' --connect-timeout 1 -m 3 -o /dev/null -w '%{remote_ip}\\n'"
OTHER = {"v4": "v6", "v6": "v4"}

# One server per fault type, so every fault acts on its own name and the probes see each.
KERNEL_FAULTS = """
name: families-{family}
ipv6: true
serve:
  - {{name: route.test}}
  - {{name: filter.test}}
  - {{name: hosts.test}}
  - {{name: geo.test}}
regions:
  ES: 198.18.64.0/24
faults:
  - {{type: route-blackhole, destinations: [route.test], kind: unreachable, family: {family}}}
  - {{type: packet-filter, destinations: [filter.test], action: reject-reset, family: {family}}}
  - {{type: hosts-entry, names: [hosts.test], family: {family}}}
  - {{type: geo-block, region: ES, block: [geo.test], action: reject, family: {family}}}
expect:
  before:
{before}
  during:
{during}
  after:
{before}
"""

DNS_FAULT = """
name: dns-family-{family}
ipv6: true
serve:
  - {{name: dns.test}}
faults:
  - {{type: dns, names: [dns.test], answer: nxdomain, family: {family}}}
expect:
  before:
{before}
  during:
{during}
  after:
{before}
"""


def probe(flag: str, name: str, ok: bool, region: str | None = None) -> str:
    where = f", region: {region}" if region else ""
    check = "exit: 0" if ok else "exit: nonzero"
    return f'    - {{run: "{CURL} -{flag[1]} http://{name}/", {check}{where}}}'


def probes(names: list[str], broken: str | None, regions: dict[str, str] | None = None) -> str:
    """curl -4 and -6 to each name (from its region): the ``broken`` family fails."""
    regions = regions or {}
    return "\n".join(probe(f, n, f != broken, regions.get(n)) for n in names for f in ("v4", "v6"))


def run_json(chaos, tmp_path, text: str) -> dict:
    report = tmp_path / "r.json"
    result = chaos("run", str(write(tmp_path, text)), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(report.read_text())["scenarios"][0]


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_kernel_faults_break_only_their_family(chaos, tmp_path, family):
    names = ["route.test", "filter.test", "hosts.test", "geo.test"]
    regions = {"geo.test": "ES"}
    text = KERNEL_FAULTS.format(
        family=family, before=probes(names, None, regions),
        during="\n".join([probes(names, family, regions),
                          # the geo block is the region's only: the default client gets both
                          probe("v4", "geo.test", True), probe("v6", "geo.test", True)]))
    before = snapshot()
    scenario = run_json(chaos, tmp_path, text)
    assert_same(before, snapshot())
    during = [p for p in scenario["probes"] if p["phase"] == "during"]
    assert len(during) == 10 and all(p["verdict"] == "passed" for p in during)


def dig(qtype: str, status: str) -> str:
    return f'    - {{run: "dig +tries=1 {qtype} dns.test", stdout: {{contains: "status: {status}"}}}}'


@pytest.mark.parametrize("family", ["v4", "v6"])
def test_dns_fault_breaks_only_its_query_type(chaos, tmp_path, family):
    broken = "A" if family == "v4" else "AAAA"
    answers = "\n".join([dig("A", "NOERROR"), dig("AAAA", "NOERROR")])
    text = DNS_FAULT.format(family=family, before=answers + "\n" + probes(["dns.test"], None),
                            during="\n".join([dig(broken, "NXDOMAIN"),
                                              dig({"A": "AAAA", "AAAA": "A"}[broken], "NOERROR"),
                                              probes(["dns.test"], family)]))
    before = snapshot()
    scenario = run_json(chaos, tmp_path, text)
    assert_same(before, snapshot())
    during = [p for p in scenario["probes"] if p["phase"] == "during"]
    assert len(during) == 4 and all(p["verdict"] == "passed" for p in during)


PROXIED = """
name: proxies-dual-stack
ipv6: true
serve:
  - {name: tcp.test}
  - {name: http.test}
  - {name: plain.test}
faults:
  - {type: reset, destinations: [tcp.test], ports: [80], after: 10}   # mid-answer: always exit 56
  - {type: http-error, match: {host: http.test}, ports: [80], status: 503}
expect:
  before:
%s
  during:
%s
  after:
%s
"""


def test_fault_proxies_take_both_families_in_a_dual_stack_run(chaos, tmp_path):
    """The edge redirects IPv6 too: a client that connects over IPv6 meets the fault."""
    fine = "\n".join(f'    - {{run: "curl -sS -{v} http://{n}/", stdout: {{contains: ok}}}}'
                     for n in ("tcp.test", "http.test", "plain.test") for v in "46")
    during = "\n".join([
        *(f'    - {{run: "curl -sS -{v} http://tcp.test/", exit: 56}}' for v in "46"),
        *(f'    - {{run: "curl -sS -{v} -o /dev/null -w %{{http_code}} http://http.test/", '
          f'stdout: {{contains: "503"}}}}' for v in "46"),
        *(f'    - {{run: "curl -sS -{v} http://plain.test/", stdout: {{contains: ok}}}}' for v in "46"),
        '    - {http_requests: http.test, at_least: 2}'])
    before = snapshot()
    scenario = run_json(chaos, tmp_path, PROXIED % (fine, during, fine))
    assert_same(before, snapshot())
    assert all(p["verdict"] == "passed" for p in scenario["probes"])


def test_served_names_resolve_to_both_families_ipv6_first(chaos, tmp_path):
    text = """
name: dual
hosts: {both.test: [198.18.1.77, "2001:2:0:1::77"]}
serve:
  - {name: web.test, address: "2001:2:0:1::50", http: {body: "dual\\n"}}
expect:
  before:
    - run: getent ahosts web.test
      stdout: {regex: "^2001:2:0:1::50 +STREAM web.test\\\\n(.*\\\\n)*198\\\\.18\\\\.1\\\\.10 +STREAM"}
    - {run: "curl -sS -4 http://web.test/", stdout: {contains: dual}}
    - {run: "curl -sS -6 http://web.test/", stdout: {contains: dual}}
    - {run: "curl -sS -w '%{remote_ip}' http://web.test/", stdout: {contains: "2001:2:0:1::50"}}
    - {run: getent ahosts both.test, stdout: {contains: [198.18.1.77, "2001:2:0:1::77"]}}
"""
    scenario = run_json(chaos, tmp_path, text)
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 5


def test_a_sandbox_without_ipv6_stays_ipv4_only(chaos, tmp_path):
    text = """
name: v4-only
serve: [{name: web.test}]
expect:
  before:
    - {run: "getent ahosts web.test", stdout: {not_contains: "2001:2"}}
    - {run: "curl -sS -6 --connect-timeout 1 http://[2001:2:0:1::a]/", exit: 7}
"""
    scenario = run_json(chaos, tmp_path, text)
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 2


# -- refused before anything runs ------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("ipv6: false\nserve: [{name: a.test, address: '2001:2:0:1::5'}]", "ipv6: false, but serve[0].address"),
    ("lab: registry\nhosts: {a.test: '2001:2:0:1::5'}", "the registry lab takes `ipv6: true`"),
    ("serve: [{name: a.test, address: '2001:db8::5'}]", "outside the sandbox's ranges"),
    ("hosts: {a.test: ['2001:2::5', '2001:2::6']}", "one IPv4 and one IPv6 address"),
    ("regions: {ES: {range: 198.18.64.0/24, range6: '2001:2:0:1::/64'}}", "overlaps servers"),
    ("faults: [{type: hosts-entry, names: [a.test], address: 127.0.0.1, family: v6}]", "is not IPv6"),
    ("faults: [{type: dns, names: [a.test], answer: servfail, family: v6, types: [A]}]",
     "family v6 means types [AAAA]"),
])
def test_bad_dual_stack_input_is_refused_with_its_line(chaos, tmp_path, text, message):
    path = write(tmp_path, f"name: bad\n{text}\n")
    result = chaos("validate", str(path))
    assert result.returncode == 2 and message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr and f"{path}:" in result.stdout + result.stderr


@pytest.mark.parametrize("text, message", [
    # an IPv4-only sandbox has no IPv6 address to act on
    ("serve: [{name: a.test}]\nfaults: [{type: route-blackhole, destinations: [a.test], family: v6}]",
     "a.test has no IPv6 address"),
    ("ipv6: true\nfaults: [{type: packet-filter, destinations: [198.18.1.10], family: v6}]",
     "198.18.1.10 has no IPv6 address"),
])
def test_what_a_family_cannot_reach_is_refused_at_plan_time(chaos, tmp_path, text, message):
    before = snapshot()
    result = chaos("run", str(write(tmp_path, f"name: bad\n{text}\n")))
    assert result.returncode == 2 and message in result.stdout + result.stderr, result.stdout
    assert_same(before, snapshot())


def test_model_turns_an_ipv6_address_into_address6_and_dual_stack():
    scenario = load_text("name: s\nserve: [{name: a.test, address: '2001:2:0:1::5'}]\n")
    server = scenario.serve[0]
    assert server.address is None and str(server.address6) == "2001:2:0:1::5"
    assert scenario.dual_stack and not load_text("name: s\nserve: [{name: a.test}]\n").dual_stack


def test_hosts_entry_of_one_family_replaces_only_that_familys_lines(tmp_path):
    hosts = tmp_path / "hosts"
    original = b"127.0.0.1\tlocalhost\n198.18.1.10\treg.test\n2001:2:0:1::a\treg.test\n"
    hosts.write_bytes(original)
    fault = HostsEntry(names=["reg.test"], family="v6")
    assert str(fault.address) == "::1"
    tag = "chaos-t6-e0v6"  # as the fault tags a block of one family
    HostsBlock(hosts, [(str(fault.address), "reg.test")], tag, family=6)._apply(None)
    text = hosts.read_text()
    assert "::1\treg.test" in text and "\n198.18.1.10\treg.test" in text
    assert f"#{tag}# 2001:2:0:1::a\treg.test" in text
    assert redirected_names(str(hosts)) == {"reg.test": "chaos-t6"}
    # a sandbox rewrites its hosts file when a server is added: the block keeps to its family
    rewrite_keeping_blocks(hosts, ["127.0.0.1\tlocalhost", "198.18.1.10\treg.test",
                                   "2001:2:0:1::a\treg.test"])
    assert hosts.read_text() == text
    assert remove_block(hosts, tag) and hosts.read_bytes() == original


KILLED = """
name: killed-dual-stack
ipv6: true
serve: [{name: a.test}, {name: b.test}]
faults:
  - {type: route-blackhole, destinations: [a.test], kind: unreachable, family: v6}
  - {type: packet-filter, destinations: [b.test], family: v6}
  - {type: reset, destinations: [b.test], ports: [80]}
expect:
  during:
    - {run: "sleep 60", within: 90s}
"""


def _faults_on(state_dir: Path, proc, count: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        for path in state_dir.glob("runs/*/journal.jsonl"):
            records = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
            if sum(r.get("kind") == "fault" and r.get("state") == "on" for r in records) == count:
                return records
        time.sleep(0.05)
    raise AssertionError(f"the run never switched its faults on: {proc.communicate(timeout=30)}")


def _in(netns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True).stdout


def test_a_killed_dual_stack_run_is_recovered_ipv6_changes_included(chaos, tmp_path, state_dir):
    """SIGKILL with IPv6 routes, ip6tables filters and an ip6tables redirect on: `chaos
    recover` undoes them from the journal and the machine reads as before."""
    before = snapshot()
    proc = subprocess.Popen(chaos_cmd("run", str(write(tmp_path, KILLED))),
                            env={**os.environ, "CHAOS_STATE_DIR": str(state_dir)}, cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        records = _faults_on(state_dir, proc, 3)
        names = [r["undo"]["name"] for r in records if r.get("kind") == "netns"]
        client, world = (next(n for n in names if n.endswith(end)) for end in ("-c", "-w"))
        assert "unreachable 2001:2:0:1::a" in _in(client, "ip", "-6", "route")
        assert "2001:2:0:1::b/128" in _in(client, "ip6tables-save")
        assert "198.18" not in _in(client, "iptables-save")  # family v6: no IPv4 rule
        assert "REDIRECT" in _in(world, "ip6tables-save", "-t", "nat")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    recovered = chaos("recover")
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert not os.path.exists(f"/run/netns/{client}") and not os.path.exists(f"/run/netns/{world}")
    assert not list(state_dir.glob("runs/*"))
    assert_same(before, snapshot())


def test_a_fault_of_one_family_is_refused_by_the_chaos_mesh_export(chaos, tmp_path):
    """Exported as a partition of both families it would be another incident: refused."""
    path = write(tmp_path, "name: one-family\nipv6: true\nserve: [{name: a.test}]\nfaults:\n"
                           "  - {type: packet-filter, destinations: [a.test], family: v6}\n")
    result = chaos("export", "--to", "chaos-mesh", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "family v6: Chaos Mesh acts on" in result.stdout + result.stderr


def _every_probe_passes(chaos, tmp_path, shipped: str, probes: int) -> None:
    """A shipped lab scenario runs with all its ``probes`` passed, leaving nothing behind."""
    require_binaries(*LAB_BINARIES)
    before = snapshot()
    report = tmp_path / "r.json"
    result = chaos("run", str(SCENARIOS / shipped), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    scenario = json.loads(report.read_text())["scenarios"][0]
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * probes
    assert_same(before, snapshot())


def test_lab_mirror_over_ipv6_falls_back_to_ipv4_for_dockerd_and_skopeo(chaos, tmp_path):
    """The lab with `ipv6: true`: the docker host reaches the mirror over IPv6; with that
    path dropped, dockerd and skopeo still pull from it, over IPv4 (the shipped scenario)."""
    _every_probe_passes(chaos, tmp_path, "lab-ipv6-mirror-path-dropped.yaml", 9)


def test_lab_mirror_hangs_on_its_kept_alive_ipv6_connections_to_hub(chaos, tmp_path):
    """The whole lab dual-stack: the mirror reaches Hub's registry over IPv6 (the upstream's
    access log names its IPv6 address); with that path dropped, its kept-alive connection
    hangs while a new connection falls back to IPv4 (the shipped scenario)."""
    _every_probe_passes(chaos, tmp_path, "lab-ipv6-upstream-path-dropped.yaml", 8)


LAB_BOTH_FAMILIES = """
name: lab-both-families
lab: {dns: true}
ipv6: true
expect:
  before:
    - name: the fake DNS answers AAAA for Hub's names
      region: cache
      run: getent ahostsv6 registry-1.docker.io auth.docker.io production.cloudflare.docker.com
      stdout: {regex: "(?s)2001:2::10 .*2001:2::11 .*2001:2::12 "}
%s
    - {requests: upstream, path: /v2/, client: "198.18.0.30", count: 1}
    - {requests: upstream, path: /v2/, client: "2001:2::30", count: 1}
    - {requests: auth, path: /healthz, client: "2001:2::30", count: 1}
    - {requests: cdn, path: /healthz, client: "198.18.0.30", count: 1}
"""


def test_lab_hub_answers_on_both_families_and_logs_each_client_address(chaos, tmp_path):
    """`ipv6: true` makes Hub's registry, token server and CDN dual-stack: each answers
    curl -4 and -6 from the docker host (names from the fake DNS, A and AAAA), and each
    access log names the address the request came from, so a count sees both families."""
    require_binaries(*LAB_BINARIES)
    curls = [f'    - {{run: "{CURL} -{f} https://{host}{path}", stdout: {{contains: "{addr}"}}}}'
             for host, path, addrs in (("{upstream}", "/v2/", ("198.18.0.10", "2001:2::10")),
                                       ("{auth}", "/healthz", ("198.18.0.11", "2001:2::11")),
                                       ("{cdn}", "/healthz", ("198.18.0.12", "2001:2::12")))
             for f, addr in zip("46", addrs, strict=True)]
    scenario = run_json(chaos, tmp_path, LAB_BOTH_FAMILIES % "\n".join(curls))
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 11


LAB_UPSTREAM_STOPPED = """
name: lab-upstream-stopped-both-families
lab: {warm: []}
ipv6: true
expect:
  during:
    - stop: upstream
%s
    - start: upstream
      within: 10s
%s
"""


def test_stopping_the_dual_stack_upstream_stops_it_on_both_families(chaos, tmp_path):
    """The upstream's IPv6 listener is a second process: `stop: upstream` ends both, so
    "registry down" is down over IPv4 and IPv6 alike, and `start:` brings both back."""
    require_binaries(*LAB_BINARIES)
    down = "\n".join(f'    - {{run: "{CURL} -{f} https://{{upstream}}/v2/", exit: 7}}' for f in "46")
    up = "\n".join(f'    - {{run: "{CURL} -{f} https://{{upstream}}/v2/", stdout: {{contains: "{a}"}}}}'
                   for f, a in (("4", "198.18.0.10"), ("6", "2001:2::10")))
    scenario = run_json(chaos, tmp_path, LAB_UPSTREAM_STOPPED % (down, up))
    assert [p["verdict"] for p in scenario["probes"]] == ["passed"] * 6, scenario["probes"]
