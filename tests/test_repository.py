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
