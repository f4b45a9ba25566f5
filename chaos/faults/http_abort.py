"""http-abort: the HTTP session is cut, before the origin sees the request or after it answered."""

from __future__ import annotations

from typing import Literal

from chaos.faults.http_rule import HttpTargetFault, pick_target
from chaos.injectors.http_faults import actions
from chaos.injectors.http_faults.rules import FaultAddon


class HttpAbort(HttpTargetFault):
    """Abort matching requests: the client's connection ends with no answer.

    `target: request`: the origin never sees the request. `target: response`: the origin got
    it and answered (it may have acted on it), the client gets nothing. `how: close` is a
    clean close (curl: `Empty reply from server`), `reset` a TCP reset (`Connection reset by
    peer`). HTTPChaos `abort: true`.
    """

    type: Literal["http-abort"] = "http-abort"
    """The fault type."""
    how: Literal["close", "reset"] = "close"
    """`close`: the connection is closed (FIN) unanswered; `reset`: a TCP reset."""

    @classmethod
    def http_addon(cls) -> FaultAddon:
        return HttpAbortAddon()


class HttpAbortAddon(FaultAddon):
    async def request(self, flow, rules) -> None:
        self._abort(flow, pick_target(flow, rules, "request"))

    def responseheaders(self, flow, rules) -> None:
        self._abort(flow, pick_target(flow, rules, "response"))

    @staticmethod
    def _abort(flow, rule) -> None:
        if rule is None:
            return
        actions.claim(flow, rule)
        if rule.params.how == "reset":
            actions.reset(flow)
        else:
            actions.kill(flow)
