"""The fake DNS server, asked by real clients (dig, glibc's getaddrinfo) across a veth pair.

The server runs in one namespace on 198.18.53.1:53; clients run in a second namespace whose
/etc/netns/<ns>/resolv.conf points at it with ``options timeout:1 attempts:1``, so what
glibc does is what a program in a chaos sandbox sees. One server for the module (started
through a real journal); each test's rules are reverted through that journal.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.injectors import dns_rules
from chaos.injectors.dns_rules import DnsRule, RuleError, read_status, start_dns_server
from chaos.journal import Journal, is_alive, process_start_time
from stats import binomial_bounds

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

SERVER, CLIENT = "198.18.53.1", "198.18.53.2"
TIMEOUT = 1.0  # resolv.conf "options timeout:1 attempts:1": the resolvers' wait for a dropped query
TOLERANCE = 0.05
SEED = 53
ZONE = {
    "reg.test": ["198.18.1.10", "2001:db8::10"],
    "cdn.test": ["198.18.1.20"],
    "*.prob.test": ["198.18.1.40"],
    "*.v6gone.test": ["198.18.1.50", "2001:db8::50"],
}

# getaddrinfo inside the client namespace: a batch per process, each lookup timed inside it.
GAI = r"""
import json, socket, sys, time
out = []
for name, family in json.loads(sys.argv[1]):
    t = time.monotonic()
    try:
        addrs = sorted({ai[4][0] for ai in socket.getaddrinfo(name, None, family, socket.SOCK_STREAM)})
        err = None
    except socket.gaierror as exc:
        addrs, err = [], exc.errno
    out.append({"addresses": addrs, "error": err, "elapsed": time.monotonic() - t})
print(json.dumps(out))
"""
EAI = {"EAI_NONAME": -2, "EAI_AGAIN": -3}
A_ONLY, ANY = 2, 0  # socket.AF_INET, socket.AF_UNSPEC


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@dataclass
class Net:
    server_ns: str
    client_ns: str


@pytest.fixture(scope="module")
def net():
    tag = secrets.token_hex(3)
    net = Net(f"chaos-dns-{tag}-s", f"chaos-dns-{tag}-c")
    resolv_dir = Path("/etc/netns") / net.client_ns
    try:
        for ns in (net.server_ns, net.client_ns):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"chd{tag}s", "netns", net.server_ns,
           "type", "veth", "peer", "name", f"chd{tag}c", "netns", net.client_ns)
        for ns, dev, addr in ((net.server_ns, f"chd{tag}s", SERVER), (net.client_ns, f"chd{tag}c", CLIENT)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        resolv_dir.mkdir(parents=True)
        (resolv_dir / "resolv.conf").write_text(
            f"nameserver {SERVER}\noptions timeout:{TIMEOUT:g} attempts:1\n")
        yield net
    finally:
        shutil.rmtree(resolv_dir, ignore_errors=True)
        for ns in (net.server_ns, net.client_ns):
            sh("ip", "netns", "del", ns, check=False)  # takes the veth pair with it


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHAOS_STATE_DIR", str(state))
        journal = Journal.create(f"dns-test-{secrets.token_hex(3)}")
        yield journal
        failures = journal.rollback()
        journal.finish()
        assert not failures, failures


@pytest.fixture(scope="module")
def server(net, journal, tmp_path_factory):
    # Seeded: a probability test checked against 99 % bounds must not fail 1 run in 100.
    srv = start_dns_server(journal, netns=net.server_ns, listen=SERVER, zone=ZONE,
                           run_dir=tmp_path_factory.mktemp("dns"), seed=SEED)
    yield srv
    srv.stop(journal)
    assert not srv.alive()


@pytest.fixture
def rules(server, journal):
    """add(rule) applies a DnsRule through the journal; every one is reverted after the test."""
    applied: list[DnsRule] = []

    def add(rule) -> DnsRule:
        injector = server.rule(rule)
        applied.append(injector)
        injector.apply(journal)
        return injector

    yield add
    for injector in reversed(applied):
        assert not injector.revert(journal)
    assert read_status(server.rules_dir)["rules"] == {}


# -- clients -------------------------------------------------------------------------------

@dataclass
class Dig:
    status: str | None
    answers: list[str]
    elapsed: float  # wall time of the dig process
    query_ms: int | None  # dig's own "Query time"
    text: str


def dig(net: Net, name: str, qtype: str = "A", *opts: str) -> Dig:
    """dig with no @server: it reads the namespace's resolv.conf like any other client."""
    t = time.monotonic()
    p = sh("ip", "netns", "exec", net.client_ns, "dig", name, qtype, *opts, check=False)
    elapsed = time.monotonic() - t
    text = p.stdout + p.stderr
    status = re.findall(r"status: (\w+)", text)
    answers = re.findall(rf"^{re.escape(name)}\.\s+\d+\s+IN\s+{qtype}\s+(\S+)$", text, re.M)
    query = re.search(r"Query time: (\d+) msec", text)
    return Dig(status[-1] if status else None, answers, elapsed,
               int(query.group(1)) if query else None, text)


def gai(net: Net, *lookups: tuple[str, int]) -> list[dict]:
    p = sh("ip", "netns", "exec", net.client_ns, sys.executable, "-I", "-S", "-c", GAI,
           json.dumps(lookups))
    return json.loads(p.stdout)


@pytest.fixture
def logged(server):
    """logged(name): the server's log records of name since the test began."""
    start = len(server.queries())

    def new(name: str | None = None) -> list[dict]:
        return [q for q in server.queries()[start:] if name is None or q["name"] == name]

    return new


def in_range(addr: str, cidr: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(cidr)


# -- the zone -------------------------------------------------------------------------------

def test_zone_names_get_their_addresses_and_others_are_refused(net, server, logged):
    assert dig(net, "reg.test").answers == ["198.18.1.10"]
    assert dig(net, "reg.test", "AAAA").answers == ["2001:db8::10"]
    mx = dig(net, "reg.test", "MX")
    assert (mx.status, mx.answers) == ("NOERROR", [])
    # Never forwarded, never recursed: a name outside the zone is refused.
    assert dig(net, "example.com").status == "REFUSED"
    ok, unknown = gai(net, ("reg.test", ANY), ("example.com", ANY))
    assert ok["addresses"] == ["198.18.1.10", "2001:db8::10"]
    assert unknown["error"] == EAI["EAI_AGAIN"] and unknown["elapsed"] < 0.2

    log = logged("reg.test")
    assert {(q["type"], q["answer"], q["rule"]) for q in log} >= {("A", "zone", None), ("AAAA", "zone", None)}
    first = log[0]
    assert first["client"] == CLIENT and first["proto"] == "udp" and first["rcode"] == "NOERROR"
    assert abs(first["t"] - time.time()) < 30 and first["port"] > 0
    assert logged("example.com")[0]["answer"] == "refused"


# -- each answer ----------------------------------------------------------------------------

@pytest.mark.parametrize("answer, rcode, eai", [
    ("nxdomain", "NXDOMAIN", "EAI_NONAME"),
    ("servfail", "SERVFAIL", "EAI_AGAIN"),
    ("refused", "REFUSED", "EAI_AGAIN"),
])
def test_rcode_answers_come_at_once(net, server, rules, logged, answer, rcode, eai):
    rules({"id": f"r-{answer}", "names": ["reg.test"], "answer": answer})
    d = dig(net, "reg.test")
    assert (d.status, d.answers) == (rcode, [])
    assert d.query_ms is not None and d.query_ms < 50
    (r,) = gai(net, ("reg.test", ANY))
    assert r["error"] == EAI[eai] and r["elapsed"] < 0.1
    log = logged("reg.test")
    assert {(q["rule"], q["answer"], q["rcode"]) for q in log} == {(f"r-{answer}", answer, rcode)}


def test_timeout_drops_the_query_and_clients_wait_their_resolv_conf_timeout(net, server, rules, logged):
    rules({"id": "drop", "names": ["reg.test"], "answer": "timeout"})
    baseline = dig(net, "cdn.test").elapsed  # process start-up of dig in the namespace
    d = dig(net, "reg.test")
    assert d.status is None and "timed out" in d.text
    assert abs(d.elapsed - baseline - TIMEOUT) < TOLERANCE, (d.elapsed, baseline)
    # glibc sends A and AAAA together and waits one timeout for both (single attempt).
    v4, both = gai(net, ("reg.test", A_ONLY), ("reg.test", ANY))
    for r in (v4, both):
        assert r["error"] == EAI["EAI_AGAIN"]
        assert abs(r["elapsed"] - TIMEOUT) < TOLERANCE, r
    log = logged("reg.test")
    assert sorted(q["type"] for q in log) == ["A", "A", "A", "AAAA"]  # nothing was retried
    assert all(q["answer"] == "timeout" and q["rcode"] is None and q["rule"] == "drop" for q in log)


def test_timeout_of_aaaa_only_costs_glibc_three_timeouts(net, server, rules):
    """Measured on glibc 2.36: parallel A+AAAA (1 timeout), then single-request (1), then
    single-request-reopen (1): AF_UNSPEC answers with the A record after 3 timeouts."""
    rules({"id": "no-v6", "names": ["*.v6gone.test"], "answer": "timeout", "types": ["AAAA"]})
    v4, both = gai(net, ("a.v6gone.test", A_ONLY), ("b.v6gone.test", ANY))
    assert v4["addresses"] == ["198.18.1.50"] and v4["elapsed"] < 0.1
    assert both["addresses"] == ["198.18.1.50"]
    assert abs(both["elapsed"] - 3 * TIMEOUT) < TOLERANCE, both
    assert dig(net, "c.v6gone.test").answers == ["198.18.1.50"]
    assert dig(net, "c.v6gone.test", "AAAA").status is None


def test_sinkhole_default_and_given_address(net, server, rules, logged):
    rules({"id": "hole", "names": ["reg.test"], "answer": "sinkhole"})
    rules({"id": "hole2", "names": ["cdn.test"], "answer": "sinkhole", "address": "198.18.9.9"})
    assert dig(net, "reg.test").answers == ["0.0.0.0"]
    assert dig(net, "reg.test", "AAAA").answers == ["::"]
    assert dig(net, "cdn.test").answers == ["198.18.9.9"]
    aaaa = dig(net, "cdn.test", "AAAA")
    assert (aaaa.status, aaaa.answers) == ("NOERROR", [])
    r1, r2 = gai(net, ("reg.test", ANY), ("cdn.test", ANY))
    assert r1["addresses"] == ["0.0.0.0", "::"]
    assert r2["addresses"] == ["198.18.9.9"]
    assert {(q["type"], tuple(q["addresses"])) for q in logged("cdn.test")} == {
        ("A", ("198.18.9.9",)), ("AAAA", ())}


def test_delay_gives_the_real_answer_late(net, server, rules, logged):
    rules({"id": "slow", "names": ["reg.test"], "answer": "delay", "delay": "300ms"})
    d = dig(net, "reg.test")
    assert d.answers == ["198.18.1.10"]
    assert abs(d.query_ms / 1000 - 0.3) < TOLERANCE, d.query_ms
    v4, both = gai(net, ("reg.test", A_ONLY), ("reg.test", ANY))
    assert v4["addresses"] == ["198.18.1.10"]
    assert both["addresses"] == ["198.18.1.10", "2001:db8::10"]
    for r in (v4, both):  # A and AAAA go out together: one delay, not two
        assert abs(r["elapsed"] - 0.3) < TOLERANCE, r
    assert logged("reg.test")[-1]["delay"] == 0.3


def test_truncate_forces_tcp(net, server, rules, logged):
    rules({"id": "tc", "names": ["reg.test"], "answer": "truncate"})
    d = dig(net, "reg.test")
    assert "Truncated, retrying in TCP mode" in d.text
    assert d.answers == ["198.18.1.10"]
    (r,) = gai(net, ("reg.test", ANY))
    assert r["addresses"] == ["198.18.1.10", "2001:db8::10"]
    log = logged("reg.test")
    assert [(q["proto"], q["rcode"]) for q in log[:2]] == [("udp", "NOERROR"), ("tcp", "NOERROR")]
    assert log[0]["addresses"] == [] and log[1]["addresses"] == ["198.18.1.10"]
    # glibc too fell back to TCP for both of its questions.
    assert {(q["proto"], q["type"]) for q in log[2:]} >= {("tcp", "A"), ("tcp", "AAAA")}


def test_truncate_then_a_tcp_rule_decides_the_retry(net, server, rules, logged):
    rules({"id": "tc", "names": ["reg.test"], "answer": "truncate"})
    rules({"id": "tcp-drop", "names": ["reg.test"], "answer": "timeout", "protocol": "tcp"})
    d = dig(net, "reg.test")
    assert "Truncated, retrying in TCP mode" in d.text and d.status is None
    log = logged("reg.test")
    assert [(q["proto"], q["rule"], q["rcode"]) for q in log] == [
        ("udp", "tc", "NOERROR"), ("tcp", "tcp-drop", None)]


def test_protocol_limits_a_rule_to_one_transport(net, server, rules, logged):
    rules({"id": "udp-only", "names": ["reg.test"], "answer": "nxdomain", "protocol": "udp"})
    assert dig(net, "reg.test").status == "NXDOMAIN"
    assert dig(net, "reg.test", "A", "+tcp").answers == ["198.18.1.10"]
    assert [(q["proto"], q["answer"]) for q in logged("reg.test")] == [("udp", "nxdomain"), ("tcp", "zone")]
    for bad in ({"protocol": "quic"}, {"protocol": "tcp", "answer": "truncate"}):
        with pytest.raises(RuleError, match="protocol"):
            server.rule({"id": "x", "names": ["a.test"], "answer": "servfail", **bad})


def test_random_gives_a_fresh_address_from_the_range(net, server, rules):
    v4net, v6net = "198.18.200.0/24", "2001:db8:200::/64"
    rules({"id": "rnd", "names": ["reg.test"], "answer": "random", "range": [v4net, v6net]})
    seen = [dig(net, "reg.test").answers for _ in range(5)]
    assert all(len(a) == 1 and in_range(a[0], v4net) for a in seen)
    assert len({a[0] for a in seen}) >= 2
    aaaa = dig(net, "reg.test", "AAAA").answers
    assert len(aaaa) == 1 and in_range(aaaa[0], v6net)
    (r,) = gai(net, ("reg.test", ANY))
    v4 = [a for a in r["addresses"] if ":" not in a]
    v6 = [a for a in r["addresses"] if ":" in a]
    assert len(v4) == 1 and in_range(v4[0], v4net) and len(v6) == 1 and in_range(v6[0], v6net)


def test_rotate_cycles_through_all_addresses(net, server, rules):
    pool = ["198.18.3.1", "198.18.3.2", "198.18.3.3"]
    rules({"id": "rr", "names": ["reg.test"], "answer": "rotate", "addresses": pool})
    answers = [dig(net, "reg.test").answers for _ in range(3)]
    assert all(sorted(a) == pool for a in answers)
    assert sorted(a[0] for a in answers) == pool  # each address leads once
    assert answers[1] == answers[0][1:] + answers[0][:1]
    (r,) = gai(net, ("reg.test", A_ONLY))
    assert r["addresses"] == pool


def test_wildcard_with_probability_fails_at_the_configured_rate(net, server, rules, logged):
    n, p = 200, 0.3
    rules({"id": "flaky", "names": ["*.prob.test"], "answer": "servfail", "probability": p})
    names = [f"n{i}.prob.test" for i in range(n)]
    batch = server.run_dir / "batch.txt"
    batch.write_text("".join(f"{name} A\n" for name in names))
    out = sh("ip", "netns", "exec", net.client_ns, "dig", "-f", str(batch), check=False).stdout
    statuses = re.findall(r"status: (\w+)", out)
    assert len(statuses) == n and set(statuses) <= {"SERVFAIL", "NOERROR"}
    failures = statuses.count("SERVFAIL")
    low, high = binomial_bounds(n, p, 0.99)
    assert low <= failures <= high, (failures, low, high)
    # The wildcard did not match the suffix itself, and the log says which rule decided.
    decided = [q for q in logged() if q["name"].endswith(".prob.test")]
    assert len(decided) == n
    assert sum(q["rule"] == "flaky" for q in decided) == failures
    assert {q["answer"] for q in decided} == {"servfail", "zone"}
    assert dig(net, "prob.test").status == "REFUSED"


# -- switching rules while the server runs ------------------------------------------------

def wait_status(server, done, timeout: float = 2.0) -> dict:
    deadline = time.monotonic() + timeout
    while not done(status := read_status(server.rules_dir)):
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
    return status


def test_sighup_switches_a_rule_on_and_off(net, server):
    path = server.rules_dir / "outage.json"
    pid_before = server.pid
    try:
        path.write_text(json.dumps({"id": "outage", "names": ["cdn.test"], "answer": "nxdomain"}))
        os.kill(server.pid, signal.SIGHUP)
        wait_status(server, lambda s: "outage" in s.get("rules", ()))
        assert dig(net, "cdn.test").status == "NXDOMAIN"
        assert gai(net, ("cdn.test", A_ONLY))[0]["error"] == EAI["EAI_NONAME"]
    finally:
        path.unlink(missing_ok=True)
        os.kill(server.pid, signal.SIGHUP)
        wait_status(server, lambda s: "outage" not in s.get("rules", ()))
    assert dig(net, "cdn.test").answers == ["198.18.1.20"]
    assert gai(net, ("cdn.test", A_ONLY))[0]["addresses"] == ["198.18.1.20"]
    assert server.pid == pid_before and server.alive()


def test_a_broken_rule_file_is_reported_and_skipped(net, server):
    path = server.rules_dir / "broken.json"
    try:
        path.write_text('{"id": "broken", "names": ["cdn.test"], "answer": "explode"}')
        os.kill(server.pid, signal.SIGHUP)
        status = wait_status(server, lambda s: "broken.json" in s.get("errors", {}))
        assert "explode" in status["errors"]["broken.json"]
        assert dig(net, "cdn.test").answers == ["198.18.1.20"]
    finally:
        path.unlink(missing_ok=True)
        os.kill(server.pid, signal.SIGHUP)
        wait_status(server, lambda s: not s.get("errors"))


def test_set_zone_adds_a_name_and_a_broken_zone_file_keeps_the_old_zone(net, server):
    assert dig(net, "late.test").status == "REFUSED"
    try:
        server.set_zone({**ZONE, "late.test": ["198.18.1.60"]})
        assert dig(net, "late.test").answers == ["198.18.1.60"]
        assert dig(net, "reg.test").answers == ["198.18.1.10"]
        with pytest.raises(ValueError):  # checked before the server sees it
            server.set_zone({"bad.test": ["not-an-address"]})
        server.zone_path.write_text("{not json")
        os.kill(server.pid, signal.SIGHUP)
        status = wait_status(server, lambda s: "zone" in s.get("errors", {}))
        assert str(server.zone_path) in status["errors"]["zone"]
        assert dig(net, "late.test").answers == ["198.18.1.60"]  # the zone it had
    finally:
        server.set_zone(ZONE)
    assert dig(net, "late.test").status == "REFUSED"


def test_dns_rule_is_undone_through_the_journal(net, server, journal):
    injector = server.rule({"id": "gone", "names": ["reg.test"], "answer": "nxdomain",
                            "type": "dns", "window": None})  # unknown keys: a fault model's extras
    mark = journal.mark()
    injector.apply(journal)
    injector.apply(journal)  # twice changes nothing
    assert journal.mark() == mark + 1
    entry = journal.entries[-1]
    assert (entry.kind, entry.undo["path"]) == ("dns-rule", str(injector.path))
    assert injector.path.exists() and dig(net, "reg.test").status == "NXDOMAIN"

    assert not journal.rollback(mark)
    assert entry.undone and not injector.path.exists()
    assert "gone" not in read_status(server.rules_dir)["rules"]
    assert dig(net, "reg.test").answers == ["198.18.1.10"]
    on_disk = [json.loads(line) for line in journal.path.read_text().splitlines()]
    assert {"op": "undone", "seq": entry.seq} in on_disk
    dns_rules.undo(entry.undo)  # idempotent: nothing left to undo, no error


def test_a_pydantic_model_dumps_straight_into_a_rule(net, server, rules, logged):
    from datetime import timedelta
    from typing import Literal

    from pydantic import BaseModel

    class DnsFault(BaseModel):  # shaped like a fault model: extra keys, None, a timedelta
        type: Literal["dns"] = "dns"
        id: str
        names: list[str]
        answer: str
        delay: timedelta | None = None
        address: str | None = None
        probability: float = 1.0
        window: dict | None = None

    rules(DnsFault(id="model", names=["cdn.test"], answer="delay", delay=timedelta(milliseconds=200)))
    d = dig(net, "cdn.test")
    assert d.answers == ["198.18.1.20"] and abs(d.query_ms / 1000 - 0.2) < TOLERANCE
    assert logged("cdn.test")[-1]["delay"] == 0.2


def test_recover_undoes_a_rule_left_by_a_crashed_run(net, server, journal):
    injector = server.rule({"id": "left", "names": ["cdn.test"], "answer": "servfail"})
    injector.apply(journal)
    assert dig(net, "cdn.test").status == "SERVFAIL"
    # What `chaos recover` does: read the journal from disk and undo what it records.
    on_disk = Journal.read(journal.path)
    (entry,) = [e for e in on_disk.pending() if e.kind == "dns-rule"]
    assert not on_disk.undo_entries([entry])
    assert dig(net, "cdn.test").answers == ["198.18.1.20"]
    assert not injector.revert(journal)  # the run's own revert after that is harmless


def test_undo_does_not_signal_a_process_that_is_not_the_server(tmp_path):
    rule_file = tmp_path / "x.json"
    rule_file.write_text("{}")
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        wrong_start = process_start_time(bystander.pid) + 1  # same pid, another process
        dns_rules.undo({"path": str(rule_file), "id": "x", "rules_dir": str(tmp_path),
                        "pid": bystander.pid, "start": wrong_start})
        assert not rule_file.exists()
        time.sleep(0.05)
        assert bystander.poll() is None  # a SIGHUP would have killed sleep
    finally:
        bystander.kill()
        bystander.wait()


def test_bad_rules_fail_before_anything_changes(server, journal):
    before = journal.mark()
    for bad in ({"id": "x", "names": [], "answer": "nxdomain"},
                {"id": "x", "names": ["a.test"], "answer": "random"},
                {"id": "../x", "names": ["a.test"], "answer": "nxdomain"},
                {"id": "x", "names": ["a.*.test"], "answer": "nxdomain"},
                {"id": "x", "names": ["a.test"], "answer": "delay", "delay": "soon"},
                {"id": "x", "names": ["a.test"], "answer": "nxdomain", "probability": 1.5}):
        with pytest.raises(RuleError):
            server.rule(bad)
    assert journal.mark() == before


def test_start_fails_clearly_when_the_server_cannot_bind(net, journal, tmp_path):
    with pytest.raises(RuntimeError, match="Cannot assign requested address"):
        start_dns_server(journal, netns=net.server_ns, listen="198.18.53.99", zone=ZONE,
                         run_dir=tmp_path / "dns")
    assert journal.entries[-1].kind == "process" and journal.entries[-1].undone
    assert not is_alive(journal.entries[-1].undo["pid"], journal.entries[-1].undo["start"])


def test_the_log_is_complete_after_sigterm(net, journal, tmp_path):
    """Buffered log lines are written at exit; a query answered is a query logged."""
    srv = start_dns_server(journal, netns=net.server_ns, listen="127.0.0.1", port=5353,
                           zone=ZONE, run_dir=tmp_path / "dns2")
    try:
        batch = tmp_path / "batch.txt"
        batch.write_text("".join(f"reg.test {t}\n" for t in ("A", "AAAA") * 25))
        out = sh("ip", "netns", "exec", net.server_ns, "dig", "@127.0.0.1", "-p", "5353",
                 "+tcp", "-f", str(batch)).stdout
        assert out.count("status: NOERROR") == 50
    finally:
        srv.stop(journal)  # SIGTERM: no flush request before it
    lines = srv.log_path.read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["A", "AAAA"] * 25
    assert {json.loads(line)["proto"] for line in lines} == {"tcp"}
