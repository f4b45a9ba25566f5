"""Probe kinds, keyed by the key that marks them in a scenario (`run:`, `http:`, ...).

Adding one: a module here holding its model and its behaviour, and one line below. A
module is imported only when a scenario uses its kind (as for fault types: chaos/faults).
A probe mapping is of the first kind whose key it holds, in this order. Other packages add
kinds through the `chaos.probes` entry points (chaos/plugins.py), merged in after these.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from chaos.steps import STEPS

if TYPE_CHECKING:
    from chaos.probes.base import ProbeBase

PROBES = {  # key -> "module:Class" in this package
    "run": "command:CommandProbe",
    "http": "http:HttpProbe",
    "tcp": "tcp:TcpProbe",
    "docker_pull": "docker_pull:DockerPullProbe",
    "requests": "requests:RequestsProbe",
    "dns_queries": "dns_queries:DnsQueriesProbe",
    "http_requests": "http_requests:HttpRequestsProbe",
    "skopeo_copy": "skopeo_copy:SkopeoCopyProbe",
    "python": "python:PythonProbe",
    "connections": "connections:ConnectionsProbe",
    "containerd_pull": "containerd_pull:ContainerdPullProbe",
    "podman_pull": "podman_pull:PodmanPullProbe",
    "pull": "pull:PullProbe",
}
# The steps (chaos/steps) are phase items too, told apart by their keys after every probe's.
PROBES.update({key: f"chaos.steps.{target}" for key, target in STEPS.items()})


def probe_class(key: str) -> type[ProbeBase]:
    """The model class of the probe kind marked by ``key`` (KeyError for an unknown key; a
    plugin's that cannot be imported: chaos.errors.PluginError)."""
    from chaos import plugins

    if plugins.origin(plugins.PROBES_GROUP, key):
        return plugins.plugin_class(plugins.PROBES_GROUP, key, PROBES[key], _not_a_probe(key))
    module, _, cls = PROBES[key].partition(":")
    return getattr(import_module(module if "." in module else f"{__name__}.{module}"), cls)


def _not_a_probe(key: str):
    def check(cls) -> str | None:
        from chaos.probes.base import ProbeBase

        if not (isinstance(cls, type) and issubclass(cls, ProbeBase)):
            return f"{cls!r} is not a subclass of chaos.probes.base.ProbeBase"
        if getattr(cls, "key", None) != key or key not in cls.model_fields:
            return f"{cls.__name__} must have key = {key!r} and a field {key!r}"
        if not isinstance(getattr(cls, "kind", None), str):
            return f"{cls.__name__} must have kind = a name for reports"
        return None
    return check


def probe_types(keys=None) -> list[type[ProbeBase]]:
    """The classes of ``keys`` (default: every kind), in registry order."""
    return [probe_class(key) for key in PROBES if keys is None or key in keys]


def probe_key(data: dict, plugins: bool = False) -> str | None:
    """The key that marks the kind of a probe mapping (None: no kind's key is in it). With
    ``plugins``, the installed packages' kinds are read when no built-in key is there."""
    key = next((key for key in PROBES if key in data), None)
    if key is None and plugins:
        from chaos import plugins as entry_points

        entry_points.load()
        key = next((key for key in PROBES if key in data), None)
    return key
