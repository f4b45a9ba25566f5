"""Plain-Python stand-ins for the pydantic names the scenario models use (chaos.scenario.modelbase).

A `chaos run` whose scenarios are all in the validated-scenario cache (chaos/scenario/cache.py)
never validates: it rebuilds the models the cache recorded after pydantic validated them.
The model classes are the same modules; only their base is this one, so a run pays neither
pydantic's import nor its model building. What the run path asks of a model works here as
in pydantic: attributes, methods, `model_dump`, `model_copy`, `model_fields(_set)`.
Validating (`model_validate`) is refused: whatever needs it takes the normal path.
"""

from __future__ import annotations

import ipaddress
from enum import Enum
from pathlib import PurePath
from typing import Any, ClassVar

_MISSING: Any = object()


class FieldInfo:
    """`Field(...)`: only what the run path reads (default, alias); the checks were done."""

    def __init__(self, default: Any = _MISSING, *, default_factory: Any = None,
                 alias: str | None = None, **_checks: Any) -> None:
        self.default = None if default is _MISSING and default_factory is None else default
        self.required = default is _MISSING and default_factory is None
        self.default_factory = default_factory
        self.alias = alias

    def get_default(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        if isinstance(self.default, (list, dict, set)):
            return type(self.default)(self.default)  # pydantic copies a mutable default
        return self.default


def Field(default: Any = _MISSING, **kwargs: Any) -> Any:  # noqa: N802 (pydantic's name)
    return FieldInfo(default, **kwargs)


def PrivateAttr(default: Any = None, **_: Any) -> Any:  # noqa: N802
    return default


def ConfigDict(**kwargs: Any) -> dict:  # noqa: N802
    return kwargs


class _Marker:
    """Annotated metadata that only validation reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args


AfterValidator = BeforeValidator = WithJsonSchema = Discriminator = Tag = _Marker


def field_validator(*_fields: Any, **_kwargs: Any) -> Any:
    return lambda method: method


def model_validator(*_args: Any, **_kwargs: Any) -> Any:
    return lambda method: method


def _is_field(name: str, annotation: Any) -> bool:
    return not name.startswith("_") and "ClassVar" not in str(annotation)


class BaseModel:
    """A model whose values were validated elsewhere."""

    model_config: ClassVar[dict] = {}
    model_fields: ClassVar[dict[str, FieldInfo]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldInfo] = {}
        for klass in reversed(cls.__mro__):
            for name, annotation in vars(klass).get("__annotations__", {}).items():
                if not _is_field(name, annotation):
                    continue
                value = vars(klass).get(name, fields[name] if name in fields else _MISSING)
                fields[name] = value if isinstance(value, FieldInfo) else FieldInfo(value)
        cls.model_fields = fields

    def __init__(self, **data: Any) -> None:
        """A model built in code (a default such as `Expect()`): values taken as given."""
        given = set()
        for name, info in type(self).model_fields.items():
            key = info.alias if info.alias in data else name
            if key in data:
                self.__dict__[name] = data[key]
                given.add(name)
            elif info.required:
                raise TypeError(f"{type(self).__name__}: {name} is required")
            else:
                self.__dict__[name] = info.get_default()
        self.__dict__["__fields_set__"] = given

    @classmethod
    def model_construct(cls, values: dict, fields_set: set) -> Any:
        """The model holding these validated values (what the cache recorded)."""
        model = cls.__new__(cls)
        model.__dict__.update(values)
        model.__dict__["__fields_set__"] = set(fields_set)
        return model

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        raise TypeError(f"{cls.__name__}: a light model does not validate (chaos.scenario.light)")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).model_fields:  # as pydantic's: an assigned field counts as set
            self.__dict__["__fields_set__"].add(name)
        object.__setattr__(self, name, value)

    @property
    def model_fields_set(self) -> set[str]:
        return self.__dict__["__fields_set__"]

    def model_copy(self, *, update: dict | None = None, deep: bool = False) -> Any:
        if deep:
            import copy

            return copy.deepcopy(self)
        new = type(self).model_construct(dict(self.__dict__), self.model_fields_set)
        if update:
            new.__dict__.update(update)
            new.__dict__["__fields_set__"] = self.model_fields_set | set(update)
        return new

    def model_dump(self, *, mode: str = "python", include: Any = None, exclude: Any = None,
                   by_alias: bool = False, exclude_none: bool = False,
                   exclude_defaults: bool = False, exclude_unset: bool = False) -> dict:
        out = {}
        for name, info in type(self).model_fields.items():
            if (include is not None and name not in include) or (exclude is not None and name in exclude):
                continue
            if exclude_unset and name not in self.model_fields_set:
                continue
            value = self.__dict__.get(name)
            if exclude_none and value is None:
                continue
            if exclude_defaults and not info.required and value == info.get_default():
                continue
            flags = dict(mode=mode, by_alias=by_alias, exclude_none=exclude_none,
                         exclude_defaults=exclude_defaults, exclude_unset=exclude_unset)
            out[info.alias if by_alias and info.alias else name] = _dump(value, flags)
        return out

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(self.__dict__.get(n) == other.__dict__.get(n) for n in type(self).model_fields)

    __hash__ = None  # type: ignore[assignment]  # as pydantic's: not frozen, not hashable

    def __repr__(self) -> str:
        values = ", ".join(f"{n}={self.__dict__.get(n)!r}" for n in type(self).model_fields)
        return f"{type(self).__name__}({values})"


def _dump(value: Any, flags: dict) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(**flags)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_dump(v, flags) for v in value]
        return items if flags["mode"] == "json" or isinstance(value, list) else type(value)(items)
    if isinstance(value, dict):
        return {_dump(k, flags): _dump(v, flags) for k, v in value.items()}
    if flags["mode"] == "json":
        if isinstance(value, (ipaddress._BaseAddress, ipaddress._BaseNetwork, PurePath)):
            return str(value)
        if isinstance(value, Enum):
            return value.value
    return value


def create_model(name: str, *, __base__: type, __doc__: str | None = None,
                 **fields: Any) -> type:
    """A subclass with these fields ((annotation, default) each), as pydantic's."""
    namespace: dict[str, Any] = {"__annotations__": {}, "__module__": __base__.__module__,
                                 "__qualname__": name, "__doc__": __doc__}
    for field, (annotation, default) in fields.items():
        namespace["__annotations__"][field] = annotation
        namespace[field] = default
    return type(name, (__base__,), namespace)
