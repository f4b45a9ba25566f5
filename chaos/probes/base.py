"""What every probe kind shares: timing bounds, a region, and the hooks a kind fills in."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from chaos.scenario.model import Duration, Strict
from chaos.scenario.modelbase import Field, model_validator

if TYPE_CHECKING:
    from chaos.journal import Journal
    from chaos.plan import PlanContext
    from chaos.probes.result import ProbeResult
    from chaos.probes.run import Place


class ProbeBase(Strict):
    kind: ClassVar[str]
    """The kind's name in the console and reports (`command`, `docker-pull`, ...)."""
    key: ClassVar[str]
    """The key that marks this kind in a scenario (its entry in chaos.probes.PROBES)."""
    has_client: ClassVar[bool] = True
    """It runs a client of its own, whose connections a failed or hung verdict lists (the
    counting kinds only read logs: False)."""

    name: str | None = None
    """Shown in the console and reports (default: the command, URL or address)."""
    within: Duration | None = None
    """The probe must finish within this time. A probe still running at `within` plus a
    grace period is killed and reported as hung, not as failed."""
    timeout: Duration | None = None
    """Hard limit when there is no `within` (default 30s)."""
    region: str | None = None
    """Run from this region's client namespace (see `regions:`) instead of the default client."""

    def observe(self, place: Place, journal: Journal, result: ProbeResult) -> None:
        """Run the probe where ``place`` says and add what it saw to ``result``: its checks,
        duration and details, or the verdict HUNG. An exception makes it an ERROR."""
        raise NotImplementedError

    def describe(self) -> str:
        """What the console and reports call it when it has no `name:`."""
        return str(getattr(self, self.key))

    def prepare(self, ctx: PlanContext) -> None:
        """Hook: ask the run, while it plans, for what this probe will need (e.g. the DNS
        server whose queries it counts)."""


class Counts(Strict):
    """What a counting probe expects of its count."""

    since: Literal["phase", "run"] = "phase"
    """Count from the start of this probe's phase, or from the start of the run."""
    count: int | None = Field(None, ge=0)
    """Exactly this many must have been counted."""
    at_least: int | None = Field(None, ge=0)
    """At least this many must have been counted."""
    at_most: int | None = Field(None, ge=0)
    """At most this many may have been counted (0: none at all)."""


class CountedProbe(ProbeBase, Counts):
    @model_validator(mode="after")
    def _some_bound(self):
        self._lift()
        if self.count is None and self.at_least is None and self.at_most is None:
            raise ValueError("give count, at_least or at_most")
        return self

    def _lift(self) -> None:
        """Hook: a probe whose key also takes a mapping moves that mapping's keys up here."""

    def blind_spot(self, scenario, span) -> tuple[tuple, str] | None:
        """What this count cannot see in ``scenario`` over ``span`` (chaos.probes.coverage):
        (the field it is about, the reason and what to add), or None when it sees all it
        counts. Every counting kind must answer: a count that missed traffic can pass."""
        raise NotImplementedError
