"""Fault types and probe kinds from other installed packages, through entry points.

A package declares them in its pyproject.toml (examples/plugin/ is one):

    [project.entry-points."chaos.faults"]
    my-fault = "my_package.faults:MyFault"       # name = the `type:` it answers to
    [project.entry-points."chaos.probes"]
    my_probe = "my_package.probes:MyProbe"       # name = the key that marks the probe

They are merged into chaos.faults.FAULTS and chaos.probes.PROBES. Reading entry points
imports importlib.metadata and scans every installed distribution (what the CLI avoids at
start-up: chaos/cli.py), so it happens only when needed: a scenario names a `type:` or a
probe key that nothing built in has, or `chaos list` / `chaos schema` show everything.
A plugin's class is imported only when it is used, like a built-in one.
"""

from __future__ import annotations

from importlib import import_module

from chaos.errors import PluginError

FAULTS_GROUP, PROBES_GROUP = "chaos.faults", "chaos.probes"
FROM: dict[tuple[str, str], str] = {}
"""(group, name) -> the distribution that declared it, for the names plugins added."""
_loaded = False


def load() -> None:
    """Merge every installed package's entry points into the registries (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from importlib.metadata import entry_points

    from chaos.faults import FAULTS
    from chaos.probes import PROBES

    problems = []
    for group, registry, what in ((FAULTS_GROUP, FAULTS, "fault type"),
                                  (PROBES_GROUP, PROBES, "probe key")):
        for point in entry_points(group=group):
            package = point.dist.name if point.dist is not None else "(unknown package)"
            taken = FROM.get((group, point.name))
            if point.name in registry and taken is None:
                problems.append(f"package {package}: entry point {point.name!r} in group {group} "
                                f"collides with the built-in {what} {point.name!r}; rename it")
            elif taken is not None and taken != package:
                problems.append(f"package {package}: entry point {point.name!r} in group {group} "
                                f"collides with package {taken}'s")
            else:
                registry[point.name] = point.value
                FROM[group, point.name] = package
    if problems:
        raise PluginError("; ".join(problems))


def plugin_class(group: str, name: str, ref: str, check) -> type:
    """Import a plugin's ``module:Class``; ``check(cls)`` says what is wrong with it, if
    anything. Any failure is a PluginError naming the package."""
    package = FROM[group, name]
    module, _, attr = ref.partition(":")
    try:
        found = import_module(module.strip())
        for part in attr.strip().split("."):
            found = getattr(found, part)
        wrong = check(found)
    except Exception as exc:  # noqa: BLE001 - whatever a plugin raises, name the plugin
        raise PluginError(f"package {package}: entry point {name!r} = {ref!r} in group {group} "
                          f"failed to load: {type(exc).__name__}: {exc}", group, name) from exc
    if wrong:
        raise PluginError(f"package {package}: entry point {name!r} = {ref!r} in group {group}: "
                          f"{wrong}", group, name)
    assert isinstance(found, type)
    return found


def origin(group: str, name: str) -> str | None:
    """The package that added ``name`` to ``group`` (None: built in)."""
    return FROM.get((group, name))
