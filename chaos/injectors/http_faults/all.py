"""Every chaos HTTP addon in one script, in the order they must run (request log last).

    mitmdump -s chaos/injectors/http_faults/all.py --set chaos_rules_dir=DIR --set chaos_request_log=FILE

Same addons as loading the five files with five ``-s``; one script is cheaper: mitmproxy
walks every script's wrapper objects on every hook of every request, so fewer wrappers
means less per-request overhead (measured in benchmarks/http_proxy.py).
"""

from __future__ import annotations

try:
    from chaos.injectors.http_faults import bot_mitigation, geo_451, http_error, partial, request_log
except ImportError:  # run by a mitmdump outside the chaos environment: use the sibling files
    import bot_mitigation  # type: ignore[no-redef, import-not-found]
    import geo_451  # type: ignore[no-redef, import-not-found]
    import http_error  # type: ignore[no-redef, import-not-found]
    import partial  # type: ignore[no-redef, import-not-found]
    import request_log  # type: ignore[no-redef, import-not-found]

addons = [
    http_error.HttpError(),
    bot_mitigation.BotMitigation(),
    geo_451.Geo451(),
    partial.Partial(),
    request_log.RequestLog(),
]
