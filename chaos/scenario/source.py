"""Where each value of a scenario file stood, and plan-time refusals located by it.

Apart from chaos/scenario/load.py (which builds the map with PyYAML) so that a run of a
cached scenario (chaos/scenario/cache.py) locates its plan errors without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos.errors import PlanError, Problem


@dataclass
class SourceMap:
    """Where each value of a loaded document stood: path tuple -> (line, column), 1-based."""

    file: str
    values: dict[tuple, tuple[int, int]] = field(default_factory=dict)
    keys: dict[tuple, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: tuple, key: bool = False) -> tuple[int, int]:
        table = self.keys if key else self.values
        while path not in table and path:
            path = path[:-1]
        return table.get(path, self.values.get((), (1, 1)))

    def problem(self, path: tuple, message: str, key: bool = False) -> Problem:
        line, col = self.position(path, key)
        return Problem(self.file, line, col, format_path(path), message)


def format_path(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, str) and not part.strip():
            part = repr(part)  # an empty (or blank) key must still show in the field
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def plan_problem(scenario, error: PlanError) -> Problem:
    """A plan-time refusal, located like a validation problem."""
    source = getattr(scenario, "_source", None) or SourceMap("<scenario>")
    return source.problem(error.path, error.message)


def plan_problems(scenario, error: PlanError) -> list[Problem]:
    """Every refusal of a plan (``PlanErrors`` holds one per fault), located, in file order."""
    problems = [plan_problem(scenario, e) for e in getattr(error, "errors", [error])]
    return sorted(problems, key=lambda p: (p.line, p.column))
