"""Every example of README.md and docs/ runs as written, and docs/results.md's tables are generated.

Each ```python, ```bash or ```sh block of README.md and docs/**/*.md runs by default: python with
this interpreter, shell with this interpreter's bin/ first on PATH (so ``lever-transfer`` is this
install's), in an empty folder, with LEVER_HUB in it (hub: names resolve to the shipped zoo) and
HF_HUB_OFFLINE=1. The line right before a fence may say otherwise:

    <!-- not run: why -->     only compiled (python) or parsed (bash -n): long trainings, network
    <!-- slow: why -->        runs, under @pytest.mark.slow: it starts an environment or trains
    <!-- needs: MODULE -->    runs once MODULE can be imported (an API that lands later)

```yaml blocks are parsed. The README's two set-up commands are checked word for word (CI runs
the second, .ci/run), and docs/results/build.py --check regenerates every results table.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(?P<lang>\w+)\n(?P<code>.*?)^```$", re.M | re.S)
MARKER = re.compile(r"^<!--\s*(?P<kind>not run|slow|needs):\s*(?P<note>.*?)\s*-->$")
LANGS = {"python", "bash", "sh", "yaml"}
INSTALL_AND_RUN = ('pip install torch==2.13.0 -e ".[all]" && lever-transfer finetune --from '
                   'hub:walker_stand-60k --to quickstart --transfer full --set action_repeat=4')
TEST = 'pip install -q torch==2.13.0 -e ".[test]" && python -m pytest -q -n auto --dist loadfile'


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence
    lang: str
    code: str
    kind: str | None  # the marker's: "not run", "slow", "needs", or None (it runs)
    note: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def read_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for match in FENCE.finditer(text):
        if match["lang"] not in LANGS:
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        marker = MARKER.match(before)
        found.append(Block(str(path.relative_to(ROOT)), line, match["lang"], match["code"],
                           marker["kind"] if marker else None, marker["note"] if marker else ""))
    return found


BLOCKS = [block for page in PAGES for block in read_blocks(page)]


def _param(block: Block):
    marks = [pytest.mark.slow] if block.kind == "slow" else []
    return pytest.param(block, id=block.id, marks=marks)


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent is missing, or is a module where a package will be
        return False


def _environment(folder: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "LEVER_HUB": str(folder / "hub"), "HF_HUB_OFFLINE": "1",
            "SDL_VIDEODRIVER": "dummy", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def _check_syntax(block: Block, folder: Path) -> None:
    if block.lang == "python":
        compile(block.code, block.id, "exec")
    elif block.lang == "yaml":
        yaml.safe_load(block.code)
    else:
        script = folder / "example.sh"
        script.write_text(block.code)
        parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert parsed.returncode == 0, f"{block.id} does not parse:\n{parsed.stderr}"


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_the_example_runs_as_written(block: Block, tmp_path: Path) -> None:
    _check_syntax(block, tmp_path)
    if block.kind == "not run" or block.lang == "yaml":
        assert block.kind != "not run" or block.note, f"{block.id}: say why it is not run"
        return
    if block.kind == "needs" and not _importable(block.note):
        pytest.skip(f"{block.id} needs {block.note}, which this version does not have yet")
    if block.lang == "python":
        script = tmp_path / "example.py"
        command = [sys.executable, str(script)]
    else:
        script = tmp_path / "example.sh"
        command = ["bash", "-euo", "pipefail", str(script)]
    script.write_text(block.code)
    done = subprocess.run(command, cwd=tmp_path, env=_environment(tmp_path),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (f"{block.id} failed (exit {done.returncode}):\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")


def test_every_page_has_examples_and_markers_are_known() -> None:
    """A marker with a typo (<!-- not-run -->) would silently run a training: refuse it."""
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/zoo.md", "docs/results.md"}
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith("<!--") and re.match(r"<!--\s*(not.?run|slow|needs)", line):
                assert MARKER.match(line.strip()), f"{page.name}:{number}: malformed {line!r}"


def test_the_readme_keeps_its_two_setup_commands() -> None:
    """Exactly two commands under "Set-up", word for word: one installs and runs the main job
    on the shipped encoder, one runs the tests; CI runs the second as the README gives it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Set-up: the two commands", 1)[1].split("\n## ", 1)[0]
    commands = [m["code"].strip() for m in FENCE.finditer(section)]
    assert commands == [INSTALL_AND_RUN, TEST]
    assert TEST in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_results_tables_are_generated_from_the_committed_runs() -> None:
    """docs/results/build.py regenerates every marked table of docs/results.md, and its
    table.md and table.csv, from the run folders; what is committed must be what it writes."""
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "results" / "build.py"),
                           "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_layout_names_every_module() -> None:
    """The README's layout is drawn from the tree: a module added, moved or renamed without
    updating it fails here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1]
    package = ROOT / "lever_transfer"
    missing = [str(path.relative_to(package)) for path in sorted(package.rglob("*.py"))
               if path.name not in ("__init__.py", "__main__.py") and path.name not in layout]
    missing += [f"{d.name}/" for d in sorted(package.iterdir())
                if (d / "__init__.py").is_file() and f"{d.name}/" not in layout]
    assert not missing, f"README layout lacks {missing}"
