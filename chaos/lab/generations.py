"""Client generations: which build of a lab client runs, by name (``dockerd@26.1``).

The system's packages are one generation (Debian 12: dockerd 20.10, containerd 1.6, podman
4.3, skopeo 1.9; Debian 13: trixie's). scripts/generations unpacks Debian 13's builds into
``/opt/chaos-generations/trixie/root`` beside them on Debian 12 (on Debian 13 that path is a
link to ``/``). ``resolve("dockerd@26.1")`` maps a name to the binaries the lab runs and the
PATH under which dockerd, containerd and its shim find each other (docs/lab.md).

trixie's podman, skopeo, runc and netavark need glibc 2.38, which Debian 12 lacks: the
prefix holds trixie's libc too, and scripts/generations points those binaries at the
prefix's own dynamic loader and libraries (patchelf), so they run beside the system's libc.
Only binaries that run here are taken from a generation; one that does not (a prefix
unpacked by an older scripts/generations) is replaced by the system's build of that helper.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(os.environ.get("CHAOS_GENERATIONS", "/opt/chaos-generations"))

# Debian suite -> client -> its major.minor version there.
SUITES: dict[str, dict[str, str]] = {
    "bookworm": {"dockerd": "20.10", "containerd": "1.6", "podman": "4.3", "skopeo": "1.9"},
    "trixie": {"dockerd": "26.1", "containerd": "1.7", "podman": "5.4", "skopeo": "1.18"},
}
_DEBIAN_MAJOR = {"12": "bookworm", "13": "trixie"}

# The binaries each client needs (looked up in the generation's usr/sbin, usr/bin) and,
# for its PATH, the helpers it execs: containerd its shim, the shim runc, dockerd docker-init.
BINARIES: dict[str, tuple[str, ...]] = {
    "dockerd": ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker-init",
                "docker-proxy"),
    "containerd": ("containerd", "containerd-shim-runc-v2", "runc", "ctr"),
    "podman": ("podman",),
    "skopeo": ("skopeo",),
}
_SPEC = re.compile(r"^(?P<client>[a-z-]+)(?:@(?P<version>\d+\.\d+))?$")


class GenerationError(ValueError):
    """An unknown client or version, or one that is not installed here."""


@dataclass(frozen=True)
class Generation:
    """One client build: ``binaries`` maps a name to its absolute path."""

    client: str
    version: str
    suite: str
    binaries: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.client}@{self.version}"

    def env(self, bin_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
        """An environment whose PATH finds this generation's helpers first: links to them
        are made in ``bin_dir`` (one per run, under its run dir). No LD_LIBRARY_PATH (it
        would reach the system's programs too): each binary names its own loader."""
        env = dict(os.environ if base is None else base)
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name, path in self.binaries.items():
            link = bin_dir / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(path)
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        return env


def system_suite() -> str:
    """The suite the system's packages come from (/etc/debian_version)."""
    try:
        text = Path("/etc/debian_version").read_text().strip()
    except OSError:
        return "bookworm"
    return _DEBIAN_MAJOR.get(text.split(".")[0], "trixie" if text.startswith("trixie") else "bookworm")


def parse(spec: str) -> tuple[str, str | None]:
    """``dockerd@26.1`` -> ``("dockerd", "26.1")``; ``dockerd`` -> ``("dockerd", None)``."""
    m = _SPEC.match(spec.strip())
    if not m or m["client"] not in BINARIES:
        raise GenerationError(f"{spec!r}: expected CLIENT[@MAJOR.MINOR], CLIENT one of "
                              f"{', '.join(BINARIES)} (e.g. dockerd@26.1)")
    return m["client"], m["version"]


def known(client: str) -> list[str]:
    """The versions of ``client`` a generation provides, oldest first."""
    return [v[client] for v in SUITES.values() if client in v]


def suite_of(client: str, version: str) -> str:
    for suite, versions in SUITES.items():
        if versions.get(client) == version:
            return suite
    raise GenerationError(f"{client}@{version}: unknown version; known: "
                          f"{', '.join(f'{client}@{v}' for v in known(client))}")


def resolve_name(spec: str) -> str:
    """``dockerd`` -> ``dockerd@20.10`` (the system's), ``dockerd@26.1`` -> itself; refuses
    unknown clients and versions without looking at what is installed."""
    client, version = parse(spec)
    version = version or SUITES[system_suite()][client]
    suite_of(client, version)
    return f"{client}@{version}"


@cache
def _runs(path: str) -> bool:
    # A binary from a newer suite may need a newer glibc than the system's: the dynamic
    # loader must accept it. (Its own answer to --version does not matter: the shim has -v.)
    try:
        out = subprocess.run([path, "--version"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode != 127 and b"error while loading shared libraries" not in out.stderr \
        and not re.search(rb"version `GLIBC_[0-9.]+' not found", out.stderr)


def _find(root: Path, name: str) -> str | None:
    for d in ("usr/sbin", "usr/bin", "sbin", "bin"):
        p = root / d / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def resolve(spec: str) -> Generation:
    """The binaries of ``spec`` (``dockerd``, ``dockerd@20.10``, ``dockerd@26.1``, ...).

    No version, or the system's, gives the system's binaries (from PATH). Another known
    version comes from its prefix; ``GenerationError`` says how to install it if missing."""
    client, version = parse(spec)
    system = system_suite()
    version = version or SUITES[system][client]
    suite = suite_of(client, version)
    if suite == system:
        found = {b: shutil.which(b) for b in BINARIES[client]}
        return Generation(client, version, suite, {b: p for b, p in found.items() if p})
    root = ROOT / suite / "root"
    found = {b: _find(root, b) for b in BINARIES[client]}
    main = found[BINARIES[client][0]]
    if main is None:
        raise GenerationError(f"{client}@{version}: not installed ({root} has no "
                              f"{BINARIES[client][0]}); scripts/setup installs it (scripts/generations)")
    if not _runs(main):
        raise GenerationError(f"{client}@{version}: {main} does not run on this machine")
    binaries: dict[str, str] = {}
    for name, path in found.items():
        if path is not None and _runs(path):
            binaries[name] = path
        elif (fallback := shutil.which(name)) is not None:
            binaries[name] = fallback  # e.g. a runc that does not run here: the system's
    return Generation(client, version, suite, binaries)


def installed(spec: str) -> bool:
    """Whether ``spec`` resolves to a runnable build on this machine."""
    try:
        resolve(spec)
    except GenerationError:
        return False
    return True
