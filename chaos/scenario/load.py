"""Load scenario YAML into models; every problem comes back as ``file:line:col: field: message``.

PyYAML's composer gives each node its position; we build plain data from the nodes while
remembering where each value (and each mapping key) stood, then map pydantic's error
locations back onto those positions. All problems are reported, not only the first.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from chaos.errors import PlanError, PluginError, Problem, ScenarioInvalid
from chaos.scenario.source import SourceMap, format_path, plan_problem, plan_problems  # noqa: F401 (their old home)

MAX_BYTES = 1 << 20  # a scenario is a page of YAML; a larger file is a mistake (or an attack)
MAX_NODES = 50_000   # aliases can blow a small file up: stop long before memory does
MAX_DEPTH = 64       # a scenario nests a handful of levels; PyYAML's composer recurses per level


class _Builder:
    def __init__(self, text: str, source: SourceMap) -> None:
        self.loader = yaml.SafeLoader(text)
        self.source, self.count = source, 0
        self.problems: list[Problem] = []

    def build(self, node, path: tuple):
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig
        mark = node.start_mark
        if len(path) > MAX_DEPTH:
            raise _TooDeep(mark)
        self.source.values.setdefault(path, (mark.line + 1, mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # merge keys (<<)
            out = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    # At the key itself, named by the mapping that holds it.
                    kmark = key_node.start_mark
                    self.problems.append(Problem(self.source.file, kmark.line + 1, kmark.column + 1,
                                                 format_path(path) or "(top level)",
                                                 f"a key must be text, not {key!r:.60}"))
                    continue
                key = str(key) if not isinstance(key, str) else key
                kmark = key_node.start_mark
                self.source.keys[path + (key,)] = (kmark.line + 1, kmark.column + 1)
                if key in out:
                    self.problems.append(self.source.problem(path + (key,), "duplicate key", key=True))
                out[key] = self.build(value_node, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
        return self.loader.construct_object(node)


class _TooBig(Exception):
    pass


class _TooDeep(Exception):
    def __init__(self, mark) -> None:
        self.mark = mark


def _too_deep(text: str, file: str, mark=None) -> ScenarioInvalid:
    """The problem for a document nested deeper than MAX_DEPTH, at the first value that is.
    Without ``mark`` (the composer ran out of stack first) the tokens are scanned for it:
    the scanner keeps no stack of its own."""
    if mark is None:
        depth = 0
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
                                  yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)):
                depth += 1
                if depth > MAX_DEPTH + 1:  # the top-level mapping is depth 1, its path ()
                    mark = token.start_mark
                    break
            elif isinstance(token, (yaml.BlockEndToken, yaml.FlowMappingEndToken,
                                    yaml.FlowSequenceEndToken)):
                depth -= 1
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return ScenarioInvalid([Problem(file, line, col, "", f"nested deeper than {MAX_DEPTH} levels; "
                                    "a scenario needs a handful")])


def parse_yaml(text: str, file: str) -> tuple[object, SourceMap]:
    """YAML text -> (plain data, source map); raises ScenarioInvalid with a position."""
    source = SourceMap(file)
    try:
        node = yaml.SafeLoader(text).get_single_node()
    except RecursionError:
        raise _too_deep(text, file) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(filter(None, [exc.context, exc.problem]))
        raise ScenarioInvalid([Problem(file, line, col, "", f"not valid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioInvalid([Problem(file, 1, 1, "", f"not valid YAML: {exc}")]) from None
    if node is None:
        raise ScenarioInvalid([Problem(file, 1, 1, "", "the file is empty: a scenario needs at "
                                       "least `name:` and `faults:` or `expect:`")])
    builder = _Builder(text, source)
    try:
        data = builder.build(node, ())
    except _TooBig:
        raise ScenarioInvalid([Problem(file, 1, 1, "", f"the document expands to more than "
                                       f"{MAX_NODES} values (aliases?)")]) from None
    except _TooDeep as exc:
        raise _too_deep(text, file, exc.mark) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ScenarioInvalid([Problem(file, line, col, "", f"not valid YAML: {exc}")]) from None
    if builder.problems:
        raise ScenarioInvalid(builder.problems)
    return data, source


def _vocabulary() -> list[str]:
    """Every key the format knows, for "did you mean" hints."""
    from chaos.faults import fault_types
    from chaos.probes import probe_types
    from chaos.scenario import model

    words = set()
    classes: list[type[BaseModel]] = [model.scenario_model(), model.Expect, *probe_types(),
               model.TextMatch, model.Serve, model.HttpServe, model.Window, model.Flap,
               model.Region, model.LabSpec, *fault_types()]
    for cls in classes:
        for name, info in cls.model_fields.items():
            words.add(info.alias or name)
    return sorted(words)


def _locate(data, loc: tuple, keys: bool = True, present: bool = False) -> tuple[tuple, bool]:
    """Map a pydantic error location onto the data's path, dropping union tags.

    A tag can equal a key (the probe tag `tcp` and the key `tcp:`), so both readings are
    tried and the one that follows more of the location wins. The flag says the last part
    is a key that is not in the data (missing or not allowed). With ``present`` (a key that
    is not allowed: it is in the data) a tie goes to the reading that finds it there:
    `{http: {...}, connect_timeout: 1}` is `expect...[0].connect_timeout`, not a
    `connect_timeout` inside the `http:` mapping.
    """
    def walk(node, rest: tuple) -> tuple[tuple, tuple[int, int], bool]:
        """(path, (parts matched in the data, parts consumed), last part is a key)."""
        if not rest:
            return (), (0, 0), False
        part, best = rest[0], ((), (0, 0), False)
        child = None
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            child = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            child = node[part]
        if child is not None or (isinstance(node, dict) and part in node):
            sub, (matched, used), key = walk(child, rest[1:])
            best = ((part,) + sub, (matched + 1, used + 1), key)
        elif isinstance(node, dict) and isinstance(part, str) and len(rest) == 1:
            # A key that is missing or not allowed; for other errors a trailing union tag.
            return ((part,), (0, 1), True) if keys else ((), (0, 1), False)
        if len(rest) > 1:  # maybe `part` was a union tag: try skipping it
            sub, (matched, used), key = walk(node, rest[1:])
            if (matched, used + 1) > best[1] or (
                    present and (matched, used + 1) == best[1] and best[2] and not key):
                best = (sub, (matched, used + 1), key)
        return best

    path, _, is_key = walk(data, tuple(loc))
    return path, is_key


def _message(err: dict, path: tuple) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        key, vocabulary = str(path[-1]), _vocabulary()
        if key in vocabulary:  # a real key, of another model: "did you mean" itself helps nobody
            return f"unknown key {key!r} here (it belongs to another kind of fault, probe or section)"
        close = difflib.get_close_matches(key, vocabulary, n=1, cutoff=0.6)
        return f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return f"missing required key {path[-1]!r}" if path else "missing required key"
    if kind == "union_tag_invalid":
        from chaos.faults import FAULTS

        tag = err["ctx"]["tag"]
        close = difflib.get_close_matches(str(tag), list(FAULTS), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown fault type {tag!r}{hint}; known types: {', '.join(FAULTS)}"
    if kind == "union_tag_not_found":
        from chaos.faults import FAULTS

        return f"a fault needs `type:`, one of {', '.join(FAULTS)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping of keys, got {type(err['input']).__name__} {err['input']!r:.60}"
    msg = msg.removeprefix("Value error, ")
    if kind.endswith(("_parsing", "_type")) or kind in ("literal_error", "enum"):
        msg += f" (got {err['input']!r:.60})"  # e.g. YAML reads `yes` as True
    return msg


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w-]*(?:\[\d+\]|\.[A-Za-z_][\w-]*)*): (.*)$", re.S)


def _field_from_message(err: dict) -> dict:
    """A whole-model check names the field it is about as "a.b[0].c: message": put it there."""
    if err["type"] != "value_error":
        return err
    match = _FIELD_PREFIX.match(err["msg"].removeprefix("Value error, "))
    if not match:
        return err
    path = tuple(int(p) if p.isdigit() else p
                 for p in re.findall(r"[A-Za-z_][\w-]*|\d+", match[1]))
    return {**err, "loc": tuple(err["loc"]) + path, "msg": match[2]}


def _faults(data: dict) -> list[tuple[tuple, dict]]:
    faults = data.get("faults")
    return [(("faults", i), f) for i, f in enumerate(faults) if isinstance(f, dict)
            ] if isinstance(faults, list) else []


def _probes(data: dict) -> list[tuple[tuple, dict]]:
    expect = data.get("expect")
    if not isinstance(expect, dict):
        return []
    return [(("expect", phase, i), probe) for phase in ("before", "during", "after")
            if isinstance(expect.get(phase), list)
            for i, probe in enumerate(expect[phase]) if isinstance(probe, dict)]


def _fault_types(data: dict) -> set[str]:
    """The fault types a scenario names; a name no built-in type has makes the installed
    packages' types be read (chaos.plugins)."""
    from chaos.faults import known_type

    return {f["type"] for _, f in _faults(data) if isinstance(f.get("type"), str)
            and known_type(f["type"])}


def _probe_keys(data: dict) -> set[str]:
    """The keys marking the probe kinds a scenario uses (chaos.probes.probe_key)."""
    from chaos.probes import probe_key

    return {probe_key(probe, plugins=True) or "" for _, probe in _probes(data)} - {""}


def _plugin_path(data: dict, error) -> tuple:
    """Where a plugin's failure shows: the first fault or probe that uses it."""
    from chaos.plugins import FAULTS_GROUP

    if error.group == FAULTS_GROUP:
        return next((path + ("type",) for path, f in _faults(data) if f.get("type") == error.name), ())
    return next((path + (error.name,) for path, p in _probes(data) if error.name in p), ())


def validate(data, source: SourceMap):
    """Plain data -> Scenario; ScenarioInvalid lists every problem with its position."""
    from chaos.scenario.model import scenario_model

    if not isinstance(data, dict):
        raise ScenarioInvalid([source.problem((), f"a scenario is a mapping of keys (name:, "
                                                   f"faults:, expect:), not a {type(data).__name__}")])
    try:
        model = scenario_model(_fault_types(data), _probe_keys(data))
    except PluginError as exc:
        path = _plugin_path(data, exc)  # a probe's kind is its key: point there
        raise ScenarioInvalid([source.problem(path, str(exc), key=exc.group == "chaos.probes")]) from None
    try:
        scenario = model.model_validate(data)
    except ValidationError as exc:
        by_path: dict[tuple, Problem] = {}
        for raw in exc.errors(include_url=False):
            err = _field_from_message(dict(raw))
            path, is_key = _locate(data, err["loc"], keys=err["type"] in ("missing", "extra_forbidden"),
                                   present=err["type"] == "extra_forbidden")
            message = _message(err, path)
            if err["type"] == "missing":  # point at the mapping that lacks the key
                line, col = source.position(path[:-1])
                problem = Problem(source.file, line, col, format_path(path), message)
            else:
                problem = source.problem(path, message, key=is_key or err["type"] == "extra_forbidden")
            if path in by_path:  # one value failing every branch of a union: one line
                if message not in by_path[path].message:
                    by_path[path].message += f"; or {message[0].lower()}{message[1:]}"
            else:
                by_path[path] = problem
        raise ScenarioInvalid(sorted(by_path.values(), key=lambda p: (p.line, p.column))) from None
    scenario._source = source
    # A valid scenario whose counts could pass on traffic they never saw is refused too
    # (chaos.probes.coverage, imported only for a scenario that counts: a kind with a
    # blind_spot, CountedProbe or connections).
    if any(hasattr(p, "blind_spot") for phase in ("before", "during", "after")
           for p in getattr(scenario.expect, phase)):
        from chaos.probes.coverage import blind_spots

        blind = [source.problem(path, reason) for path, reason in blind_spots(scenario)]
        if blind:
            raise ScenarioInvalid(blind)
    return scenario


def load_text(text: str, file: str = "<string>"):
    return validate(*parse_yaml(text, file))


def load(path: str | Path):
    """Read and validate one scenario file."""
    return load_bytes(path)[1]


def load_bytes(path: str | Path) -> tuple[bytes, Any]:
    """Read and validate one scenario file: the bytes validated, and the Scenario."""
    path = Path(path)
    name = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ScenarioInvalid([Problem(name, 1, 1, "", f"the file is {size / 1e6:.1f} MB; "
                                           f"a scenario may be at most {MAX_BYTES >> 10} KiB")])
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioInvalid([Problem(name, 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioInvalid([Problem(name, 1, 1, "", f"not UTF-8 text (byte {exc.start})")]) from None
    return raw, load_text(text, name)


def plan_in_sandbox(scenario) -> list[Problem]:
    """What `chaos run` (without --host) would refuse at plan time from the file alone:
    the plan of its run, nothing applied. Refusals that ask this machine (``NeedsMachine``:
    a container the docker daemon does not know) are left to the run."""
    from chaos.errors import NeedsMachine
    from chaos.runner import Reporter, Run, RunOptions

    # A host drill (`host_setup:`) runs only with --host: planned as that run would be.
    options = RunOptions(host_mode=getattr(scenario, "host_setup", None) is not None)
    try:
        Run(scenario, "", options, Reporter()).plan()
    except PlanError as exc:
        errors = [e for e in getattr(exc, "errors", [exc]) if not isinstance(e, NeedsMachine)]
        return [plan_problem(scenario, e) for e in errors]
    return []


def scenario_files(paths) -> list[Path]:
    """Files named, and *.yaml / *.yml inside folders named (sorted, recursive)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            out.append(p)
    return out
