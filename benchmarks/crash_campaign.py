"""The long reliability campaigns; prints each figure and its ratio to a peer measured in the
same run (docs/reliability.md records them).

    .venv/bin/python benchmarks/crash_campaign.py                 # everything (about 15 min)
    .venv/bin/python benchmarks/crash_campaign.py --only fuzz --fuzz 10000

- crash:  --runs runs of the scenario mix (every fault type, the registry lab included),
          each SIGKILLed at a random moment, then `chaos recover`; residue checked each time.
          Peer: the same scenarios run uninterrupted (recover time vs a whole clean run).
- signal: --signals runs stopped by SIGINT / SIGTERM; exit codes, residue (no recover).
          Peer: the clean run's duration (time from the signal to the exit vs a whole run).
- host:   --host-runs `chaos run --host` runs killed and recovered (hosts entries, routes
          and packet filters), with a user's line in /etc/hosts naming a redirected host;
          /etc/hosts, routes and iptables-save / ip6tables-save compared byte for byte.
- recover-loop: --starts runs started one after another in two lanes at once (host mode
          in one, sandbox scenarios in the other) in one state dir while `chaos recover`
          loops on it, every 4th run of a lane with its journal's begin record held 1.5 s
          (strace's write-delay injection); a run is harmed if recover undoes or removes anything of it, or it
          ends otherwise than uninterrupted, or leaves anything. Peer: each scenario's uninterrupted
          run alone (its run time beside the loop vs alone).
- batch:  --batches SIGKILLs at a random moment of a 10,000-route route-blackhole applied
          and reverted in a namespace of its own (one journal record, batched netlink), then
          `chaos recover`; no route may be left. Peer: the uninterrupted apply + revert.
- jobs:   --jobs-runs `chaos run -j 4` runs over four scenarios of the mix, SIGKILLed at a
          random moment: half the time with every child run at once (nothing reverts by
          itself), half the time the parent alone (its children follow it and revert); then
          `chaos recover`; residue checked each time. Peer: the same four run uninterrupted.
- fuzz:   --fuzz hypothesis cases (mutated, broken and generated documents), checked as in
          tests/test_fuzz.py. Peer: loading and planning the shipped scenarios (cases/s).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import campaign as c


def _median(xs) -> float:
    return statistics.median(xs) if xs else 0.0


def _p95(xs) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.95) - 1)] if xs else 0.0


def calibrate_all(items, workdir) -> dict:
    cals = {}
    for item in items:
        cal = c.calibrate(item, workdir)
        print(f"  peer  {item.name:34s} exit {cal.code}  {cal.duration:5.2f}s  {cal.counts}", flush=True)
        cals[item.name] = cal
    return cals


def crash(args, workdir, host: bool = False) -> dict:
    items = c.HOST if host else c.mix(lab=args.lab)
    runs = args.host_runs if host else args.runs
    label = "host crash" if host else "crash"
    print(f"== {label} campaign: {runs} runs over {len(items)} scenario(s), seed {args.seed}", flush=True)
    missing = c.uncovered(c.mix(lab=args.lab))
    if not host and missing:
        print(f"  WARNING: fault types not in the mix: {sorted(missing)}")
    rng = random.Random(args.seed + (7 if host else 0))
    cals = calibrate_all(items, workdir)
    before = c.machine()
    moments = (["inject", "probes", "revert", "time"] if host else c.MOMENTS)
    landed, bad, recover_s = Counter(), [], []
    t0 = time.monotonic()
    for k in range(runs):
        item = items[k % len(items)]
        stop = c.random_stop(rng, cals[item.name], signal.SIGKILL, at=moments[k % len(moments)])
        r = c.crash_and_recover(item, stop, workdir, before)
        landed[r.outcome.moment] += 1
        recover_s.append(r.recover_seconds)
        if r.residue:
            bad.append(f"{item.name}: {stop} -> {r.outcome.moment}: {r.residue}")
            print(f"  RESIDUE {bad[-1]}", flush=True)
            before = c.machine()
        if (k + 1) % 10 == 0:
            print(f"  {k + 1}/{runs} runs, {len(bad)} with residue", flush=True)
    peer = _median([cal.duration for cal in cals.values()])
    out = {"runs": runs, "clean": runs - len(bad), "landed": dict(landed), "residue": bad,
           "recover_median_s": round(_median(recover_s), 3), "recover_p95_s": round(_p95(recover_s), 3),
           "recover_max_s": round(max(recover_s, default=0), 3), "peer_clean_run_median_s": round(peer, 3),
           "wall_s": round(time.monotonic() - t0, 1)}
    print(f"  {label}: {out['clean']}/{runs} runs left nothing after `chaos recover`; "
          f"stops landed in {dict(landed)}")
    print(f"  recover: median {out['recover_median_s']}s, p95 {out['recover_p95_s']}s, "
          f"max {out['recover_max_s']}s; peer (a whole clean run, median) {peer:.2f}s; "
          f"ratio {out['recover_median_s'] / peer:.2f}x", flush=True)
    return out


def signals(args, workdir) -> dict:
    items = c.mix()
    print(f"== signal campaign: {args.signals} runs, SIGINT and SIGTERM, seed {args.seed}", flush=True)
    rng = random.Random(args.seed + 1)
    cals = calibrate_all(items, workdir)
    before = c.machine()
    codes, landed, bad, to_exit = Counter(), Counter(), [], []
    for k in range(args.signals):
        item = items[k % len(items)]
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        cal = cals[item.name]
        stop = c.random_stop(rng, cal, sig, at=c.MOMENTS[(k // 2) % len(c.MOMENTS)])
        out = c.run_and_stop(item, stop, workdir)
        landed[out.moment] += 1
        codes[f"{signal.Signals(sig).name}->{out.code}"] += 1
        left = c.leftovers(out.run_ids, out.state_dir, out.pids, out.marker) + c.machine_diff(before, c.machine())
        if left:
            bad.append(f"{item.name}: {stop} -> {out.moment}: left {left}")
            c.recover(out.state_dir)
            before = c.machine()
        if out.code not in c.expected_codes(out, cal.code):
            bad.append(f"{item.name}: {stop} -> {out.moment}: unexpected exit {out.code}")
        if out.signalled and out.moment not in ("finished", "startup"):
            to_exit.append(out.duration - out.signal_at)
    peer = _median([cal.duration for cal in cals.values()])
    result = {"runs": args.signals, "problems": bad, "codes": dict(codes),
              "landed": dict(landed), "signal_to_exit_median_s": round(_median(to_exit), 3),
              "peer_clean_run_median_s": round(peer, 3)}
    print(f"  signal: {args.signals - len(bad)}/{args.signals} runs reverted by themselves with nothing "
          f"left and an expected exit code")
    print(f"  exit codes {dict(codes)}; stops landed in {dict(landed)}")
    print(f"  from the signal to the exit: median {result['signal_to_exit_median_s']}s; peer (a whole "
          f"clean run) {peer:.2f}s; ratio {result['signal_to_exit_median_s'] / peer:.2f}x", flush=True)
    return result


def fuzz(args) -> dict:
    from hypothesis import HealthCheck, given, settings

    import fuzzing

    print(f"== fuzz campaign: {args.fuzz} cases", flush=True)
    verdicts, violations = Counter(), []

    @settings(max_examples=args.fuzz, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzzing.documents)
    def run(text):
        try:
            verdicts[fuzzing.check(text).kind] += 1
        except fuzzing.Violation as exc:
            violations.append((str(exc), text))

    t0 = time.monotonic()
    run()
    took = time.monotonic() - t0
    cases = sum(verdicts.values()) + len(violations)
    texts = fuzzing.shipped_texts()
    t1, n = time.monotonic(), 0
    while time.monotonic() - t1 < 3.0:
        for text in texts:
            fuzzing.check(text)
            n += 1
    peer_rate = n / (time.monotonic() - t1)
    rate = cases / took
    result = {"cases": cases, "verdicts": dict(verdicts), "violations": len(violations),
              "cases_per_s": round(rate, 1),
              "peer_shipped_per_s": round(peer_rate, 1), "seconds": round(took, 1)}
    for message, _ in violations[:10]:
        print(f"  VIOLATION {message}")
    print(f"  fuzz: {cases} cases, {len(violations)} violations (tracebacks, unlocated problems); "
          f"verdicts {dict(verdicts)}")
    print(f"  {rate:.0f} cases/s (generation included); peer: loading+planning the shipped scenarios "
          f"{peer_rate:.0f}/s; ratio {rate / peer_rate:.2f}x", flush=True)
    return result


LOOP_LANES = [c.HOST, [c.SANDBOX[1], c.SANDBOX[0]]]


def recover_loop(args, workdir) -> dict:
    print(f"== recover loop beside {args.starts} starting runs (host mode in one lane)", flush=True)
    items = [item for lane in LOOP_LANES for item in lane]
    cals = calibrate_all(items, workdir)
    before = c.machine()
    r = c.recover_beside_starts(LOOP_LANES, args.starts, workdir, {i.name: cals[i.name].code for i in items})
    diff = c.machine_diff(before, c.machine())
    harmed = r.harmed + diff
    for line in harmed[:20]:
        print(f"  HARMED {line}")
    out = {"starts": r.starts, "held_starts": r.delayed, "recovers": r.recovers, "harmed": harmed,
           "swept_finished": r.swept_finished, "exit_codes": {str(k): v for k, v in r.codes.items()},
           "wall_s": round(r.wall, 1), "starts_per_min": round(r.starts / r.wall * 60, 1),
           "recovers_per_start": round(r.recovers / max(r.starts, 1), 2),
           "run_median_s": {n: round(_median(d), 2) for n, d in r.durations.items()},
           "peer_alone_s": {i.name: round(cals[i.name].duration, 2) for i in items}}
    print(f"  recover loop: {len(harmed)} harm(s) in {r.starts} starts ({r.delayed} with the journal's "
          f"begin held {c.HOLD_SECONDS}s by strace); {r.recovers} recovers "
          f"({out['recovers_per_start']} per start); exit codes {dict(r.codes)}; "
          f"{r.swept_finished} finished folders swept; {out['wall_s']}s", flush=True)
    for name, took in out["run_median_s"].items():
        alone = out["peer_alone_s"][name.removesuffix(" (held)")]
        print(f"  {name}: median run {took}s beside the loop, {alone}s alone: {took / alone:.2f}x")
    return out


BATCH_ROUTES = 10_000
BATCH_CHILD = r"""
import ipaddress, sys
from chaos.injectors.routes import RouteInjector
from chaos.journal import Journal

journal = Journal.create(sys.argv[3], sys.argv[2])
first = int(ipaddress.ip_address("198.18.0.1"))
routes = RouteInjector([f"{ipaddress.ip_address(first + i)}/32" for i in range(int(sys.argv[4]))],
                       "unreachable", sys.argv[1])
print("ready", flush=True)
routes.apply(journal)
assert journal.rollback() == []
journal.finish()
"""


def _unreachable(netns: str) -> int:
    out = subprocess.run(["ip", "-n", netns, "route", "show", "type", "unreachable"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def _batch_once(workdir: Path, k: int, delay: float | None) -> dict:
    """One apply + revert of BATCH_ROUTES routes, SIGKILLed ``delay`` s after it starts (None:
    not killed), then `chaos recover`."""
    netns, state = f"chaos-cbatch-{os.getpid()}-{k}", workdir / f"batch-{k}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        child = subprocess.Popen([sys.executable, "-c", BATCH_CHILD, netns, str(state), f"chaos-batch{k}",
                                  str(BATCH_ROUTES)], cwd=c.ROOT, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        t0 = time.monotonic()
        if delay is None:
            code = child.wait(60)
            return {"code": code, "seconds": time.monotonic() - t0, "left": _unreachable(netns)}
        time.sleep(delay)
        child.kill()
        child.wait()
        at_kill = _unreachable(netns)
        t1 = time.monotonic()
        result = c.recover(state)
        return {"at_kill": at_kill, "recover_code": result.returncode, "recover_s": time.monotonic() - t1,
                "left": _unreachable(netns), "again": c.recover(state).stdout.strip(),
                "finished": child.returncode != -signal.SIGKILL}
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def batch(args, workdir) -> dict:
    print(f"== batch campaign: {args.batches} SIGKILLs in a {BATCH_ROUTES:,}-route apply + revert", flush=True)
    rng = random.Random(args.seed + 13)
    peers = [_batch_once(workdir, -1 - i, None) for i in range(3)]
    clean = _median([p["seconds"] for p in peers])
    print(f"  peer  uninterrupted apply + revert {clean:.2f}s, left {[p['left'] for p in peers]}", flush=True)
    landed, residue, recover_s = Counter(), [], []
    for k in range(args.batches):
        r = _batch_once(workdir, k, rng.uniform(0, clean))
        where = ("finished" if r["finished"] else "none in" if r["at_kill"] == 0
                 else "all in" if r["at_kill"] == BATCH_ROUTES else "part in")
        landed[where] += 1
        recover_s.append(r["recover_s"])
        if r["recover_code"] or r["left"] or r["again"] != "nothing to recover":
            residue.append(f"run {k}: {r}")
            print(f"  RESIDUE run {k}: {r}", flush=True)
    out = {"runs": args.batches, "clean": args.batches - len(residue), "residue": residue,
           "landed": dict(landed), "recover_median_s": round(_median(recover_s), 3),
           "recover_max_s": round(max(recover_s, default=0), 3), "peer_apply_revert_s": round(clean, 3)}
    print(f"  {out['clean']}/{out['runs']} left nothing; routes in the kernel at the kill: {dict(landed)}; "
          f"recover median {out['recover_median_s']}s, max {out['recover_max_s']}s "
          f"(peer: uninterrupted apply + revert {clean:.2f}s)", flush=True)
    return out


def jobs_campaign(args, workdir) -> dict:
    items = c.mix()
    print(f"== jobs campaign: {args.jobs_runs} `chaos run -j 4` runs SIGKILLed, seed {args.seed}",
          flush=True)
    rng = random.Random(args.seed + 3)
    before = c.machine()
    t0 = time.monotonic()
    peer = c.jobs_crash(items[:4], workdir, at=3600, whole_tree=True, before=before)
    peer_s = time.monotonic() - t0
    print(f"  peer  4 scenarios, -j 4, uninterrupted: {peer_s:.2f}s, residue {peer.residue}", flush=True)
    bad, landed = [], Counter()
    for k in range(args.jobs_runs):
        four = rng.sample(items, 4)
        whole = k % 2 == 0
        crash = c.jobs_crash(four, workdir, at=rng.uniform(0.2, peer_s), whole_tree=whole, before=before)
        landed[f"{'tree' if whole else 'parent'}, {crash.running} running"] += 1
        status = "ok" if not crash.residue else f"RESIDUE {crash.residue}"
        print(f"  {k:3d} kill {'parent+children' if whole else 'parent alone':15s} at {crash.at:5.2f}s "
              f"{crash.running} runs open, {crash.faults_on} faults on: {status}", flush=True)
        if crash.residue:
            bad.append({"run": k, "residue": crash.residue})
    out = {"runs": args.jobs_runs, "residue": bad, "landed": dict(landed), "peer_s": round(peer_s, 2)}
    print(f"  {args.jobs_runs - len(bad)}/{args.jobs_runs} clean; {dict(landed)}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--signals", type=int, default=40)
    parser.add_argument("--host-runs", type=int, default=20)
    parser.add_argument("--fuzz", type=int, default=10_000)
    parser.add_argument("--jobs-runs", type=int, default=20, help="jobs: `chaos run -j 4` runs killed")
    parser.add_argument("--starts", type=int, default=200, help="recover-loop: runs started")
    parser.add_argument("--batches", type=int, default=40, help="batch: SIGKILLs mid route batch")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--no-lab", dest="lab", action="store_false", help="leave the registry lab scenario out")
    parser.add_argument("--only", default="crash,signal,host,recover-loop,batch,jobs,fuzz")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    only = set(args.only.split(","))
    results = {}
    with tempfile.TemporaryDirectory(prefix="chaos-campaign-") as tmp:
        workdir = Path(tmp)
        if "crash" in only:
            results["crash"] = crash(args, workdir)
        if "signal" in only:
            results["signal"] = signals(args, workdir)
        if "host" in only:
            results["host"] = host_campaign(args, workdir)
        if "recover-loop" in only:
            results["recover_loop"] = recover_loop(args, workdir)
        if "batch" in only:
            results["batch"] = batch(args, workdir)
        if "jobs" in only:
            results["jobs"] = jobs_campaign(args, workdir)
    if "fuzz" in only:
        results["fuzz"] = fuzz(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    failed = any(r.get("residue") or r.get("problems") or r.get("violations") or r.get("harmed")
                 for r in results.values())
    sys.exit(1 if failed else 0)


def host_campaign(args, workdir) -> dict:
    hosts = Path("/etc/hosts")
    original = hosts.read_bytes()
    line = b"198.19.255.254 registry.chaos-campaign.invalid kept.chaos-campaign.invalid\n"
    with open(hosts, "ab") as f:
        f.write(line)
    try:
        result = crash(args, workdir, host=True)
        result["hosts_byte_for_byte"] = hosts.read_bytes() == original + line
        print(f"  /etc/hosts byte for byte with the user's line: {result['hosts_byte_for_byte']}")
        return result
    finally:
        with open(hosts, "r+b") as f:  # in place: /etc/hosts may be a bind mount
            f.write(original)
            f.truncate()


if __name__ == "__main__":
    main()
