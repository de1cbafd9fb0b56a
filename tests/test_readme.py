"""The README's workflow examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"<!-- readme-test: (\w+) -->\n```(python|bash)\n(.*?)```", re.S)


def _examples() -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for name, lang, code in BLOCK.findall(README.read_text(encoding="utf-8")):
        out.setdefault(name, []).append((lang, code))
    return out


def test_readme_has_the_workflow_examples():
    assert set(_examples()) == {"search", "generator", "monitoring", "monitoring_cli"}


@pytest.mark.parametrize("name", sorted(_examples()))
def test_readme_example_runs(name, tmp_path):
    pytest.importorskip("uproot")
    pytest.importorskip("matplotlib")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    bindir = str(Path(sys.executable).parent)  # the `nplearn` script of this environment
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    for i, (lang, code) in enumerate(_examples()[name]):
        if lang == "python":
            # run as a script file, as a user would: worker processes are spawned and
            # re-import it, so a missing `if __name__ == "__main__":` guard fails here
            script = tmp_path / f"{name}_{i}.py"
            script.write_text(code)
            cmd = [sys.executable, str(script)]
        else:
            cmd = ["bash", "-e", "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{lang} block of {name!r} failed:\n{proc.stderr[-3000:]}"
    if name == "search":
        assert (tmp_path / "search.json").exists()
        assert (tmp_path / "search_plots" / "z_vs_width.png").exists()
        assert (tmp_path / "search_plots_again" / "features.pdf").exists()
    if name == "monitoring":
        lines = proc.stdout.strip().splitlines()
        assert len(lines) == 4 and all(ln.startswith("block") for ln in lines)
    if name == "monitoring_cli":
        import json

        loaded = [json.loads((tmp_path / f"block{b}.json").read_text())["provenance"]
                  ["execution"]["from_checkpoint"] for b in range(3)]
        assert loaded == [0, 50, 50]  # the toys run once, for the first block
        assert len(proc.stdout.strip().splitlines()) == 3


def test_quick_start_is_two_commands():
    text = README.read_text(encoding="utf-8")
    quick = text[text.index("## Quick start"):text.index("\n## ", text.index("## Quick start") + 5)]
    blocks = re.findall(r"```bash\n(.*?)```", quick, re.S)
    assert [b.strip() for b in blocks] == [
        "pip install torch==2.13.0 . && nplearn demo",
        'pip install torch==2.13.0 -e ".[test]" && python -m pytest',
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install torch==2.13.0 -e ".[test]" && python -m pytest' in ci
