"""What the pull probes share (docker_pull, containerd_pull, podman_pull, pull): the fields
`ok`, `error`, `layers`, and one observation through the pull agent
(chaos.probes.pull_agent), which the runner can kill with its whole group when the pull
hangs. A kind says only which client pulls (``client(place)``)."""

from __future__ import annotations

from chaos.probes.base import ProbeBase
from chaos.scenario.model import PLATFORM, TextMatch
from chaos.scenario.modelbase import Field


class ImagePull(ProbeBase):
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
    started (a stale copy from a cache shows here after a `retag` step). Observed for
    dockerd only: with another client the probe is an error, not a pass."""
    layers: int | None = Field(None, ge=0)
    """How many layers the pull must have downloaded (0: everything came from the local store)."""

    def client(self, place) -> str:
        """Which lab client pulls (chaos.lab.pullers.CLIENTS)."""
        raise NotImplementedError

    def describe(self) -> str:
        platform = f"--platform {self.platform} " if self.platform else ""
        return f"{self.kind.replace('-', ' ')} {platform}{getattr(self, self.key)}"

    def observe(self, place, journal, result) -> None:
        import json
        import shutil
        import sys
        import tempfile

        from chaos.lab import pullers
        from chaos.probes import evidence, expect
        from chaos.probes.result import HUNG
        from chaos.probes.run import OUTPUT_KEEP, Place, bound, run_process

        client = self.client(place)
        if place.lab is None:
            raise RuntimeError(f"{self.key} needs `lab: registry`")
        if self.digest is not None and client != "dockerd":  # cannot observe it: refuse
            raise RuntimeError(f"digest: only dockerd reports the digest it pulled, not {client}")
        image = place.expand(getattr(self, self.key))
        limit = bound(self)
        scratch = tempfile.mkdtemp(prefix="chaos-pull-", dir=place.lab.skopeo.tmp)
        try:
            job = pullers.job(place.lab, journal, client, image, scratch + "/image", self.platform)
            if client != "dockerd":  # the client is the agent's child: it reads them itself
                job["peers"] = evidence.peers(place)
            argv = [sys.executable, "-m", "chaos.probes.pull_agent", json.dumps(job), str(limit)]
            # dockerd is reached through its socket; the others pull from the client namespace.
            where = Place(None if client == "dockerd" else place.lab.topology.client_ns, place.env)
            code, out, err, took = run_process(journal, argv, where, limit + 10.0)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        result.duration = took
        result.detail.update(image=image, client=client, build=pullers.build(place.lab, client))
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
        if "output" in observed:
            observed["output"] = observed["output"][-OUTPUT_KEEP:]
        for key in ("connections", "connections_error"):
            if key in observed:
                result.evidence[key] = observed.pop(key)
        result.detail.update(observed)
        if observed.get("hung"):
            result.evidence.update(stalled=evidence.pull_line(layers), layers=layers)
            if "idle" in observed:  # bytes read from temporary files: no per-layer figures
                result.evidence["received"] = {"bytes": observed.get("bytes", 0), "idle": observed["idle"]}
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
