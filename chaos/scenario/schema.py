"""JSON Schema of the scenario format and plain-text field lists, both from the models."""

from __future__ import annotations

import typing


def json_schema() -> dict:
    from chaos.scenario.model import scenario_model

    schema = scenario_model().model_json_schema(by_alias=True)
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
    return {"float": "duration" if False else "number", "str": "text", "int": "integer",
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
        doc = " ".join((info.description or "").split())
        lines.append(f"{key} ({kind}, {default}): {doc}")
    return lines
