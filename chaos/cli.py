"""The `chaos` command. Heavy modules are imported inside commands so `chaos --help` is quick.

Exit statuses (chaos.errors.ExitStatus): 0 every expectation met, 1 an expectation failed,
2 invalid scenario or usage, 3 a fault could not be injected or reverted, 130 / 143
interrupted by SIGINT / SIGTERM (after reverting everything).
"""

from __future__ import annotations

import sys

import click

from chaos import startup
from chaos.errors import ExitStatus, PluginError


class VarType(click.ParamType):
    """--var name=value"""

    name = "NAME=VALUE"

    def convert(self, value, param, ctx):
        name, sep, val = value.partition("=")
        if not sep or not name.isidentifier():
            self.fail(f"{value!r} is not NAME=VALUE (NAME: letters, digits, _)", param, ctx)
        return name, val


class JobsType(click.ParamType):
    """-j N or -j auto"""

    name = "N|auto"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        if value == "auto":
            from chaos.jobs import auto_jobs

            return auto_jobs()
        if not value.isdigit() or int(value) < 1:
            self.fail(f"{value!r} is not a number of runs (1 or more) or 'auto'", param, ctx)
        return int(value)


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        from chaos.durations import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chaos-registry", prog_name="chaos")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Simulate registry and CDN outages, check what clients see, always revert.

    Scenarios are YAML files (see `chaos schema`); faults run in a throw-away network
    namespace sandbox unless --host is given.
    """
    if ctx.invoked_subcommand not in ("run", "validate"):
        startup.resume()  # those two resume once their scenarios are loaded (_load_all)


def _no_pydantic_plugin_loader() -> None:
    """pydantic looks for plugins when it builds its first model: its loader imports
    importlib.metadata (with zipfile, email, csv) and reads the entry points
    of every installed distribution (docs/benchmarks.md). The scenario models want no
    plugin, and this process is ours alone (the pytest plugin, in a user's process, leaves
    pydantic as it is), so the loader is replaced by one that finds none; a
    PYDANTIC_DISABLE_PLUGINS the user set still rules (then pydantic's own loader runs).
    pydantic asks its loader for ``get_plugins`` only (tests/test_startup.py checks that)."""
    import os
    import sys
    import types

    name = "pydantic.plugin._loader"
    if "PYDANTIC_DISABLE_PLUGINS" in os.environ or name in sys.modules:
        return
    loader = types.ModuleType(name, "chaos: pydantic plugins are not looked for in this process")
    vars(loader).update(get_plugins=lambda: (), _plugins={})
    sys.modules[name] = loader


def _load_all(paths, raws: dict | None = None):
    """Load every file; with ``raws``, keep each valid file's bytes there by its path, for
    ``_cache_planned``."""
    _no_pydantic_plugin_loader()  # before the first model is built
    from chaos.errors import ScenarioInvalid
    from chaos.scenario.load import load_bytes, scenario_files

    loaded, problems = [], []
    files = scenario_files(paths)
    if not files:
        raise click.UsageError("no scenario files found in " + ", ".join(paths))
    for path in files:
        try:
            raw, scenario = load_bytes(path)
        except ScenarioInvalid as exc:
            problems += exc.problems
            continue
        loaded.append((path, scenario))
        if raws is not None:
            raws[str(path)] = raw
    startup.resume()  # imports done, models built: collect again from here on
    return loaded, problems


def _cache_planned(results, loaded, raws: dict[str, bytes], in_state_dir: str | None) -> None:
    """Record in the validated-scenario cache (chaos/scenario/cache.py: the next run of the
    same bytes skips validation) each scenario whose run got past planning: one refused
    there (exit 2) leaves no trace, and a dry run (not here) writes nothing at all."""
    from chaos.journal import state_dir
    from chaos.scenario import cache as scenario_cache

    planned = {r.file for r in results if r.exit_code != ExitStatus.INVALID and r.status != "not-run"}
    for path, scenario in loaded:
        if str(path) in planned:  # loaded and raws hold the same files
            scenario_cache.store(state_dir(in_state_dir), raws[str(path)], scenario)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def validate(paths) -> None:
    """Check scenario files (or folders of them); every problem with file:line:column."""
    from chaos.scenario.load import plan_in_sandbox

    loaded, problems = _load_all(paths)
    for path, scenario in loaded:  # what the run would refuse at plan time, from the file alone
        refused = plan_in_sandbox(scenario)
        problems += refused
        if not refused:
            click.echo(f"{path}: ok")
    for problem in sorted(problems, key=lambda p: (p.file, p.line, p.column)):
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(ExitStatus.INVALID)


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--host", "host_mode", is_flag=True,
              help="Apply faults to this machine itself (/etc/hosts, its routes) instead of a sandbox.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write a JSON report here.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("--timeline", "timeline_dir", type=click.Path(file_okay=False),
              help="Write a timeline picture (SVG) per scenario into this folder.")
@click.option("--var", "variables", multiple=True, type=VarType(),
              help="A {name} placeholder for commands and URLs (repeatable).")
@click.option("--docker-host", help="The docker daemon whose containers `container:` faults target "
                                     "(default: the scenario's docker:, DOCKER_HOST, the local socket).")
@click.option("--client", type=click.Choice(["dockerd", "containerd", "podman", "skopeo"]),
              default="dockerd", show_default=True,
              help="The lab client that `pull:` probes pull with.")
@click.option("--state-dir", envvar="CHAOS_STATE_DIR", help="Journals live here (default /var/lib/chaos).")
@click.option("-v", "--verbose", is_flag=True, help="Show every step, also when not on a terminal.")
@click.option("--dry-run", is_flag=True,
              help="Only plan: print what each fault would apply (iptables batches in full); change nothing.")
@click.option("--baseline", "baseline_path", type=click.Path(dir_okay=False, exists=True),
              help="Fail only where a probe's verdict differs from this recorded baseline.")
@click.option("--write-baseline", "write_baseline", type=click.Path(dir_okay=False),
              help="Record every probe's verdict here (exit 0 unless the run itself broke).")
@click.option("--cache", type=click.Choice(["distribution", "nginx"]),
              help="The registry lab's cache for every lab scenario (default: each scenario's lab.cache).")
@click.option("--client-version", metavar="MAJOR.MINOR",
              help="The generation of --client for every lab scenario: dockerd 20.10 or 26.1, "
                   "containerd 1.6 or 1.7, podman 4.3 or 5.4, skopeo 1.9 or 1.18 (Debian 12's, "
                   "13's); default the system's (for dockerd: each scenario's lab.client_version).")
@click.option("-j", "--jobs", default="1", type=JobsType(), show_default=True,
              help="Run up to N scenarios at once, each in its own sandbox or lab ('auto': two "
                   "per CPU); reports keep the given order.")
@click.option("--matrix", "matrix_dir", type=click.Path(file_okay=False),
              help="Run every scenario for each --clients × --caches pair, one run per cell, and "
                   "write the page (index.html, matrix.md) and each cell's reports here.")
@click.option("--clients", help="With --matrix: the lab clients, comma-separated, each "
                                "CLIENT[@MAJOR.MINOR] (dockerd, containerd, podman, skopeo; "
                                "e.g. dockerd@26.1,podman@5.4; default dockerd).")
@click.option("--caches", help="With --matrix: the lab caches, comma-separated (distribution, "
                               "nginx; default both).")
@click.option("--cell-timeout", type=DurationType(),
              help="With --matrix: a cell's run not ended by then is stopped (SIGTERM) and is "
                   "hung (default 15m).")
def run(paths, host_mode, json_path, junit_path, timeline_dir, variables, docker_host, client,
        state_dir, verbose, dry_run, baseline_path, write_baseline, cache, client_version, jobs,
        matrix_dir, clients, caches, cell_timeout) -> None:
    """Run scenario files (or folders of them) and report what clients saw."""
    from chaos import jobs as side_by_side, run_command, runner

    side_by_side.follow_parent()  # a child run of `chaos run -j` ends when its parent dies
    from chaos.runner import RunOptions, ScenarioResult

    if baseline_path and write_baseline:
        raise click.UsageError("--baseline and --write-baseline: give one (compare, or record)")
    if not matrix_dir and (clients or caches or cell_timeout is not None):
        raise click.UsageError("--clients, --caches and --cell-timeout go with --matrix DIR")
    if matrix_dir:
        _run_matrix(paths, matrix_dir, clients or "dockerd", caches or "distribution,nginx",
                    900.0 if cell_timeout is None else cell_timeout, baseline_path,
                    dict(host=host_mode, json=json_path, junit=junit_path,
                         timeline=timeline_dir, cache=cache, dry_run=dry_run,
                         write_baseline=write_baseline, jobs=jobs > 1,
                         client_version=client_version),
                    [*(a for name, val in variables for a in ("--var", f"{name}={val}")),
                     *(["--docker-host", docker_host] if docker_host else []),
                     *(["--state-dir", state_dir] if state_dir else []),
                     *(["--baseline", baseline_path] if baseline_path else [])])
    run_client = _run_client(client, client_version)
    baseline, baseline_path = (_read_baseline(baseline_path, run_client, _run_client("dockerd", None))
                               if baseline_path else (None, None))
    raws: dict[str, bytes] = {}
    loaded, problems = _load_all(paths, raws)
    for problem in problems:
        click.echo(str(problem), err=True)
    options = RunOptions(host_mode=host_mode, state_dir=state_dir, variables=dict(variables),
                         docker_host=docker_host, cache=cache, client=client,
                         client_version=client_version)
    if dry_run:
        codes: list[int] = [runner.dry_run(scenario, str(path), options, click.echo)
                            for path, scenario in loaded]
        sys.exit(run_command.worst(codes + ([ExitStatus.INVALID] if problems else [])))
    results: list[ScenarioResult] = []
    # Between and after scenarios a signal is only recorded: it stops the next scenario
    # from starting, but never costs the finished ones their reports or exit status.
    # restore=False: no moment with a default handler between the runs and the exit.
    with runner.signals_recorded(restore=False):
        if jobs > 1 and len(loaded) > 1:
            from chaos.report.baseline import durations
            from chaos.report.live import board

            expected = durations(baseline_path) if baseline_path else None
            results = side_by_side.run_all(loaded, options, jobs, board(), verbose=verbose,
                                           expected=expected)
            rest: list = []  # (not-run results included, in their place)
        else:
            results, rest = run_command.run_in_order(loaded, options, verbose)
        if baseline is not None:
            _judge_by_baseline(results, baseline, baseline_path)
        run_command.write_reports(run_command.refused(problems) + results + rest, json_path,
                                  junit_path, timeline_dir)
    codes = run_command.exit_codes(results, loaded, problems)
    _cache_planned(results, loaded, raws, state_dir)
    if write_baseline:
        codes = _record_baseline(results, write_baseline, codes,
                                 run_client if any(s.lab for _, s in loaded) else None)
    sys.exit(run_command.worst(codes))


def _run_matrix(paths, folder: str, clients: str, caches: str, cell_timeout: float,
                baseline_path: str | None, refused: dict, child_args: list[str]) -> None:
    """`chaos run --matrix DIR`: checks its input, then chaos.matrix runs the cells."""
    from pathlib import Path

    from chaos import matrix

    given = [f"--{name.replace('_', '-')}" for name, value in refused.items() if value]
    source = click.get_current_context().get_parameter_source("client")
    if source is not None and source.name != "DEFAULT":
        given.append("--client")
    if given:
        raise click.UsageError("--matrix writes its own reports and picks the client, its version "
                               f"and the cache per cell (--clients dockerd@26.1,...): "
                               f"{', '.join(given)} cannot go with it")
    try:
        chosen_clients = matrix.parse_clients(clients)
        chosen_caches = matrix.parse_list(caches, matrix.CACHES, "caches")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if baseline_path:
        for name in chosen_clients:  # broken or missing: exit 2 now, not in every cell
            _read_baseline(baseline_path, _run_client(*matrix.split_client(name)),
                           _run_client("dockerd", None))
    loaded, problems = _load_all(paths)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        sys.exit(ExitStatus.INVALID)
    not_lab = [str(path) for path, scenario in loaded if scenario.lab is None]
    if not_lab:
        raise click.UsageError("--matrix runs lab scenarios (lab: registry) only; not: "
                               + ", ".join(not_lab))
    stems = [Path(path).stem for path, _ in loaded]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:  # a cell's reports are named by the file's stem
        raise click.UsageError(f"--matrix: two scenario files named {', '.join(twice)}")
    grid = matrix.Matrix([str(path) for path, _ in loaded], chosen_clients, chosen_caches,
                         baseline_path)
    sys.exit(matrix.run_matrix(grid, Path(folder), child_args, cell_timeout, click.echo))


def _run_client(client: str, version: str | None) -> str:
    """The lab client this run's baseline is for, by generation name (``dockerd@20.10``,
    ``podman@5.4``): --client at --client-version, else the system's version."""
    from chaos.lab.generations import GenerationError, resolve_name

    try:
        return resolve_name(f"{client}@{version}" if version else client)
    except GenerationError as exc:
        raise click.BadParameter(str(exc), param_hint="--client-version") from None


def _read_baseline(path: str, client: str, fallback: str | None = None) -> tuple[dict, str]:
    """The baseline for this run's client: ``path``, or the file beside it for that client;
    for a client other than dockerd without a file of its own, ``fallback``'s (the system
    dockerd's: a difference from the docker host's verdicts shows as worse or better)."""
    from chaos.report.baseline import BaselineError, load_for

    try:
        verdicts, used = load_for(path, client, fallback)
        return verdicts, str(used)
    except BaselineError as exc:
        click.echo(f"chaos run: {exc}", err=True)
        sys.exit(ExitStatus.INVALID)


def _judge_by_baseline(results, baseline: dict, path: str) -> None:
    """A scenario fails (exit 1) where a verdict changed from the baseline, in either
    direction, and passes where every unmet expectation is one the baseline records."""
    from chaos.report.baseline import compare, summary

    comparison = compare(baseline, results)
    for result in results:
        result.baseline = comparison.for_scenario(result.name)
        if result.exit_code not in (ExitStatus.OK, ExitStatus.EXPECTATION):
            continue  # invalid, injection trouble, interrupted: no baseline excuses those
        changed = comparison.changed(result.name)
        result.exit_code = ExitStatus.EXPECTATION if changed else ExitStatus.OK
    for line in summary(comparison, path):
        click.echo(line)


def _record_baseline(results, path: str, codes: list, client: str | None = None) -> list:
    """Write the baseline when every scenario ran to its end; a failed expectation is what a
    baseline records, so it no longer fails the command."""
    broken = [r for r in results if r.exit_code not in (ExitStatus.OK, ExitStatus.EXPECTATION)]
    if broken or ExitStatus.INVALID in codes:
        names = ", ".join(r.name for r in broken) or "invalid scenario files"
        click.echo(f"chaos run: no baseline written: not every scenario ran to its end ({names})",
                   err=True)
        return codes
    from chaos.report.baseline import write

    write(results, path, client)
    probes = sum(len(r.probes) for r in results)
    unmet = sum(not p.ok for r in results for p in r.probes)
    click.echo(f"baseline written to {path}: {probes} probe verdicts of {len(results)} "
               f"scenario(s), {unmet} not passed" + (f", client {client}" if client else ""))
    return [ExitStatus.OK]


@cli.command("list")
def list_faults() -> None:
    """The fault types and probe kinds (installed plugins' too) and their parameters."""
    import inspect

    from chaos import plugins
    from chaos.faults import FAULTS, fault_class
    from chaos.probes import PROBES, probe_class
    from chaos.scenario.schema import describe_fields

    plugins.load()

    def show(title: str, cls: type, origin: str | None, skip: str = "type") -> None:
        click.secho(title + (f"  (from package {origin})" if origin else ""), bold=True)
        click.echo("  " + inspect.cleandoc(cls.__doc__ or "").replace("\n", "\n  "))
        for line in describe_fields(cls, skip):
            click.echo("    " + line)
        click.echo()

    for name in FAULTS:
        show(name, fault_class(name), plugins.origin(plugins.FAULTS_GROUP, name))
    from chaos.steps import STEPS

    click.secho("Probe kinds (a probe is of the kind whose key it holds)", bold=True)
    click.echo()
    for key in PROBES:
        if key not in STEPS:
            cls = probe_class(key)
            show(f"{key}: ({cls.kind} probe)", cls, plugins.origin(plugins.PROBES_GROUP, key), skip="")
    click.secho("Steps (actions a phase runs in order beside its probes; docs/lab.md)", bold=True)
    click.echo()
    for key in STEPS:
        show(f"{key}: (step)", probe_class(key), None, skip="")


@cli.command()
@click.option("--indent", default=2, show_default=True)
def schema(indent) -> None:
    """JSON Schema of the scenario format (for YAML editors)."""
    import json

    from chaos import plugins
    from chaos.scenario.schema import json_schema

    plugins.load()  # installed packages' fault types and probe kinds are in the format too
    click.echo(json.dumps(json_schema(), indent=indent))


@cli.command()
@click.option("--state-dir", envvar="CHAOS_STATE_DIR", help="Journals live here (default /var/lib/chaos).")
@click.option("--force", is_flag=True, help="Also recover runs whose process still seems alive.")
def recover(state_dir, force) -> None:
    """Undo what interrupted or crashed runs left on this machine (safe to repeat)."""
    from chaos.recover import recover_all

    sys.exit(recover_all(state_dir, force, echo=click.echo))


class LabelType(click.ParamType):
    """--selector KEY=VALUE: a Kubernetes label."""

    name = "KEY=VALUE"
    _KEY = r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
    _VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$"

    def convert(self, value, param, ctx):
        import re

        key, sep, val = value.partition("=")
        if not sep or not re.match(self._KEY, key) or not re.match(self._VALUE, val):
            self.fail(f"{value!r} is not a label KEY=VALUE", param, ctx)
        return key, val


@cli.command("export")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--to", "engine", type=click.Choice(["chaos-mesh"]), required=True,
              help="The engine whose resources to write.")
@click.option("--namespace", default="default", show_default=True,
              help="The namespace of the Workflow and of the pods it selects.")
@click.option("--selector", multiple=True, type=LabelType(),
              help="A label of the client pods the faults act on (repeatable; default: every pod "
                   "of the namespace).")
@click.option("--server-selector", multiple=True, type=LabelType(),
              help="A label of the server pods HTTPChaos is injected into (default: --selector).")
@click.option("--region-label", default="region", show_default=True,
              help="A fault's `region: R` also selects the pods labelled KEY=R.")
@click.option("--during", type=DurationType(), default="60s", show_default=True,
              help="How long the `during` phase lasts (longer when a window ends later).")
@click.option("--allow-partial", is_flag=True,
              help="Export the faults that map; list the others (and annotate the Workflow).")
@click.option("-o", "--output", default="-", show_default=True,
              help="A folder for one <scenario>.yaml each, or - for standard output.")
def export(paths, engine, namespace, selector, server_selector, region_label, during,
           allow_partial, output) -> None:
    """Write scenarios as Chaos Mesh resources (a Workflow each) for `kubectl apply`."""
    from chaos.export.command import export_files
    from chaos.export.mapping import Target

    loaded, problems = _load_all(paths)
    for problem in problems:
        click.echo(str(problem), err=True)
    target = Target(namespace, dict(selector),
                    dict(server_selector) if server_selector else None, region_label)
    code = export_files(loaded, target, during, allow_partial, output)
    from chaos.run_command import worst

    sys.exit(worst([code] + ([ExitStatus.INVALID] if problems else [])))


@cli.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", default="-", show_default=True,
              help="The scenario file to write, or - for standard output.")
@click.option("--name", help="The scenario's name (default: the first resource's).")
def import_(paths, output, name) -> None:
    """Read Chaos Mesh NetworkChaos / DNSChaos / HTTPChaos documents (alone, in a Schedule or
    a Workflow) into a scenario file the sandbox runs."""
    from chaos.export.command import import_files

    sys.exit(import_files(paths, output, name))


class ListenType(click.ParamType):
    """HOST:PORT (an IP address or localhost; IPv6 in brackets)."""

    name = "HOST:PORT"

    def convert(self, value, param, ctx):
        import ipaddress

        host, sep, port = str(value).rpartition(":")
        host = host.strip("[]")
        try:
            if host != "localhost":
                ipaddress.ip_address(host)
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError
        except ValueError:
            self.fail(f"{value!r}: expected IP:PORT, e.g. 127.0.0.1:8474 or [::1]:8474", param, ctx)
        return ("127.0.0.1" if host == "localhost" else host), int(port)


@cli.command()
@click.option("--listen", default="127.0.0.1:8474", show_default=True, type=ListenType(),
              help="Where the API listens.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a --listen address that is not loopback. The API is unauthenticated: "
                   "whoever reaches it can cut and slow this machine's proxied connections.")
@click.option("--state-dir", envvar="CHAOS_STATE_DIR", help="Journals live here (default /var/lib/chaos).")
def serve(listen, allow_remote, state_dir) -> None:
    """Serve a Toxiproxy-compatible HTTP API (docs/api.md) until SIGTERM or Ctrl-C, then
    revert everything it changed."""
    from chaos.api.server import is_loopback, serve as run_server

    host, port = listen
    if not is_loopback(host) and not allow_remote:
        raise click.BadParameter(f"{host} is not a loopback address: the API is unauthenticated;"
                                 " add --allow-remote to listen there anyway", param_hint="--listen")
    try:
        sys.exit(run_server(host, port, state_dir, echo=click.echo))
    except OSError as exc:
        click.echo(f"chaos serve: cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        sys.exit(2)


class FaultSpec(click.ParamType):
    """--fault 'NAMES=ANSWER' or a YAML mapping of a dns fault's parameters."""

    name = "FAULT"

    def convert(self, value, param, ctx):
        import yaml
        from pydantic import ValidationError

        from chaos.faults.dns import Dns

        if "=" in value and not value.lstrip().startswith("{"):
            names, _, answer = value.partition("=")
            data = {"names": names.split(","), "answer": answer}
        else:
            try:
                data = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                self.fail(f"{value!r}: not YAML ({exc})", param, ctx)
        try:
            return Dns.model_validate({**(data or {}), "type": "dns"})
        except ValidationError as exc:
            self.fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'fault'}: {e['msg']}"
                                for e in exc.errors()), param, ctx)
        except TypeError:  # YAML that is not a mapping
            self.fail(f"{value!r}: give NAMES=ANSWER or a mapping", param, ctx)


@cli.group()
def dns() -> None:
    """The fake DNS server on its own, for trying faults by hand."""


@dns.command("serve")
@click.option("--zone", "zone_file", type=click.Path(exists=True, dir_okay=False),
              help="YAML or JSON: {name: address or [addresses]}; other names get REFUSED.")
@click.option("--fault", "faults", multiple=True, type=FaultSpec(),
              help="'NAMES=ANSWER' (e.g. '*.docker.io=servfail') or a YAML mapping "
                   "('{names: [x.test], answer: delay, delay: 2s}'); repeatable.")
@click.option("--listen", default="127.0.0.1", show_default=True)
@click.option("--port", default=5353, show_default=True)
@click.option("--log", "log_path", type=click.Path(dir_okay=False), help="Query log (JSON lines).")
def dns_serve(zone_file, faults, listen, port, log_path) -> None:
    """Serve a zone with faults until Ctrl-C: `dig @127.0.0.1 -p 5353 registry.test`."""
    import json
    import os
    import subprocess
    import tempfile

    import yaml

    zone = {}
    if zone_file:
        raw = yaml.safe_load(open(zone_file)) or {}
        if not isinstance(raw, dict):
            raise click.BadParameter("the zone is a mapping of names to addresses", param_hint="--zone")
        zone = {name: value if isinstance(value, list) else [value] for name, value in raw.items()}
    with tempfile.TemporaryDirectory(prefix="chaos-dns-") as tmp:
        rules = os.path.join(tmp, "rules")
        os.mkdir(rules)
        for index, fault in enumerate(faults):
            rule = fault.rule(f"fault-{index}")
            with open(os.path.join(rules, f"fault-{index}.json"), "w") as f:
                json.dump(rule, f)
        with open(os.path.join(tmp, "zone.json"), "w") as f:
            json.dump(zone, f)
        argv = [sys.executable, "-m", "chaos.injectors.dns_server", "--listen", listen, "--port",
                str(port), "--zone", os.path.join(tmp, "zone.json"), "--rules-dir", rules,
                "--log", log_path or os.path.join(tmp, "queries.jsonl")]
        click.echo(f"fake DNS on {listen}:{port} ({len(zone)} names, {len(faults)} faults); Ctrl-C stops",
                   err=True)
        try:
            code = subprocess.call(argv)
        except KeyboardInterrupt:
            code = 0
    sys.exit(code)


@cli.group()
def lab() -> None:
    """The registry lab: upstream (as registry-1.docker.io, with Hub's token flow and CDN
    redirect), pull-through cache, client dockerd, all offline in namespaces."""


@lab.command("up")
@click.option("--state-dir", envvar="CHAOS_STATE_DIR", help="Journals live here (default /var/lib/chaos).")
@click.option("--no-dockerd", is_flag=True, help="Do not start the client dockerd.")
@click.option("--warm", multiple=True, default=["library/busybox:1"], show_default=True,
              help="Images pulled through the cache at start (repeatable).")
def lab_up_cmd(state_dir, no_dockerd, warm) -> None:
    """Start the lab and leave it running (`chaos lab down` stops it)."""
    from chaos.lab import control
    from chaos.lab.ready import NotReady

    click.echo("starting the lab (upstream, token server, CDN, cache, dockerd)...")
    try:
        info = control.up(state_dir, dockerd=not no_dockerd, warm=warm,
                          echo=lambda line: click.echo(line, err=True))
    except (NotReady, RuntimeError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    except control.Stopped as exc:
        import signal

        click.echo(f"stopped by {signal.Signals(exc.signum).name} while starting: reverted what was "
                   "started", err=True)
        sys.exit(ExitStatus.TERMINATED if exc.signum == signal.SIGTERM else ExitStatus.INTERRUPTED)
    click.echo(f"lab {info['run_id']} up in {info['timings'].get('total', 0):.1f}s")
    _print_lab(info)


def _print_lab(info) -> None:
    for name, value in info["placeholders"].items():
        if value:
            click.echo(f"  {{{name}}} = {value}")
    click.echo(f"  lab CA: {info['ca']}")
    if info["placeholders"].get("docker_host"):
        click.echo(f"  try: DOCKER_HOST={info['placeholders']['docker_host']} docker pull library/busybox:1")


@lab.command("status")
@click.option("--state-dir", envvar="CHAOS_STATE_DIR", help="Journals live here (default /var/lib/chaos).")
def lab_status_cmd(state_dir) -> None:
    """Every component, its address, and whether it answers (bounded checks)."""
    from chaos.lab import control

    info = control.current(state_dir)
    if info is None:
        click.echo("no lab is up (`chaos lab up` starts one)")
        _hint_unfinished(state_dir)
        sys.exit(1)
    click.echo(f"lab {info['run_id']}")
    rows = control.status(state_dir)
    for row in rows:
        click.echo(f"  {row['component']:<9} {row['host']:<34} {row['address']:<22} "
                   f"{row['process']:<12} {row['ready']}")
    sys.exit(0 if all(r["ready"].startswith("answers") for r in rows) else 1)


def _hint_unfinished(state_dir) -> None:
    from chaos.lab import control

    for run_id in control.unfinished_ups(state_dir):
        click.echo(f"{run_id}: a lab whose `chaos lab up` was killed while starting; "
                   "`chaos recover` removes it", err=True)


@lab.command("down")
@click.option("--state-dir", envvar="CHAOS_STATE_DIR", help="Journals live here (default /var/lib/chaos).")
def lab_down_cmd(state_dir) -> None:
    """Stop the lab and remove everything it made."""
    from chaos.lab import control

    if control.current(state_dir) is None:
        click.echo("no lab is up")
        _hint_unfinished(state_dir)
        return
    left = control.down(state_dir)
    for line in left:
        click.echo(f"could not undo: {line}", err=True)
    if left:
        sys.exit(ExitStatus.INJECTION)
    click.echo("lab down")


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitStatus.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitStatus.INVALID)
    except PluginError as exc:  # an installed package's fault type or probe kind (list, schema)
        click.echo(f"chaos: {exc}", err=True)
        sys.exit(exc.status)
    except SystemExit:
        raise
    sys.exit(0)


if __name__ == "__main__":
    main()
