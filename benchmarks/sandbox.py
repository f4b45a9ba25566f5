"""Sandbox create + destroy: chaos.sandbox.netns.Sandbox against the same thing with `ip`.

    sudo .venv/bin/python benchmarks/sandbox.py [--rounds 20]

Ours: ``Sandbox(run_id, zone).create(journal)`` (client + world namespaces, a veth pair,
addresses, the client's route, /etc/netns/<client>/{hosts,resolv.conf}; every step
journaled and fsynced first), then ``journal.rollback()`` to the mark before it. Peers, in
the same rounds (alternating order):

    ip netns add/del x2    the two namespaces alone (the floor: what the kernel costs)
    ip + files (bash)      the same sandbox with ip commands from one bash script: two
                           namespaces, veth, addresses, links up, route, the two files;
                           then ip netns del x2 and rm

Target: create + destroy <= 2x the two bare namespaces (ip netns add/del x2), same rounds.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import count_arg, figure, median, need_root, round_ratio, run_quiet

TARGET_RATIO = 2.0  # ours / ip netns add/del x2

CREATE = """set -e
ip netns add $W; ip netns add $C
ip -n $W link set lo up
ip -n $C link add $CI type veth peer name $WI netns $W
ip -n $C link set lo up
ip -n $C addr add 198.18.0.2/24 dev $CI; ip -n $C link set $CI up
ip -n $W addr add 198.18.0.1/24 dev $WI; ip -n $W link set $WI up
ip -n $C route add 198.18.0.0/15 via 198.18.0.1
mkdir /etc/netns/$C
printf 'nameserver 127.0.0.1\\noptions timeout:1 attempts:1\\n' > /etc/netns/$C/resolv.conf
printf '127.0.0.1\\tlocalhost\\n198.18.1.10\\treg.test\\n' > /etc/netns/$C/hosts
"""
DESTROY = "ip netns del $C; ip netns del $W; rm -rf /etc/netns/$C\n"


def ours_cycle(journal, zone) -> tuple[float, float]:
    from chaos.sandbox.netns import Sandbox

    sandbox = Sandbox(f"chaos-{secrets.token_hex(3)}", dict(zone))
    mark = journal.mark()
    t0 = time.perf_counter()
    try:
        sandbox.create(journal)
        t1 = time.perf_counter()
    finally:
        failures = journal.rollback(mark)
    t2 = time.perf_counter()
    if failures:
        raise RuntimeError(f"sandbox rollback failed: {failures}")
    return t1 - t0, t2 - t1


def peer_env() -> dict:
    tag = f"bp{secrets.token_hex(3)}"
    return {**os.environ, "C": f"chaos-{tag}-c", "W": f"chaos-{tag}-w", "CI": f"c{tag}0",
            "WI": f"w{tag}0"}


def peer_cycle(script: str) -> float:
    env = peer_env()
    t0 = time.perf_counter()
    try:
        run_quiet(["bash", "-c", script], env=env)
    finally:
        subprocess.run(["bash", "-c", DESTROY.replace("; ", " 2>/dev/null; ")], env=env,
                       stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def netns_only() -> float:
    env = peer_env()
    t0 = time.perf_counter()
    for verb in ("add", "del"):
        for name in (env["C"], env["W"]):
            run_quiet(["ip", "netns", verb, name])
    return time.perf_counter() - t0


def main() -> int:
    rounds = count_arg(__doc__, "rounds", default=20, quick=8)
    need_root()
    from chaos.journal import Journal

    work = Path(tempfile.mkdtemp(prefix="chaos-bench-sandbox-", dir="/var/tmp"))
    journal = Journal.create(f"bench-sandbox-{os.getpid()}", work / "state")
    zone = {"reg.test": "198.18.1.10"}
    times: dict[str, list[float]] = {"create": [], "destroy": [], "ours": [], "ip netns": [],
                                     "ip + files": []}
    first = None
    try:
        t0 = time.perf_counter()
        ours_cycle(journal, zone)  # the first one pays for importing pyroute2
        first = time.perf_counter() - t0
        peer_cycle(CREATE)
        for i in range(rounds):
            order = ["ours", "ip netns", "ip + files"]
            for name in order if i % 2 == 0 else order[::-1]:
                if name == "ours":
                    create, destroy = ours_cycle(journal, zone)
                    times["create"].append(create)
                    times["destroy"].append(destroy)
                    times["ours"].append(create + destroy)
                elif name == "ip netns":
                    times[name].append(netns_only())
                else:
                    times[name].append(peer_cycle(CREATE))
    finally:
        failures = journal.rollback()
        journal.finish()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print("revert failures:", *failures, sep="\n  ", file=sys.stderr)
        return 1
    med = {k: median(v) * 1000 for k, v in times.items()}
    print(f"sandbox create + destroy, median of {rounds} rounds, {os.cpu_count()} CPUs")
    print(f"  ours        {med['ours']:7.1f} ms  (create {med['create']:.1f}, destroy "
          f"{med['destroy']:.1f}); first one in the process {first * 1000:.0f} ms "
          "(imports pyroute2)")
    print(f"  ip + files  {med['ip + files']:7.1f} ms  ratio ours/peer "
          f"{round_ratio(times['ours'], times['ip + files']):.2f}x")
    print(f"  ip netns    {med['ip netns']:7.1f} ms  ratio ours/peer "
          f"{round_ratio(times['ours'], times['ip netns']):.2f}x  (add/del x2 only)")
    figure("sandbox create + destroy", f"{med['ours']:.1f} ms",
           f"ip + files (bash) {med['ip + files']:.1f} ms; ip netns add/del x2 "
           f"{med['ip netns']:.1f} ms",
           f"{round_ratio(times['ours'], times['ip + files']):.2f}x; "
           f"{round_ratio(times['ours'], times['ip netns']):.2f}x",
           f"<= {TARGET_RATIO:g}x ip netns", round_ratio(times["ours"], times["ip netns"]) <= TARGET_RATIO)
    return 0


if __name__ == "__main__":
    sys.exit(main())
