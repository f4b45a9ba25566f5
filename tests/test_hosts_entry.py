"""Two hosts-entry faults in one run: each has a block of its own, so one ending early (a
window) leaves the other on, and the hosts file comes back byte for byte.

Before the fix both used the run id as their tag: the second found "its" block already
there and did nothing, and the window's end removed the block both shared.
"""

from __future__ import annotations

from pathlib import Path

from conftest import assert_same, snapshot, write

# {a} stays on all through `during`; {b} is on for the first second only. The first probe
# sees both, the last ones (after the window) see {a} still redirected and {b} back.
TWO = """\
name: two-hosts-entries
description: two hosts-entry faults, one of them with a window that ends early
{serve}faults:
  - type: hosts-entry
    names: [{a}]
    address: 198.18.7.1
  - type: hosts-entry
    names: [{b}]
    address: 198.18.7.2
    window: {{after: 0s, for: 1s}}
expect:
  before:
    - run: cp /etc/hosts {copy}
  during:
    - name: both faults are on (the first)
      run: getent -s files hosts {a}
      stdout: {{contains: 198.18.7.1}}
    - name: both faults are on (the second)
      run: getent -s files hosts {b}
      stdout: {{contains: 198.18.7.2}}
    - run: sleep 1.5
    - name: after the window, the other fault's name still points at its address
      run: getent -s files hosts {a}
      stdout: {{contains: 198.18.7.1}}
    - name: and the windowed fault's name no longer does
      run: getent -s files hosts {b}
      exit: any
      stdout: {{not_contains: 198.18.7.2}}
  after:
    - name: the hosts file is byte for byte as before
      run: cmp /etc/hosts {copy}
"""


def test_two_hosts_entries_in_the_sandbox(chaos, tmp_path):
    copy = tmp_path / "hosts-before"
    text = TWO.format(serve="serve:\n  - name: a.test\n  - name: b.test\n",
                      a="a.test", b="b.test", copy=copy)
    result = chaos("run", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert b"a.test" in copy.read_bytes(), "the copy is not the sandbox's hosts file"


def test_two_hosts_entries_in_host_mode(chaos, tmp_path):
    before = snapshot()
    copy = tmp_path / "hosts-before"
    text = TWO.format(serve="", a="a.chaos-test.invalid", b="b.chaos-test.invalid", copy=copy)
    result = chaos("run", "--host", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert copy.read_bytes() == before["hosts"]
    assert Path("/etc/hosts").read_bytes() == before["hosts"]
    assert_same(before, snapshot())
