"""What every step kind shares: a name, a bound, and one action on the lab."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from chaos.probes.base import ProbeBase
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import model_validator

if TYPE_CHECKING:
    from chaos.journal import Journal
    from chaos.lab.lab import Lab
    from chaos.probes.result import ProbeResult
    from chaos.probes.run import Place


class StepBase(ProbeBase):
    """A step: it changes the lab (its upstream's content, a component) or waits. Its result
    passes once the change is done (for a start, once the component answers), and fails
    with what stood in the way; it is journaled (a note, and the processes it starts)."""

    kind: ClassVar[str] = "step"
    has_client: ClassVar[bool] = False
    needs_lab: ClassVar[bool] = True

    within: Duration | None = None
    """The step must be done within this time (a start or restart: the component answers);
    later, it fails. It is given up at `within` plus a grace period."""
    timeout: Duration | None = None
    """Bound of the step when there is no `within` (default 30s)."""
    region: str | None = None
    """Refused: a step acts on the lab, not from a client's region."""

    @model_validator(mode="after")
    def _no_region(self):
        if self.region is not None:
            raise ValueError(f"region: a `{self.key}` step acts on the lab, not from a client region")
        return self

    def act(self, lab: Lab, journal: Journal, limit: float) -> str:
        """Do it, within ``limit`` seconds; one line saying what was done."""
        raise NotImplementedError

    def observe(self, place: Place, journal: Journal, result: ProbeResult) -> None:
        import time

        from chaos.lab.clients import ClientError
        from chaos.lab.ready import NotReady
        from chaos.probes import expect
        from chaos.probes.run import bound

        if self.needs_lab and place.lab is None:
            raise RuntimeError(f"the `{self.key}` step needs `lab: registry`")
        journal.note(event="step", step=self.key, what=self.describe())
        start = time.monotonic()
        try:
            done, ok = self.act(place.lab, journal, bound(self)), True  # type: ignore[arg-type]
        except (NotReady, ClientError) as exc:  # what stood in the way is the observation
            if isinstance(exc, ClientError):
                output = exc.output.strip()
                done = f"not done: {exc.reason}" + (f": {expect.last_line(output)}" if output else "")
            else:  # the log's tail goes to the details, the reason to the console
                done = f"not done: {exc.what} not ready: {exc.reason}"
                result.detail["log"] = str(exc)[-2000:]
            ok = False
        result.duration = time.monotonic() - start
        result.observed = done[:500]
        journal.note(event="step-done", step=self.key, ok=ok, observed=done[:500])
        result.checks.append(expect.Check(self.key, "done", done[:300], ok))
        result.checks += expect.within_check(self.within, result.duration)
