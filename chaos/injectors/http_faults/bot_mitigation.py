"""bot-mitigation: requests with a bot signature get a challenge, a drop, a hang or a reset.

Rule parameters (besides ``id``, ``fault: "bot-mitigation"``, ``probability``, ``match``);
every signature field given must hold, a rule with none matches every request of ``match``:

    user_agent      regular expression searched (case-insensitive) in User-Agent ("" if absent)
    header_present  header names that must all be present
    header_absent   header names that must all be absent
    rate            {"requests": N, "per": seconds}: the client (by address) made more than N
                    requests meeting the rest of the signature within the last ``per`` seconds
    action          challenge (default) | drop (close, no answer) | hang | reset (TCP RST)
    status          403 (default) or 503, for challenge
    hang_seconds    for hang: how long before closing unanswered; null (default) = until the
                    client gives up
    server, ray_header, colo, headers   CDN headers of the challenge

Clients not matching pass untouched. Alone:
``mitmdump -s chaos/injectors/http_faults/bot_mitigation.py --set chaos_rules_dir=DIR``.
"""

from __future__ import annotations

import re
import time
from collections import deque

try:
    from chaos.injectors.http_faults import actions, pages, rules
except ImportError:  # run by a mitmdump outside the chaos environment: use the sibling files
    import actions  # type: ignore[no-redef, import-not-found]
    import pages  # type: ignore[no-redef, import-not-found]
    import rules  # type: ignore[no-redef, import-not-found]

FAULT = "bot-mitigation"
ACTIONS = ("challenge", "drop", "hang", "reset")


def _names(params: dict, key: str) -> tuple[str, ...]:
    value = params.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key} must be a header name or a list of them")
    return tuple(v.lower() for v in value)


def check(params: dict) -> dict:
    ua = params.get("user_agent")
    rate = params.get("rate")
    if rate is not None:
        if (not isinstance(rate, dict) or not isinstance(rate.get("requests"), int)
                or rate["requests"] < 0):
            raise ValueError('rate must be {"requests": N, "per": seconds}')
        rate = (rate["requests"], rules.number(rate, "per", None, minimum=0.001))
        if rate[1] is None:
            raise ValueError("rate.per is required")
    status = params.get("status", 403)
    if status not in (403, 503):
        raise ValueError(f"status must be 403 or 503, not {status!r}")
    return {
        "user_agent": re.compile(ua, re.IGNORECASE) if ua is not None else None,
        "header_present": _names(params, "header_present"),
        "header_absent": _names(params, "header_absent"),
        "rate": rate,
        "action": rules.choice(params, "action", "challenge", ACTIONS),
        "status": status,
        "hang_seconds": rules.number(params, "hang_seconds", None),
        "server": str(params.get("server", pages.DEFAULT_SERVER)),
        "ray_header": str(params.get("ray_header", pages.DEFAULT_RAY_HEADER)),
        "colo": str(params.get("colo", pages.DEFAULT_COLO)),
        "headers": rules.headers(params),
    }


def challenge(p: dict, host: str):
    from mitmproxy import http

    ray = pages.ray_id(p["colo"])
    extra = {"cf-mitigated": "challenge", **p["headers"]}
    headers = pages.cdn_headers(content_type="text/html; charset=UTF-8", server=p["server"],
                                ray_header=p["ray_header"], ray=ray, extra=extra)
    response = http.Response.make(p["status"], pages.challenge_page(host, ray), headers)
    response.reason = pages.reason(p["status"])
    return response


class BotMitigation(rules.RuleAddon):
    """Treats requests matching a bot signature the way a CDN's bot defence does."""

    FAULT, check = FAULT, staticmethod(check)

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[str, str], deque] = {}  # (rule id, client) -> request times

    def signature(self, rule, flow) -> bool:
        p, headers = rule.params, flow.request.headers
        if p["user_agent"] is not None and not p["user_agent"].search(headers.get("user-agent", "")):
            return False
        if any(name not in headers for name in p["header_present"]):
            return False
        if any(name in headers for name in p["header_absent"]):
            return False
        if p["rate"] is not None:
            limit, window = p["rate"]
            now = time.monotonic()
            if len(self.seen) > 4096:  # forget clients quiet for ten minutes
                self.seen = {k: v for k, v in self.seen.items() if v and v[-1] > now - 600}
            times = self.seen.setdefault((rule.id, str(rules.client_ip(flow))), deque())
            times.append(now)
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) <= limit:
                return False
        return True

    async def request(self, flow) -> None:
        if not actions.untouched(flow):
            return
        for rule in self.rules.rules():
            if rule.match.matches(flow) and self.signature(rule, flow) and rule.fires():
                break
        else:
            return
        actions.claim(flow, rule)
        p = rule.params
        if p["action"] == "challenge":
            flow.response = challenge(p, flow.request.pretty_host)
        elif p["action"] == "drop":
            actions.kill(flow)
        elif p["action"] == "reset":
            actions.reset(flow)
        else:
            await actions.hang(flow, p["hang_seconds"])


addons = [BotMitigation()]
