"""The timeline of a run: when each fault was on, each probe's and step's span and verdict.

From a ScenarioResult's events and probes: text bars for the console, and an SVG picture
(`chaos run --timeline DIR` writes one per scenario).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

COLOURS = {"passed": "#2e9e4f", "failed": "#d64541", "hung": "#9b59b6", "error": "#e67e22",
           "fault": "#f0b429", "phase": "#8899aa", "step": "#3b7dd8"}


@dataclass
class Row:
    kind: str          # "fault", "probe" or "step" (chaos.steps: a restart, a retag, ...)
    label: str
    spans: list[tuple[float, float]]
    verdict: str = ""
    phase: str = ""


def rows(result) -> tuple[list[Row], list[tuple[str, float]], float]:
    """(rows, phase starts, end time) of a run, times in seconds since it started."""
    end = max([result.duration] + [p.started + p.duration for p in result.probes] + [0.001])
    faults: dict[str, Row] = {}
    opened: dict[str, float] = {}
    phases = []
    for event in result.events:
        if event.get("kind") == "phase":
            phases.append((event["phase"], event["t"]))
        elif event.get("kind") == "fault":
            label = event["fault"]
            row = faults.setdefault(label, Row("fault", label, []))
            start = event.get("began", event["t"])
            if event["state"] == "on":
                opened[label] = start
            elif event["state"] == "off" and label in opened:
                row.spans.append((opened.pop(label), start))
    for label, start in opened.items():  # still on when the run ended (interrupted, stuck)
        faults[label].spans.append((start, end))
    probes = [Row("step" if p.kind == "step" else "probe", p.name,
                  [(p.started, p.started + p.duration)], p.verdict, p.phase)
              for p in result.probes if p.verdict != "skipped"]  # never ran: no span to draw
    return list(faults.values()) + probes, phases, end


def text(result, width: int = 48) -> list[str]:
    """Console lines: a bar per fault and probe over the run's duration."""
    all_rows, phases, end = rows(result)
    if not all_rows:
        return []
    scale = width / end
    label_width = min(34, max(len(r.label) for r in all_rows) + 2)
    lines = [f"{'timeline':<{label_width}}0s{' ' * (width - 2 - len(f'{end:.1f}s'))}{end:.1f}s"]
    for row in all_rows:
        cells = [" "] * width
        mark = {"fault": "█", "step": "◆"}.get(row.kind, "▬")
        for start, stop in row.spans:
            a = min(width - 1, int(start * scale))
            b = max(a + 1, min(width, int(stop * scale + 0.999)))
            cells[a:b] = [mark] * (b - a)
        label = (row.label[: label_width - 3] + "…") if len(row.label) > label_width - 2 else row.label
        suffix = f" {row.verdict}" if row.verdict else ""
        lines.append(f"{label:<{label_width}}{''.join(cells)}{suffix}")
    return lines


def svg(result) -> str:
    """A picture of the run: faults as amber bars, probes coloured by verdict, steps blue
    (red when not done), phases marked."""
    all_rows, phases, end = rows(result)
    left, right, top, row_h = 300, 30, 62, 22
    width = 1000
    plot = width - left - right
    height = top + row_h * max(1, len(all_rows)) + 40
    x = lambda t: left + plot * t / end  # noqa: E731 - a local scale

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="15" font-weight="bold">{escape(result.name)}</text>',
           f'<text x="10" y="38" fill="#555">{escape(result.status)} · {end:.2f}s · run '
           f'{escape(result.run_id)}</text>']
    last_label = -1e9
    for name, t in phases:
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 30}" '
                   f'stroke="{COLOURS["phase"]}" stroke-dasharray="3,3"/>')
        lift = 12 if x(t) - last_label < 50 else 0  # phases close together: labels on two lines
        last_label = x(t) if not lift else last_label
        out.append(f'<text x="{x(t) + 3:.1f}" y="{top - 8 - lift}" fill="#556">{escape(name)}</text>')
    for i, row in enumerate(all_rows):
        y = top + i * row_h
        colour = COLOURS["fault"] if row.kind == "fault" else COLOURS.get(row.verdict, "#777")
        if row.kind == "step" and row.verdict == "passed":
            colour = COLOURS["step"]  # a step done is an action, not a verdict: its own colour
        prefix = {"fault": "fault: ", "step": f"{row.phase} step: "}.get(row.kind, f"{row.phase}: ")
        out.append(f'<text x="10" y="{y + 15}">{escape((prefix + row.label)[:42])}</text>')
        for start, stop in row.spans:
            w = max(2.0, x(stop) - x(start))
            out.append(f'<rect x="{x(start):.1f}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
                       f'rx="3" fill="{colour}"><title>{escape(row.label)}: {start:.3f}s to '
                       f'{stop:.3f}s {escape(row.verdict)}</title></rect>')
        if row.verdict and row.verdict != "passed":
            out.append(f'<text x="{x(row.spans[0][1]) + 4:.1f}" y="{y + 15}" fill="{colour}">'
                       f'{escape(row.verdict)}</text>')
    axis_y = height - 24
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot}" y2="{axis_y}" stroke="#333"/>')
    for k in range(6):
        t = end * k / 5
        out.append(f'<text x="{x(t):.1f}" y="{axis_y + 16}" text-anchor="middle">{t:.1f}s</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_svg(result, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.name}.svg"
    path.write_text(svg(result))
    return path
