"""docker_pull: pull an image with the lab's dockerd; success, error, layers and time are judged.

The pull itself runs in a child process (chaos.probes.pull_agent), which the runner can kill
with its whole group when the pull hangs.
"""

from __future__ import annotations

from pydantic import Field

from chaos.probes.base import ProbeBase
from chaos.scenario.model import PLATFORM, TextMatch


class DockerPullProbe(ProbeBase):
    """Pull an image with the lab's dockerd (through the docker SDK), the local copy removed
    first so the pull is real. Its mirror is the lab's cache; Docker Hub's names resolve to
    the lab's upstream."""

    kind = "docker-pull"
    key = "docker_pull"

    docker_pull: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. library/busybox:1 or {cache}/library/busybox:1."""
    ok: bool | None = True
    """Whether the pull must succeed (false: it must fail; null: either, only `within` and
    the other checks count)."""
    error: TextMatch | None = None
    """Checks on the error text of a failed pull."""
    platform: str | None = Field(None, pattern=PLATFORM)
    """Pull this platform of a multi-arch image (`linux/arm64`), as `docker pull --platform`."""
    digest: str | None = Field(None, pattern=r"^(sha256:[0-9a-f]{64}|\{digest:[^}\s]+\})$")
    """The manifest digest the pull must have got (dockerd's `Digest:` line): `sha256:...`,
    or `{digest:library/x:1}`, what the lab's upstream named by that tag when the lab
    started (a stale copy from a cache shows here after a `retag` step)."""
    layers: int | None = Field(None, ge=0)
    """How many layers the pull must have downloaded (0: everything came from the local store)."""

    def describe(self) -> str:
        platform = f"--platform {self.platform} " if self.platform else ""
        return f"docker pull {platform}{self.docker_pull}"

    def observe(self, place, journal, result) -> None:
        import json
        import sys

        from chaos.probes import evidence, expect
        from chaos.probes.result import HUNG
        from chaos.probes.run import Place, bound, run_process

        if place.lab is None or place.lab.dockerd is None:
            raise RuntimeError("docker_pull needs `lab: registry` with its dockerd")
        image = place.expand(self.docker_pull)
        limit = bound(self)
        argv = [sys.executable, "-m", "chaos.probes.pull_agent", place.lab.dockerd.base_url,
                image, str(limit), *([self.platform] if self.platform else [])]
        code, out, err, took = run_process(journal, argv, Place(None, place.env), limit + 10.0)
        result.duration = took
        result.detail["image"] = image
        if self.platform:
            result.detail["platform"] = self.platform
        try:
            observed = json.loads(out)
        except json.JSONDecodeError:
            if code is None:
                result.verdict = HUNG
                return
            raise RuntimeError((err or out or f"pull agent exited {code}").strip()[-500:]) from None
        result.duration = observed.pop("duration", took)
        layers = observed.pop("progress", [])
        result.detail.update(observed)
        if observed.get("hung"):
            result.evidence.update(stalled=evidence.pull_line(layers), layers=layers)
            result.verdict = HUNG
            return
        if not observed["ok"] and layers:
            result.evidence["layers"] = layers
        pulled = "pulled" if observed["ok"] else f"failed: {observed.get('error', '')}"[:300]
        if self.ok is not True or self.error is not None or self.layers is not None or self.digest:
            # about an error or a count: say what came, passing or not
            result.observed = pulled + (f"; {observed.get('layers', 0)} layers downloaded, "
                                        f"{observed.get('cached_layers', 0)} cached"
                                        if self.layers is not None else "") + (
                                f"; digest {observed.get('digest', 'none')}" if self.digest else "")
        if self.ok is not None:
            result.checks.append(expect.Check("pull", "succeeds" if self.ok else "fails", pulled,
                                              observed["ok"] == self.ok))
        result.checks += expect.text_checks("error", self.error, observed.get("error", ""))
        if self.digest is not None:
            want, got = place.expand(self.digest), observed.get("digest", "none")
            result.checks.append(expect.Check("digest", want, got, got == want))
        if self.layers is not None:
            result.checks.append(expect.Check("layers downloaded", str(self.layers),
                                              str(observed.get("layers", 0)),
                                              observed.get("layers") == self.layers))
        result.checks += expect.within_check(self.within, result.duration)
