"""Run one probe where the clients live (sandbox namespace or host) and judge it.

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

from chaos.journal import Journal
from chaos.probes import expect
from chaos.probes.result import ERROR, FAILED, HUNG, PASSED, ProbeResult
from chaos.processes import spawn

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

    def at(self, region: str | None) -> "Place":
        if region is None:
            return self
        return Place(self.regions[region], self.env, self.variables, self.regions)

    def expand(self, text: str) -> str:
        for key, value in self.variables.items():
            text = text.replace("{" + key + "}", str(value))
        return text


def run_process(journal: Journal, argv: list[str], place: Place, limit: float,
                 stdin: bytes | None = None):
    """(exit code or None if killed at the limit, stdout, stderr, seconds)."""
    env = {**os.environ, **place.env}
    start = time.monotonic()
    proc, entry = spawn(journal, argv, netns=place.netns, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                        env=env)
    try:
        out, err = proc.communicate(stdin, timeout=limit)
        code = proc.returncode
    except subprocess.TimeoutExpired:
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


def run_command(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    command = place.expand(probe.run)
    code, out, err, took = run_process(journal, ["sh", "-c", command], place, bound(probe))
    result.duration = took
    result.detail.update(command=command, exit=code, stdout=out[-OUTPUT_KEEP:], stderr=err[-OUTPUT_KEEP:])
    if code is None:
        result.verdict = HUNG
        return
    result.checks.append(expect.exit_check(probe.exit, code))
    result.checks += expect.text_checks("stdout", probe.stdout, out)
    result.checks += expect.text_checks("stderr", probe.stderr, err)
    result.checks += expect.text_checks("output", probe.output, out + err)
    result.checks += expect.within_check(probe.within, took)


def _agent(request: dict, place: Place, journal: Journal, limit: float) -> dict:
    """Run the agent in the namespace (or in-process on the host); its JSON answer."""
    if place.netns is None:
        from chaos.probes import agent

        request = dict(request)
        kind = request.pop("probe")
        return agent.http_request(**request) if kind == "http" else agent.tcp_connect(**request)
    argv = [sys.executable, "-m", "chaos.probes.agent", json.dumps(request)]
    code, out, err, _ = run_process(journal, argv, place, limit + 5.0)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {"error": "agent", "message": (err or out or f"agent exited {code}").strip()[-500:]}


def run_http(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    limit = bound(probe)
    url = place.expand(probe.http)
    observed = _agent({"probe": "http", "url": url, "method": probe.method,
                       "headers": probe.headers, "timeout": limit}, place, journal, limit)
    result.duration = observed.get("duration", 0.0)
    result.detail.update(url=url, **{k: v for k, v in observed.items() if k != "duration"})
    if observed.get("error") == "timeout":
        result.verdict = HUNG
        return
    if observed.get("error") == "agent":
        result.verdict = ERROR
        return
    result.checks.append(expect.status_check(probe.status, observed))
    result.checks += expect.text_checks("body", probe.body, observed.get("body", ""))
    result.checks += expect.within_check(probe.within, result.duration)


def run_tcp(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    target = place.expand(probe.tcp)
    host, _, port = target.rpartition(":")
    observed = _agent({"probe": "tcp", "host": host.strip("[]"), "port": int(port),
                       "timeout": probe.connect_timeout}, place, journal, probe.connect_timeout)
    result.duration = observed.get("duration", 0.0)
    result.detail.update(target=target, **{k: v for k, v in observed.items() if k != "duration"})
    if observed.get("error") == "agent":
        result.verdict = ERROR
        return
    seen = observed.get("connect", "error")
    ok = seen == probe.connect or (probe.connect == "error" and seen != "ok")
    detail = f"{seen} ({observed['message']})" if observed.get("message") else seen
    result.checks.append(expect.Check("connect", probe.connect, detail, ok))
    result.checks += expect.within_check(probe.within, result.duration)


RUNNERS = {"command": run_command, "http": run_http, "tcp": run_tcp}


def probe_kind(probe) -> str:
    from chaos.scenario.model import _probe_kind

    return _probe_kind(probe)


def describe(probe) -> str:
    return probe.name or getattr(probe, "run", None) or getattr(probe, "http", None) or probe.tcp


def run_probe(probe, phase: str, place: Place, journal: Journal, started: float = 0.0) -> ProbeResult:
    kind = probe_kind(probe)
    result = ProbeResult(phase, place.expand(describe(probe)), kind, started=started)
    try:
        RUNNERS[kind](probe, place, journal, result)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run is reported, not raised
        result.verdict, result.detail["error"] = ERROR, f"{type(exc).__name__}: {exc}"
        return result
    if result.verdict == PASSED and result.failures():
        result.verdict = FAILED
    return result
