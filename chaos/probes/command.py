"""run: a shell command where the clients live; its exit status and output are judged."""

from __future__ import annotations

from typing import Literal

from chaos.probes.base import ProbeBase
from chaos.scenario.model import TextMatch


class CommandProbe(ProbeBase):
    """Run a shell command inside the sandbox (or on the host with --host)."""

    kind = "command"
    key = "run"

    run: str
    """The shell command (sh -c)."""
    exit: int | Literal["nonzero", "any"] = 0
    """Expected exit status: a number, `nonzero` or `any`."""
    stdout: TextMatch | None = None
    """Checks on standard output."""
    stderr: TextMatch | None = None
    """Checks on standard error."""
    output: TextMatch | None = None
    """Checks on standard output and standard error together."""

    def observe(self, place, journal, result) -> None:
        from chaos.probes import evidence, expect
        from chaos.probes.result import HUNG
        from chaos.probes.run import OUTPUT_KEEP, bound, run_process

        command = place.expand_shell(self.run)
        code, out, err, took = run_process(journal, ["sh", "-c", command], place, bound(self),
                                           at_bound=lambda: evidence.take_connections(place, result))
        result.duration = took
        result.detail.update(command=command, exit=code, stdout=out[-OUTPUT_KEEP:],
                             stderr=err[-OUTPUT_KEEP:])
        if code is None:
            result.verdict = HUNG
            return
        result.checks.append(expect.exit_check(self.exit, code))
        if self.exit not in (0, "any"):  # about an error: which one came
            result.observed = expect.exit_observed(code, err, out)
        result.checks += expect.text_checks("stdout", self.stdout, out)
        result.checks += expect.text_checks("stderr", self.stderr, err)
        result.checks += expect.text_checks("output", self.output, out + err)
        result.checks += expect.within_check(self.within, took)
