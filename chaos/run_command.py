"""What `chaos run` does with its loaded scenarios, one after another, without click.

Shared by the CLI (chaos/cli.py) and the run of cached scenarios (chaos/fastrun.py), so
both print, report and exit alike.
"""

from __future__ import annotations

import signal
from typing import Any

from chaos.errors import ExitStatus


def run_in_order(loaded: list, options: Any, verbose: bool) -> tuple[list, list]:
    """Each scenario in turn (none started once a signal came): results, and the
    not-started ones' results. Call it inside ``runner.signals_recorded``."""
    from chaos import runner
    from chaos.report.console import ConsoleReporter

    results: list = []
    reporter = ConsoleReporter(verbose=verbose)
    for path, scenario in loaded:
        if runner.received:
            break  # the user asked to stop: do not start the next scenario
        result = runner.run_scenario(scenario, str(path), options, reporter)
        results.append(result)
        if result.exit_code in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED):
            break
    return results, not_started(loaded[len(results):], results)


def exit_codes(results: list, loaded: list, problems: list) -> list:
    """The statuses the command's exit is the worst of. Reverted and reported: signals are
    ignored from here on, since interpreter shutdown resets a Python handler (the
    recorder) to the default, which would kill us with the signal."""
    from chaos import runner

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    codes = [r.exit_code for r in results] + ([ExitStatus.INVALID] if problems else [])
    unrun = len(results) < len(loaded) or any(r.status == "not-run" for r in results)
    if runner.received and unrun and not any(c in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED)
                                             for c in codes):
        # stopped between runs: none ran to report it. After the last one, the signal
        # changes nothing: every run ended and reported its own status.
        codes.append(ExitStatus.TERMINATED if runner.received[0] == signal.SIGTERM
                     else ExitStatus.INTERRUPTED)
    return codes


def refused(problems) -> list:
    """Files the loader refused, one result each: CI reading only the reports sees them."""
    from chaos.runner import refused_file

    by_file: dict[str, list] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(problem)
    return [refused_file(file, found) for file, found in by_file.items()]


def not_started(rest, results) -> list:
    """Scenarios a signal kept from starting, every probe skipped, for the reports."""
    from chaos import runner

    if not rest:
        return []
    last = results[-1].exit_code if results else ExitStatus.INTERRUPTED
    if last not in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED):  # it came between runs
        last = ExitStatus.TERMINATED if runner.received[:1] == [signal.SIGTERM] else ExitStatus.INTERRUPTED
    why = "terminated (SIGTERM)" if last == ExitStatus.TERMINATED else "interrupted (SIGINT)"
    return [runner.not_started(scenario, str(path), last, f"{why} before this scenario started")
            for path, scenario in rest]


def write_reports(results, json_path, junit_path, timeline_dir) -> None:
    if json_path:
        from chaos.report import json_report

        json_report.write(results, json_path)
    if junit_path:
        from chaos.report import junit

        junit.write(results, junit_path)
    if timeline_dir:
        from chaos.report import timeline

        for result in results:
            if result.run_id:  # a run that started (not a refused file or a scenario never begun)
                timeline.write_svg(result, timeline_dir)


def worst(codes) -> int:
    """Interrupted beats injection trouble beats invalid input beats a failed expectation."""
    order = [ExitStatus.TERMINATED, ExitStatus.INTERRUPTED, ExitStatus.INJECTION,
             ExitStatus.INVALID, ExitStatus.EXPECTATION]
    for code in order:
        if code in codes:
            return int(code)
    return int(ExitStatus.OK)
