"""Mistakes a new user makes, tried as one would: each gets one clear line naming what to change,
never a traceback, and loses nothing. Config files have their own table (test_bad_configs.py);
these are the command line's and the emitted script's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ETC, MINIMAL, run_cli, write_config
from mhgen.pipeline import compile_config
from mhgen.write import write


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copytree(ETC, tmp_path / "etc")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def blocked(tmp_path: Path, *modules: str) -> dict:
    """An environment in which importing ``modules`` fails, as when they are not installed."""
    shadow = tmp_path / "shadow"
    for name in modules:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ModuleNotFoundError({name!r})\n")
    return {**os.environ, "PYTHONPATH": str(shadow)}


# (arguments, exit code, the one line mhgen prints on stderr)
CLI_CASES = [
    (["new", "x", "--from", "/nonexistent.json"], 2, "mhgen: /nonexistent.json: no such config file"),
    (["new", "x", "--from", "no-such-name"], 2, "mhgen: no etc/training-no-such-name.json; available: gpt-oss-20b, qwen3-8b, qwen3-8b-dpo, qwen3-coder-30b"),
    (["new", "qwen3-8b", "--from", "qwen3-8b"], 1, "mhgen: etc/training-qwen3-8b.json already exists; choose another name, or edit that file"),
    (["plan", "etc/training.json", "--gpu-memory", "0"], 2, "mhgen plan: error: argument --gpu-memory: '0': a GPU's memory is a number of GB above 0"),
    (["plan", "etc/training.json", "--gpu-memory", "-5"], 2, "mhgen plan: error: argument --gpu-memory: '-5': a GPU's memory is a number of GB above 0"),
    (["plan", "etc/training.json", "--gpu-memory", "nan"], 2, "mhgen plan: error: argument --gpu-memory: 'nan': a GPU's memory is a number of GB above 0"),
    (["plan", "etc/training.json", "--gpu-memory", "lots"], 2, "mhgen plan: error: argument --gpu-memory: 'lots' is not a number of GB"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "line"), CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES]
)
def test_command_line_mistakes(project, args, code, line):
    proc = run_cli(*args, cwd=project)
    assert proc.returncode == code
    assert proc.stderr.strip().splitlines()[-1] == line
    assert "Traceback" not in proc.stderr


def test_the_plan_never_suggests_more_than_a_config_allows(project, cli):
    code, out, _ = cli("plan", "etc/training.json", "--gpu-memory", "1e6")
    assert code == 0
    assert "largest batch 4096 (the most a config allows) at 1024 tokens" in out


def test_a_refusal_to_replace_a_file_exits_1_everywhere(project, cli):
    active = project / "etc" / "training.json"
    active.write_text(active.read_text().replace('"lora_rank": 8', '"lora_rank": 9'))
    assert cli("use", "qwen3-8b")[0] == 1
    box = project / "box"
    box.mkdir()
    (box / "README.md").write_text("mine\n")
    assert cli("bundle", "etc/training-qwen3-8b.json", "-o", str(box))[0] == 1
    assert cli("new", "qwen3-8b")[0] == 1
    assert (box / "README.md").read_text() == "mine\n"


def test_use_keeps_one_active_config_whatever_the_format(project, cli):
    yaml_config = project / "etc" / "training-small.yaml"
    yaml_config.write_text("base_model: Qwen/Qwen3-8B\nchat_template: auto\nsystem_prompt: ''\n")
    assert cli("use", "small")[0] == 0
    assert sorted(p.name for p in (project / "etc").glob("training.*")) == ["training.yaml"]
    assert cli("use", "qwen3-8b")[0] == 0
    assert sorted(p.name for p in (project / "etc").glob("training.*")) == ["training.json"]


def test_check_gives_advice_that_works(project, cli):
    assert cli("compile", *map(str, sorted((project / "etc").glob("training-*.json"))))[0] == 0
    script = project / "emitted" / "train_qwen3_8b.py"
    script.write_text(script.read_text().replace("LORA_RANK = 16", "LORA_RANK = 32"))
    (project / "emitted" / "train_stray.py").write_text("print('mine')\n")
    code, out, _ = cli("check")
    assert code == 1
    advice = out.splitlines()[-1]
    assert advice == (
        "mhgen check: 2 file(s) out of date; to fix: mhgen compile --force "
        "etc/training-qwen3-8b.json; rm emitted/train_stray.py"
    )
    # following it makes check pass
    assert cli("compile", "--force", "etc/training-qwen3-8b.json")[0] == 0
    (project / "emitted" / "train_stray.py").unlink()
    assert cli("check")[0] == 0


def test_a_closed_pipe_is_not_a_traceback(project):
    proc = subprocess.run(
        f"{sys.executable} -m mhgen diff etc/training-qwen3-8b.json etc/training-gpt-oss-20b.json"
        " | head -n 1",
        shell=True, cwd=project, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.stdout.count("\n") == 1
    assert proc.stderr == ""


def test_smoke_without_the_training_stack_says_what_to_install(project):
    before = set(Path(tempfile.gettempdir()).glob("mhgen-smoke-*"))
    env = blocked(project, "torch", "trl")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "smoke", "etc/training-qwen3-8b.json"],
        cwd=project, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "mhgen: mhgen smoke trains for real and needs torch, trl, peft, accelerate, bitsandbytes: "
        "pip install -e '.[train]' (with the torch build for your machine)"
    )  # peft, accelerate and bitsandbytes import torch, so they cannot be imported either
    assert set(Path(tempfile.gettempdir()).glob("mhgen-smoke-*")) == before  # nothing left


def emitted_script(directory: Path, **settings) -> Path:
    data = directory / "train.jsonl"
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}
    data.write_text(json.dumps(row) + "\n")
    config = {**MINIMAL, "dataset_path": str(data), **settings}
    compiled = compile_config(write_config(directory, config, "training-x.json"))
    path = directory / compiled.plan.script_name
    write(path, compiled.text)
    return path


def test_the_script_without_its_libraries_says_what_to_install(tmp_path):
    script = emitted_script(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(script), "--dry-run"],
        capture_output=True, text=True, env=blocked(tmp_path, "transformers"), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: this run needs transformers, not installed here: install the dependencies "
        "listed at the top of this script (uv run train_x.py does)"
    )


def test_mhgen_run_dry_run_without_the_libraries_is_one_line_too(tmp_path):
    emitted_script(tmp_path)
    env = blocked(tmp_path, "transformers")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "run", "training-x.json", "-o", ".", "--", "--dry-run"],
        cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: this run needs transformers")
    assert "Traceback" not in proc.stderr


def test_a_model_that_cannot_be_fetched_is_named_in_one_line(tmp_path):
    script = emitted_script(tmp_path, base_model="nobody-here/no-such-model")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(script), "--dry-run"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    assert (
        "downloading the tokenizer of nobody-here/no-such-model from the Hugging Face Hub"
        in proc.stdout
    )
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(
        "error: cannot load the tokenizer of base_model 'nobody-here/no-such-model': "
    )
