"""Durations as people write them: 250ms, 5s, 1.5m, 2h, or a plain number of seconds.

Also ISO 8601 time durations (PT0.25S, PT1H30M), which is how pydantic and other JSON
encoders write a ``timedelta``: a model dumped into a rule file reads back the same.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_ISO = re.compile(r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?"
                  r"(?:(\d+(?:\.\d+)?)S)?)?", re.IGNORECASE)
PATTERN_TEXT = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"


def parse_duration(value: object) -> float:
    """Seconds as a float; raises ValueError with a hint for anything else."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: write a number with ms, s, m or h, e.g. 5s")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(f"bad duration {value!r}: write a finite number of seconds")
        if value < 0:
            raise ValueError(f"bad duration {value!r}: it cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        if match:
            return float(match[1]) * _UNITS[match[2] or "s"]
        iso = _ISO.fullmatch(value.strip())
        if iso and any(iso.groups()):
            d, h, m, s = (float(g or 0) for g in iso.groups())
            return d * 86400 + h * 3600 + m * 60 + s
    raise ValueError(f"bad duration {value!r}: write a number with ms, s, m or h, e.g. 5s")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s".replace(".00s", "s")
    return f"{seconds / 60:.1f}m"


def go_duration(seconds: float) -> str:
    """Seconds as Go's ``time.Duration.String()`` writes them, the form Chaos Mesh and other
    Kubernetes tools read: 250ms, 30s, 1m30s, 1h0m5s (whole milliseconds; 0s for zero)."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def one_unit_duration(seconds: float) -> str:
    """Seconds as a number and one unit (1h, 90s, 1500ms): the form Chaos Mesh's netem
    fields (delay latency, jitter) take; whole milliseconds."""
    ms = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


_GO_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds from a Go duration (1h0m5s, 250ms, 1.5s); ValueError for anything else."""
    parts = _GO_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a Go duration (e.g. 30s, 1m30s, 250ms)")
    return sum(float(n) * _GO_UNITS[u] for n, u in parts)
