"""The resilience matrix's page: matrix.md, index.html (a styled table) and matrix.json.

A row per scenario, a column per client × cache; each cell gives its verdict, wall time,
how it compares with the baseline (when one was given) and links to its JSON report, JUnit
report and console log, all relative to the matrix folder so the folder can be moved or
published as it is.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from chaos.report.timeline import COLOURS

if TYPE_CHECKING:
    from chaos.matrix import Cell, Matrix

COLOUR = {**COLOURS, "not run": "#bbbbbb"}
BASELINE_MARK = {"worse": "worse than the baseline", "better": "better than the baseline",
                 "as recorded": "as recorded", "not recorded": "not in the baseline"}


def _columns(matrix: Matrix) -> list[tuple[str, str]]:
    return [(client, cache) for client in matrix.clients for cache in matrix.caches]


def _grid(matrix: Matrix) -> dict[tuple[str, str, str], Cell]:
    return {(c.file, c.client, c.cache): c for c in matrix.cells}


def _summary(matrix: Matrix) -> str:
    done = [c for c in matrix.cells if c.verdict != "not run"]
    line = (f"{len(done)} of {len(matrix.cells)} cells run, started {matrix.started}, "
            f"{matrix.seconds:.0f} s")
    if matrix.baseline_path:
        line += f"; compared with the baseline {matrix.baseline_path}"
    if matrix.stopped:
        line += f"; {matrix.stopped}"
    return line


def markdown(matrix: Matrix) -> str:
    columns = _columns(matrix)
    grid = _grid(matrix)
    lines = ["# Resilience matrix", "", _summary(matrix), "",
             "| scenario | " + " | ".join(f"{cl} × {ca}" for cl, ca in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for file in matrix.files:
        cells = []
        for client, cache in columns:
            cell = grid[(file, client, cache)]
            if cell.verdict == "not run":
                cells.append("not run")
                continue
            verdict = cell.verdict if cell.verdict == "passed" else f"**{cell.verdict}**"
            text = f"[{verdict} {cell.seconds:.1f} s]({cell.reports['json']})"
            if cell.baseline:
                mark = BASELINE_MARK[cell.baseline]
                text += f", {'**' + mark + '**' if cell.baseline == 'worse' else mark}"
            text += f" ([JUnit]({cell.reports['junit']}), [log]({cell.reports['log']}))"
            cells.append(text)
        lines.append(f"| {Path(file).stem} | " + " | ".join(cells) + " |")
    why = [(c, c.why) for c in matrix.cells if c.why]
    if why:
        lines += ["", "Why:", ""]
        lines += [f"- {Path(c.file).stem}, {c.client} × {c.cache}: {text}" for c, text in why]
    return "\n".join(lines) + "\n"


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.4em 0.6em; text-align: left; }
th { background: #f2f2f2; }
td.cell { color: #fff; font-weight: bold; }
td.cell a { color: #fff; }
td.cell .more { font-weight: normal; font-size: 0.85em; }
td.cell .more a { margin-right: 0.4em; }
.worse { outline: 3px solid #000; outline-offset: -3px; }
"""


def html(matrix: Matrix) -> str:
    columns = _columns(matrix)
    grid = _grid(matrix)
    head = "".join(f"<th>{escape(cl)} × {escape(ca)}</th>" for cl, ca in columns)
    body = []
    for file in matrix.files:
        tds = []
        for client, cache in columns:
            cell = grid[(file, client, cache)]
            attrs = (f'class="cell{" worse" if cell.baseline == "worse" else ""}" '
                     f'data-scenario="{escape(Path(file).stem)}" '
                     f'data-verdict="{escape(cell.verdict)}" data-client="{escape(client)}" '
                     f'data-cache="{escape(cache)}" style="background: {COLOUR[cell.verdict]}"')
            if cell.verdict == "not run":
                tds.append(f"<td {attrs}>not run</td>")
                continue
            links = cell.reports
            more = (f'<a href="{escape(links["junit"])}">JUnit</a>'
                    f'<a href="{escape(links["log"])}">log</a>')
            if cell.baseline:
                more = escape(BASELINE_MARK[cell.baseline]) + "<br>" + more
            title = f' title="{escape(cell.why)}"' if cell.why else ""
            tds.append(f'<td {attrs}{title}><a href="{escape(links["json"])}">'
                       f"{escape(cell.verdict)} {cell.seconds:.1f} s</a>"
                       f'<div class="more">{more}</div></td>')
        body.append(f"<tr><th>{escape(Path(file).stem)}</th>{''.join(tds)}</tr>")
    legend = " ".join(f'<span style="background: {COLOUR[v]}; color: #fff; padding: 0 0.4em">'
                      f"{v}</span>" for v in ("passed", "failed", "hung", "error", "not run"))
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<title>Resilience matrix</title>"
            f"<style>{STYLE}</style></head><body>\n<h1>Resilience matrix</h1>\n"
            f"<p>{escape(_summary(matrix))}</p>\n<p>{legend}</p>\n"
            f'<table id="matrix"><thead><tr><th>scenario</th>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody></table>\n</body></html>\n")


def write(matrix: Matrix, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.md").write_text(markdown(matrix), encoding="utf-8")
    (folder / "index.html").write_text(html(matrix), encoding="utf-8")
    (folder / "matrix.json").write_text(json.dumps(matrix.to_dict(), indent=2) + "\n",
                                        encoding="utf-8")
