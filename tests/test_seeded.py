"""The upstream's seeded storage, kept once and copied into later labs (chaos.lab.seeded)."""

from __future__ import annotations

import json
import os

import pytest

from chaos.lab import seeded
from chaos.lab.images import DEFAULT_IMAGES, SeedImage
from conftest import write


def _storage(root):
    blob = root / "docker/registry/v2/blobs/sha256/ab/abcd"
    blob.mkdir(parents=True)
    (blob / "data").write_bytes(b"layer bytes")
    link = root / "docker/registry/v2/repositories/library/x/_manifests/tags/1/current"
    link.mkdir(parents=True)
    (link / "link").write_text("sha256:abcd")
    return blob / "data", link / "link"


def test_blobs_are_linked_and_links_are_copied(tmp_path):
    data, link = _storage(tmp_path / "pushed")
    seeded.save(tmp_path / "cache", "k", tmp_path / "pushed", {"library/x:1": "sha256:abcd"})
    assert seeded.restore(tmp_path / "cache", "k", tmp_path / "lab") == {"library/x:1": "sha256:abcd"}
    kept_data = tmp_path / "cache/seed-k/storage" / data.relative_to(tmp_path / "pushed")
    lab_data = tmp_path / "lab" / data.relative_to(tmp_path / "pushed")
    lab_link = tmp_path / "lab" / link.relative_to(tmp_path / "pushed")
    assert os.stat(lab_data).st_ino == os.stat(kept_data).st_ino  # immutable: shared
    lab_link.write_text("sha256:moved")  # a retag in the lab rewrites it in place
    kept_link = tmp_path / "cache/seed-k/storage" / link.relative_to(tmp_path / "pushed")
    assert kept_link.read_text() == "sha256:abcd"
    assert not list((tmp_path / "cache").glob(".seed-*"))  # nothing half-written left


def test_nothing_kept_or_a_broken_copy_means_push(tmp_path):
    assert seeded.restore(tmp_path / "cache", "k", tmp_path / "lab") is None
    (tmp_path / "cache/seed-k/storage").mkdir(parents=True)
    (tmp_path / "cache/seed-k/digests.json").write_text("{not json")
    assert seeded.restore(tmp_path / "cache", "k", tmp_path / "lab") is None


def test_the_key_follows_the_images_and_the_registry_build(tmp_path):
    fake = tmp_path / "registry"
    fake.write_bytes(b"v1")
    k = seeded.key(DEFAULT_IMAGES, str(fake))
    assert k == seeded.key(DEFAULT_IMAGES, str(fake))
    assert k != seeded.key(DEFAULT_IMAGES + (SeedImage("library/more"),), str(fake))
    fake.write_bytes(b"v2 longer")
    assert k != seeded.key(DEFAULT_IMAGES, str(fake))


@pytest.mark.usefixtures("lab_binaries")
def test_a_second_lab_pushes_nothing_and_serves_the_same_images(tmp_path):
    from chaos.journal import Journal
    from chaos.lab import lab_up

    cache = tmp_path / "images"
    labs = []
    for n in (1, 2):
        journal = Journal.create(f"seeded-{n}-{os.getpid()}", base=tmp_path / "state")
        try:
            lab = lab_up(journal, tmp_path / f"run{n}", image_cache=cache)
            pushes = [r for r in lab.upstream.access.requests() if r.method in ("PUT", "POST", "PATCH")]
            pulled = lab.docker().images.pull("library/big", tag="1")
            labs.append((dict(lab.images), len(pushes), pulled.id))
        finally:
            journal.rollback()
            journal.finish()
    (first, first_pushes, first_id), (second, second_pushes, second_id) = labs
    assert first_pushes > 0 and second_pushes == 0
    assert first == second and first_id == second_id
    assert json.loads(next(cache.glob("seed-*/digests.json")).read_text()) == first


NOTHING_WARMED = """
name: nothing-warmed
lab:
  warm: []
faults:
  - type: hosts-entry
    names: [example.test]
    address: 198.18.0.99
expect:
  before:
    - name: an image the cache never had pulls through it from Hub
      pull: library/busybox:1
      within: 20s
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root")
def test_a_lab_seeded_from_the_cache_with_nothing_warmed_still_pulls(chaos, tmp_path):
    # The second lab's seed comes from the image cache and it warms nothing, so no skopeo
    # copy makes the lab's scratch folder: the pull probe found none ("FileNotFoundError",
    # an `error` verdict; what the no-proxy and forwarder mutants met in every scenario).
    path = write(tmp_path, NOTHING_WARMED)
    for run in (1, 2):
        result = chaos("run", str(path), timeout=180)
        assert result.returncode == 0, f"run {run}:\n{result.stdout}"
