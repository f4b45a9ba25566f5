"""`chaos run -j`: reports in the given order, conflicting scenarios one at a time (and the
output says why), signals reaching every child run, a killed parent leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from junitparser import JUnitXml

from campaign import leftovers
from conftest import ROOT, chaos_cmd, write

SLEEPER = """\
name: {name}
description: a hosts entry on while the probe sleeps, then the time it ended
serve:
  - name: registry.test
faults:
  - type: hosts-entry
    names: [registry.test]
expect:
  during:
    - name: sleeps {sleep}s
      run: "sleep {sleep}; date +%s.%N > {stamp}"
      within: 60s
"""


def _sleeper(tmp_path: Path, name: str, sleep: float) -> Path:
    stamp = tmp_path / f"{name}.end"
    return write(tmp_path, SLEEPER.format(name=name, sleep=sleep, stamp=stamp), f"{name}.yaml")


def _journals(state_dir: Path) -> list[dict]:
    records = []
    for path in (state_dir / "runs").glob("*/journal.jsonl"):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return records


def _wait_faults_on(state_dir: Path, proc, count: int, timeout: float = 60) -> list[dict]:
    """Until ``count`` runs have their fault on and their sleeping probe started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (state_dir / "runs").is_dir():
            records = _journals(state_dir)
            on = sum(r.get("kind") == "fault" and r.get("state") == "on" for r in records)
            probing = sum(r.get("kind") == "process" and "sleep 30" in r.get("what", "")
                          for r in records)
            if on >= count and probing >= count:
                return records
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    raise AssertionError(f"{count} faults never came on")


def _start(state_dir: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    return subprocess.Popen(chaos_cmd("run", *args), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_reports_keep_the_given_order_when_a_later_scenario_ends_first(chaos, state_dir, tmp_path):
    slow, fast = _sleeper(tmp_path, "slow", 3), _sleeper(tmp_path, "fast", 0.2)
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    timeline = tmp_path / "timeline"
    result = chaos("run", "-j", "2", str(slow), str(fast), "--json", str(report), "--junit", str(junit),
                   "--timeline", str(timeline))
    assert result.returncode == 0, result.stdout + result.stderr
    ended = {name: float((tmp_path / f"{name}.end").read_text()) for name in ("slow", "fast")}
    # given second, ended first: the two ran side by side
    assert ended["fast"] < ended["slow"] - 1, "the later scenario should have ended first"
    doc = json.loads(report.read_text())
    assert [s["name"] for s in doc["scenarios"]] == ["slow", "fast"]
    assert [s.name for s in JUnitXml.fromfile(str(junit))] == ["slow", "fast"]
    assert sorted(p.name for p in timeline.iterdir()) == ["fast.svg", "slow.svg"]
    assert "sleeps 3s" in (timeline / "slow.svg").read_text()  # drawn from the child's events
    # console: each result whole, in the given order, no interleaving
    out = result.stdout
    assert out.index("slow ") < out.index("passed 1/1") < out.index("fast ") \
        < out.rindex("passed 1/1")
    assert not leftovers([s["run_id"] for s in doc["scenarios"]], state_dir)


HOST_ENTRY = """\
name: {name}
description: the same name on the machine's own /etc/hosts, another address each
faults:
  - type: hosts-entry
    names: [registry.chaos-jobs.invalid]
    address: {address}
expect:
  during:
    - name: only its own entry, all along
      run: >-
        date +%s.%N >> {spans};
        getent hosts registry.chaos-jobs.invalid | grep -qx '{address} *registry.chaos-jobs.invalid' &&
        sleep 1.5 &&
        getent hosts registry.chaos-jobs.invalid | grep -qx '{address} *registry.chaos-jobs.invalid';
        code=$?; date +%s.%N >> {spans}; exit $code
      exit: 0
"""


def test_host_mode_scenarios_run_one_at_a_time_and_say_why(chaos, state_dir, tmp_path):
    paths = []
    for name, address in (("one", "127.0.0.2"), ("two", "127.0.0.3")):
        spans = tmp_path / f"{name}.spans"
        paths.append(write(tmp_path, HOST_ENTRY.format(name=name, address=address, spans=spans),
                           f"{name}.yaml"))
    hosts_before = Path("/etc/hosts").read_bytes()
    result = chaos("run", "--host", "-j", "2", *map(str, paths), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"one at a time: {paths[0]}, {paths[1]}: the host: --host applies faults to this " \
           "machine itself" in result.stdout
    (a0, a1), (b0, b1) = ([float(t) for t in (tmp_path / f"{n}.spans").read_text().split()]
                          for n in ("one", "two"))
    assert a1 <= b0 or b1 <= a0, "the two host runs overlapped"
    assert Path("/etc/hosts").read_bytes() == hosts_before


CONTAINER = """\
name: {name}
description: a route cut inside a container
faults:
  - type: route-blackhole
    container: {container}
    destinations: [198.19.0.1/32]
expect:
  during:
    - run: "true"
"""


def test_scenarios_targeting_one_container_are_not_run_side_by_side(tmp_path):
    from chaos.jobs import Job, claims, serialised
    from chaos.runner import RunOptions
    from chaos.scenario.load import load

    def job(index: int, name: str, container: str) -> Job:
        path = write(tmp_path, CONTAINER.format(name=name, container=container), f"{name}.yaml")
        scenario = load(path)
        return Job(index, str(path), scenario, claims(scenario, RunOptions()))

    web, web_too, db = job(0, "a", "web"), job(1, "b", "web"), job(2, "c", "db")
    assert web.conflicts(web_too) and not web.conflicts(db) and not web_too.conflicts(db)
    assert serialised([web, web_too, db]) == [
        f"one at a time: {web.path}, {web_too.path}: container web (the local docker daemon): "
        "faults act in the container's own namespaces"]
    sandbox = _sleeper(tmp_path, "plain", 0)
    assert claims(load(sandbox), RunOptions()) == {}  # its own namespaces: shares nothing


def test_sigint_reaches_every_child_and_each_reverts(state_dir, tmp_path):
    paths = [_sleeper(tmp_path, f"s{i}", 30) for i in range(4)]
    report, junit = tmp_path / "r.json", tmp_path / "r.xml"
    proc = _start(state_dir, "-j", "3", *map(str, paths), "--json", str(report), "--junit", str(junit))
    try:
        records = _wait_faults_on(state_dir, proc, 3)
        run_ids = {r["run"] for r in records if r.get("op") == "begin"}
        assert len(run_ids) == 3
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    doc = json.loads(report.read_text())
    assert [s["name"] for s in doc["scenarios"]] == ["s0", "s1", "s2", "s3"]
    assert [s["status"] for s in doc["scenarios"]] == ["interrupted"] * 3 + ["not-run"]
    for scenario in doc["scenarios"][:3]:
        assert scenario["errors"] == ["interrupted (SIGINT): reverted everything"]
        assert scenario["probes"][0]["detail"]["cut_short"] is True  # stopped while faults were on
    assert doc["scenarios"][3]["errors"] == ["interrupted (SIGINT) before this scenario started"]
    assert [s.name for s in JUnitXml.fromfile(str(junit))] == ["s0", "s1", "s2", "s3"]
    assert not leftovers(run_ids, state_dir)


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_killed_parent_makes_every_child_revert(state_dir, tmp_path):
    paths = [_sleeper(tmp_path, f"k{i}", 30) for i in range(2)]
    proc = _start(state_dir, "-j", "2", *map(str, paths))
    records = _wait_faults_on(state_dir, proc, 2)
    run_ids = {r["run"] for r in records if r.get("op") == "begin"}
    owners = [(r["pid"], r["pid_start"]) for r in records if r.get("op") == "begin"]
    proc.kill()
    proc.wait()
    from chaos.journal import is_alive

    deadline = time.monotonic() + 60
    while any(is_alive(*owner) for owner in owners):  # told by the kernel (PDEATHSIG)
        assert time.monotonic() < deadline, "the child runs outlived their parent"
        time.sleep(0.1)
    assert not leftovers(run_ids, state_dir), "each child should have reverted by itself"


def test_jobs_must_be_a_count_or_auto(chaos, tmp_path):
    path = str(_sleeper(tmp_path, "one", 0))
    for bad in ("0", "two", "-3"):
        result = chaos("run", "-j", bad, path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "is not a number of runs (1 or more) or 'auto'" in result.stderr
        assert "Traceback" not in result.stderr


def test_auto_runs_two_per_cpu(chaos, state_dir, tmp_path):
    paths = [str(_sleeper(tmp_path, f"auto{i}", 0)) for i in range(2)]
    result = chaos("run", "-j", "auto", *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    cpus = len(os.sched_getaffinity(0))
    assert result.stdout.startswith(f"chaos run -j: 2 scenarios, up to {2 * cpus} at once\n")


def test_on_a_terminal_a_live_line_per_running_scenario(state_dir, tmp_path):
    import pty
    import re

    slow, fast = _sleeper(tmp_path, "slow", 2), _sleeper(tmp_path, "fast", 0.2)
    master, slave = pty.openpty()
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir), "COLUMNS": "200", "TERM": "xterm"}
    proc = subprocess.Popen(chaos_cmd("run", "-j", "2", str(slow), str(fast)), cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, data.decode(errors="replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode(errors="replace"))
    # live lines: both scenarios running, then fast ended and waiting for slow to be printed
    assert re.search(r"slow\s+\d+s", text) and re.search(r"fast\s+\d+s", text), text
    assert re.search(r"✓ fast\s+passed; shown once the scenarios before it end", text), text
    # the results, whole and in the given order, stay on the screen
    # (a printed line starts the line; a live line starts with its spinner)
    first, second = (re.search(rf"[\r\n]{name} {re.escape(str(path))} · run", text)
                     for name, path in (("slow", slow), ("fast", fast)))
    assert first and second, text
    first, second = first.start(), second.start()
    assert first < second
    assert "passed 1/1 probes passed" in text[first:second]


def test_baseline_written_and_compared_under_jobs(chaos, state_dir, tmp_path):
    failing = write(tmp_path, SLEEPER.format(name="weak", sleep=0, stamp=tmp_path / "w.end")
                    .replace('within: 60s', 'exit: 3'), "weak.yaml")  # a known weakness
    paths = [str(failing), str(_sleeper(tmp_path, "fine", 0))]
    baseline = tmp_path / "baseline.json"
    written = chaos("run", "-j", "2", *paths, "--write-baseline", str(baseline))
    assert written.returncode == 0, written.stdout + written.stderr
    assert list(json.loads(baseline.read_text())["scenarios"]) == ["weak", "fine"]
    compared = chaos("run", "-j", "2", *paths, "--baseline", str(baseline))
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "every verdict as recorded (1 recorded weakness(es)" in compared.stdout
    plain = chaos("run", "-j", "2", *paths)
    assert plain.returncode == 1  # without the baseline the weakness fails the run


STARTER = """\
name: {name}
description: says when its probe started, then sleeps
serve:
  - name: registry.test
expect:
  before:
    - run: "date +%s.%N > {stamp}; sleep {sleep}"
      within: 60s
"""


def test_the_longest_the_baseline_records_starts_first(chaos, state_dir, tmp_path):
    paths = [str(write(tmp_path, STARTER.format(name=name, sleep=sleep, stamp=tmp_path / f"{name}.start"),
                       f"{name}.yaml")) for name, sleep in (("a", 1), ("b", 1), ("long", 5))]
    baseline = tmp_path / "baseline.json"
    written = chaos("run", *paths, "--write-baseline", str(baseline))
    assert written.returncode == 0, written.stdout + written.stderr
    recorded = json.loads(baseline.read_text())["scenarios"]
    assert recorded["long"]["duration"] > recorded["a"]["duration"] + 2  # (4 s apart)
    result = chaos("run", "-j", "2", *paths, "--baseline", str(baseline), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 scenarios, up to 2 at once, the longest the baseline records first" in result.stdout
    started = {n: float((tmp_path / f"{n}.start").read_text()) for n in ("a", "b", "long")}
    assert started["long"] < started["b"], "the long one should not wait for a slot"
    doc = json.loads((tmp_path / "r.json").read_text())
    assert [s["name"] for s in doc["scenarios"]] == ["a", "b", "long"]  # reports: given order


def test_a_child_run_gets_the_options_that_shape_a_run():
    from chaos.jobs import child_argv
    from chaos.runner import RunOptions

    options = RunOptions(host_mode=True, state_dir="/tmp/s", variables={"mirror": "m.test"},
                         docker_host="unix:///d.sock", cache="nginx")
    argv = child_argv("x.yaml", 7, options, verbose=True)
    assert argv[1:] == ["-m", "chaos", "run", "x.yaml", "--json", "/dev/fd/7", "--host",
                        "--var", "mirror=m.test", "--docker-host", "unix:///d.sock",
                        "--cache", "nginx", "--state-dir", "/tmp/s", "-v"]
