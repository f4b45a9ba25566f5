"""The HTTP fault proxy's addons (mitmproxy), loaded by mitmdump from ``all.py``.

    mitmdump -s chaos/injectors/http_faults/all.py --set chaos_rules_dir=DIR

Files: ``all.py`` (the one script: every fault type behind one addon, then the request
log), ``rules`` (the rule files, matching, ``FaultAddon``), ``actions`` (answer, hang, close,
reset a client), ``pages`` (CDN error pages and headers), ``request_log`` (every request as a
JSON line). Each fault type's behaviour lives with its model in ``chaos/faults/<type>.py``.
Nothing here imports mitmproxy at import time of the package.
"""
