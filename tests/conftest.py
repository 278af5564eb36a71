"""Shared helpers: the repository's paths, config writers and in-process / subprocess CLI runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the property tests with a fixed seed, so a run is reproducible; local runs explore anew.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
ETC = REPO / "etc"
EMITTED = REPO / "emitted"

MINIMAL = {"base_model": "Qwen/Qwen3-8B", "chat_template": "auto", "system_prompt": "Be brief."}
# one model per chat format and variant, and the format of the tiny tokenizer that stands in for it
FORMATS = {  # model name (drives auto-detection) -> tiny tokenizer format
    "Qwen/Qwen3-8B": "chatml",
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": "chatml",
    "openai/gpt-oss-20b": "harmony",
    "meta-llama/Llama-2-7b-chat-hf": "llama",
    "meta-llama/Llama-3.1-8B-Instruct": "llama3",
    "mistralai/Mistral-7B-Instruct-v0.3": "mistral",
}


def emitted(tmp_path: Path, model: str, **settings) -> dict:
    """The functions and constants of the script compiled for ``model`` (auto chat format, no
    system prompt, harmony's date fixed, unless ``settings`` say otherwise), run as a module (not
    importable: datasets pickles its functions whole)."""
    from mhgen.pipeline import compile_config

    config = {
        "base_model": model,
        "chat_template": "auto",
        "system_prompt": "",
        "chat_template_date": "2025-01-01",
        **settings,
    }
    namespace = {"__name__": "emitted"}
    exec(compile(compile_config(write_config(tmp_path, config)).text, "emitted", "exec"), namespace)
    return namespace


def write_rows(path: Path, items: list) -> None:
    """A JSONL file of ``items``: each a row (written as JSON) or a line as it is."""
    path.write_text(
        "".join(r + "\n" if isinstance(r, str) else json.dumps(r) + "\n" for r in items)
    )


def as_lists(dataset) -> list[dict]:
    """The input_ids and labels of a tokenized dataset's examples."""
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in dataset]


def require(*modules: str) -> None:
    """Import what a test module needs of the training stack, or fail the whole run.

    The README's test command installs that stack, so a missing package is a broken install, not
    a reason to skip: a skip would leave CI green with the training tests never run. Only outside
    CI, with MHGEN_SKIP_TRAINING=1 set on purpose, does a missing package skip the module instead.
    """
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if os.environ.get("MHGEN_SKIP_TRAINING") == "1" and not os.environ.get("CI"):
                pytest.skip(f"{name} is not installed", allow_module_level=True)
            pytest.fail(
                f"{name} cannot be imported ({exc}); the README's test command installs it "
                "(pip install -e '.[test]')",
                pytrace=False,
            )


def write_config(directory: Path, data: dict | str | bytes, name: str = "config.json") -> Path:
    path = directory / name
    if isinstance(data, dict):
        data = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None):
    """mhgen in a child process, exactly as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mhgen", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def cli(capsys):
    """mhgen in this process (fast): returns (exit code, stdout, stderr)."""
    from mhgen.cli import main

    def call(*args: str):
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call
