"""The validated-scenario cache and the run that uses it (chaos/scenario/cache.py,
chaos/fastrun.py): a second `chaos run` of the same bytes skips validation, imports none of
click, PyYAML and pydantic, and prints, reports and exits as the first did."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

from conftest import FAILING, ROOT, SCENARIOS, write

TRIVIAL = """\
name: trivial
description: one trivial probe, no fault
expect:
  during:
    - run: "true"
    - name: says hello
      run: echo hello
      stdout: {contains: hello}
"""

HEAVY = ("pydantic", "yaml", "click", "rich")

# The entry point users run, in a child that reports at exit which heavy modules it imported.
# BEFORE: Python run first (e.g. to change chaos.__version__).
WRAPPER = """\
import atexit, sys
{before}
atexit.register(lambda: sys.stderr.write("IMPORTED " + " ".join(
    m for m in {heavy!r} if m in sys.modules) + "\\n"))
sys.argv = ["chaos", *sys.argv[1:]]
from chaos.__main__ import main
main()
"""


def run(state: Path, *args: str, before: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    code = WRAPPER.format(before=before, heavy=HEAVY)
    env = {**os.environ, "CHAOS_STATE_DIR": str(state)}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=180)
    imported = re.findall(r"^IMPORTED(.*)$", done.stderr, re.M)
    assert imported, done.stdout + done.stderr
    return done, imported[-1].split()


def same(text: str) -> str:
    """Output without what differs between two runs: run ids, times, timeline bars."""
    text = re.sub(r"chaos-[0-9a-f]{6}", "RUN", text)
    text = re.sub(r"\d+(\.\d+)?(ms|s)\b", "T", text)  # 950ms one time, 1.2s the next
    text = re.sub(r"\d+(\.\d+)?(e-?\d+)?", "N", text)
    return re.sub(r" +", " ", re.sub(r"[▬█]", "", text))


def entries(state: Path) -> list[Path]:
    return sorted((state / "scenario-cache").glob("*.json"))


def test_a_hit_prints_reports_and_exits_as_a_miss_without_the_heavy_imports(tmp_path):
    state = tmp_path / "state"
    files = [str(write(tmp_path, TRIVIAL, "trivial.yaml")), str(write(tmp_path, FAILING, "f.yaml")),
             str(SCENARIOS / "dockerhub-hosts-entry.yaml")]
    first, heavy_first = run(state, "run", *files, "--json", str(tmp_path / "1.json"))
    assert first.returncode == 1, first.stdout + first.stderr  # the failing one
    assert "pydantic" in heavy_first and "yaml" in heavy_first  # validated: a miss
    assert len(entries(state)) == 3
    second, heavy_second = run(state, "run", *files, "--json", str(tmp_path / "2.json"))
    assert heavy_second == [], second.stderr
    assert second.returncode == first.returncode
    assert same(second.stdout) == same(first.stdout)
    assert "hello" in second.stdout and "expected 200" in second.stdout
    assert re.sub(r"^IMPORTED.*\n", "", second.stderr, flags=re.M) == re.sub(
        r"^IMPORTED.*\n", "", first.stderr, flags=re.M)
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in (1, 2))
    assert same(json.dumps(two, sort_keys=True)) == same(json.dumps(one, sort_keys=True))
    assert [s["status"] for s in two["scenarios"]] == ["passed", "failed", "passed"]


def test_host_run_and_plan_refusal_from_the_cache(tmp_path):
    state = tmp_path / "state"
    trivial = str(write(tmp_path, TRIVIAL, "trivial.yaml"))
    for expect_heavy in (True, False):
        done, heavy = run(state, "run", "--host", trivial)
        assert done.returncode == 0, done.stdout + done.stderr
        assert bool(heavy) is expect_heavy
        assert "passed 2/2 probes passed" in done.stdout
    # A plan refusal leaves no trace, no cache entry either: located alike every time.
    refused = str(write(tmp_path, FAILING.replace("[registry.test]", "['0.0.0.0/0']")))
    entries = sorted((state / "scenario-cache").iterdir())
    for _ in range(2):
        done, heavy = run(state, "run", refused)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "s.yaml:7:20: faults[0].destinations[0]: 0.0.0.0/0 covers every address" in done.stdout
        assert "pydantic" in heavy
    assert sorted((state / "scenario-cache").iterdir()) == entries


def test_a_changed_file_version_or_option_misses(tmp_path):
    state = tmp_path / "state"
    path = write(tmp_path, TRIVIAL, "trivial.yaml")
    assert run(state, "run", "--host", str(path))[1]  # validated, recorded
    assert run(state, "run", "--host", str(path))[1] == []  # a hit
    path.write_text(TRIVIAL + "# changed\n")
    done, heavy = run(state, "run", "--host", str(path))
    assert "pydantic" in heavy and done.returncode == 0
    done, heavy = run(state, "run", "--host", str(path), before="import chaos; chaos.__version__ += '.1'")
    assert "pydantic" in heavy and done.returncode == 0
    # An option the cached path does not take: the click CLI, which validates again.
    done, heavy = run(state, "run", "--host", str(path), "--junit", str(tmp_path / "r.xml"))
    assert done.returncode == 0 and "pydantic" in heavy and (tmp_path / "r.xml").exists()
    done, heavy = run(state, "run", "--host", str(path), "--nope")
    assert done.returncode == 2 and "No such option '--nope'" in done.stderr and "click" in heavy


def test_a_corrupted_foreign_or_open_entry_is_not_trusted(tmp_path):
    state = tmp_path / "state"
    path = str(write(tmp_path, TRIVIAL, "trivial.yaml"))
    run(state, "run", "--host", path)
    (entry,) = entries(state)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    good = entry.read_text()
    doc = json.loads(good)
    # A class of another module (the entry is never a way to call into anything else).
    foreign = json.dumps({**doc, "scenario": {**doc["scenario"], "$m": ["os", "system", []]}})
    wrong_fields = good.replace('"description":', '"surprise":', 1)
    for broken in ("{not json", "", foreign, wrong_fields):
        entry.write_text(broken)
        done, heavy = run(state, "run", "--host", path)
        assert done.returncode == 0 and "passed 2/2" in done.stdout, done.stdout + done.stderr
        assert "pydantic" in heavy  # the normal path, which wrote the entry anew
        assert entry.read_text() == good
    entry.chmod(0o644)  # others could have written it: not read
    done, heavy = run(state, "run", "--host", path)
    assert done.returncode == 0 and "pydantic" in heavy


def test_light_models_dump_as_pydantic_does(tmp_path):
    """Every fault and probe of the shipped scenarios, rebuilt on the light base, gives
    what pydantic gives for each model_dump the run path asks."""
    code_pydantic = """\
import json, sys
from pathlib import Path
from chaos.scenario import cache
from chaos.scenario.load import load
out = {"entries": [], "dumps": []}
KW = [dict(), dict(mode="json"), dict(mode="json", by_alias=True, exclude_none=True),
      dict(exclude_defaults=True), dict(exclude_none=True)]
for f in sys.argv[1:]:
    s = load(f)
    out["entries"].append(cache.encode(s))
    models = [*s.faults, *(p for ph in ("before", "during", "after") for p in getattr(s.expect, ph))]
    out["dumps"].append([[repr(m.model_dump(**kw)) for kw in KW] for m in models]
                        + [sorted(m.model_fields_set) for m in models])
print(json.dumps(out))
"""
    code_light = """\
import json, sys
from chaos import startup
startup.light_models = True
from chaos.scenario import cache
KW = [dict(), dict(mode="json"), dict(mode="json", by_alias=True, exclude_none=True),
      dict(exclude_defaults=True), dict(exclude_none=True)]
got = json.loads(sys.stdin.read())
dumps = []
for e in got["entries"]:
    s = cache._Decoder().decode(e)
    models = [*s.faults, *(p for ph in ("before", "during", "after") for p in getattr(s.expect, ph))]
    dumps.append([[repr(m.model_dump(**kw)) for kw in KW] for m in models]
                 + [sorted(m.model_fields_set) for m in models])
print(json.dumps({"dumps": dumps, "heavy": [m for m in ("pydantic", "yaml") if m in sys.modules]}))
"""
    files = sorted(str(p) for p in [*SCENARIOS.glob("*.yaml"), *SCENARIOS.glob("registry/*.yaml")])
    env = {**os.environ, "CHAOS_STATE_DIR": str(tmp_path)}
    made = subprocess.run([sys.executable, "-c", code_pydantic, *files], capture_output=True,
                          text=True, cwd=ROOT, env=env, check=True)
    expected = json.loads(made.stdout)
    rebuilt = subprocess.run([sys.executable, "-c", code_light], input=made.stdout,
                             capture_output=True, text=True, cwd=ROOT, env=env, check=True)
    got = json.loads(rebuilt.stdout)
    assert got["heavy"] == []
    assert len(got["dumps"]) == len(files)
    for name, mine, theirs in zip(files, got["dumps"], expected["dumps"], strict=True):
        assert mine == theirs, Path(name).name


def test_a_signal_stops_a_cached_run_as_any_run(tmp_path):
    """SIGTERM while a cached run's faults are on: reverted, exit 143, journal closed. The
    first run (validated, recorded in the cache: a dry run records nothing) is stopped the
    same way."""
    from test_crash import LONG, _wait_for_faults

    state = tmp_path / "state"
    path = str(write(tmp_path, LONG))
    env = {**os.environ, "CHAOS_STATE_DIR": str(state)}
    imported = []
    for _ in ("validated", "cached"):
        proc = subprocess.Popen([sys.executable, "-c", WRAPPER.format(before="", heavy=HEAVY), "run", path],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        _wait_for_faults(state, proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 143, out
        assert "reverted everything" in out
        assert not list((state / "runs").glob("*/journal.jsonl")), "a clean stop closes its journal"
        imported += [m.split() for m in re.findall(r"^IMPORTED(.*)$", out, re.M)]
    assert "pydantic" in imported[0] and imported[1:] == [[]], imported  # then the cached path


def test_model_modules_take_pydantic_names_from_modelbase():
    """A model module importing pydantic itself would give the cached run a pydantic base
    beside the light one (docs/architecture.md, "Writing a fault type")."""
    modules = [ROOT / "chaos/scenario/model.py", *(ROOT / "chaos").glob("faults/*.py"),
               *(ROOT / "chaos").glob("probes/*.py"), *(ROOT / "chaos").glob("steps/*.py")]
    direct = [str(p.relative_to(ROOT)) for p in modules
              if re.search(r"^\s*(from pydantic\b|import pydantic\b)", p.read_text(), re.M)]
    assert direct == []
