"""`chaos lab up | down | status`: a lab that outlives the command that started it.

`up` starts the lab under a journal marked *detached* and writes ``<state>/lab.json``
(the run id, the services, the client's DOCKER_HOST, the CA); `status` checks every
component with a bounded probe; `down` rolls the journal back. `chaos recover` leaves a
detached lab alone while its processes all run, and cleans it up once one of them died.
"""

from __future__ import annotations

import json
import time
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


def up(base=None, *, dockerd: bool = True, warm=("library/busybox:1",), echo=print) -> dict:
    from chaos.lab import lab_up
    from chaos.lab.topology import Topology
    from chaos.session import new_run_id

    existing = current(base)
    if existing is not None:
        raise RuntimeError(f"a lab is already up (run {existing['run_id']}); `chaos lab down` first")
    run_id = new_run_id()
    journal = Journal.create(run_id, base)
    journal.note(detached=True, what="lab")
    try:
        lab = lab_up(journal, journal.run_dir, topology=Topology(tag=run_id.removeprefix("chaos-")),
                     dockerd=dockerd, warm=tuple(warm))
    except BaseException:
        journal.rollback()
        journal.finish()
        raise
    info = {"run_id": run_id, "journal": str(journal.path), "started": time.time(),
            "topology": lab.topology.describe(), "placeholders": lab.placeholders(),
            "ca": str(lab.ca.cert), "timings": lab.timings, "images": lab.images,
            "warmed": list(lab.warmed)}
    _state_path(base).write_text(json.dumps(info, indent=2) + "\n")
    journal._file.close()  # the journal stays unfinished: `down` (or recover) ends it
    return info


def status(base=None) -> list[dict]:
    """One row per component: where it is, whether its process runs, whether it answers."""
    from chaos.lab.ready import https_status

    info = current(base)
    if info is None:
        return []
    journal = Journal.read(Path(info["journal"]))
    procs = [e for e in journal.entries if e.kind == "process" and not e.undone]
    rows = []
    client_ns = info["topology"]["namespaces"]["client"]
    for role, svc in info["topology"]["services"].items():
        running = any(svc["host"] in e.what or role in e.what for e in procs
                      if is_alive(e.undo["pid"], e.undo.get("start")))
        try:
            code = https_status(client_ns, svc["address"], svc["port"], svc["host"],
                                Path(info["ca"]), path="/v2/" if role in ("registry", "cache") else "/",
                                timeout=2.0)
            ready = f"answers ({code})"
        except Exception as exc:  # noqa: BLE001 - the reason is the status
            ready = f"not ready: {type(exc).__name__}: {exc}"[:80]
        rows.append({"component": role, "host": svc["host"], "address": f"{svc['address']}:{svc['port']}",
                     "netns": svc["netns"], "process": "running" if running else "not running",
                     "ready": ready})
    docker_host = info["placeholders"].get("docker_host")
    if docker_host:
        from chaos.lab.dockerd import _ping

        sock = Path(docker_host.removeprefix("unix://"))
        rows.append({"component": "dockerd", "host": "-", "address": docker_host, "netns": client_ns,
                     "process": "running" if sock.exists() else "not running",
                     "ready": "answers (ping)" if _ping(sock, 2.0) else "not ready"})
    return rows


def down(base=None) -> list[str]:
    """Roll the lab's journal back; what could not be undone (empty when all went)."""
    info = current(base)
    if info is None:
        return []
    journal = Journal.read(Path(info["journal"]))
    journal.reopen()
    failures = journal.undo_entries(journal.pending())
    if not failures:
        journal.finish()
        _state_path(base).unlink(missing_ok=True)
    else:
        journal._file.close()
    return [str(f) for f in failures]


def detached_alive(journal: Journal) -> bool:
    """A detached lab is up while every process it started still runs."""
    procs = [e for e in journal.entries if e.kind == "process" and not e.undone]
    return bool(procs) and all(is_alive(e.undo["pid"], e.undo.get("start")) for e in procs)


def forget_if_gone(base=None) -> None:
    info = current(base)
    if info and not any(j.path == Path(info["journal"]) for j in unfinished(base)):
        _state_path(base).unlink(missing_ok=True)
