"""The entry point's start-up: no garbage collection until the command has loaded what it
needs (chaos/startup.py), then the loaded objects frozen and collection back on; no
pydantic plugin loader (chaos/cli.py)."""

from __future__ import annotations

import os
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
    print(exc.code, {report})
"""
VALIDATE = ["validate", str(SCENARIOS / "dockerhub-hosts-entry.yaml")]


def entry_point(argv: list[str], before: str = "", report: str = "seen, gc.isenabled()",
                env: dict | None = None) -> str:
    """The last line `chaos ARGV` prints: its exit code, then ``report`` evaluated after it."""
    code = PROBE.format(argv=argv, before=before, report=report)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr


@pytest.mark.parametrize("argv", [VALIDATE, ["list"]])
def test_collection_is_off_until_the_command_has_loaded_then_frozen_and_on(argv):
    # run and validate resume once their scenarios are loaded, every other command at once
    assert entry_point(argv) == "0 [False, True] True"


def test_a_collector_switched_off_before_stays_off():
    assert entry_point(["list"], before="gc.disable()") == "0 [False, False] False"


def test_a_run_looks_for_no_pydantic_plugins():
    """The CLI replaces pydantic's plugin loader (importlib.metadata and a scan of every
    installed distribution); a PYDANTIC_DISABLE_PLUGINS the user set keeps pydantic's own."""
    report = "'importlib.metadata' in sys.modules, sys.modules['pydantic.plugin._loader'].get_plugins()"
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    assert entry_point(VALIDATE, report=report, env=env) == "0 False ()"
    assert entry_point(VALIDATE, report=report,
                       env={**env, "PYDANTIC_DISABLE_PLUGINS": "__all__"}) == "0 True ()"


def test_pydantic_asks_its_plugin_loader_for_get_plugins_only():
    """What the CLI's stand-in loader provides is all pydantic uses of it (a pydantic
    upgrade that uses more fails here, not in a run)."""
    import inspect
    import re

    import pydantic.plugin._schema_validator as schema_validator

    source = inspect.getsource(schema_validator)
    assert re.findall(r"_loader import (.+)", source) == ["get_plugins"]
    assert source.count("_loader") == 1


CTRL_C_IN_FIRST_IMPORT = """\
import importlib.abc, os, signal, sys

class CtrlC(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "chaos.startup":
            os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C lands inside this import
        return None

sys.meta_path.insert(0, CtrlC())
from chaos.__main__ import main
main()
"""


def test_ctrl_c_in_the_entry_points_first_import_exits_130_quietly():
    """The campaign's R4 test caught a Ctrl-C landing in `from chaos import startup`, the
    one import the entry point made outside its guard: a KeyboardInterrupt traceback."""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_IN_FIRST_IMPORT], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip() == "interrupted"
