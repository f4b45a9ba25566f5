"""The python-probe agent: call one function with a ProbeContext, the outcome as JSON.

`python -m chaos.probes.python_agent` reads the request on stdin (function, args, kwargs,
placeholders, namespace, environment) and prints {"returned": {"ok", "exit", "output",
"detail"}, "duration"} or {"error", "traceback", "duration"}. The function's own prints go
to stderr (kept in the report), so they cannot spoil the answer. Standard library only, to
start fast; the runner started it in the clients' namespace and kills its group when it hangs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import Any


@dataclass
class Completed:
    """What ``ProbeContext.run`` saw: exit status (None: killed at the timeout) and output."""

    exit: int | None
    stdout: str
    stderr: str


@dataclass
class ProbeContext:
    """What a python probe gets as its first argument."""

    variables: dict = field(default_factory=dict)
    """The run's {name} placeholders (--var, the lab's names, `logs`)."""
    netns: str | None = None
    """The network namespace the call runs in (None: the host, with --host)."""
    env: dict = field(default_factory=dict)
    """Environment the run gives its clients (already set in os.environ here)."""
    region: str | None = None
    """The probe's `region:`, if any."""
    timeout: float = 30.0
    """Seconds the probe has before it counts as hung."""

    @property
    def logs(self) -> Path | None:
        """The run's logs folder (servers' and services' logs), when the run has one."""
        logs = self.variables.get("logs")
        return Path(logs) if logs else None

    def expand(self, text: str) -> str:
        """``text`` with its {name} placeholders filled in."""
        for key, value in self.variables.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def run(self, command: str, timeout: float | None = None) -> Completed:
        """Run a shell command where the clients live (here), placeholders expanded, each
        value quoted as one literal word (see chaos.probes.shell)."""
        from chaos.probes.shell import shell_expand

        filled = shell_expand(command, {str(k): str(v) for k, v in self.variables.items()})
        try:
            done = subprocess.run(["sh", "-c", filled], capture_output=True,
                                  text=True, errors="replace", timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired as exc:
            return Completed(None, _text(exc.stdout), _text(exc.stderr))
        return Completed(done.returncode, done.stdout, done.stderr)


def _text(data) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")


def outcome(value) -> dict:
    """What the function returned, as the probe judges it."""
    if isinstance(value, dict):
        exit_status = value.get("exit")
        ok = value.get("ok", exit_status == 0 if exit_status is not None else True)
        return {"ok": bool(ok), "exit": exit_status, "output": value.get("output"),
                "detail": value.get("detail")}
    if value is None or isinstance(value, bool):
        return {"ok": value is not False, "exit": None, "output": None, "detail": None}
    if isinstance(value, int):
        return {"ok": value == 0, "exit": value, "output": None, "detail": None}
    if isinstance(value, str):
        return {"ok": True, "exit": None, "output": value, "detail": None}
    return {"ok": True, "exit": None, "output": repr(value), "detail": None}


def call(request: dict) -> dict:
    start = time.monotonic()
    try:
        module, _, name = request["function"].partition(":")
        function: Any = import_module(module)
        for part in name.split("."):
            function = getattr(function, part)
        context = ProbeContext(request.get("variables") or {}, request.get("netns"),
                               request.get("env") or {}, request.get("region"),
                               float(request.get("timeout") or 30.0))
        value = function(context, *request.get("args", []), **request.get("kwargs", {}))
        return {"returned": outcome(value), "duration": time.monotonic() - start}
    except Exception as exc:  # noqa: BLE001 - the probe's error, reported with its traceback
        # From the function down: this module's own frame is no news to the reader.
        frames = exc.__traceback__.tb_next if exc.__traceback__ else None
        return {"error": f"{type(exc).__name__}: {exc}",
                "traceback": "".join(traceback.format_exception(type(exc), exc, frames)),
                "duration": time.monotonic() - start}


def main() -> None:
    request = json.loads(sys.stdin.read())
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # the function's prints (and its children's) go to stderr
    sys.stdout = sys.stderr
    answer = call(request)
    with os.fdopen(answer_fd, "w") as out:
        out.write(json.dumps(answer, default=repr))


if __name__ == "__main__":
    main()
