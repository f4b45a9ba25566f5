"""Modes (chaos.mode) and the runner's planning: a mode says where a run acts and what it
must start; the runner plans a fault type it has never heard of like any other (one
registered here, through the registry API), and knows no fault by name."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import pytest

from chaos.errors import PlanError
from chaos.faults import register, unregister
from chaos.faults.base import Fault
from chaos.faults.dns import Dns
from chaos.injectors.base import Clash, Injector
from chaos.mode import HostMode, make_mode
from chaos.runner import Reporter, Run, RunOptions, run_scenario
from chaos.scenario.load import load_text


class NoSuchName(Fault):
    """Test-only: the run's DNS server answers NXDOMAIN for ``names``."""

    type: Literal["test-no-such-name"] = "test-no-such-name"
    names: list[str]

    def injectors(self, ctx):
        from chaos.injectors.rule_service import LateRule

        rule = Dns(names=self.names, answer="nxdomain").rule(f"test-{ctx.path[-1]}")
        return [LateRule("dns-rule", ctx.use_dns(), f"NXDOMAIN for {self.names}",
                         lambda dns: dns.server.rule(rule))]


class Claim(Injector):
    """Test-only: claims ``key`` (an ``Exclusive`` injector); planned, never applied."""

    kind = "test-claim"

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key

    def apply(self, journal) -> None:
        raise AssertionError("a planning test applies nothing")

    def describe(self) -> str:
        return f"claim {self.key}"

    def clash(self, other, zone):
        if isinstance(other, Claim) and other.key == self.key:
            return Clash(("key",), f"key {self.key}", "one claim per key")
        return None


class Claiming(Fault):
    """Test-only: a fault whose one injector claims ``key``."""

    type: Literal["test-claiming"] = "test-claiming"
    key: str

    def injectors(self, ctx):
        return [Claim(self.key)]


@pytest.fixture(autouse=True)
def test_types():
    register("test-no-such-name", NoSuchName)
    register("test-claiming", Claiming)
    yield
    unregister("test-no-such-name")
    unregister("test-claiming")


def planned(text: str, **options) -> Run:
    run = Run(load_text(text), "<text>", RunOptions(**options), Reporter())
    run.plan()
    return run


SANDBOX = """
name: unheard-of
serve: [{name: web.test}]
faults:
  - {type: test-no-such-name, names: [web.test]}
expect:
  before: [{run: getent hosts web.test, exit: 0}]
  during: [{run: getent hosts web.test, exit: nonzero}]
  after: [{run: getent hosts web.test, exit: 0}]
"""


def test_the_registry_refuses_a_type_twice():
    with pytest.raises(ValueError, match="registered already"):
        register("test-claiming", Claiming)


def test_a_sandbox_mode_says_what_it_starts_for_what_was_planned():
    run = planned(SANDBOX)
    mode = run.session.mode
    assert mode.name == run.result.mode == "sandbox"
    world = mode.sandbox.world
    assert run.session.startup() == [
        f"namespaces {world}, {mode.sandbox.client}",
        "fake DNS server on 198.18.1.2",  # asked for by a fault type the runner never heard of
        "server web.test on 198.18.1.10:80"]
    assert [i.describe() for i in run.switches[0].injectors] == ["NXDOMAIN for ['web.test']"]
    assert not Path("/run/netns", world).exists(), "planning changes nothing"


def test_without_a_fault_that_asks_nothing_but_the_sandbox_is_started():
    run = planned("name: plain\nserve: [{name: web.test}]\n")
    assert [s.split()[0] for s in run.session.startup()] == ["namespaces", "server"]


def test_the_lab_resolves_through_the_dns_server_when_any_planned_fault_asks_for_it():
    """The lab must start its resolver before its services, so it must know at plan time;
    it learns it from the plan context, not from the fault's type name."""
    lab = "name: in-lab\nlab: registry\n"
    run = planned(lab + "faults:\n  - {type: test-no-such-name, names: [registry-1.docker.io]}\n")
    assert run.result.mode == "lab"
    assert run.session.startup()[0] == "fake DNS server on 198.18.0.53"
    assert run.scenario.lab.dns is False, "the scenario is not rewritten"
    assert not any("DNS" in s for s in planned(lab).session.startup())


def test_the_lab_resolves_through_the_dns_server_when_a_probe_counts_queries():
    run = planned("name: counted\nlab: registry\nexpect:\n"
                  "  during: [{dns_queries: registry-1.docker.io, at_least: 1}]\n")
    assert run.session.startup()[0] == "fake DNS server on 198.18.0.53"


def test_the_host_has_no_dns_server_to_give_a_fault_of_any_type():
    result = run_scenario(load_text(SANDBOX.replace("serve: [{name: web.test}]\n", "")),
                          options=RunOptions(host_mode=True))
    assert result.status == "invalid" and result.mode == "host"
    assert "faults[0]" in result.errors[0] and "not --host" in result.errors[0]


def test_the_host_mode_starts_nothing_and_acts_on_the_machines_hosts_file():
    mode = make_mode(run_id="chaos-000000", host_mode=True, hosts={"a.test": "198.18.1.9"})
    assert isinstance(mode, HostMode) and mode.host_mode and mode.edge is None
    assert mode.clients() == {"host": (None, Path("/etc/hosts"))}
    assert mode.zone == {"a.test": "198.18.1.9"}
    assert not any(mode.offers(s) for s in ("dns", "http", "tcp"))
    with pytest.raises(PlanError, match="needs the sandbox"):
        make_mode(run_id="chaos-000000", host_mode=True, serve=["x"])


def test_the_runner_refuses_clashing_claims_of_types_it_never_heard_of():
    text = ("name: clash\nfaults:\n  - {type: test-claiming, key: a}\n"
            "  - {type: test-claiming, key: b}\n  - {type: test-claiming, key: a}\n")
    with pytest.raises(PlanError) as caught:
        planned(text)
    assert caught.value.path == ("faults", 2, "key")
    assert caught.value.message == ("key a is also taken by faults[0] (test-claiming at "
                                    "<string>:3:5): one claim per key")


def test_a_fault_type_registered_here_runs_end_to_end_and_leaves_nothing(state_dir):
    result = run_scenario(load_text(SANDBOX), options=RunOptions(state_dir=str(state_dir)))
    assert result.status == "passed", result.errors + [p.to_dict() for p in result.probes if not p.ok]
    assert [(p.phase, p.ok) for p in result.probes] == [("before", True), ("during", True),
                                                        ("after", True)]
    assert [e["state"] for e in result.events if e["kind"] == "fault"] == ["on", "off"]
    netns = Path("/run/netns")
    left = [n for d in (netns, Path("/etc/netns")) if d.is_dir() for n in os.listdir(d)
            if n.startswith(result.run_id)]
    assert left == [], "the run's namespaces and their /etc files are gone"


@pytest.mark.usefixtures("lab_binaries")
def test_a_lab_started_for_a_fault_type_it_never_heard_of_resolves_through_it(state_dir):
    """The lab gets its resolver because the planned fault asked the context for the DNS
    server: NXDOMAIN while the fault is on, the lab's own answer before and after."""
    text = """
name: lab-unheard-of
lab: {dockerd: false}
faults:
  - {type: test-no-such-name, names: [registry-1.docker.io]}
expect:
  before: [{run: getent hosts registry-1.docker.io, exit: 0}]
  during: [{run: getent hosts registry-1.docker.io, exit: 2}]
  after: [{run: getent hosts registry-1.docker.io, exit: 0}]
"""
    result = run_scenario(load_text(text), options=RunOptions(state_dir=str(state_dir)))
    assert result.status == "passed", result.errors + [p.to_dict() for p in result.probes if not p.ok]
    assert result.mode == "lab" and len(result.probes) == 3
