"""Declared lab images, steps and `platform:` without a lab: building, validation, the
schema, `chaos list` and the timeline. The lab itself runs them in tests/test_lab_steps.py
and in the library scenarios 13-15 (tests/test_registry_library.py)."""

from __future__ import annotations

import json

import pytest

from chaos.errors import ScenarioInvalid
from chaos.lab.declared import DeclaredImage, build, cached
from chaos.scenario.load import load_text
from chaos.sizes import parse_size


def _index(layout):
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    return top, json.loads((layout / "blobs" / "sha256" / top["digest"].split(":")[1]).read_bytes())


def test_sizes_as_people_write_them():
    assert [parse_size(v) for v in ("10kB", "50MB", "1GiB", "2 KiB", 7, "12")] == \
        [10_000, 50_000_000, 1 << 30, 2048, 7, 12]
    for bad in ("ten", "-1", True, "5 parsecs"):
        with pytest.raises(ValueError, match="bad size"):
            parse_size(bad)


def test_declared_image_is_deterministic_and_sized(tmp_path):
    image = DeclaredImage("library/huge", layers=(300_000, 1_000))
    build(image, tmp_path / "a")
    build(image, tmp_path / "b")
    assert _index(tmp_path / "a") == _index(tmp_path / "b")  # same bytes, same digests
    top, manifest = _index(tmp_path / "a")
    assert top["annotations"]["org.opencontainers.image.ref.name"] == "1"
    sizes = [layer["size"] for layer in manifest["layers"]]
    assert len(sizes) == 2 and 300_000 < sizes[0] < 320_000 and 1_000 < sizes[1] < 20_000
    build(DeclaredImage("library/huge", "2", layers=(300_000, 1_000)), tmp_path / "c")
    other = _index(tmp_path / "c")[1]["layers"]
    assert {layer["digest"] for layer in other}.isdisjoint(m["digest"] for m in manifest["layers"])


def test_multi_platform_image_is_an_index_of_one_image_per_platform(tmp_path):
    build(DeclaredImage("library/multi", platforms=("linux/amd64", "linux/arm64", "linux/arm/v7")),
          tmp_path / "m")
    top, index = _index(tmp_path / "m")
    assert top["mediaType"] == index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [m["platform"] for m in index["manifests"]]
    assert platforms == [{"os": "linux", "architecture": "amd64"},
                         {"os": "linux", "architecture": "arm64"},
                         {"os": "linux", "architecture": "arm", "variant": "v7"}]
    blobs = tmp_path / "m" / "blobs" / "sha256"
    configs = []
    for m in index["manifests"]:
        manifest = json.loads((blobs / m["digest"].split(":")[1]).read_bytes())
        configs.append(json.loads((blobs / manifest["config"]["digest"].split(":")[1]).read_bytes()))
    assert [c["architecture"] for c in configs] == ["amd64", "arm64", "arm"]
    assert len({c["rootfs"]["diff_ids"][0] for c in configs}) == 3  # no platform shares a layer


def test_cache_builds_once_and_keys_on_the_declaration(tmp_path):
    image = DeclaredImage("library/many", layers=(10_000,) * 20)
    first = cached(image, tmp_path)
    stamp = (first / "index.json").stat().st_mtime_ns
    again = cached(image, tmp_path)
    assert again == first and (again / "index.json").stat().st_mtime_ns == stamp
    assert cached(DeclaredImage("library/many", layers=(10_000,) * 21), tmp_path) != first
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [image.key(), DeclaredImage("library/many", layers=(10_000,) * 21).key()])  # no tmp left


def test_lab_images_and_warm_platform_load():
    scenario = load_text("""\
name: ok
lab:
  images:
    - {name: library/huge, layers: [50MB]}
    - {name: library/many:2, layers: {count: 100, size: 10kB}}
    - {name: library/multi, platforms: [linux/amd64, linux/arm64]}
  warm: [library/busybox:1, {image: library/multi:1, platform: linux/arm64}]
expect:
  during:
    - retag: {image: library/many:2, to: library/huge:1}
    - restart: cache
      within: 5s
    - docker_pull: library/multi:1
      platform: linux/arm64
      digest: "{digest:library/multi:1}"
    - skopeo_copy: "{cache}/library/multi:1"
      platform: linux/arm64
    - wait: 1s
""")
    declared = [i.declared() for i in scenario.lab.images]
    assert declared[0] == DeclaredImage("library/huge", "1", (50_000_000,))
    assert declared[1].layers == (10_000,) * 100 and declared[1].tag == "2"
    assert [w.item() for w in scenario.lab.warm] == ["library/busybox:1", ("library/multi:1", "linux/arm64")]
    assert [type(p).__name__ for p in scenario.expect.during] == [
        "RetagStep", "RestartStep", "DockerPullProbe", "SkopeoCopyProbe", "WaitStep"]


LAB = "name: x\nlab: registry\n"
BROKEN = [
    ("step without a lab", "name: x\nexpect:\n  during:\n    - restart: cache\n",
     ":4:16: ", "acts on the registry lab"),
    ("step from a region", LAB + "expect:\n  during:\n    - restart: cache\n      region: cache\n",
     ":6:15: ", "acts on the lab, not from a client region"),
    ("unknown component", LAB + "expect:\n  during:\n    - stop: mirror\n",
     ":5:13: ", "'cache'"),
    ("retag without to", LAB + "expect:\n  during:\n    - retag: {image: library/x:1}\n",
     ":5:14: ", "missing required key 'to'"),
    ("unknown digest placeholder", LAB + "expect:\n  during:\n    - docker_pull: library/x:1\n"
     "      digest: '{digest:library/x:1}'\n", ":6:15: ", "not one of the lab's images"),
    ("warm platform of a single-arch image", "name: x\nlab:\n  warm:\n    - {image: library/busybox:1, "
     "platform: linux/arm64}\n", ":4:44: ", "not a multi-arch image"),
    ("image twice", "name: x\nlab:\n  images: [{name: library/a}, {name: 'library/a:1'}]\n",
     ":3:38: ", "declared twice"),
    ("too big", "name: x\nlab:\n  images: [{name: library/a, layers: {count: 3, size: 1GB}}]\n",
     ":3:38: ", "at most 2GB"),
    ("bad platform", LAB + "expect:\n  during:\n    - skopeo_copy: x/y:1\n      platform: amd64\n",
     ":6:17: ", "should match pattern"),
]


@pytest.mark.parametrize("label,text,where,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_bad_steps_and_images_are_refused_at_their_line(label, text, where, expected):
    with pytest.raises(ScenarioInvalid) as info:
        load_text(text, "s.yaml")
    messages = [str(p) for p in info.value.problems]
    assert any(m.startswith("s.yaml" + where) and expected in m for m in messages), messages


def test_list_and_schema_cover_steps_images_and_platform(chaos):
    listed = chaos("list").stdout
    for line in ("restart: (step)", "retag: (step)", "push: (step)", "delete: (step)",
                 "stop: (step)", "start: (step)", "wait: (step)", "platform (text, optional)",
                 "digest (text, optional)"):
        assert line in listed, line
    steps_section = listed.split("Steps (actions")[1]
    assert "docker_pull:" not in steps_section  # probes are listed once, above
    schema = json.loads(chaos("schema").stdout)
    defs = schema["$defs"]
    for name in ("PushStep", "RetagStep", "DeleteStep", "StopStep", "StartStep", "RestartStep",
                 "WaitStep", "LabImage", "LayerCount", "WarmImage"):
        assert name in defs, name
    assert "platform" in defs["DockerPullProbe"]["properties"]
    assert "platform" in defs["SkopeoCopyProbe"]["properties"]
    assert set(defs["LabSpec"]["anyOf"][1]["properties"]) >= {"images", "warm"}


def test_timeline_draws_steps_apart_from_probes():
    from chaos.probes.result import FAILED, PASSED, ProbeResult
    from chaos.report import timeline
    from chaos.runner import ScenarioResult

    result = ScenarioResult("s", "s.yaml", duration=4.0)
    result.probes = [ProbeResult("during", "restart cache", "step", PASSED, 1.0, 0.5),
                     ProbeResult("during", "docker pull x", "docker-pull", PASSED, 1.0, 1.5),
                     ProbeResult("during", "start cdn", "step", FAILED, 1.0, 2.5)]
    kinds = [row.kind for row in timeline.rows(result)[0]]
    assert kinds == ["step", "probe", "step"]
    lines = timeline.text(result)
    assert "◆" in lines[1] and "◆" not in lines[2] and "▬" in lines[2]
    svg = timeline.svg(result)
    assert "during step: restart cache" in svg and timeline.COLOURS["step"] in svg
    assert svg.count(timeline.COLOURS["failed"]) >= 1  # a step not done is drawn red


def test_export_leaves_steps_out_and_says_why(chaos):
    from conftest import SCENARIOS

    result = chaos("export", "--to", "chaos-mesh",
                   str(SCENARIOS / "registry" / "15-cache-restarted-upstream-hangs.yaml"))
    assert "expect.during[0] (step): a step changes the registry lab" in result.stdout + result.stderr
