"""The chaos mitmproxy addons: every HTTP fault type behind one addon, then the request log.

    mitmdump -s chaos/injectors/http_faults/all.py --set chaos_rules_dir=DIR --set chaos_request_log=FILE

``Faults`` reads the rules (``rules.RuleSet``) and hands each fault type's rules to that
type's ``FaultAddon`` (``HttpFault.http_addon()`` in its chaos.faults module), in registry
order; the request log comes last so it sees their work. One addon, not one per type:
mitmproxy walks every addon on every hook of every request (benchmarks/http_proxy.py).

The chaos package must be importable (``http_proxy.addon_env()`` sees to it): the fault
types' models are the addons' parameters, so there is no stand-alone copy of them here.
"""

from __future__ import annotations

from chaos.injectors.http_faults import actions, rules
from chaos.injectors.http_faults.request_log import RequestLog
from chaos.injectors.http_faults.rules import FaultAddon


class Faults:
    """The fault types' hooks; a type's addon is made when its first rule appears."""

    def __init__(self) -> None:
        self.rules = rules.RuleSet()
        self.addons: dict[str, FaultAddon] = {}
        """The types whose rules matched a flow: those that get response and error."""
        self._made: dict[str, FaultAddon] = {}

    def load(self, loader) -> None:
        rules.add_options(loader)

    def configure(self, updated) -> None:
        rules.check_rules_dir(updated)
        if rules.RULES_DIR_OPTION in updated:
            from mitmproxy import ctx

            self.rules.configure(ctx.options.chaos_rules_dir)

    def running(self) -> None:
        rules.install_sighup()

    def _made_addon(self, fault: str) -> FaultAddon:
        addon = self._made.get(fault)
        if addon is None:
            from chaos.faults import fault_class
            from chaos.faults.http_rule import HttpFault

            cls = fault_class(fault)
            assert issubclass(cls, HttpFault)  # rules.parse_rule let only these through
            addon = self._made[fault] = cls.http_addon()
        return addon

    def _addon(self, fault: str) -> FaultAddon:
        addon = self.addons.get(fault)
        if addon is None:
            addon = self.addons[fault] = self._made_addon(fault)
        return addon

    def _acts_on_answers(self, fault: str) -> bool:
        """Whether the type has a responseheaders hook of its own (most act on requests only:
        their rules need not be matched again when the answer comes)."""
        return type(self._made_addon(fault)).responseheaders is not FaultAddon.responseheaders

    # A flow that no rule matches must cost nothing measurable (docs/benchmarks.md): the
    # hooks are plain functions that return a coroutine only when a fault type has a rule
    # matching the flow (mitmproxy awaits what a hook returns), and a type's addon exists
    # only once one of its rules matched, so response and error have nothing to call.
    def request(self, flow):
        by_fault = list(self.rules.by_fault().items())
        for i, (_fault, mine) in enumerate(by_fault):
            if not actions.untouched(flow):
                return None
            matching = matching_rules(flow, mine)
            if matching:
                return self._request_from(flow, by_fault, i, matching)
        return None

    async def _request_from(self, flow, by_fault: list, first: int, matching: list) -> None:
        await self._addon(by_fault[first][0]).request(flow, matching)
        for fault, mine in by_fault[first + 1:]:
            if not actions.untouched(flow):
                return
            matching = matching_rules(flow, mine)
            if matching:
                await self._addon(fault).request(flow, matching)

    def responseheaders(self, flow) -> None:
        for fault, mine in self.rules.by_fault().items():
            if not actions.untouched(flow):
                return
            if not self._acts_on_answers(fault):
                continue
            matching = matching_rules(flow, mine)
            if matching:
                self._addon(fault).responseheaders(flow, matching)

    def response(self, flow):
        return self._response(flow) if self.addons else None

    async def _response(self, flow) -> None:
        for addon in list(self.addons.values()):  # a rule removed since may have cut this flow
            await addon.response(flow)

    def error(self, flow) -> None:
        for addon in list(self.addons.values()):
            addon.error(flow)


def matching_rules(flow, rules: list) -> list:
    """The rules whose ``match`` holds for the flow now, in order (an addon's ``pick`` then
    draws among them as it would among all: a rule that does not match never draws)."""
    return [rule for rule in rules if rule.match.matches(flow)]


addons = [Faults(), RequestLog()]
