"""JSON Schema of the scenario format and plain-text field lists, both from the models.

Field descriptions are the models' attribute docstrings, read here rather than when the
models are built (pydantic's ``use_attribute_docstrings`` reads every class's source at
import: ~25 ms of every run's start-up, for text only `chaos schema` and `chaos list` show).
"""

from __future__ import annotations

import typing
from functools import lru_cache

from pydantic import BaseModel


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
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


def description(cls: type, name: str) -> str:
    info = cls.model_fields[name]
    return " ".join((info.description or field_docs(cls).get(name) or "").split())


def _models(root: type) -> dict[str, type]:
    """Every model reachable from ``root``'s fields, by class name (the schema's $defs keys)."""
    found: dict[str, type] = {}

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


def json_schema() -> dict:
    from chaos.scenario.model import scenario_model

    model = scenario_model()
    schema = model.model_json_schema(by_alias=True)
    classes = _models(model)
    for name, node in [("Scenario", schema), *schema.get("$defs", {}).items()]:
        cls = model if node is schema else classes.get(name)
        if cls is None:
            continue
        for field, info in cls.model_fields.items():
            prop = node.get("properties", {}).get(info.alias or field)
            text = description(cls, field)
            if prop is not None and text:  # the field's own words win over its type's
                prop["description"] = text
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "chaos scenario"
    return schema


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


def describe_fields(cls) -> list[str]:
    """One line per field: name, type, default, description."""
    lines = []
    for name, info in cls.model_fields.items():
        if name == "type":
            continue
        key = info.alias or name
        kind = _type_name(info.annotation)
        if any(getattr(m, "func", None).__qualname__ == "parse_duration"
               for m in info.metadata if hasattr(m, "func")):
            kind = "duration"
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            default = f"default {value}" if value not in (None, [], {}) else "optional"
        lines.append(f"{key} ({kind}, {default}): {description(cls, name)}")
    return lines
