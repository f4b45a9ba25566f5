"""What `chaos export` and `chaos import` do with their files (the CLI parses options)."""

from __future__ import annotations

from pathlib import Path

import click

from chaos.errors import ExitStatus
from chaos.export.mapping import Target


def export_files(loaded, target: Target, during: float, allow_partial: bool,
                 output: str) -> int:
    from chaos.export.chaos_mesh import export_scenario

    code = ExitStatus.OK
    texts = []
    for path, scenario in loaded:
        result = export_scenario(scenario, str(path), target, during, allow_partial)
        for refusal in result.refused:
            click.echo(str(refusal), err=True)
        if result.workflow is None:
            if not result.refused:
                click.echo(f"{path}: no faults to export", err=True)
            code = ExitStatus.INVALID
            continue
        if result.refused:
            click.echo(f"{path}: exported without the {len(result.refused)} fault(s) above "
                       "(--allow-partial; the Workflow's annotation lists them)", err=True)
        for line in result.probes_left_out:
            click.echo(f"{path}: not a StatusCheck: {line}", err=True)
        text = result.text(str(path))
        if output == "-":
            texts.append(text)
        else:
            folder = Path(output)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{result.name}.yaml").write_text(text)
            click.echo(f"{path}: {folder / (result.name + '.yaml')}")
    if texts:
        click.echo("---\n".join(texts), nl=False)
    return int(code)


def import_files(paths, output: str, name: str | None) -> int:
    from chaos.errors import ScenarioInvalid
    from chaos.export.chaos_mesh import dump
    from chaos.export.importer import ImportRefused, import_documents

    try:
        scenario = import_documents([Path(p) for p in paths], name)
    except ImportRefused as exc:
        for line in exc.lines:
            click.echo(line, err=True)
        return int(ExitStatus.INVALID)
    except ScenarioInvalid as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        return int(ExitStatus.INVALID)
    text = (f"# chaos import {' '.join(map(str, paths))}\n"
            + dump(scenario))
    if output == "-":
        click.echo(text, nl=False)
    else:
        Path(output).write_text(text)
        click.echo(f"wrote {output}")
    return int(ExitStatus.OK)
