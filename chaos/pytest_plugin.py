"""pytest plugin (entry point pytest11): faults inside your own tests, scenarios as tests.

Fixtures (each reverts everything at teardown, even when the test fails or is interrupted;
journaled like a CLI run, so `chaos recover` cleans up after a killed pytest):
- ``chaos_sandbox``: a fresh sandbox. ``.serve(name, body=..)`` starts a server in its world,
  ``.run(cmd)`` runs a client command in it, ``.inject({"type": ..., ...})`` applies a fault
  (returns a handle with ``.revert()``).
- ``blackhole``: ``blackhole("registry.test", kind="unreachable")``, routes in chaos_sandbox;
  ``packet_filter``, ``fake_dns``, ``tcp_faults``, ``http_faults``: the other fault kinds, on
  demand, with their logs (``fake_dns.queries``, ``tcp_faults.connections``, ``http_faults.requests``).
- ``registry_lab``: the registry lab, started once per session (``make_registry_lab``) and
  reset for each test: its log marks, and the faults the test injected through it reverted.
- ``toxiproxy_server``: a `chaos serve` Toxiproxy API, started once per session (loopback,
  a free port: ``.host``, ``.port``, ``.url``); ``toxiproxy`` is the same server with every
  proxy deleted and every /chaos/ fault reverted after the test. Point a Toxiproxy client library at it (docs/api.md).
- ``chaos_scenario``: ``chaos_scenario("scenarios/x.yaml")`` runs a scenario file (or YAML
  text) and returns its ScenarioResult.
A failed test that used one of these fixtures shows the last lines of the run's logs (proxy,
DNS server, servers, request logs) as "chaos log ..." report sections.
Marker: ``@pytest.mark.chaos_scenario("scenarios/x.yaml")`` runs that scenario around the test
body, in its sandbox (``chaos_sandbox`` is then that sandbox): chaos/pytest_marker.py.
Scenario files as tests: ``pytest --chaos-scenarios DIR`` collects every *.yaml there (so do
the ``chaos_scenarios`` ini folders when no paths are given). Options and ini settings: see
``pytest_addoption`` (and README.md, "pytest").
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("chaos")
    group.addoption("--chaos-state-dir", default=None,
                    help="chaos journals (default: the chaos_state_dir ini setting, "
                         "$CHAOS_STATE_DIR or /var/lib/chaos)")
    group.addoption("--chaos-host", action="store_true", default=False,
                    help="allow scenarios to change this machine itself (host mode)")
    group.addoption("--chaos-scenarios", action="append", default=[], metavar="DIR",
                    help="collect the scenario YAML files in DIR as tests")
    group.addoption("--chaos-lab-warm", action="append", default=None, metavar="IMAGE",
                    help="images the registry_lab fixture pulls through its cache at start "
                         "(default: the chaos_lab_warm ini setting, else library/busybox:1)")
    group.addoption("--chaos-lab-no-dockerd", action="store_true", default=False,
                    help="start the registry_lab fixture without its client dockerd")
    parser.addini("chaos_scenarios", "folders of scenario YAML files collected as tests", type="paths")
    parser.addini("chaos_state_dir", "chaos journals, relative to the ini file "
                                     "(--chaos-state-dir wins)", default="")
    parser.addini("chaos_lab_warm", "images the registry_lab fixture pulls through its cache "
                                    "at start (--chaos-lab-warm wins)", type="linelist")
    parser.addini("chaos_lab_no_dockerd", "start the registry_lab fixture without its client "
                                          "dockerd", type="bool", default=False)
    # Host mode stays a command-line switch: a config file should not change the machine.


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "chaos_scenario(path): run the test with that scenario's "
                                       "faults applied in its sandbox")
    _add_scenario_folders(config)


LOG_TAIL_LINES = 20


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test that used a chaos fixture shows the tails of that run's logs (fault
    proxies, DNS server, servers) as report sections, before teardown removes them."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    sessions = {id(h.session): h.session for h in getattr(item, "funcargs", {}).values()
                if isinstance(h, SandboxHandle)}
    for session in sessions.values():
        for name, text in log_tails(session):
            report.sections.append((f"chaos log {name}", text))


def log_tails(session, lines: int = LOG_TAIL_LINES) -> list[tuple[str, str]]:
    """(path in the run folder, its last ``lines`` lines) of each non-empty log of a run."""
    journal = getattr(session, "journal", None)
    if journal is None or not journal.run_dir.is_dir():
        return []
    tails = []
    for path in sorted(journal.run_dir.rglob("*")):
        if path.suffix not in (".log", ".jsonl") or path.name == "journal.jsonl" or not path.is_file():
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if text.strip():
            tails.append((str(path.relative_to(journal.run_dir)),
                          "\n".join(text.splitlines()[-lines:])))
    return tails


def _scenario_roots(config) -> list[Path]:
    roots = [Path(p).resolve() for p in config.getoption("--chaos-scenarios")]
    return roots + [Path(p).resolve() for p in config.getini("chaos_scenarios")]


def _add_scenario_folders(config) -> None:
    """Make pytest walk the scenario folders itself: pytest_collect_file only sees files in
    the folders pytest collects (the command line's paths, else `testpaths`). Folders from
    --chaos-scenarios always; those of the ini setting unless paths were given on the command
    line (like `testpaths`, so `pytest tests/test_x.py` runs just that file)."""
    folders = [str(Path(p).resolve()) for p in config.getoption("--chaos-scenarios")]
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        folders += [str(Path(p).resolve()) for p in config.getini("chaos_scenarios")]
    base = config.invocation_params.dir
    walked = [(base / arg.split("::", 1)[0]).resolve() for arg in config.args]
    for folder in dict.fromkeys(folders):
        if not any(Path(folder).is_relative_to(path) for path in walked if path.is_dir()):
            config.args.append(folder)


class SandboxHandle:
    """What the fixtures hand to a test: a live session and a few verbs."""

    def __init__(self, session) -> None:
        self.session = session
        self.applied: list[_Applied] = []  # what this handle injected, for revert_all()

    @property
    def client(self) -> str:
        return self.session.sandbox.client

    def serve(self, name: str, **http) -> str:
        """Start an HTTP server in the world under `name`; its address."""
        from chaos.scenario.model import Serve

        server = Serve(name=name, http=http)
        return self.session.add_server(server)

    def run(self, command: str, timeout: float = 30.0, region: str | None = None):
        """(exit code or None when killed at the timeout, stdout, stderr) of a client command."""
        return self.session.run(command, timeout, region)

    def inject(self, fault: dict):
        """Validate a fault like a scenario's `faults:` item and apply it now."""
        from pydantic import TypeAdapter

        from chaos.faults import fault_types, known_type
        from chaos.scenario.model import fault_union

        # Only the named type is imported (an unknown name: every type, to list them).
        kind = fault.get("type")
        named = {kind} if isinstance(kind, str) and known_type(kind) else set()
        model = TypeAdapter(fault_union(tuple(fault_types(named or None)))).validate_python(fault)
        # Numbered across the whole pytest session: unique rule / chain names, also in the
        # session-scoped lab, where one test's handle follows another's.
        switch = self.session.plan(model, ("faults", next(_fault_numbers)))
        self.session.ensure_services()
        applied = _Applied(switch, self.session.journal)
        self.applied.append(applied)
        switch.apply(self.session.journal)
        return applied

    def revert_all(self) -> list:
        """Revert what this handle injected and is still on, last first; the failures."""
        failures = []
        for applied in reversed(self.applied):
            if applied.switch.applied:
                failures += applied.switch.revert(applied.journal)
        return failures


_fault_numbers = itertools.count(101)


class _Applied:
    def __init__(self, switch, journal) -> None:
        self.switch, self.journal = switch, journal

    def revert(self) -> None:
        failures = self.switch.revert(self.journal)
        if failures:
            raise RuntimeError("could not revert: " + "; ".join(map(str, failures)))


def _state_dir(config) -> str | None:
    """--chaos-state-dir, else the ini setting (relative to the ini file), else None (the
    journal's own default: $CHAOS_STATE_DIR or /var/lib/chaos)."""
    if config.getoption("--chaos-state-dir"):
        return config.getoption("--chaos-state-dir")
    value = config.getini("chaos_state_dir")
    if not value:
        return None
    base = config.inipath.parent if config.inipath else config.rootpath
    return str(base / value)


def _lab_spec(config):
    from chaos.scenario.model import LabSpec

    warm = config.getoption("--chaos-lab-warm") or config.getini("chaos_lab_warm")
    no_dockerd = config.getoption("--chaos-lab-no-dockerd") or config.getini("chaos_lab_no_dockerd")
    return LabSpec(dockerd=not no_dockerd, **({"warm": warm} if warm else {}))


def _session(config, **kwargs):
    from chaos.session import Session

    return Session(state_dir=_state_dir(config), **kwargs)


def _close(session) -> None:
    failures = session.close()
    if failures:
        pytest.fail("chaos could not revert: " + "; ".join(map(str, failures)), pytrace=False)


class ToxiproxyServer:
    """A running `chaos serve` (in this process, on a thread): where its API listens."""

    def __init__(self, server) -> None:
        self.server = server
        self.host, self.port = server.http.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def clear(self) -> None:
        """Delete every proxy (their toxics, listeners and connections go with them) and
        revert every fault added under /chaos/ (the sandbox and its servers stay)."""
        for name in list(self.server.proxies.proxies):
            self.server.proxies.delete(name)
        self.server.faults.reset()


@pytest.fixture(scope="session")
def toxiproxy_server(request):
    import threading

    from chaos.api.server import Server

    server = Server("127.0.0.1", 0, _state_dir(request.config))
    thread = threading.Thread(target=server.serve_forever, name="chaos-serve", daemon=True)
    thread.start()
    try:
        yield ToxiproxyServer(server)
    finally:
        server.http.shutdown()
        thread.join()
        failures = server.close()
        if failures:
            pytest.fail("chaos serve could not revert: " + "; ".join(map(str, failures)), pytrace=False)


@pytest.fixture
def toxiproxy(toxiproxy_server):
    try:
        yield toxiproxy_server
    finally:
        toxiproxy_server.clear()


@pytest.fixture
def chaos_sandbox(request):
    marked = getattr(request.node, "_chaos_marked_session", None)
    if marked is not None:
        yield SandboxHandle(marked)
        return
    session = _session(request.config)
    try:
        session.open()
        yield SandboxHandle(session)
    finally:
        _close(session)


@pytest.fixture
def blackhole(chaos_sandbox):
    def add(*destinations: str, kind: str = "unreachable"):
        return chaos_sandbox.inject({"type": "route-blackhole", "destinations": list(destinations),
                                     "kind": kind})

    return add


@pytest.fixture
def packet_filter(chaos_sandbox):
    """``packet_filter("registry.test", action="reject-reset", ports=[80])``: a filter now."""

    def add(*destinations: str, **params):
        return chaos_sandbox.inject({"type": "packet-filter", "destinations": list(destinations), **params})

    return add


class FakeDns:
    """The sandbox's fake DNS server: ``fail(name, answer=...)`` and the ``queries`` log."""

    def __init__(self, sandbox: SandboxHandle) -> None:
        self.sandbox = sandbox

    def fail(self, *names: str, answer: str = "nxdomain", **params):
        return self.sandbox.inject({"type": "dns", "names": list(names), "answer": answer, **params})

    @property
    def queries(self) -> list[dict]:
        server = self.sandbox.session.dns.server
        return server.queries() if server else []


@pytest.fixture
def fake_dns(chaos_sandbox):
    return FakeDns(chaos_sandbox)


class HttpFaults:
    """The sandbox's HTTP fault proxy: ``error(host, status=503)``, ``partial(host, bytes=N)``,
    ``add({...any HTTP fault...})``, and the ``requests`` it saw."""

    def __init__(self, sandbox: SandboxHandle) -> None:
        self.sandbox = sandbox

    def add(self, fault: dict):
        return self.sandbox.inject(fault)

    def error(self, host: str, status: int = 503, **params):
        return self.add({"type": "http-error", "status": status, "match": {"host": host}, **params})

    def partial(self, host: str, bytes: int, **params):
        return self.add({"type": "partial", "bytes": bytes, "match": {"host": host}, **params})

    @property
    def requests(self) -> list[dict]:
        proxy = self.sandbox.session.http.proxy
        return proxy.requests() if proxy else []


@pytest.fixture
def http_faults(chaos_sandbox):
    return HttpFaults(chaos_sandbox)


class TcpFaults:
    """The sandbox's TCP fault proxy: ``hang("registry.test", at="accept")``, ``slow(...,
    latency="200ms")``, ``reset(..., after=1000)``, ``garbage(...)``, and its ``connections``."""

    def __init__(self, sandbox: SandboxHandle) -> None:
        self.sandbox = sandbox

    def _add(self, kind: str, destinations, ports, params):
        return self.sandbox.inject({"type": kind, "destinations": list(destinations),
                                    "ports": list(ports), **params})

    def hang(self, *destinations: str, ports=(80,), **params):
        return self._add("hang", destinations, ports, params)

    def slow(self, *destinations: str, ports=(80,), **params):
        return self._add("slow", destinations, ports, params)

    def reset(self, *destinations: str, ports=(80,), **params):
        return self._add("reset", destinations, ports, params)

    def garbage(self, *destinations: str, ports=(80,), **params):
        return self._add("garbage", destinations, ports, params)

    @property
    def connections(self) -> list[dict]:
        proxy = self.sandbox.session.tcp.proxy
        return proxy.connections() if proxy else []


@pytest.fixture
def tcp_faults(chaos_sandbox):
    return TcpFaults(chaos_sandbox)


@pytest.fixture(scope="session")
def make_registry_lab(request):
    """The registry lab, started once per test session (a few seconds) and removed at its end."""
    session = _session(request.config, lab=_lab_spec(request.config))
    session.open()
    try:
        yield session
    finally:
        _close(session)


@pytest.fixture
def registry_lab(make_registry_lab):
    """The session's lab, reset for this test: ``.lab`` (chaos.lab.Lab), ``.run(cmd)`` in the
    lab's client namespace, ``.requests(role, path=...)`` since the test began, ``.docker()``
    SDK client, ``.inject({...})``: a fault on until this test ends (reverted at its
    teardown, so the next test gets the lab clean)."""
    make_registry_lab.mark_logs("phase")
    handle = LabHandle(make_registry_lab)
    try:
        yield handle
    finally:
        failures = handle.revert_all()
        if failures:
            pytest.fail("chaos could not revert: " + "; ".join(map(str, failures)), pytrace=False)


class LabHandle(SandboxHandle):
    @property
    def lab(self):
        return self.session.lab

    def docker(self):
        return self.session.lab.docker()

    def requests(self, role: str, **match) -> list:
        server = self.session.lab.server(role)
        return server.access.matching(self.session.place.marks[("phase", role)], **match)


@pytest.fixture
def chaos_scenario(request):
    from chaos.runner import RunOptions, run_scenario
    from chaos.scenario.load import load, load_text

    config = request.config

    def run(source: str | Path, host: bool = False, variables: dict | None = None):
        if host and not config.getoption("--chaos-host"):
            pytest.skip("host mode needs --chaos-host")
        if isinstance(source, str) and "\n" in source:
            scenario, name = load_text(source), "<text>"
        else:
            scenario, name = load(source), str(source)
        options = RunOptions(host_mode=host, state_dir=_state_dir(config),
                             variables=variables or {})
        return run_scenario(scenario, name, options)

    return run


@pytest.fixture(autouse=True)
def _chaos_scenario_marker(request):
    marker = request.node.get_closest_marker("chaos_scenario")
    if marker is None:
        yield
        return
    from chaos.pytest_marker import marked_scenario

    yield from marked_scenario(request, marker, _state_dir(request.config))


# -- scenario files as test items ------------------------------------------------------------
def pytest_collect_file(parent, file_path: Path):
    if file_path.suffix not in (".yaml", ".yml"):
        return None
    roots = _scenario_roots(parent.config)
    if any(file_path.resolve().is_relative_to(root) for root in roots):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        yield ScenarioItem.from_parent(self, name=self.path.stem)


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def runtest(self) -> None:
        from chaos.errors import ScenarioInvalid
        from chaos.runner import RunOptions, run_scenario
        from chaos.scenario.load import load

        try:
            scenario = load(self.path)
        except ScenarioInvalid as exc:
            raise ScenarioFailed(str(exc)) from None
        options = RunOptions(host_mode=False, state_dir=_state_dir(self.config))
        self.result = run_scenario(scenario, str(self.path), options)
        if self.result.exit_code != 0:
            raise ScenarioFailed(_failure_text(self.result))

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, 0, f"scenario {self.name}"


def _failure_text(result) -> str:
    lines = [f"scenario {result.name}: {result.status} (exit {int(result.exit_code)})"]
    lines += [f"  {error}" for error in result.errors]
    return "\n".join(lines + probe_failure_lines(result.probes))


def probe_failure_lines(probes) -> list[str]:
    """Each probe that did not pass: phase, name, verdict, duration, why, and its evidence
    (the connections its client held, a pull's layers)."""
    from chaos.probes.evidence import lines as evidence_lines

    lines = []
    for probe in probes:
        if not probe.ok:
            lines.append(f"  {probe.phase}: {probe.name} [{probe.verdict}, {probe.duration:.2f}s]")
            lines += [f"    {check}" for check in probe.failures()]
            if probe.verdict in ("hung", "error", "skipped"):  # no checks to show: say why
                lines.append(f"    {probe.message()}")
            lines += [f"    {line}" for line in evidence_lines(probe.evidence)]
    return lines
