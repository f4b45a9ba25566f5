"""Reliability campaigns, CI-sized: runs killed at random moments then recovered, runs
stopped by SIGINT / SIGTERM, four runs at once, and host mode killed and recovered.

The long versions (100 crashes, the lab included, 10,000 fuzz cases) are
benchmarks/crash_campaign.py; docs/reliability.md has the figures. The scenario mix,
the stop machinery and the residue checks are in tests/campaign.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

import campaign as c
from chaos.journal import Journal, unfinished

SEED = int(os.environ.get("CHAOS_CAMPAIGN_SEED", "2024"))
CRASH_RUNS = 15
SIGNAL_RUNS = 12
HOST_CRASH_RUNS = 6


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("campaign")


@pytest.fixture(scope="module")
def calibrated(workdir):
    """Item -> its uninterrupted run (exit code, duration, records per moment), run once."""
    cache: dict[str, c.Calibration] = {}

    def get(item: c.Item) -> c.Calibration:
        if item.name not in cache:
            cache[item.name] = c.calibrate(item, workdir)
            assert cache[item.name].code == 0, f"{item.name} does not pass uninterrupted"
        return cache[item.name]

    return get


def ci_items() -> list[c.Item]:
    """The campaign's own scenarios, plus each shipped one that brings a fault type they
    lack (so a new type with its shipped scenario is crash-tested in CI at once)."""
    items = list(c.SANDBOX)
    for item in c.shipped():
        if item.fault_types - set().union(*(i.fault_types for i in items)):
            items.append(item)
    return items


def test_every_fault_type_is_in_the_campaign_mix():
    missing = c.uncovered(c.mix())
    assert not missing, (f"fault types without a scenario in the crash campaign: {sorted(missing)}; "
                         "ship a scenario using them (or add an Item to tests/campaign.py SANDBOX)")
    assert not c.uncovered(ci_items())


def _plans_in_host_mode(fault: dict) -> bool:
    """Whether `chaos run --host` would plan this fault (planning changes nothing)."""
    from chaos.errors import PlanError
    from chaos.faults import fault_class
    from chaos.plan import PlanContext

    names = set(re.findall(r"[a-z0-9.-]+\.(?:test|invalid)\b", yaml.safe_dump(fault)))
    ctx = PlanContext("chaos-0hostcheck", True, {"host": (None, Path("/etc/hosts"))},
                      zone={n: "198.19.255.30" for n in names}, path=("faults", 0))
    try:
        fault_class(fault["type"]).model_validate(fault).injectors(ctx)
    except PlanError as exc:
        assert "--host" in str(exc), f"{fault['type']}: refused for another reason: {exc}"
        return False
    return True


def test_host_campaign_has_every_fault_type_host_mode_runs():
    """A fault type that plans with --host must be in the host crash campaign (c.HOST)."""
    examples = {}
    for item in c.mix():
        for fault in yaml.safe_load(item.text)["faults"]:
            examples.setdefault(fault["type"], fault)
    accepted = {t for t, fault in examples.items() if _plans_in_host_mode(fault)}
    assert accepted == c.HOST_TYPES
    assert set().union(*(i.fault_types for i in c.HOST)) == c.HOST_TYPES


def test_crash_campaign(workdir, calibrated):
    """SIGKILL (the runner or its whole process group) in setup, inject, probes, revert,
    teardown or at a random time; `chaos recover`; nothing left, every time."""
    rng, items = random.Random(SEED), ci_items()
    before = c.machine()
    results = []
    for k in range(CRASH_RUNS):
        item = items[k % len(items)]
        stop = c.random_stop(rng, calibrated(item), signal.SIGKILL, at=c.MOMENTS[k % len(c.MOMENTS)])
        results.append(c.crash_and_recover(item, stop, workdir, before))
    bad = [f"{r.outcome.item.name}: {r.outcome.stop} -> {r.outcome.moment}: {r.residue}\n"
           f"{r.recover.stdout[-500:]}" for r in results if r.residue]
    assert not bad, "\n".join(bad)
    landed = Counter(r.outcome.moment for r in results)
    # The campaign must really interrupt runs, in more than one kind of step.
    assert sum(n for m, n in landed.items() if m != "finished") >= CRASH_RUNS - 5, landed
    assert len({"setup", "inject", "probes", "revert", "teardown"} & set(landed)) >= 3, landed


def test_lab_crash_campaign(workdir):
    """The registry lab (upstream, token server, CDN, cache, containerd, dockerd) SIGKILLed
    once in setup, when every lab process is started and the seed images are being pushed,
    and once in the probes; `chaos recover` leaves nothing: processes, namespaces,
    /run/chaos-*, mounts, the machine's tables. About 30 s; the long campaign kills the
    shipped lab scenario at random moments."""
    item = c.Item("lab", c.LAB_CI, lab=True)
    clean = c.run_and_stop(item, c.Stop("none"), workdir, timeout=180)
    assert clean.code == 0, clean.output
    setup = [r for r, where in c._walk(clean.records) if where == "setup"]
    seeding = next(i for i, r in enumerate(setup) if r.get("op") == "do" and "skopeo copy" in r.get("what", ""))
    before = c.machine()
    results = [c.crash_and_recover(item, stop, workdir, before)
               for stop in (c.Stop("setup", seeding + 1), c.Stop("probes", 1))]
    bad = [f"{r.outcome.stop} -> {r.outcome.moment}: {r.residue}\n{r.recover.stdout[-500:]}"
           for r in results if r.residue]
    assert not bad, "\n".join(bad)
    assert [r.outcome.moment for r in results] == ["setup", "probes"]
    started = " ".join(r.get("what", "") for r in results[0].outcome.records if r.get("kind") == "process")
    for name in ("containerd", "dockerd", "upstream registry", "cache registry", "auth", "cdn"):
        assert f"lab {name}" in started, f"killed before the lab's {name} was started"


def test_lab_steps_crash(workdir):
    """A run whose steps change the lab, SIGKILLed while the restarted cache is coming up
    and while a push runs (its skopeo in the hub namespace); `chaos recover` leaves nothing:
    the restarted cache, skopeo, every lab process, namespace and table."""
    item = c.Item("lab-steps", c.LAB_STEPS, lab=True)
    clean = c.run_and_stop(item, c.Stop("none"), workdir, timeout=180)
    assert clean.code == 0, clean.output
    probes = [r for r, where in c._walk(clean.records) if where == "probes"]

    def index(text: str) -> int:
        return next(i for i, r in enumerate(probes) if r.get("op") == "do" and text in r.get("what", ""))

    restarted, pushing = index("lab cache (restarted)"), index("skopeo copy")
    assert restarted < pushing
    before = c.machine()
    results = [c.crash_and_recover(item, c.Stop("probes", n + 1), workdir, before)
               for n in (restarted, pushing)]
    bad = [f"{r.outcome.stop} -> {r.outcome.moment}: {r.residue}\n{r.recover.stdout[-500:]}"
           for r in results if r.residue]
    assert not bad, "\n".join(bad)
    for result, what in zip(results, ("lab cache (restarted)", "skopeo copy"), strict=True):
        started = [r.get("what", "") for r in result.outcome.records if r.get("op") == "do"]
        assert any(what in w for w in started), f"killed before {what} started"
        assert result.outcome.moment == "probes"


def test_signal_campaign(workdir, calibrated):
    """SIGINT / SIGTERM at random moments: the run reverts by itself (no recover), exits 130
    / 143, or with its own code when it had finished."""
    rng, items = random.Random(SEED + 1), ci_items()
    before = c.machine()
    problems = []
    for k in range(SIGNAL_RUNS):
        item = items[k % len(items)]
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        own = calibrated(item).code
        stop = c.random_stop(rng, calibrated(item), sig, at=c.MOMENTS[(k // 2) % len(c.MOMENTS)])
        out = c.run_and_stop(item, stop, workdir)
        what = f"{item.name}: {stop} -> {out.moment}, exit {out.code}"
        left = c.leftovers(out.run_ids, out.state_dir, out.pids, out.marker) + c.machine_diff(before, c.machine())
        if left:
            problems.append(f"{what}: left {left}")
            c.recover(out.state_dir)
            before = c.machine()
        if out.code not in c.expected_codes(out, own):
            problems.append(f"{what}: unexpected exit code")
        elif c.our_traceback(out.output):
            problems.append(f"{what}: traceback\n{out.output[-1500:]}")
    assert not problems, "\n".join(problems)


# The runner's signal handling where the campaign found bugs (R1, R3 in docs/reliability.md, fixed).
SLOW_REVERT = """\
name: slow-revert
description: a hundred route faults, so their revert takes long enough to be interrupted
faults:
{routes}
expect:
  after:
    - run: touch {marker}
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_revert_stops_the_run_once_reverted(workdir, sig):
    marker = workdir / f"after-ran-{sig}"
    # One fault each: a fault's routes are one journal record, undone in one batch.
    routes = "\n".join(f"  - {{type: route-blackhole, destinations: [198.18.2.{i}/32]}}"
                        for i in range(100))
    item = c.Item("slow-revert", SLOW_REVERT.format(routes=routes, marker=marker))
    out = c.run_and_stop(item, c.Stop("revert", 1, sig), workdir)
    assert c.leftovers(out.run_ids, out.state_dir, out.pids, out.marker) == []
    assert out.moment == "revert"
    assert not marker.exists(), "the after probes ran although the run was told to stop"
    assert out.code == 128 + sig


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_after_the_run_finished_keeps_its_exit_code(workdir, sig):
    path = workdir / "finished.yaml"
    item = next(i for i in c.shipped() if i.name == "dockerhub-hosts-entry")
    path.write_text(item.text)
    report = workdir / f"finished-{sig}.json"
    state = Path(tempfile.mkdtemp(dir=workdir))
    proc = subprocess.Popen(c.chaos_argv("run", str(path), "--json", str(report)), cwd=c.ROOT,
                            env=c.chaos_env(state), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for line in proc.stdout:  # the summary line: everything reverted, the run is over
        if b"probes passed in" in line:
            proc.send_signal(sig)
            break
    proc.stdout.read()
    assert proc.wait(timeout=60) == 0
    assert json.loads(report.read_text())["passed"] is True


def test_a_signal_while_the_schedule_stops_waits_for_the_switch_in_flight():
    """The intermittent "left state runs/chaos-..." of test_signal_campaign (a flapping
    http rule, SIGTERM right after a switch began): the signal cut short the wait for the
    scheduler thread, the revert ran while the switch still applied its rule, and the entry
    it journaled stayed pending. Now the signal is raised once the switch is done."""
    from types import SimpleNamespace

    from chaos.errors import Interrupted
    from chaos.runner import Reporter, Run, RunOptions, received, signals_raise

    fault = SimpleNamespace(window=None, flap=SimpleNamespace(period=0.4, duty=0.5),
                            label=lambda: "flapping")
    run = Run(SimpleNamespace(name="flap", lab=None), "flap.yaml", RunOptions(), Reporter())
    run.switches = [SimpleNamespace(fault=fault, injectors=[])]
    in_flight, switched = [], []

    def slow_switch(sw, on, scheduled=None):
        if not on:  # the switch off at 0.2 s takes 0.5 s
            in_flight.append(time.monotonic())
            time.sleep(0.5)
        switched.append(on)

    run.switch = slow_switch
    try:
        with signals_raise():
            run.faults_on()
            deadline = time.monotonic() + 5
            while not in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
            assert in_flight, "the scheduler never switched off"
            timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM))
            timer.start()
            with pytest.raises(Interrupted):
                run.stop_schedule()
            timer.join()
        assert switched == [True, False], "stop_schedule returned with a switch in flight"
    finally:
        received.clear()


# -- four runs at once ------------------------------------------------------------------------
PARALLEL = """\
name: parallel-{me}
description: >
  Four sandboxes serve the same names on the same addresses; each run faults its own name
  in its own way while the other three fault theirs. Barriers keep all four faults on
  while every run checks that it sees only its own.
serve:
{serve}
faults:
{fault}
expect:
  before:
    - http: http://{me}.test/
      body: {{contains: "run {me} {me}.test"}}
  during:
    - name: all four runs are in their during phase
      run: {barrier1}
      within: 40s
    - name: its own fault is on
      run: curl -sS --noproxy '*' -m 2 http://{me}.test/
      exit: {code}
{others}
    - name: every run has checked
      run: {barrier2}
      within: 40s
  after:
    - http: http://{me}.test/
      body: {{contains: "run {me} {me}.test"}}
"""

FAULTS = {
    "a": ("  - type: hosts-entry\n    names: [a.test]\n    address: 127.0.0.1", 7),
    "b": ("  - type: route-blackhole\n    destinations: [b.test]\n    kind: unreachable", 7),
    "c": ("  - type: packet-filter\n    destinations: [c.test]\n    action: reject-reset", 7),
    "d": ("  - type: dns\n    names: [d.test]\n    answer: nxdomain", 6),
}


def _barrier(folder: Path, step: int, me: str) -> str:
    return (f"\"touch {folder}/{step}-{me}; for i in $(seq 1 350); do "
            f"[ $(ls {folder} | grep -c '^{step}-') -ge 4 ] && exit 0; sleep 0.1; done; exit 1\"")


def parallel_scenario(me: str, folder: Path) -> str:
    serve = "\n".join(f"  - name: {n}.test\n    address: 198.18.1.{10 + i}\n"
                      f"    http: {{body: \"run {me} {n}.test\\n\"}}" for i, n in enumerate(FAULTS))
    others = "\n".join(f"    - name: {n}.test answers from this sandbox (run {n}'s fault is not here)\n"
                       f"      http: http://{n}.test/\n      body: {{contains: \"run {me} {n}.test\"}}"
                       for n in FAULTS if n != me)
    fault, code = FAULTS[me]
    return PARALLEL.format(me=me, serve=serve, fault=fault, code=code, others=others,
                           barrier1=_barrier(folder, 1, me), barrier2=_barrier(folder, 2, me))


def test_four_runs_at_once_do_not_see_each_others_faults(tmp_path):
    folder = tmp_path / "barrier"
    folder.mkdir()
    state = tmp_path / "state"  # one state dir: four journals side by side
    before = c.machine()
    procs = {}
    for me in FAULTS:
        path = tmp_path / f"{me}.yaml"
        path.write_text(parallel_scenario(me, folder))
        procs[me] = subprocess.Popen(c.chaos_argv("run", str(path)), cwd=c.ROOT,
                                     env=c.chaos_env(state, f"parallel-{me}"),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
    outputs = {me: p.communicate(timeout=120)[0] for me, p in procs.items()}
    run_ids = {line.split("run ")[-1].strip() for out in outputs.values()
               for line in out.splitlines() if " · run chaos-" in line}
    for me, proc in procs.items():
        assert proc.returncode == 0, f"run {me}:\n{outputs[me]}"
    assert len(run_ids) == 4
    assert sorted(p.name for p in folder.iterdir()) == [f"{s}-{m}" for s in (1, 2) for m in FAULTS]
    left = c.leftovers(run_ids, state)
    for me in FAULTS:
        left += c.marked_processes(f"parallel-{me}")
    assert left == []
    assert c.machine_diff(before, c.machine()) == []


# -- host mode ----------------------------------------------------------------------------------
USER_LINE = b"198.19.255.254 registry.chaos-campaign.invalid kept.chaos-campaign.invalid\n"


@pytest.fixture
def users_hosts_line():
    """A line of the user's own naming a host the campaign redirects: the run disables it in
    place and must give it back byte for byte. The file is restored whatever happens."""
    hosts = Path("/etc/hosts")
    original = hosts.read_bytes()
    with open(hosts, "ab") as f:
        f.write(USER_LINE)
    try:
        yield original + USER_LINE
    finally:
        with open(hosts, "r+b") as f:  # in place, as /etc/hosts may be a bind mount
            f.write(original)
            f.truncate()


def test_host_mode_crash_campaign(workdir, calibrated, users_hosts_line):
    """`chaos run --host` killed at random moments, then `chaos recover`: /etc/hosts (with a
    user's line naming a redirected host) and every routing table come back byte for byte.
    Only .invalid names and routes to 198.19.255.0/24 are used; no probe sends a packet."""
    rng, (item,) = random.Random(SEED + 2), c.HOST
    before = c.machine()
    assert before["hosts"] == users_hosts_line
    results = []
    for k in range(HOST_CRASH_RUNS):
        at = ("inject", "probes", "revert", "time")[k % 4]
        results.append(c.crash_and_recover(item, c.random_stop(rng, calibrated(item), signal.SIGKILL, at),
                                           workdir, before))
    bad = [f"{r.outcome.stop} -> {r.outcome.moment}: {r.residue}" for r in results if r.residue]
    assert not bad, "\n".join(bad)
    assert Path("/etc/hosts").read_bytes() == users_hosts_line
    assert any(r.outcome.moment in ("inject", "probes", "revert") for r in results)


RECOVER_LOOP_STARTS = 24
LOOP_LANES = [c.HOST, [c.SANDBOX[1], c.SANDBOX[0]]]
"""Host mode in one lane, two sandbox scenarios in turn in the other, both at once."""


def test_recover_in_a_loop_beside_starting_runs(workdir, calibrated):
    """`chaos recover` in a loop on the state dir where runs (host mode included) start one
    after another: no recover may undo or remove anything of a live run, and every run
    ends as its uninterrupted run did, leaving nothing (issue #22: recover took a run whose
    journal was still empty for dead). The long version: benchmarks/crash_campaign.py
    --only recover-loop (200 starts)."""
    expected = {item.name: calibrated(item).code for lane in LOOP_LANES for item in lane}
    before = c.machine()
    result = c.recover_beside_starts(LOOP_LANES, RECOVER_LOOP_STARTS, workdir, expected)
    assert result.starts == RECOVER_LOOP_STARTS
    if c.hold_begin():  # strace is there (scripts/setup installs it)
        assert result.delayed >= RECOVER_LOOP_STARTS // 4 - 1, "the held starts did not happen"
    assert result.recovers >= RECOVER_LOOP_STARTS // 2, "the recover loop hardly ran"
    assert not result.harmed, "\n".join(result.harmed)
    assert not c.machine_diff(before, c.machine())


# -- bugs the campaign found in the journal and the hosts file (fixed; fail without the fix) ----
def test_recover_removes_the_folder_of_a_run_killed_while_removing_it(tmp_path):
    # A SIGKILL after the journal's "end" line, while the run removed its folder, left the
    # folder for good: recover looked only at unfinished journals.
    state = tmp_path / "state"
    journal = Journal.create("chaos-0ended", state)
    (journal.run_dir / "server.log").write_text("a log the run was about to remove\n")
    journal._append({"op": "end", "time": time.time()})
    journal._file.close()
    kept = Journal.create("chaos-0kept", state)
    kept.finish(keep=True)  # asked to keep its folder: recover leaves it
    result = c.recover(state)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chaos-0ended: removed the folder" in result.stdout
    assert sorted(p.name for p in (state / "runs").iterdir()) == ["chaos-0kept"]


def test_listing_unfinished_runs_while_runs_end(tmp_path):
    # `chaos recover` next to live runs: a journal removed between listing and reading it
    # made recover crash with FileNotFoundError.
    state = tmp_path / "state"
    stop = time.monotonic() + 1.5

    def churn(tag: str) -> None:
        i = 0
        while time.monotonic() < stop:
            j = Journal.create(f"chaos-{tag}{i}", state)
            j.note(kind="phase", phase="before")
            j.finish()
            i += 1

    import threading

    threads = [threading.Thread(target=churn, args=(t,)) for t in ("x", "y")]
    for t in threads:
        t.start()
    errors = []
    while time.monotonic() < stop:
        try:
            unfinished(state)
        except Exception as exc:  # the bug
            errors.append(repr(exc))
    for t in threads:
        t.join()
    assert errors == []


def test_recover_after_a_torn_line_keeps_what_it_undid(tmp_path):
    # A crash mid-write leaves a torn last line; recover appended its "undone" records right
    # after it (on the same line) and the reader stopped there, so a second recover found
    # them pending again and undid them twice.
    state = tmp_path / "state"
    run_dir = state / "runs" / "chaos-0torn"
    run_dir.mkdir(parents=True)
    removable = tmp_path / "chaos-0torn-dir"
    removable.mkdir()
    lines = [{"op": "begin", "run": "chaos-0torn", "pid": 1, "pid_start": 0, "time": 0},
             # a path a run never creates: its undo refuses, so the first recover fails (3)
             {"op": "do", "seq": 1, "kind": "path", "undo": {"path": "/nonexistent/refused"}},
             {"op": "do", "seq": 2, "kind": "path", "undo": {"path": str(removable)}}]
    text = "".join(json.dumps(rec) + "\n" for rec in lines) + '{"op": "do", "seq": 3, "ki'
    (run_dir / "journal.jsonl").write_text(text)
    assert c.recover(state).returncode == 3
    assert not removable.exists()
    journal = Journal.read(run_dir / "journal.jsonl")
    assert [e.seq for e in journal.pending()] == [1], "the undone record of seq 2 was lost"


_HOSTS_CHILD = r"""
import sys
from chaos.injectors.hosts_file import HostsBlock
from chaos.journal import Journal
j = Journal.create("chaos-0big", sys.argv[2])
block = HostsBlock(sys.argv[1], [("127.0.0.1", "h7.chaos-test.invalid")], "chaos-0big")
block.apply(j)
if sys.argv[3] == "revert":
    print("applied", flush=True)
    sys.stdin.readline()
    block.revert(j)
"""


@pytest.mark.parametrize("during", ["apply", "revert"])
def test_hosts_file_killed_mid_write_is_restored_by_recover(tmp_path, during):
    # A large hosts file (block lists run to megabytes) is written in place; a SIGKILL in the
    # middle of that write left new bytes over old ones, and recover left the file mangled.
    path = tmp_path / "hosts"
    original = b"".join(b"198.18.5.%d\th%d.chaos-test.invalid\n" % (i % 250, i) for i in range(600_000))
    for attempt in range(3):
        path.write_bytes(original)
        state = tmp_path / f"state{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", _HOSTS_CHILD, str(path), str(state), during],
                                cwd=c.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        if during == "revert":
            assert proc.stdout.readline() == b"applied\n"
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        wanted = b"# >>>" if during == "apply" else original[:5]
        while proc.poll() is None:  # the write has begun: the file's first bytes changed
            with open(path, "rb") as f:
                if f.read(5) == wanted:
                    break
        proc.kill()
        proc.wait()
        result = c.recover(state)
        assert result.returncode == 0, result.stdout + result.stderr
        assert path.read_bytes() == original, f"attempt {attempt}: the file was not restored"


def _hosts_worker(path: str, tag: str, rounds: int, state: str, queue) -> None:
    from chaos.injectors.hosts_file import HostsBlock

    missing = 0
    for i in range(rounds):
        journal = Journal.create(f"chaos-{tag}{i}", state)
        block = HostsBlock(path, [("198.18.0.9", f"{tag}.chaos-test.invalid")], f"chaos-{tag}")
        block.apply(journal)
        missing += f"{tag}.chaos-test.invalid".encode() not in Path(path).read_bytes()
        block.revert(journal)
        journal.finish()
    queue.put(missing)


def test_hosts_file_edited_by_four_runs_at_once(tmp_path):
    # Two host-mode runs (two CI jobs on one machine) read, change and write /etc/hosts: without
    # a lock a block went missing while its fault was on, and the file did not come back.
    path = tmp_path / "hosts"
    original = b"127.0.0.1\tlocalhost\n" + b"".join(
        b"198.18.5.%d\th%d.chaos-test.invalid\n" % (i, i) for i in range(60))
    path.write_bytes(original)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_hosts_worker, args=(str(path), f"w{k}", 80, str(tmp_path / f"s{k}"), queue))
               for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * 4
    assert sum(queue.get() for _ in workers) == 0, "a run's block vanished while its fault was on"
    assert path.read_bytes() == original


_ROUTE_CHILD = r"""
import os, signal, sys
from chaos.injectors.routes import RouteInjector
from chaos.journal import Journal
journal = Journal.create("chaos-0route", sys.argv[2])
journal.forget = lambda entry: os.kill(os.getpid(), signal.SIGKILL)  # a crash right there
try:
    RouteInjector(["198.19.255.1/32"], "unreachable", sys.argv[1]).apply(journal)
except RuntimeError as exc:
    print(exc)
"""


@pytest.fixture
def namespace():
    name = f"chaos-t{os.getpid():x}{random.randrange(16**4):04x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_a_route_of_the_users_survives_a_crash_at_the_refusal(tmp_path, namespace):
    # The route's undo was journaled before the add found the user's identical route
    # (EEXIST), and `forget` marked it afterwards: a crash in between left a record whose
    # undo, run by recover, deleted the user's route.
    subprocess.run(["ip", "-n", namespace, "route", "add", "unreachable", "198.19.255.1/32"], check=True)
    state = tmp_path / "state"
    child = subprocess.run([sys.executable, "-c", _ROUTE_CHILD, namespace, str(state)], cwd=c.ROOT,
                           capture_output=True, text=True, timeout=60)
    assert c.recover(state).returncode == 0
    shown = subprocess.run(["ip", "-n", namespace, "route", "show", "198.19.255.1/32"],
                           capture_output=True, text=True).stdout
    assert "unreachable 198.19.255.1" in shown, "recover deleted the user's route"
    assert child.returncode == 0 and "already exists" in child.stdout, child.stdout + child.stderr


def test_ctrl_c_during_startup_exits_130_without_traceback(tmp_path):
    """R4: SIGINT while Python imports the CLI (the first tens of milliseconds)."""
    env = {**os.environ, "CHAOS_STATE_DIR": str(tmp_path)}
    bad, landed, reached_us = [], 0, 0
    for k in range(16):
        proc = subprocess.Popen(c.chaos_argv("list"), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        time.sleep(0.005 * k)  # 0 to 75 ms: before, during and after the imports
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        landed += proc.returncode != 0
        reached_us += proc.returncode == 130
        startup = c.interpreter_startup_failure(out)  # CPython's, before our code runs
        if c.our_traceback(out) or proc.returncode not in (0, 130, -signal.SIGINT, *[1] * startup):
            bad.append(f"SIGINT after {5 * k} ms: exit {proc.returncode}\n{out[-800:]}")
    assert not bad, "\n".join(bad)
    assert landed >= 4, "no SIGINT landed before `chaos list` finished: the test proves nothing"
    assert reached_us >= 1, "every SIGINT landed in CPython's start-up: none tested our import guard"


SWALLOWED = """\
import os, signal, sys
from chaos import runner
from chaos.errors import Interrupted

# A SIGTERM that lands while Python runs an at-fork callback, where it ignores exceptions
# (R2's path: logging's _releaseLock after pyroute2 forks); the raise is swallowed, the
# record is not.
os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM))
with runner.signals_raise():
    try:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        runner.raise_pending()
    except Interrupted:
        print("stopped at the next step")
"""


def test_a_swallowed_signal_is_honoured_without_noise(tmp_path):
    script = tmp_path / "swallowed.py"
    script.write_text(SWALLOWED)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "stopped at the next step", proc.stdout + proc.stderr
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
