"""The pytest plugin, tested with pytester: fixtures, marker, scenario files as tests."""

from __future__ import annotations

import pytest

from conftest import SCENARIOS, assert_same, snapshot

pytest_plugins = ["pytester"]


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
    before = snapshot()
    suite.runpytest_subprocess().assert_outcomes(passed=1)
    assert_same(before, snapshot())


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
    suite.makepyfile(f"""
        import pytest

        @pytest.mark.chaos_scenario("{SCENARIOS / 'dockerhub-hosts-entry.yaml'}")
        def test_with_hosts_entry(chaos_sandbox):
            code, _, err = chaos_sandbox.run("curl -sS -m 3 http://registry-1.docker.io/v2/")
            assert code == 7, err
            code, out, _ = chaos_sandbox.run("curl -sS -m 3 http://mirror.lab.test/v2/")
            assert code == 0 and "mirror" in out
    """)
    suite.runpytest_subprocess().assert_outcomes(passed=1)


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
name: counts-lab-requests-without-the-lab
description: a lab probe in a run that has no lab cannot run at all
serve:
  - name: registry.test
expect:
  before:
    - name: upstream requests counted
      requests: upstream
      at_least: 1
""")
    result = suite.runpytest_subprocess("--chaos-scenarios", str(folder))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*scenario counts-lab-requests-without-the-lab: failed (exit 1)*",
        "*before: upstream requests counted [[]error, [0-9]*.[0-9][0-9]s[]]",
        "*error: RuntimeError: requests needs `lab: registry`*",
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
    before = snapshot()
    suite.runpytest_subprocess().assert_outcomes(passed=2)
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
            assert spec.warm == ["library/alpine:3", "library/busybox:1"] and not spec.dockerd

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
    before = snapshot()
    suite.runpytest_subprocess().assert_outcomes(passed=1)
    assert_same(before, snapshot())


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
    before = snapshot()
    suite.runpytest_subprocess().assert_outcomes(passed=1)
    assert_same(before, snapshot())


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
    before = snapshot()
    suite.runpytest_subprocess().assert_outcomes(passed=2)
    assert_same(before, snapshot())
