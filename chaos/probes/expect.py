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


def last_line(text: str, limit: int = 200) -> str:
    """The last non-empty line of a client's output: usually the error it printed."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def exit_observed(code: int, err: str, out: str) -> str:
    said = last_line(err) or last_line(out)
    return f"exit {code}" + (f": {said}" if said else "")


def http_observed(observed: dict) -> str:
    if observed.get("status") is None:
        return f"no answer ({observed.get('error')}: {observed.get('message', '')})"
    return f"{observed['status']} {observed.get('reason', '')}, {observed.get('bytes', 0)} bytes"


def header_checks(expected: dict, observed: dict) -> list[Check]:
    """Response headers: a value to equal, checks on it (TextMatch), or None: absent."""
    if not expected:
        return []
    got = {k.lower(): v for k, v in (observed.get("headers") or {}).items()}
    answered = observed.get("status") is not None
    checks = []
    for name, want in expected.items():
        what, value = f"header {name}", got.get(name.lower())
        seen = repr(value) if value is not None else ("absent" if answered else "no HTTP answer")
        if want is None:
            checks.append(Check(what, "absent", seen, answered and value is None))
        elif value is None:
            checks.append(Check(what, repr(want) if isinstance(want, str) else "present", seen, False))
        elif isinstance(want, str):
            checks.append(Check(what, repr(want), seen, value == want))
        else:
            checks += text_checks(what, want, value)
    return checks


def size_checks(what: str, expected, observed: dict) -> list[Check]:
    """A body size in bytes: exactly ``expected`` (an int) or within its at_least/at_most."""
    if expected is None:
        return []
    n = observed.get("bytes") if observed.get("status") is not None else None
    seen = f"{n} bytes" if n is not None else "no HTTP answer"
    if isinstance(expected, int):
        return [Check(what, f"{expected} bytes", seen, n == expected)]
    checks = []
    if expected.at_least is not None:
        checks.append(Check(what, f">= {expected.at_least} bytes", seen,
                            n is not None and n >= expected.at_least))
    if expected.at_most is not None:
        checks.append(Check(what, f"<= {expected.at_most} bytes", seen,
                            n is not None and n <= expected.at_most))
    return checks
