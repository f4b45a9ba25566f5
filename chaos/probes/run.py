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
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.journal import Journal
from chaos.probes import expect
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

    def at(self, region: str | None) -> Place:
        if region is None:
            return self
        return Place(self.regions[region], self.env, self.variables, self.regions, self.lab,
                     self.marks, self.dns, self.http)

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


def run_docker_pull(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    if place.lab is None or place.lab.dockerd is None:
        raise RuntimeError("docker_pull needs `lab: registry` with its dockerd")
    image = place.expand(probe.docker_pull)
    limit = bound(probe)
    argv = [sys.executable, "-m", "chaos.probes.docker_pull", place.lab.dockerd.base_url, image,
            str(limit)]
    code, out, err, took = run_process(journal, argv, Place(None, place.env), limit + 10.0)
    result.duration = took
    result.detail["image"] = image
    try:
        observed = json.loads(out)
    except json.JSONDecodeError:
        if code is None:
            result.verdict = HUNG
            return
        raise RuntimeError((err or out or f"pull agent exited {code}").strip()[-500:]) from None
    result.duration = observed.pop("duration", took)
    result.detail.update(observed)
    if observed.get("hung"):
        result.verdict = HUNG
        return
    pulled = "pulled" if observed["ok"] else f"failed: {observed.get('error', '')}"[:300]
    if probe.ok is not None:
        result.checks.append(expect.Check("pull", "succeeds" if probe.ok else "fails", pulled,
                                          observed["ok"] == probe.ok))
    result.checks += expect.text_checks("error", probe.error, observed.get("error", ""))
    if probe.layers is not None:
        result.checks.append(expect.Check("layers downloaded", str(probe.layers),
                                          str(observed.get("layers", 0)), observed.get("layers") == probe.layers))
    result.checks += expect.within_check(probe.within, result.duration)


def run_skopeo_copy(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    import shutil
    import tempfile

    from chaos.lab.clients import ClientError

    if place.lab is None:
        raise RuntimeError("skopeo_copy needs `lab: registry`")
    ref = place.expand(probe.skopeo_copy).removeprefix("docker://")
    scratch = Path(tempfile.mkdtemp(prefix="chaos-skopeo-", dir=place.lab.skopeo.tmp))
    start = time.monotonic()
    try:
        done = place.lab.skopeo.copy(f"docker://{ref}", f"dir:{scratch / 'image'}",
                                     timeout=bound(probe), check=False)
        code, output = done.returncode, done.stdout
    except ClientError as exc:  # killed at the bound
        result.duration, result.verdict = time.monotonic() - start, HUNG
        result.detail.update(image=ref, output=exc.output[-OUTPUT_KEEP:])
        return
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.duration = time.monotonic() - start
    result.detail.update(image=ref, exit=code, output=output[-OUTPUT_KEEP:])
    if probe.ok is not None:
        seen = "copied" if code == 0 else f"failed (exit {code}): {output.strip()[-300:]}"
        result.checks.append(expect.Check("copy", "succeeds" if probe.ok else "fails", seen,
                                          (code == 0) == probe.ok))
    result.checks += expect.text_checks("error", probe.error, output if code else "")
    result.checks += expect.within_check(probe.within, result.duration)


def run_requests(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    if place.lab is None:
        raise RuntimeError("requests needs `lab: registry`")
    server = place.lab.server(probe.requests)
    mark = place.marks.get((probe.since, probe.requests), 0)
    seen = [r for r in server.access.matching(mark, method=probe.method, path=probe.path)
            if (probe.status is None or r.status == probe.status)
            and (probe.client is None or r.client == probe.client)]
    n = len(seen)
    what = f"{probe.requests} requests" + (f" {probe.method}" if probe.method else "") + (
        f" {probe.path}" if probe.path else "") + (f" status {probe.status}" if probe.status else "") + (
        f" from {probe.client}" if probe.client else "")
    sample = "; ".join(str(r) for r in seen[:3])
    result.checks += expect.count_checks(what, n, probe, f"{n}" + (f" ({sample})" if sample else ""))
    result.detail["requests"] = [str(r) for r in seen[:20]]


def run_dns_queries(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    server = getattr(place.dns, "server", None)
    if server is None:
        raise RuntimeError("dns_queries needs the sandbox's fake DNS server (a dns fault)")
    since = place.marks.get((probe.since, "dns"), 0.0)
    name = probe.dns_queries.lower().rstrip(".")
    seen = [q for q in server.queries() if q.get("t", 0) >= since
            and q.get("name", "").lower().rstrip(".") == name
            and (probe.qtype is None or q.get("type") == probe.qtype)]
    what = f"DNS queries for {name}" + (f" {probe.qtype}" if probe.qtype else "")
    result.checks += expect.count_checks(what, len(seen), probe)
    result.detail["queries"] = seen[:20]


def run_http_requests(probe, place: Place, journal: Journal, result: ProbeResult) -> None:
    proxy = getattr(place.http, "proxy", None)
    if proxy is None:
        raise RuntimeError("http_requests needs the sandbox's HTTP fault proxy (an HTTP fault)")
    since = place.marks.get((probe.since, "http"), 0.0)
    host = probe.http_requests.lower()
    seen = [r for r in proxy.requests() if (r.get("time") or 0) >= since
            and (host == "*" or (r.get("host") or "").lower() == host)
            and (probe.status is None or r.get("status") == probe.status)
            and (probe.path is None or probe.path in (r.get("path") or ""))
            and (probe.client is None or r.get("client") == probe.client)]
    what = f"HTTP requests to {host}" + (f" answered {probe.status}" if probe.status else "") + (
        f" from {probe.client}" if probe.client else "")
    result.checks += expect.count_checks(what, len(seen), probe)
    result.detail["requests"] = seen[:20]


RUNNERS = {"command": run_command, "http": run_http, "tcp": run_tcp,
           "docker-pull": run_docker_pull, "requests": run_requests,
           "dns-queries": run_dns_queries, "http-requests": run_http_requests,
           "skopeo-copy": run_skopeo_copy}


def probe_kind(probe) -> str:
    from chaos.scenario.model import _probe_kind

    kind = _probe_kind(probe)
    if kind is None:  # a validated probe always has one
        raise ValueError(f"not a probe: {probe!r}")
    return kind


def describe(probe) -> str:
    if probe.name:
        return probe.name
    for key in ("run", "http", "tcp"):
        if getattr(probe, key, None):
            return getattr(probe, key)
    if getattr(probe, "docker_pull", None):
        return f"docker pull {probe.docker_pull}"
    if getattr(probe, "skopeo_copy", None):
        return f"skopeo copy {probe.skopeo_copy}"
    if getattr(probe, "dns_queries", None):
        return f"DNS queries for {probe.dns_queries}"
    if getattr(probe, "http_requests", None):
        return f"HTTP requests to {probe.http_requests}"
    return f"{probe.requests} requests {probe.path or ''}".strip()


def run_probe(probe, phase: str, place: Place, journal: Journal, started: float = 0.0) -> ProbeResult:
    kind = probe_kind(probe)
    result = ProbeResult(phase, place.expand(describe(probe)), kind, started=started)
    try:
        RUNNERS[kind](probe, place, journal, result)
    except Exception as exc:  # a probe that cannot run is reported, not raised
        result.verdict, result.detail["error"] = ERROR, f"{type(exc).__name__}: {exc}"
        return result
    if result.verdict == PASSED and result.failures():
        result.verdict = FAILED
    return result
