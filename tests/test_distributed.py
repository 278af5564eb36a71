"""Beyond one process, for real on CPU (gloo): `mhgen run` launches torchrun for num_processes,
both ranks train, only rank 0 talks and writes, and one adapter is saved that loads with peft.
FSDP (FSDP2) runs on CPU with this stack too. DeepSpeed is not installed here: not tested."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import require, write_config

require("trl")
ROWS = [
    {
        "messages": [
            {"role": "user", "content": f"Echo {w}."},
            {"role": "assistant", "content": f"{w}!"},
        ]
    }
    for w in ("one", "two", "three", "four", "five", "six", "seven", "eight")
]


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    from mhgen import tiny

    root = tmp_path_factory.mktemp("dist")
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return tiny.build("qwen3", "chatml", root / "Qwen3-8B"), data


@pytest.mark.xdist_group("torchrun")  # one rendezvous port per machine: one torchrun at a time
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_and_save_one_adapter(tmp_path, model_and_data, strategy):
    model, data = model_and_data
    config = {
        "base_model": str(model), "chat_template": "auto", "system_prompt": "", "dataset_path": str(data),
        "output_dir": str(tmp_path / "out"), "max_seq_length": 64, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1, "logging_steps": 1, "learning_rate": 0.005, "load_in_4bit": False,
        "dtype": "float32", "distributed_strategy": strategy, "num_processes": 2,
    }  # fmt: skip
    write_config(tmp_path, config, "c.json")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "run", "c.json", "--", "--max-steps", "2", "--merge"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "-m mhgen.torchrun --nproc-per-node 2" in proc.stderr
    # rank 0 alone prints, and counts both processes in the effective batch
    assert (
        proc.stdout.count("effective batch: 4 per device x 1 accumulation steps x 2 processes = 8")
        == 1
    )
    assert proc.stdout.count("adapter saved to") == 1
    # and rank 0 alone merges it, once the other has left (test_merge.py checks the merge)
    assert proc.stdout.count("LoRA pairs into") == 1
    assert (tmp_path / "out" / "merged" / "model.safetensors.index.json").is_file()
    record = json.loads((tmp_path / "out" / "mhgen_run.json").read_text())
    # 8 rows, 4 per process: one optimizer step is a whole epoch only if both ranks took 4
    first = next(e for e in record["log_history"] if "loss" in e)
    assert first["epoch"] == 1.0 and first["step"] == 1
    assert len(list((tmp_path / "out").glob("adapter_model*.safetensors"))) == 1

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        before = base(ids).logits
        after = PeftModel.from_pretrained(base, tmp_path / "out")(ids).logits
    assert not torch.allclose(before, after)


@pytest.mark.xdist_group("torchrun")
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_one_dpo_adapter(tmp_path, model_and_data, strategy):
    """method dpo: the same strategies, each process a share of the pairs; the reference is the
    base model with the adapter off, under DDP's and FSDP's wrappers too."""
    model, _ = model_and_data
    data = tmp_path / "pairs.jsonl"
    pairs = [{"prompt": r["messages"][0]["content"], "chosen": r["messages"][1]["content"],
              "rejected": "No."} for r in ROWS]  # fmt: skip
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    config = {
        "base_model": str(model), "chat_template": "auto", "system_prompt": "", "dataset_path": str(data),
        "output_dir": str(tmp_path / "out"), "max_seq_length": 64, "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1, "logging_steps": 1, "learning_rate": 0.005, "load_in_4bit": False,
        "dtype": "float32", "distributed_strategy": strategy, "num_processes": 2, "method": "dpo",
        "lora_dropout": 0.0, "warmup_ratio": 0.0,
    }  # fmt: skip
    write_config(tmp_path, config, "c.json")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "run", "c.json", "--", "--max-steps", "3"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("2 processes = 4 pairs (a chosen and a rejected sequence each)") == 1
    assert proc.stdout.count("adapter saved to") == 1
    record = json.loads((tmp_path / "out" / "mhgen_run.json").read_text())
    margins = [e["rewards/margins"] for e in record["log_history"] if "rewards/margins" in e]
    assert margins[0] == 0 and margins[-1] > 0  # from the reference, towards the chosen replies


def test_more_processes_need_a_strategy(tmp_path):
    from conftest import MINIMAL

    write_config(tmp_path, {**MINIMAL, "num_processes": 4}, "c.json")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "validate", "c.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        'c.json:5:3: $.num_processes: 4 processes need a distributed_strategy: set "distributed_strategy": '
        '"ddp" (or fsdp, deepspeed-zero2, deepspeed-zero3)\n'
    )


def test_bundle_runs_from_a_clean_folder_without_mhgen(tmp_path, model_and_data):
    model, data = model_and_data
    config = {
        "base_model": str(model),
        "chat_template": "auto",
        "system_prompt": "Hi.",
        "dataset_path": "data/train.jsonl",
        "load_in_4bit": True,
        "dtype": "float32",
        "max_seq_length": 64,
        "output_dir": "adapter",
    }
    write_config(tmp_path, config, "training-qwen3-8b.json")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "bundle", "training-qwen3-8b.json", "-o", "box"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    box = tmp_path / "box"
    assert sorted(p.name for p in box.iterdir()) == [
        "README.md",
        "requirements.txt",
        "slurm.sbatch",
        "train_qwen3_8b.py",
        "training-qwen3-8b.json",
    ]
    from mhgen.pins import TESTED

    names = ["torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes"]
    names.append("tensorboard")  # report_to's default
    assert (box / "requirements.txt").read_text().splitlines() == [
        f"{name}=={TESTED[name]}" for name in sorted(names)
    ]
    assert "uv run train_qwen3_8b.py --dry-run" in (box / "README.md").read_text()
    # a colleague's machine: the bundle alone, moved elsewhere, and no mhgen importable
    clean = tmp_path / "elsewhere"
    shutil.copytree(box, clean)
    (clean / "data").mkdir()
    shutil.copy(data, clean / "data" / "train.jsonl")
    runner = (
        "import runpy, sys\n"
        "sys.modules['mhgen'] = None  # any import of mhgen now fails\n"
        "sys.argv = ['train_qwen3_8b.py', '--max-steps', '1']\n"
        "runpy.run_path('train_qwen3_8b.py', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", runner], cwd=clean, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (clean / "adapter" / "adapter_model.safetensors").is_file()


def test_bundle_never_replaces_other_content(tmp_path):
    from conftest import MINIMAL

    write_config(tmp_path, MINIMAL, "training.json")
    (tmp_path / "box").mkdir()
    (tmp_path / "box" / "README.md").write_text("my notes\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mhgen", "bundle", "training.json", "-o", "box"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "exists with other content; pass --force" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "box").iterdir()) == ["README.md"]
    assert (tmp_path / "box" / "README.md").read_text() == "my notes\n"
