"""Scenario fuzzing, shared by tests/test_fuzz.py (a few hundred cases) and
benchmarks/crash_campaign.py (10,000).

Three sources of documents (hypothesis strategies):
- ``mutated``: a shipped scenario with one to three structural changes (a value replaced by
  an odd one, a key dropped, added, misspelt, a list item duplicated, the fault type swapped);
- ``raw``: a shipped scenario's text with byte-level edits (YAML syntax, tabs, anchors,
  tags, control characters);
- ``generated``: documents built from the format's own vocabulary (every key of every model)
  with odd values.

``check(text)`` loads a document the way `chaos run` does and plans it in the sandbox, and
fails on anything but a valid scenario or located problems: a traceback, a problem without
a position, a position outside the file, a field that names nothing in the document, or a
line that is not where that field is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
FILE = "fuzz.yaml"

# Problems about the document as a whole: no field to name.
DOCUMENT_LEVEL = ("not valid YAML", "the file is empty", "the document expands",
                  "a scenario is a mapping", "the file is", "not UTF-8", "cannot read")


def shipped_texts() -> list[str]:
    return [p.read_text() for p in sorted((ROOT / "scenarios").rglob("*.yaml"))]


# -- values and vocabulary ----------------------------------------------------------------
ODD_VALUES = [
    None, "", " ", "x", "-", "*", "*.", ".", "é", "a" * 300, "{x}", "{logs}", "\x00", "\t",
    0, -1, 1, 2**31, 2**64, -(2**63), 0.5, -0.0, 1e308, float("inf"), float("nan"),
    True, False, [], {}, [None], [[]], {"": None}, {"x": 1},
    "0s", "1s", "-1s", "250ms", "1h", "5 parsecs", "PT1S", "nan", "inf",
    "127.0.0.1", "198.18.1.10", "198.18.1.0/24", "0.0.0.0/0", "::/0", "::1", "fd00::1",
    "10.0.0.1", "300.1.1.1", "198.18.0.0/33", "registry.test", "not a host", "-bad-.test",
    "ES", "win", "default", "cache", "linux", "windows", "drop", "reject", "blackhole",
    "nxdomain", "http-451", "registry", "tcp", "udp", "icmp", "A", "AAAA", "accept",
    "80", 80, 443, 65536, "8000:8100", "1:2:3", 128, 255, 256,
]


def _vocabulary() -> tuple[list[str], list[str], list[str]]:
    """(scenario keys, fault keys, probe keys) from the models themselves."""
    from chaos.faults import fault_types
    from chaos.probes import probe_types
    from chaos.scenario import model

    def keys(classes) -> list[str]:
        return sorted({info.alias or name for cls in classes for name, info in cls.model_fields.items()})

    nested = [model.TextMatch, model.Serve, model.HttpServe, model.Window, model.Flap,
              model.Region, model.LabSpec]
    return (keys([model.scenario_model(), *nested]), keys(fault_types()),
            keys(probe_types()))


def fault_types() -> list[str]:
    from chaos.faults import FAULTS

    return list(FAULTS)


values = st.recursive(
    st.sampled_from(ODD_VALUES) | st.text(max_size=12) | st.integers(-10, 70000)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


# -- documents ----------------------------------------------------------------------------
def _paths(node, path=()):
    """Every path in a plain document (mapping keys and list indexes)."""
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, path + (i,))


def _get(node, path):
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated(draw) -> str:
    """A shipped scenario with one to three structural changes, dumped back to YAML."""
    import copy

    scenario_keys, fault_keys, probe_keys = _vocabulary()
    texts = shipped_texts()
    data = copy.deepcopy(yaml.safe_load(draw(st.sampled_from(texts))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _get(data, path[:-1]), path[-1]
        how = draw(st.sampled_from(["replace", "drop", "add", "typo", "duplicate", "type"]))
        if how == "replace":
            parent[last] = draw(values)
        elif how == "drop":
            del parent[last]
        elif how == "add" and isinstance(parent, dict):
            key = draw(st.sampled_from(scenario_keys + fault_keys + probe_keys) | st.text(max_size=8))
            parent[key] = draw(values)
        elif how == "typo" and isinstance(parent, dict) and isinstance(last, str) and last:
            i = draw(st.integers(0, len(last) - 1))
            parent[last[:i] + last[i + 1:] or "x"] = parent.pop(last)
        elif how == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
        elif how == "type":
            faults = data.get("faults") if isinstance(data, dict) else None
            if isinstance(faults, list) and faults and isinstance(faults[0], dict):
                faults[0]["type"] = draw(st.sampled_from(fault_types()))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


SNIPPETS = [":", ": ", "- ", "\t", "  ", "\n", "#", "&a ", "*a", "*nope", "<<: *a\n", "!!python/object:os.system ",
            "!!binary ", "{", "}", "[", "]", "'", '"', "? ", "|", ">", "---\n", "...\n",
            "%YAML 1.1\n", "\x00", "\ufeff", "\x85", "é", "\\", "@", "`", "%", "!"]


@st.composite
def raw(draw) -> str:
    """A shipped scenario's text with byte-level edits."""
    text = draw(st.sampled_from(shipped_texts()))
    for _ in range(draw(st.integers(1, 4))):
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        how = draw(st.sampled_from(["insert", "delete", "line", "cut"]))
        if how == "insert":
            text = text[:i] + draw(st.sampled_from(SNIPPETS)) + text[i:]
        elif how == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 20)):]
        elif how == "line":
            lines = text.splitlines(keepends=True)
            j = draw(st.integers(0, len(lines) - 1))
            lines.insert(draw(st.integers(0, len(lines))), lines[j])
            text = "".join(lines)
        else:
            text = text[:i]
    return text


@st.composite
def generated(draw) -> str:
    """A document made of the format's vocabulary with odd values."""
    scenario_keys, fault_keys, probe_keys = _vocabulary()

    def mapping(keys, required=None, n=4):
        out = dict(required or {})
        for key in draw(st.lists(st.sampled_from(keys), max_size=n, unique=True)):
            out[key] = draw(values)
        return out

    faults = [mapping(fault_keys, {"type": draw(st.sampled_from(fault_types() + ["nope"]))})
              for _ in range(draw(st.integers(0, 3)))]
    phases = draw(st.lists(st.sampled_from(["before", "during", "after", "never"]), max_size=3, unique=True))
    probes = {phase: [mapping(probe_keys, {draw(st.sampled_from(["run", "http", "tcp", "dns_queries"])): draw(values)})
                      for _ in range(draw(st.integers(0, 2)))]
              for phase in phases}
    doc = mapping(scenario_keys, {"name": draw(st.sampled_from(["fuzz", "", "a b", "x" * 101]) | st.text(max_size=10))})
    if faults or draw(st.booleans()):
        doc["faults"] = faults
    if probes:
        doc["expect"] = probes
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


documents = st.one_of(mutated(), raw(), generated())


# -- the check ------------------------------------------------------------------------------
@dataclass
class Verdict:
    kind: str  # valid | invalid | refused (at plan time)
    problems: list


class Violation(AssertionError):
    pass


def _span(node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.end_mark.line + 1


def field_spans(text: str, field: str) -> list[tuple[int, int]]:
    """Lines (first, last) where the field may be reported: the deepest node on its path
    that exists (a missing key: the mapping that lacks it), from its key to the end of its
    value, or the value itself (an alias's value stands at its anchor); every occurrence of
    a duplicated key. Empty when the field names nothing in the document."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return []
    spans: list[tuple[int, int]] = []

    def walk(node, rest: str, span: tuple[int, int]) -> None:
        if not rest:
            spans.append(span)
            return
        if isinstance(node, yaml.SequenceNode):
            m = re.match(r"\[(\d+)\]", rest)
            if m and int(m[1]) < len(node.value):
                child = node.value[int(m[1])]
                walk(child, rest[m.end():].removeprefix("."), _span(child))
            return
        if isinstance(node, yaml.MappingNode):
            found = False
            for key_node, value_node in node.value:
                key = str(key_node.value)
                key = repr(key) if not key.strip() else key  # shown quoted (format_path)
                if rest.startswith(key) and (len(rest) == len(key) or rest[len(key)] in ".["):
                    found = True
                    tail = rest[len(key):].removeprefix(".")
                    if not tail:  # the field itself: from its key to the end of its value
                        first = key_node.start_mark.line + 1
                        spans.append((first, max(first, value_node.end_mark.line + 1)))
                        spans.append(_span(value_node))
                    else:
                        walk(value_node, tail, _span(value_node))
            if not found and not re.search(r"[.\[]", rest):
                spans.append(span)  # a missing (or misspelt) key: the mapping that lacks it

    walk(root, field, _span(root)) if root is not None else None
    return spans


def check_problem(problem, text: str) -> None:
    lines = len(re.findall(r"\r\n|[\r\n\x85\u2028\u2029]", text)) + 1  # YAML's line breaks
    where = f"{problem}"
    if problem.file != FILE:
        raise Violation(f"problem names file {problem.file!r}: {where}")
    if not (1 <= problem.line <= lines + 1) or problem.column < 1:
        raise Violation(f"position outside the file ({lines} lines): {where}")
    if problem.message.startswith(DOCUMENT_LEVEL):
        return
    if problem.field == "(top level)" and problem.message.startswith("a key must be text"):
        return
    if not problem.field:
        raise Violation(f"no field named: {where}")
    spans = field_spans(text, problem.field)
    if not spans:
        raise Violation(f"the field names nothing in the document: {where}")
    if not any(first <= problem.line <= last for first, last in spans):
        raise Violation(f"line {problem.line} is not where {problem.field} is "
                        f"(lines {', '.join(f'{a}-{b}' for a, b in spans)}): {where}")


def check(text: str) -> Verdict:
    """Load and plan one document as `chaos run` would; raise Violation for anything but a
    valid scenario or located problems."""
    from chaos.errors import PlanError, ScenarioInvalid
    from chaos.runner import Reporter, Run, RunOptions
    from chaos.scenario.load import load_text, plan_problem

    try:
        scenario = load_text(text, FILE)
    except ScenarioInvalid as exc:
        if not exc.problems:
            raise Violation("ScenarioInvalid without problems") from exc
        for problem in exc.problems:
            check_problem(problem, text)
        return Verdict("invalid", exc.problems)
    except Exception as exc:  # the point: nothing else may escape
        raise Violation(f"traceback while loading: {type(exc).__name__}: {exc}") from exc
    try:
        Run(scenario, FILE, RunOptions(), Reporter()).plan()
    except PlanError as exc:
        problem = plan_problem(scenario, exc)
        check_problem(problem, text)
        return Verdict("refused", [problem])
    except Exception as exc:
        raise Violation(f"traceback while planning: {type(exc).__name__}: {exc}") from exc
    return Verdict("valid", [])
