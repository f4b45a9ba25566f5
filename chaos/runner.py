"""run_scenario(): plan, build the sandbox, probe, inject, probe, revert, probe, report.

Everything that changes the system goes through the run's journal, so one rollback in a
``finally`` undoes exactly what was applied, in reverse order, whatever ended the run
(success, failed expectation, exception, Ctrl-C, SIGTERM). The CLI and the pytest plugin
both call run_scenario().
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from chaos.errors import ExitStatus, Interrupted, PlanError
from chaos.journal import Journal, RevertFailure
from chaos.plan import PlanContext
from chaos.probes.result import ProbeResult
from chaos.probes.run import Place, run_probe
from chaos.schedule import finite_end, switch_steps

SERVER_READY_TIMEOUT = 10.0


@dataclass
class RunOptions:
    host_mode: bool = False
    state_dir: str | None = None
    variables: dict = field(default_factory=dict)


@dataclass
class ScenarioResult:
    name: str
    file: str
    run_id: str = ""
    mode: str = "sandbox"
    status: str = "passed"  # passed | failed | invalid | injection-error | interrupted
    exit_code: int = ExitStatus.OK
    probes: list[ProbeResult] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    """Timeline: faults switched on/off, phases, with seconds since the run started."""
    errors: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    duration: float = 0.0

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "run_id": self.run_id, "mode": self.mode,
                "status": self.status, "exit_code": int(self.exit_code),
                "duration": round(self.duration, 4), "errors": self.errors,
                "left_behind": self.left_behind, "events": self.events,
                "probes": [p.to_dict() for p in self.probes]}


class Reporter:
    """What the runner tells while it works; the console reporter draws it, tests ignore it."""

    def scenario_start(self, scenario, file: str, run_id: str) -> None: ...
    def step(self, text: str) -> None: ...
    def probe_start(self, phase: str, name: str) -> None: ...
    def probe_done(self, result: ProbeResult) -> None: ...
    def fault(self, label: str, on: bool, t: float) -> None: ...
    def scenario_done(self, result: ScenarioResult) -> None: ...


def new_run_id() -> str:
    return f"chaos-{secrets.token_hex(3)}"


@contextmanager
def signals_raise():
    """SIGTERM raises Interrupted in the main thread (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def on_term(signum, frame):
        if os.getpid() != owner:
            # A forked helper (pyroute2 forks to enter namespaces) inherited this handler:
            # it must die quietly, never run the parent's revert path.
            os._exit(128 + signum)
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def signals_held():
    """While reverting, a second Ctrl-C or SIGTERM must not cut the revert short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


class _FaultSwitch:
    """One planned fault: its injectors, applied and reverted as a unit."""

    def __init__(self, fault, injectors) -> None:
        self.fault, self.injectors, self.on = fault, injectors, False

    def apply(self, journal: Journal) -> None:
        for injector in self.injectors:
            injector.apply(journal)
        self.on = True

    def revert(self, journal: Journal) -> list[RevertFailure]:
        failures = []
        for injector in reversed(self.injectors):
            failures += injector.revert(journal)
        self.on = False
        return failures


class Run:
    """The state of one scenario run. Small steps; run_scenario() strings them together."""

    def __init__(self, scenario, file: str, options: RunOptions, reporter: Reporter) -> None:
        self.scenario, self.options, self.reporter = scenario, options, reporter
        self.run_id = new_run_id()
        self.result = ScenarioResult(scenario.name, file, self.run_id,
                                     "host" if options.host_mode else "sandbox")
        self.t0 = time.monotonic()
        self.journal: Journal | None = None
        self.sandbox = None
        self.switches: list[_FaultSwitch] = []
        self.place = Place(variables=dict(options.variables))
        self.schedule_error: list[str] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, **fields) -> None:
        fields["t"] = round(self.now(), 4)
        with self._lock:
            self.result.events.append(fields)
        if self.journal is not None:
            self.journal.note(**fields)

    # -- planning: nothing on the machine changes here ------------------------------------
    def zone(self) -> dict[str, str]:
        """Served names (addresses given or handed out from 198.18.1.10 on) and `hosts:`."""
        from chaos.sandbox.netns import SERVER_NET

        zone, next_free = {}, 10
        for serve in self.scenario.serve:
            if serve.address is None:
                serve.address = SERVER_NET.network_address + next_free
                next_free += 1
            zone[serve.name] = str(serve.address)
        zone.update({name: str(addr) for name, addr in self.scenario.hosts.items()})
        return zone

    def plan(self) -> None:
        from chaos.sandbox.netns import Sandbox

        host = self.options.host_mode
        for key in ("serve", "regions"):
            if host and getattr(self.scenario, key):
                raise PlanError((key,), f"`{key}:` needs the sandbox; with --host, point probes "
                                        "at servers you run yourself")
        self.sandbox = None if host else Sandbox(self.run_id, self.zone(), dict(self.scenario.regions))
        if host:
            clients = {"host": (None, Path("/etc/hosts"))}
        else:
            clients = {r: (c.netns, c.hosts_path) for r, c in self.sandbox.clients.items()}
        ctx = PlanContext(self.run_id, host, clients, self.zone())
        for index, fault in enumerate(self.scenario.faults):
            ctx.path = ("faults", index)
            self.switches.append(_FaultSwitch(fault, fault.injectors(ctx)))

    # -- the world ------------------------------------------------------------------------
    def build_sandbox(self) -> None:
        self.reporter.step("sandbox: creating namespaces")
        self.sandbox.create(self.journal)
        self.place.netns = self.sandbox.client
        self.place.regions = {r: c.netns for r, c in self.sandbox.clients.items()}
        self.event(kind="sandbox", clients=dict(self.place.regions), world=self.sandbox.world)
        for serve in self.scenario.serve:
            self.start_server(serve)

    def start_server(self, serve) -> None:
        from chaos.processes import spawn

        address = str(serve.address)
        self.sandbox.add_server_address(address)
        http = serve.http
        argv = [sys.executable, "-m", "chaos.sandbox.serve", "--listen", f"{address}:{http.port}",
                "--status", str(http.status), "--body", http.body]
        if http.size:
            argv += ["--size", str(http.size)]
        self.reporter.step(f"serve: {serve.name} on {address}:{http.port}")
        proc, _ = spawn(self.journal, argv, netns=self.sandbox.world, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL, what=f"server {serve.name} ({address}:{http.port})")
        wait_ready(proc, SERVER_READY_TIMEOUT, f"server {serve.name}")

    # -- phases ---------------------------------------------------------------------------
    def probe_phase(self, phase: str, probes) -> bool:
        self.event(kind="phase", phase=phase)
        ok = True
        for probe in probes:
            self.check_schedule()
            self.reporter.probe_start(phase, self.place.expand(_probe_label(probe)))
            result = run_probe(probe, phase, self.place.at(probe.region), self.journal,
                               started=self.now())
            self.result.probes.append(result)
            self.reporter.probe_done(result)
            ok &= result.ok
        return ok

    def check_schedule(self) -> None:
        if self.schedule_error:
            raise FaultError(self.schedule_error[0])

    def switch(self, sw: _FaultSwitch, on: bool) -> None:
        label = sw.fault.label()
        if on:
            try:
                sw.apply(self.journal)
            except Exception as exc:
                raise FaultError(f"could not inject {label}: {type(exc).__name__}: {exc}") from exc
        else:
            failures = sw.revert(self.journal)
            if failures:
                raise FaultError(f"could not revert {label}: " + "; ".join(map(str, failures)))
        self.event(kind="fault", fault=label, state="on" if on else "off")
        self.reporter.fault(label, on, self.now())

    def during(self) -> bool:
        """Switch faults (now, or on their schedule in a thread) while the probes run."""
        scheduled = [sw for sw in self.switches if sw.fault.window or sw.fault.flap]
        for sw in self.switches:
            if sw not in scheduled:
                self.switch(sw, True)
        stop = threading.Event()
        start = time.monotonic()
        thread = threading.Thread(target=self._scheduler, args=(scheduled, start, stop),
                                  name="chaos-schedule", daemon=True)
        thread.start()
        try:
            ok = self.probe_phase("during", self.scenario.expect.during)
            # A window that has not ended yet still runs its course before the revert.
            ends = [finite_end(sw.fault.window, sw.fault.flap) for sw in scheduled]
            wait = max((e for e in ends if e is not None), default=0.0) - (time.monotonic() - start)
            if wait > 0:
                self.reporter.step(f"waiting {wait:.1f}s for fault windows to close")
                stop.wait(wait)
        finally:
            stop.set()
            thread.join()
        self.check_schedule()
        return ok

    def _scheduler(self, switches, start: float, stop: threading.Event) -> None:
        steps = sorted(((t, on, i) for i, sw in enumerate(switches)
                        for t, on in _take_until(switch_steps(sw.fault.window, sw.fault.flap), 3600)),
                       key=lambda s: (s[0], s[1]))
        for t, on, i in steps:
            if stop.wait(max(0.0, start + t - time.monotonic())):
                return
            try:
                self.switch(switches[i], on)
            except Exception as exc:  # noqa: BLE001 - the main thread raises it
                self.schedule_error.append(str(exc))
                return

    def revert_faults(self) -> list[RevertFailure]:
        failures = []
        for sw in reversed(self.switches):
            if sw.on or sw.injectors and any(i.entries for i in sw.injectors):
                failures += sw.revert(self.journal)
                self.event(kind="fault", fault=sw.fault.label(), state="off")
                self.reporter.fault(sw.fault.label(), False, self.now())
        return failures


class FaultError(Exception):
    pass


def _take_until(steps, horizon: float):
    for t, on in steps:
        if t > horizon:
            return
        yield t, on


def _probe_label(probe) -> str:
    from chaos.probes.run import describe

    return describe(probe)


def wait_ready(proc: subprocess.Popen, timeout: float, what: str) -> None:
    """Wait for the line `ready` on a child's stdout, bounded; raise if it never comes."""
    import selectors

    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if line.strip() == b"ready":
                    return
                if not line:
                    break
    code = proc.poll()
    raise FaultError(f"{what} did not become ready within {timeout:.0f}s"
                     + (f" (exited with {code})" if code is not None else ""))


def run_scenario(scenario, file: str = "<scenario>", options: RunOptions | None = None,
                 reporter: Reporter | None = None) -> ScenarioResult:
    """Run one validated scenario; always reverts; never raises for a failed run."""
    options, reporter = options or RunOptions(), reporter or Reporter()
    run = Run(scenario, file, options, reporter)
    result = run.result
    reporter.scenario_start(scenario, file, run.run_id)
    try:
        run.plan()
    except PlanError as exc:
        from chaos.scenario.load import plan_problem

        result.status, result.exit_code = "invalid", ExitStatus.INVALID
        result.errors.append(str(plan_problem(scenario, exc)))
        reporter.scenario_done(result)
        return result
    run.journal = Journal.create(run.run_id, options.state_dir)
    try:
        with signals_raise():
            _phases(run)
    except KeyboardInterrupt:
        result.status, result.exit_code = "interrupted", ExitStatus.INTERRUPTED
        result.errors.append("interrupted (SIGINT): reverted everything")
    except Interrupted:
        result.status, result.exit_code = "interrupted", ExitStatus.TERMINATED
        result.errors.append("terminated (SIGTERM): reverted everything")
    except FaultError as exc:
        result.status, result.exit_code = "injection-error", ExitStatus.INJECTION
        result.errors.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - reported; the finally below still reverts
        result.status, result.exit_code = "injection-error", ExitStatus.INJECTION
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        with signals_held():
            failures = run.journal.rollback()
            if failures:
                result.status, result.exit_code = "injection-error", ExitStatus.INJECTION
                result.left_behind = [str(f) for f in failures]
                result.errors.append("could not revert everything; `chaos recover` retries: "
                                     + "; ".join(result.left_behind))
            run.journal.finish()
    result.duration = run.now()
    reporter.scenario_done(result)
    return result


def _phases(run: Run) -> None:
    result, expect = run.result, run.scenario.expect
    if not run.options.host_mode:
        run.build_sandbox()
    if not run.probe_phase("before", expect.before):
        result.status, result.exit_code = "failed", ExitStatus.EXPECTATION
        result.errors.append("the steady state did not hold before any fault: nothing injected")
        return
    during_ok = run.during()
    with signals_held():
        failures = run.revert_faults()
    if failures:
        raise FaultError("could not revert: " + "; ".join(map(str, failures)))
    after_ok = run.probe_phase("after", expect.after)
    if not (during_ok and after_ok):
        result.status, result.exit_code = "failed", ExitStatus.EXPECTATION
