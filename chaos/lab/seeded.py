"""The upstream's storage as the seed push leaves it, kept once per content and reused.

Building the seed images and pushing them through the registry API is most of a lab's
start-up, and its result is always the same files: the images are deterministic, and the
registry's filesystem layout depends only on them and on the registry's build. So the first
lab keeps a copy of ``upstream/storage`` (and the digests the push returned) under the state
dir's image cache; later labs copy it into their own storage before the upstream starts.

Blob ``data`` files are hard-linked, not copied: the registry never writes to one once it is
in place (a push writes a new blob elsewhere, a delete unlinks). Everything else (the small
link files a retag or push rewrites in place) is copied, so a scenario's steps cannot reach
the kept copy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path

#: Bump when what is kept, or how, changes.
FORMAT = 1


def key(images, registry_bin: str) -> str:
    """What the kept storage depends on: the images, and the registry build that wrote it."""
    path = shutil.which(registry_bin) or registry_bin
    try:
        st = os.stat(path)
        build = f"{path}:{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        build = path
    spec = json.dumps([dataclasses.asdict(i) for i in images], sort_keys=True)
    return hashlib.sha256(f"{FORMAT}\n{build}\n{spec}".encode()).hexdigest()[:20]


def restore(cache: Path, key: str, storage: Path) -> dict[str, str] | None:
    """Fill ``storage`` from the kept copy; its digests, or None when there is none."""
    kept = cache / f"seed-{key}"
    try:
        digests = json.loads((kept / "digests.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(digests, dict) or not (kept / "storage").is_dir():
        return None
    _copy_tree(kept / "storage", storage)
    return {str(k): str(v) for k, v in digests.items()}


def save(cache: Path, key: str, storage: Path, digests: dict[str, str]) -> None:
    """Keep ``storage`` for later labs (written aside, then renamed: a lab that reads it
    never sees half of it; two labs saving at once keep one copy)."""
    final = cache / f"seed-{key}"
    if final.exists():
        return
    cache.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = cache / f".seed-{key}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _copy_tree(storage, tmp / "storage")
        (tmp / "digests.json").write_text(json.dumps(digests, sort_keys=True))
        os.rename(tmp, final)
    except OSError:
        pass  # another lab kept it first, or the disk is full: this lab has what it needs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _copy_tree(src: Path, dst: Path) -> None:
    for root, _dirs, files in os.walk(src):
        here = dst / os.path.relpath(root, src)
        here.mkdir(parents=True, exist_ok=True)
        for name in files:
            source, target = os.path.join(root, name), here / name
            if name == "data" and "/blobs/" in root + "/":
                try:
                    os.link(source, target)
                    continue
                except OSError:
                    pass  # another file system: copy it
            shutil.copy2(source, target)
