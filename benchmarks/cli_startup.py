"""CLI start-up: `chaos --help` against Chaos Toolkit's `chaos --help`; `chaos validate` of 50 scenarios.

    .venv/bin/python benchmarks/cli_startup.py [--runs 20]

1. ``chaos --help``, each run a new process (cold: no server, nothing kept between runs;
   the page cache is warm, dropping it would disturb everyone else on this machine), in
   alternating rounds with Chaos Toolkit's ``chaos --help`` (from its own venv, see
   process_time.py). Target: <= 1.0x Chaos Toolkit.
2. ``chaos validate DIR`` of 50 scenario files (the shipped scenarios, copied round-robin
   under new names), against ``chaos validate`` of one of them in the same rounds (what the
   49 more cost). Target: <= 1 s.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import CTK_INSTALL, alternate, chaos_argv, count_arg, ctk_argv, figure, median, round_ratio, run_quiet

REPO = Path(__file__).resolve().parent.parent
COUNT = 50


def copy_scenarios(dest: Path, chaos: list[str]) -> None:
    """COUNT files made from the shipped scenarios that validate (others may be half-written
    by someone right now), round-robin, each under a name of its own."""
    out = run_quiet(chaos + ["validate", str(REPO / "scenarios")], check=False).stdout.decode()
    sources = [Path(line[:-len(": ok")]) for line in out.splitlines() if line.endswith(": ok")]
    if not sources:
        raise SystemExit("no valid scenarios in scenarios/")
    for i, src in zip(range(COUNT), itertools.cycle(sources)):
        text = re.sub(r"^name: ", f"name: n{i:02d}-", src.read_text(), count=1, flags=re.M)
        (dest / f"{i:02d}-{src.name}").write_text(text)


def main() -> int:
    runs = count_arg(__doc__, "runs", default=20, quick=8)
    ours = chaos_argv()
    ctk = ctk_argv()

    # 1. --help
    commands = {"chaos --help": ours + ["--help"]}
    if ctk:
        commands["chaostoolkit --help"] = ctk + ["--help"]
    helps = alternate(commands, runs, warmup=1)
    mine = helps["chaos --help"]
    print(f"start-up, median of {runs} alternating runs, {os.cpu_count()} CPUs")
    for name, v in helps.items():
        print(f"  {name:20s} wall {median(v['wall']) * 1000:6.1f} ms   CPU "
              f"{median(v['cpu']) * 1000:6.1f} ms")
    if ctk:
        peer = helps["chaostoolkit --help"]
        ratio = round_ratio(mine["wall"], peer["wall"])
        print(f"  ratio ours/Chaos Toolkit: wall {ratio:.2f}x, CPU "
              f"{round_ratio(mine['cpu'], peer['cpu']):.2f}x")
        figure("chaos --help (new process)", f"{median(mine['wall']) * 1000:.0f} ms",
               f"Chaos Toolkit chaos --help {median(peer['wall']) * 1000:.0f} ms",
               f"{ratio:.2f}x", "<= 1.0x Chaos Toolkit", ratio <= 1.0)
    else:
        print(f"  Chaos Toolkit not installed ({CTK_INSTALL}): no ratio")
        figure("chaos --help (new process)", f"{median(mine['wall']) * 1000:.0f} ms",
               "Chaos Toolkit: not installed", "-", "<= 1.0x Chaos Toolkit", None)

    # 2. validate 50
    work = Path(tempfile.mkdtemp(prefix="chaos-bench-validate-"))
    try:
        lib = work / "library"
        lib.mkdir()
        copy_scenarios(lib, ours)
        one = sorted(lib.iterdir())[0]
        out = run_quiet(ours + ["validate", str(lib)]).stdout.decode()
        if out.count(": ok") != COUNT:
            raise SystemExit(f"expected {COUNT} valid scenarios, chaos validate said:\n{out}")
        t = alternate({"validate 50": ours + ["validate", str(lib)],
                       "validate 1": ours + ["validate", str(one)]}, runs, warmup=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    v50, v1 = median(t["validate 50"]["wall"]), median(t["validate 1"]["wall"])
    print(f"  chaos validate, {COUNT} files  wall {v50 * 1000:6.1f} ms  (1 file {v1 * 1000:.1f} ms:"
          f" {(v50 - v1) / (COUNT - 1) * 1000:.2f} ms per more file)")
    figure(f"chaos validate, {COUNT} scenarios", f"{v50 * 1000:.0f} ms",
           f"chaos validate of 1: {v1 * 1000:.0f} ms",
           f"{round_ratio(t['validate 50']['wall'], t['validate 1']['wall']):.2f}x",
           "<= 1 s", v50 <= 1.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
