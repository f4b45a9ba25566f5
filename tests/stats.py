"""Bounds for observed rates of random faults (probability p over n tries)."""

from __future__ import annotations

import math


def binomial_bounds(n: int, p: float, level: float = 0.99) -> tuple[int, int]:
    """The central interval holding at least `level` of Binomial(n, p)."""
    tail = (1 - level) / 2
    pmf = [math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]
    low, acc = 0, 0.0
    while acc + pmf[low] <= tail:
        acc += pmf[low]
        low += 1
    high, acc = n, 0.0
    while acc + pmf[high] <= tail:
        acc += pmf[high]
        high -= 1
    return low, high
