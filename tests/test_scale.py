"""Faults with long lists (a CDN's or a cloud's published ranges): correct at 10,000 entries.

What each costs is measured in benchmarks/scale.py, never asserted here.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys

import pytest

from chaos.injectors import routes
from chaos.injectors.packet_filter import PacketFilter
from chaos.injectors.routes import RouteInjector
from chaos.journal import Journal
from conftest import ROOT, chaos_cmd

BASE4 = int(ipaddress.ip_address("198.18.0.0"))
BASE6 = int(ipaddress.ip_address("2001:2::"))


def v4(n: int, offset: int = 1) -> list[str]:
    return [f"{ipaddress.ip_address(BASE4 + offset + i)}/32" for i in range(n)]


def v6(n: int) -> list[str]:
    return [f"{ipaddress.ip_address(BASE6 + 1 + i)}/128" for i in range(n)]


@pytest.fixture
def journal(state_dir):
    j = Journal.create("chaos-scale01", state_dir)
    yield j
    j.rollback()


def shown(netns: str, *args: str) -> list[str]:
    out = subprocess.run(["ip", "-n", netns, *args], capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def blackholes(netns: str) -> set[str]:
    """Every blackhole route in the namespace, both families, every table."""
    lines = shown(netns, "-4", "route", "show", "table", "all", "type", "blackhole") + \
        shown(netns, "-6", "route", "show", "table", "all", "type", "blackhole")
    return {line.split()[1] for line in lines}


def test_ten_thousand_routes_go_in_as_one_record_and_all_come_out(netns, journal):
    dsts = v4(9_000) + v6(1_000)
    injector = RouteInjector(dsts, "blackhole", netns)
    injector.apply(journal)
    assert blackholes(netns) == {d.removesuffix("/32").removesuffix("/128") for d in dsts}
    (entry,) = journal.entries  # the whole batch: one record, journaled before any route
    assert entry.undo["dsts"] == dsts and "(+9995 more)" in entry.what and len(entry.what) < 200
    assert injector.revert(journal) == []
    assert blackholes(netns) == set()
    assert injector.revert(journal) == []  # twice is fine


def test_a_collision_anywhere_in_a_long_list_is_refused_before_anything_changes(netns, journal):
    subprocess.run(["ip", "-n", netns, "route", "add", "unreachable", "198.18.30.7/32"], check=True)
    dsts = v4(10_000)
    assert "198.18.30.7/32" in dsts
    with pytest.raises(RuntimeError, match=r"198\.18\.30\.7/32 already exists"):
        RouteInjector(dsts, "blackhole", netns).apply(journal)
    assert journal.entries == [], "nothing may be journaled for a refused batch"
    assert blackholes(netns) == set()
    assert shown(netns, "route", "show", "198.18.30.7/32") == ["unreachable 198.18.30.7 "]


def test_two_spellings_of_one_network_are_one_route(netns, journal):
    injector = RouteInjector(["198.18.3.0/24", "198.18.3.9/24", "2001:2:0:3::/64",
                              "2001:2:0:3:0::1/64"], "prohibit", netns)
    injector.apply(journal)
    assert injector.destinations == ["198.18.3.0/24", "2001:2:0:3::/64"]
    assert injector.revert(journal) == []


def test_a_route_added_meanwhile_is_refused_part_way_and_survives_the_revert(netns, journal,
                                                                            monkeypatch):
    # Someone adds one of the routes between the dump and the batch: the kernel refuses it
    # (EEXIST) while the others go in. The batch's record must then no longer cover it.
    monkeypatch.setattr(routes, "collisions", lambda sock, keys: [])
    subprocess.run(["ip", "-n", netns, "route", "add", "blackhole", "198.18.30.7/32"], check=True)
    injector = RouteInjector(v4(10_000), "blackhole", netns)
    with pytest.raises(RuntimeError, match=r"198\.18\.30\.7/32 already exists"):
        injector.apply(journal)
    batch, narrowed = journal.entries
    assert batch.undone and not narrowed.undone
    assert "198.18.30.7/32" not in narrowed.undo["dsts"] and len(narrowed.undo["dsts"]) == 9_999
    assert len(blackholes(netns)) == 10_000
    assert injector.revert(journal) == []
    assert blackholes(netns) == {"198.18.30.7"}, "the revert deleted a route that was not ours"


# Killed in the middle of a 10,000-route batch: the record lists all of them, about half
# are in the kernel. `chaos recover` must take those out and leave nothing.
MID_BATCH = r"""
import ipaddress, os, signal, sys
from chaos.injectors import rtnetlink
from chaos.injectors.routes import RouteInjector
from chaos.journal import Journal

made = 0
real = rtnetlink.route_message

def message(*args, **kwargs):
    global made
    made += 1
    if made == 5_000:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)

rtnetlink.route_message = message
journal = Journal.create("chaos-midbatch", sys.argv[2])
first = int(ipaddress.ip_address("198.18.0.1"))
dsts = [f"{ipaddress.ip_address(first + i)}/32" for i in range(int(sys.argv[3]))]
RouteInjector(dsts, "unreachable", sys.argv[1]).apply(journal)
"""


def test_sigkill_mid_batch_then_recover_leaves_no_route(netns, state_dir):
    child = subprocess.run([sys.executable, "-c", MID_BATCH, netns, str(state_dir), "10000"],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    left = shown(netns, "route", "show", "type", "unreachable")
    assert 0 < len(left) < 10_000, "the kill should land part way through the batch"
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    result = subprocess.run(chaos_cmd("recover"), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "recovered (1 change(s) undone)" in result.stdout, \
        result.stdout + result.stderr
    assert shown(netns, "route", "show", "type", "unreachable") == []
    again = subprocess.run(chaos_cmd("recover"), cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.stdout.strip() == "nothing to recover"


def test_ten_thousand_filter_destinations_in_and_out(netns, journal):
    dsts = [d.removesuffix("/32") for d in v4(10_000)]
    before = subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True,
                            text=True, check=True).stdout
    pf = PacketFilter([{"action": "drop", "destinations": dsts, "protocol": "tcp"}], netns=netns,
                      tag="chaos-scale01", name="many")
    pf.apply(journal)
    rules = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-S", pf.chain],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert {r.split(" -d ")[1].split()[0] for r in rules if " -d " in r} == {f"{d}/32" for d in dsts}
    assert sum("--comment" in r for r in rules) == 1, "the rule's first line only carries the tag"
    assert pf.revert(journal) == []
    after = subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True,
                           text=True, check=True).stdout
    assert [line for line in after.splitlines() if not line.startswith("#")] == \
        [line for line in before.splitlines() if not line.startswith("#")]
