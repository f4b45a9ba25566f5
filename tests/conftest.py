"""Shared fixtures: a private state dir, the real `chaos` CLI, and machine snapshots."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

# A sandbox scenario whose during probe fails (the route to its server is cut): exit 1.
FAILING = """\
name: expected-to-fail
description: the during probe expects the registry to answer, but the route is cut
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: prohibit
expect:
  during:
    - name: registry should answer (it will not)
      http: http://registry.test/
      status: 200
      within: 2s
  after:
    - http: http://registry.test/
"""


@pytest.fixture
def state_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "state"
    monkeypatch.setenv("CHAOS_STATE_DIR", str(path))
    return path


def chaos_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "chaos", *args]  # the entry point users run


@pytest.fixture
def netns():
    """A throw-away network namespace with its loopback up, removed after the test."""
    name = f"chaos-t{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


@pytest.fixture
def chaos(state_dir):
    """Run the real CLI in a subprocess; returns CompletedProcess (text)."""

    def run(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
        env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
        return subprocess.run(chaos_cmd(*args), capture_output=True, text=True, timeout=timeout,
                              env=env, cwd=ROOT, stdin=subprocess.DEVNULL, **kwargs)

    return run


# What the registry lab runs (scripts/setup installs them: docker.io, docker-registry,
# skopeo, busybox-static, iproute2, util-linux, curl, iptables).
LAB_BINARIES = ("ip", "unshare", "nsenter", "docker-registry", "skopeo", "dockerd",
                "containerd", "curl", "iptables-save", "busybox")


def require_binaries(*names: str, why: str = "the lab needs") -> None:
    """Skip when a binary is missing, except under CI=true: there a missing package is a
    broken setup that must fail, not a test quietly skipped."""
    missing = [b for b in names if shutil.which(b) is None]
    if not missing:
        return
    message = f"{why}: {', '.join(missing)} missing (scripts/setup installs them)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def lab_binaries():
    """Module fixture form of require_binaries(*LAB_BINARIES), for autouse in lab modules."""
    require_binaries(*LAB_BINARIES)


def _cmd(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _rules(text: str) -> str:
    # Comment lines carry a timestamp and counters move with any traffic: neither is a change.
    lines = [re.sub(r"\[\d+:\d+\]", "", line) for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(lines)


def snapshot() -> dict:
    """What a run may touch on the machine, as text to compare byte for byte."""
    netns_etc = sorted(os.listdir("/etc/netns")) if os.path.isdir("/etc/netns") else None
    return {
        "iptables": _rules(_cmd("iptables-save")),
        "ip6tables": _rules(_cmd("ip6tables-save")),
        "routes": _cmd("ip", "route", "show", "table", "all"),
        "routes6": _cmd("ip", "-6", "route", "show", "table", "all"),
        "hosts": Path("/etc/hosts").read_bytes(),
        "netns": _cmd("ip", "netns", "list"),
        "etc_netns": netns_etc,
        "links": _cmd("ip", "-o", "link", "show"),
    }


def assert_same(before: dict, after: dict) -> None:
    for key in before:
        assert after[key] == before[key], f"{key} differs after the run"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
