"""Short-lived client commands (skopeo) run inside a lab namespace: journaled like every
process the lab starts, bounded by a timeout, and killed (whole process group) past it.

Several may run at once: ``start`` them one after the other, then ``wait`` for each.
(Starting from several threads at once is avoided: chaos.processes.spawn's gate fd is not
safe against concurrent forks.)
"""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos.journal import Entry, Journal

_seq = itertools.count(1)


class ClientError(RuntimeError):
    """A client command failed or timed out; carries its output."""

    def __init__(self, argv: list[str], reason: str, output: str) -> None:
        self.argv, self.reason, self.output = argv, reason, output
        super().__init__(f"{' '.join(argv[:2])} ... {' '.join(argv[-2:])}: {reason}\n{output[-2000:]}")


@dataclass
class Running:
    """A started client command; ``wait`` bounds it and closes its journal entry."""

    journal: Journal
    argv: list[str]
    proc: subprocess.Popen
    entry: Entry
    output: Path
    started: float

    def wait(self, timeout: float, check: bool = True) -> subprocess.CompletedProcess:
        remaining = max(0.0, timeout - (time.monotonic() - self.started))
        try:
            self.proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            self.journal.undo(self.entry)  # kills the process group
            raise ClientError(self.argv, f"timed out after {timeout:g}s", self._read()) from None
        except BaseException:
            self.journal.undo(self.entry)
            raise
        self.journal.undo(self.entry)  # already exited: only marks the record done
        result = subprocess.CompletedProcess(self.argv, self.proc.returncode, self._read())
        if check and self.proc.returncode != 0:
            raise ClientError(self.argv, f"exited {self.proc.returncode}", result.stdout)
        return result

    def _read(self) -> str:
        try:
            return self.output.read_text(errors="replace")
        except OSError:
            return ""


def start(journal: Journal, argv: list[str], *, netns: str | None, output: Path,
          env: dict | None = None) -> Running:
    """Start argv in netns (journaled), its stdout and stderr going to ``output``."""
    from chaos.processes import spawn

    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as out:
        proc, entry = spawn(journal, argv, netns=netns, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT, env=env)
    return Running(journal, argv, proc, entry, output, time.monotonic())


def run(journal: Journal, argv: list[str], *, netns: str | None, output: Path, timeout: float,
        env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run argv in netns and wait at most ``timeout`` seconds."""
    return start(journal, argv, netns=netns, output=output, env=env).wait(timeout, check)


def platform_args(platform: str | None) -> list[str]:
    """skopeo's options choosing one platform (``os/arch[/variant]``) of a multi-arch image."""
    if not platform:
        return []
    os_name, arch, *variant = platform.split("/")
    return ["--override-os", os_name, "--override-arch", arch] + (
        ["--override-variant", variant[0]] if variant else [])


@dataclass
class Skopeo:
    """skopeo (a daemon-less client) inside ``netns``, trusting only the lab CA.

    ``tmp`` keeps skopeo's temporary files and output under the lab's run dir.
    """

    journal: Journal
    netns: str
    cert_dir: Path
    tmp: Path

    def __post_init__(self) -> None:
        # There from the start: probes make their scratch folders in it, also in a lab where
        # no copy ever ran (its seed came from the image cache and nothing is warmed).
        self.tmp.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict:
        env = dict(os.environ)
        env["TMPDIR"] = str(self.tmp)
        # No host credentials leak in: an auth file that does not exist.
        env["REGISTRY_AUTH_FILE"] = str(self.tmp / "auth.json")
        # No host registries.conf (its docker.io mirrors or aliases would change the route).
        conf = self.tmp / "registries.conf"
        if not conf.exists():
            conf.write_text("unqualified-search-registries = []\n")
        env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
        # As root, containers/image keeps a blob-info cache in /var/lib/containers/cache,
        # outside the run dir. It takes its "rootless" uid from this variable (set by podman
        # for the same purpose) and then uses $XDG_DATA_HOME/containers/cache instead.
        env["_CONTAINERS_ROOTLESS_UID"] = "65534"
        env["XDG_DATA_HOME"] = str(self.tmp / "xdg-data")
        env["XDG_CONFIG_HOME"] = str(self.tmp / "xdg-config")
        return env

    def _start(self, argv: list[str]) -> Running:
        out = self.tmp / f"skopeo-{os.getpid()}-{next(_seq)}.out"
        return start(self.journal, argv, netns=self.netns, output=out, env=self.env())

    def start_copy(self, src: str, dst: str, *, src_creds: str | None = None,
                   dest_creds: str | None = None, digestfile: Path | None = None,
                   extra: Sequence[str] = ()) -> Running:
        """Start ``skopeo copy src dst``; docker:// ends verify TLS against the lab CA."""
        argv = ["skopeo", "copy", "--insecure-policy", "--retry-times", "0"]
        if src.startswith("docker://"):
            argv += ["--src-cert-dir", str(self.cert_dir)]
            argv += ["--src-creds", src_creds] if src_creds else ["--src-no-creds"]
        if dst.startswith("docker://"):
            argv += ["--dest-cert-dir", str(self.cert_dir)]
            argv += ["--dest-creds", dest_creds] if dest_creds else ["--dest-no-creds"]
        if digestfile is not None:
            argv += ["--digestfile", str(digestfile)]
        return self._start([*argv, *extra, src, dst])

    def copy(self, src: str, dst: str, *, timeout: float = 60, check: bool = True,
             **kw) -> subprocess.CompletedProcess:
        """``skopeo copy src dst``, bounded by ``timeout``."""
        return self.start_copy(src, dst, **kw).wait(timeout, check)

    def inspect(self, ref: str, *, timeout: float = 30, check: bool = True,
                extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
        """``skopeo inspect docker://ref`` (manifest and config only, no layers)."""
        argv = ["skopeo", "inspect", "--retry-times", "0", "--cert-dir", str(self.cert_dir),
                "--no-creds", *extra, f"docker://{ref}"]
        return self._start(argv).wait(timeout, check)
