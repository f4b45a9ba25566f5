"""`chaos lab up | down | status`: a lab that outlives the command that started it.

`up` starts the lab under a journal marked *detached* (its begin record names the `up`
process by pid and start time) and writes ``<state>/lab.json`` (the run id, the services,
the client's DOCKER_HOST, the CA) once the lab is ready; a SIGINT/SIGTERM before that undoes
what was started. `status` checks every component with a bounded probe; `down` rolls the
journal back. The lab is *up* once lab.json names it: `chaos recover` leaves it alone while
its processes all run, and cleans it up once one of them died - or, without lab.json, once
the `up` process is gone (killed while starting).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from chaos.journal import Journal, is_alive, state_dir, unfinished

STATE_FILE = "lab.json"


def _state_path(base=None) -> Path:
    return state_dir(base) / STATE_FILE


def current(base=None) -> dict | None:
    try:
        return json.loads(_state_path(base).read_text())
    except FileNotFoundError:
        return None


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived while `up` was starting the lab (``signum`` says which)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stop_on_signal():
    """The first SIGINT/SIGTERM raises ``Stopped`` while ``armed["raise"]``; later ones are
    only counted, so they cannot cut short the rollback the first one started. The caller
    disarms it once the lab is up. Handlers are restored afterwards."""
    armed = {"raise": True}
    if threading.current_thread() is not threading.main_thread():
        yield armed
        return
    owner, seen = os.getpid(), []

    def on_signal(signum, frame):
        if os.getpid() != owner:  # a forked helper inherited the handler: die, never revert
            os._exit(128 + signum)
        seen.append(signum)
        if len(seen) == 1 and armed["raise"]:
            raise Stopped(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield armed
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def up(base=None, *, dockerd: bool = True, warm=("library/busybox:1",), echo=print) -> dict:
    """Start the lab and write lab.json. On any failure or ``Stopped`` everything started is
    undone (what could not be is echoed; `chaos recover` retries it) and the error re-raised."""
    from chaos.lab import lab_up
    from chaos.lab.topology import Topology
    from chaos.session import new_run_id

    existing = current(base)
    if existing is not None:
        raise RuntimeError(f"a lab is already up (run {existing['run_id']}); `chaos lab down` first")
    run_id = new_run_id()
    with _stop_on_signal() as armed:
        journal = Journal.create(run_id, base)  # begin record: this process's pid and start time
        try:
            journal.note(detached=True, what="lab")
            lab = lab_up(journal, journal.run_dir, topology=Topology(tag=run_id.removeprefix("chaos-")),
                         dockerd=dockerd, warm=tuple(warm))
            info = {"run_id": run_id, "journal": str(journal.path), "started": time.time(),
                    "topology": lab.topology.describe(), "placeholders": lab.placeholders(),
                    "ca": str(lab.ca.cert), "timings": lab.timings, "images": lab.images,
                    "warmed": list(lab.warmed)}
            _write_state(base, info)  # from here on the lab is up: a signal no longer undoes it
            armed["raise"] = False
        except BaseException:
            if (current(base) or {}).get("run_id") == run_id:
                _state_path(base).unlink()
            for failure in journal.rollback():
                echo(f"could not undo {failure} (`chaos recover` retries)")
            journal.finish()
            raise
    journal.close()  # the journal stays unfinished: `down` (or recover) ends it
    return info


def _write_state(base, info: dict) -> None:
    # Whole or not at all: a reader never sees half a lab.json.
    path = _state_path(base)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


def status(base=None) -> list[dict]:
    """One row per component: where it is, whether its process runs, whether it answers.
    Never raises for a component that is down: the reason is in its row."""
    from chaos.lab.ready import https_status

    info = current(base)
    if info is None:
        return []
    try:
        entries = Journal.read(Path(info["journal"])).entries
    except FileNotFoundError:  # recovered meanwhile: nothing of it runs
        entries = []
    live = [e.what for e in entries if e.kind == "process" and not e.undone
            and is_alive(e.undo["pid"], e.undo.get("start"))]
    rows = []
    client_ns = info["topology"]["namespaces"]["client"]
    for role, svc in info["topology"]["services"].items():
        # Each server's `what` ends with its host name ("lab cache registry cache.chaos.test"):
        # matching the role would take the cache's process for the upstream "registry".
        running = any(what.split()[-1:] == [svc["host"]] for what in live)
        try:
            code = https_status(client_ns, svc["address"], svc["port"], svc["host"],
                                Path(info["ca"]), path="/v2/" if role in ("registry", "cache") else "/",
                                timeout=2.0)
            ready = f"answers ({code})"
        except Exception as exc:  # the reason is the status
            ready = f"not ready: {type(exc).__name__}: {exc}"[:80]
        rows.append({"component": role, "host": svc["host"], "address": f"{svc['address']}:{svc['port']}",
                     "netns": svc["netns"], "process": "running" if running else "not running",
                     "ready": ready})
    docker_host = info["placeholders"].get("docker_host")
    if docker_host:
        running = any(what.startswith("lab dockerd ") for what in live)
        rows.append({"component": "dockerd", "host": "-", "address": docker_host, "netns": client_ns,
                     "process": "running" if running else "not running",
                     "ready": dockerd_ready(Path(docker_host.removeprefix("unix://")), 2.0)})
    return rows


def dockerd_ready(sock: Path, timeout: float) -> str:
    """``GET /_ping`` on a dockerd socket, as a status: gone, refused or silent is a reason."""
    from chaos.lab.dockerd import _ping

    try:
        return "answers (ping)" if _ping(sock, timeout) else "not ready: /_ping did not answer 200"
    except OSError as exc:  # FileNotFoundError, ConnectionRefusedError, TimeoutError, ...
        return f"not ready: {type(exc).__name__}: {exc}"[:80]


def down(base=None) -> list[str]:
    """Roll the lab's journal back; what could not be undone (empty when all went)."""
    info = current(base)
    if info is None:
        return []
    try:
        journal = Journal.read(Path(info["journal"]))
    except FileNotFoundError:  # recovered meanwhile: nothing left but the file naming it
        _state_path(base).unlink(missing_ok=True)
        return []
    journal.reopen()
    failures = journal.undo_entries(journal.pending())
    if not failures:
        journal.finish()
        _state_path(base).unlink(missing_ok=True)
    else:
        journal.close()
    return [str(f) for f in failures]


def detached_state(journal: Journal, base=None) -> str:
    """What recover should make of a detached lab whose `up` process is gone: "up" (lab.json
    names it and every process it started still runs), "died" (lab.json names it but a
    process died) or "unfinished" (`up` was killed before writing lab.json)."""
    if (current(base) or {}).get("run_id") != journal.run_id:
        return "unfinished"
    procs = [e for e in journal.entries if e.kind == "process" and not e.undone]
    alive = bool(procs) and all(is_alive(e.undo["pid"], e.undo.get("start")) for e in procs)
    return "up" if alive else "died"


def unfinished_ups(base=None) -> list[str]:
    """Run ids of labs whose `up` was killed while starting: `chaos recover` cleans them."""
    return [j.run_id for j in unfinished(base)
            if j.detached and not j.owner_alive() and detached_state(j, base) == "unfinished"]


def forget_if_gone(base=None) -> None:
    info = current(base)
    if info and not any(j.path == Path(info["journal"]) for j in unfinished(base)):
        _state_path(base).unlink(missing_ok=True)
