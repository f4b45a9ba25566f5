"""Guardrails: what chaos refuses before it changes anything, one test each.

Every scenario here starts with a `before` probe that fails, so if a guardrail were missing
the run would still stop before injecting anything (exit 1, not 2): a broken guard fails
the test without ever touching the machine.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from pathlib import Path

import pytest

import campaign as c
from chaos.plan import PlanContext, default_gateways, machine_names

SAFE = """\
name: guardrail
description: must be refused at plan time; the failing before probe stops it otherwise
faults:
  - type: {type}
    {key}: [{target}]
expect:
  before:
    - run: "false"
"""


def _run(chaos, tmp_path, text: str, *args: str, env: dict | None = None):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    before = c.machine()
    if env is None:
        result = chaos("run", *args, str(path))
    else:
        result = subprocess.run(c.chaos_argv("run", *args, str(path)), capture_output=True,
                                text=True, timeout=60, env=env, cwd=c.ROOT, stdin=subprocess.DEVNULL)
    assert c.machine_diff(before, c.machine()) == []
    return result


def assert_refused(result, state_dir: Path, message: str, field: str = "faults[0].destinations[0]") -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "g.yaml:5:" in out and f": {field}: " in out, out
    assert message in out, out
    assert not (state_dir / "runs").exists(), "refused at plan time: no journal, nothing applied"


def _route(target: str) -> str:
    return SAFE.format(type="route-blackhole", key="destinations", target=f"'{target}'")


def _filter(target: str) -> str:
    return SAFE.format(type="packet-filter", key="destinations", target=f"'{target}'")


@pytest.mark.parametrize("host", [False, True], ids=["sandbox", "host"])
@pytest.mark.parametrize("target", ["0.0.0.0/0", "::/0", "0.0.0.0/0.0.0.0"])
def test_whole_address_space_is_refused(chaos, state_dir, tmp_path, target, host):
    result = _run(chaos, tmp_path, _route(target), *(["--host"] if host else []))
    assert_refused(result, state_dir, "covers every address (the default route)")


def test_whole_address_space_is_refused_for_packet_filters_too(chaos, state_dir, tmp_path):
    assert_refused(_run(chaos, tmp_path, _filter("::/0")), state_dir, "covers every address")


def _gateway(family: str) -> str | None:
    out = subprocess.run(["ip", family, "route", "show", "default"], capture_output=True, text=True).stdout
    words = out.split()
    return words[words.index("via") + 1] if "via" in words else None


@pytest.mark.parametrize("family", ["-4", "-6"])
def test_default_gateway_is_refused_in_host_mode(chaos, state_dir, tmp_path, family):
    gateway = _gateway(family)
    if gateway is None:
        pytest.skip(f"this machine has no {family} default route via a gateway")
    net = ipaddress.ip_network(gateway).supernet(new_prefix=24 if family == "-4" else 120)
    for target in (gateway, str(net)):
        result = _run(chaos, tmp_path, _route(target), "--host")
        assert_refused(result, state_dir, f"covers the default gateway {gateway}")


def test_ipv6_gateways_are_read(tmp_path):
    # The IPv6 default route was not read at all (only /proc/net/route), so a host-mode
    # route covering the IPv6 gateway was accepted.
    v6 = tmp_path / "ipv6_route"
    v6.write_text(
        "fd000000000000000000000000000000 40 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n"
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n")
    assert default_gateways(ipv4=str(tmp_path / "none"), ipv6=str(v6)) == [ipaddress.ip_address("fd00::1")]


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.0/8", "127.53.0.0/16", "::1", "0:0:0:0:0:0:0:1/128"])
def test_host_loopback_is_refused_in_host_mode(chaos, state_dir, tmp_path, target):
    assert_refused(_run(chaos, tmp_path, _route(target), "--host"), state_dir, "overlaps host loopback")


@pytest.mark.parametrize("target,what", [("0.0.0.0/8", "0.0.0.0/8"), ("0.0.0.0", "0.0.0.0/8"),
                                         ("0.1.2.0/24", "0.0.0.0/8"),
                                         ("::ffff:0:0/96", "::ffff:0:0/96"),
                                         ("::ffff:198.18.0.0/111", "::ffff:0:0/96"),
                                         ("::ffff:0.0.0.0/97", "::ffff:0:0/96")])
@pytest.mark.parametrize("fault", [_route, _filter], ids=["route", "filter"])
def test_this_network_and_the_ipv4_mapped_range_are_refused_in_host_mode(chaos, state_dir, tmp_path,
                                                                         target, what, fault):
    """0.0.0.0/8 and ::ffff:0:0/96 (all of IPv4 over IPv6 sockets) cut the machine off like
    the other guarded ranges (issue #22)."""
    result = _run(chaos, tmp_path, fault(target), "--host")
    assert_refused(result, state_dir, f"({what}: ")
    assert "refusing it in host mode" in result.stderr + result.stdout


@pytest.mark.parametrize("client,target", [("198.18.77.7", "198.18.77.0/24"),
                                           ("198.18.77.7", "198.18.77.7"),
                                           ("2001:db8::7", "2001:db8::/64")])
def test_the_ssh_sessions_address_is_refused_in_host_mode(state_dir, tmp_path, client, target):
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir),
           "SSH_CONNECTION": f"{client} 50022 198.18.0.2 22"}
    result = _run(None, tmp_path, _route(target), "--host", env=env)
    assert_refused(result, state_dir, f"covers {client}, where this SSH session comes from")
    # The same route from a session elsewhere is planned (and stopped by the failing probe):
    env["SSH_CONNECTION"] = "198.18.99.9 50022 198.18.0.2 22"
    other = _run(None, tmp_path, _route(target), "--host", env=env)
    assert other.returncode == 1, other.stdout + other.stderr
    assert "nothing injected" in other.stdout


def test_host_mode_needs_the_flag_a_scenario_cannot_ask_for_it(chaos, state_dir, tmp_path):
    text = _route("198.19.255.1/32").replace("faults:", "host: true\nfaults:")
    result = _run(chaos, tmp_path, text)
    assert result.returncode == 2 and "g.yaml:3:1: host: unknown key 'host'" in result.stderr
    assert not (state_dir / "runs").exists()


def test_without_the_flag_a_host_scenario_stays_in_the_sandbox(state_dir, tmp_path):
    """The host campaign's scenario without --host: its hosts entries and routes land in
    the sandbox (its probes see them there) while /etc/hosts and the machine's routing
    tables never change, checked all through the run."""
    (item,) = c.HOST
    path = tmp_path / "host.yaml"
    path.write_text(item.text)
    before = c.machine()
    proc = subprocess.Popen(c.chaos_argv("run", str(path)), cwd=c.ROOT, env=c.chaos_env(state_dir),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    changed = []
    while proc.poll() is None:
        changed += c.machine_diff(before, c.machine())
        time.sleep(0.05)
    out = proc.stdout.read().decode()
    assert proc.returncode == 0, out  # the probes saw the entries and routes, in the sandbox
    assert changed == [], "the machine changed although --host was not given"


def test_machine_names_are_protected_in_host_mode():
    names = machine_names()
    assert {"localhost", "ip6-localhost"} <= names
    import socket

    assert socket.gethostname().lower() in names
    ctx = PlanContext("chaos-guard", True, {"host": (None, Path("/etc/hosts"))}, path=("faults", 0))
    with pytest.raises(Exception, match="one of this machine's own names"):
        ctx.guard_name("LOCALHOST.", ("names", 0))
    ctx.guard_name("registry.chaos-test.invalid", ("names", 0))  # any other name is fine
    PlanContext("chaos-guard", False, {}).guard_name("localhost", ())  # the sandbox may


@pytest.mark.parametrize("name", ["localhost", "HOSTNAME"])
def test_redirecting_the_machines_own_names_is_refused_in_host_mode(chaos, state_dir, tmp_path, name):
    import socket

    name = socket.gethostname() if name == "HOSTNAME" else name
    text = SAFE.format(type="hosts-entry", key="names", target=name)
    assert_refused(_run(chaos, tmp_path, text, "--host"), state_dir, "one of this machine's own names",
                   field="faults[0].names[0]")
