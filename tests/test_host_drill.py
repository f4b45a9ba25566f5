"""Host drills (scenarios/host/): the DZone drill as written, run with --host on this machine,
in front of the dockerd, stand-in Hub and cache container its own set-up starts
(`host_setup: docker-cache`, chaos/lab/host_stack.py), and nothing left behind.

The machine is shared with other test runs (their namespaces, /etc/hosts blocks and routes
come and go meanwhile), so "nothing left behind" is checked two ways: everything global
(routes -4 and -6 in every table, ip rules, links, nft ruleset, iptables, mounts, /run) must
hold no trace of this run's artefacts (its tag, its bridge and ranges, dockerd's chains,
Hub's names), and /etc/hosts outside the chaos blocks must read byte for byte as before.
Whatever happens, the test ends with `chaos recover` on the run's state dir when a journal
is left, so a failing test does not leave the drill's changes on the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.faults.route_blackhole import RouteBlackhole
from chaos.mode import make_mode
from chaos.plan import PlanContext
from conftest import ROOT, SCENARIOS, require_binaries

DRILL = SCENARIOS / "host" / "dockerhub-dzone-drill.yaml"
BASELINE = SCENARIOS / "host" / "baseline.json"
NEEDED = ("ip", "unshare", "nsenter", "dockerd", "containerd", "runc", "docker", "docker-registry",
          "skopeo", "busybox", "curl", "iptables-save", "nft")
# What this run's artefacts look like wherever they could be left (processes, mounts and
# /run: only the run's own tag and folders, as other tests' pulls name Hub too).
MARKS = ("chd-", "198.19.248.", "198.19.249.", "2001:2:0:f8:", "2001:2:0:f9:", "DOCKER", "docker0",
         "registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com")
OWN_ONLY = ("processes", "mounts", "run")
EXACT = ("hosts", "forwarding")
"""Compared whole: /etc/hosts outside chaos blocks, the forwarding sysctls."""
FORWARDING = ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding", "net/ipv6/conf/default/forwarding")


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout


def _hosts_outside_blocks() -> bytes:
    """/etc/hosts without the blocks chaos runs add (other tests' come and go meanwhile)."""
    return re.sub(rb"(?ms)^# >>> \S+ \(chaos:.*?^# <<< \S+\s*\n", b"", Path("/etc/hosts").read_bytes())


def machine() -> dict[str, str]:
    """Everything global the drill may touch, as text."""
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            procs.append(f"{pid} {os.readlink(f'/proc/{pid}/root')} {cmd}")
        except OSError:
            continue
    return {
        "routes4": _out("ip", "-4", "route", "show", "table", "all"),
        "routes6": _out("ip", "-6", "route", "show", "table", "all"),
        "rules4": _out("ip", "-4", "rule"), "rules6": _out("ip", "-6", "rule"),
        "links": _out("ip", "-o", "link", "show"),
        "addresses": _out("ip", "-o", "addr", "show"),
        "netns": _out("ip", "netns", "list"),
        "nft": _out("nft", "list", "ruleset"),
        "iptables": _out("iptables-save"), "ip6tables": _out("ip6tables-save"),
        "mounts": Path("/proc/self/mountinfo").read_text(),
        "run": "\n".join(sorted(os.listdir("/run"))),
        "processes": "\n".join(procs),
        "hosts": _hosts_outside_blocks().decode(errors="replace"),
        "forwarding": " ".join(f"{k}={Path('/proc/sys', k).read_text().strip()}" for k in FORWARDING),
    }


def leftovers(before: dict[str, str], after: dict[str, str], own: tuple[str, ...]) -> list[str]:
    """Lines present after but not before that carry one of MARKS (or of ``own``: the run's
    tag and state dir, the only marks for processes, mounts and /run), and any change of
    /etc/hosts outside chaos blocks."""
    found = []
    for key, text in after.items():
        if key in EXACT:
            if text != before[key]:
                found.append(f"{key}: was {before[key]!r}, is {text!r}")
            continue
        marks = own + (("chd-",) if key in OWN_ONLY else MARKS)
        old = set(before[key].splitlines())
        found += [f"{key}: {line}" for line in text.splitlines()
                  if line not in old and any(m in line for m in marks)]
    return found


def test_leftovers_finds_what_a_drill_would_leave():
    """The check above can fail: a bridge, a route of each family, a dockerd process of the
    run, a hosts line, forwarding turned on."""
    before = {"links": "1: lo: <LOOPBACK>", "routes4": "", "routes6": "", "processes": "1 / /sbin/init",
              "hosts": "h", "forwarding": "net/ipv6/conf/all/forwarding=0"}
    after = {"links": "1: lo: <LOOPBACK>\n9: chd-abc123: <BROADCAST>",
             "routes4": "unreachable 198.19.248.2 proto static",
             "routes6": "unreachable 2001:2:0:f8::2 dev lo proto static metric 1024 error -113 pref medium",
             "processes": "1 / /sbin/init\n77 / dockerd --config-file /s/runs/chaos-abc123/daemon.json",
             "hosts": "h\n127.0.0.1 registry-1.docker.io", "forwarding": "net/ipv6/conf/all/forwarding=1"}
    found = leftovers(before, after, ("chaos-abc123",))
    assert [line.split(":")[0] for line in found] == ["links", "routes4", "routes6", "processes", "hosts",
                                                       "forwarding"], found
    assert leftovers(before, before, ("chaos-abc123",)) == []


def test_the_drill_is_a_host_drill_only(chaos):
    """Without --host it is refused at plan time with its line; validate plans it as the
    host run would (its set-up's names, not DNS)."""
    result = chaos("run", str(DRILL))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{DRILL}:" in result.stdout and "host_setup: a host drill" in result.stdout
    assert "runs only with --host" in result.stdout
    ok = chaos("validate", str(DRILL))
    assert ok.returncode == 0 and f"{DRILL}: ok" in ok.stdout, ok.stdout + ok.stderr
    dry = chaos("run", "--host", "--dry-run", str(DRILL))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "stand-in Hub 198.19.248.2:5000 and [2001:2:0:f8::2]:5000" in dry.stdout
    # three names, one route per family
    assert "unreachable route 198.19.248.2/32, 2001:2:0:f8::2/128 on the host" in dry.stdout
    assert "registry-1.docker.io -> 127.0.0.1" in dry.stdout and "registry-1.docker.io -> ::1" in dry.stdout
    # With a cache of your own nothing is started and Hub's names go to DNS: offline the run
    # is refused at the route's line, online it plans routes to Hub's real addresses.
    own = chaos("run", "--host", "--dry-run", "--var", "cache=127.0.0.1:1", str(DRILL))
    assert "stand-in Hub" not in own.stdout and "host set-up" not in own.stdout
    if own.returncode == 2:
        line = next(i for i, text in enumerate(DRILL.read_text().splitlines(), 1)
                    if "destinations:" in text)
        assert f"{DRILL}:{line}:" in own.stderr + own.stdout
        assert "cannot resolve 'registry-1.docker.io'" in own.stderr + own.stdout
    else:
        assert own.returncode == 0 and "unreachable route" in own.stdout, own.stdout + own.stderr
        assert "198.19.248.2" not in own.stdout


def test_a_cache_of_your_own_skips_the_set_up():
    """`--var cache=` names your cache: nothing is started and Hub's names are left to DNS."""
    own = make_mode(run_id="chaos-000000", host_mode=True, host_setup="docker-cache",
                    variables={"cache": "my-cache:5000"})
    assert own.zone == {} and not own.own_docker and own.describe("chaos-000000") == []
    drill = make_mode(run_id="chaos-000000", host_mode=True, host_setup="docker-cache")
    assert drill.zone["registry-1.docker.io"] == "198.19.248.2" and drill.own_docker
    assert drill.zone6["registry-1.docker.io"] == "2001:2:0:f8::2" and own.zone6 == {}
    assert any("stand-in Hub" in line for line in drill.describe("chaos-000000"))


def test_names_sharing_an_address_get_one_route():
    ctx = PlanContext("chaos-000000", True, {"host": (None, Path("/etc/hosts"))},
                      zone={"a.test": "198.19.255.3", "b.test": "198.19.255.3"}, path=("faults", 0))
    from chaos.injectors.routes import RouteInjector

    injectors = RouteBlackhole(destinations=["a.test", "b.test", "198.19.255.3/32"]).injectors(ctx)
    (routes,) = [i for i in injectors if isinstance(i, RouteInjector)]
    assert routes.destinations == ["198.19.255.3/32"]


@pytest.mark.slow
def test_dzone_drill_runs_on_this_machine_and_leaves_nothing(chaos, state_dir, tmp_path):
    """The shipped drill, as the docs give it, against the baseline of what Debian's
    docker-registry does: the hosts entry and the route act (dockerd is sent to Hub's
    loopback entry, the cache's fresh connections to Hub fail at once), the cache's pooled
    connection to Hub hangs every pull through it while the route is on, Hub is back after."""
    require_binaries(*NEEDED, why="the host drill needs")
    if os.geteuid() != 0:
        pytest.skip("needs root: it changes this machine's /etc/hosts and routes")
    before = machine()
    report = tmp_path / "report.json"
    own: tuple[str, ...] = (str(state_dir),)
    try:
        result = chaos("run", "--host", str(DRILL), "--baseline", str(BASELINE), "--json", str(report),
                       timeout=400)
        assert result.returncode == 0, result.stdout + result.stderr
        (scenario,) = json.loads(report.read_text())["scenarios"]
        own += (scenario["run_id"].removeprefix("chaos-"),)
        verdicts = {f"{p['phase']}/{p['name']}": p["verdict"] for p in scenario["probes"]}
        assert verdicts == json.loads(BASELINE.read_text())["scenarios"][scenario["name"]]["probes"]
        assert verdicts["during/Hub's names point at loopback on this machine"] == "passed"
        assert verdicts["during/Hub's address is unreachable from this machine (and the cache on it)"] == "passed"
        for v6 in ("before/busybox's manifest comes through the cache over IPv6",
                   "during/Hub's names point at IPv6 loopback on this machine",
                   "during/Hub's IPv6 address is unreachable from this machine",
                   "after/Hub's IPv6 address is routed again",
                   "after/busybox's manifest comes through the cache over IPv6 again"):
            assert verdicts[v6] == "passed", v6
        assert all(v == "passed" for k, v in verdicts.items() if k.startswith(("before/", "after/"))), verdicts
    finally:
        if (state_dir / "runs").is_dir() and any((state_dir / "runs").iterdir()):
            env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
            subprocess.run([sys.executable, "-m", "chaos", "recover"], cwd=ROOT, env=env,
                           capture_output=True, timeout=300)
    assert not (state_dir / "runs").exists() or not any((state_dir / "runs").iterdir())
    left = leftovers(before, machine(), own)
    assert left == [], "\n".join(left)


@pytest.mark.slow
def test_a_drill_killed_mid_fault_is_cleaned_by_recover(state_dir):
    """SIGKILL while the faults are on (dockerd, both containers, the bridge, the hosts block
    and the route all up): `chaos recover` removes the containers while their dockerd still
    runs, then dockerd, containerd, the bridge, the route and the hosts block."""
    import time

    from conftest import chaos_cmd

    require_binaries(*NEEDED, why="the host drill needs")
    if os.geteuid() != 0:
        pytest.skip("needs root: it changes this machine's /etc/hosts and routes")
    before = machine()
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    proc = subprocess.Popen(chaos_cmd("run", "--host", str(DRILL)), cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    own: tuple[str, ...] = (str(state_dir),)
    try:
        deadline = time.monotonic() + 120
        while ("unreachable 198.19.248.2" not in _out("ip", "route", "show", "198.19.248.2")
               or "unreachable 2001:2:0:f8::2" not in _out("ip", "-6", "route", "show", "2001:2:0:f8::2")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.1)
        (journal,) = (state_dir / "runs").glob("*/journal.jsonl")
        own += (journal.parent.name.removeprefix("chaos-"),)
        hosts = Path("/etc/hosts").read_bytes()
        for loopback in (rb"127\.0\.0\.1", rb"::1"):
            assert re.search(rb"(?m)^" + loopback + rb"\s+registry-1\.docker\.io$", hosts), hosts
        proc.kill()
        proc.wait(timeout=30)
        assert leftovers(before, machine(), own) != [], "killed mid-fault: the drill is still up"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        result = subprocess.run(chaos_cmd("recover"), cwd=ROOT, env=env, capture_output=True,
                                text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for undone in ("undo container chaos-", "undo lab dockerd in the host namespace", "undo bridge chd-",
                   "undo unreachable route 198.19.248.2/32, 2001:2:0:f8::2/128 on the host",
                   "recovered"):
        assert undone in result.stdout, result.stdout
    assert result.stdout.index("-cache") < result.stdout.index("undo lab dockerd")
    left = leftovers(before, machine(), own)
    assert left == [], "\n".join(left)


def test_the_drill_dockerd_stays_inside_the_bench_ranges():
    """The drill's dockerd settings are dual-stack, inside 198.18.0.0/15 and 2001:2::/48 with
    no packet-filter rules; anything outside those ranges (docker's 172.17/16, a ULA, a global
    range, a family mix-up) is refused before dockerd is started."""
    from chaos.lab import host_stack
    from chaos.lab.dockerd import container_network

    config = container_network(None, host_stack.POOLS, bridge="chd-x", cidr6=str(host_stack.SUBNET6),
                               pools6=host_stack.POOLS6)
    assert config == {"bridge": "chd-x", "ipv6": True, "fixed-cidr-v6": "2001:2:0:f8::/112",
                      "ip6tables": False,
                      "default-address-pools": [{"base": "198.19.249.0/24", "size": 24},
                                                {"base": "2001:2:0:f9::/64", "size": 64}]}
    assert host_stack.HUB6 in {str(a) for a in host_stack.SUBNET6.hosts()}
    for bad in ({"bip": "172.17.0.1/16", "pools": ()}, {"bip": None, "pools": ("2001:2:0:f9::/64",)},
                {"bip": None, "pools": (), "cidr6": "fd00:1::/64"},
                {"bip": None, "pools": (), "cidr6": "2001:2::/48", "pools6": ("2001:db8::/64",)},
                {"bip": None, "pools": (), "cidr6": "198.19.248.0/24"}):
        with pytest.raises(ValueError, match="must stay inside"):
            container_network(**bad)
