"""http-delay: requests or answers held for a while, then passed on unchanged."""

from __future__ import annotations

from typing import Literal

from chaos.faults.http_rule import HttpTargetFault, pick_target
from chaos.injectors.http_faults import actions
from chaos.injectors.http_faults.rules import FaultAddon
from chaos.scenario.model import Duration
from chaos.scenario.modelbase import field_validator


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
        rule = pick_target(flow, rules, "request")
        if rule is not None:
            import asyncio  # here: the plan imports this module and needs no event loop

            actions.claim(flow, rule)
            await asyncio.sleep(rule.params.delay)

    def responseheaders(self, flow, rules) -> None:
        rule = pick_target(flow, rules, "response")
        if rule is not None:
            import asyncio

            # The hook is not async (it runs for every answer): mitmproxy holds an
            # intercepted flow after the hook until it is resumed.
            actions.claim(flow, rule)
            flow.intercept()
            asyncio.get_running_loop().call_later(rule.params.delay, flow.resume)
