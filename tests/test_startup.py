"""The entry point's start-up: no garbage collection until the command has loaded what it
needs (chaos/startup.py), then the loaded objects frozen and collection back on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import SCENARIOS

PROBE = """
import gc, sys
from chaos import startup
seen = []
resume = startup.resume
def watched():
    seen.append(gc.isenabled())
    resume()
    seen.append(gc.isenabled() and gc.get_freeze_count() > 0)
startup.resume = watched
{before}
sys.argv = ["chaos", *{argv!r}]
from chaos.__main__ import main
try:
    main()
except SystemExit as exc:
    print(exc.code, seen, gc.isenabled())
"""


def entry_point(argv: list[str], before: str = "") -> str:
    code = PROBE.format(argv=argv, before=before)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr


@pytest.mark.parametrize("argv", [["validate", str(SCENARIOS / "dockerhub-hosts-entry.yaml")],
                                  ["list"]])
def test_collection_is_off_until_the_command_has_loaded_then_frozen_and_on(argv):
    # run and validate resume once their scenarios are loaded, every other command at once
    assert entry_point(argv) == "0 [False, True] True"


def test_a_collector_switched_off_before_stays_off():
    assert entry_point(["list"], before="gc.disable()") == "0 [False, False] False"
