"""`chaos schema` describes the format the loader accepts: every shipped scenario and every
scenario in the docs validates against it (jsonschema, on the real command's output), every
shorthand the models accept is in it, and misspelt keys are still refused at any depth."""

from __future__ import annotations

import json
import re
import subprocess
import typing

import jsonschema
import pytest
from pydantic import BeforeValidator, PlainValidator, WithJsonSchema, WrapValidator

from chaos.errors import ScenarioInvalid
from chaos.scenario.load import load_text, parse_yaml
from conftest import ROOT, SCENARIOS, chaos_cmd

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT = "# fragment"
"""First line of a ```yaml block in the docs that is deliberately not a whole scenario."""


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    out = subprocess.run(chaos_cmd("schema"), capture_output=True, text=True, cwd=ROOT,
                         check=True, timeout=60).stdout
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(validator, data) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in validator.iter_errors(data)]


def doc_blocks() -> list[tuple[str, str]]:
    """(where, text) of every ```yaml block in README.md and docs/*.md."""
    blocks = []
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"^```ya?ml\n(.*?)^```", text, re.S | re.M):
            line = text[:match.start()].count("\n") + 2
            blocks.append((f"{path.relative_to(ROOT)}:{line}", match.group(1)))
    return blocks


SHIPPED = sorted(SCENARIOS.rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[str(p.relative_to(SCENARIOS)) for p in SHIPPED])
def test_every_shipped_scenario_matches_the_schema(validator, path):
    data, _ = parse_yaml(path.read_text(), str(path))  # the plain data the loader validates
    assert problems(validator, data) == []


def test_shipped_scenarios_use_the_shorthands():
    """The shorthands the schema must describe are in the library (else the test above
    proves less than it says)."""
    texts = [p.read_text() for p in SHIPPED]
    assert any(re.search(r"^lab: registry$", t, re.M) for t in texts)
    assert any(re.search(r"^  [A-Za-z]\w*: 198\.18\.\d+\.\d+/\d+", t, re.M) for t in texts)


def test_every_scenario_in_the_docs_loads_and_matches_the_schema(validator):
    checked = []
    for where, text in doc_blocks():
        if text.startswith(FRAGMENT):
            continue
        data, _ = parse_yaml(text, where)
        is_scenario = isinstance(data, dict) and "name" in data and (
            "faults" in data or "expect" in data)
        assert is_scenario, (f"{where}: a ```yaml block that is not a whole scenario (name: and "
                             f"faults: or expect:); complete it or start it with {FRAGMENT!r}")
        load_text(text, where)  # the loader takes it as it stands
        assert problems(validator, data) == [], where
        checked.append(where)
    assert len(checked) >= 4, checked  # README's three and docs/dns.md's


SHORTHANDS = """\
name: shorthands
lab: registry
faults:
  - type: dns
    names: [registry-1.docker.io]
    answer: delay
    delay: 250ms
    window: {after: 1s, for: 2m}
expect:
  during:
    - dns_queries: registry-1.docker.io
      at_least: 1
    - dns_queries: {name: registry-1.docker.io, at_most: 3}
    - run: "true"
      within: 1.5
"""


def test_shorthands_the_loader_accepts_match_the_schema(validator):
    load_text(SHORTHANDS)
    assert problems(validator, parse_yaml(SHORTHANDS, "s.yaml")[0]) == []
    regions = "name: r\nregions:\n  ES: 198.18.64.0/24\n  win: {range: 198.18.67.0/24, os: windows}\n"
    load_text(regions)
    assert problems(validator, parse_yaml(regions, "r.yaml")[0]) == []


MISSPELT = [
    ("expekt:\n  during: []", "name: x\n"),                                    # top level
    ("serve:\n  - name: a.test\n    http: {prot: 81}", "name: x\n"),           # serve[0].http
    ("faults:\n  - type: route-blackhole\n    destinatons: [a.test]", "name: x\n"),  # a fault
    ("faults:\n  - type: hosts-entry\n    names: [a.test]\n    window: {fro: 1s}", "name: x\n"),
    ("expect:\n  during:\n    - run: 'true'\n      withn: 1s", "name: x\n"),    # a probe
    ("expect:\n  after:\n    - run: 'true'\n      stdout: {contain: x}", "name: x\n"),
    ("expect:\n  during:\n    - dns_queries: {name: a.test, at_lest: 1}", "name: x\n"),
    ("regions:\n  ES: {rnage: 198.18.64.0/24}", "name: x\n"),                  # a region
    ("lab: {dockred: false}", "name: x\n"),                                    # the lab
]


@pytest.mark.parametrize("body,head", MISSPELT, ids=[m[0].split(":")[0] + str(i)
                                                     for i, m in enumerate(MISSPELT)])
def test_a_misspelt_key_is_refused_at_any_depth(validator, body, head):
    text = head + body + "\n"
    with pytest.raises(ScenarioInvalid, match="unknown key"):
        load_text(text)
    assert problems(validator, parse_yaml(text, "s.yaml")[0]), text


@pytest.mark.parametrize("text", [
    "name: x\nlab: registri\n",                                   # the lab's one name
    "name: x\nregions:\n  E_S: 198.18.64.0/24\n",                 # region names have a pattern
    "name: x\nfaults:\n  - names: [a.test]\n    address: 127.0.0.1\n",  # a fault needs type:
    "name: x\nregions:\n  ES: [198.18.64.0/24]\n",                 # a range or a mapping
], ids=["lab", "region-name", "fault-type", "region-list"])
def test_values_the_loader_refuses_the_schema_refuses(validator, text):
    with pytest.raises(ScenarioInvalid):
        load_text(text)
    assert problems(validator, parse_yaml(text, "s.yaml")[0]), text


def _coercing(metadata) -> list:
    return [m for m in metadata if isinstance(m, (BeforeValidator, PlainValidator, WrapValidator))]


def _annotated_groups(annotation) -> list[list]:
    """The metadata of every Annotated[...] inside an annotation (list[Port], X | None)."""
    groups = []
    if typing.get_origin(annotation) is typing.Annotated:
        groups.append(list(annotation.__metadata__))
    for arg in typing.get_args(annotation):
        groups += _annotated_groups(arg)
    return groups


def test_every_coercion_before_validation_is_in_the_schema():
    """A model or field that takes something other than its declared shape (a before / plain
    / wrap validator) must say so in the schema: a shorthand in chaos.scenario.schema, or
    WithJsonSchema beside the validator. Validators that only check a value of the declared
    type are listed here by name."""
    from chaos.scenario import model
    from chaos.scenario.schema import SHORTHANDS as DESCRIBED, _models

    checks_only = {typing.get_args(model.HostName)[1].func}  # a str stays a str
    missing = []
    for name, cls in _models(model.scenario_model()).items():
        decorators = cls.__pydantic_decorators__
        if any(d.info.mode != "after" for d in decorators.model_validators.values()) \
                and name not in DESCRIBED:
            missing.append(f"{name}: a mode='before' model validator")
        for d in decorators.field_validators.values():
            if d.info.mode != "after":
                missing.append(f"{name}.{', '.join(d.info.fields)}: a mode={d.info.mode!r} validator")
        for field, info in cls.model_fields.items():
            for group in [list(info.metadata), *_annotated_groups(info.annotation)]:
                coercing = [m for m in _coercing(group) if m.func not in checks_only]
                if coercing and not any(isinstance(m, WithJsonSchema) for m in group):
                    missing.append(f"{name}.{field}: {coercing[0]!r} without WithJsonSchema")
    assert missing == []
    assert set(DESCRIBED) <= set(_models(model.scenario_model()))  # no stale entries


ISSUE_15_FIELDS = """\
name: content-and-connections
faults:
  - type: http-respond
    status: 200
    body_random: 1000
    match: {host: cdn.test, headers: {user-agent: "docker/*"}}
  - type: http-replace
    target: response
    code: 200
    body_base64: AAE=
    response_match: {status: [200, 206], headers: {content-type: "application/*"}}
  - type: http-patch
    target: request
    json: {a: null, b: {c: 1}}
    headers: [[x-a, "1"]]
    queries: [[q, "2"]]
  - {type: http-abort, target: response, how: reset}
  - {type: http-delay, target: request, delay: 250ms}
  - {type: partial, bytes: 100, then: reset, wait_ack: false}
  - {type: reset, after: 1000, wait_ack: true, destinations: [198.18.1.10], ports: [80]}
  - {type: packet-filter, established: keep}
  - {type: route-blackhole, destinations: [198.18.1.10], established: reset}
  - {type: geo-block, region: ES, block: [198.18.1.10], established: drop}
"""


def test_content_faults_and_connection_state_are_in_the_schema_and_the_list(validator, chaos):
    load_text(ISSUE_15_FIELDS.replace("faults:", "regions:\n  ES: 198.18.64.0/24\nfaults:"))
    assert problems(validator, parse_yaml(ISSUE_15_FIELDS, "s.yaml")[0]) == []
    for good, bad in (("{status: [200", "{statuss: [200"), ("established: keep", "established: kept")):
        text = ISSUE_15_FIELDS.replace(good, bad)
        assert problems(validator, parse_yaml(text, "s.yaml")[0]), bad
    listed = chaos("list").stdout
    for name in ("http-respond", "http-replace", "http-patch", "http-abort", "http-delay"):
        assert f"\n{name}\n" in listed
    assert "established (keep | drop | reset, default drop)" in listed
    assert "wait_ack (bool, default False)" in listed and "wait_ack (bool, default True)" in listed
