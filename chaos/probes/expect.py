"""Expectation checks shared by every probe kind."""

from __future__ import annotations

import re

from chaos.durations import format_duration
from chaos.probes.result import Check


def _as_list(value) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _short(text: str, limit: int = 120) -> str:
    text = text.strip().replace("\n", "\\n")
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def text_checks(what: str, match, text: str) -> list[Check]:
    if match is None:
        return []
    checks = []
    for needle in _as_list(match.contains):
        checks.append(Check(f"{what} contains", repr(needle), _short(text), needle in text))
    for needle in _as_list(match.not_contains):
        checks.append(Check(f"{what} does not contain", repr(needle), _short(text), needle not in text))
    if match.regex is not None:
        checks.append(Check(f"{what} matches", f"/{match.regex}/", _short(text),
                            re.search(match.regex, text) is not None))
    return checks


def exit_check(expected, code: int) -> Check:
    if expected == "any":
        ok = True
    elif expected == "nonzero":
        ok = code != 0
    else:
        ok = code == expected
    return Check("exit", str(expected), str(code), ok)


def within_check(within: float | None, duration: float) -> list[Check]:
    if within is None:
        return []
    return [Check("within", f"<= {format_duration(within)}", format_duration(duration),
                  duration <= within)]


def status_check(expected, observed: dict) -> Check:
    status = observed.get("status")
    seen = str(status) if status is not None else f"no answer ({observed.get('error')}: {observed.get('message', '')})"
    if expected == "error":
        return Check("status", "no HTTP answer", seen, status is None)
    allowed = expected if isinstance(expected, list) else [expected]
    return Check("status", " or ".join(map(str, allowed)), seen, status in allowed)


def count_checks(what: str, n: int, probe, observed: str | None = None,
                 in_flight: int = 0) -> list[Check]:
    """`count` / `at_least` / `at_most` of a counting probe against what was counted (of
    which ``in_flight`` had begun and not ended yet: counted, and said so)."""
    observed = observed or str(n) + (f" ({in_flight} in flight)" if in_flight else "")
    checks = []
    for label, bound, ok in (("=", probe.count, lambda b: n == b), (">=", probe.at_least, lambda b: n >= b),
                             ("<=", probe.at_most, lambda b: n <= b)):
        if bound is not None:
            checks.append(Check(what, f"{label} {bound}", observed, ok(bound)))
    return checks
