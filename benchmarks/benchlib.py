"""Small helpers shared by the benchmark scripts: timing, medians, throw-away namespaces.

Absolute times on a shared machine drift by tens of percent within a minute, so every
figure is measured next to its peer in the same run, in alternating rounds, and reported
as medians plus the median of the per-round ratios (two things measured a moment apart
share the machine's mood).
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
CTK_VENV = Path(os.environ.get("CHAOSTOOLKIT_VENV", "/opt/chaostoolkit-venv"))
CTK_INSTALL = (f"python3 -m venv {CTK_VENV} && {CTK_VENV}/bin/pip install chaostoolkit  "
               "(its own venv: its CLI is also called `chaos`)")


def chaos_argv() -> list[str]:
    """Our `chaos` entry point, the console script of this interpreter's venv."""
    script = VENV_BIN / "chaos"
    return [str(script)] if script.exists() else [sys.executable, "-m", "chaos"]


def ctk_argv() -> list[str] | None:
    """Chaos Toolkit's `chaos` (never the one on PATH: that may be ours), None if missing."""
    script = CTK_VENV / "bin" / "chaos"
    return [str(script)] if script.exists() else None


def median(values) -> float:
    return statistics.median(values)


def pct(values, p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(fn, *args, **kwargs) -> float:
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def run_quiet(argv: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, **kwargs)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-600:]}")
    return proc


def time_command(argv: list[str], **kwargs) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    run_quiet(argv, **kwargs)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def alternate(commands: dict[str, list[str]], runs: int, warmup: int = 1,
              **kwargs) -> dict[str, dict[str, list[float]]]:
    """Run each command ``runs`` times, interleaved (A B, B A, A B ...), after ``warmup``
    untimed rounds. -> name -> {"wall": [...], "cpu": [...]}, one entry per round."""
    names = list(commands)
    for _ in range(warmup):
        for name in names:
            run_quiet(commands[name], **kwargs)
    out = {name: {"wall": [], "cpu": []} for name in names}
    for i in range(runs):
        for name in names if i % 2 == 0 else names[::-1]:
            wall, cpu = time_command(commands[name], **kwargs)
            out[name]["wall"].append(wall)
            out[name]["cpu"].append(cpu)
    return out


def round_ratio(a: list[float], b: list[float]) -> float:
    """Median of per-round ratios a/b."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def figure(name: str, value: str, peer: str, ratio: str, target: str, ok: bool | None) -> None:
    """The one line benchmarks/run collects for its table (tab separated after the tag)."""
    state = "-" if ok is None else verdict(ok)
    print("FIGURE\t" + "\t".join((name, value, peer, ratio, target, state)), flush=True)


def need_root() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")


@contextmanager
def namespace(prefix: str = "chaos-bench"):
    """A throw-away network namespace (removed at exit, also on errors), loopback up."""
    name = f"{prefix}-{os.getpid()}-{secrets.token_hex(2)}"
    run_quiet(["ip", "netns", "add", name])
    try:
        run_quiet(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], stderr=subprocess.DEVNULL)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)


def socket_in(netns: str, family: int, kind: int):
    """A socket created inside ``netns`` (a socket stays in the namespace it was made in), so
    this process can talk to servers there without running a client through ip netns exec."""
    import socket

    from chaos.sandbox.enter import in_netns

    return in_netns(netns, socket.socket, family, kind)


def count_arg(doc: str, name: str, default: int, quick: int) -> int:
    """The one option every benchmark takes: how many rounds (``--NAME``, or ``--quick``)."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--quick", action="store_true", help=f"{quick} {name}")
    args = parser.parse_args()
    return quick if args.quick else getattr(args, name)
