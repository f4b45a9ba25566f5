"""The Vagrant VM: the Vagrantfile validates, and it is provisioned by scripts/setup, the same
script README.md and .ci/run use, so the three cannot drift.

Vagrant comes from Debian 12 (`vagrant` 2.3.4 and `vagrant-libvirt`, installed here when
missing). `vagrant validate` needs a provider plugin: with vagrant-libvirt it validates the
libvirt block for real (a misspelt setting fails, see below). VirtualBox is not packaged in
Debian 12, so its block is checked by Vagrant's parser only, not by the provider.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VAGRANTFILE = ROOT / "Vagrantfile"


def _candidate(package: str) -> bool:
    out = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    return bool(match) and match[1] != "(none)"


@pytest.fixture(scope="module")
def vagrant() -> str:
    """The vagrant binary, installed from Debian (with vagrant-libvirt) when missing."""
    wanted = ["vagrant", "vagrant-libvirt"]
    missing = [p for p in wanted if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode]
    if missing:
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip("vagrant is not installed and cannot be installed here (needs apt-get as root)")
        if not all(_candidate(p) for p in missing):
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300)
        if not all(_candidate(p) for p in missing):
            pytest.skip(f"Debian offers no package for {', '.join(missing)} here (apt-cache policy)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return shutil.which("vagrant")


OPT_INS = ("CHAOS_VAGRANT_TCG", "CHAOS_VAGRANT_NETWORK")


def _validate(vagrant: str, folder: Path, tmp_path: Path,
              extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # Vagrant's own state (~/.vagrant.d, ./.vagrant) goes to the test's folder, not the repo.
    base = {k: v for k, v in os.environ.items() if k not in OPT_INS}
    env = {**base, **(extra or {}), "VAGRANT_CWD": str(folder), "VAGRANT_HOME": str(tmp_path / "home"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_DEFAULT_PROVIDER": "libvirt",
           "VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
    return subprocess.run([vagrant, "validate"], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL)


def test_vagrantfile_validates(vagrant, tmp_path):
    result = _validate(vagrant, ROOT, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout
    assert not (ROOT / ".vagrant").exists()


def test_a_misspelt_provider_setting_fails_validation(vagrant, tmp_path):
    broken = tmp_path / "vm"
    broken.mkdir()
    text = VAGRANTFILE.read_text()
    assert "lv.memory = " in text
    (broken / "Vagrantfile").write_text(text.replace("lv.memory = ", "lv.memroy = "))
    result = _validate(vagrant, broken, tmp_path)
    assert result.returncode != 0
    assert "memroy" in result.stdout + result.stderr


@pytest.mark.parametrize("variable, value, setting", [
    ("CHAOS_VAGRANT_TCG", "1", "lv.driver = "),
    ("CHAOS_VAGRANT_NETWORK", "198.18.200.0/24", "lv.management_network_address = "),
])
def test_the_opt_ins_for_hosts_without_kvm_or_vagrant_cloud(vagrant, tmp_path, variable, value, setting):
    """The settings for a host without KVM (qemu's TCG) and for a management network of the
    user's choice apply only when their variable is set: a misspelt one fails validation
    with the variable and is never read without it; the shipped file validates with it."""
    assert _validate(vagrant, ROOT, tmp_path, {variable: value}).returncode == 0
    broken = tmp_path / "vm"
    broken.mkdir()
    text = VAGRANTFILE.read_text()
    assert setting in text
    (broken / "Vagrantfile").write_text(text.replace(setting, setting.replace("lv.", "lv.x_")))
    result = _validate(vagrant, broken, tmp_path, {variable: value})
    assert result.returncode != 0 and "x_" in result.stdout + result.stderr
    assert _validate(vagrant, broken, tmp_path).returncode == 0


def test_the_box_script_refuses_a_user_who_is_not_root(tmp_path):
    script = ROOT / "scripts" / "vagrant-box"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    if os.geteuid() != 0:
        cmd = ["bash", str(script), str(tmp_path / "x.box")]
    else:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "bash", str(script), str(tmp_path / "x.box")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 2
    assert "run as root" in result.stderr
    assert not (tmp_path / "x.box").exists()


def test_the_vm_is_debian_12_provisioned_by_scripts_setup():
    text = VAGRANTFILE.read_text()
    assert re.search(r'config\.vm\.box = "debian/bookworm64"', text)  # Debian 12
    provision = re.findall(r'config\.vm\.provision "shell".*?inline: "([^"]+)"', text, re.S)
    assert provision == ["cd /opt/chaos && bash scripts/setup"]
    assert re.search(r'synced_folder "\.", "/opt/chaos", type: "rsync"', text)
    for provider in ("libvirt", "virtualbox"):
        assert f'config.vm.provider "{provider}"' in text
    # README and CI run the very same script.
    assert "bash scripts/setup" in (ROOT / "README.md").read_text()
    assert "bash scripts/setup" in (ROOT / ".ci" / "run").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "setup")]).returncode == 0


def test_the_vms_documented_commands_name_files_that_exist():
    """`sudo chaos run --host /opt/chaos/scenarios/...` in the Vagrantfile and the docs: each
    /opt/chaos path is the project's (rsynced there), so it must exist here."""
    texts = [VAGRANTFILE.read_text(), (ROOT / "docs" / "host-drills.md").read_text(),
             (ROOT / "docs" / "reliability.md").read_text()]
    paths = {m for text in texts for m in re.findall(r"/opt/chaos/([\w./-]+)", text)}
    assert "scenarios/host/dockerhub-dzone-drill.yaml" in paths, paths
    assert "scenarios/host/baseline.json" in paths, paths
    missing = [p for p in paths if not (ROOT / p.rstrip(".")).exists()]
    assert missing == [], missing
    assert "scenarios/..." not in VAGRANTFILE.read_text()  # a placeholder is not a command
