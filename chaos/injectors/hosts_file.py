"""Hosts-file entries inside a marked block, so removing the block restores the file exactly.

glibc returns every line that names a host (not only the first), and clients then try the
other addresses, so adding `127.0.0.1 name` is not enough when the file already maps
`name`: such lines are disabled in place with a tagged prefix (their other names are kept
in the block) and re-enabled on revert, byte for byte.
"""

from __future__ import annotations

import os
from pathlib import Path

from chaos.injectors.base import Injector
from chaos.journal import Journal


def _markers(tag: str) -> tuple[bytes, bytes, bytes]:
    return (f"# >>> {tag} (chaos: remove this block or run `chaos recover`)\n".encode(),
            f"# <<< {tag}\n".encode(), f"#{tag}# ".encode())


def _write_in_place(path: Path, data: bytes) -> None:
    # In place, not rename: /etc/hosts is often a bind mount (containers), which rename breaks.
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()
        f.flush()
        os.fsync(f.fileno())


def _names(line: bytes) -> list[str]:
    fields = line.split(b"#", 1)[0].split()
    return [f.decode("utf-8", "replace").lower() for f in fields[1:]]


class HostsBlock(Injector):
    """Make names resolve to an address through a hosts file (block at the top)."""

    kind = "hosts-block"

    def __init__(self, path: str | os.PathLike, entries: list[tuple[str, str]], tag: str) -> None:
        super().__init__()
        self.path, self.entries_to_add, self.tag = Path(path), entries, tag

    def describe(self) -> str:
        names = ", ".join(f"{name} -> {addr}" for addr, name in self.entries_to_add)
        return f"hosts {self.path}: {names}"

    def apply(self, journal: Journal) -> None:
        if self.applied:
            return
        begin, end, disabled = _markers(self.tag)
        self.record(journal, {"path": str(self.path), "tag": self.tag})
        old = self.path.read_bytes()
        if begin in old:  # already there (a retried apply): leave it as it is
            return
        names = {name for _, name in self.entries_to_add}
        block = [f"{addr}\t{name}\n".encode() for addr, name in self.entries_to_add]
        body = []
        for line in old.splitlines(keepends=True):
            listed = _names(line)
            if names.intersection(listed) and not line.startswith(b"#"):
                body.append(disabled + line)
                rest = [n for n in listed if n not in names]
                if rest:  # the line's other names keep their address
                    block.append(line.split()[0] + b"\t" + " ".join(rest).encode() + b"\n")
            else:
                body.append(line)
        _write_in_place(self.path, begin + b"".join(block) + end + b"".join(body))


def remove_block(path: Path, tag: str) -> bool:
    """Cut the tagged block out and re-enable disabled lines; False when nothing was there."""
    begin, end, disabled = _markers(tag)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
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
    _write_in_place(path, restored)
    return True


def undo(record: dict) -> None:
    remove_block(Path(record["path"]), record["tag"])
