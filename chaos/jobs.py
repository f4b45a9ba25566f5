"""`chaos run -j N`: scenarios side by side, each a child `chaos run` of its own.

Each scenario runs as ``python -m chaos run FILE --json /dev/fd/N``: a child process with
its own sandbox or lab, journal (its pid is the journal's owner, so `chaos recover` leaves
it alone while it lives), signal handlers and scheduler thread, exactly as a run alone. The
parent only schedules, relays signals and writes the reports: it reads each child's JSON
report from a pipe (nothing on disk to leave behind) and rebuilds the results, so the
reports, the baseline comparison and the exit status are made by the same code as a serial
run's, in the order the scenarios were given.

Scenarios that would act on the same thing are never run side by side (``claims``).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chaos.errors import ExitStatus

if TYPE_CHECKING:
    import subprocess

    from chaos.runner import RunOptions, ScenarioResult

PARENT_ENV = "CHAOS_JOB_PARENT"
"""Set for a child run: the parent's pid (the child stops when the parent dies)."""


def auto_jobs() -> int:
    """`-j auto`: two runs per CPU. A run mostly waits (on clients' timeouts, fault windows,
    a lab's start), so the CPUs are not what bounds it; docs/benchmarks.md has the figures."""
    return 2 * len(os.sched_getaffinity(0))


def claims(scenario, options: RunOptions) -> dict[str, str]:
    """What a run acts on that another run could act on too: claim -> why it cannot be
    shared. A sandbox's or a lab's namespaces, hosts files, addresses and fault proxies are
    its own (named by its run id), so only the host and a container are shared."""
    out = {}
    if options.host_mode:
        # /etc/hosts, the routing table and the packet filter of the machine itself; two
        # host runs would also clash on the same host names and edge claims (Exclusive).
        out["the host"] = "--host applies faults to this machine itself"
    daemon = options.docker_host or getattr(scenario, "docker", None) or "the local docker daemon"
    for fault in scenario.faults:
        container = getattr(fault, "container", None)
        if container:
            out[f"container {container} ({daemon})"] = "faults act in the container's own namespaces"
    return out


@dataclass
class Job:
    index: int
    path: str
    scenario: object
    claims: dict[str, str]
    proc: subprocess.Popen | None = None
    output: list[str] = field(default_factory=list)
    report: bytearray = field(default_factory=bytearray)
    readers: list[threading.Thread] = field(default_factory=list)
    started: float = 0.0
    result: ScenarioResult | None = None

    @property
    def name(self) -> str:
        return str(getattr(self.scenario, "name", self.path))

    @property
    def last(self) -> str:
        """The child's latest line (a probe's verdict, a fault switched): the live line."""
        for line in reversed(self.output):
            if line.strip():
                return line.strip()
        return "starting"

    def conflicts(self, other: Job) -> list[str]:
        return [c for c in self.claims if c in other.claims]


def serialised(jobs: list[Job]) -> list[str]:
    """Lines saying which scenarios never run side by side, and why."""
    holders: dict[str, list[Job]] = {}
    for job in jobs:
        for claim in job.claims:
            holders.setdefault(claim, []).append(job)
    return [f"one at a time: {', '.join(j.path for j in group)}: {claim}: {group[0].claims[claim]}"
            for claim, group in holders.items() if len(group) > 1]


def child_argv(path: str, report_fd: int, options: RunOptions, verbose: bool) -> list[str]:
    argv = [sys.executable, "-m", "chaos", "run", path, "--json", f"/dev/fd/{report_fd}"]
    if options.host_mode:
        argv.append("--host")
    for name, value in options.variables.items():
        argv += ["--var", f"{name}={value}"]
    if options.docker_host:
        argv += ["--docker-host", options.docker_host]
    if options.cache:
        argv += ["--cache", options.cache]
    if options.client != "dockerd":
        argv += ["--client", options.client]
    if options.client_version:
        argv += ["--client-version", options.client_version]
    if options.state_dir:
        argv += ["--state-dir", options.state_dir]
    if verbose:
        argv.append("-v")
    return argv


def _read_lines(stream, job: Job) -> None:
    for line in stream:
        job.output.append(line.rstrip("\n"))
    stream.close()


def _read_report(fd: int, job: Job) -> None:
    with open(fd, "rb") as f:
        while chunk := f.read(65536):
            job.report += chunk


def start(job: Job, options: RunOptions, verbose: bool) -> None:
    import subprocess

    read_fd, write_fd = os.pipe()
    env = {**os.environ, PARENT_ENV: str(os.getpid())}
    # Own session: a terminal's Ctrl-C reaches the parent only, which relays it once to
    # every child (a child's second signal would find it reverting, which it finishes).
    job.proc = subprocess.Popen(child_argv(job.path, write_fd, options, verbose), env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, encoding="utf-8", errors="replace",
                                pass_fds=(write_fd,),
                                start_new_session=True)
    os.close(write_fd)
    job.started = time.monotonic()
    job.readers = [threading.Thread(target=_read_lines, args=(job.proc.stdout, job), daemon=True),
                   threading.Thread(target=_read_report, args=(read_fd, job), daemon=True)]
    for reader in job.readers:
        reader.start()


def follow_parent() -> None:
    """In a child run: the parent's death is a SIGTERM to this run (it reverts and ends),
    so a killed `chaos run -j` leaves no run going on without anyone to report to."""
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None:
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(parent):  # it died before the prctl
        os.kill(os.getpid(), signal.SIGTERM)


def finish(job: Job) -> ScenarioResult:
    """The child's result from its JSON report; a child that wrote none (killed, crashed)
    gets a result saying so, every probe not run."""
    import json

    from chaos import runner
    from chaos.runner import ScenarioResult

    assert job.proc is not None
    code = job.proc.wait()
    for reader in job.readers:
        # A process the child left behind (it is reported, and `chaos recover` ends it)
        # may still hold the pipes: what the child wrote is in by now.
        reader.join(timeout=5)
    try:
        scenarios = json.loads(job.report)["scenarios"]
    except ValueError:
        scenarios = []
    if len(scenarios) == 1:
        return ScenarioResult.from_dict(scenarios[0])
    how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    if runner.received and code in (130, 143, -signal.SIGINT, -signal.SIGTERM):
        term = code in (143, -signal.SIGTERM)
        status = ExitStatus.TERMINATED if term else ExitStatus.INTERRUPTED
        return runner.not_started(job.scenario, job.path, status,
                                  f"{'terminated' if term else 'interrupted'} while the run was starting")
    tail = " | ".join(job.output[-5:])
    result = runner.not_started(job.scenario, job.path, ExitStatus.INJECTION,
                                f"the run's process ended with {how} and wrote no report "
                                f"(`chaos recover` undoes what it left): {tail}")
    result.status = "injection-error"
    return result


class Board:
    """What the scheduler shows: the plan, a live line per running scenario (on a
    terminal), each result whole in the order given."""

    def plan(self, lines: list[str]) -> None: ...
    def running(self, jobs: list[Job], ended: list[Job]) -> None:
        """``ended``: finished, waiting for an earlier scenario before they are printed."""
    def result(self, job: Job) -> None:
        """``job.result`` is None: a signal kept it from starting."""
    def close(self) -> None: ...


def longest_first(jobs: list[Job], expected: dict[str, float]) -> list[Job]:
    """The order to start them in: the longest expected first (a long scenario started last
    would run on alone at the end), scenarios with no expected duration before all (they
    may be the longest), the given order between equals."""
    return sorted(jobs, key=lambda job: -expected.get(job.name, float("inf")))


def run_all(loaded, options: RunOptions, jobs: int, board: Board, verbose: bool = False,
            expected: dict[str, float] | None = None, poll: float = 0.05) -> list[ScenarioResult]:
    """Run every (path, scenario) with at most ``jobs`` at once, the longest ``expected``
    (scenario name -> seconds) first; every scenario's result in the given order (`not-run`
    for those a signal kept from starting)."""
    from chaos import runner

    todo = [Job(i, str(path), scenario, claims(scenario, options))
            for i, (path, scenario) in enumerate(loaded)]
    board.plan([f"{len(todo)} scenarios, up to {jobs} at once"
                + (", the longest the baseline records first" if expected else ""),
                *serialised(todo)])
    pending, running, done = longest_first(todo, expected or {}), list[Job](), dict[int, Job]()
    relayed, shown = 0, 0
    try:
        while pending or running:
            while relayed < len(runner.received):  # Ctrl-C / SIGTERM: to every child, once
                for job in running:
                    _send(job, runner.received[relayed])
                relayed += 1
            if runner.received:
                pending = []  # told to stop: start nothing more
            for job in list(pending):
                if len(running) >= jobs:
                    break
                if not any(job.conflicts(other) for other in running):
                    pending.remove(job)
                    start(job, options, verbose)
                    running.append(job)
            for job in list(running):
                assert job.proc is not None
                if job.proc.poll() is not None:
                    running.remove(job)
                    job.result = finish(job)
                    done[job.index] = job
            while shown in done:
                board.result(done[shown])
                shown += 1
            board.running(running, [done[i] for i in sorted(done) if i >= shown])
            if pending or running:
                time.sleep(poll)
        for job in todo[shown:]:  # after a signal: the rest, finished or never started
            board.result(job)
    finally:
        board.close()
    return [done[job.index].result or _not_started(job) if job.index in done else _not_started(job)
            for job in todo]


def _not_started(job: Job) -> ScenarioResult:
    from chaos import runner

    term = runner.received[:1] == [signal.SIGTERM]
    why = "terminated (SIGTERM)" if term else "interrupted (SIGINT)"
    return runner.not_started(job.scenario, job.path,
                              ExitStatus.TERMINATED if term else ExitStatus.INTERRUPTED,
                              f"{why} before this scenario started")


def _send(job: Job, signum: int) -> None:
    try:
        assert job.proc is not None
        job.proc.send_signal(signum)
    except ProcessLookupError:
        pass
