"""Images a scenario declares (`lab: {images: [...]}`): layer sizes and count, platforms.

Built offline and deterministically, as OCI image layouts: each layer is one file of seeded
pseudo-random bytes (the seed is the image's ref, platform and layer index), so the same
declaration always gives the same digests and no two images share a blob. An image with
several platforms is an OCI index of one manifest per platform (pushed as a Docker manifest
list, as Hub serves multi-arch images). A built layout is kept in a cache folder named by
the declaration's hash and reused by every later run: a 50 MB image is built once.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

from chaos.lab.images import SeedImage, _busybox_layer, _put_blob, _tar_info

#: Bump when the layout this module writes changes: older cache entries are then not reused.
FORMAT = 1
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@dataclass(frozen=True)
class DeclaredImage:
    """``repo:tag``; ``layers``: bytes of each layer (empty: one busybox layer);
    ``platforms``: ``os/arch[/variant]`` each (empty: one linux/amd64 manifest, no index)."""

    repo: str
    tag: str = "1"
    layers: tuple[int, ...] = ()
    platforms: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def multi(self) -> bool:
        return bool(self.platforms)

    def key(self) -> str:
        """The cache key: a hash of the declaration and of this module's format."""
        text = json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


def _platform(text: str) -> dict:
    os_name, arch, *variant = text.split("/")
    return {"os": os_name, "architecture": arch, **({"variant": variant[0]} if variant else {})}


def _random_layer(seed: str, index: int, size: int) -> bytes:
    data = random.Random(f"{seed}#{index}").randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_tar_info("data", kind=tarfile.DIRTYPE, mode=0o755))
        tar.addfile(_tar_info(f"data/layer{index}.bin", size=len(data)), io.BytesIO(data))
    return buf.getvalue()


def _manifest(image: DeclaredImage, platform: str, layout: Path) -> dict:
    """Write one platform's layers, config and manifest; the manifest's descriptor."""
    seed = f"{image.ref}@{platform}"
    if image.layers:  # random bytes do not compress: gzip level 0 (stored) costs nothing
        tars = [(_random_layer(seed, i, size), 0) for i, size in enumerate(image.layers, 1)]
    else:  # a runnable busybox whose /etc/chaos-image names this image and platform
        tars = [(_busybox_layer(SeedImage(image.repo, f"{image.tag}@{platform}")), 6)]
    layers, diff_ids = [], []
    for raw, level in tars:
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, compresslevel=level, mtime=0)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                       **_put_blob(layout, gz)})
    plat = _platform(platform)
    config = {**plat, "created": "2024-01-01T00:00:00Z",
              "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"],
                         "Labels": {"org.opencontainers.image.ref.name": image.ref,
                                    "io.chaos.lab.platform": platform}},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "chaos.lab.declared"}
                          for _ in layers]}
    cfg = _put_blob(layout, json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                "layers": layers}
    return {"mediaType": OCI_MANIFEST, **_put_blob(layout, json.dumps(manifest, sort_keys=True).encode()),
            "platform": plat}


def build(image: DeclaredImage, layout: Path) -> None:
    """Write ``image`` as an OCI image layout in ``layout`` (created; must not exist)."""
    (layout / "blobs" / "sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    top = {k: v for k, v in _manifest(image, "linux/amd64", layout).items() if k != "platform"} \
        if not image.multi else {"mediaType": OCI_INDEX, **_put_blob(layout, json.dumps(
            {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [_manifest(image, p, layout) for p in image.platforms]},
            sort_keys=True).encode())}
    top["annotations"] = {"org.opencontainers.image.ref.name": image.tag}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))


def cached(image: DeclaredImage, cache: Path) -> Path:
    """The layout of ``image`` in ``cache``, built there first if no earlier run did.
    Built under a temporary name and renamed: a reader never sees half a layout, and two
    runs building the same image at once both end with one whole copy."""
    final = cache / image.key()
    if (final / "index.json").exists():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{image.key()}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        build(image, tmp)
        os.rename(tmp, final)
    except OSError:
        if not (final / "index.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def push(skopeo, images, registry: str, *, creds: str, cache: Path,
         timeout: float = 60) -> dict[str, str]:
    """Build (or reuse) each image and push them all at once, as Docker schema 2 (a
    manifest list for several platforms); ``{"library/x:1": "sha256:..."}``."""
    running = []
    for image in images:
        layout = cached(image, cache)
        digestfile = skopeo.tmp / f"declared-{image.key()}-{os.getpid()}.digest"
        extra = ["--format", "v2s2"] + (["--all"] if image.multi else [])
        running.append((image, digestfile, skopeo.start_copy(
            f"oci:{layout}:{image.tag}", f"docker://{registry}/{image.ref}",
            dest_creds=creds, digestfile=digestfile, extra=extra)))
    digests = {}
    for image, digestfile, run in running:
        run.wait(timeout)
        digests[image.ref] = digestfile.read_text().strip()
        digestfile.unlink(missing_ok=True)
    return digests
