"""Host mode (--host): faults on this machine itself, restored byte for byte.

Only names under .invalid and addresses of 198.18.0.0/15 (and 2001:db8::/32, the IPv6
documentation range) are used, and no probe sends a packet off the machine: the route test
only checks that the kernel refuses the connection, the filter test talks to an address of
addresses it puts on lo.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import assert_same, snapshot, write

HOSTS = """\
name: host-hosts-entry
description: the DZone recipe on the machine's own /etc/hosts
faults:
  - type: hosts-entry
    names: [registry.chaos-test.invalid]
    address: 127.0.0.1
expect:
  before:
    - run: getent hosts registry.chaos-test.invalid
      exit: 2
  during:
    - run: getent hosts registry.chaos-test.invalid
      stdout: {contains: "127.0.0.1"}
  after:
    - run: getent hosts registry.chaos-test.invalid
      exit: 2
"""

ROUTE = """\
name: host-route
description: an unreachable route on the machine's own main table
faults:
  - type: route-blackhole
    destinations: [198.19.255.1/32]
    kind: unreachable
expect:
  during:
    - tcp: 198.19.255.1:80
      connect: unreachable
      within: 1s
"""


def test_host_hosts_entry_restores_etc_hosts_exactly(chaos, tmp_path):
    before = snapshot()
    result = chaos("run", "--host", str(write(tmp_path, HOSTS)))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


def test_host_hosts_entry_keeps_the_users_own_lines(chaos, tmp_path):
    hosts = Path("/etc/hosts")
    original = hosts.read_bytes()
    user_line = b"198.18.255.254 registry.chaos-test.invalid kept.chaos-test.invalid\n"
    hosts.write_bytes(original + user_line)
    try:
        text = HOSTS.replace("    - run: getent hosts registry.chaos-test.invalid\n      exit: 2\n",
                             "    - run: 'true'\n", 1)
        text = text.replace("  after:\n    - run: getent hosts registry.chaos-test.invalid\n      exit: 2\n",
                            "  after:\n    - run: getent hosts registry.chaos-test.invalid\n"
                            "      stdout: {contains: 198.18.255.254}\n")
        text = text.replace('      stdout: {contains: "127.0.0.1"}\n',
                            '      stdout: {contains: "127.0.0.1", not_contains: "198.18.255.254"}\n'
                            "    - run: getent hosts kept.chaos-test.invalid\n"
                            "      stdout: {contains: 198.18.255.254}\n")
        result = chaos("run", "--host", str(write(tmp_path, text)))
        assert result.returncode == 0, result.stdout
        assert hosts.read_bytes() == original + user_line
    finally:
        hosts.write_bytes(original)


def test_host_route_is_removed_again(chaos, tmp_path):
    before = snapshot()
    result = chaos("run", "--host", str(write(tmp_path, ROUTE)))
    assert result.returncode == 0, result.stdout
    assert_same(before, snapshot())


def test_host_mode_refuses_loopback_and_servers(chaos, tmp_path):
    loop = ROUTE.replace("198.19.255.1/32", "127.0.0.0/16")
    result = chaos("run", "--host", str(write(tmp_path, loop)))
    assert result.returncode == 2 and "overlaps host loopback" in result.stdout
    served = HOSTS.replace("faults:", "serve:\n  - name: x.test\nfaults:")
    result = chaos("run", "--host", str(write(tmp_path, served, "served.yaml")))
    assert result.returncode == 2 and "serve: `serve:` needs the sandbox" in result.stdout


def test_route_that_already_exists_is_refused_not_taken_over(chaos, tmp_path):
    import subprocess

    subprocess.run(["ip", "route", "add", "unreachable", "198.19.255.1/32"], check=True)
    try:
        result = chaos("run", "--host", str(write(tmp_path, ROUTE)))
        assert result.returncode == 3
        assert "already exists" in result.stdout
        shown = subprocess.run(["ip", "route", "show", "198.19.255.1/32"], capture_output=True, text=True).stdout
        assert "unreachable 198.19.255.1" in shown, "the user's route must survive the revert"
    finally:
        subprocess.run(["ip", "route", "del", "unreachable", "198.19.255.1/32"], check=False)


HOLD = HOSTS.replace("  after:", "    - run: sleep 30\n      within: 60s\n  after:")


def test_a_second_run_redirecting_the_same_name_is_told_which_run_holds_it(chaos, tmp_path, state_dir):
    """Two host-mode runs redirecting one name: the second is refused naming the first run
    and that it is alive, not told the name is "one of this machine's own names" because
    the first run's block maps it to 127.0.0.1 (issue #22)."""
    import json
    import os
    import signal
    import time

    from conftest import ROOT, chaos_cmd

    before = Path("/etc/hosts").read_bytes()
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    first = subprocess.Popen(chaos_cmd("run", "--host", str(write(tmp_path, HOLD, "first.yaml"))),
                             cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while b"registry.chaos-test.invalid" not in Path("/etc/hosts").read_bytes():
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read()
            time.sleep(0.05)
        (journal,) = (state_dir / "runs").glob("*/journal.jsonl")
        run_id = json.loads(journal.read_text().splitlines()[0])["run"]
        second = chaos("run", "--host", str(write(tmp_path, HOSTS, "second.yaml")))
        out = second.stdout + second.stderr
        assert second.returncode == 2, out
        assert "second.yaml:5:" in out and "faults[0].names[0]" in out, out
        assert f"already redirected in /etc/hosts by run {run_id} (still running, pid {first.pid})" in out, out
        assert "own names" not in out, out
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)
    assert first.returncode == 130
    assert Path("/etc/hosts").read_bytes() == before


FILTER = """\
name: host-packet-filter
description: port 80 of two addresses of this machine dropped by its own OUTPUT chain
faults:
  - type: packet-filter
    destinations: [198.19.255.1/32, "2001:db8:ffff::1/128"]
    ports: [80]
    action: drop
expect:
  before:
    - {tcp: "198.19.255.1:80", connect: refused}
    - {tcp: "[2001:db8:ffff::1]:80", connect: refused}
  during:
    - {tcp: "198.19.255.1:80", connect: timeout, connect_timeout: 1s}
    - {tcp: "[2001:db8:ffff::1]:80", connect: timeout, connect_timeout: 1s}
    - {name: another port is untouched, tcp: "198.19.255.1:81", connect: refused}
  after:
    - {tcp: "198.19.255.1:80", connect: refused}
    - {tcp: "[2001:db8:ffff::1]:80", connect: refused}
"""

# A rule of the machine's own that the run must leave exactly where it was.
USER_RULE = ["OUTPUT", "-d", "{}", "-m", "comment", "--comment", "chaos-test-user", "-j", "ACCEPT"]


def _saved(tool: str) -> str:
    # Byte for byte but for the "# Generated ... on <date>" lines.
    out = subprocess.run([tool], capture_output=True, text=True, check=True).stdout
    return "".join(line for line in out.splitlines(True) if not line.startswith("#"))


ADDRESSES = ("198.19.255.1/32", "2001:db8:ffff::1/128")


@pytest.fixture
def local_addresses():
    """The filter's two addresses on lo (nothing listens: the kernel refuses), and a rule of
    the user's in each family's OUTPUT. A filter table that only appeared with that rule
    goes again (iptables -D leaves it behind, empty)."""
    had = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    try:
        for addr in ADDRESSES:
            subprocess.run(["ip", "addr", "add", addr, "dev", "lo"], check=True)
        for tool, addr in (("iptables", "198.19.255.9/32"), ("ip6tables", "2001:db8:ffff::9/128")):
            subprocess.run([tool, "-A", *[a.format(addr) for a in USER_RULE]], check=True)
        yield
    finally:
        for tool, addr in (("iptables", "198.19.255.9/32"), ("ip6tables", "2001:db8:ffff::9/128")):
            subprocess.run([tool, "-D", *[a.format(addr) for a in USER_RULE]], check=False)
        for addr in ADDRESSES:
            subprocess.run(["ip", "addr", "del", addr, "dev", "lo"], check=False)
        for family, tool in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
            rules = subprocess.run([tool, "-t", "filter"], capture_output=True, text=True).stdout
            if f"table {family} filter\n" not in had and "\n-A " not in rules:
                subprocess.run(["nft", "delete", "table", family, "filter"], check=False)


@pytest.mark.parametrize("outcome", ["passed", "failed"])
def test_host_packet_filter_restores_iptables_exactly(chaos, tmp_path, local_addresses, outcome):
    text = FILTER
    if outcome == "failed":  # an expectation that cannot hold: the revert must not care
        text = text.replace('"198.19.255.1:80", connect: timeout', '"198.19.255.1:80", connect: ok')
    saved = {tool: _saved(tool) for tool in ("iptables-save", "ip6tables-save")}
    assert all("chaos-test-user" in text for text in saved.values())
    before = snapshot()
    result = chaos("run", "--host", str(write(tmp_path, text)))
    assert result.returncode == (0 if outcome == "passed" else 1), result.stdout
    if outcome == "failed":
        assert "connect: expected ok, observed timeout" in result.stdout
    for tool, text in saved.items():
        assert _saved(tool) == text, f"{tool} differs after the run"
    assert_same(before, snapshot())
