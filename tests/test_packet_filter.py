"""Packet filter and client profiles, proven with real traffic between real namespaces.

Topology (one per module; addresses from 198.18.0.0/15 and the IPv6 benchmarking range
2001:2::/48, inside our own namespaces only):

    client A  198.18.1.2  2001:2:0:1::2 ─┐
    client B  198.18.2.2  2001:2:0:2::2 ─┼─ router ─── server 198.18.3.2  2001:2:0:3::2
                                          (forwards)   HTTP :8080 (small, big), UDP echo :9000
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from chaos.injectors import iptables, nft, undo_function
from chaos.injectors.client_profile import client_profile, read_sysctls
from chaos.injectors.packet_filter import FilterRule, PacketFilter, render_batch
from chaos.journal import Journal
from chaos.processes import netns_argv

SERVER4, SERVER6 = "198.18.3.2", "2001:2:0:3::2"
BIG = 20_000_000
URL4 = f"http://{SERVER4}:8080"
URL6 = f"http://[{SERVER6}]:8080"

SERVER_PY = r'''
import functools, http.server, socket, sys, threading
class Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass
class Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
httpd = Server(("::", 8080), functools.partial(Handler, directory=sys.argv[1]))
udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
udp.bind(("::", 9000))
def echo():
    while True:
        data, peer = udp.recvfrom(2048)
        udp.sendto(data, peer)
threading.Thread(target=echo, daemon=True).start()
print("ready", flush=True)
httpd.serve_forever()
'''

# Connect with a given IP TOS byte (DSCP << 2); prints ok or the errno name.
CONNECT_PY = r'''
import errno, socket, sys
s = socket.socket()
s.settimeout(1.0)
s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, int(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("ok")
except socket.timeout:
    print("timeout")
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e)))
'''

# Send n numbered datagrams to the echo server, print how many came back.
UDP_PY = r'''
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
got = set()
def drain(timeout):
    s.settimeout(timeout)
    while True:
        try:
            got.add(int(s.recv(64)))
        except (BlockingIOError, socket.timeout):
            return
for i in range(n):
    s.sendto(str(i).encode(), (host, port))
    drain(0)
    time.sleep(0.0005)
drain(0.3)
print(len(got))
'''


def sh(netns: str | None, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(netns_argv(netns, list(argv)), capture_output=True, text=True,
                          check=check, timeout=30)


@dataclass
class Lab:
    a: str
    b: str
    router: str
    server: str

    @property
    def all(self) -> list[str]:
        return [self.a, self.b, self.router, self.server]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    hexid = secrets.token_hex(3)
    lab = Lab(*(f"chaos-pf{role}-{hexid}" for role in ("a", "b", "r", "s")))
    www = tmp_path_factory.mktemp("www")
    (www / "small").write_text("hello")
    with open(www / "big", "wb") as f:
        f.truncate(BIG)
    server = None
    created = []
    try:
        for ns in lab.all:
            sh(None, "ip", "netns", "add", ns)
            created.append(ns)
            # No duplicate address detection: addresses are usable at once.
            sh(ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0",
               "net.ipv6.conf.all.accept_dad=0")
            sh(ns, "ip", "link", "set", "lo", "up")
        sh(lab.router, "sysctl", "-qw", "net.ipv4.ip_forward=1",
           "net.ipv6.conf.all.forwarding=1")
        for i, (role, ns) in enumerate((("a", lab.a), ("b", lab.b), ("s", lab.server)), 1):
            inner, outer = f"ch{role}{hexid}", f"chr{role}{hexid}"
            sh(None, "ip", "link", "add", inner, "netns", ns, "type", "veth",
               "peer", "name", outer, "netns", lab.router)
            sh(ns, "ip", "addr", "add", f"198.18.{i}.2/24", "dev", inner)
            sh(ns, "ip", "-6", "addr", "add", f"2001:2:0:{i}::2/64", "dev", inner, "nodad")
            sh(lab.router, "ip", "addr", "add", f"198.18.{i}.1/24", "dev", outer)
            sh(lab.router, "ip", "-6", "addr", "add", f"2001:2:0:{i}::1/64", "dev", outer,
               "nodad")
            sh(ns, "ip", "link", "set", inner, "up")
            sh(lab.router, "ip", "link", "set", outer, "up")
            sh(ns, "ip", "route", "add", "default", "via", f"198.18.{i}.1")
            sh(ns, "ip", "-6", "route", "add", "default", "via", f"2001:2:0:{i}::1")
        script = www.parent / "server.py"
        script.write_text(SERVER_PY)
        server = subprocess.Popen(netns_argv(lab.server, [sys.executable, str(script), str(www)]),
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        for ns in (lab.a, lab.b):
            for url in (URL4, URL6):
                assert curl(ns, url + "/small").rc == 0, f"no path {ns} -> {url}"
        yield lab
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture
def tag():
    return f"chaos-{secrets.token_hex(3)}"


@pytest.fixture
def journal(tmp_path, monkeypatch, lab, tag):
    monkeypatch.setenv("CHAOS_STATE_DIR", str(tmp_path))
    journal = Journal.create(f"run-{tag}")
    before = {ns: saved(ns) for ns in lab.all}
    yield journal
    failures = journal.rollback()
    for ns in lab.all:  # safety net: nothing of this test may outlive it
        iptables.cleanup(ns, tag)
    journal.finish()
    assert not failures, failures
    assert {ns: saved(ns) for ns in lab.all} == before, "test left iptables state behind"


@dataclass
class Curl:
    rc: int
    err: str
    elapsed: float
    size: int


def curl(netns: str, url: str, max_time: float = 3.0, *extra: str) -> Curl:
    start = time.monotonic()
    proc = sh(netns, "curl", "-g", "-v", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
              "--max-time", str(max_time), *extra, url, check=False)
    return Curl(proc.returncode, proc.stderr, time.monotonic() - start,
                int(proc.stdout or 0))


def saved(netns: str) -> str:
    """iptables-save + ip6tables-save, without comment lines and counters."""
    text = sh(netns, "iptables-save").stdout + sh(netns, "ip6tables-save").stdout
    lines = [re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in text.splitlines()
             if not ln.startswith("#")]
    return "\n".join(lines)


def applied(journal: Journal, rules, *, netns: str, tag: str, hook: str) -> PacketFilter:
    pf = PacketFilter(rules, netns=netns, tag=tag, hook=hook)
    pf.apply(journal)
    return pf


# -- rendering and validation (no traffic) ---------------------------------------------------
def test_render_example_batch():
    rules = [FilterRule(action="reject-reset", destinations=["198.18.3.2", "2001:2:0:3::2"],
                        ports=[443, 8080], ttl={"eq": 127})]
    text = render_batch(rules, chain="chaos-1a2b3c-pf1", hook="OUTPUT", tag="chaos-1a2b3c",
                        family="ipv4")
    assert text == (
        "*filter\n"
        ":chaos-1a2b3c-pf1 - [0:0]\n"
        "-A chaos-1a2b3c-pf1 -d 198.18.3.2/32 -p tcp -m multiport --dports 443,8080 "
        "-m tcp --tcp-flags RST NONE -m ttl --ttl-eq 127 "
        '-m comment --comment "chaos-1a2b3c r1 reject-reset" -j REJECT --reject-with tcp-reset\n'
        '-I OUTPUT 1 -m comment --comment "chaos-1a2b3c" -j chaos-1a2b3c-pf1\n'
        "COMMIT\n")
    v6 = render_batch(rules, chain="c", hook="OUTPUT", tag="t", family="ipv6")
    assert "-d 2001:2:0:3::2/128" in v6 and "-m hl --hl-eq 127" in v6


def test_rules_split_per_family():
    pf = PacketFilter([{"destinations": ["198.18.3.2"], "protocol": "udp"},
                       {"sources": ["2001:2::/48"], "action": "reject-icmp",
                        "reject_with": "host-unreachable"}],
                      netns="unused", tag="chaos-abc", hook="FORWARD")
    batches = pf.render()
    assert "198.18.3.2" in batches["ipv4"] and "2001:2" not in batches["ipv4"]
    assert "icmp6-addr-unreachable" in batches["ipv6"] and "198.18" not in batches["ipv6"]


def test_chain_name_respects_the_28_char_limit():
    long = iptables.chain_name("chaos-" + "x" * 40, "pf0")
    assert len(long) <= iptables.MAX_CHAIN
    assert long != iptables.chain_name("chaos-" + "x" * 40, "pf1")
    assert iptables.chain_name("chaos-1a2b3c", "pf0") == "chaos-1a2b3c-pf0"


@pytest.mark.parametrize("bad", [
    {"action": "explode"},
    {"action": "reject-reset", "protocol": "udp"},
    {"ports": [80]},  # no protocol
    {"sources": ["198.18.1.0/24"], "destinations": ["2001:2::1"]},
    {"ttl": {"eq": 1, "lt": 5}, "protocol": "tcp"},
    {"tcp_flags": ("SYN", "BOGUS"), "protocol": "tcp"},
    {"probability": 0},
    {"length": (1500, 100)},
    {"dscp": 64},
    {"colour": "red"},
])
def test_invalid_rules_are_refused(bad):
    with pytest.raises(ValueError):
        FilterRule.from_dict(bad)


# -- every action, the symptom a client sees --------------------------------------------------
HOOKS = {"client OUTPUT": ("a", "OUTPUT"), "router FORWARD": ("router", "FORWARD"),
         "server INPUT": ("server", "INPUT")}
ACTIONS = {  # name -> (rule fields, expected curl rc, text in curl's stderr)
    "drop": ({"action": "drop"}, 28, "timed out"),
    "reset": ({"action": "reject-reset"}, 7, "Connection refused"),
    "icmp-port": ({"action": "reject-icmp"}, 7, "Connection refused"),
    "icmp-host": ({"action": "reject-icmp", "reject_with": "host-unreachable"}, 7,
                  "No route to host"),
}


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("where", HOOKS)
def test_action_symptom(lab, journal, tag, where, action):
    fields, rc, message = ACTIONS[action]
    role, hook = HOOKS[where]
    pf = applied(journal, [{"destinations": [SERVER4], "protocol": "tcp", "ports": [8080],
                            **fields}], netns=getattr(lab, role), tag=tag, hook=hook)
    got = curl(lab.a, URL4 + "/small", max_time=1.0)
    assert got.rc == rc and message in got.err, got
    if action == "drop":
        assert got.elapsed >= 0.95  # hangs until the client's own timeout
    else:
        assert got.elapsed < 0.5  # fails at once
    if where == "client OUTPUT":
        assert curl(lab.b, URL4 + "/small").rc == 0  # other namespaces are untouched
    assert not pf.revert(journal)
    assert curl(lab.a, URL4 + "/small").rc == 0  # steady state is back


@pytest.mark.parametrize("action", ACTIONS)
def test_action_symptom_ipv6(lab, journal, tag, action):
    fields, rc, message = ACTIONS[action]
    pf = applied(journal, [{"destinations": [SERVER6], "protocol": "tcp", "ports": [8080],
                            **fields}], netns=lab.a, tag=tag, hook="OUTPUT")
    assert set(pf.render()) == {"ipv6"}
    got = curl(lab.a, URL6 + "/small", max_time=1.0 if action == "drop" else 3.0)
    assert got.rc == rc and message in got.err, got
    # An ICMPv6 error that arrives while connect() still holds the socket is only a soft
    # error (TcpExtLockDroppedIcmps); on zero-latency veth it always does, so the failure
    # comes with the first SYN retransmit, after 1 s. IPv4 and RST fail at once.
    assert got.elapsed < {"drop": 1.5, "reset": 0.5}.get(action, 1.5), got
    assert curl(lab.a, URL4 + "/small").rc == 0  # IPv4 untouched
    pf.revert(journal)
    assert curl(lab.a, URL6 + "/small").rc == 0


@pytest.mark.parametrize("ports, blocked", [([443, 8080], True), ([443, "8081:8090"], False),
                                            (["8000:8090"], True), ([8081], False)])
def test_ports_match_only_the_listed_ports(lab, journal, tag, ports, blocked):
    applied(journal, [{"destinations": [SERVER4], "protocol": "tcp", "ports": ports,
                       "action": "reject-reset"}], netns=lab.a, tag=tag, hook="OUTPUT")
    assert curl(lab.a, URL4 + "/small").rc == (7 if blocked else 0)


def test_reset_matching_any_tcp_still_reaches_the_client(lab, journal, tag):
    # The kernel's RST passes this OUTPUT chain too; the rule must not swallow it.
    applied(journal, [{"action": "reject-reset", "ttl": {"eq": 64}}],
            netns=lab.a, tag=tag, hook="OUTPUT")
    got = curl(lab.a, URL4 + "/small", max_time=2.0)
    assert got.rc == 7 and "Connection refused" in got.err and got.elapsed < 0.5, got


# -- matches ------------------------------------------------------------------------------------
def test_after_bytes_download_starts_then_stalls(lab, journal, tag):
    applied(journal, [{"destinations": [SERVER4], "protocol": "tcp", "after_bytes": 200_000}],
            netns=lab.a, tag=tag, hook="OUTPUT")
    assert curl(lab.a, URL4 + "/small").rc == 0  # short connections never reach N
    got = curl(lab.a, URL4 + "/big", max_time=1.5)
    assert got.rc == 28, got
    assert 200_000 < got.size < BIG, got


def test_after_bytes_reset_kills_an_established_download(lab, journal, tag):
    applied(journal, [{"destinations": [SERVER4], "action": "reject-reset",
                       "after_bytes": 200_000}], netns=lab.a, tag=tag, hook="OUTPUT")
    got = curl(lab.a, URL4 + "/big", max_time=3)
    assert got.rc == 56 and "Connection reset by peer" in got.err, got
    assert 200_000 < got.size < BIG and got.elapsed < 1.0, got


def test_length_match_hits_only_large_packets(lab, journal, tag):
    applied(journal, [{"destinations": [SERVER4], "action": "reject-reset",
                       "length": (1000, 65535)}], netns=lab.a, tag=tag, hook="OUTPUT")
    assert curl(lab.a, URL4 + "/small").rc == 0
    padded = curl(lab.a, URL4 + "/small", 3, "-H", "X-Pad: " + "p" * 1200)
    assert padded.rc == 56 and "reset by peer" in padded.err, padded


@pytest.mark.parametrize("flags, blocked", [(("SYN,ACK", "SYN"), True),
                                            (("SYN,ACK", "SYN,ACK"), False)])
def test_tcp_flags_match(lab, journal, tag, flags, blocked):
    applied(journal, [{"destinations": [SERVER4], "protocol": "tcp", "tcp_flags": flags,
                       "action": "reject-icmp", "reject_with": "host-unreachable"}],
            netns=lab.a, tag=tag, hook="OUTPUT")
    got = curl(lab.a, URL4 + "/small")
    if blocked:
        assert got.rc == 7 and "No route to host" in got.err, got
    else:  # a client never sends SYN+ACK
        assert got.rc == 0, got


def test_dscp_match(lab, journal, tag):
    applied(journal, [{"destinations": [SERVER4], "dscp": 10, "action": "reject-icmp"}],
            netns=lab.a, tag=tag, hook="OUTPUT")
    connect = [sys.executable, "-c", CONNECT_PY, SERVER4, "8080"]
    assert sh(lab.a, *connect, str(10 << 2)).stdout.strip() == "ECONNREFUSED"
    assert sh(lab.a, *connect, "0").stdout.strip() == "ok"


def test_probability_gives_partial_loss(lab, journal, tag):
    udp = [sys.executable, "-c", UDP_PY, SERVER4, "9000"]
    assert int(sh(lab.a, *udp, "50").stdout) == 50  # no loss without the fault
    applied(journal, [{"destinations": [SERVER4], "protocol": "udp", "ports": [9000],
                       "probability": 0.3}], netns=lab.router, tag=tag, hook="FORWARD")
    # Only the way out matches (the echo goes to A): expect 0.3, sd 0.023 for 400.
    loss = 1 - int(sh(lab.a, *udp, "400").stdout) / 400
    assert 0.18 < loss < 0.42, loss


@pytest.mark.parametrize("region", [["198.18.1.0/24", "2001:2:0:1::/64"],
                                    ["198.18.1.2-198.18.1.9", "2001:2:0:1::2-2001:2:0:1::9"]],
                         ids=["cidr", "iprange"])
def test_geo_block_by_source_range(lab, journal, tag, region):
    pf = applied(journal, [{"sources": region,
                            "destinations": [SERVER4, SERVER6], "action": "drop"}],
                 netns=lab.router, tag=tag, hook="FORWARD")
    assert set(pf.render()) == {"ipv4", "ipv6"}
    region_b = [curl(lab.b, URL4 + "/small"), curl(lab.b, URL6 + "/small")]
    region_a = [curl(lab.a, URL4 + "/small", 0.7), curl(lab.a, URL6 + "/small", 0.7)]
    assert [c.rc for c in region_b] == [0, 0], region_b
    assert [c.rc for c in region_a] == [28, 28], region_a


# -- client profiles: a signature selects only the matching client ---------------------------
SIGNATURES = {  # the rule at the router; B looks like Windows (TTL 128 -> 127 after a hop)
    "ttl": ({"ttl": {"eq": 127}}, URL4),
    "hop-limit": ({"ttl": {"eq": 127}}, URL6),
    "mss": ({"mss": (1200, 1200)}, URL4),
    "no-window-scaling": ({"tcp_option": 3, "tcp_option_absent": True}, URL4),
    "no-timestamps": ({"tcp_option": 8, "tcp_option_absent": True}, URL6),
}


@pytest.mark.parametrize("signature", SIGNATURES)
def test_signature_hits_only_the_profiled_client(lab, journal, tag, signature):
    fields, url = SIGNATURES[signature]
    profile = client_profile(lab.b, os_family="windows", mss=1200, window_scaling=False,
                             tag=tag)
    profile.apply(journal)
    assert curl(lab.b, url + "/small").rc == 0  # the profile alone breaks nothing
    applied(journal, [{"protocol": "tcp", "tcp_flags": ("SYN,ACK", "SYN"),
                       "action": "reject-reset", **fields}],
            netns=lab.router, tag=tag, hook="FORWARD")
    profiled, plain = curl(lab.b, url + "/small"), curl(lab.a, url + "/small")
    assert profiled.rc == 7 and "Connection refused" in profiled.err, profiled
    assert plain.rc == 0, plain


def test_client_profile_changes_only_its_namespace_and_restores(lab, journal, tag):
    keys = ["net/ipv4/ip_default_ttl", "net/ipv6/conf/*/hop_limit",
            "net/ipv4/tcp_window_scaling", "net/ipv4/tcp_timestamps"]
    before, host_before = read_sysctls(lab.b, keys), read_sysctls(None, keys)
    profile = client_profile(lab.b, ttl=128, window_scaling=False, timestamps=False, tag=tag)
    profile.apply(journal)
    during = read_sysctls(lab.b, keys)
    assert during["net/ipv4/ip_default_ttl"] == "128"
    assert all(v == "128" for k, v in during.items() if k.endswith("hop_limit"))
    assert during["net/ipv4/tcp_window_scaling"] == during["net/ipv4/tcp_timestamps"] == "0"
    assert read_sysctls(None, keys) == host_before
    assert not profile.revert(journal)
    assert read_sysctls(lab.b, keys) == before
    undo_function("sysctl")(journal.entries[-1].undo)  # twice is fine
    assert read_sysctls(lab.b, keys) == before


# -- own chain, clean revert, idempotent undo -------------------------------------------------
@pytest.fixture
def fresh_ns():
    name = f"chaos-pfx-{secrets.token_hex(3)}"
    sh(None, "ip", "netns", "add", name)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=False)


RULES = [{"destinations": [SERVER4, SERVER6], "protocol": "tcp", "ports": [8080, 443],
          "action": "reject-reset"},
         {"sources": ["198.18.1.0/24"], "protocol": "udp", "probability": 0.5}]


def test_rules_live_in_own_chain_and_revert_is_exact(journal, tag, fresh_ns):
    # Someone else's rules are there already (a dockerd, a VPN client, ...).
    sh(fresh_ns, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7", "-j", "ACCEPT")
    sh(fresh_ns, "ip6tables", "-A", "OUTPUT", "-p", "udp", "--dport", "7", "-j", "ACCEPT")
    before = saved(fresh_ns)
    pf = applied(journal, RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    during = saved(fresh_ns)
    added = [ln for ln in during.splitlines() if ln not in before.splitlines()]
    assert set(before.splitlines()) <= set(during.splitlines())
    assert all(pf.chain in ln for ln in added), added
    jumps = [ln for ln in added if not ln.startswith(f"-A {pf.chain} ")
             and not ln.startswith(f":{pf.chain} ")]
    assert jumps == [f"-A OUTPUT -m comment --comment {tag} -j {pf.chain}"] * 2
    own = [ln for ln in added if ln.startswith(f"-A {pf.chain} ")]
    assert len(own) == 3 and all(f'--comment "{tag} r' in ln for ln in own), own
    pf.revert(journal)
    assert saved(fresh_ns) == before


def test_revert_in_a_fresh_namespace_leaves_no_table(journal, tag, fresh_ns):
    assert saved(fresh_ns) == ""
    pf = applied(journal, RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    profile = client_profile(fresh_ns, mss=1300, tag=tag)
    profile.apply(journal)
    assert "*filter" in saved(fresh_ns) and "TCPMSS --set-mss 1300" in saved(fresh_ns)
    profile.revert(journal)
    pf.revert(journal)
    assert saved(fresh_ns) == ""


def test_apply_twice_keeps_one_jump(journal, tag, fresh_ns):
    pf = PacketFilter(RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    pf.apply(journal)
    pf.apply(journal)
    assert saved(fresh_ns).count(f"-j {pf.chain}") == 2  # one per family
    assert not pf.revert(journal)
    assert saved(fresh_ns) == ""


def test_undo_is_idempotent_and_survives_half_applied(journal, tag, fresh_ns):
    undo = undo_function("iptables")
    pf = PacketFilter(RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    # Nothing applied: the record was fsynced, then the run died.
    entry = pf.record(journal, iptables.undo_record(
        fresh_ns, "filter", "OUTPUT", pf.chain, tag, iptables.snapshot(fresh_ns, iptables.FAMILIES)))
    journal.undo(entry)
    assert saved(fresh_ns) == ""
    # Half applied: the IPv4 batch landed, the IPv6 one never ran.
    entry = pf.record(journal, iptables.undo_record(
        fresh_ns, "filter", "OUTPUT", pf.chain, tag, iptables.snapshot(fresh_ns, iptables.FAMILIES)))
    iptables.restore(fresh_ns, "ipv4", pf.render()["ipv4"])
    assert pf.chain in saved(fresh_ns)
    journal.undo(entry)
    assert saved(fresh_ns) == ""
    undo(entry.undo)  # and once more after it was undone
    assert saved(fresh_ns) == ""


def test_recover_from_the_journal_on_disk(journal, tag, fresh_ns):
    pf = applied(journal, RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    assert pf.chain in saved(fresh_ns)
    on_disk = Journal.read(journal.path)  # as `chaos recover` sees it after a crash
    assert not on_disk.undo_entries(on_disk.pending())
    assert saved(fresh_ns) == ""
    pf.revert(journal)  # the live run's revert afterwards is a no-op
    assert saved(fresh_ns) == ""


def test_cleanup_by_tag_without_a_journal(journal, tag, fresh_ns):
    pf = applied(journal, RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    removed = iptables.cleanup(fresh_ns, tag)
    assert sorted(removed) == [f"ipv4/filter/{pf.chain}", f"ipv6/filter/{pf.chain}"]
    assert pf.chain not in saved(fresh_ns)


def test_undo_after_the_namespace_is_gone(journal, tag):
    name = f"chaos-pfy-{secrets.token_hex(3)}"
    sh(None, "ip", "netns", "add", name)
    try:
        pf = applied(journal, RULES, netns=name, tag=tag, hook="OUTPUT")
    finally:
        sh(None, "ip", "netns", "del", name)
    assert not pf.revert(journal)
    assert not Path("/run/netns", name).exists()


def test_scratch_revert_removes_the_filter_and_reads_nothing_first(journal, tag, fresh_ns):
    """In a namespace the run owns the revert is one batch: the chain and its jump go, the
    table iptables-nft made appear may stay (it goes with the namespace)."""
    pf = PacketFilter(RULES, netns=fresh_ns, tag=tag, hook="OUTPUT", scratch=True)
    pf.apply(journal)
    assert saved(fresh_ns).count(f"-j {pf.chain}") == 2  # one jump per family
    assert all(info["table_existed"] for info in pf.entries[-1].undo["families"].values())
    assert not pf.revert(journal)
    assert pf.chain not in saved(fresh_ns)
    pf.apply(journal)  # and again, as a flap does
    assert saved(fresh_ns).count(f"-j {pf.chain}") == 2
    assert not pf.revert(journal)
    assert pf.chain not in saved(fresh_ns)


# -- deleting through libnftables (chaos.injectors.nft) --------------------------------------
@pytest.mark.parametrize("scratch, others", [(True, False), (False, False), (False, True)],
                         ids=["scratch", "exact-new-table", "exact-shared-table"])
def test_revert_spawns_no_process_with_nf_tables(journal, tag, fresh_ns, monkeypatch, scratch,
                                                 others):
    """A deleting process waits for the kernel as it exits (docs/benchmarks.md): the revert of
    what was applied as recorded goes through libnftables, in this process; the exact path
    too, whether the table appeared with the filter (dropped whole) or held others' rules."""
    if others:
        sh(fresh_ns, "iptables", "-A", "INPUT", "-p", "udp", "--dport", "7", "-j", "ACCEPT")
        sh(fresh_ns, "ip6tables", "-A", "INPUT", "-p", "udp", "--dport", "7", "-j", "ACCEPT")
    before = saved(fresh_ns)
    pf = PacketFilter(RULES, netns=fresh_ns, tag=tag, hook="OUTPUT", scratch=scratch)
    pf.apply(journal)

    def no_process(netns, argv, stdin=None):
        raise AssertionError(f"revert started {argv}")

    monkeypatch.setattr(iptables, "run", no_process)
    assert not pf.revert(journal)
    monkeypatch.undo()
    nft.settle()
    assert pf.chain not in saved(fresh_ns)
    if not scratch:
        assert saved(fresh_ns) == before


def test_nft_removal_is_all_or_nothing_then_falls_back(journal, tag, fresh_ns):
    """A jump into our chain from elsewhere (by hand) makes the one transaction fail as a
    whole; the removal then works from what iptables-save shows and leaves no trace."""
    before = saved(fresh_ns)
    pf = applied(journal, RULES, netns=fresh_ns, tag=tag, hook="OUTPUT")
    sh(fresh_ns, "iptables", "-A", "INPUT", "-j", pf.chain)
    assert not nft.remove_chain(fresh_ns, "ip", "filter", "OUTPUT", pf.chain)
    assert saved(fresh_ns).count(f"-j {pf.chain}") == 3  # nothing of it was applied
    assert not pf.revert(journal)
    assert saved(fresh_ns) == before


def test_a_chain_name_nft_cannot_spell_is_removed_by_iptables(journal, tag, fresh_ns):
    pf = PacketFilter(RULES, netns=fresh_ns, tag=tag, hook="OUTPUT", name="a:b", scratch=True)
    pf.apply(journal)
    assert ":" in pf.chain and not nft.remove_chain(fresh_ns, "ip", "filter", "OUTPUT", pf.chain)
    assert not pf.revert(journal)
    assert pf.chain not in saved(fresh_ns)


def test_rule_handles_match_whole_chain_names():
    listing = ("table ip filter {\n\tchain OUTPUT { # handle 1\n"
               "\t\tcounter jump x-pf10 # handle 7\n\t\tcounter jump x-pf1 # handle 8\n"
               "\t\tip daddr 198.18.0.1 goto x-pf1 # handle 9\n\t}\n}\n")
    assert nft.rule_handles(listing, "x-pf1") == [8, 9]
    assert nft.rule_handles(listing, "x-pf") == []


LISTING = """table ip filter { # handle 1
	chain OUTPUT { # handle 1
		type filter hook output priority filter; policy accept;
		 counter packets 0 bytes 0 jump x-pf1 # handle 6
	}
	chain x-pf1 { # handle 4
		ip daddr 198.18.0.1 counter packets 0 bytes 0 drop # handle 5
	}
}"""  # noqa: E101 (nft's listing: tabs, and a space before a rule iptables-nft added)


@pytest.mark.parametrize("change, expected", [
    (lambda t: t, True),
    (lambda t: t.replace("jump x-pf1 # handle 6", "jump x-pf1 # handle 6\n\t\t accept # handle 9"),
     None),  # someone else's rule beside our jump
    (lambda t: t.replace("policy accept;", "policy drop;"), None),
    (lambda t: t.replace("\n}", "\n\tset s { # handle 9\n\t\ttype ipv4_addr\n\t}\n}"), None),
    (lambda t: t.replace("x-pf1 {", "x-pf2 {"), None),  # a chain that is not ours
], ids=["ours", "other-rule", "policy", "set", "other-chain"])
def test_a_table_is_dropped_whole_only_when_it_holds_nothing_else(change, expected):
    assert nft.only_ours(change(LISTING), "x-pf1") is expected


def test_a_table_is_dropped_whole_whatever_its_chain_is_called(journal, tag, fresh_ns):
    """Exact revert of a filter whose chain name nft cannot spell in a command: the table it
    made appear still goes, read and dropped in this process."""
    pf = PacketFilter(RULES, netns=fresh_ns, tag=tag, hook="OUTPUT", name="a:b")
    pf.apply(journal)
    assert nft.drop_table_if_only(fresh_ns, "ip", "filter", pf.chain) is True
    assert nft.drop_table_if_only(fresh_ns, "ip6", "filter", pf.chain) is True
    nft.settle()
    assert saved(fresh_ns) == ""
    assert not pf.revert(journal)
