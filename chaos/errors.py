"""Exit statuses and the errors that map onto them (one place: chaos.cli.main)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ExitStatus(enum.IntEnum):
    OK = 0               # every expectation met
    EXPECTATION = 1      # an expectation failed (or the steady state did not hold)
    INVALID = 2          # invalid scenario or command line
    INJECTION = 3        # a fault could not be injected or reverted: the machine may hold residue
    INTERRUPTED = 130    # Ctrl-C (SIGINT); everything was reverted first
    TERMINATED = 143     # SIGTERM; everything was reverted first


@dataclass
class Problem:
    """One thing wrong with a scenario, located in its file."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ChaosError(Exception):
    status = ExitStatus.INJECTION


class ScenarioInvalid(ChaosError):
    status = ExitStatus.INVALID

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class PlanError(ChaosError):
    """A scenario that is valid YAML but cannot be planned here (guardrail, unknown name)."""

    status = ExitStatus.INVALID

    def __init__(self, path: tuple, message: str) -> None:
        self.path, self.message = path, message
        super().__init__(message)


class PluginError(ChaosError):
    """An installed package's fault type or probe kind that cannot be used (chaos.plugins):
    its name taken, its import failing."""

    status = ExitStatus.INVALID

    def __init__(self, message: str, group: str = "", name: str = "") -> None:
        self.group, self.name = group, name
        super().__init__(message)


class PlanErrors(PlanError):
    """Every fault's refusal at once (the first one's path and message stand for all)."""

    def __init__(self, errors: list[PlanError]) -> None:
        super().__init__(errors[0].path, errors[0].message)
        self.errors = errors


class NeedsMachine(PlanError):
    """A refusal that depends on this machine, not on the file (a container the docker
    daemon does not know): `chaos validate` leaves it to `chaos run`."""


class InjectionError(ChaosError):
    status = ExitStatus.INJECTION


class Interrupted(BaseException):
    """Raised in the main thread by SIGTERM (SIGINT raises KeyboardInterrupt)."""
