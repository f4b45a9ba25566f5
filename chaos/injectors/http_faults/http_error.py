"""http-error: answer matching requests with a CDN-style error instead of the origin's reply.

Rule parameters (besides ``id``, ``fault: "http-error"``, ``probability``, ``match``):

    status      500 | 502 | 503 | 504 | 520..526, or 403 / 429 (default 503)
    body        "page" (CDN HTML error page) | "code" (plain ``error code: N``) | "empty";
                default "code" for 403, "page" otherwise
    error_code  the N of ``error code: N`` (default 1010: banned browser signature)
    delay       seconds to wait before answering (a 522 or 524 takes its time), default 0
    retry_after value of a Retry-After header, if any
    server, ray_header, colo, headers   the CDN headers (cloudflare, cf-ray, FRA) and extra ones

Alone: ``mitmdump -s chaos/injectors/http_faults/http_error.py --set chaos_rules_dir=DIR``.
"""

from __future__ import annotations

import asyncio

try:
    from chaos.injectors.http_faults import actions, pages, rules
except ImportError:  # run by a mitmdump outside the chaos environment: use the sibling files
    import actions  # type: ignore[no-redef, import-not-found]
    import pages  # type: ignore[no-redef, import-not-found]
    import rules  # type: ignore[no-redef, import-not-found]

FAULT = "http-error"
STATUSES = {403, 429, 500, 502, 503, 504, *range(520, 527)}


def check(params: dict) -> dict:
    status = params.get("status", 503)
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {sorted(STATUSES)}")
    body = rules.choice(params, "body", "code" if status == 403 else "page", ("page", "code", "empty"))
    error_code = params.get("error_code", 1010)
    if not isinstance(error_code, int):
        raise ValueError("error_code must be an integer")
    retry_after = params.get("retry_after")
    return {
        "status": status,
        "body": body,
        "error_code": error_code,
        "delay": rules.number(params, "delay", 0.0),
        "retry_after": None if retry_after is None else str(retry_after),
        "server": str(params.get("server", pages.DEFAULT_SERVER)),
        "ray_header": str(params.get("ray_header", pages.DEFAULT_RAY_HEADER)),
        "colo": str(params.get("colo", pages.DEFAULT_COLO)),
        "headers": rules.headers(params),
    }


def make_response(p: dict, host: str):
    """The mitmproxy Response a CDN edge would send for these parameters."""
    from mitmproxy import http

    ray = pages.ray_id(p["colo"])
    if p["body"] == "page":
        content, ctype = pages.error_page(p["status"], host, ray), "text/html; charset=UTF-8"
    elif p["body"] == "code":
        content, ctype = pages.error_code_body(p["error_code"]), "text/plain; charset=UTF-8"
    else:
        content, ctype = b"", "text/plain; charset=UTF-8"
    extra = dict(p["headers"])
    if p["retry_after"] is not None:
        extra["retry-after"] = p["retry_after"]
    headers = pages.cdn_headers(content_type=ctype, server=p["server"], ray_header=p["ray_header"],
                                ray=ray, extra=extra)
    response = http.Response.make(p["status"], content, headers)
    response.reason = pages.reason(p["status"])
    return response


class HttpError(rules.RuleAddon):
    """Answers matching requests with a CDN error; the origin is never contacted."""

    FAULT, check = FAULT, staticmethod(check)

    async def request(self, flow) -> None:
        if not actions.untouched(flow):
            return
        rule = self.rules.pick(flow)
        if rule is None:
            return
        actions.claim(flow, rule)
        if rule.params["delay"]:
            await asyncio.sleep(rule.params["delay"])
        flow.response = make_response(rule.params, flow.request.pretty_host)


addons = [HttpError()]
