"""End to end, on CPU: the emitted script trains tiny local models of every family and format.

For each: the loss is finite and falls on a memorisable dataset, the LoRA adapter is saved and
loads back onto the base model with peft, and the trained adapter changes the model's output.
The 4-bit (bitsandbytes NF4) path is run for a dense and an MoE family.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from conftest import require, write_config
from mhgen.pipeline import compile_config
from mhgen.write import write

require("trl")

# family, chat format, tiny model folder name (detection works from it, as from a real name)
FAMILIES = [
    ("qwen3", "chatml", "Qwen3-8B"),
    ("qwen3-coder", "chatml", "Qwen3-Coder-30B-A3B-Instruct"),
    ("gpt-oss", "harmony", "gpt-oss-20b"),
    ("llama2", "llama", "Llama-2-7b-chat-hf"),
    ("llama3", "llama3", "Llama-3.1-8B-Instruct"),
    ("mistral", "mistral", "Mistral-7B-Instruct-v0.3"),
]
ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"Say {w}."},
            {"role": "assistant", "content": f"{w} {w} {w}."},
        ]
    }
    for w in ("red", "green", "blue", "cyan", "pink", "gold", "gray", "teal")
]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    from mhgen import tiny

    root = tmp_path_factory.mktemp("models")
    return {fam: tiny.build(fam, fmt, root / name) for fam, fmt, name in FAMILIES}


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def train(tmp_path, model_dir, data, steps=8, extra_args=(), env=None, inject=None, **settings):
    config = {
        "base_model": str(model_dir),
        "chat_template": "auto",
        "system_prompt": "Answer with three words.",
        "dataset_path": str(data),
        "output_dir": str(tmp_path / "out"),
        "max_seq_length": 512,
        "lora_rank": 8,
        "lora_alpha": 16,
        "lora_dropout": 0.0,
        "learning_rate": 0.01,
        "lr_scheduler_type": "constant",
        "warmup_ratio": 0.0,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "logging_steps": 1,
        "load_in_4bit": False,
        "dtype": "float32",
        **settings,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    compiled = compile_config(write_config(tmp_path, config))
    script = tmp_path / compiled.plan.script_name
    write(script, compiled.text, force=True)
    proc = subprocess.run(
        [
            sys.executable,
            *([inject] if inject else []),
            str(script),
            "--max-steps",
            str(steps),
            *extra_args,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    return proc, tmp_path / "out"


def losses(out_dir):
    record = json.loads((out_dir / "mhgen_run.json").read_text())
    assert record["finished"] is True
    steps = [entry for entry in record["log_history"] if "loss" in entry]
    # the routers stay frozen, so no load-balancing loss is trained (TRL logs it when it is)
    assert not [entry for entry in steps if "aux_loss" in entry]
    return [entry["loss"] for entry in steps]


def adapter_changes_output(model_dir, out_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    ids = tokenizer("Say red.", return_tensors="pt", add_special_tokens=False).input_ids
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, out_dir)
        after = tuned(ids).logits
    return not torch.allclose(before, after, atol=1e-5)


@pytest.mark.parametrize(("family", "fmt", "name"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_trains_saves_and_reloads(tmp_path, models, data, family, fmt, name):
    proc, out = train(tmp_path, models[family], data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # no warning: bitsandbytes' optional CPU kernel, transformers' deprecations, long sequences
    assert noise(proc.stderr) == []
    # a log (stderr is a pipe here) gets no progress bar redrawn with \r, loading or training
    # (issue 30, 7); the logged steps are lines of their own
    assert "\r" not in proc.stderr and "Loading weights" not in proc.stderr
    assert "%|" not in proc.stderr and "'loss': " in proc.stdout
    curve = losses(out)
    assert len(curve) == 8 and all(math.isfinite(x) for x in curve)
    assert min(curve[-3:]) < curve[0] - 0.05, curve  # it learns the memorisable rows
    for name_ in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json"):
        assert (out / name_).is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
    assert adapter_changes_output(models[family], out)


@pytest.mark.parametrize("family", ["qwen3", "gpt-oss", "qwen3-coder"])
def test_qlora_4bit_path(tmp_path, models, data, family):
    proc, out = train(tmp_path, models[family], data, load_in_4bit=True, dtype="bfloat16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = losses(out)
    assert all(math.isfinite(x) for x in curve) and min(curve[-3:]) < curve[0]
    assert "no CUDA GPU found" in proc.stdout
    assert (
        'note: "optim": "paged_adamw_8bit" needs CUDA; using adamw_torch_fused on the CPU'
        in proc.stdout
    )
    if family != "qwen3":  # MoE: the script loads and quantizes the experts (2 layers x 2 stacks)
        assert (
            "NF4 weights: 8 linear layers and 4 expert stacks (one grouped GEMM per projection); "
            "peak host memory while loading: "
        ) in proc.stdout
    assert adapter_keys_match_the_original_model(models[family], out)
    assert adapter_changes_output(models[family], out)
    assert adapter_dtypes(out) == {"F32"}  # TRL's bfloat16 cast of 4-bit adapters is undone
    assert noise(proc.stderr) == []


def noise(stderr: str) -> list[str]:
    """What the run wrote to stderr besides progress bars (a bar redraws itself with \\r)."""
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines()]
    bars = re.compile(r"^(Loading weights: +)?\d+%\|.*\| \d+/\d+ \[.*\]$")
    return [line for line in lines if line and not bars.match(line)]


def adapter_dtypes(out_dir) -> set[str]:
    """The dtypes of the saved adapter's tensors, as the file stores them (peft saves as trained)."""
    header = (out_dir / "adapter_model.safetensors").read_bytes()
    size = int.from_bytes(header[:8], "little")
    entries = json.loads(header[8 : 8 + size])
    return {v["dtype"] for k, v in entries.items() if k != "__metadata__"}


def adapter_keys_match_the_original_model(model_dir, out_dir) -> bool:
    """Every tensor of the saved adapter has its place in the original (unquantized) model."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    saved = load_file(out_dir / "adapter_model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, out_dir)
    slots = {k.replace(".default", ""): v for k, v in tuned.state_dict().items() if "lora_" in k}
    return (
        bool(saved)
        and all(k in slots and torch.equal(slots[k], v.float()) for k, v in saved.items())
        and len(slots) == len(saved)
    )


@pytest.mark.parametrize("family", ["gpt-oss", "qwen3-coder"])
def test_lora_on_the_4bit_experts_trains_resumes_and_loads_onto_the_original_model(
    tmp_path, models, data, family
):
    """Stopped at step 2 by a signal and resumed, the run ends with the adapter an uninterrupted
    run ends with, experts' LoRA included, and that adapter loads onto the original model."""
    import os
    import signal
    from pathlib import Path

    import torch
    from safetensors.torch import load_file

    settings = {
        "load_in_4bit": True, "dtype": "float32", "save_steps": 100,
        "lora_target_modules": ["q_proj", "v_proj", "gate_up", "down"],
    }  # fmt: skip
    proc, straight = train(tmp_path / "a", models[family], data, steps=4, **settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = losses(straight)
    assert min(curve[-2:]) < curve[0]
    saved = load_file(straight / "adapter_model.safetensors")
    experts = [k for k in saved if ".mlp.experts." in k]
    assert len(experts) == 2 * 2 * 2  # 2 layers x (gate_up, down) x (lora_A, lora_B)
    assert all(saved[k].abs().sum() > 0 for k in experts if "lora_B" in k)  # they trained
    assert adapter_keys_match_the_original_model(models[family], straight)
    # the same run, stopped after step 2 and resumed
    inject = str(Path(__file__).with_name("inject_signal.py"))
    env = {**os.environ, "INJECT_SIGNAL": "on_step_end:2:1"}
    proc, out = train(
        tmp_path / "b", models[family], data, steps=4, env=env, inject=inject, **settings
    )
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    proc, out = train(
        tmp_path / "b", models[family], data, steps=4, extra_args=["--resume"], **settings
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from checkpoint-2: step 2, epoch " in proc.stdout
    resumed = load_file(out / "adapter_model.safetensors")
    assert resumed.keys() == saved.keys()
    for k in saved:
        torch.testing.assert_close(resumed[k], saved[k], rtol=1e-4, atol=1e-6)


def test_without_assistant_only_loss_every_token_is_trained(tmp_path, models, data):
    proc, out = train(tmp_path, models["qwen3"], data, assistant_only_loss=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    curve = losses(out)
    assert len(curve) == 8 and min(curve[-3:]) < curve[0] - 0.05, curve
    (script,) = tmp_path.glob("train_*.py")
    assert "\nASSISTANT_ONLY_LOSS = False\n" in script.read_text()  # the switch tokenize() reads


def test_finished_run_is_not_overwritten(tmp_path, models, data):
    proc, out = train(tmp_path, models["qwen3"], data, steps=1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    adapter = (out / "adapter_model.safetensors").read_bytes()
    proc, _ = train(tmp_path, models["qwen3"], data, steps=1)
    assert proc.returncode == 1
    assert f"error: {out} holds a finished run; pass --overwrite to replace it" in proc.stderr
    assert (out / "adapter_model.safetensors").read_bytes() == adapter
    proc, _ = train(tmp_path, models["qwen3"], data, steps=1, lora_rank=4, lora_alpha=8)
    assert proc.returncode == 1 and "holds a run of another config" in proc.stderr
    proc, _ = train(tmp_path, models["qwen3"], data, steps=1, extra_args=["--overwrite"])
    assert proc.returncode == 0


def test_float16_without_cuda_names_the_key(tmp_path, models, data):
    proc, _ = train(tmp_path, models["qwen3"], data, dtype="float16")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        'error: float16 training needs a CUDA GPU; set "dtype": "float32" in the config'
    )


def test_smoke_trains_a_shipped_config_on_a_tiny_model_and_cleans_up(tmp_path):
    import shutil
    import tempfile
    from pathlib import Path

    from conftest import ETC, run_cli

    shutil.copytree(ETC, tmp_path / "etc")
    before = set(Path(tempfile.gettempdir()).glob("mhgen-smoke-*"))
    proc = run_cli("smoke", "etc/training-qwen3-8b.json", "--steps", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # the shipped configs read the shipped sample, so smoke trains on the config's own data
    assert (
        "smoke: tiny qwen3 model (chatml), data: the first 32 lines of etc/sample-chat.jsonl"
        in proc.stdout
    )
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("smoke: ok: 2 steps, loss ")
    assert last.endswith("; its files, adapter included, are deleted (--keep DIR keeps them)")
    assert set(Path(tempfile.gettempdir()).glob("mhgen-smoke-*")) == before
