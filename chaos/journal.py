"""Write-ahead journal: how to undo a change is on disk (fsynced) before the change is made.

One journal per run, a JSON line per record, in ``<state dir>/runs/<run id>/journal.jsonl``:

    {"op": "begin", "run": ..., "pid": ..., "pid_start": ..., "time": ...}
    {"op": "do", "seq": 3, "kind": "route", "undo": {...}, "what": "unreachable 198.18.1.10/32"}
    {"op": "undone", "seq": 3}
    {"op": "end"}

Reverting in a run and ``chaos recover`` after a crash call the same undo function for a
record's kind (see ``chaos.injectors.UNDO``), so the two paths cannot drift apart. Undo
functions are idempotent: a record may describe a change that never happened (a crash
between the fsync and the change) or one that was already undone.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

DEFAULT_STATE_DIR = "/var/lib/chaos"


def state_dir(override: str | os.PathLike | None = None) -> Path:
    return Path(override or os.environ.get("CHAOS_STATE_DIR") or DEFAULT_STATE_DIR)


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(b")") + 2 :].split()


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of a process (clock ticks since boot), None if it is gone.

    A pid with the same start time is the same process: pids are reused, start times not.
    """
    fields = _stat(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, start: int | None) -> bool:
    """The same process still runs (a zombie waiting to be reaped counts as dead)."""
    fields = _stat(pid)
    return start is not None and fields is not None and int(fields[19]) == start and fields[0] != b"Z"


@dataclass
class Entry:
    seq: int
    kind: str
    undo: dict
    what: str = ""
    undone: bool = False


@dataclass
class RevertFailure:
    entry: Entry
    error: str

    def __str__(self) -> str:
        return f"{self.entry.what or self.entry.kind}: {self.error}"


@dataclass
class Journal:
    path: Path
    run_id: str
    entries: list[Entry] = field(default_factory=list)
    finished: bool = False
    owner_pid: int | None = None
    owner_start: int | None = None
    detached: bool = False
    """A lab left running by `chaos lab up`: its owner exits on purpose."""
    kept: bool = False
    """Finished with ``finish(keep=True)``: its folder stays for whoever asked for it."""

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._file: TextIO | None = None

    def close(self) -> None:
        """Stop writing; the journal stays unfinished (``reopen`` or recover go on with it)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def _opened(self) -> TextIO:
        if self._file is None:
            raise RuntimeError(f"journal {self.path} is not open for writing")
        return self._file

    # -- writing -------------------------------------------------------------------------
    @classmethod
    def create(cls, run_id: str, base: str | os.PathLike | None = None) -> Journal:
        """A new run's journal, owned from the moment ``chaos recover`` can see it.

        The folder is made in ``starting/`` and moved into ``runs/`` (one rename) once its
        ``begin`` record, naming this process, is on disk: a recover that read a journal
        still empty took the run for dead and removed it while the run went on. Folders
        are 0700 and the journal 0600: it holds filled-in ``--var`` values and commands."""
        base_dir = state_dir(base)
        runs, starting = base_dir / "runs", base_dir / STARTING
        for folder in (runs, starting):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            if folder.stat().st_mode & 0o077:  # made by an older version: 0755
                folder.chmod(0o700)
        if (runs / run_id).exists():
            raise FileExistsError(runs / run_id)
        new_dir = starting / run_id
        new_dir.mkdir(mode=0o700)
        path = new_dir / "journal.jsonl"
        journal = cls(path, run_id)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        journal._file = open(fd, "a", encoding="utf-8")
        pid = os.getpid()
        journal.owner_pid, journal.owner_start = pid, process_start_time(pid)
        journal._append(
            {"op": "begin", "run": run_id, "pid": pid, "pid_start": journal.owner_start,
             "time": time.time()}
        )
        os.rename(new_dir, runs / run_id)  # fails if the name is taken: never two owners
        _fsync_dir(runs)
        journal.path = runs / run_id / "journal.jsonl"
        return journal

    @property
    def run_dir(self) -> Path:
        return self.path.parent

    def _append(self, record: dict, durable: bool = True) -> None:
        """Write one line. Flushed, it survives a crash of this process (the kernel holds it);
        ``durable`` also fsyncs it, for a crash of the machine. Only what recover must not
        lose there needs that: how to undo a change, and a change that must never be undone.
        A lost timeline note costs nothing, a lost "undone" a second, idempotent undo."""
        line = json.dumps(record, separators=(",", ":")) + "\n"
        out = self._opened()
        out.write(line)
        out.flush()
        if durable:
            os.fsync(out.fileno())

    def record(self, kind: str, undo: dict, what: str = "") -> Entry:
        """Write how to undo a change, durably, before the caller makes it."""
        with self._lock:
            entry = Entry(len(self.entries) + 1, kind, undo, what)
            self._append({"op": "do", "seq": entry.seq, "kind": kind, "undo": undo, "what": what})
            self.entries.append(entry)
            return entry

    def note(self, **fields) -> None:
        """A record that changes nothing (fault switched on/off, phase started): for the timeline."""
        with self._lock:
            self._append({"op": "note", "time": time.time(), **fields}, durable=False)

    # -- undoing ---------------------------------------------------------------------------
    def undo(self, entry: Entry) -> None:
        """Undo one change; raises if the undo function fails (the entry stays pending)."""
        from chaos.injectors import undo_function

        with self._lock:
            if entry.undone:
                return
            undo_function(entry.kind)(entry.undo)
            entry.undone = True
            if self._file is not None:
                self._append({"op": "undone", "seq": entry.seq}, durable=False)

    def forget(self, entry: Entry) -> None:
        """The change was refused before it happened (e.g. the route already existed and is not
        ours): mark it done without running its undo, so nothing of the user's is removed."""
        with self._lock:
            entry.undone = True
            self._append({"op": "undone", "seq": entry.seq, "forgotten": True})

    def undo_entries(self, entries) -> list[RevertFailure]:
        """Undo the given entries in reverse order; a failure does not stop the others."""
        failures = []
        for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
            if entry.undone:
                continue
            try:
                self.undo(entry)
            except Exception as exc:  # every failure is reported, none stops the rest
                failures.append(RevertFailure(entry, f"{type(exc).__name__}: {exc}"))
        return failures

    def mark(self) -> int:
        return len(self.entries)

    def rollback(self, until: int = 0) -> list[RevertFailure]:
        """Undo every pending change recorded after ``mark()`` returned ``until``."""
        return self.undo_entries([e for e in self.entries if e.seq > until])

    def pending(self) -> list[Entry]:
        return [e for e in self.entries if not e.undone]

    def finish(self, keep: bool = False) -> None:
        """Close the journal. With nothing pending the run's directory is removed."""
        with self._lock:
            if self.pending():
                self._opened().close()
                self._file = None
                return
            self._append({"op": "end", "time": time.time(), **({"keep": True} if keep else {})})
            self._opened().close()
            self._file = None
            self.finished = True
            if not keep:
                remove_run_dir(self.run_dir)

    # -- reading (recover) -------------------------------------------------------------------
    @classmethod
    def read(cls, path: Path) -> Journal:
        journal = cls(path, path.parent.name)
        by_seq: dict[int, Entry] = {}
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    # A line torn by a crash mid-write: its change was never made (the caller
                    # waits for the fsync). Lines after it were appended later by recover.
                    continue
                op = rec.get("op")
                if op == "begin":
                    journal.owner_pid, journal.owner_start = rec.get("pid"), rec.get("pid_start")
                elif op == "do":
                    entry = Entry(rec["seq"], rec["kind"], rec["undo"], rec.get("what", ""))
                    by_seq[entry.seq] = entry
                    journal.entries.append(entry)
                elif op == "note" and rec.get("detached"):
                    journal.detached = True
                elif op == "undone" and rec.get("seq") in by_seq:
                    by_seq[rec["seq"]].undone = True
                elif op == "end":
                    journal.finished, journal.kept = True, bool(rec.get("keep"))
        return journal

    def reopen(self) -> None:
        """Append to a journal read from disk (recover writes its 'undone' records there)."""
        with open(self.path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            torn = size > 0 and f.seek(size - 1) >= 0 and f.read(1) != b"\n"
        self._file = out = open(self.path, "a", encoding="utf-8")
        if torn:  # a crash cut the last line short: start the next record on a line of its own
            out.write("\n")

    def age(self) -> float:
        """Seconds since the journal was last written (0 if it is gone)."""
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def owner_alive(self) -> bool:
        return self.owner_pid is not None and is_alive(self.owner_pid, self.owner_start)


def unfinished(base: str | os.PathLike | None = None) -> list[Journal]:
    """Journals of runs that did not end cleanly, oldest first."""
    runs = state_dir(base) / "runs"
    if not runs.is_dir():
        return []
    found = []
    for path in runs.glob("*/journal.jsonl"):
        try:  # a run that ends right now removes its journal: not ours to recover then
            mtime = path.stat().st_mtime
            journal = Journal.read(path)
        except FileNotFoundError:
            continue
        if not journal.finished:
            found.append((mtime, journal))
    return [journal for _, journal in sorted(found, key=lambda f: f[0])]


def remove_run_dir(run_dir: Path) -> None:
    """Remove a finished run's folder, its journal last: a crash part way leaves a folder
    with a finished journal, which ``sweep`` removes, never one that no journal explains."""
    journal = run_dir / "journal.jsonl"
    try:
        children = list(run_dir.iterdir())
    except FileNotFoundError:
        return
    for child in children:
        if child == journal:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    journal.unlink(missing_ok=True)
    try:
        run_dir.rmdir()
    except OSError:
        shutil.rmtree(run_dir, ignore_errors=True)  # something appeared meanwhile: it is ours too


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


STARTING = "starting"
"""Where ``Journal.create`` makes a run's folder before it is owned (beside ``runs/``)."""

STALE_EMPTY = 10.0
"""Seconds after which an empty run folder is a crash's leftover (Journal.create fills a new
one within microseconds)."""


def sweep(base: str | os.PathLike | None = None) -> list[str]:
    """Remove run folders that hold nothing to undo: a finished journal (the run was stopped
    while removing its folder) or, after STALE_EMPTY seconds, nothing at all (stopped while
    creating it). Folders a run keeps (``finish(keep=True)``) stay. Returns the run ids."""
    runs = state_dir(base) / "runs"
    removed: list[str] = []
    if not runs.is_dir():
        return removed
    for run_dir in sorted(runs.iterdir()):
        journal = run_dir / "journal.jsonl"
        try:
            if journal.exists():
                read = Journal.read(journal)
                if read.finished and not read.kept:
                    remove_run_dir(run_dir)
                    removed.append(run_dir.name)
            elif run_dir.is_dir() and not any(run_dir.iterdir()) \
                    and time.time() - run_dir.stat().st_mtime > STALE_EMPTY:
                run_dir.rmdir()
                removed.append(run_dir.name)
        except (FileNotFoundError, OSError):
            continue  # removed by its own run meanwhile, or refilled: leave it
    return removed


def sweep_starting(base: str | os.PathLike | None = None) -> list[str]:
    """Folders of runs stopped inside ``Journal.create``, before their folder moved into
    ``runs/``: nothing was changed yet (the journal holds at most ``begin``). Removed once
    their owner is gone, or, without an owner on record, after STALE_EMPTY seconds."""
    starting = state_dir(base) / STARTING
    removed: list[str] = []
    if not starting.is_dir():
        return removed
    for run_dir in sorted(starting.iterdir()):
        try:
            journal = run_dir / "journal.jsonl"
            owner = Journal.read(journal) if journal.exists() else None
            if owner is not None and owner.owner_pid is not None:
                if owner.owner_alive():
                    continue
            elif time.time() - run_dir.stat().st_mtime <= STALE_EMPTY:
                continue
            shutil.rmtree(run_dir)
            removed.append(run_dir.name)
        except (FileNotFoundError, OSError):
            continue  # moved into runs/ by its run meanwhile
    return removed
