"""Toxiproxy's toxic types and the project's TCP fault each one becomes.

A toxic's JSON is Toxiproxy's (``attributes`` in milliseconds, KB/s, microseconds as it
defines them); what acts on the bytes is a rule of a project fault type, validated by that
type's own model (``chaos.faults``), in the TCP fault proxy: the same code a scenario's
``slow`` / ``reset`` / ``discard`` fault runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ToxicType:
    attributes: dict[str, int]
    """The attributes with Toxiproxy's defaults (Go zero values): the JSON always has them all."""
    fault: Callable[[dict[str, int]], dict[str, Any]]
    """attributes -> the project fault's type and parameters."""


def _ms(value: int) -> float:
    return value / 1000


TOXICS: dict[str, ToxicType] = {
    # each chunk late by latency +- jitter
    "latency": ToxicType({"latency": 0, "jitter": 0},
                         lambda a: {"toxic": "slow", "latency": _ms(a["latency"]), "jitter": _ms(a["jitter"])}),
    # KB/s, as Toxiproxy counts them (1000 bytes); 0 is no cap
    "bandwidth": ToxicType({"rate": 0},
                           lambda a: {"toxic": "slow", "rate": a["rate"] * 1000 if a["rate"] > 0 else None}),
    # the FIN held back
    "slow_close": ToxicType({"delay": 0}, lambda a: {"toxic": "slow", "close_delay": _ms(a["delay"])}),
    # nothing gets through (read and dropped); closed after timeout, never if 0
    "timeout": ToxicType({"timeout": 0},
                         lambda a: {"toxic": "discard", "for": _ms(a["timeout"]) if a["timeout"] > 0 else None}),
    # RST timeout after the first bytes of its stream (dropped)
    "reset_peer": ToxicType({"timeout": 0}, lambda a: {"toxic": "reset", "how": "rst", "at": "first-byte",
                                                       "delay": _ms(a["timeout"])}),
    # small segments, delay in microseconds
    "slicer": ToxicType({"average_size": 0, "size_variation": 0, "delay": 0},
                        lambda a: {"toxic": "slow", "slicer": {"size": a["average_size"],
                                                               "variation": a["size_variation"],
                                                               "delay": a["delay"] / 1_000_000}}),
    # close after this many bytes
    "limit_data": ToxicType({"bytes": 0}, lambda a: {"toxic": "reset", "how": "fin", "after": a["bytes"]}),
}


def rule(toxic_type: str, attributes: dict[str, int], stream: str, toxicity: float,
         rule_id: str, listener: str) -> dict[str, Any] | None:
    """The TCP proxy rule for a toxic on the proxy whose listener is ``listener``; None when
    its toxicity is 0 (it never acts: there is nothing to switch on)."""
    if toxicity <= 0:
        return None
    fault = TOXICS[toxic_type].fault(attributes)
    return {"id": rule_id, **{k: v for k, v in fault.items() if v is not None},
            "direction": stream, "probability": toxicity if toxicity < 1 else None,
            "match": {"listener": listener}, "live": True}
