"""HTTP faults as mitmproxy addons, one per file, each also runnable alone.

    mitmdump -s chaos/injectors/http_faults/http_error.py --set chaos_rules_dir=DIR

Files: ``http_error`` (5xx / 52x CDN pages, the 403 ``error code: 1010``), ``bot_mitigation``
(signature -> challenge | drop | hang | reset), ``geo_451``, ``partial`` (first N bytes,
then hang | close | reset; Range answered with 206), ``request_log`` (every request as a JSON
line). Rules: see ``rules``. Nothing here imports mitmproxy at import time of the package.
"""
