"""Hosts-file entries inside a marked block, so removing the block restores the file exactly.

glibc returns every line that names a host (not only the first), and clients then try the
other addresses, so adding `127.0.0.1 name` is not enough when the file already maps
`name`: such lines are disabled in place with a tagged prefix (their other names are kept
in the block) and re-enabled on revert, byte for byte.

Two rules keep the file whole whatever happens:
- every read-change-write holds an exclusive lock (flock on the file's folder, so no lock
  file is left behind): two runs editing /etc/hosts at once would otherwise lose a block,
  resurrect one already reverted, or read a half-written file and write it back;
- the file is written in place (see ``_write_in_place``), which a SIGKILL can cut short,
  leaving the new content's start over the old content's end. So the content being
  replaced is first saved as a *spare* in the run's folder, and removed once the write is
  complete; an undo that finds a spare puts it back first, then removes the block.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from pathlib import Path

from chaos.injectors.base import Injector, shown
from chaos.journal import Journal


def _markers(tag: str) -> tuple[bytes, bytes, bytes]:
    return (f"# >>> {tag} (chaos: remove this block or run `chaos recover`)\n".encode(),
            f"# <<< {tag}\n".encode(), f"#{tag}# ".encode())


def _write_in_place(path: Path, data: bytes) -> None:
    # In place, not rename: /etc/hosts is often a bind mount (containers), which rename
    # breaks, and processes started by `ip netns exec` see /etc/netns/<ns>/hosts through a
    # bind mount of the file made when they started: a renamed-over file would not reach them.
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # the spare is there whole or not at all


def _replace(path: Path, old: bytes, new: bytes, spare: Path | None) -> None:
    """Write ``new`` over ``old`` in place; ``spare`` keeps ``old`` until the write is whole."""
    if spare is None or not spare.parent.is_dir():
        _write_in_place(path, new)
        return
    _fsync_write(spare, old)
    _write_in_place(path, new)
    spare.unlink(missing_ok=True)


def _restore_spare(path: Path, spare: Path | None) -> None:
    """A spare left behind means a write was cut short: put the content it replaced back."""
    if spare is None:
        return
    try:
        data = spare.read_bytes()
    except FileNotFoundError:
        return
    _write_in_place(path, data)  # cut short again? the spare is still there for the next try
    spare.unlink(missing_ok=True)


def spare_path(run_dir: Path, path: Path) -> Path:
    """Where the content of ``path`` waits while a write over it is under way."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return run_dir / f"hosts-{digest}.spare"


@contextlib.contextmanager
def locked(path: Path):
    """Hold the lock every chaos edit of ``path`` takes (flock on its folder)."""
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _names(line: bytes) -> list[str]:
    fields = line.split(b"#", 1)[0].split()
    return [f.decode("utf-8", "replace").lower() for f in fields[1:]]


class HostsBlock(Injector):
    """Make names resolve to an address through a hosts file (block at the top)."""

    kind = "hosts-block"

    def __init__(self, path: str | os.PathLike, entries: list[tuple[str, str]], tag: str,
                 family: int | None = None) -> None:
        super().__init__()
        self.path, self.entries_to_add, self.tag = Path(path), entries, tag
        self.family = family
        """4 or 6: only the names' lines of that family are disabled (None: every line)."""

    def describe(self) -> str:
        names = shown(f"{name} -> {addr}" for addr, name in self.entries_to_add)
        return f"hosts {self.path}: {names}"

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        spare = spare_path(journal.run_dir, self.path)
        self.record(journal, {"path": str(self.path), "tag": self.tag, "spare": str(spare)})
        with locked(self.path):
            self._apply(spare)

    def _apply(self, spare: Path) -> None:
        begin, end, disabled = _markers(self.tag)
        old = self.path.read_bytes()
        if begin in old:  # already there (a retried apply): leave it as it is
            return
        names = {name for _, name in self.entries_to_add}
        block = [f"{addr}\t{name}\n".encode() for addr, name in self.entries_to_add]
        body = []
        for line in old.splitlines(keepends=True):
            listed = _names(line)
            if names.intersection(listed) and not line.startswith(b"#") \
                    and _of_family(line, self.family):
                body.append(disabled + line)
                rest = [n for n in listed if n not in names]
                if rest:  # the line's other names keep their address
                    block.append(line.split()[0] + b"\t" + " ".join(rest).encode() + b"\n")
            else:
                body.append(line)
        _replace(self.path, old, begin + b"".join(block) + end + b"".join(body), spare)


def _of_family(line: bytes, family: int | None) -> bool:
    """Whether the line's address is of ``family`` (None: any family)."""
    if family is None:
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(line.split()[0].decode().split("%")[0]).version == family
    except (ValueError, IndexError, UnicodeDecodeError):
        return False


def _tag_family(tag: str) -> int | None:
    """The family a hosts-entry block keeps to, from its tag (``...-e2v6``); None: both."""
    found = re.search(r"-e\d+v([46])$", tag)
    return int(found[1]) if found else None


def remove_block(path: Path, tag: str, spare: Path | None = None) -> bool:
    """Cut the tagged block out and re-enable disabled lines; False when nothing was there.

    A ``spare`` left by a write that was cut short is put back first."""
    if not path.exists():
        return False
    with locked(path):
        _restore_spare(path, spare)
        return _remove_block(path, tag, spare)


def _remove_block(path: Path, tag: str, spare: Path | None) -> bool:
    begin, end, disabled = _markers(tag)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    original = data
    start = data.find(begin)
    if start >= 0:
        stop = data.find(end, start)
        if stop < 0:
            raise ValueError(f"{path}: block {tag} has a begin marker but no end marker; fix by hand")
        data = data[:start] + data[stop + len(end):]
    elif disabled not in data:
        return False
    lines = data.splitlines(keepends=True)
    restored = b"".join(line[len(disabled):] if line.startswith(disabled) else line for line in lines)
    _replace(path, original, restored, spare)
    return True


_BLOCK = re.compile(rb"^# >>> (\S+) \(chaos: [^\n]*\n.*?^# <<< \1\n", re.M | re.S)
_DISABLED = re.compile(rb"^#\S+# ")


def rewrite_keeping_blocks(path: Path, lines: list[str]) -> None:
    """Make ``path`` hold ``lines`` below the chaos blocks it has now, so faults already
    applied to it stay on (a sandbox's hosts file, rewritten when a name is served later).

    A line naming a host that a block maps is written disabled by that block (the oldest,
    the lowest), as the block's apply would have done: its revert brings the line back."""
    with locked(path):
        try:
            old = path.read_bytes()
        except FileNotFoundError:
            old = None
        blocks = [(m.group(1).decode(), m.group(0)) for m in _BLOCK.finditer(old or b"")]
        mapped = [(tag, {n for line in block.splitlines(keepends=True)[1:-1]
                         for n in _names(_DISABLED.sub(b"", line))}) for tag, block in blocks]
        body = []
        for line in lines:
            raw = (line + "\n").encode()
            owners = [tag for tag, names in mapped if names.intersection(_names(raw))
                      and _of_family(raw, _tag_family(tag))]
            body.append(_markers(owners[-1])[2] + raw if owners else raw)
        new = b"".join(block for _, block in blocks) + b"".join(body)
        if old is None:
            path.write_bytes(new)
        elif new != old:
            _write_in_place(path, new)


def undo(record: dict) -> None:
    spare = record.get("spare")
    remove_block(Path(record["path"]), record["tag"], Path(spare) if spare else None)
