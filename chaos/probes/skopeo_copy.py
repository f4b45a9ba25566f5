"""skopeo_copy: copy an image with skopeo (no daemon) in the lab; success, error and time are judged."""

from __future__ import annotations

from chaos.probes.base import ProbeBase
from chaos.scenario.model import PLATFORM, TextMatch
from chaos.scenario.modelbase import Field


class SkopeoCopyProbe(ProbeBase):
    """Copy an image with skopeo (a daemon-less client) from the lab's client namespace into a
    scratch folder: what a CI job without dockerd does."""

    kind = "skopeo-copy"
    key = "skopeo_copy"

    skopeo_copy: str = Field(pattern=r"^[^\s]+$")
    """The image reference, e.g. {cache}/library/busybox:1 (docker:// is implied)."""
    ok: bool | None = True
    """Whether the copy must succeed (false: it must fail; null: either)."""
    error: TextMatch | None = None
    """Checks on skopeo's output of a failed copy."""
    platform: str | None = Field(None, pattern=PLATFORM)
    """Copy this platform of a multi-arch image (`linux/arm64`): skopeo's --override-os,
    --override-arch and --override-variant."""

    def describe(self) -> str:
        platform = f" ({self.platform})" if self.platform else ""
        return f"skopeo copy {self.skopeo_copy}{platform}"

    def observe(self, place, journal, result) -> None:
        import shutil
        import tempfile
        import time
        from pathlib import Path

        from chaos.lab.clients import ClientError, platform_args
        from chaos.probes import expect
        from chaos.probes.result import HUNG
        from chaos.probes.run import OUTPUT_KEEP, bound

        if place.lab is None:
            raise RuntimeError("skopeo_copy needs `lab: registry`")
        ref = place.expand(self.skopeo_copy).removeprefix("docker://")
        scratch = Path(tempfile.mkdtemp(prefix="chaos-skopeo-", dir=place.lab.skopeo.tmp))
        start = time.monotonic()
        try:
            done = place.lab.skopeo.copy(f"docker://{ref}", f"dir:{scratch / 'image'}",
                                         timeout=bound(self), check=False,
                                         extra=platform_args(self.platform))
            code, output = done.returncode, done.stdout
        except ClientError as exc:  # killed at the bound
            result.duration, result.verdict = time.monotonic() - start, HUNG
            result.detail.update(image=ref, output=exc.output[-OUTPUT_KEEP:])
            return
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.duration = time.monotonic() - start
        result.detail.update(image=ref, exit=code, output=output[-OUTPUT_KEEP:])
        seen = "copied" if code == 0 else f"failed (exit {code}): {output.strip()[-300:]}"
        if self.ok is not True or self.error is not None:  # about an error: which one came
            result.observed = "copied" if code == 0 else f"failed (exit {code}): {expect.last_line(output)}"
        if self.ok is not None:
            result.checks.append(expect.Check("copy", "succeeds" if self.ok else "fails", seen,
                                              (code == 0) == self.ok))
        result.checks += expect.text_checks("error", self.error, output if code else "")
        result.checks += expect.within_check(self.within, result.duration)
