"""python: call a Python function as a probe; what it returns is judged like a command's.

The function runs in a child process where the clients live (chaos.probes.python_agent),
so its sockets see the sandbox's names and routes and a hung call is killed like a hung
command. It gets a context (chaos.probes.python_agent.ProbeContext): the placeholders, the
run's logs folder, the namespace and environment, and ``run(command)`` there.
"""

from __future__ import annotations

from typing import Any, Literal

from chaos.probes.base import ProbeBase
from chaos.scenario.model import TextMatch
from chaos.scenario.modelbase import Field

GRACE = 1.0  # the child's own start and imports, on top of the probe's bound


class PythonProbe(ProbeBase):
    """Call a Python function, `module:function(context, *args, **kwargs)`, where the clients
    live. It returns None or True (success), False (failure), an exit status, a text (its
    output), or a mapping of `ok`, `exit`, `output` and `detail` (kept in the report as
    `returned`). An exception makes the probe an error, with the traceback in the report."""

    kind = "python"
    key = "python"

    python: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
    """The function: `package.module:function`, importable from the working directory or
    PYTHONPATH."""
    args: list[Any] = []
    """Arguments after the context ({name} placeholders in texts are expanded)."""
    kwargs: dict[str, Any] = {}
    """Keyword arguments ({name} placeholders in texts are expanded)."""
    ok: bool | None = None
    """Whether the call must report success (false: failure). Default: success, unless
    `exit` is given (then the exit status is the check)."""
    exit: int | Literal["nonzero", "any"] | None = None
    """Expected exit status: a number, `nonzero` or `any`; the function must return one."""
    output: TextMatch | None = None
    """Checks on the text the function returns (or the `output` of its mapping)."""

    def observe(self, place, journal, result) -> None:
        import json
        import sys

        from chaos.probes import expect
        from chaos.probes.result import ERROR, HUNG
        from chaos.probes.run import OUTPUT_KEEP, bound, run_process

        limit = bound(self)
        request = {"function": self.python, "args": _expand(self.args, place),
                   "kwargs": _expand(self.kwargs, place), "variables": place.variables,
                   "netns": place.netns, "env": place.env, "region": self.region,
                   "timeout": limit}
        argv = [sys.executable, "-m", "chaos.probes.python_agent"]
        code, out, err, took = run_process(journal, argv, place, limit + GRACE,
                                           stdin=json.dumps(request, default=str).encode())
        result.duration = took
        result.detail.update(function=self.python, stderr=err[-OUTPUT_KEEP:])
        if code is None:
            result.verdict = HUNG
            return
        try:
            answer = json.loads(out)
        except json.JSONDecodeError:
            raise RuntimeError((err or out or f"python agent exited {code}").strip()[-500:]) from None
        result.duration = answer.get("duration", took)
        if "error" in answer:
            result.verdict = ERROR
            result.detail.update(error=answer["error"], traceback=answer.get("traceback", ""))
            return
        seen = answer["returned"]
        result.detail.update({k: seen[k] for k in ("ok", "exit", "output") if seen.get(k) is not None})
        if seen.get("detail") is not None:
            result.detail["returned"] = seen["detail"]
        expected_ok = self.ok if self.ok is not None else (None if self.exit is not None else True)
        if expected_ok is not None:
            got = "succeeded" if seen["ok"] else "failed"
            result.checks.append(expect.Check("call", "succeeds" if expected_ok else "fails", got,
                                              seen["ok"] == expected_ok))
        if self.exit is not None:
            if seen.get("exit") is None:  # nothing to judge: the check must not pass
                result.checks.append(expect.Check("exit", str(self.exit),
                                                  "no exit status returned", False))
            else:
                result.checks.append(expect.exit_check(self.exit, seen["exit"]))
        result.checks += expect.text_checks("output", self.output, seen.get("output") or "")
        result.checks += expect.within_check(self.within, result.duration)


def _expand(value: Any, place) -> Any:
    if isinstance(value, str):
        return place.expand(value)
    if isinstance(value, list):
        return [_expand(v, place) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, place) for k, v in value.items()}
    return value
