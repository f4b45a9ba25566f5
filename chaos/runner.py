"""run_scenario(): plan, build the sandbox, probe, inject, probe, revert, probe, report.

Everything that changes the system goes through the run's journal, so one rollback in a
``finally`` undoes exactly what was applied, in reverse order, whatever ended the run
(success, failed expectation, exception, Ctrl-C, SIGTERM). The CLI and the pytest plugin
both call run_scenario().
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from chaos.errors import ExitStatus, Interrupted, PlanError, PlanErrors
from chaos.journal import Journal, RevertFailure
from chaos.mode import mode_name
from chaos.probes.result import SKIPPED, ProbeResult
from chaos.probes.run import Place, probe_kind, run_probe
from chaos.schedule import finite_end, switch_steps
from chaos.session import FaultSwitch, Session, new_run_id

PHASES = ("before", "during", "after")


@dataclass
class RunOptions:
    host_mode: bool = False
    state_dir: str | None = None
    variables: dict = field(default_factory=dict)
    docker_host: str | None = None
    """The daemon for `container:` targets (wins over the scenario's `docker:`)."""
    cache: str | None = None
    """The lab's cache kind for every lab scenario (wins over the scenario's `lab.cache`)."""
    client: str = "dockerd"
    """The lab client `pull:` probes pull with (chaos.lab.pullers.CLIENTS)."""
    client_version: str | None = None
    """The generation of ``client`` for every lab scenario: for dockerd it wins over
    `lab.client_version`; for another client, that client's build (``podman`` ``5.4``)."""


@dataclass
class ScenarioResult:
    name: str
    file: str
    run_id: str = ""
    mode: str = "sandbox"  # host | sandbox | lab (chaos.mode)
    status: str = "passed"  # passed | failed | invalid | injection-error | interrupted
    exit_code: int = ExitStatus.OK
    probes: list[ProbeResult] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    """Timeline: faults switched on/off (or stuck: a revert failed), phases, with seconds
    since the run started."""
    errors: list[str] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)
    duration: float = 0.0
    baseline: dict | None = None
    """How the verdicts compare with a recorded baseline (chaos.report.baseline), if given."""

    def to_dict(self) -> dict:
        return {"name": self.name, "file": self.file, "run_id": self.run_id, "mode": self.mode,
                "status": self.status, "exit_code": int(self.exit_code),
                "duration": round(self.duration, 4), "errors": self.errors,
                "left_behind": self.left_behind, "events": self.events,
                "probes": [p.to_dict() for p in self.probes],
                **({"baseline": self.baseline} if self.baseline is not None else {})}

    @classmethod
    def from_dict(cls, doc: dict) -> ScenarioResult:
        """The inverse of ``to_dict`` (a child run's JSON report, `chaos run -j`)."""
        return cls(doc["name"], doc["file"], doc["run_id"], doc["mode"], doc["status"],
                   ExitStatus(doc["exit_code"]), [ProbeResult.from_dict(p) for p in doc["probes"]],
                   doc["events"], doc["errors"], doc["left_behind"], doc["duration"],
                   doc.get("baseline"))


class Reporter:
    """What the runner tells while it works; the console reporter draws it, tests ignore it."""

    def scenario_start(self, scenario, file: str, run_id: str) -> None: ...
    def step(self, text: str) -> None: ...
    def probe_start(self, phase: str, name: str) -> None: ...
    def probe_done(self, result: ProbeResult) -> None: ...
    def fault(self, label: str, on: bool, t: float) -> None: ...
    def fault_stuck(self, label: str, t: float) -> None: ...
    def fault_connections(self, label: str, connections: list[dict]) -> None: ...
    def scenario_done(self, result: ScenarioResult) -> None: ...


received: list[int] = []
"""Signals that arrived during a run: a raise can be swallowed (Python ignores exceptions in
some callbacks, e.g. at fork) and a signal during a revert is held, so this list is what
the run checks at every step."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _exception(signum: int) -> BaseException:
    return KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum)


def raise_pending() -> None:
    """Stop now if a signal arrived whose raise was held or swallowed."""
    if received:
        raise _exception(received[0])


def _install(handler) -> dict:
    return {s: signal.signal(s, handler) for s in _SIGNALS}


def _restore(old: dict) -> None:
    for s, handler in old.items():
        signal.signal(s, handler)


@contextmanager
def signals_raise():
    """SIGINT and SIGTERM stop the run: recorded, then raised in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() != owner:
            # A forked helper (pyroute2 forks to enter namespaces) inherited this handler:
            # it must die quietly, never run the parent's revert path.
            os._exit(128 + signum)
        received.append(signum)
        raise _exception(signum)

    previous_hook = sys.unraisablehook

    def swallowed(unraisable) -> None:
        # Python swallowed our raise (it landed in an at-fork callback or a __del__) and
        # would print "Exception ignored ... Traceback": the signal is in `received` and
        # the run stops at its next step, so there is nothing to tell the user.
        if received and isinstance(unraisable.exc_value, (KeyboardInterrupt, Interrupted)):
            return
        previous_hook(unraisable)

    old = _install(on_signal)
    sys.unraisablehook = swallowed
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        _restore(old)


@contextmanager
def signals_recorded(restore: bool = True):
    """Record SIGINT / SIGTERM without raising: while reverting (a second Ctrl-C must not cut
    the revert short) and between runs. The caller decides what a recorded signal means.
    ``restore=False`` leaves the recorder in place afterwards (until the process exits)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def on_signal(signum, frame):
        if os.getpid() != owner:
            os._exit(128 + signum)
        received.append(signum)

    old = _install(on_signal)
    try:
        yield
    finally:
        if restore:
            _restore(old)


signals_held = signals_recorded


class Run:
    """The state of one scenario run. Small steps; run_scenario() strings them together."""

    def __init__(self, scenario, file: str, options: RunOptions, reporter: Reporter) -> None:
        self.scenario, self.options, self.reporter = scenario, options, reporter
        self.session: Session | None = None
        self.run_id = new_run_id()
        self.result = ScenarioResult(scenario.name, file, self.run_id,
                                     mode_name(options.host_mode, scenario.lab))
        self.t0 = time.monotonic()
        self.switches: list[FaultSwitch] = []
        self.schedule_error: list[str] = []
        self.ran: dict[tuple[str, int], ProbeResult] = {}
        """(phase, index in that phase) -> the result of each probe that ran."""
        self.running: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def journal(self) -> Journal | None:
        return self.session.journal if self.session else None

    @property
    def live(self) -> Session:
        """The planned session (an error before plan())."""
        if self.session is None:
            raise RuntimeError("the run is not planned")
        return self.session

    @property
    def place(self) -> Place:
        return self.live.place

    def plan(self) -> None:
        """Everything that can be refused is refused here, before the machine changes.
        Faults and probes ask the plan context for what they need; the mode starts it."""
        s = self.scenario
        if any(hasattr(p, "blind_spot") for ph in PHASES for p in getattr(s.expect, ph)):
            from chaos.probes.coverage import blind_spots

            for path, reason in blind_spots(s):  # load refuses these too; a model built in
                raise PlanError(path, reason)    # code reaches run_scenario without load
        self.session = Session(host_mode=self.options.host_mode, state_dir=self.options.state_dir,
                               serve=s.serve, hosts=s.hosts, regions=s.regions,
                               variables=self.options.variables, run_id=self.run_id,
                               lab=s.lab and _lab_options(s.lab, self.options),
                               seed=s.seed, docker_host=self.options.docker_host or s.docker,
                               ipv6=s.dual_stack, host_setup=s.host_setup,
                               client=self.options.client, pullers=_pullers(self.options))
        errors: list[PlanError] = []  # every fault's refusal, not only the first one's
        for i, fault in enumerate(s.faults):
            try:
                self.switches.append(self.session.plan(fault, ("faults", i)))
            except PlanErrors as exc:
                errors += exc.errors
            except PlanError as exc:
                errors.append(exc)
        if not errors:
            self.refuse_clashes()
        for phase in PHASES:
            for i, probe in enumerate(getattr(s.expect, phase)):
                try:
                    probe.prepare(self.session.context(("expect", phase, i)))
                except PlanError as exc:
                    errors.append(exc)
        if errors:
            raise errors[0] if len(errors) == 1 else PlanErrors(errors)

    def refuse_clashes(self) -> None:
        """Two faults' injectors that claim the same thing (an ``Exclusive`` injector, e.g. an
        edge redirect of a server port): only the first applied would act, the other fault
        would silently never apply."""
        if not self.switches:
            return  # (and chaos.injectors.base stays unimported: a faultless run needs none)
        from chaos.injectors.base import Exclusive

        claims = [(i, inj) for i, sw in enumerate(self.switches) for inj in sw.injectors
                  if isinstance(inj, Exclusive)]
        source = getattr(self.scenario, "_source", None)
        for n, (j, later) in enumerate(claims):
            for i, earlier in claims[:n]:
                clash = earlier.clash(later, self.live.zone)
                if clash is None:
                    continue
                where = f" at {source.file}:{':'.join(map(str, source.position(('faults', i))))}" \
                    if source else ""
                raise PlanError(("faults", j, *clash.rel), (
                    f"{clash.what} is also taken by faults[{i}] "
                    f"({self.scenario.faults[i].type}{where}): {clash.why}"))

    def open(self) -> None:
        self.live.open(step=self.reporter.step)
        opened = self.live.mode.opened(self.live)
        if opened is not None:
            self.event(**opened)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def event(self, **fields) -> dict:
        fields["t"] = round(fields.get("t", self.now()), 4)
        with self._lock:
            self.result.events.append(fields)
        if self.journal is not None:
            self.journal.note(**fields)
        return fields

    # -- phases ---------------------------------------------------------------------------
    def probe_phase(self, phase: str, probes, announce: bool = True) -> bool:
        if announce:
            self.event(kind="phase", phase=phase)
        self.live.mark_logs("phase")
        ok = True
        for index, probe in enumerate(probes):
            raise_pending()
            self.check_schedule()
            self.reporter.probe_start(phase, self.place.expand(_probe_label(probe)))
            self.running = (phase, index)  # a signal may end the run inside this call
            result = run_probe(probe, phase, self.place.at(probe.region), self.live.opened,
                               started=self.now())
            self.result.probes.append(result)
            self.ran[(phase, index)] = result
            self.reporter.probe_done(result)
            ok &= result.ok
        return ok

    def record_not_run(self) -> None:
        """Every declared probe that did not run gets a skipped result saying why the run
        stopped before it, so reports list the whole scenario in its declared order."""
        if len(self.ran) == sum(len(getattr(self.scenario.expect, ph)) for ph in PHASES):
            return
        errors = self.result.errors
        reason = errors[0] if errors else "the run stopped"
        place = self.session.place if self.session is not None else Place()
        probes = []
        for phase in PHASES:
            for index, probe in enumerate(getattr(self.scenario.expect, phase)):
                result = self.ran.get((phase, index))
                if result is None:
                    detail: dict = {"not_run": reason}
                    if (phase, index) == self.running:
                        detail["cut_short"] = True
                    result = ProbeResult(phase, place.expand(_probe_label(probe)),
                                         probe_kind(probe), verdict=SKIPPED, detail=detail)
                probes.append(result)
        self.result.probes = probes

    def check_schedule(self) -> None:
        if self.schedule_error:
            raise FaultError(self.schedule_error[0])

    def switch(self, sw: FaultSwitch, on: bool, scheduled: float | None = None) -> None:
        """Apply or revert one fault; the timeline gets when it began, how long it took and,
        for scheduled switches, when it was due (all in seconds since the run started)."""
        label = sw.fault.label()
        began = self.now()
        if on:
            try:
                sw.apply(self.live.opened)
            except Exception as exc:
                raise FaultError(f"could not inject {label}: {type(exc).__name__}: {exc}") from exc
        else:
            failures = sw.revert(self.live.opened)
            if failures:
                raise FaultError(f"could not revert {label}: " + "; ".join(map(str, failures)))
        timing: dict = {"began": round(began, 4)}  # the event's t: when it was done (in effect)
        if scheduled is not None:
            timing["due"] = round(scheduled, 4)
        event = self.event(kind="fault", fault=label, state="on" if on else "off", **timing)
        self.reporter.fault(label, on, began)
        if on:
            self.open_connections(sw, label, event)

    def open_connections(self, sw: FaultSwitch, label: str, event: dict) -> None:
        """The connections the fault met as it started, from the injectors that list them
        (``connections()``): open and new connections fail differently, so the report says
        which there were. Read after the event: the listing never delays the fault."""
        listers = [i for i in sw.injectors if callable(getattr(i, "connections", None))]
        if not listers:
            return
        try:
            found = [c for i in listers for c in i.connections()]
        except Exception as exc:  # the report says so; the run goes on
            event["connections_error"] = f"{type(exc).__name__}: {exc}"
            return
        event["connections"] = found
        fault_connections = getattr(self.reporter, "fault_connections", None)
        if fault_connections is not None:  # a reporter written before it existed has none
            fault_connections(label, found)

    def faults_on(self) -> None:
        """Switch the unscheduled faults on now and start the scheduler thread for the
        windows and flaps (their clock starts now); returns once the steps due at 0s are
        done. The runner's during phase and the pytest marker both start faults here;
        stop_schedule() ends the thread."""
        self.scheduled = [sw for sw in self.switches if sw.fault.window or sw.fault.flap]
        lab = self.session.lab if self.session is not None else None
        if lab is not None:
            lab.before_faults()
        for sw in self.switches:
            if sw not in self.scheduled:
                self.switch(sw, True)
        self._stop = threading.Event()
        # A full garbage collection of what the run has imported and built by now holds the
        # interpreter long enough to make a switch that falls into one late (measured by
        # benchmarks/schedule.py, docs/benchmarks.md); frozen, those objects are not scanned
        # again. stop_schedule thaws them, unless something was frozen before (chaos.startup,
        # a user's own): gc thaws all or nothing, and what others froze stays frozen.
        self._thaw_gc = gc.get_freeze_count() == 0
        gc.freeze()
        self._start = time.monotonic()
        self.event(kind="phase", phase="during", t=self._start - self.t0)
        due_now = threading.Event()
        self._windows_closed = threading.Event()
        self._thread = threading.Thread(target=self._scheduler,
                                        args=(self.scheduled, self._start, self._stop, due_now),
                                        name="chaos-schedule", daemon=True)
        self._thread.start()
        due_now.wait()  # a window that opens at 0s is on before anything looks

    def wait_windows(self) -> None:
        """A window that has not ended yet still runs its course before the revert."""
        ends = [finite_end(sw.fault.window, sw.fault.flap) for sw in self.scheduled]
        wait = max((e for e in ends if e is not None), default=0.0) - (time.monotonic() - self._start)
        if wait > 0:
            self.reporter.step(f"waiting {wait:.1f}s for fault windows to close")
            # Until the scheduler has made the last switch (not just until its time: the
            # stop that follows would race it, and the switch would fall to the revert).
            self._windows_closed.wait(wait + 10.0)

    def stop_schedule(self) -> None:
        """Stop switching (what is on stays on until revert_faults)."""
        thread, self._thread = getattr(self, "_thread", None), None
        if thread is not None:
            self._stop.set()
            # A switch in flight ends before anything is reverted: a signal that cut this wait
            # short let the revert race it, and what it applied stayed on. A signal is held
            # until the thread is gone, then raised. (A thread that never started has
            # nothing to wait for: with the stop set, it switches nothing.)
            seen = len(received)
            with signals_held():
                if thread.ident is not None:
                    thread.join()
            if len(received) > seen:
                raise _exception(received[seen])
        if getattr(self, "_thaw_gc", False):
            self._thaw_gc = False
            gc.unfreeze()

    def during(self) -> bool:
        """Switch faults (now, or on their schedule in a thread) while the probes run."""
        try:
            self.faults_on()
            ok = self.probe_phase("during", self.scenario.expect.during, announce=False)
            self.wait_windows()
        finally:
            self.stop_schedule()
        self.check_schedule()
        return ok

    def _scheduler(self, switches, start: float, stop: threading.Event,
                   due_now: threading.Event) -> None:
        """Switch on schedule; ``due_now`` is set once the steps due at 0s are done."""
        _wake_on_time()
        steps = sorted(((t, on, i) for i, sw in enumerate(switches)
                        for t, on in _take_until(switch_steps(sw.fault.window, sw.fault.flap), 3600)),
                       key=lambda s: (s[0], s[1]))
        ends = [finite_end(sw.fault.window, sw.fault.flap) for sw in switches]
        last = max((e for e in ends if e is not None), default=0.0)
        try:
            for t, on, i in steps:
                if t > last:
                    self._windows_closed.set()
                if t > 0:
                    due_now.set()
                if stop.wait(max(0.0, start + t - time.monotonic())):
                    return
                try:
                    self.switch(switches[i], on, scheduled=start + t - self.t0)
                except Exception as exc:  # the main thread raises it
                    self.schedule_error.append(str(exc))
                    return
        finally:
            due_now.set()
            self._windows_closed.set()

    def revert_faults(self) -> list[RevertFailure]:
        """Revert every applied fault, last first; one that fails does not stop the others
        and is reported as stuck (still on), not off."""
        failures = []
        for sw in reversed(self.switches):
            if sw.applied:
                failed = sw.revert(self.live.opened)
                failures += failed
                label = sw.fault.label()
                if failed:
                    self.event(kind="fault", fault=label, state="stuck",
                               error="; ".join(map(str, failed)))
                    self.reporter.fault_stuck(label, self.now())
                else:
                    self.event(kind="fault", fault=label, state="off")
                    self.reporter.fault(label, False, self.now())
        return failures


class FaultError(Exception):
    pass


def _wake_on_time() -> None:
    """Run the calling (scheduler) thread under SCHED_FIFO, so a switch due while both cores
    are busy starts on time instead of queueing behind them (docs/benchmarks.md, "Schedule").
    RESET_ON_FORK: nothing it starts (iptables, a fault proxy)
    inherits the priority. Without CAP_SYS_NICE it stays as it was."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    except (AttributeError, OSError):
        pass


def _take_until(steps, horizon: float):
    for t, on in steps:
        if t > horizon:
            return
        yield t, on


def _probe_label(probe) -> str:
    from chaos.probes.run import describe

    return describe(probe)


def dry_run(scenario, file: str, options: RunOptions, echo) -> ExitStatus:
    """Plan one scenario and ``echo`` what its run would apply (the iptables batches of
    packet filters in full); nothing on the machine changes, no journal is written."""
    run = Run(scenario, file, options, Reporter())
    try:
        run.plan()
    except PlanError as exc:
        from chaos.scenario.source import plan_problems

        for problem in plan_problems(scenario, exc):
            echo(str(problem))
        return ExitStatus.INVALID
    echo(f"{scenario.name} {file} · dry run {run.run_id}: nothing applied")
    for line in run.live.startup():
        echo(f"  start: {line}")
    for line in run.live.mode.describe(run.run_id):
        echo(f"  {line}")
    for index, switch in enumerate(run.switches):
        echo(f"  faults[{index}] {switch.fault.label()}")
        for injector in switch.injectors:
            echo(f"    {injector.describe()}")
            batches = injector.render() if hasattr(injector, "render") else {}
            for family, text in batches.items():
                echo(f"      # {family}\n" + "".join(f"      {line}\n" for line in text.splitlines()).rstrip("\n"))
    return ExitStatus.OK


def not_started(scenario, file: str, exit_code: ExitStatus, reason: str) -> ScenarioResult:
    """The result of a scenario a signal kept from starting (an earlier one was stopped):
    status `not-run`, every probe skipped with ``reason``, for the reports."""
    run = Run(scenario, file, RunOptions(), Reporter())
    result = run.result
    result.run_id, result.status, result.exit_code = "", "not-run", exit_code
    result.errors.append(reason)
    run.record_not_run()
    return result


def refused_file(file: str, problems: list) -> ScenarioResult:
    """The result of a file the loader refused, for the reports: nothing of it ran."""
    from pathlib import Path

    result = ScenarioResult(Path(file).stem, file, status="invalid", exit_code=ExitStatus.INVALID)
    result.errors = [str(p) for p in problems]
    return result


def run_scenario(scenario, file: str = "<scenario>", options: RunOptions | None = None,
                 reporter: Reporter | None = None) -> ScenarioResult:
    """Run one validated scenario; always reverts; never raises for a failed run."""
    options, reporter = options or RunOptions(), reporter or Reporter()
    received.clear()
    run = Run(scenario, file, options, reporter)
    result = run.result
    reporter.scenario_start(scenario, file, run.run_id)
    try:
        run.plan()
    except PlanError as exc:
        from chaos.scenario.source import plan_problems

        result.status, result.exit_code = "invalid", ExitStatus.INVALID
        result.errors += [str(p) for p in plan_problems(scenario, exc)]
        run.record_not_run()
        reporter.scenario_done(result)
        return result
    try:
        with signals_raise():
            run.open()
            _phases(run)
    except (KeyboardInterrupt, Interrupted):
        pass  # reported below, once everything is reverted
    except FaultError as exc:
        result.status, result.exit_code = "injection-error", ExitStatus.INJECTION
        result.errors.append(str(exc))
    except Exception as exc:  # reported; the finally below still reverts
        result.status, result.exit_code = "injection-error", ExitStatus.INJECTION
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        with signals_held():
            failures = run.live.close()
            if received:
                term = received[0] == signal.SIGTERM
                result.status = "interrupted"
                result.exit_code = ExitStatus.TERMINATED if term else ExitStatus.INTERRUPTED
                result.errors.append(("terminated (SIGTERM)" if term else "interrupted (SIGINT)")
                                     + ": reverted everything")
            if failures:
                result.status, result.exit_code = "injection-error", ExitStatus.INJECTION
                result.left_behind = [str(f) for f in failures]
                result.errors.append("could not revert everything; `chaos recover` retries: "
                                     + "; ".join(result.left_behind))
    result.duration = run.now()
    run.record_not_run()
    reporter.scenario_done(result)
    return result


def _phases(run: Run) -> None:
    result, expect = run.result, run.scenario.expect
    if not run.probe_phase("before", expect.before):
        result.status, result.exit_code = "failed", ExitStatus.EXPECTATION
        result.errors.append("the steady state did not hold before any fault: nothing injected")
        return
    during_ok = run.during()
    with signals_held():
        failures = run.revert_faults()
    raise_pending()  # told to stop while reverting: stop now, before the after probes
    if failures:
        raise FaultError("could not revert: " + "; ".join(map(str, failures)))
    after_ok = run.probe_phase("after", expect.after)
    if not (during_ok and after_ok):
        result.status, result.exit_code = "failed", ExitStatus.EXPECTATION


def _lab_options(lab, options: RunOptions):
    """The scenario's lab with the run's --cache and (for dockerd) --client-version applied."""
    dockerd_version = options.client_version if options.client == "dockerd" else None
    update = {k: v for k, v in (("cache", options.cache), ("client_version", dockerd_version)) if v}
    return lab.model_copy(update=update) if update else lab


def _pullers(options: RunOptions) -> dict[str, str]:
    """The lab's other pulling clients' versions: --client-version of a --client not dockerd."""
    if options.client == "dockerd" or not options.client_version:
        return {}
    return {options.client: options.client_version}
