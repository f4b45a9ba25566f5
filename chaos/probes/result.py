"""Probe results: a verdict, the checks behind it, how long it took."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASSED, FAILED, HUNG, ERROR = "passed", "failed", "hung", "error"
SKIPPED = "skipped"
"""Never ran to the end: the run stopped before it (a failed `before`, an injection error, a
signal) or while it ran (a signal: ``detail["cut_short"]``); ``detail["not_run"]`` says why."""


@dataclass
class Check:
    what: str
    expected: str
    observed: str
    ok: bool

    def __str__(self) -> str:
        return f"{self.what}: expected {self.expected}, observed {self.observed}"


@dataclass
class ProbeResult:
    phase: str
    name: str
    kind: str
    verdict: str = PASSED
    duration: float = 0.0
    started: float = 0.0
    """Seconds since the run started (for the timeline)."""
    checks: list[Check] = field(default_factory=list)
    detail: dict = field(default_factory=dict)
    observed: str = ""
    """One line of what the client saw, set when the expectation is about an error or a
    count (a pull's error text, an exit status and its last line, how many were counted):
    the console prints it for passing probes too."""
    evidence: dict = field(default_factory=dict)
    """What the client got so far when it failed or was killed at its bound: the
    connections it held (chaos.probes.evidence), a pull's bytes per layer."""

    @property
    def ok(self) -> bool:
        return self.verdict == PASSED

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def message(self) -> str:
        if self.verdict == SKIPPED:
            how = "cut short while it ran" if self.detail.get("cut_short") else "not run"
            return f"{how}: {self.detail.get('not_run', 'the run stopped')}"
        if self.verdict == HUNG:
            return f"hung: still running after {self.duration:.2f}s, killed"
        if self.verdict == ERROR:
            error = self.detail.get("error", "probe could not run")
            if error == "agent":  # the probe agent died: what it printed is the reason
                error = f"probe agent failed: {self.detail.get('message', 'no output')}"
            return f"error: {error}"
        return "; ".join(str(c) for c in self.failures())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: dict) -> ProbeResult:
        """The inverse of ``to_dict`` (a child run's JSON report, `chaos run -j`)."""
        fields = dict(doc)
        fields["checks"] = [Check(**c) for c in fields.get("checks", [])]
        return cls(**fields)
