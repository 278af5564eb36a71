"""The repository keeps its promises: CI runs the README's test command, and the docs list every
field of the schema."""

from __future__ import annotations

import json
import re

from conftest import REPO


def fenced_lines(markdown: str, heading: str) -> list[str]:
    section = markdown.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (REPO / "README.md").read_text()
    (command,) = fenced_lines(readme, "Tests")
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd "))
    ]
    assert ci == [command]


def test_readme_install_command_compiles_the_active_config():
    (command,) = fenced_lines((REPO / "README.md").read_text(), "Quick start")[:1]
    assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e .")
    assert command.endswith("mhgen compile etc/training.json")


def test_etc_readme_documents_every_field():
    schema = json.loads((REPO / "schema" / "training.schema.json").read_text())
    documented = set(
        re.findall(r"^\| `([^`]+)` \|", (REPO / "etc" / "README.md").read_text(), re.M)
    )
    assert set(schema["properties"]) <= documented


def test_test_extra_pins_exactly_the_versions_bundles_promise():
    import tomllib

    from mhgen.pins import TESTED

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    pinned = dict(line.split("==") for line in extra if "==" in line)
    assert pinned == TESTED


def test_a_missing_training_package_fails_the_run_instead_of_skipping(tmp_path):
    import os
    import subprocess
    import sys

    blocked = tmp_path / "trl"
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('trl is blocked by this test')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "CI": "true", "MHGEN_SKIP_TRAINING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(REPO / "tests" / "test_train_e2e.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "trl cannot be imported (trl is blocked by this test)" in proc.stdout
