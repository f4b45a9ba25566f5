"""Run one probe where the clients live (sandbox namespace or host) and judge it.

What a probe does and observes is its kind's (chaos/probes/<kind>.py, ``observe``); this
module holds what every kind shares: where clients run (Place), the bounds, the processes.

Every process a probe starts is journaled (pid + start time) so a crash mid-probe leaves
nothing `chaos recover` cannot end. A probe still running at its bound (``within`` plus a
grace period, or ``timeout``) is killed with its whole process group and reported as hung.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chaos.journal import Journal
from chaos.probes.result import ERROR, FAILED, HUNG, PASSED, ProbeResult
from chaos.processes import spawn

if TYPE_CHECKING:
    from chaos.lab.lab import Lab
    from chaos.session import DnsService, HttpService

DEFAULT_TIMEOUT = 30.0
OUTPUT_KEEP = 8192


def bound(probe) -> float:
    """When a probe is declared hung: `within` plus grace, else its timeout."""
    if probe.timeout is not None:
        return probe.timeout
    if probe.within is not None:
        return probe.within + min(max(1.0, probe.within * 0.5), 10.0)
    return DEFAULT_TIMEOUT


@dataclass
class Place:
    """Where clients run: a namespace (sandbox) or the host (netns None)."""

    netns: str | None = None
    env: dict = field(default_factory=dict)
    variables: dict = field(default_factory=dict)
    """{name} placeholders expanded in commands and URLs."""
    regions: dict = field(default_factory=dict)
    """Region -> client namespace (sandbox)."""
    lab: Lab | None = None
    """The running registry lab (chaos.lab.Lab), when the scenario has `lab:`."""
    marks: dict = field(default_factory=dict)
    """Access-log positions / times at the start of the run and of the current phase."""
    dns: DnsService | None = None
    """The run's DNS service (chaos.session.DnsService)."""
    http: HttpService | None = None
    """The run's HTTP fault proxy (chaos.session.HttpService)."""
    served: dict = field(default_factory=dict)
    """`serve:` server name -> the file of its request records (chaos.sandbox.serve)."""
    servers: dict = field(default_factory=dict)
    """Names the run knows (served, `hosts:`, the lab's components) -> addresses: whose
    connections a failed probe's evidence lists."""
    client: str = "dockerd"
    """The lab client `pull:` probes pull with (`chaos run --client`)."""
    servers6: dict = field(default_factory=dict)
    """Names of a dual-stack run -> their IPv6 address, beside the one in ``servers``."""

    def at(self, region: str | None) -> Place:
        if region is None:
            return self
        return Place(self.regions[region], self.env, self.variables, self.regions, self.lab,
                     self.marks, self.dns, self.http, self.served, self.servers, self.client,
                     self.servers6)

    def expand(self, text: str) -> str:
        for key, value in self.variables.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def expand_shell(self, command: str) -> str:
        """``expand`` for a ``sh -c`` command: each value stays one literal word, whatever
        it holds (``--var 'x=$(touch f); id'`` must not run anything, as root)."""
        from chaos.probes.shell import shell_expand

        return shell_expand(command, {str(k): str(v) for k, v in self.variables.items()})


def run_process(journal: Journal, argv: list[str], place: Place, limit: float,
                 stdin: bytes | None = None, at_bound=None):
    """(exit code or None if killed at the limit, stdout, stderr, seconds). ``at_bound()`` is
    called at the limit just before the kill, while the process still holds what it holds."""
    env = {**os.environ, **place.env}
    start = time.monotonic()
    proc, entry = spawn(journal, argv, netns=place.netns, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                        env=env)
    try:
        out, err = proc.communicate(stdin, timeout=limit)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        if at_bound is not None:
            at_bound()
        journal.undo(entry)  # kill the whole group: sh -c and whatever it started
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds the pipes
            out, err = b"", b""
        code = None
    except BaseException:
        journal.undo(entry)
        raise
    journal.undo(entry)  # the process is gone: this closes its journal record
    return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - start


def ask_agent(request: dict, place: Place, journal: Journal, limit: float, at_bound=None) -> dict:
    """Run the agent in the namespace (or in-process on the host); its JSON answer. An agent
    still running after ``limit`` is killed (``at_bound()`` first) and answers a timeout."""
    if place.netns is None:
        from chaos.probes import agent

        request = dict(request)
        kind = request.pop("probe")
        return agent.http_request(**request) if kind == "http" else agent.tcp_connect(**request)
    argv = [sys.executable, "-m", "chaos.probes.agent", json.dumps(request)]
    code, out, err, took = run_process(journal, argv, place, limit, at_bound=at_bound)
    if code is None:
        return {"error": "timeout", "message": f"no answer within {limit:.1f}s: killed at the bound",
                "duration": took}
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {"error": "agent", "message": (err or out or f"agent exited {code}").strip()[-500:]}


def probe_kind(probe) -> str:
    return probe.kind


def describe(probe) -> str:
    return probe.name or probe.describe()


def run_probe(probe, phase: str, place: Place, journal: Journal, started: float = 0.0) -> ProbeResult:
    kind = probe_kind(probe)
    result = ProbeResult(phase, place.expand(describe(probe)), kind, started=started)
    try:
        probe.observe(place, journal, result)
    except Exception as exc:  # a probe that cannot run is reported, not raised
        result.verdict, result.detail["error"] = ERROR, f"{type(exc).__name__}: {exc}"
        return result
    if result.verdict == PASSED and result.failures():
        result.verdict = FAILED
    if result.verdict in (FAILED, HUNG) and probe.has_client and not (
            {"connections", "connections_error"} & set(result.evidence)):
        from chaos.probes.evidence import take_connections

        take_connections(place, result)  # what it still holds now it has given up
    return result
