"""JSON Schema of the scenario format and plain-text field lists, both from the models.

Field descriptions are the models' attribute docstrings, read here rather than when the
models are built (pydantic's ``use_attribute_docstrings`` reads every class's source at
import: a cost in every run's start-up, docs/benchmarks.md, for text only `chaos schema`
and `chaos list` show).
"""

from __future__ import annotations

import typing
from functools import cache

from pydantic import BaseModel


@cache
def field_docs(cls: type[BaseModel]) -> dict[str, str]:
    """Field name -> its attribute docstring, inherited ones included (nearest class wins)."""
    from pydantic._internal._docs_extraction import extract_docstrings_from_cls

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if issubclass(klass, BaseModel) and klass is not BaseModel:
            try:
                docs.update(extract_docstrings_from_cls(klass, use_inspect=True))
            except (OSError, TypeError):
                pass  # no source (a class made at run time): its fields have no docstrings
    return docs


def description(cls: type[BaseModel], name: str) -> str:
    info = cls.model_fields[name]
    return " ".join((info.description or field_docs(cls).get(name) or "").split())


def _models(root: type) -> dict[str, type[BaseModel]]:
    """Every model reachable from ``root``'s fields, by class name (the schema's $defs keys)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if found.get(tp.__name__) is tp:
                return
            found[tp.__name__] = tp
            for info in tp.model_fields.values():
                visit(info.annotation)
        for arg in typing.get_args(tp):
            visit(arg)

    visit(root)
    return found


SHORTHANDS: dict[str, dict] = {
    # Model name -> the schema of the value its mode="before" validator turns into the
    # model: pydantic's export describes only the mapping, so without these an editor marks
    # `lab: registry` and `ES: 198.18.64.0/24` wrong. tests/test_schema.py finds every
    # before-validator in the models and fails when one is missing here. The loader's own
    # step before pydantic (chaos.scenario.load) only makes keys text, as JSON keys are.
    "LabSpec": {"const": "registry", "description": "`lab: registry`: the lab with its defaults."},
    "WarmImage": {"type": "string", "description": "`repo:tag` alone: every platform it has."},
    "Region": {"type": "string", "format": "ipv4network",
               "description": "The region's source range alone, e.g. `ES: 198.18.64.0/24`."},
}


def json_schema() -> dict:
    from chaos.faults import fault_types
    from chaos.scenario.model import scenario_model

    model = scenario_model()
    schema = model.model_json_schema(by_alias=True)
    classes = _models(model)
    defs = schema.get("$defs", {})
    for name, node in [("Scenario", schema), *defs.items()]:
        cls = model if node is schema else classes.get(name)
        if cls is None:
            continue
        for field, info in cls.model_fields.items():
            prop = node.get("properties", {}).get(info.alias or field)
            text = description(cls, field)
            if prop is not None and text:  # the field's own words win over its type's
                prop["description"] = text
    for cls in fault_types():
        # `type:` has a default in each model, but the union needs it to pick the model:
        # the loader refuses a fault without it, so the schema must too.
        node = defs.get(cls.__name__)
        if node is not None and "type" not in node.get("required", []):
            node["required"] = ["type", *node.get("required", [])]
    _close_pattern_maps(schema)
    for name, shorthand in SHORTHANDS.items():
        if name in defs:
            mapping = defs[name]
            defs[name] = {"description": mapping.get("description", ""),
                          "anyOf": [shorthand, mapping]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "chaos scenario"
    return schema


def _close_pattern_maps(node) -> None:
    """A dict whose keys have a pattern (`regions:`) refuses other keys, as pydantic does."""
    if isinstance(node, dict):
        if "patternProperties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_pattern_maps(value)
    elif isinstance(node, list):
        for value in node:
            _close_pattern_maps(value)


def _type_name(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    name = getattr(annotation, "__name__", str(annotation))
    return {"float": "number", "str": "text", "int": "integer",
            "IPv4Address": "IPv4 address", "IPv6Address": "IPv6 address"}.get(name, name)


def describe_fields(cls, skip: str = "type") -> list[str]:
    """One line per field but ``skip`` (what the title shows): name, type, default, description."""
    lines = []
    for name, info in cls.model_fields.items():
        if name == skip:
            continue
        key = info.alias or name
        kind = _type_name(info.annotation)
        if any(m.func.__qualname__ == "parse_duration"
               for m in info.metadata if hasattr(m, "func")):
            kind = "duration"
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            default = f"default {value}" if value not in (None, [], {}) else "optional"
        lines.append(f"{key} ({kind}, {default}): {description(cls, name)}")
    return lines
