"""What a probe's verdict says about itself (console, JUnit and pytest all print message())."""

from chaos.probes.result import ProbeResult


def test_error_message_gives_the_reason():
    raised = ProbeResult("before", "p", "requests", verdict="error",
                         detail={"error": "RuntimeError: requests needs `lab: registry`"})
    assert raised.message() == "error: RuntimeError: requests needs `lab: registry`"


def test_agent_error_message_gives_what_the_agent_printed():
    agent = ProbeResult("during", "p", "http", verdict="error",
                        detail={"error": "agent", "message": "ModuleNotFoundError: No module named 'x'"})
    assert agent.message() == "error: probe agent failed: ModuleNotFoundError: No module named 'x'"


def _console_lines(result) -> list[str]:
    import io

    from chaos.report.console import ConsoleReporter, _Plain

    reporter = ConsoleReporter()
    reporter.out = _Plain(io.StringIO())
    reporter.probe_done(result)
    return [line.strip() for line in reporter.out.stream.getvalue().splitlines()]


def test_console_shows_what_a_passing_error_expectation_observed():
    passed = ProbeResult("during", "uncached image fails fast", "docker-pull",
                         observed="failed: manifest unknown: manifest unknown")
    assert _console_lines(passed)[1:] == ["observed: failed: manifest unknown: manifest unknown"]
    assert _console_lines(ProbeResult("during", "plain", "command"))[1:] == []


def test_console_shows_a_hung_pull_s_layers_and_connections():
    layers = [{"id": "a", "state": "downloaded", "bytes": 4_000_000, "size": 4_000_000, "idle": 30.0},
              {"id": "b", "state": "downloading", "bytes": 10_000_000, "size": 16_000_000, "idle": 38.2},
              {"id": "c", "state": "waiting", "bytes": 0, "size": None, "idle": 39.0}]
    held = {"local": "198.18.0.30:40000", "remote": "198.18.0.12:443",
            "to": "production.cloudflare.docker.com", "state": "established", "received": 10_200_000,
            "unread": 0, "idle": 38.4, "pid": 812, "process": "dockerd"}
    from chaos.probes.evidence import pull_line

    hung = ProbeResult("during", "docker pull big", "docker-pull", verdict="hung", duration=40.0,
                       evidence={"stalled": pull_line(layers), "layers": layers, "connections": [held]})
    assert _console_lines(hung)[1:] == [
        "hung: still running after 40.00s, killed",
        "pull: layer 2/3 stalled at 10.0 MB of 16.0 MB, idle 38 s",
        "layers: 1/3 downloaded 4.0 MB, 2/3 downloading 10.0 MB of 16.0 MB, 3/3 waiting 0 bytes",
        "connection: dockerd[812] -> production.cloudflare.docker.com 198.18.0.12:443 established, "
        "10.2 MB received, idle 38 s"]
    none = ProbeResult("during", "curl", "command", verdict="failed", evidence={"connections": []})
    assert _console_lines(none)[-1] == "connections: none to the run's servers"


def test_pytest_failure_lines_carry_the_evidence():
    from chaos.pytest_plugin import probe_failure_lines

    held = {"local": "198.18.0.2:40000", "remote": "198.18.1.10:80", "to": "files.test",
            "state": "established", "received": 50_000, "unread": 0, "idle": 2.0, "pid": 7,
            "process": "curl"}
    hung = ProbeResult("during", "curl", "command", verdict="hung", duration=2.0,
                       evidence={"connections": [held]})
    assert probe_failure_lines([hung])[-1] == (
        "    connection: curl[7] -> files.test 198.18.1.10:80 established, 50.0 kB received, idle 2.0 s")
