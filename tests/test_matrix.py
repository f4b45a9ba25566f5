"""The resilience matrix (`chaos run --matrix DIR`): a CI-sized slice of the library against
the real lab, its page opened in a real browser (Debian's chromium, headless), a cell that
never ends stopped and judged hung, and the input it refuses."""

from __future__ import annotations

import json
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest

from conftest import SCENARIOS, require_binaries, write

LIBRARY = SCENARIOS / "registry"
# The two fastest library scenarios (docs/registry-library.md): a few seconds each.
SLICE = [LIBRARY / "01-hosts-redirect-upstream.yaml", LIBRARY / "08-token-server-down.yaml"]
CLIENTS = ["dockerd", "containerd"]
CACHES = ["distribution", "nginx"]
# chaos.report.timeline.COLOURS: how the page draws a cell of each verdict
VERDICTS = {"passed": (0x2E, 0x9E, 0x4F), "failed": (0xD6, 0x45, 0x41), "hung": (0x9B, 0x59, 0xB6)}


class Cells(HTMLParser):
    """The matrix cells (td.cell) of a DOM and the links in each."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict] = []
        self._in: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "td" and "cell" in (attrs.get("class") or "").split():
            self._in = {**attrs, "links": []}
            self.cells.append(self._in)
        elif tag == "a" and self._in is not None:
            self._in["links"].append(attrs["href"])

    def handle_endtag(self, tag):
        if tag == "td":
            self._in = None


def chromium(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={cwd / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def assert_left_nothing(run_ids: list[str]) -> None:
    """No namespace, route or filter rule of these runs remains (named by run id: other
    runs on the machine may come and go meanwhile)."""
    assert run_ids and all(run_ids)
    left = "".join(subprocess.run(cmd, capture_output=True, text=True).stdout for cmd in (
        ["ip", "netns", "list"], ["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"],
        ["ip", "route", "show", "table", "all"]))
    for run_id in run_ids:
        assert run_id not in left, f"{run_id} left: {left}"


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit non-interlaced PNG, as chromium's
    screenshots are."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and not interlace, (depth, colour, interlace)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytes(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


def count_colour(path: Path, rgb: tuple[int, int, int]) -> int:
    width, bpp, rows = png_pixels(path)
    return sum(row[x * bpp:x * bpp + 3] == bytes(rgb) for row in rows for x in range(width))


@pytest.mark.usefixtures("lab_binaries")
def test_matrix_slice_and_its_page_in_a_browser(chaos, tmp_path):
    require_binaries("chromium", why="the matrix page is opened in")
    require_binaries("nginx", why="the nginx cache needs")
    folder = tmp_path / "matrix"
    result = chaos("run", *map(str, SLICE), "--matrix", str(folder), "--clients", ",".join(CLIENTS),
                   "--caches", ",".join(CACHES), "--baseline", str(LIBRARY / "baseline.json"),
                   timeout=900)
    matrix = json.loads((folder / "matrix.json").read_text())
    cells = matrix["cells"]
    assert [(c["file"], c["client"], c["cache"]) for c in cells] == \
        [(str(f), cl, ca) for f in SLICE for cl in CLIENTS for ca in CACHES]
    progress = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == len(cells), result.stdout + result.stderr
    for n, (line, cell) in enumerate(zip(progress, cells, strict=True), 1):
        assert line.startswith(f"[{n}/{len(cells)}] {Path(cell['file']).stem}  "
                               f"{cell['client']} × {cell['cache']}  {cell['verdict']}  "), line
        assert line.endswith(f"baseline: {cell['baseline']}"), line
    checked_before = 0
    for cell in cells:
        (report,) = json.loads((folder / cell["reports"]["json"]).read_text())["scenarios"]
        verdicts = {p["verdict"] for p in report["probes"]}
        judged = next((v for v in ("error", "hung", "failed") if v in verdicts), "passed")
        assert (report["file"], cell["verdict"]) == (cell["file"], judged), cell
        compared = report["baseline"]
        assert cell["baseline"] == ("worse" if compared["worse"] else "better" if compared["better"]
                                    else "as recorded"), (cell, compared)
        assert 0 < report["duration"] <= cell["seconds"]
        command = (folder / cell["reports"]["log"]).read_text().splitlines()[0]
        assert f"--client {cell['client']} --cache {cell['cache']}" in command, command
        assert "<testsuite" in (folder / cell["reports"]["junit"]).read_text()
        if (cell["client"], cell["cache"]) == ("dockerd", "distribution"):
            assert cell["baseline"] == "as recorded", cell  # the pair the baseline records
        # the slice's two drills hold for every pair (docs/matrix.md, "Measured"); containerd
        # through nginx failed both while nginx cached the 401s of tokenless requests
        assert cell["verdict"] == "passed", cell
        # whatever a fault does to a pair, the pair must work before it: every client pulls
        # through every cache while Hub is well (containerd through nginx once did not)
        before = [(p["name"], p["verdict"]) for p in report["probes"] if p["phase"] == "before"]
        assert all(v == "passed" for _, v in before), (cell, before)
        checked_before += len(before)
    assert checked_before >= len(CLIENTS) * len(CACHES)  # 01 has one in each cell
    assert result.returncode == (0 if all(c["baseline"] == "as recorded" for c in cells) else 1), \
        result.stdout + result.stderr
    markdown = (folder / "matrix.md").read_text()
    for verdict in VERDICTS:
        shown = markdown.count(f"[{verdict} ") + markdown.count(f"[**{verdict}** ")
        assert shown == sum(c["verdict"] == verdict for c in cells), (verdict, markdown)

    page = (folder / "index.html").as_uri()
    dom = chromium("--dump-dom", page, cwd=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = Cells()
    parsed.feed(dom.stdout)
    assert sorted((c["data-scenario"], c["data-client"], c["data-cache"], c["data-verdict"])
                  for c in parsed.cells) == \
        sorted((Path(c["file"]).stem, c["client"], c["cache"], c["verdict"]) for c in cells)
    for cell in parsed.cells:
        assert len(cell["links"]) == 3, cell  # JSON, JUnit, log
        for href in cell["links"]:
            target = Path(unquote(urlparse(urljoin(page, href)).path))
            assert target.is_file() and target.stat().st_size > 0, href

    shot = tmp_path / "shot.png"
    rendered = chromium("--hide-scrollbars", "--window-size=1800,800", f"--screenshot={shot}", page,
                        cwd=tmp_path)
    assert rendered.returncode == 0 and shot.exists(), rendered.stderr[-2000:]
    # each cell is some 200 x 60 pixels of its verdict's colour; the legend's box far less
    for verdict, rgb in VERDICTS.items():
        drawn = sum(c["verdict"] == verdict for c in cells)
        if drawn:
            assert count_colour(shot, rgb) > drawn * 5000, verdict
    assert_left_nothing([json.loads((folder / c["reports"]["json"]).read_text())["scenarios"][0]
                         ["run_id"] for c in cells])


NEVER_ENDS = """\
name: matrix-never-ends
lab: registry
expect:
  before:
    - name: a probe that outlives the cell
      run: sleep 300
      within: 400s
"""


@pytest.mark.usefixtures("lab_binaries")
def test_a_cell_that_never_ends_is_stopped_and_hung(chaos, tmp_path):
    folder = tmp_path / "matrix"
    path = write(tmp_path, NEVER_ENDS)
    result = chaos("run", str(path), "--matrix", str(folder), "--caches", "distribution",
                   "--cell-timeout", "20s", timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    (cell,) = json.loads((folder / "matrix.json").read_text())["cells"]
    assert cell["verdict"] == "hung" and "SIGTERM" in cell["why"], cell
    assert 20 <= cell["seconds"] < 80, cell
    assert cell["exit_code"] == 143  # the run was terminated and reverted, like any SIGTERM
    assert "hung" in (folder / "matrix.md").read_text()
    (report,) = json.loads((folder / cell["reports"]["json"]).read_text())["scenarios"]
    assert report["status"] == "interrupted" and report["run_id"], report
    assert_left_nothing([report["run_id"]])


NOT_LAB = """\
name: not-lab
expect:
  before:
    - name: a command
      run: "true"
"""


@pytest.mark.parametrize("args, message", [
    (["--clients", "cri-o"], "--clients: cri-o: choose among"),
    (["--caches", "varnish"], "--caches: varnish: choose among"),
    (["--json", "x.json"], "--json cannot go with it"),
    (["--cache", "nginx"], "--cache cannot go with it"),
    (["--client", "podman"], "--client cannot go with it"),
])
def test_matrix_refuses_bad_input(chaos, tmp_path, args, message):
    result = chaos("run", str(SLICE[0]), "--matrix", str(tmp_path / "m"), *args)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "m").exists()


def test_matrix_refuses_scenarios_without_the_lab(chaos, tmp_path):
    result = chaos("run", str(write(tmp_path, NOT_LAB)), "--matrix", str(tmp_path / "m"))
    assert result.returncode == 2 and "lab scenarios (lab: registry) only" in result.stderr
    assert not (tmp_path / "m").exists()


def test_matrix_options_need_the_matrix(chaos):
    result = chaos("run", str(SLICE[0]), "--clients", "dockerd")
    assert result.returncode == 2 and "go with --matrix DIR" in result.stderr


def test_matrix_refuses_two_files_of_one_name(chaos, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [write(tmp_path / d, SLICE[0].read_text(), "x.yaml") for d in ("a", "b")]
    result = chaos("run", *map(str, paths), "--matrix", str(tmp_path / "m"))
    assert result.returncode == 2 and "two scenario files named x" in result.stderr, result.stderr
    assert not (tmp_path / "m").exists()


def test_before_only_copies_keep_the_steady_state_and_refuse_none(tmp_path):
    """scripts/before-only (docs/matrix.md's steady-state matrix): each library scenario with
    its lab, faults and `before` probes, nothing else; a scenario with no steady state to
    check is refused by name instead of passing on nothing."""
    import sys

    import yaml

    script = [sys.executable, str(LIBRARY.parent.parent / "scripts" / "before-only")]
    done = subprocess.run([*script, str(LIBRARY), str(tmp_path / "out")], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    copies = sorted((tmp_path / "out").glob("*.yaml"))
    assert [c.name for c in copies] == [p.name for p in sorted(LIBRARY.glob("*.yaml"))]
    for copy in copies:
        doc, original = yaml.safe_load(copy.read_text()), yaml.safe_load((LIBRARY / copy.name).read_text())
        assert list(doc["expect"]) == ["before"] and doc["expect"]["before"], copy.name
        assert doc["expect"]["before"] == original["expect"]["before"]
        assert (doc.get("lab"), doc.get("faults")) == (original.get("lab"), original.get("faults"))
    bare = write(tmp_path, "name: x\nfaults: []\nexpect:\n  during:\n    - run: 'true'\n")
    refused = subprocess.run([*script, str(bare), str(tmp_path / "out2")], capture_output=True,
                             text=True, check=False)
    assert refused.returncode == 1 and f"{bare.name} has no before probes" in refused.stderr
