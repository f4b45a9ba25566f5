"""The reliability campaigns' common parts (tests/test_campaign.py, benchmarks/crash_campaign.py).

- the scenario mix: a few scenarios written for the campaign (every fault at once, with
  schedules, and probes long enough to be interrupted) plus every shipped scenario, so a new
  fault type with its shipped scenario joins the campaign by itself;
- runs of the real CLI stopped at a chosen moment: after the k-th journal record of a kind
  (inside an inject, a probe, a revert, the teardown) or after a random delay;
- what a run may leave on the machine, global (iptables, routes in all tables, /etc/hosts)
  and per run (its namespaces, /etc/netns folders, mounts, processes, state).

Adding a scenario to the mix: append an ``Item`` to ``SANDBOX`` (or ``HOST``); a scenario
shipped in scenarios/ is taken in without any change here.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"
MARKER = "CHAOS_CAMPAIGN_RUN"
"""Environment variable set (to a fresh id) for each campaign run: every process the run
starts inherits it, so a survivor is found even when nothing else names it."""

# Journal kinds that are not faults: the sandbox, its servers, the probes' processes.
SCAFFOLD_KINDS = {"process", "netns", "path", "lab-netns", "lab-path"}


@dataclass(frozen=True)
class Item:
    """One scenario of the mix."""

    name: str
    text: str
    host: bool = False
    lab: bool = False

    @property
    def fault_types(self) -> set[str]:
        doc = yaml.safe_load(self.text)
        return {f.get("type") for f in doc.get("faults") or [] if isinstance(f, dict)}


ALL_FAULTS = """\
name: campaign-all-faults
description: >
  Every packet, route, hosts-file and DNS fault at once in one sandbox, two of them on a
  schedule (a window and a flap) so faults are applied and reverted while probes run; the
  last probe sleeps so a stop can land in the middle of a probe.
seed: 1
regions:
  ES: 198.18.64.0/24
  win: {range: 198.18.67.0/24, os: windows}
serve:
  - name: registry.test
  - name: cdn.test
  - name: other.test
  - name: mirror.test
hosts:
  gone.test: 198.18.1.99
faults:
  - type: hosts-entry
    names: [registry.test]
  - type: route-blackhole
    destinations: [other.test]
    kind: unreachable
  - type: packet-filter
    destinations: [mirror.test]
    action: reject-reset
    flap: {period: 0.4s, duty: 0.5}
  - type: geo-block
    region: ES
    block: [cdn.test]
  - type: bot-mitigation
    signature: {ttl: 128}
    destinations: [cdn.test]
  - type: dns
    names: [gone.test]
    answer: nxdomain
  - type: hosts-entry
    names: [cdn.test]
    address: 198.18.1.98
    region: win
    window: {after: 0.2s, for: 0.5s}
expect:
  before:
    - http: http://registry.test/
    - {http: "http://cdn.test/", region: ES}
  during:
    - name: registry redirected to loopback
      run: curl -sS --noproxy '*' -m 2 http://registry.test/
      exit: 7
    - name: other.test unreachable
      tcp: other.test:80
      connect: unreachable
    - name: gone.test is NXDOMAIN
      run: getent hosts gone.test
      exit: 2
    - name: a probe long enough to be interrupted
      run: sleep 1.5
  after:
    - http: http://registry.test/
    - http: http://other.test/
    - {http: "http://cdn.test/", region: ES}
"""

ROUTES_FLAP = """\
name: campaign-routes-flap
description: routes and hosts entries switched on and off many times while a probe runs
serve:
  - name: registry.test
  - name: mirror.test
faults:
  - type: route-blackhole
    destinations: [198.18.1.200/32, 198.18.1.201/32, 198.18.1.202/32]
    kind: blackhole
    flap: {period: 0.2s, duty: 0.5}
  - type: hosts-entry
    names: [registry.test, mirror.test]
    address: 198.18.1.250
    flap: {period: 0.3s, duty: 0.5}
  - type: packet-filter
    destinations: [198.18.1.203]
    ports: [80, 443]
    action: drop
    window: {after: 0.1s, for: 1s}
expect:
  during:
    - run: sleep 1.2
  after:
    - http: http://registry.test/
"""

TCP_FAULTS = """\
name: campaign-tcp-faults
description: every TCP-proxy fault at once, each on its own server, one of them flapping
serve:
  - name: hang.test
  - name: slow.test
  - name: reset.test
  - name: garbage.test
  - name: discard.test
faults:
  - type: hang
    destinations: [hang.test]
    ports: [80]
  - type: slow
    destinations: [slow.test]
    ports: [80]
    latency: 50ms
  - type: reset
    destinations: [reset.test]
    ports: [80]
    flap: {period: 0.4s, duty: 0.5}
  - type: garbage
    destinations: [garbage.test]
    ports: [80]
  - type: discard
    destinations: [discard.test]
    ports: [80]
expect:
  during:
    - name: discarded answer times out
      run: curl -sS --noproxy '*' -m 1 http://discard.test/
      exit: 28
    - name: held connection times out
      run: curl -sS --noproxy '*' -m 1 http://hang.test/
      exit: 28
    - name: slow server answers late
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{time_total}' http://slow.test/
      stdout: {regex: "^0\\\\.[0-9]"}
    - name: garbage instead of HTTP
      run: curl -sS --noproxy '*' -m 2 http://garbage.test/
      exit: nonzero
    - name: a probe long enough to be interrupted
      run: sleep 1
  after:
    - http: http://hang.test/
    - http: http://reset.test/
    - http: http://garbage.test/
    - http: http://discard.test/
"""

HTTP_FAULTS = """\
name: campaign-http-faults
description: every HTTP-proxy fault at once, on their own servers, one of them flapping
serve:
  - name: partial.test
    http: {size: 100000}
  - name: error.test
  - name: respond.test
  - name: abort.test
  - name: delay.test
  - name: replace.test
  - name: patch.test
faults:
  - type: partial
    bytes: 1000
    match: {host: partial.test}
  - type: http-error
    status: 503
    match: {host: error.test}
    flap: {period: 0.4s, duty: 0.5}
  - type: http-respond
    body: portal
    match: {host: respond.test}
  - type: http-abort
    match: {host: abort.test}
  - type: http-delay
    delay: 300ms
    match: {host: delay.test}
  - type: http-replace
    target: response
    code: 418
    match: {host: replace.test}
  - type: http-patch
    target: response
    headers: [[x-chaos, patched]]
    match: {host: patch.test}
expect:
  during:
    - name: the proxy answers in the origin's place
      run: curl -sS --noproxy '*' -m 3 http://respond.test/
      stdout: {contains: portal}
    - name: the request is aborted
      run: curl -sS --noproxy '*' -m 3 http://abort.test/
      exit: nonzero
    - name: the answer comes late
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{time_total}' http://delay.test/
      stdout: {regex: "^(0[.][3-9]|[1-9])"}
    - name: the status is replaced
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{http_code}' http://replace.test/
      stdout: {contains: "418"}
    - name: a header is added
      run: curl -sS --noproxy '*' -m 3 -D - -o /dev/null http://patch.test/
      stdout: {contains: "x-chaos: patched"}
    - name: the body is cut short
      run: curl -sS --noproxy '*' -m 3 -o /dev/null -w '%{size_download}' http://partial.test/
      exit: nonzero
      stdout: {contains: "1000"}
    - name: a probe long enough to be interrupted
      run: sleep 1
  after:
    - http: http://partial.test/
    - http: http://error.test/
    - http: http://respond.test/
    - http: http://abort.test/
    - http: http://replace.test/
    - http: http://patch.test/
"""

SANDBOX = [Item("all-faults", ALL_FAULTS), Item("routes-flap", ROUTES_FLAP),
           Item("tcp-faults", TCP_FAULTS), Item("http-faults", HTTP_FAULTS)]

# Host mode: every fault type that runs with --host (hosts-entry, route-blackhole,
# packet-filter; HOST_TYPES), on names under .invalid and addresses in 198.19.255.0/24
# (inside 198.18.0.0/15) and 2001:db8::/32 (documentation), which no probe sends a packet
# to; probes read the hosts file (getent -s files: no DNS query leaves the machine), the
# routing table and the packet filter rules.
HOST_ALL = """\
name: campaign-host
description: hosts entries, routes and packet filters on the machine itself, one of each flapping
faults:
  - type: hosts-entry
    names: [registry.chaos-campaign.invalid, cdn.chaos-campaign.invalid]
    address: 127.0.0.1
  - type: route-blackhole
    destinations: [198.19.255.1/32, 198.19.255.2/32]
    kind: unreachable
  - type: route-blackhole
    destinations: [198.19.255.8/29]
    kind: blackhole
    flap: {period: 0.3s, duty: 0.5}
  - type: hosts-entry
    names: [flap.chaos-campaign.invalid]
    address: 198.19.255.9
    flap: {period: 0.4s, duty: 0.5}
  - type: packet-filter
    destinations: [198.19.255.16/30, "2001:db8:c4a0::/64"]
    ports: [80, 443]
    action: reject-reset
  - type: packet-filter
    destinations: [198.19.255.20/32, "2001:db8:c4a0:1::1"]
    protocol: udp
    action: drop
    flap: {period: 0.35s, duty: 0.5}
expect:
  during:
    - run: getent -s files hosts registry.chaos-campaign.invalid
      stdout: {contains: 127.0.0.1}
    - run: ip route show 198.19.255.1/32
      stdout: {contains: unreachable}
    - run: iptables -S
      stdout: {contains: 198.19.255.16/30}
    - run: ip6tables -S
      stdout: {contains: "2001:db8:c4a0::/64"}
    - run: sleep 1.2
  after:
    - run: getent -s files hosts registry.chaos-campaign.invalid
      exit: any
      stdout: {not_contains: 127.0.0.1}
    - run: getent -s files hosts flap.chaos-campaign.invalid
      exit: 2
    - run: ip route show 198.19.255.1/32
      stdout: {not_contains: unreachable}
    - run: iptables-save
      stdout: {not_contains: 198.19.255.}
    - run: ip6tables-save
      stdout: {not_contains: "2001:db8:c4a0:"}
"""

HOST = [Item("host", HOST_ALL, host=True)]
HOST_TYPES = {"hosts-entry", "route-blackhole", "packet-filter"}
"""The fault types that run with --host (the others need the sandbox: tests/test_campaign.py
checks this set against what `chaos run --host` accepts)."""

# The registry lab in the CI-sized campaign (test_lab_crash_campaign): the lightest lab
# that still starts every lab process (upstream, token server, CDN, cache, containerd,
# dockerd): nothing warmed through the cache, one hosts entry, probes that read no image.
LAB_CI = """\
name: campaign-lab
description: the registry lab with its dockerd, nothing warmed, one hosts entry, a probe to interrupt
lab: {warm: []}
faults:
  - type: hosts-entry
    region: default
    names: [registry-1.docker.io, auth.docker.io]
expect:
  during:
    - run: curl -sS -m 5 https://registry-1.docker.io/v2/
      exit: 7
    - run: sleep 1
  after:
    - run: curl -sS -m 5 -o /dev/null -w '%{http_code}' https://registry-1.docker.io/v2/
      stdout: {contains: "401"}
"""

# The registry lab with steps (chaos/steps): a cache restart and a push while a fault is on,
# so a kill can land while a component is being started again or an image pushed.
LAB_STEPS = """\
name: campaign-lab-steps
description: the registry lab changed by steps while a fault is on; kills land mid-step
lab: {warm: []}
faults:
  - type: hosts-entry
    region: default
    names: [registry-1.docker.io, auth.docker.io]
expect:
  during:
    - restart: cache
      within: 10s
    - push: {name: library/campaign, layers: [4MB]}
      within: 20s
    - restart: dockerd
      within: 20s
  after:
    - run: curl -sS -m 5 -o /dev/null -w '%{http_code}' https://registry-1.docker.io/v2/
      stdout: {contains: "401"}
"""

# The one registry-lab scenario of the long campaign (dockerd, containerd, registries):
# it runs in about 4 s and has come back clean after every stop so far.
LAB_SCENARIO = SCENARIOS / "registry" / "01-hosts-redirect-upstream.yaml"


def shipped(lab: bool = False) -> list[Item]:
    """Every scenario in scenarios/ (top level; with lab=True the one lab scenario too)."""
    items = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        text = path.read_text()
        if yaml.safe_load(text).get("lab"):
            continue
        items.append(Item(path.stem, text))
    if lab:
        items.append(Item(LAB_SCENARIO.stem, LAB_SCENARIO.read_text(), lab=True))
        items.append(Item("lab-steps", LAB_STEPS, lab=True))
    return items


def mix(lab: bool = False) -> list[Item]:
    return SANDBOX + shipped(lab)


def uncovered(items) -> set[str]:
    """Fault types no scenario of the mix uses (a new type needs a shipped scenario)."""
    from chaos.faults import FAULTS

    used = set().union(*(i.fault_types for i in items))
    return set(FAULTS) - used


# -- what a run may leave ---------------------------------------------------------------------
def _cmd(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _rules(text: str) -> str:
    # Comment lines carry a timestamp and counters move with any traffic: neither is a change.
    return "\n".join(re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines()
                     if not line.startswith("#"))


def machine() -> dict:
    """The root namespace's state a run may touch, as text to compare byte for byte."""
    return {
        "iptables": _rules(_cmd("iptables-save")),
        "ip6tables": _rules(_cmd("ip6tables-save")),
        "routes": _cmd("ip", "route", "show", "table", "all"),
        "routes6": _cmd("ip", "-6", "route", "show", "table", "all"),
        "rules": _cmd("ip", "rule", "show") + _cmd("ip", "-6", "rule", "show"),
        "hosts": Path("/etc/hosts").read_bytes(),
    }


def machine_diff(before: dict, after: dict) -> list[str]:
    return [f"{key} differs" for key in before if before[key] != after[key]]


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _environ_has(pid: str, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return needle in f.read().split(b"\0")
    except OSError:
        return False


def marked_processes(marker: str) -> list[str]:
    """Live processes that inherited the run's marker (zombies have no environment)."""
    needle = f"{MARKER}={marker}".encode()
    out = []
    for pid in _listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid() and _environ_has(pid, needle):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
            except OSError:
                continue
            out.append(f"process {pid}: {cmd}")
    return out


def leftovers(run_ids, state_dir: Path, pids=(), marker: str | None = None) -> list[str]:
    """What the runs named left: namespaces, /etc/netns and /run entries, mounts, links in
    the root namespace, live processes, journals."""
    from chaos.journal import is_alive

    run_ids = tuple(run_ids)
    out = []

    def ours(name: str) -> bool:
        return bool(run_ids) and name.startswith(run_ids)

    out += [f"netns {n}" for n in _listdir("/run/netns") if ours(n)]
    out += [f"/etc/netns/{n}" for n in _listdir("/etc/netns") if ours(n)]
    out += [f"/run/{n}" for n in _listdir("/run") if ours(n)]
    with open("/proc/self/mountinfo") as f:
        out += [f"mount {line.split()[4]}" for line in f if any(r in line for r in run_ids)]
    shorts = [r.removeprefix("chaos-") for r in run_ids]
    for line in _cmd("ip", "-o", "link", "show").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if any(s in name for s in shorts):
            out.append(f"link {name} in the root namespace")
    out += [f"process {pid} (journaled)" for pid, start in pids if is_alive(pid, start)]
    if marker:
        out += marked_processes(marker)
    out += [f"state {p}" for sub in ("runs", "starting") for p in sorted((state_dir / sub).glob("*"))]
    return out


# -- runs stopped at a moment ---------------------------------------------------------------
def chaos_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "chaos", *args]  # the entry point users run


def chaos_env(state_dir: Path, marker: str | None = None) -> dict:
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    if marker:
        env[MARKER] = marker
    return env


def recover(state_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(chaos_argv("recover"), capture_output=True, text=True, timeout=timeout,
                          env=chaos_env(state_dir), cwd=ROOT, stdin=subprocess.DEVNULL)


@dataclass
class Stop:
    """When to stop a run, with which signal, sent to the runner or to its process group."""

    at: str = "none"
    """none (let it finish), time, setup, inject, probes, revert, teardown."""
    n: float = 1
    """The n-th record of that moment (for time: seconds after the start)."""
    sig: int = signal.SIGKILL
    group: bool = False
    """Signal the whole process group (a terminal's Ctrl-C, a CI runner cancelling a job)."""
    jitter: float = 0.0
    """Extra seconds to wait after the trigger, so stops spread inside each step."""

    def __str__(self) -> str:
        target = "group" if self.group else "runner"
        at = f"{self.n:.2f}s" if self.at == "time" else f"#{int(self.n)}"
        return f"{signal.Signals(self.sig).name} to the {target} at {self.at} {at} +{self.jitter * 1000:.1f}ms"


@dataclass
class Outcome:
    item: Item
    stop: Stop
    code: int | None
    output: str
    records: list[dict]
    """The journal as it stood when the signal was sent (SIGKILL: at the runner's death)."""
    signalled: bool
    duration: float
    state_dir: Path
    marker: str
    signal_at: float = 0.0
    """Seconds from the start to the signal (0 when none was sent)."""

    @property
    def moment(self) -> str:
        return moment(self.records, finished=not self.signalled)

    @property
    def run_ids(self) -> set[str]:
        ids = {r["run"] for r in self.records if r.get("op") == "begin"}
        runs = self.state_dir / "runs"
        return ids | ({p.name for p in runs.iterdir()} if runs.is_dir() else set())

    @property
    def pids(self) -> list[tuple[int, int]]:
        return [(r["undo"]["pid"], r["undo"].get("start")) for r in self.records
                if r.get("op") == "do" and r.get("kind") == "process"]


def _walk(records):
    """Each record with the moment it belongs to: setup (before the first probe phase),
    inject / revert (a fault's change or its undo), probes (a probe's process, started or
    ended), teardown (the sandbox and its servers undone)."""
    phase, probe_seqs, fault_seqs = None, set(), set()
    for r in records:
        op = r.get("op")
        if op == "note" and r.get("kind") == "phase":
            phase = r.get("phase")
            yield r, None
        elif op == "do":
            if r["kind"] not in SCAFFOLD_KINDS:
                fault_seqs.add(r["seq"])
                yield r, "inject"
            elif r["kind"] == "process" and phase is not None:
                probe_seqs.add(r["seq"])
                yield r, "probes"
            else:
                yield r, "setup"
        elif op == "undone":
            seq = r.get("seq")
            yield r, ("revert" if seq in fault_seqs else "probes" if seq in probe_seqs else "teardown")
        elif op == "note" and r.get("kind") == "fault":
            yield r, "inject" if r.get("state") == "on" else "revert"
        else:
            yield r, None


def moment(records: list[dict], finished: bool = False) -> str:
    """Where in a run a journal stops: startup (no journal yet), setup, probes, inject,
    revert, teardown, or finished."""
    if finished or any(r.get("op") == "end" for r in records):
        return "finished"
    if not records:
        return "startup"
    last = "setup"
    for record, where in _walk(records):
        if where:
            last = where
        elif record.get("kind") == "phase":
            last = "probes"
    return last


def counts(records: list[dict]) -> dict[str, int]:
    """How many records of each stoppable moment a whole run writes (for Stop.n)."""
    return dict(Counter(where for _, where in _walk(records) if where))


def _trigger(stop: Stop):
    want = int(stop.n)

    def hit(records, elapsed: float) -> bool:
        if stop.at == "none":
            return False
        if stop.at == "time":
            return elapsed >= stop.n
        return counts(records).get(stop.at, 0) >= want

    return hit


class _Tail:
    """Reads a run's journal as it grows; keeps its file open so a journal removed at the
    end of a clean run can still be read to the end."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir, self.file, self.buf, self.records = state_dir, None, b"", []

    def poll(self) -> list[dict]:
        if self.file is None:
            found = list((self.state_dir / "runs").glob("*/journal.jsonl"))
            if not found:
                return self.records
            self.file = open(found[0], "rb")
        self.buf += self.file.read()
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return self.records

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def start(item: Item, state_dir: Path, marker: str, scenario_dir: Path, extra=(),
          prefix=()) -> subprocess.Popen:
    path = scenario_dir / f"{item.name}.yaml"
    path.write_text(item.text)
    args = ["run", *(["--host"] if item.host else []), *extra, str(path)]
    return subprocess.Popen([*prefix, *chaos_argv(*args)], cwd=ROOT, env=chaos_env(state_dir, marker),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def run_and_stop(item: Item, stop: Stop, workdir: Path, timeout: float = 120) -> Outcome:
    """Run one scenario through the real CLI in its own state dir and stop it as told."""
    marker = uuid.uuid4().hex
    state_dir = workdir / f"state-{marker[:8]}"
    state_dir.mkdir(parents=True)
    proc = start(item, state_dir, marker, workdir)
    tail, hit = _Tail(state_dir), _trigger(stop)
    t0 = time.monotonic()
    signalled, signal_at = False, 0.0
    try:
        while proc.poll() is None:
            records = tail.poll()
            elapsed = time.monotonic() - t0
            if elapsed > timeout:
                raise TimeoutError(f"{item.name}: still running after {timeout}s")
            if hit(records, elapsed):
                if stop.jitter:
                    time.sleep(stop.jitter)
                if proc.poll() is None:
                    at_signal = list(tail.poll())
                    try:
                        if stop.group:
                            os.killpg(proc.pid, stop.sig)
                        else:
                            proc.send_signal(stop.sig)
                        signalled, signal_at = True, time.monotonic() - t0
                    except ProcessLookupError:
                        pass
                break
            time.sleep(0.0005)
        out, _ = proc.communicate(timeout=timeout)
        records = tail.poll()
        if signalled and stop.sig != signal.SIGKILL:
            records = at_signal  # the run went on writing (its revert) after the signal
    except BaseException:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    finally:
        tail.close()
    return Outcome(item, stop, proc.returncode, out.decode("utf-8", "replace"), list(records),
                   signalled, time.monotonic() - t0, state_dir, marker, signal_at)


@dataclass
class Calibration:
    """One uninterrupted run of an item: its exit code, duration and record counts."""

    code: int
    duration: float
    counts: dict[str, int]


def calibrate(item: Item, workdir: Path) -> Calibration:
    out = run_and_stop(item, Stop("none"), workdir)
    return Calibration(out.code, out.duration, counts(out.records))


MOMENTS = ("setup", "inject", "probes", "revert", "teardown", "time")


def random_stop(rng: random.Random, cal: Calibration, sig: int, at: str | None = None) -> Stop:
    """A stop at a random moment the calibration run shows the item has."""
    choices = [m for m in MOMENTS if m == "time" or cal.counts.get(m)]
    at = at if at in choices else rng.choice(choices)
    group = sig != signal.SIGTERM and rng.random() < 0.3
    jitter = rng.choice((0.0, rng.uniform(0, 0.005), rng.uniform(0, 0.05)))
    if at == "time":
        return Stop("time", rng.uniform(0.05, cal.duration), sig, group, 0.0)
    return Stop(at, rng.randint(1, cal.counts[at]), sig, group, jitter)


@dataclass
class CrashResult:
    outcome: Outcome
    recover: subprocess.CompletedProcess
    recover_seconds: float
    residue: list[str] = field(default_factory=list)


def crash_and_recover(item: Item, stop: Stop, workdir: Path, before: dict) -> CrashResult:
    """SIGKILL (or as told) a run, `chaos recover`, then list everything left behind."""
    outcome = run_and_stop(item, stop, workdir)
    t0 = time.monotonic()
    rec = recover(outcome.state_dir)
    took = time.monotonic() - t0
    residue = [] if rec.returncode == 0 else [f"chaos recover exited {rec.returncode}"]
    residue += leftovers(outcome.run_ids, outcome.state_dir, outcome.pids, outcome.marker)
    residue += machine_diff(before, machine())
    again = recover(outcome.state_dir)
    if again.returncode != 0 or again.stdout.strip() != "nothing to recover":
        residue.append(f"second recover: {again.returncode} {again.stdout.strip()[:200]}")
    return CrashResult(outcome, rec, took, residue)


# CPython's own start-up (site, runpy) runs before any of our code: a SIGINT there is the
# interpreter's to report, and it exits 1 or dies by the signal. Seen here with 25-45 ms of
# start-up on a loaded machine.
# init_import_site, init_sys_streams, ...
_STARTUP_FAILURE = ("Fatal Python error: init_", "Could not import runpy module")
_OUR_FRAME = re.compile(r'File "[^"]*/chaos/[^"]*"')


def our_traceback(output: str) -> bool:
    """A traceback through the toolkit's own code (the signal reached us and we let it out)."""
    return "Traceback" in output and bool(_OUR_FRAME.search(output))


def interpreter_startup_failure(output: str) -> bool:
    return any(marker in output for marker in _STARTUP_FAILURE)


def expected_codes(outcome: Outcome, own: int) -> set[int]:
    """Exit codes a run stopped by SIGINT / SIGTERM may have, from where the signal landed:
    130 / 143 while it runs; once its journal has ended, its own code, or still 130 / 143
    in the few milliseconds before its result is reported (chaos run counts a signal as
    stopping the run until then); before the journal exists (Python still starting) also
    death by the signal, which a shell shows as the same 130 / 143."""
    sig = outcome.stop.sig
    documented = 128 + sig
    if outcome.moment == "finished":
        return {own, documented}
    if outcome.moment == "startup":
        return {documented, -sig} | ({1} if interpreter_startup_failure(outcome.output) else set())
    return {documented}


# -- recover beside starting runs ---------------------------------------------------------------
@dataclass
class LoopResult:
    """Runs started one after another (one lane per item group) in one state dir while
    `chaos recover` runs in a loop on it: no run ends by a signal here, so a recover that
    undoes or removes anything of a run is a recover that touched a live one."""

    starts: int = 0
    delayed: int = 0
    """Starts whose journal's first record was held (see HOLD_BEGIN)."""
    recovers: int = 0
    harmed: list[str] = field(default_factory=list)
    swept_finished: int = 0
    """"removed the folder of a run that had finished": a run between its `end` and its
    folder's removal (harmless, counted)."""
    codes: Counter = field(default_factory=Counter)
    durations: dict[str, list[float]] = field(default_factory=dict)
    """Item name -> how long each of its runs took beside the loop."""
    wall: float = 0.0


HOLD_SECONDS = 1.5
"""How long a delayed start's first journal record is held: several turns of the recover loop."""


def hold_begin() -> list[str]:
    """A prefix that holds the runner's second write(2), its journal's `begin` record (the
    first is the console's title line), for HOLD_SECONDS: strace's fault injection, as the
    issue made the race certain. The runner alone is traced (no -f): its children and
    threads run free. Empty when strace is missing."""
    import shutil

    if shutil.which("strace") is None:
        return []
    return ["strace", "-o", "/dev/null", "-e", "trace=write",
            "-e", f"inject=write:delay_enter={int(HOLD_SECONDS * 1e6)}:when=2"]


RECOVER_TOUCHED = re.compile(r"^(chaos-\S+): (recovered|undo |could not undo|removed the folder of a run stopped)")


def recover_beside_starts(lanes: list[list[Item]], starts: int, workdir: Path,
                          expected: dict[str, int], delay_every: int = 4) -> LoopResult:
    """``starts`` runs of the lanes' items (each lane runs its items in turn, the lanes at
    once) in one state dir while `chaos recover` loops on it; every ``delay_every``-th run of
    a lane has its journal's first record held (``hold_begin``), so recover surely looks
    while the run's journal is being created. A run is harmed when it exits
    other than ``expected[item.name]`` (its uninterrupted run's code), prints a traceback,
    leaves a process or anything named after it, or when a recover line undoes or removes
    anything (no run here is stopped: every journal recover sees has a live or finished owner)."""
    import threading

    state_dir = workdir / f"state-loop-{uuid.uuid4().hex[:8]}"
    state_dir.mkdir(parents=True)
    result, lock, done = LoopResult(), threading.Lock(), threading.Event()
    counter = iter(range(starts))

    def looper() -> None:
        while not done.is_set():
            rec = recover(state_dir)
            with lock:
                result.recovers += 1
                if rec.returncode != 0 or "Traceback" in rec.stderr:
                    result.harmed.append(f"chaos recover exited {rec.returncode}: {rec.stderr.strip()[-300:]}")
                for line in rec.stdout.splitlines():
                    if RECOVER_TOUCHED.match(line):
                        result.harmed.append(f"recover touched a run: {line}")
                    elif "removed the folder of a run that had finished" in line:
                        result.swept_finished += 1

    def lane(items: list[Item], index: int) -> None:
        k = 0
        while not done.is_set():
            with lock:
                if next(counter, None) is None:
                    return
                result.starts += 1
            item = items[k % len(items)]
            k += 1
            marker = uuid.uuid4().hex
            prefix = hold_begin() if delay_every and k % delay_every == 0 else []
            proc = start(item, state_dir, marker, workdir / f"lane-{index}", prefix=prefix)
            t = time.monotonic()
            try:
                out, _ = proc.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, _ = proc.communicate()
            text = out.decode("utf-8", "replace")
            problems = []
            if proc.returncode != expected[item.name]:
                problems.append(f"exit {proc.returncode}, uninterrupted {expected[item.name]}: {text[-400:]}")
            if our_traceback(text):
                problems.append("traceback")
            problems += marked_processes(marker)
            with lock:
                result.delayed += bool(prefix)
                result.durations.setdefault(item.name if not prefix else f"{item.name} (held)",
                                            []).append(time.monotonic() - t)
                result.codes[proc.returncode] += 1
                result.harmed += [f"{item.name} run {k}: {p}" for p in problems]

    for index in range(len(lanes)):
        (workdir / f"lane-{index}").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    loop = threading.Thread(target=looper, daemon=True)
    loop.start()
    workers = [threading.Thread(target=lane, args=(items, i)) for i, items in enumerate(lanes)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done.set()
    loop.join(timeout=60)
    result.wall = time.monotonic() - t0
    final = recover(state_dir)
    if final.stdout.strip() != "nothing to recover":
        result.harmed.append(f"after the last run, recover: {final.stdout.strip()[:300]}")
    left = [p for sub in ("runs", "starting") for p in (state_dir / sub).glob("*")]
    result.harmed += [f"state {p}" for p in left]
    return result


# -- a `chaos run -j` killed ----------------------------------------------------------------
@dataclass
class JobsCrash:
    """A `chaos run -j` SIGKILLed: how (parent alone, or parent and children), when, what
    was running, and what `chaos recover` left."""

    whole_tree: bool
    at: float
    running: int
    faults_on: int
    residue: list[str]
    recovered: str
    """What the first `chaos recover` printed."""


def _journal_records(state_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for path in (state_dir / "runs").glob("*/journal.jsonl"):
        try:
            out[path.parent.name] = [json.loads(line) for line in path.read_bytes().splitlines()
                                     if line.strip()]
        except (OSError, json.JSONDecodeError):
            pass  # removed or being written: read again at the next poll
    return out


def _children(pid: int) -> list[int]:
    out = []
    for entry in _listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return out


def jobs_crash(items: list[Item], workdir: Path, at: float, whole_tree: bool, before: dict,
               jobs: int = 4, faults: int = 0, timeout: float = 120) -> JobsCrash:
    """`chaos run -j <jobs>` over ``items``, SIGKILLed ``at`` seconds in (after ``faults``
    faults came on, if given): the parent alone
    (its children then stop by themselves: they follow their parent) or the parent and every
    child run at once (nothing reverts: `chaos recover` must); then `chaos recover`, and
    everything any of the runs left is listed."""
    from chaos.journal import is_alive

    marker = uuid.uuid4().hex
    state_dir = workdir / f"state-{marker[:8]}"
    state_dir.mkdir(parents=True)
    paths = []
    for item in items:
        path = workdir / f"{marker[:8]}-{item.name}.yaml"
        path.write_text(item.text)
        paths.append(str(path))
    proc = subprocess.Popen(chaos_argv("run", "-j", str(jobs), *paths), cwd=ROOT,
                            env=chaos_env(state_dir, marker), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    seen: dict[str, list[dict]] = {}

    def faults_on() -> int:
        return sum(r.get("kind") == "fault" and r.get("state") == "on"
                   for records in seen.values() for r in records)

    t0 = time.monotonic()
    while proc.poll() is None and faults_on() < faults and time.monotonic() - t0 < timeout:
        seen.update(_journal_records(state_dir))
        time.sleep(0.02)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < at:
        seen.update(_journal_records(state_dir))
        time.sleep(0.02)
    seen.update(_journal_records(state_dir))
    running = len(_journal_records(state_dir))
    on = faults_on()
    if whole_tree:
        for child in _children(proc.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.kill()
    proc.wait()
    owners = [(r["pid"], r["pid_start"]) for records in seen.values() for r in records
              if r.get("op") == "begin"]
    deadline = time.monotonic() + timeout
    while any(is_alive(*o) for o in owners) and time.monotonic() < deadline:
        time.sleep(0.1)  # the parent alone killed: its children revert and end by themselves
    seen.update(_journal_records(state_dir))
    residue = [f"child run {pid} still alive after {timeout}s" for pid, start in owners
               if is_alive(pid, start)]
    rec = recover(state_dir)
    if rec.returncode != 0:
        residue.append(f"chaos recover exited {rec.returncode}: {rec.stdout[-300:]}")
    pids = [(r["undo"]["pid"], r["undo"].get("start")) for records in seen.values() for r in records
            if r.get("op") == "do" and r.get("kind") == "process"]
    residue += leftovers(set(seen), state_dir, pids, marker)
    residue += machine_diff(before, machine())
    again = recover(state_dir)
    if again.returncode != 0 or again.stdout.strip() != "nothing to recover":
        residue.append(f"second recover: {again.returncode} {again.stdout.strip()[:200]}")
    return JobsCrash(whole_tree, at, running, on, residue, rec.stdout)
