"""`chaos run FILE...` from the validated-scenario cache: no click, PyYAML or pydantic.

Taken when the command is `run` with scenario files and only --host, --state-dir, --json,
-v/--verbose, and every file's current bytes have a cache entry (chaos/scenario/cache.py,
written by the normal path after it validated them). Then the models are rebuilt on the
plain base (chaos/scenario/light.py) and the scenarios run as the CLI runs them
(chaos/run_command.py): same lines, reports, journal and exit status. Any other option,
a folder, a miss or an entry that does not fit: None, and the click CLI does it all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from chaos import startup

FLAGS = {"--host": "host", "-v": "verbose", "--verbose": "verbose"}
VALUED = {"--state-dir": "state_dir", "--json": "json"}


def parse(argv: list[str]) -> tuple[list[str], dict] | None:
    """(files, options) of a simple `chaos run`, else None."""
    if not argv or argv[0] != "run":
        return None
    files: list[str] = []
    options: dict = {}
    args = iter(argv[1:])
    for arg in args:
        name, eq, value = arg.partition("=")
        if arg in FLAGS and FLAGS[arg] not in options:
            options[FLAGS[arg]] = True
        elif name in VALUED and VALUED[name] not in options:
            if not eq:
                value = next(args, "")
            if not value:
                return None
            options[VALUED[name]] = value
        elif arg.startswith("-") or not os.path.isfile(arg):
            return None  # another option, a folder, a missing file: the CLI says what to
        else:
            files.append(arg)
    if not files or os.path.isdir(options.get("json", "")):
        return None
    return files, options


def prepare(argv: list[str]) -> Callable[[], int] | None:
    """The run of these scenarios from the cache, or None for the normal path."""
    parsed = parse(argv)
    if parsed is None:
        return None
    files, options = parsed
    from chaos.journal import state_dir
    from chaos.scenario import cache

    state = options.get("state_dir") or os.environ.get("CHAOS_STATE_DIR") or None
    found = [cache.find(state_dir(state), f) for f in files]
    entries = [entry for entry in found if entry is not None]
    if len(entries) < len(files):
        return None
    before = set(sys.modules)
    startup.light_models = True
    try:
        loaded = [(Path(f), cache.rebuild(entry, str(Path(f))))
                  for f, entry in zip(files, entries, strict=True)]
    except ValueError:
        # Forget what was imported on the light base: the normal path imports it anew.
        for name in set(sys.modules) - before:
            if name.startswith("chaos."):
                del sys.modules[name]
        startup.light_models = False
        return None
    return lambda: _run(loaded, options, state)


def _run(loaded: list, options: dict, state: str | None) -> int:
    """cli.run's sequential path for these options."""
    from chaos import jobs, run_command, runner

    jobs.follow_parent()  # a child run of `chaos run -j` ends when its parent dies
    startup.resume()
    run_options = runner.RunOptions(host_mode=bool(options.get("host")), state_dir=state,
                                    variables={}, docker_host=None, cache=None,
                                    client="dockerd", client_version=None)
    with runner.signals_recorded(restore=False):
        results, rest = run_command.run_in_order(loaded, run_options, bool(options.get("verbose")))
        run_command.write_reports(results + rest, options.get("json"), None, None)
    return run_command.worst(run_command.exit_codes(results, loaded, []))
