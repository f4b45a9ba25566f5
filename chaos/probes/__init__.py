"""Probe kinds, keyed by the key that marks them in a scenario (`run:`, `http:`, ...).

Adding one: a module here holding its model and its behaviour, and one line below. A
module is imported only when a scenario uses its kind (as for fault types: chaos/faults).
A probe mapping is of the first kind whose key it holds, in this order.
"""

from __future__ import annotations

from importlib import import_module

PROBES = {  # key -> "module:Class" in this package
    "run": "command:CommandProbe",
    "http": "http:HttpProbe",
    "tcp": "tcp:TcpProbe",
    "docker_pull": "docker_pull:DockerPullProbe",
    "requests": "requests:RequestsProbe",
    "dns_queries": "dns_queries:DnsQueriesProbe",
    "http_requests": "http_requests:HttpRequestsProbe",
    "skopeo_copy": "skopeo_copy:SkopeoCopyProbe",
}


def probe_class(key: str) -> type:
    """The model class of the probe kind marked by ``key`` (KeyError for an unknown key)."""
    module, _, cls = PROBES[key].partition(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


def probe_types(keys=None) -> list[type]:
    """The classes of ``keys`` (default: every kind), in registry order."""
    return [probe_class(key) for key in PROBES if keys is None or key in keys]


def probe_key(data: dict) -> str | None:
    """The key that marks the kind of a probe mapping (None: no kind's key is in it)."""
    return next((key for key in PROBES if key in data), None)
