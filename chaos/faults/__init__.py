"""Fault types, keyed by their `type:`. Adding one: a module here and one line below, or
``register()`` at run time (a test's own type).

A module is imported only when a scenario names its type, so a run pays for the types it
uses, not for the whole library (building the models is a large part of start-up:
docs/benchmarks.md). Other packages add types through the `chaos.faults` entry points
(chaos/plugins.py), merged into FAULTS with their own module paths.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chaos.faults.base import Fault

FAULTS: dict[str, str | type[Fault]]  # or a class register() was given
FAULTS = {  # type -> "module:Class" in this package
    "hosts-entry": "hosts_entry:HostsEntry",
    "route-blackhole": "route_blackhole:RouteBlackhole",
    "packet-filter": "packet_filter:PacketFilter",
    "geo-block": "geo_block:GeoBlock",
    "bot-mitigation": "bot_mitigation:BotMitigation",
    "dns": "dns:Dns",
    "http-error": "http_error:HttpError",
    "http-respond": "http_respond:HttpRespond",
    "http-abort": "http_abort:HttpAbort",
    "http-delay": "http_delay:HttpDelay",
    "http-replace": "http_replace:HttpReplace",
    "http-patch": "http_patch:HttpPatch",
    "partial": "partial:Partial",
    "hang": "hang:Hang",
    "slow": "slow:Slow",
    "reset": "reset:Reset",
    "garbage": "garbage:Garbage",
    "discard": "discard:Discard",
}


def fault_class(name: str) -> type[Fault]:
    """The model class of fault type ``name`` (KeyError for an unknown type; a plugin's
    that cannot be imported: chaos.errors.PluginError)."""
    target = FAULTS[name]
    if isinstance(target, type):  # register()ed as a class
        return target
    from chaos import plugins

    if plugins.origin(plugins.FAULTS_GROUP, name):
        return plugins.plugin_class(plugins.FAULTS_GROUP, name, target, _not_a_fault(name))
    module, _, cls = target.partition(":")
    return getattr(import_module(module if "." in module else f"{__name__}.{module}"), cls)


def register(name: str, target: str | type[Fault]) -> None:
    """Add fault type ``name``: its class (a ``chaos.faults.base.Fault`` whose `type` field
    is ``Literal[name]``), or "package.module:Class", imported when a scenario names it.
    Nothing else needs to know it: the runner plans every fault through its ``injectors``.
    (Packages installed beside chaos use the `chaos.faults` entry points instead.)"""
    if name in FAULTS:
        raise ValueError(f"fault type {name!r} is registered already")
    problem = _not_a_fault(name)(target) if isinstance(target, type) else None
    if problem:
        raise ValueError(problem)
    FAULTS[name] = target


def _not_a_fault(name: str):
    def check(cls) -> str | None:
        from chaos.faults.base import Fault

        if not (isinstance(cls, type) and issubclass(cls, Fault)):
            return f"{cls!r} is not a subclass of chaos.faults.base.Fault"
        field = cls.model_fields.get("type")
        if field is None or field.default != name:
            return f"{cls.__name__}.type must be Literal[{name!r}] = {name!r}"
        return None
    return check


def known_type(name: str) -> bool:
    """Whether ``name`` is a fault type, built in or from a plugin (read only when no
    built-in type has the name: chaos.plugins)."""
    if name not in FAULTS:
        from chaos import plugins

        plugins.load()
    return name in FAULTS


def fault_types(names=None) -> list[type[Fault]]:
    """The classes of ``names`` (default: every type), in registry order."""
    return [fault_class(name) for name in FAULTS if names is None or name in names]


def unregister(name: str) -> None:
    """Remove a type ``register()`` added (a test's, at its end)."""
    del FAULTS[name]
