"""http-451: the geo-block fault at HTTP level, "Unavailable For Legal Reasons" (RFC 7725).

Rule parameters (besides ``id``, ``fault: "http-451"``, ``probability``, ``match``; put the
region's source ranges in ``match.clients``):

    region      shown on the page, e.g. "ES"
    blocked_by  URL of the blocking party, sent as ``Link: <URL>; rel="blocked-by"``
    server, ray_header, colo, headers   CDN headers

Alone: ``mitmdump -s chaos/injectors/http_faults/geo_451.py --set chaos_rules_dir=DIR``.
"""

from __future__ import annotations

try:
    from chaos.injectors.http_faults import actions, pages, rules
except ImportError:  # run by a mitmdump outside the chaos environment: use the sibling files
    import actions  # type: ignore[no-redef, import-not-found]
    import pages  # type: ignore[no-redef, import-not-found]
    import rules  # type: ignore[no-redef, import-not-found]

FAULT = "http-451"


def check(params: dict) -> dict:
    return {
        "region": str(params.get("region", "")),
        "blocked_by": params.get("blocked_by"),
        "server": str(params.get("server", pages.DEFAULT_SERVER)),
        "ray_header": str(params.get("ray_header", pages.DEFAULT_RAY_HEADER)),
        "colo": str(params.get("colo", pages.DEFAULT_COLO)),
        "headers": rules.headers(params),
    }


def make_response(p: dict, host: str):
    from mitmproxy import http

    ray = pages.ray_id(p["colo"])
    extra = dict(p["headers"])
    if p["blocked_by"]:
        extra["link"] = f'<{p["blocked_by"]}>; rel="blocked-by"'
    headers = pages.cdn_headers(content_type="text/html; charset=UTF-8", server=p["server"],
                                ray_header=p["ray_header"], ray=ray, extra=extra)
    response = http.Response.make(451, pages.legal_page(host, p["region"], ray), headers)
    response.reason = pages.reason(451)
    return response


class Geo451(rules.RuleAddon):
    """Answers requests from the blocked region with 451."""

    FAULT, check = FAULT, staticmethod(check)

    def request(self, flow) -> None:
        if not actions.untouched(flow):
            return
        rule = self.rules.pick(flow)
        if rule is not None:
            actions.claim(flow, rule)
            flow.response = make_response(rule.params, flow.request.pretty_host)


addons = [Geo451()]
