"""The base of every scenario model: pydantic's, or on a run from the validated-scenario
cache, plain Python (chaos/scenario/light.py).

Model modules (chaos/scenario/model.py, chaos/faults, chaos/probes, chaos/steps) take their
pydantic names from here, so a fault type stays one module, its model and behaviour
declared once, whichever base it gets. The base is chosen once per process, before the
first model module is imported: `chaos.startup.light_models`, set only by the cache's run
path (chaos/fastrun.py) once every scenario of the command was found in the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chaos import startup

if TYPE_CHECKING or not startup.light_models:
    from pydantic import (
        AfterValidator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Discriminator,
        Field,
        PrivateAttr,
        Tag,
        WithJsonSchema,
        create_model,
        field_validator,
        model_validator,
    )
else:
    from chaos.scenario.light import (
        AfterValidator,
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Discriminator,
        Field,
        PrivateAttr,
        Tag,
        WithJsonSchema,
        create_model,
        field_validator,
        model_validator,
    )

LIGHT = not TYPE_CHECKING and startup.light_models
"""Whether this process's models are the light ones (never validate)."""

__all__ = ["LIGHT", "AfterValidator", "BaseModel", "BeforeValidator", "ConfigDict", "Discriminator",
           "Field", "PrivateAttr", "Tag", "WithJsonSchema", "create_model", "field_validator",
           "model_validator"]
