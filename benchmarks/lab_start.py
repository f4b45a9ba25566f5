"""Lab set-up: what a lab scenario spends before its first probe (chaos.lab.lab_up).

    sudo .venv/bin/python benchmarks/lab_start.py [--rounds 5]

Ours: ``lab_up`` with the seed storage kept from an earlier lab (chaos.lab.seeded), as every
lab after the first on a machine runs. Peer, in the same rounds (alternating order): the
same ``lab_up`` with an empty image cache, which builds the seed images and pushes them
through the registry API, as every lab did before the storage was kept. Each lab is torn
down (journal rollback) before the next. Prints the median of each phase too.

Target: set-up <= 3 s median.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import count_arg, figure, median, need_root, round_ratio

TARGET_S = 3.0


def one(work: Path, image_cache: Path, n: int) -> dict[str, float]:
    from chaos.journal import Journal
    from chaos.lab import lab_up

    journal = Journal.create(f"bench-lab-{os.getpid()}-{n}", work / "state")
    try:
        return dict(lab_up(journal, work / f"run{n}", image_cache=image_cache).timings)
    finally:
        journal.rollback()
        journal.finish()


def main() -> int:
    rounds = count_arg(__doc__, "rounds", default=5, quick=2)
    need_root()
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-lab-", dir="/var/tmp"))
    kept = work / "kept"
    results: dict[str, list[dict[str, float]]] = {"kept": [], "pushed": []}
    try:
        one(work, kept, 0)  # fills the kept cache (and pays for first imports)
        n = 1
        for i in range(rounds):
            order = ["kept", "pushed"]
            for name in order if i % 2 == 0 else order[::-1]:
                cache = kept if name == "kept" else work / f"empty{n}"
                results[name].append(one(work, cache, n))
                shutil.rmtree(work / f"empty{n}", ignore_errors=True)
                n += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, runs in results.items():
        phases = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:7} " + "  ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
    ours = [r["total"] for r in results["kept"]]
    peer = [r["total"] for r in results["pushed"]]
    ratio = round_ratio(ours, peer)
    figure("lab set-up (seed kept)", f"{median(ours):.2f} s", f"{median(peer):.2f} s (seed pushed)",
           f"{ratio:.2f}x", f"<= {TARGET_S:.0f} s", median(ours) <= TARGET_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
