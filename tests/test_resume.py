"""A run stopped by SIGTERM (a preempted cloud GPU) saves a checkpoint and exits; --resume then
finishes it with the same data order, optimizer and RNG state: the final adapter equals an
uninterrupted run's up to float noise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import write_config
from mhgen.pipeline import compile_config
from mhgen.write import write

pytest.importorskip("trl")
STEPS = 120


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from mhgen import tiny

    root = tmp_path_factory.mktemp("resume")
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


def script_for(directory, model, data):
    config = {
        "base_model": str(model), "chat_template": "auto", "system_prompt": "", "dataset_path": str(data),
        "output_dir": str(directory / "out"), "max_seq_length": 128, "lora_rank": 4, "lora_alpha": 8,
        "lora_dropout": 0.1, "learning_rate": 0.001, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2, "logging_steps": 10, "save_steps": 1000, "max_steps": STEPS,
        "load_in_4bit": False, "dtype": "float32",
    }  # fmt: skip
    compiled = compile_config(write_config(directory, config))
    path = directory / compiled.plan.script_name
    write(path, compiled.text)
    return path


def adapter(out_dir):
    from safetensors.torch import load_file

    return load_file(out_dir / "adapter_model.safetensors")


def test_sigterm_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path, setup):
    import torch

    model, data = setup
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

    straight = script_for(tmp_path / "a", model, data)
    done = subprocess.run(
        [sys.executable, str(straight)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]

    script = script_for(tmp_path / "b", model, data)
    out = tmp_path / "b" / "out"
    child = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.time() + 300
    while not (out / "mhgen_run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)  # well inside the run: it takes many seconds on this machine
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "SIGTERM: saving a checkpoint after this step" in output
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1
    stopped_at = int(checkpoints[0].name.split("-")[1])
    assert 0 < stopped_at < STEPS
    assert f"stopped at step {stopped_at}; continue with --resume" in output
    assert json.loads((out / "mhgen_run.json").read_text())["finished"] is False

    resumed = subprocess.run(
        [sys.executable, str(script), "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    record = json.loads((out / "mhgen_run.json").read_text())
    assert record["finished"] is True and record["log_history"][-1]["step"] == STEPS

    a, b = adapter(tmp_path / "a" / "out"), adapter(out)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    # and the adapter really moved away from its initialisation
    assert any(t.abs().max() > 1e-3 for k, t in a.items() if "lora_B" in k)


def test_resume_without_a_checkpoint_says_so(tmp_path, setup):
    model, data = setup
    script = script_for(tmp_path, model, data)
    proc = subprocess.run(
        [sys.executable, str(script), "--resume"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1
    assert (
        proc.stderr.strip()
        == f"error: {tmp_path / 'out'} holds no run to resume; run without --resume"
    )


def test_ctrl_c_through_mhgen_run_checkpoints_and_passes_the_exit_code_on(tmp_path, setup):
    model, data = setup
    script_for(tmp_path, model, data)  # writes config.json next to it
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "mhgen", "run", "config.json", "-o", "."],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )  # fmt: skip
    deadline = time.time() + 300
    while not (tmp_path / "out" / "mhgen_run.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(1.5)
    os.killpg(child.pid, signal.SIGINT)  # Ctrl-C reaches mhgen and the script alike
    output, _ = child.communicate(timeout=300)
    assert child.returncode == 128 + signal.SIGINT, output[-2000:]
    assert "SIGINT: saving a checkpoint after this step" in output
    assert len(list((tmp_path / "out").glob("checkpoint-*"))) == 1
