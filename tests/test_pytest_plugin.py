"""The pytest plugin, tested with pytester: fixtures, marker, scenario files as tests."""

from __future__ import annotations

import json

import pytest

from conftest import SCENARIOS, assert_same, snapshot

pytest_plugins = ["pytester"]


def runs_clean(suite, **outcomes) -> None:
    """The suite ends with these outcomes and the machine exactly as it was."""
    before = snapshot()
    suite.runpytest_subprocess().assert_outcomes(**outcomes)
    assert_same(before, snapshot())


@pytest.fixture(autouse=True)
def _this_checkout(monkeypatch):
    """pytester's subprocesses run in a temporary folder: without this they would import
    the chaos installed in the venv, not the code under test."""
    import os

    from conftest import ROOT

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.fixture
def suite(pytester, state_dir):
    pytester.makeini(f"[pytest]\naddopts = -p no:cacheprovider --chaos-state-dir={state_dir}\n")
    return pytester


def test_sandbox_fixture_serves_runs_and_blackholes(suite):
    suite.makepyfile("""
        def test_registry(chaos_sandbox, blackhole):
            chaos_sandbox.serve("registry.test", body="hello\\n")
            code, out, _ = chaos_sandbox.run("curl -sS -m 3 http://registry.test/")
            assert code == 0 and out == "hello\\n"
            cut = blackhole("registry.test", kind="unreachable")
            code, _, err = chaos_sandbox.run("curl -sS -m 3 http://registry.test/")
            assert code == 7 and "Couldn't connect" in err
            cut.revert()
            assert chaos_sandbox.run("curl -sS -m 3 http://registry.test/")[0] == 0
    """)
    runs_clean(suite, passed=1)


def test_teardown_after_a_failing_test_leaves_nothing(suite):
    suite.makepyfile("""
        def test_fails(chaos_sandbox, blackhole):
            chaos_sandbox.serve("registry.test")
            blackhole("registry.test")
            assert False, "the test body fails with the fault on"
    """)
    before = snapshot()
    result = suite.runpytest_subprocess()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the test body fails with the fault on*"])
    assert_same(before, snapshot())


def test_teardown_after_keyboard_interrupt_leaves_nothing(suite):
    suite.makepyfile("""
        def test_interrupted(chaos_sandbox, blackhole):
            chaos_sandbox.serve("registry.test")
            blackhole("registry.test")
            raise KeyboardInterrupt
    """)
    before = snapshot()
    result = suite.runpytest_subprocess()
    assert result.ret == 2  # pytest's "interrupted"
    assert_same(before, snapshot())


def test_marker_applies_the_scenario_around_the_test(suite):
    # The scenario's before, during and after probes all run around the body: "registry
    # answers again" after teardown proves the hosts entry went (else a teardown error).
    suite.makepyfile(f"""
        import pytest

        @pytest.mark.chaos_scenario("{SCENARIOS / 'dockerhub-hosts-entry.yaml'}")
        def test_with_hosts_entry(chaos_sandbox, request):
            code, _, err = chaos_sandbox.run("curl -sS -m 3 http://registry-1.docker.io/v2/")
            assert code == 7, err
            code, out, _ = chaos_sandbox.run("curl -sS -m 3 http://mirror.lab.test/v2/")
            assert code == 0 and "mirror" in out
            assert request.node.chaos_result.probes[0].phase == "before"
    """)
    suite.makeconftest(PROBES_AFTER_TEARDOWN)
    before = snapshot()
    result = suite.runpytest_subprocess("-rA")
    result.assert_outcomes(passed=1)
    assert_same(before, snapshot())
    assert json.loads((suite.path / "probes.json").read_text()) == [
        ["before", "registry answers", "passed"],
        ["during", "registry refused at once", "passed"],
        ["during", "mirror still answers", "passed"],
        ["after", "registry answers again", "passed"]]


PROBES_AFTER_TEARDOWN = """
import json

import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield  # the marker's teardown: faults reverted, after probes run
    probes = [[p.phase, p.name, p.verdict] for p in item.chaos_result.probes]
    with open("probes.json", "w") as f:
        json.dump(probes, f)
"""


FLAPPING = """\
name: flapping-registry
description: the registry's route flaps inside a window while the test body runs
seed: 42
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
    kind: unreachable
    window: {after: 0.2s, for: 1.2s}
    flap: {period: 0.4s, duty: 0.5}
expect:
  during:
    - name: a probe alongside the body
      run: sleep 0.3
  after:
    - name: registry answers after the test
      http: http://registry.test/
"""


def test_marker_switches_windows_and_flaps_on_schedule(suite):
    (suite.path / "flapping.yaml").write_text(FLAPPING)
    suite.makepyfile("""
        import time

        import pytest

        @pytest.mark.chaos_scenario("flapping.yaml")
        def test_flapping(chaos_sandbox, request):
            assert chaos_sandbox.session.seed == 42
            chaos_sandbox.serve("other.test")  # a name the scenario does not touch
            codes, t0 = [], time.monotonic()
            while time.monotonic() - t0 < 2.0:
                codes.append(chaos_sandbox.run("curl -sS -m 1 -o /dev/null http://registry.test/")[0])
                assert chaos_sandbox.run("curl -sS -m 1 -o /dev/null http://other.test/")[0] == 0
            assert 0 in codes and 7 in codes, codes  # answered and cut, in turn
            switches = [e for e in request.node.chaos_result.events if e["kind"] == "fault"]
            # window 0.2..1.4 s, flap 0.4 s at half duty: on at 0.2, 0.6, 1.0; off at 0.4, 0.8, 1.2
            assert [e["state"] for e in switches] == ["on", "off"] * 3, switches
            start = next(e["t"] for e in request.node.chaos_result.events
                         if e.get("phase") == "during")
            dues = [round(e["due"] - start, 1) for e in switches]
            assert dues == [0.2, 0.4, 0.6, 0.8, 1.0, 1.2], dues
    """)
    before = snapshot()
    result = suite.runpytest_subprocess("-rA")
    result.assert_outcomes(passed=1)
    assert_same(before, snapshot())


REFUSED_STEADY_STATE = """\
name: registry-must-answer-first
description: the steady state needs a server nobody serves
faults:
  - type: route-blackhole
    destinations: [198.18.1.99]
expect:
  before:
    - name: nothing listens there
      run: curl -sS -m 1 http://198.18.1.99/
"""

AFTER_FAILS = """\
name: after-never-holds
description: the after probe wants the fault still on
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
expect:
  after:
    - name: registry still cut
      run: curl -sS -m 1 http://registry.test/
      exit: 7
"""

LAB = """\
name: lab-under-a-marker
description: the marker runs in a sandbox
lab: registry
faults:
  - type: route-blackhole
    destinations: [cache.chaos.test]
"""


def test_marker_reports_failed_steady_states_and_refuses_labs(suite):
    (suite.path / "before.yaml").write_text(REFUSED_STEADY_STATE)
    (suite.path / "after.yaml").write_text(AFTER_FAILS)
    (suite.path / "lab.yaml").write_text(LAB)
    suite.makepyfile("""
        import pytest

        @pytest.mark.chaos_scenario("before.yaml")
        def test_before_fails():
            open("body-ran", "w").close()

        @pytest.mark.chaos_scenario("after.yaml")
        def test_after_fails(chaos_sandbox):
            assert chaos_sandbox.run("curl -sS -m 1 http://registry.test/")[0] == 7

        @pytest.mark.chaos_scenario("lab.yaml")
        def test_lab():
            pass
    """)
    before = snapshot()
    result = suite.runpytest_subprocess()
    result.assert_outcomes(passed=1, errors=3)
    assert not (suite.path / "body-ran").exists()
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_before_fails*",
        "*scenario registry-must-answer-first (*before.yaml): the steady state did not hold "
        "before the test: nothing injected, the test body did not run",
        "*before: nothing listens there [[]failed, *s[]]",
        "*exit: expected 0, observed *",
    ])
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_after_fails*",
        "*scenario after-never-holds (*after.yaml): expectations failed around the test",
        "*after: registry still cut [[]failed, *s[]]",
        "*exit: expected 7, observed 0*",
    ])
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_lab*",
        "*chaos_scenario marker: *lab.yaml:3:*: lab: the chaos_scenario marker runs in a "
        "sandbox, not the registry lab*",
    ])
    assert_same(before, snapshot())


def test_sigint_mid_test_reverts_the_marker_and_fixtures(suite):
    """A real Ctrl-C (SIGINT to pytest) while a flapping scenario's scheduler switches and a
    fixture's fault is on: pytest stops, tears the fixtures down, nothing is left behind."""
    import signal
    import subprocess
    import sys
    import time

    (suite.path / "flapping.yaml").write_text(FLAPPING)
    suite.makepyfile("""
        import time

        import pytest

        @pytest.mark.chaos_scenario("flapping.yaml")
        def test_interrupted(chaos_sandbox, blackhole):
            chaos_sandbox.serve("other.test")
            blackhole("other.test")
            open("ready", "w").close()
            time.sleep(60)
    """)
    before = snapshot()
    proc = subprocess.Popen([sys.executable, "-m", "pytest"], cwd=suite.path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (suite.path / "ready").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the test never started: " + (proc.communicate(timeout=60)[0]
                                                           if proc.poll() is not None else ""))
            time.sleep(0.05)
        time.sleep(0.5)  # inside the flap window
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, out  # pytest's "interrupted"
    assert "KeyboardInterrupt" in out, out
    assert_same(before, snapshot())


def test_scenario_files_are_collected_as_tests(suite):
    folder = suite.mkdir("drills")
    (folder / "good.yaml").write_text((SCENARIOS / "dockerhub-route-blackhole.yaml").read_text())
    (folder / "bad.yaml").write_text("""\
name: registry-should-answer
description: expects the registry to answer during a blackhole, which it cannot
serve:
  - name: registry.test
faults:
  - type: route-blackhole
    destinations: [registry.test]
expect:
  during:
    - name: registry answers
      http: http://registry.test/
      within: 1s
""")
    result = suite.runpytest_subprocess("--chaos-scenarios", str(folder), str(folder))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*scenario registry-should-answer: failed (exit 1)*",
        "*during: registry answers [[]failed*",
        "*status: expected 200, observed no answer (unreachable*",
    ])


def test_scenario_item_failure_shows_why_a_probe_errored(suite):
    folder = suite.mkdir("drills")
    (folder / "lab_probe.yaml").write_text("""\
name: pulls-without-the-lab
description: a lab probe in a run that has no lab cannot run at all
serve:
  - name: registry.test
expect:
  before:
    - name: the image pulls
      docker_pull: library/busybox:1
""")
    result = suite.runpytest_subprocess("--chaos-scenarios", str(folder))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*scenario pulls-without-the-lab: failed (exit 1)*",
        "*before: the image pulls [[]error, [0-9]*.[0-9][0-9]s[]]",
        "*error: RuntimeError: docker_pull needs `lab: registry`*",
    ])


QUICK_SCENARIO = """\
name: registry-answers
description: one server, no fault, one probe
serve:
  - name: registry.test
expect:
  before:
    - name: registry answers
      http: http://registry.test/
"""


def _project_with_drills(pytester, state_dir, ini_extra: str = ""):
    """testpaths = tests (one plain test) and a drills/ folder pytest would not walk."""
    pytester.makeini(f"[pytest]\naddopts = -p no:cacheprovider --chaos-state-dir={state_dir}\n"
                     f"testpaths = tests\n{ini_extra}")
    pytester.mkdir("tests")
    (pytester.path / "tests" / "test_plain.py").write_text("def test_plain():\n    pass\n")
    pytester.mkdir("drills")
    (pytester.path / "drills" / "quick.yaml").write_text(QUICK_SCENARIO)


def test_chaos_scenarios_option_alone_collects_the_folder(pytester, state_dir):
    _project_with_drills(pytester, state_dir)
    result = pytester.runpytest_subprocess("--chaos-scenarios", "drills", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*drills/quick.yaml::quick PASSED*"])


def test_chaos_scenarios_ini_setting_alone_collects_the_folder(pytester, state_dir):
    _project_with_drills(pytester, state_dir, "chaos_scenarios = drills\n")
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*drills/quick.yaml::quick PASSED*"])
    # Paths on the command line win over the ini folders, as over testpaths.
    pytester.runpytest_subprocess("tests/test_plain.py").assert_outcomes(passed=1)


def test_chaos_scenario_fixture_returns_the_result(suite):
    suite.makepyfile(f"""
        def test_run(chaos_scenario):
            result = chaos_scenario("{SCENARIOS / 'dockerhub-route-blackhole.yaml'}")
            assert result.status == "passed"
            assert [p.verdict for p in result.probes] == ["passed"] * 5
    """)
    suite.runpytest_subprocess().assert_outcomes(passed=1)


def test_example_suite_catches_the_client_without_retries(pytester, state_dir):
    from conftest import ROOT

    pytester.makeini(f"[pytest]\naddopts = -p no:cacheprovider --chaos-state-dir={state_dir}\n")
    result = pytester.runpytest_subprocess(str(ROOT / "examples" / "pytest"), "--rootdir", str(ROOT))
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*FAILED*test_naive_client_survives_a_flaky_edge*"])


def test_fake_dns_and_http_faults_fixtures(suite):
    suite.makepyfile("""
        def test_dns(chaos_sandbox, fake_dns):
            chaos_sandbox.serve("registry.test")
            assert chaos_sandbox.run("curl -sS -m 3 http://registry.test/")[0] == 0
            rule = fake_dns.fail("registry.test", answer="servfail")
            code, _, err = chaos_sandbox.run("curl -sS -m 3 http://registry.test/")
            assert code == 6 and "Could not resolve host" in err
            assert any(q["name"] == "registry.test" for q in fake_dns.queries)
            rule.revert()
            assert chaos_sandbox.run("curl -sS -m 3 http://registry.test/")[0] == 0

        def test_http(chaos_sandbox, http_faults):
            chaos_sandbox.serve("cdn.test")
            http_faults.error("cdn.test", status=522)
            code, out, _ = chaos_sandbox.run("curl -sS -m 3 -o /dev/null -w '%{http_code}' http://cdn.test/x")
            assert out == "522"
            assert [r["status"] for r in http_faults.requests] == [522]
    """)
    runs_clean(suite, passed=2)


def test_a_failed_test_shows_the_tails_of_the_runs_logs(suite):
    suite.makepyfile("""
        def test_fails(chaos_sandbox, http_faults):
            chaos_sandbox.serve("cdn.test")
            http_faults.error("cdn.test", status=522)
            chaos_sandbox.run("curl -sS -m 3 -o /dev/null http://cdn.test/from-the-failed-test")
            assert False

        def test_passes(chaos_sandbox, http_faults):
            chaos_sandbox.serve("cdn.test")
            http_faults.error("cdn.test", status=522)
            chaos_sandbox.run("curl -sS -m 3 -o /dev/null http://cdn.test/from-the-passed-test")
    """)
    before = snapshot()
    result = suite.runpytest_subprocess("-rA")
    result.assert_outcomes(failed=1, passed=1)
    out = result.stdout.str()
    # the proxy's request log, with the failed test's request and the status it was given
    result.stdout.fnmatch_lines(["*chaos log http-proxy/requests.jsonl*",
                                 '*"/from-the-failed-test"*522*'])
    assert "from-the-passed-test" not in out  # a passing test shows none
    assert_same(before, snapshot())


def test_tcp_faults_fixture(suite):
    suite.makepyfile("""
        def test_hang_then_release(chaos_sandbox, tcp_faults):
            chaos_sandbox.serve("registry.test")
            held = tcp_faults.hang("registry.test", at="accept")
            code, _, err = chaos_sandbox.run("curl -sS -m 1 http://registry.test/")
            assert code == 28, err
            held.revert()
            assert chaos_sandbox.run("curl -sS -m 2 http://registry.test/")[0] == 0
            held_ones = [c for c in tcp_faults.connections if c["toxics"]]
            assert held_ones and held_ones[0]["destination"].endswith(":80")
    """)
    suite.runpytest_subprocess().assert_outcomes(passed=1)


def test_ini_settings_for_state_dir_and_lab(pytester, state_dir):
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nchaos_state_dir = journals\n"
                     "chaos_lab_warm =\n    library/alpine:3\n    library/busybox:1\n"
                     "chaos_lab_no_dockerd = true\n")
    pytester.makepyfile("""
        from chaos.pytest_plugin import _lab_spec

        def test_lab_spec(request):
            spec = _lab_spec(request.config)
            assert [w.image for w in spec.warm] == ["library/alpine:3", "library/busybox:1"] and not spec.dockerd

        def test_journal_folder(chaos_sandbox):
            assert chaos_sandbox.run("true")[0] == 0
            with open("run-dirs.txt", "a") as f:  # the run's folder goes when it ends clean
                f.write(f"{chaos_sandbox.session.journal.run_dir.parent.parent}\\n")
    """)
    pytester.runpytest_subprocess().assert_outcomes(passed=2)
    # The command line wins over the ini setting, which wins over $CHAOS_STATE_DIR.
    other = pytester.path / "elsewhere"
    pytester.runpytest_subprocess("--chaos-state-dir", str(other), "-k", "journal").assert_outcomes(passed=1)
    used = (pytester.path / "run-dirs.txt").read_text().split()
    assert used == [str(pytester.path / "journals"), str(other)]


def test_serving_later_keeps_hosts_faults_on(suite):
    suite.makepyfile("""
        def addresses(sandbox, name):
            code, out, err = sandbox.run(f"getent ahostsv4 {name}")
            return sorted({line.split()[0] for line in out.splitlines()}) if code == 0 else err

        def test_hosts_blocks_survive_serve(chaos_sandbox):
            registry = chaos_sandbox.serve("registry.test", body="registry\\n")
            fault = chaos_sandbox.inject({"type": "hosts-entry", "names": ["registry.test", "late.test"]})
            chaos_sandbox.serve("mirror.test", body="mirror\\n")
            late = chaos_sandbox.serve("late.test", body="late\\n")
            assert addresses(chaos_sandbox, "registry.test") == ["127.0.0.1"]
            code, _, err = chaos_sandbox.run("curl -sS -m 3 http://registry.test/")
            assert code == 7, err
            assert chaos_sandbox.run("curl -sS -m 3 http://mirror.test/")[1] == "mirror\\n"
            assert addresses(chaos_sandbox, "late.test") == ["127.0.0.1"]  # the fault wins
            fault.revert()  # brings back the served names' own lines
            assert addresses(chaos_sandbox, "registry.test") == [registry]
            assert addresses(chaos_sandbox, "late.test") == [late]
            assert chaos_sandbox.run("curl -sS -m 3 http://late.test/")[1] == "late\\n"
    """)
    runs_clean(suite, passed=1)


def test_serving_after_the_fake_dns_started(suite):
    suite.makepyfile("""
        def test_new_name_in_the_zone(chaos_sandbox, fake_dns):
            chaos_sandbox.serve("registry.test", body="registry\\n")
            fake_dns.fail("gone.test", answer="nxdomain")  # starts the fake DNS server
            chaos_sandbox.inject({"type": "hosts-entry", "names": ["registry.test"]})
            late = chaos_sandbox.serve("late.test", body="late\\n")
            code, out, err = chaos_sandbox.run("dig +short +time=1 +tries=1 late.test A")
            assert code == 0 and out.split() == [late], (out, err)
            code, out, err = chaos_sandbox.run("curl -sS -m 3 http://late.test/")
            assert code == 0 and out == "late\\n", err
            assert any(q["name"] == "late.test" and q["answer"] == "zone" for q in fake_dns.queries)
            code, out, _ = chaos_sandbox.run("getent hosts registry.test")
            assert out.split()[:1] == ["127.0.0.1"]  # the hosts-entry block is still there
    """)
    runs_clean(suite, passed=1)


def test_registry_lab_fixture_is_shared_and_reset(suite):
    from conftest import LAB_BINARIES, require_binaries

    require_binaries(*LAB_BINARIES)  # fails under CI=true
    suite.makepyfile("""
        def test_pull_through_the_cache(registry_lab):
            client = registry_lab.docker()
            client.images.pull("library/busybox", tag="1")
            assert registry_lab.requests("cache", path="/manifests/")

        def test_marks_reset_per_test(registry_lab):
            assert registry_lab.requests("cache") == []  # nothing yet in this test
            code, out, _ = registry_lab.run("getent hosts cache.chaos.test")
            assert code == 0 and "198.18.0.20" in out
    """)
    runs_clean(suite, passed=2)


def test_registry_lab_faults_end_with_the_test(suite):
    """What a test injects through registry_lab is on for that test only: the lab is shared
    by the session, its faults are not (the lab without its dockerd: light enough)."""
    import shutil

    if shutil.which("registry") is None and shutil.which("docker-registry") is None:
        pytest.skip("the lab needs docker-registry (scripts/setup)")
    suite.makepyfile("""
        CURL = "curl -sS -m 2 -o /dev/null -w '%{http_code}' https://cache.chaos.test/v2/"

        def test_1_cuts_the_cache(registry_lab):
            assert registry_lab.run(CURL)[0] == 0  # the lab answers
            registry_lab.inject({"type": "route-blackhole", "destinations": ["cache.chaos.test"],
                                 "kind": "unreachable"})
            code, _, err = registry_lab.run(CURL)
            assert code == 7, err

        def test_2_finds_it_back(registry_lab):
            code, out, err = registry_lab.run(CURL)
            assert code == 0, err
            assert "unreachable" not in registry_lab.run("ip route show table all")[1]
    """)
    before = snapshot()
    result = suite.runpytest_subprocess("--chaos-lab-no-dockerd", "-rA")
    result.assert_outcomes(passed=2)
    assert_same(before, snapshot())
