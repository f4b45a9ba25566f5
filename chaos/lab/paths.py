"""Files and directories the lab creates, journaled (kind ``lab-path``) so teardown removes them.

Only paths that did not exist before are recorded: the lab never deletes what it found.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from chaos.journal import Journal

KIND = "lab-path"


def make_dir(journal: Journal, path: str | os.PathLike, *, tree: bool = True) -> Path:
    """Create ``path`` (parents too); record each directory this call creates.

    ``tree=True`` removes the directory with everything later put inside it; ``tree=False``
    removes it only if empty (for shared parents such as /etc/netns).
    """
    path = Path(path).absolute()
    missing = []
    for p in [path, *path.parents]:
        if p.exists():
            break
        missing.append(p)
    for p in reversed(missing):  # outermost first, so undo (reverse order) removes innermost first
        leaf = p == path
        journal.record(KIND, {"path": str(p), "tree": tree and leaf}, f"directory {p}")
        p.mkdir(exist_ok=True)
    return path


def undo(record: dict) -> None:
    path = Path(record["path"])
    # Guard against a corrupt record wiping something big: lab paths are always deep.
    if not path.is_absolute() or len(path.parts) < 3:
        raise ValueError(f"refusing to remove {path}: not a lab path")
    if not path.exists() and not path.is_symlink():
        return
    if record.get("tree"):
        shutil.rmtree(path)
    else:
        try:
            path.rmdir()
        except OSError:
            pass  # not empty: someone else uses it now (e.g. another run's /etc/netns/<ns>)
