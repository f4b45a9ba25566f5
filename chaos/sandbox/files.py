"""Files and folders a run creates (per-namespace /etc/netns/<ns>, run dirs): journaled, removed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from chaos.journal import Journal

NETNS_ETC = Path("/etc/netns")


def _removable(path: Path) -> bool:
    # Only what a chaos run could have created (every such path has a `chaos-<run>` part):
    # never whatever a damaged journal line points at.
    return any(part.startswith("chaos-") for part in path.parts)


def ensure_dir(journal: Journal, path: str | os.PathLike) -> None:
    """A shared parent such as /etc/netns: created if missing, removed later only if empty."""
    path = Path(path)
    if not path.exists():
        journal.record("path", {"path": str(path), "empty_only": True}, f"folder {path}")
        path.mkdir(parents=True, exist_ok=True)


def make_dir(journal: Journal, path: str | os.PathLike, what: str = "") -> Path:
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; a run only removes what it created")
    journal.record("path", {"path": str(path)}, what or f"folder {path}")
    path.mkdir(parents=True)
    return path


def undo(record: dict) -> None:
    path = Path(record["path"])
    if record.get("empty_only"):
        try:
            path.rmdir()
        except OSError:
            pass  # not empty (another run uses it) or already gone
        return
    if not _removable(path):
        raise ValueError(f"refusing to remove {path}: not a path a chaos run creates")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
