"""Bring your own cache: faults aimed at a running container (`container: NAME`).

A real dockerd runs containers in a namespace of the test's own (bridge 198.18.200.1/24,
pools in 198.19.0.0/16, no iptables rules), from images imported offline: a registry
container (Debian's docker-registry on busybox) that knows `upstream.test` through
--add-host, and an "upstream" container serving a file with busybox httpd. Faults go into
the registry container's namespace and /etc/hosts; what it sees is checked from inside it
(`docker exec`), and the namespace's routes and rules byte for byte from outside.
Needs root, dockerd, containerd, runc and docker-registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from chaos.errors import PlanError
from chaos.faults.dns import Dns
from chaos.faults.hosts_entry import HostsEntry
from chaos.faults.packet_filter import PacketFilter
from chaos.faults.route_blackhole import RouteBlackhole
from chaos.journal import Journal
from chaos.session import Session
from conftest import ROOT, chaos_cmd, write

NEEDED = ("ip", "nsenter", "unshare", "dockerd", "containerd", "runc", "docker-registry",
          "iptables-save")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, dockerd)"),
    pytest.mark.skipif(any(shutil.which(b) is None for b in NEEDED),
                       reason="missing: " + ", ".join(b for b in NEEDED if not shutil.which(b))),
]
BIP = "198.18.200.1/24"
MARKER = "chaos-lab/registry:1"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    from chaos.lab import netns
    from chaos.lab.dockerd import container_network, spawn_dockerd, wait_dockerd
    from chaos.lab.images import docker_import, registry_rootfs

    tag = f"ctr{os.getpid() % 100000}"
    journal = Journal.create(f"test-{tag}", base=tmp_path_factory.mktemp("state"))
    client, names = None, []
    try:
        netns.add(journal, f"chaos-{tag}-d")
        d = spawn_dockerd(journal, f"chaos-{tag}-d", tmp_path_factory.mktemp("dockerd"), tag=tag,
                          containers=container_network(BIP, ("198.19.0.0/16",)))
        wait_dockerd(d, 30)
        client = d.client()
        docker_import(client, registry_rootfs(), "chaos-lab/registry:1",
                      ["/bin/registry", "serve", "/etc/docker/registry/config.yml"])
        names = [f"up-{tag}", f"reg-{tag}"]
        up = client.containers.run("chaos-lab/registry:1", ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                                   name=names[0], detach=True)
        up.reload()
        up_ip = up.attrs["NetworkSettings"]["IPAddress"]
        reg = client.containers.run("chaos-lab/registry:1", name=names[1], detach=True,
                                    extra_hosts={"upstream.test": up_ip})
        reg.reload()
        yield SimpleNamespace(url=d.base_url, client=client, reg=reg, name=names[1], up_ip=up_ip,
                              hosts=Path(reg.attrs["HostsPath"]), pid=reg.attrs["State"]["Pid"])
    finally:
        for name in names:  # before dockerd stops: a container's shim would outlive it
            try:
                client.containers.get(name).remove(force=True)
            except Exception:  # never started, or gone already
                pass
        journal.rollback()
        journal.finish()


def sh(daemon, command: str, timeout: float = 10) -> tuple[int, str, float]:
    """Run in the registry container: (exit code, output, seconds)."""
    t0 = time.monotonic()
    code, out = daemon.reg.exec_run(["sh", "-c", command])
    return code, out.decode(errors="replace"), time.monotonic() - t0


def fetch(daemon, host: str):
    # busybox 1.35's `wget -T` segfaults (Debian 12): the applet timeout bounds it instead.
    return sh(daemon, f"timeout 5 wget -q -O - http://{host}:8080/chaos-image 2>&1")


def netstate(daemon) -> str:
    """Routes (every table) and iptables rules inside the container's namespace."""
    enter = ["nsenter", f"--net=/proc/{daemon.pid}/ns/net"]
    out = [subprocess.run(enter + argv, capture_output=True, text=True, timeout=20).stdout
           for argv in (["ip", "route", "show", "table", "all"], ["iptables-save"], ["ip6tables-save"])]
    return "\n".join(line for text in out for line in text.splitlines() if not line.startswith("#"))


def handles() -> set[str]:
    return {p.name for p in Path("/run/netns").iterdir() if "-k" in p.name}


def test_container_is_reachable_before_any_fault(daemon):
    assert daemon.up_ip.startswith("198.18.200."), daemon.up_ip  # never docker's 172.17/16
    code, out, _ = fetch(daemon, "upstream.test")
    assert (code, out.strip()) == (0, MARKER), out
    code, out, _ = sh(daemon, "timeout 5 wget -q -O - http://127.0.0.1:5000/v2/")
    assert code == 0 and out.strip() == "{}", out  # the registry itself answers


def test_faults_apply_in_the_container_and_revert(daemon, tmp_path):
    hosts_before, state_before = daemon.hosts.read_bytes(), netstate(daemon)
    session = Session(host_mode=True, docker_host=daemon.url, state_dir=tmp_path)
    faults = [HostsEntry(names=["upstream.test"], container=daemon.name),
              RouteBlackhole(destinations=[daemon.up_ip], kind="unreachable", container=daemon.name),
              PacketFilter(destinations=[daemon.up_ip], ports=[8080], action="reject-reset",
                           container=daemon.name)]
    switches = [session.plan(f, ("faults", i)) for i, f in enumerate(faults)]
    expected = ["Connection refused", "No route to host", "Connection refused"]
    with session:
        for switch, error in zip(switches, expected, strict=True):
            switch.apply(session.journal)
            handle = switch.injectors[0].target.handle
            assert (Path("/run/netns") / handle).exists()
            code, out, took = fetch(daemon, "upstream.test")
            assert code != 0 and error in out, (switch.fault.label(), out)
            assert took < 2.5, (switch.fault.label(), took)  # fails at once, no timeout
            if isinstance(switch.fault, HostsEntry):
                inside = sh(daemon, "cat /etc/hosts")[1]
                assert "127.0.0.1\tupstream.test" in inside
                tag = switch.injectors[-1].tag  # this fault's own block (run id + fault index)
                assert tag.startswith(session.run_id)
                assert f"#{tag}# {daemon.up_ip}\tupstream.test" in inside
            assert not switch.revert(session.journal)
            assert not (Path("/run/netns") / handle).exists()
            code, out, _ = fetch(daemon, "upstream.test")
            assert (code, out.strip()) == (0, MARKER), (switch.fault.label(), out)
    assert daemon.hosts.read_bytes() == hosts_before
    assert netstate(daemon) == state_before
    assert daemon.client.containers.get(daemon.name).status == "running"


def test_plan_refuses_missing_stopped_and_dns_targets(daemon, tmp_path):
    session = Session(host_mode=True, docker_host=daemon.url, state_dir=tmp_path)
    stopped = daemon.client.containers.create("chaos-lab/registry:1", name=f"{daemon.name}-off")
    try:
        cases = [(HostsEntry(names=["a.test"], container="no-such-container"),
                  "no container 'no-such-container'"),
                 (RouteBlackhole(destinations=["198.18.9.9"], container=stopped.name), "is not running"),
                 (Dns(names=["a.test"], answer="nxdomain", container=daemon.name), "use a hosts-entry fault")]
        for fault, message in cases:
            with pytest.raises(PlanError) as err:
                session.plan(fault, ("faults", 3))
            assert err.value.path == ("faults", 3, "container") and message in err.value.message
    finally:
        stopped.remove(force=True)
    assert not handles()  # planning changes nothing


def test_cli_names_the_line_of_a_missing_container(daemon, tmp_path, state_dir):
    path = write(tmp_path, "name: byo\nfaults:\n  - type: hosts-entry\n    names: [a.test]\n"
                           "    container: nope\n")
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    proc = subprocess.run(chaos_cmd("run", "--host", "--docker-host", daemon.url, str(path)),
                          capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert proc.returncode != 0
    assert f"{path}:5:" in proc.stdout + proc.stderr and "no container 'nope'" in proc.stdout + proc.stderr


CRASH = """\
name: byo-cache-crash
docker: {url}
faults:
  - type: hosts-entry
    names: [upstream.test]
    container: {name}
  - type: route-blackhole
    destinations: [{ip}]
    kind: unreachable
    container: {name}
  - type: packet-filter
    destinations: [{ip}]
    ports: [8080]
    action: reject-reset
    container: {name}
expect:
  during:
    - run: sleep 30
      within: 60s
"""


def _records(state_dir) -> list[dict]:
    return [json.loads(line) for path in (state_dir / "runs").glob("*/journal.jsonl")
            for line in path.read_text().splitlines() if line.strip()]


def test_sigkill_then_recover_cleans_the_container(daemon, tmp_path, state_dir):
    hosts_before, state_before = daemon.hosts.read_bytes(), netstate(daemon)
    path = write(tmp_path, CRASH.format(url=daemon.url, name=daemon.name, ip=daemon.up_ip))
    env = {**os.environ, "CHAOS_STATE_DIR": str(state_dir)}
    proc = subprocess.Popen(chaos_cmd("run", str(path)), cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        records = _records(state_dir) if (state_dir / "runs").is_dir() else []
        if sum(r.get("kind") == "fault" and r.get("state") == "on" for r in records) == 3 and \
                any("sleep 30" in r.get("what", "") for r in records):
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.1)
    else:
        raise AssertionError("the faults never came on")
    proc.kill()
    proc.wait()
    assert len(handles()) == 3
    assert daemon.hosts.read_bytes() != hosts_before
    left = netstate(daemon)
    assert f"unreachable {daemon.up_ip}" in left and "--reject-with tcp-reset" in left
    assert fetch(daemon, "upstream.test")[0] != 0  # still cut off: nobody reverted

    result = subprocess.run(chaos_cmd("recover"), capture_output=True, text=True, timeout=120,
                            env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "netns handle" in result.stdout and "recovered" in result.stdout
    assert not handles()
    assert daemon.hosts.read_bytes() == hosts_before
    assert netstate(daemon) == state_before
    code, out, _ = fetch(daemon, "upstream.test")
    assert (code, out.strip()) == (0, MARKER), out
