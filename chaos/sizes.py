"""Sizes as people write them: 10kB, 50MB, 1.5GiB, or a plain number of bytes.

kB, MB and GB are powers of 1000 (as registries and `docker images` print them); KiB, MiB
and GiB powers of 1024.
"""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_PATTERN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmg]i?b|b)?\s*", re.IGNORECASE)
PATTERN_TEXT = r"^\s*\d+(\.\d+)?\s*([kKmMgG][iI]?[bB]|[bB])?\s*$"


def parse_size(value: object) -> int:
    """Bytes as an int; raises ValueError with a hint for anything else."""
    hint = f"bad size {value!r}: write a number with B, kB, MB, GB (or KiB, MiB, GiB), e.g. 10MB"
    if isinstance(value, bool):
        raise ValueError(hint)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(hint)
        return value
    if isinstance(value, str):
        match = _PATTERN.fullmatch(value)
        if match:
            return int(float(match[1]) * _UNITS[(match[2] or "").lower()])
    raise ValueError(hint)


def format_size(n: int) -> str:
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= factor:
            return f"{n / factor:g}{unit}"
    return f"{n}B"
