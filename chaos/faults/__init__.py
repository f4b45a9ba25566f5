"""Fault types, keyed by their `type:`. Adding one: a module here and one line below.

A module is imported only when a scenario names its type, so a run pays for the types it
uses, not for the whole library (building the models is a large part of start-up:
docs/benchmarks.md).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.faults.base import Fault

FAULTS = {  # type -> "module:Class" in this package
    "hosts-entry": "hosts_entry:HostsEntry",
    "route-blackhole": "route_blackhole:RouteBlackhole",
    "packet-filter": "packet_filter:PacketFilter",
    "geo-block": "geo_block:GeoBlock",
    "bot-mitigation": "bot_mitigation:BotMitigation",
    "dns": "dns:Dns",
    "http-error": "http_error:HttpError",
    "partial": "partial:Partial",
    "hang": "hang:Hang",
    "slow": "slow:Slow",
    "reset": "reset:Reset",
    "garbage": "garbage:Garbage",
}


def fault_class(name: str) -> type[Fault]:
    """The model class of fault type ``name`` (KeyError for an unknown type)."""
    module, _, cls = FAULTS[name].partition(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def fault_types(names=None) -> list[type[Fault]]:
    """The classes of ``names`` (default: every type), in registry order."""
    return [fault_class(name) for name in FAULTS if names is None or name in names]
