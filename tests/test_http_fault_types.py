"""HTTP fault types end to end through the fault proxy at the sandbox world's edge."""

from __future__ import annotations

import re

import pytest

from conftest import SCENARIOS, assert_same, snapshot, write

PARTIAL = """\
name: partial-resume
description: the blob stops after 300 kB each time; a resuming client finishes through 206s
serve:
  - name: cdn.test
    http: {size: 1000000}
faults:
  - type: partial
    bytes: 300000
    then: close
    cut_ranges: true
    match: {host: cdn.test}
expect:
  during:
    - name: a plain download is cut short
      run: curl -sS --noproxy '*' -m 5 -o /dev/null -w '%{size_download}' http://cdn.test/blob
      exit: 18
      stdout: {contains: "300000"}
    - name: a resuming client finishes
      run: |
        f=$(mktemp); n=0
        until curl -sS --noproxy '*' -m 5 -C - -o "$f" http://cdn.test/blob; do n=$((n+1)); [ $n -gt 10 ] && break; done
        stat -c %s "$f"; rm -f "$f"
      stdout: {contains: "1000000"}
      within: 10s
    - name: through partial-content answers
      http_requests: cdn.test
      status: 206
      at_least: 3
"""

GEO_451 = """\
name: geo-451
description: Spanish clients get the ISP's 451 block page for the CDN, others the content
regions:
  ES: 198.18.64.0/24
  US: 198.18.65.0/24
serve:
  - name: cdn.test
    http: {body: "blob\\n"}
faults:
  - type: geo-block
    region: ES
    block: [cdn.test]
    action: http-451
expect:
  during:
    - {region: ES, http: "http://cdn.test/x", status: 451, body: {contains: "451"}}
    - {region: US, http: "http://cdn.test/x", status: 200, body: {contains: blob}}
  after:
    - {region: ES, http: "http://cdn.test/x", status: 200}
"""

GEO_451_ADDRESS = """\
name: geo-451-address
description: >
  The block names the CDN by address, its ports with a range. Only it answers 451 to Spain:
  the registry, whose requests another HTTP fault sends through the same proxy, still answers.
regions:
  ES: 198.18.64.0/24
  US: 198.18.65.0/24
serve:
  - name: cdn.test
    address: 198.18.1.50
    http: {body: "blob\\n"}
  - name: registry.test
    http: {body: "registry v2\\n"}
faults:
  - type: geo-block
    region: ES
    block: [198.18.1.50]
    ports: ["79:81", 443]
    action: http-451
  - type: http-error
    status: 503
    match: {host: registry.test, path: /broken}
expect:
  during:
    - {region: ES, http: "http://cdn.test/x", status: 451, body: {contains: "451"}}
    - {region: ES, http: "http://registry.test/broken", status: 503}
    - {region: ES, http: "http://registry.test/x", status: 200, body: {contains: registry v2}}
    - {region: US, http: "http://cdn.test/x", status: 200, body: {contains: blob}}
  after:
    - {region: ES, http: "http://cdn.test/x", status: 200}
"""


CONTENT = """\
name: captive-portal
description: >
  A captive portal answers 200 with its login page for the registry's API; the CDN's
  manifest comes back cut short but complete-looking, its token answer loses a key.
serve:
  - name: registry.test
    http: {body: "registry v2\\n"}
  - name: cdn.test
    http: {body: '{"token": "t", "expires_in": 300}'}
faults:
  - type: http-respond
    status: 200
    body: "<html><body>Please log in to the Wi-Fi</body></html>"
    match: {host: registry.test, path: /v2/*}
  - type: http-replace
    target: response
    truncate: 5
    match: {host: cdn.test, path: /manifest}
  - type: http-patch
    target: response
    json: {expires_in: null}
    match: {host: cdn.test, path: /token}
expect:
  during:
    - {http: "http://registry.test/v2/", status: 200, body: {contains: "log in to the Wi-Fi"},
       response_headers: {content-type: {contains: text/html}}}
    - {http: "http://registry.test/other", status: 200, body: {contains: registry v2}}
    - {http: "http://cdn.test/manifest", status: 200, body: {regex: '^\\{"tok$'}}
    - {http: "http://cdn.test/token", status: 200, body: {regex: '^\\{"token":"t"\\}$'}}
  after:
    - {http: "http://registry.test/v2/", status: 200, body: {contains: registry v2}}
    - {http: "http://cdn.test/token", status: 200, body: {contains: expires_in}}
"""


@pytest.mark.parametrize("text", [PARTIAL, GEO_451, GEO_451_ADDRESS, CONTENT],
                         ids=["partial", "geo-451", "geo-451-address", "content"])
def test_http_fault_types(chaos, tmp_path, text):
    before = snapshot()
    result = chaos("run", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


@pytest.mark.parametrize("name", ["cdn-outage-5xx.yaml", "cdn-bot-challenge-1010.yaml"])
def test_shipped_cdn_scenarios(chaos, name):
    before = snapshot()
    result = chaos("run", str(SCENARIOS / name))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


@pytest.mark.parametrize("signature,action,message", [
    ("{ttl: 128, user_agent: x}", "drop", "either packet attributes"),
    ("{}", "drop", "the signature is empty"),
    ("{ttl: 128}", "challenge", "action challenge needs a request signature"),
])
def test_bot_mitigation_layers_are_checked(chaos, tmp_path, signature, action, message):
    text = f"""\
name: bot
faults:
  - type: bot-mitigation
    signature: {signature}
    action: {action}
"""
    result = chaos("validate", str(write(tmp_path, text)))
    assert result.returncode == 2 and message in result.stderr and "s.yaml:3:5: faults[0]" in result.stderr


@pytest.mark.parametrize("fault,message", [
    ("{type: http-replace, target: request, code: 200}", "code needs target: response"),
    ("{type: http-replace, target: response, path: /x}", "path needs target: request"),
    ("{type: http-replace}", "nothing to replace"),
    ("{type: http-respond, body: x, body_random: 3}", "give one of body, body_base64, body_random"),
    ("{type: http-patch, target: response, queries: [[a, b]]}", "queries needs target: request"),
    ("{type: http-abort, response_match: {status: 200}}", "response_match needs target: response"),
    ("{type: http-delay, delay: 0}", "delay must be longer than 0"),
])
def test_content_faults_refuse_what_their_target_cannot_do(chaos, tmp_path, fault, message):
    result = chaos("validate", str(write(tmp_path, f"name: c\nfaults:\n  - {fault}\n")))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert re.search(r"s\.yaml:3:\d+: faults\[0\]", result.stderr), result.stderr


HTTPS_503 = """\
name: https-503
description: an HTTPS server; the fault proxy answers its 503 page over TLS signed by the state CA
serve:
  - name: secure.test
    http: {tls: true, body: "secure body\\n"}
faults:
  - type: http-error
    status: 503
    match: {host: secure.test}
    ports: [443]
expect:
  before:
    - name: the server itself, trusted through the state CA alone
      run: env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS --noproxy '*' -m 5 --cacert {ca} https://secure.test/
      stdout: {contains: secure body}
  during:
    - name: the proxy's 503 page, trusted through the state CA alone
      run: >-
        env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS --noproxy '*' -m 5 --cacert {ca}
        -D - https://secure.test/x
      stdout: {regex: "(?s)^HTTP/\\\\S+ 503.*server: cloudflare.*cf-ray: [0-9a-f]{16}-.*Service unavailable"}
    - name: without it, curl refuses the proxy's certificate
      run: env -u SSL_CERT_FILE -u CURL_CA_BUNDLE curl -sS --noproxy '*' -m 5 https://secure.test/x
      exit: 60
    - name: http.client with the runner's SSL_CERT_FILE
      run: >-
        python3 -c "import http.client as h; c = h.HTTPSConnection('secure.test', timeout=5);
        c.request('GET', '/y'); print(c.getresponse().status)"
      stdout: {contains: "503"}
  after:
    - {http: "https://secure.test/", status: 200, body: {contains: secure body}}
"""


def test_https_through_the_edge_proxy_with_the_state_ca(chaos, tmp_path, state_dir):
    """Outside a lab: one CA per state dir, made by the first run (key 0600), kept by the next."""
    before = snapshot()
    path = write(tmp_path, HTTPS_503)
    ca = state_dir / "ca" / "ca.crt"
    result = chaos("run", str(path), "--var", f"ca={ca}")
    assert result.returncode == 0, result.stdout
    first = ca.read_bytes()
    assert (state_dir / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (state_dir / "ca" / "trust" / "ca.crt").read_bytes() == first  # docker's certs.d layout
    result = chaos("run", str(path), "--var", f"ca={ca}")
    assert result.returncode == 0, result.stdout
    assert ca.read_bytes() == first  # a client told to trust it once keeps trusting it
    assert_same(before, snapshot())
