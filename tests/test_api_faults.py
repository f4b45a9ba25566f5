"""`chaos serve` beyond Toxiproxy: the project's fault types as JSON, in the server's sandbox.

A client in the sandbox's client namespace (curl through ``ip netns exec``) sees a DNS
fault from the fake DNS server and an HTTP fault from the HTTP fault proxy; the counts
refuse while the server that would count is not running; ``/reset`` reverts them.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request

import pytest


def api(server, method: str, path: str, body=None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def curl(client: str, url: str) -> tuple[int, str]:
    """(curl's exit code, the HTTP status it printed) from the sandbox's client."""
    result = subprocess.run(["ip", "netns", "exec", client, "curl", "-s", "-m", "5", "-o", "/dev/null",
                             "-w", "%{http_code}", url], capture_output=True, text=True, timeout=30)
    return result.returncode, result.stdout


@pytest.fixture
def sandbox(toxiproxy):
    status, made = api(toxiproxy, "POST", "/chaos/servers", {"name": "reg.test"})
    if status == 409:  # made by an earlier test of this session: the sandbox lives as long
        made = {"name": "reg.test"}
    assert status in (201, 409) and made["name"] == "reg.test"
    status, info = api(toxiproxy, "GET", "/chaos/sandbox")
    assert status == 200
    yield toxiproxy, info["clients"]["default"]
    assert api(toxiproxy, "POST", "/reset")[0] == 204


def test_dns_fault_counts_and_reset(sandbox):
    server, client = sandbox
    assert curl(client, "http://reg.test/") == (0, "200")
    # no dns fault yet (the first in this session): it says it cannot see, never "0"
    status, body = api(server, "GET", "/chaos/dns/queries")
    assert status == 409 and "cannot see queries" in body["error"]
    status, fault = api(server, "POST", "/chaos/faults",
                        {"type": "dns", "names": ["reg.test"], "answer": "nxdomain"})
    assert status == 201 and fault["fault"]["answer"] == "nxdomain"
    assert curl(client, "http://reg.test/")[0] == 6  # could not resolve host
    status, seen = api(server, "GET", "/chaos/dns/queries")
    assert status == 200 and any(q["name"] == "reg.test" and q["rcode"] == "NXDOMAIN"
                                 for q in seen["queries"])
    assert [f["id"] for f in api(server, "GET", "/chaos/faults")[1]] == [fault["id"]]
    assert api(server, "POST", "/reset")[0] == 204
    assert api(server, "GET", "/chaos/faults")[1] == []
    assert curl(client, "http://reg.test/") == (0, "200")


def test_http_fault_and_delete(sandbox):
    server, client = sandbox
    status, body = api(server, "GET", "/chaos/http/requests")  # no HTTP fault yet
    assert status == 409 and "cannot see requests" in body["error"]
    status, fault = api(server, "POST", "/chaos/faults",
                        {"type": "http-error", "status": 503, "match": {"host": "reg.test"}})
    assert status == 201, fault
    status, before = api(server, "GET", "/chaos/servers/reg.test/requests")
    assert status == 200
    assert curl(client, "http://reg.test/") == (0, "503")
    status, seen = api(server, "GET", "/chaos/http/requests")
    assert status == 200 and seen["count"] >= 1 and seen["requests"][-1]["status"] == 503
    # the server's own records: the proxy answered, the request never reached it
    assert api(server, "GET", "/chaos/servers/reg.test/requests")[1]["count"] == before["count"]
    assert api(server, "DELETE", f"/chaos/faults/{fault['id']}")[0] == 204
    assert curl(client, "http://reg.test/") == (0, "200")
    after = api(server, "GET", "/chaos/servers/reg.test/requests")[1]
    assert after["count"] == before["count"] + 1 and after["requests"][-1]["status"] == 200
    assert api(server, "GET", "/chaos/servers/nope.test/requests")[0] == 404
    assert api(server, "DELETE", f"/chaos/faults/{fault['id']}") == (
        404, {"error": "fault not found", "status": 404})


def test_route_and_packet_filter_in_the_sandbox(sandbox):
    server, client = sandbox
    status, route = api(server, "POST", "/chaos/faults", {"type": "route-blackhole",
                                                          "destinations": ["reg.test"]})
    assert status == 201, route
    assert curl(client, "http://reg.test/")[0] == 7  # no route to host, at once
    assert api(server, "DELETE", f"/chaos/faults/{route['id']}")[0] == 204
    status, drop = api(server, "POST", "/chaos/faults", {"type": "packet-filter", "action": "reject-reset",
                                                         "destinations": ["reg.test"], "ports": [80]})
    assert status == 201, drop
    assert curl(client, "http://reg.test/")[0] == 7  # connection refused
    assert api(server, "POST", "/reset")[0] == 204
    assert curl(client, "http://reg.test/") == (0, "200")


def test_the_fixture_reverts_what_a_test_left(toxiproxy_server):
    """What `toxiproxy` does after each test: proxies deleted, /chaos/ faults reverted."""
    status, fault = api(toxiproxy_server, "POST", "/chaos/faults",
                        {"type": "dns", "names": ["left.test"], "answer": "refused"})
    assert status == 201
    toxiproxy_server.clear()
    assert api(toxiproxy_server, "GET", "/chaos/faults") == (200, [])


def test_faults_are_validated_by_their_models(toxiproxy):
    status, body = api(toxiproxy, "POST", "/chaos/faults", {"type": "dns", "names": ["x.test"],
                                                            "answer": "bogus"})
    assert status == 400 and body["error"].startswith("invalid fault: answer: Input should be")
    status, body = api(toxiproxy, "POST", "/chaos/faults", {"type": "no-such-type"})
    assert (status, body["error"]) == (400, "invalid fault: unknown fault type 'no-such-type'")
    status, body = api(toxiproxy, "POST", "/chaos/faults", {"type": "route-blackhole",
                                                            "destinations": ["0.0.0.0/0"]})
    assert status == 400 and "invalid fault" in body["error"]  # the plan's guardrail
    status, body = api(toxiproxy, "POST", "/chaos/faults", {"type": "route-blackhole", "destinations": ["x.test"],
                                                            "window": {"after": "1s"}})
    assert status == 400 and "window and flap are not scheduled here" in body["error"]
