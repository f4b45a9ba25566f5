"""CDN-style answers: the HTML error pages, challenge page and headers a CDN edge sends.

Modelled on what clients meet in the wild (a ``server`` header naming the CDN, a ray-id
header ``<16 hex>-<colo>``, no-store caching, the 52x family for origin trouble, the plain
``error code: 1010`` body of a bot block), so a client's error handling sees the real shape.
"""

from __future__ import annotations

import html
import secrets
from email.utils import formatdate

# Status -> (reason phrase, headline shown on the page).
STATUSES: dict[int, tuple[str, str]] = {
    403: ("Forbidden", "Access denied"),
    429: ("Too Many Requests", "You are being rate limited"),
    451: ("Unavailable For Legal Reasons", "Unavailable for legal reasons"),
    500: ("Internal Server Error", "Internal server error"),
    502: ("Bad Gateway", "Bad gateway"),
    503: ("Service Unavailable", "Service unavailable"),
    504: ("Gateway Timeout", "Gateway time-out"),
    520: ("", "Web server is returning an unknown error"),
    521: ("", "Web server is down"),
    522: ("", "Connection timed out"),
    523: ("", "Origin is unreachable"),
    524: ("", "A timeout occurred"),
    525: ("", "SSL handshake failed"),
    526: ("", "Invalid SSL certificate"),
}

DEFAULT_SERVER = "cloudflare"
DEFAULT_RAY_HEADER = "cf-ray"
DEFAULT_COLO = "FRA"


def ray_id(colo: str = DEFAULT_COLO) -> str:
    return f"{secrets.token_hex(8)}-{colo}"


def cdn_headers(*, content_type: str, server: str = DEFAULT_SERVER,
                ray_header: str = DEFAULT_RAY_HEADER, ray: str | None = None,
                extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {
        "date": formatdate(usegmt=True),
        "content-type": content_type,
        "cache-control": "private, max-age=0, no-store, no-cache, must-revalidate",
        "expires": "Thu, 01 Jan 1970 00:00:01 GMT",
        "x-frame-options": "SAMEORIGIN",
        "referrer-policy": "same-origin",
        "server": server,
        ray_header: ray or ray_id(),
    }
    headers.update(extra or {})
    return headers


def _page(title: str, heading: str, detail: str, host: str, ray: str) -> bytes:
    host, ray = html.escape(host), html.escape(ray.split("-")[0])
    return f"""<!DOCTYPE html>
<html lang="en-US">
<head>
<meta charset="UTF-8" />
<meta name="robots" content="noindex, nofollow" />
<title>{html.escape(title)}</title>
</head>
<body>
<div id="cf-wrapper">
  <div id="cf-error-details">
    <h1>{html.escape(heading)}</h1>
    <h2>{host}</h2>
    <p>{html.escape(detail)}</p>
  </div>
  <div class="cf-error-footer">
    <p>Ray ID: <strong>{ray}</strong> &bull; Your IP: hidden &bull; Performance &amp; security by the CDN</p>
  </div>
</div>
</body>
</html>
""".encode()


def error_page(status: int, host: str, ray: str) -> bytes:
    headline = STATUSES.get(status, ("", f"Error {status}"))[1]
    title = f"{host} | {status}: {headline}"
    detail = {
        520: "The web server returned an empty, unknown, or unexpected response to the CDN.",
        521: "The web server refused the connection from the CDN.",
        522: "The initial connection between the CDN and the web server timed out.",
        523: "The CDN could not reach the origin web server.",
        524: "The CDN connected to the web server, but the request timed out before a response.",
        525: "The SSL handshake between the CDN and the origin web server failed.",
        526: "The CDN could not validate the SSL certificate of the origin web server.",
    }.get(status, "The server is temporarily unable to service your request. Please try again later.")
    return _page(title, f"Error {status}: {headline}", detail, host, ray)


def challenge_page(host: str, ray: str) -> bytes:
    return _page("Just a moment...", host,
                 "Checking if the site connection is secure. Enable JavaScript and cookies to continue.",
                 host, ray)


def legal_page(host: str, region: str, ray: str) -> bytes:
    where = f" in your region ({region})" if region else " in your region"
    return _page(f"{host} | 451: Unavailable for legal reasons", "Error 451",
                 f"This content is not available{where} for legal reasons.", host, ray)


def error_code_body(code: int) -> bytes:
    """The plain-text body of a CDN firewall block, e.g. ``error code: 1010`` (banned browser signature)."""
    return f"error code: {code}".encode()


def reason(status: int) -> str:
    return STATUSES.get(status, ("", ""))[0]
