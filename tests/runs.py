"""Helpers for the tests that run an emitted script as a process: a tiny Qwen3 model and data,
the script of a small config, running it (with a signal or a fault injected), and reading what
it left in its output folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import write_config
from mhgen.pipeline import compile_config
from mhgen.write import write

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
STEPS = 120  # the default max_steps of script_for


def tiny_model_and_data(root: Path) -> tuple[Path, Path]:
    """A tiny random Qwen3 (ChatML tokenizer) named like Qwen3-8B, and 16 counting chats."""
    from mhgen import tiny

    model = tiny.build("qwen3", "chatml", root / "Qwen3-8B")
    data = root / "train.jsonl"
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Count to {i}."},
                {"role": "assistant", "content": " ".join(map(str, range(i)))},
            ]
        }
        for i in range(2, 18)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return model, data


def script_for(directory: Path, model: Path, data: Path, **settings) -> Path:
    """The emitted script of a small float32 LoRA config, written into ``directory`` (a setting
    given as None is left out of it)."""
    config = {
        "base_model": str(model), "chat_template": "auto", "system_prompt": "", "dataset_path": str(data),
        "output_dir": "out", "max_seq_length": 128, "lora_rank": 4, "lora_alpha": 8,
        "lora_dropout": 0.1, "learning_rate": 0.001, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2, "logging_steps": 10, "save_steps": 1000, "max_steps": STEPS,
        "load_in_4bit": False, "dtype": "float32", "report_to": "none", **settings,
    }  # fmt: skip
    config = {key: value for key, value in config.items() if value is not None}
    directory.mkdir(parents=True, exist_ok=True)
    compiled = compile_config(write_config(directory, config))
    path = directory / compiled.plan.script_name
    write(path, compiled.text)
    return path


def command(script: Path, *args: str, inject: str | None = None, fault: str | None = None):
    """The command line and environment of the script, maybe with a signal injected at a trainer
    event (inject_signal.py) or a fault (inject_fault.py)."""
    line, env = [sys.executable, str(script), *args], dict(ENV)
    if inject:
        line.insert(1, str(TESTS / "inject_signal.py"))
        env["INJECT_SIGNAL"] = inject
    if fault:
        line.insert(1, str(TESTS / "inject_fault.py"))
        env["INJECT_FAULT"] = fault
    return line, env


def run(script: Path, *args: str, inject=None, fault=None, timeout=300):
    line, env = command(script, *args, inject=inject, fault=fault)
    return subprocess.run(
        line, cwd=script.parent, capture_output=True, text=True, env=env, timeout=timeout
    )


def adapter(out_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(out_dir / "adapter_model.safetensors")


def assert_same_adapter(a_dir: Path, b_dir: Path) -> None:
    import torch

    a, b = adapter(a_dir), adapter(b_dir)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    # and the adapter really moved away from its initialisation
    assert any(t.abs().max() > 1e-3 for k, t in a.items() if "lora_B" in k)


def steps_of(out_dir: Path) -> list[int]:
    found = [int(p.name.split("-")[1]) for p in Path(out_dir).glob("checkpoint-*")]
    return sorted(found)


def record(out_dir: Path) -> dict:
    return json.loads((Path(out_dir) / "mhgen_run.json").read_text())


def trained_range(output: str) -> tuple[int, int]:
    """The steps the process itself trained, as the script reports them on finishing."""
    found = re.search(r"this run trained steps (\d+) to (\d+)\)", output)
    assert found, output[-2000:]
    return int(found.group(1)), int(found.group(2))
