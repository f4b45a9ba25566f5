"""Deliberately broken labs, to prove the incident library has teeth.

A gate is worth what it catches: each mutant is a set-up a platform team really gets wrong
(a cache that is not a proxy, a node with no mirror, ...), and `scripts/mutation-campaign`
runs the library against each. Every mutant must turn at least one scenario red; a scenario
that kills none is a drill that cannot fail (docs/registry-library.md, "Mutants").

A mutant is chosen for a whole process with ``CHAOS_LAB_MUTANT=<name>`` (the campaign sets
it for the `chaos run` it starts); never set, the lab is the normal one. Each is a small
class: hooks the lab calls at the few points where a set-up can go wrong.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from chaos.lab.lab import Lab
    from chaos.lab.registry import Registry

ENV = "CHAOS_LAB_MUTANT"


class Mutant:
    """The normal lab: every hook leaves what it is given as it is."""

    name: ClassVar[str] = ""
    what: ClassVar[str] = "the lab as it is"

    def cache_config(self, config: dict) -> dict:
        return config

    def warm(self, refs: tuple[str, ...]) -> tuple[str, ...]:
        return refs

    def upstream_names(self, topo) -> tuple[list[str], list[str]]:
        """Host names and addresses of the upstream's certificate."""
        return [topo.registry.host], topo.registry.addresses

    def dockerd_options(self, mirrors: list[str]) -> dict:
        """Keyword arguments for spawn_dockerd: its mirrors and daemon.json extras."""
        return {"mirrors": mirrors}

    def start_cache(self, journal, topo, config: dict, workdir, ca) -> Registry | None:
        """A cache of the mutant's own instead of docker-registry (None: the real one)."""
        return None

    def before_faults(self, lab: Lab) -> None:
        """Runs once the `before` probes held, just before the first fault goes on."""


class NoProxy(Mutant):
    name = "no-proxy"
    what = "the cache is a plain registry, not a pull-through proxy (no proxy.remoteurl)"

    def cache_config(self, config: dict) -> dict:
        return {k: v for k, v in config.items() if k != "proxy"}

    def warm(self, refs):
        return ()  # nothing can be pulled through a registry that proxies nothing


class NoMirror(Mutant):
    name = "no-mirror"
    what = "the docker host has no registry-mirrors: it pulls from Hub directly"

    def dockerd_options(self, mirrors):
        return {"mirrors": []}


class WipedCache(Mutant):
    name = "wiped-cache"
    what = "the cache's storage is wiped (and the cache restarted) after the steady state, before the fault"

    # After the `before` probes, not after warm-up: a steady-state pull through an empty
    # cache fills it again, and the mutant would survive every scenario that checks one.
    def before_faults(self, lab):
        from chaos.lab import components

        components.stop(lab, "cache")
        shutil.rmtree(lab.cache.storage)
        components.start(lab, "cache", 30)


class Forwarder(Mutant):
    name = "forwarder"
    what = ("the 'cache' forwards every connection to Hub and stores nothing (a TCP relay; "
            "Hub's certificate also names the cache)")

    def upstream_names(self, topo):
        return ([topo.registry.host, topo.cache.host], [*topo.registry.addresses, topo.cache.address])

    def warm(self, refs):
        return ()  # nothing is kept, so nothing can be warmed

    def start_cache(self, journal, topo, config, workdir, ca) -> Registry | None:
        import subprocess

        from chaos.lab.registry import Registry
        from chaos.processes import spawn

        workdir.mkdir(parents=True, exist_ok=True)
        access_log, app_log = workdir / "cache.access.log", workdir / "cache.log"
        access_log.touch()  # a relay logs no requests: the cache's log stays empty
        c, r = topo.cache, topo.registry
        argv = ["socat", f"TCP-LISTEN:{c.port},bind={c.address},fork,reuseaddr",
                f"TCP:{r.address}:{r.port}"]
        with open(app_log, "ab") as err:
            proc, entry = spawn(journal, argv, netns=c.netns, what=f"lab cache relay {c.host}",
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        return Registry("cache", c, proc, workdir / "cache.yml", workdir / "storage", access_log,
                        app_log, entry, journal)


class PatientClient(Mutant):
    name = "patient-client"
    what = "the docker host retries failed downloads 30 times (dockerd's max-download-attempts)"

    def dockerd_options(self, mirrors):
        return {"mirrors": mirrors, "extra": {"max-download-attempts": 30}}


MUTANTS: dict[str, type[Mutant]] = {
    m.name: m for m in (NoProxy, NoMirror, WipedCache, Forwarder, PatientClient)}


def selected() -> Mutant:
    """The mutant this process runs the lab as (the normal lab unless CHAOS_LAB_MUTANT says)."""
    name = os.environ.get(ENV, "")
    if not name:
        return Mutant()
    try:
        return MUTANTS[name]()
    except KeyError:
        raise ValueError(f"{ENV}={name!r}: no such mutant (known: {', '.join(MUTANTS)})") from None
