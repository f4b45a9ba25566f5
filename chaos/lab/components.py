"""Stop, start and restart the lab's components while a run goes on (scenario steps).

A component is started again exactly as the lab first started it: the same command line
(configuration file, certificate, listen address, log files), in the same namespace. Each
start is journaled like the first (chaos.processes.spawn), so rollback and `chaos recover`
end it; each stop closes the process's journal record. Readiness after a start is the lab's
own bounded check (chaos.lab.ready): a component that cannot come up within the bound is
reported not ready, it never holds the run.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.journal import Entry

if TYPE_CHECKING:
    from chaos.lab.lab import Lab

#: The names a scenario uses; `registry` is the upstream's other name (its topology role).
COMPONENTS = ("cache", "upstream", "auth", "cdn", "dockerd")
ALIASES = {"registry": "upstream"}


@dataclass
class Handle:
    """Where a component's process and logs are, whatever kind of server it is."""

    name: str
    holder: object  # the Registry, FrontServer or Dockerd whose proc this is
    proc: subprocess.Popen
    stdout: Path
    stderr: Path


def _handles(lab: Lab, name: str) -> list[Handle]:
    """Every process of the component: the dual-stack upstream has one per family."""
    handle = _handle(lab, name)
    twin = getattr(handle.holder, "twin", None)
    return [handle] + ([Handle(handle.name, twin, twin.proc, twin.access_log, twin.app_log)]
                       if twin is not None else [])


def _handle(lab: Lab, name: str) -> Handle:
    name = ALIASES.get(name, name)
    if name in ("cache", "upstream"):
        reg = lab.cache if name == "cache" else lab.upstream
        return Handle(name, reg, reg.proc, reg.access_log, reg.app_log)
    if name in ("auth", "cdn"):
        front = lab.auth if name == "auth" else lab.cdn
        return Handle(name, front, front.proc, front.app_log, front.app_log)
    if name == "dockerd":
        if lab.dockerd is None:
            raise RuntimeError("this lab has no dockerd (`lab: {dockerd: false}`)")
        return Handle(name, lab.dockerd, lab.dockerd.proc, lab.dockerd.log, lab.dockerd.log)
    raise KeyError(f"unknown lab component {name!r}; components: {', '.join(COMPONENTS)}")


def running(lab: Lab, name: str) -> bool:
    return all(h.proc.poll() is None for h in _handles(lab, name))


def _entry(lab: Lab, proc: subprocess.Popen) -> Entry | None:
    journal = lab.skopeo.journal
    return next((e for e in reversed(journal.entries) if e.kind == "process"
                 and e.undo.get("pid") == proc.pid), None)


def stop(lab: Lab, name: str) -> bool:
    """Kill the component's processes (each whole group); False if none was running."""
    was_running = False
    for handle in _handles(lab, name):
        entry = _entry(lab, handle.proc)
        was_running |= handle.proc.poll() is None
        if entry is not None:
            lab.skopeo.journal.undo(entry)  # kills the group and closes the record
        elif handle.proc.poll() is None:
            handle.proc.kill()
        handle.proc.wait(timeout=10)
    return was_running


def _command(proc: subprocess.Popen) -> tuple[str | None, list[str]]:
    """(namespace, argv) the process was spawned with (chaos.processes.spawn's gate form)."""
    args = [str(a) for a in proc.args]  # type: ignore[union-attr]
    netns = args[3] if args[:3] == ["ip", "netns", "exec"] else None
    return netns, args[args.index("chaos-gate") + 1:]


def start(lab: Lab, name: str, timeout: float) -> bool:
    """Start the component again unless its process still runs, then wait until it answers,
    at most ``timeout`` seconds (``chaos.lab.ready.NotReady`` names it and shows its log's
    tail). True if a process was started."""
    import time

    from chaos.lab.ready import NotReady

    handles = _handles(lab, name)
    deadline = time.monotonic() + timeout
    if all(h.proc.poll() is None for h in handles):  # still there (maybe coming up): only wait
        try:
            wait(lab, handles[0].name, timeout)
            return False
        except NotReady:
            if all(h.proc.poll() is None for h in handles):
                raise
        # it exited while we waited (a cache whose upstream came back cut): start it anew
        timeout = max(0.5, deadline - time.monotonic())
    for handle in handles:
        if handle.proc.poll() is not None:
            _respawn(lab, handle)
    wait(lab, handles[0].name, timeout)
    return True


def _respawn(lab: Lab, handle: Handle) -> None:
    """Start the process again with the command line it was first started with (journaled)."""
    from chaos.processes import spawn

    netns, argv = _command(handle.proc)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")
           and k not in ("DOCKER_HOST", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    env.update(SSL_CERT_FILE=str(lab.ca.cert), PYTHONUNBUFFERED="1")
    journal = lab.skopeo.journal
    with open(handle.stdout, "ab") as out, open(handle.stderr, "ab") as err:
        proc, entry = spawn(journal, argv, netns=netns, what=f"lab {handle.name} (restarted)",
                            stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT if handle.stdout == handle.stderr else err,
                            env=env)
    holder = handle.holder
    holder.proc = proc  # type: ignore[attr-defined]
    if hasattr(holder, "entry"):
        holder.entry = entry


def wait(lab: Lab, name: str, timeout: float) -> None:
    """The lab's readiness check of the component, bounded by ``timeout``."""
    from chaos.lab import dockerd, front, registry

    name = ALIASES.get(name, name)
    ca = lab.ca.cert
    if name in ("cache", "upstream"):
        registry.wait_registry(lab.cache if name == "cache" else lab.upstream, ca, timeout)
    elif name in ("auth", "cdn"):
        front.wait_front(lab.auth if name == "auth" else lab.cdn, ca, timeout)
    elif lab.dockerd is not None:
        dockerd.wait_dockerd(lab.dockerd, timeout)
