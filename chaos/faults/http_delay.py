"""http-delay: requests or answers held for a while, then passed on unchanged."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from chaos.faults.http_rule import HttpTargetFault, pick_target
from chaos.injectors.http_faults import actions
from chaos.injectors.http_faults.rules import FaultAddon
from chaos.scenario.model import Duration


class HttpDelay(HttpTargetFault):
    """Hold matching requests for `delay`, then pass them on unchanged.

    `target: request`: the origin gets the request late. `target: response`: the origin
    answers at once and the client gets the answer late (status and headers included).
    HTTPChaos `delay`.
    """

    type: Literal["http-delay"] = "http-delay"
    """The fault type."""
    delay: Duration
    """How long each matching request (or answer) is held."""

    @field_validator("delay")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("delay must be longer than 0")
        return value

    @classmethod
    def http_addon(cls) -> FaultAddon:
        return HttpDelayAddon()

    def label(self) -> str:
        return self.name or f"http-delay {self.delay:g}s {self.target}"


class HttpDelayAddon(FaultAddon):
    async def request(self, flow, rules) -> None:
        await self._hold(flow, pick_target(flow, rules, "request"))

    async def responseheaders(self, flow, rules) -> None:
        await self._hold(flow, pick_target(flow, rules, "response"))

    @staticmethod
    async def _hold(flow, rule) -> None:
        if rule is None:
            return
        import asyncio  # here: the plan imports this module and needs no event loop

        actions.claim(flow, rule)
        await asyncio.sleep(rule.params.delay)
