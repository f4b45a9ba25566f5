"""Fuzzing the scenario loader (hypothesis, derandomized): never a traceback, every problem
at file:line with the field, nothing applied when a document is refused.

The strategies and the check live in tests/fuzzing.py; benchmarks/crash_campaign.py runs the
same with 10,000 cases (`--fuzz 10000`).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

import fuzzing
from campaign import leftovers, machine, machine_diff
from chaos.errors import ScenarioInvalid
from chaos.scenario.load import load_text


def fuzz_settings(n: int):
    # derandomize: the same cases on every run and machine; no example database on disk.
    return settings(max_examples=n, derandomize=True, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@fuzz_settings(150)
@given(fuzzing.mutated())
def test_mutated_shipped_scenarios(text):
    fuzzing.check(text)


@fuzz_settings(100)
@given(fuzzing.raw())
def test_shipped_scenarios_with_broken_syntax(text):
    fuzzing.check(text)


@fuzz_settings(150)
@given(fuzzing.generated())
def test_documents_from_the_formats_vocabulary(text):
    fuzzing.check(text)


def _refused_sample(n: int) -> list[str]:
    """The first n documents of a derandomized stream that are refused (invalid or at plan)."""
    out: list[str] = []

    @fuzz_settings(n * 4)
    @given(fuzzing.documents)
    def collect(text):
        if len(out) < n and fuzzing.check(text).kind != "valid":
            out.append(text)

    collect()
    assert len(out) == n
    return out


def test_nothing_is_applied_when_validation_fails(chaos, state_dir, tmp_path):
    files = []
    for i, text in enumerate(_refused_sample(25)):
        path = tmp_path / f"fuzz{i:02d}.yaml"
        path.write_text(text)
        files.append(path)
    before = machine()
    result = chaos("run", *map(str, files))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    for path in files:  # every refused file is named, with a line and a column
        assert f"{path}:" in output, f"{path.name} not reported"
    assert not state_dir.exists(), "a refused run must not even open a journal"
    assert machine_diff(before, machine()) == []
    assert leftovers([], state_dir) == []


# -- bugs the fuzzer found in chaos/scenario/load.py (fixed; these fail without the fix) ------
def _problems(text: str):
    with pytest.raises(ScenarioInvalid) as info:
        load_text(text, "f.yaml")
    return info.value.problems


def test_key_beside_a_probe_tag_mapping_is_located_where_it_is():
    # The tag `http` is also a key whose value here is a mapping: the stray key used to be
    # placed inside it (expect.before[0].http.connect_timeout, "did you mean itself?").
    text = "name: x\nexpect:\n  before:\n    - http:\n        a: 1\n      connect_timeout: 1s\n"
    problems = {p.field: p for p in _problems(text)}
    stray = problems["expect.before[0].connect_timeout"]
    assert (stray.line, stray.column) == (6, 7)
    assert "did you mean 'connect_timeout'" not in stray.message


def test_empty_key_is_named_in_the_field():
    (problem,) = _problems('name: x\n"": 1\n')
    assert problem.field == "''" and problem.line == 2


def test_key_that_is_not_text_is_located_at_the_key():
    (problem,) = _problems("name: x\n? [a, b]\n: 1\n")  # used to be 1:1 with no field
    assert (problem.line, problem.column, problem.field) == (2, 3, "(top level)")
    assert "a key must be text" in problem.message
    (problem,) = _problems("name: x\nexpect:\n  ? [a, b]\n  : 1\n")
    assert (problem.line, problem.column, problem.field) == (3, 5, "expect")


# -- whole-model checks name their field ---------------------------------------------------
def test_unknown_probe_region_names_the_probe():
    text = ("name: x\nregions:\n  ES: 198.18.64.0/24\nexpect:\n  during:\n"
            "    - run: 'true'\n      region: FR\n")
    (problem,) = _problems(text)
    assert problem.field == "expect.during[0].region" and problem.line == 7


def test_name_served_twice_names_the_second_one():
    text = "name: x\nserve:\n  - name: a.test\n  - name: a.test\n"
    (problem,) = _problems(text)
    assert problem.field.startswith("serve[1]") and problem.line == 4
