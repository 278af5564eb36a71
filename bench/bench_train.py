#!/usr/bin/env python3
"""Emitted script vs a plain TRL SFT script: same model, data, LoRA, batch and optimizer steps.

    python bench/bench_train.py                 # CPU: a tiny Qwen3 (seconds)
    python bench/bench_train.py --size 0.6b     # GPU: Qwen3-0.6B shapes, random weights, built here
    python bench/bench_train.py --size 0.6b --prepare DIR   # compile here (needs mhgen) ...
    PYTHONPATH=generator python bench/bench_train.py --run DIR   # ... measure there (no mhgen)

Prints tokens/s (real, non-pad tokens through the model per second, from the first batch to the
end), the padding fraction (pad
tokens / all tokens the model processed), peak memory (CUDA max allocated on a GPU, peak RSS on the
CPU) and the ratios. Nothing is downloaded. Both runs go through trl's data collator, which this
script counts in, so the two are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
         "num_key_value_heads", "head_dim", "vocab_size")  # fmt: skip
SIZES = {  # Qwen3 shapes: config.json of Qwen/Qwen3-0.6B; a tiny one for the CPU
    "tiny": dict(zip(SHAPE, (64, 128, 2, 4, 2, 16, 4096), strict=True)),
    "0.6b": dict(zip(SHAPE, (1024, 3072, 28, 16, 8, 128, 151936), strict=True)),
}

# Run a training script with the collator counted and peak memory reported on exit.
MEASURE = """
import atexit, json, os, resource, runpy, sys, time
import torch
from trl.trainer import sft_trainer
counts = {"tokens": 0, "real": 0, "labelled": 0}
call = sft_trainer.DataCollatorForLanguageModeling.torch_call
def counted(self, examples):
    counts.setdefault("first_batch", time.perf_counter())
    batch = call(self, examples)
    counts["tokens"] += batch["input_ids"].numel()
    counts["real"] += sum(len(e["input_ids"]) for e in examples)
    counts["labelled"] += int((batch["labels"] != -100).sum())
    return batch
sft_trainer.DataCollatorForLanguageModeling.torch_call = counted
start = time.perf_counter()
def report():
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    with open(os.environ["BENCH_OUT"], "w") as f:
        wall = time.perf_counter() - counts.pop("first_batch", start)
        json.dump({**counts, "peak_bytes": peak, "wall": wall}, f)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

BASELINE = '''
"""The most ordinary TRL SFT script: chat-template dataset, SFTTrainer, LoRA via peft_config."""
import json, sys
import torch
from datasets import load_dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
from trl import SFTConfig, SFTTrainer

cfg = json.load(open(sys.argv[1]))
gpu = torch.cuda.is_available()
tokenizer = AutoTokenizer.from_pretrained(cfg["base_model"])
quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                           bnb_4bit_compute_dtype=torch.bfloat16) if cfg["load_in_4bit"] else None
model = AutoModelForCausalLM.from_pretrained(cfg["base_model"], dtype=torch.bfloat16,
                                             quantization_config=quant)
dataset = load_dataset("json", data_files=cfg["dataset_path"], split="train")
trainer = SFTTrainer(
    model=model,
    args=SFTConfig(output_dir=cfg["output_dir"] + "-baseline", max_steps=int(sys.argv[2]),
                   per_device_train_batch_size=cfg["per_device_train_batch_size"],
                   gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
                   learning_rate=cfg["learning_rate"], max_length=cfg["max_seq_length"],
                   gradient_checkpointing=cfg["use_gradient_checkpointing"], bf16=gpu,
                   use_cpu=not gpu, report_to="none", save_strategy="no", logging_steps=10),
    train_dataset=dataset,
    processing_class=tokenizer,
    peft_config=LoraConfig(r=cfg["lora_rank"], lora_alpha=cfg["lora_alpha"],
                           target_modules="all-linear", task_type="CAUSAL_LM"),
)
trainer.train()
'''  # fmt: skip

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>\\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\\n{% endif %}"
)


def build(size: str, root: Path) -> Path:
    import torch
    import transformers

    from mhgen.tiny import build_tokenizer

    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = CHATML.replace("\\n", "\n")
    model_dir = root / "Qwen2.5-bench"
    tokenizer.save_pretrained(model_dir)
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = transformers.Qwen3Config(**SIZES[size], **ids, max_position_embeddings=8192)
    torch.manual_seed(0)
    transformers.Qwen3ForCausalLM(config).to(torch.bfloat16).save_pretrained(model_dir)
    return model_dir


def data(path: Path, rows: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    words = ["the", "a", "model", "trains", "on", "tokens", "of", "text", "and", "learns"]
    with path.open("w") as f:
        for _ in range(rows):  # lengths spread like real chat data: mostly short, some long
            n_user, n_reply = int(rng.lognormvariate(3.5, 0.8)), int(rng.lognormvariate(4.0, 0.9))
            messages = [
                {"role": "user", "content": " ".join(rng.choices(words, k=max(1, n_user)))},
                {"role": "assistant", "content": " ".join(rng.choices(words, k=max(1, n_reply)))},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")


def measure(script: list[str], out: Path) -> dict:
    import os

    env = {**os.environ, "BENCH_OUT": str(out)}
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, *script], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    return json.loads(out.read_text())


def prepare(args, root: Path) -> None:
    """Data, config, the compiled script and the baseline in ``root`` (the model comes at run)."""
    from mhgen.pipeline import compile_config
    from mhgen.write import write

    root.mkdir(parents=True, exist_ok=True)
    data(root / "train.jsonl", args.rows)
    config = {
        "base_model": "Qwen2.5-bench",  # a plain-ChatML family name: the template has no <think>
        "chat_template": "chatml", "system_prompt": "",
        "dataset_path": "train.jsonl", "output_dir": "out",
        "max_seq_length": args.seq, "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": 1, "learning_rate": 0.0002,
        "lora_rank": 16, "lora_alpha": 32,
        "load_in_4bit": args.four_bit, "dtype": "bfloat16", "use_gradient_checkpointing": True,
        "logging_steps": 10, "save_steps": 100000, "lora_target_modules": "all-linear",
    }  # fmt: skip
    for item in args.set or []:  # --set key=JSON-value, for experiments
        key, value = item.split("=", 1)
        config[key] = json.loads(value)
    (root / "config.json").write_text(json.dumps(config))
    compiled = compile_config(root / "config.json")
    write(root / "train.py", compiled.text)
    (root / "baseline.py").write_text(BASELINE)
    (root / "bench.json").write_text(json.dumps(vars(args)))


def run(root: Path) -> None:
    """Build the model in ``root``, train both scripts there, print the table."""
    import os

    args = json.loads((root / "bench.json").read_text())
    build(args["size"], root)
    os.chdir(root)
    results = {
        "mhgen": measure(
            ["train.py", "--max-steps", str(args["steps"]), "--overwrite"], root / "a.json"
        ),
        "plain TRL": measure(["baseline.py", "config.json", str(args["steps"])], root / "b.json"),
    }
    print(f"{args['size']} Qwen3, {args['steps']} steps x batch {args['batch']}, max {args['seq']} "
          f"tokens, 4-bit {args['four_bit']}, {args['rows']} rows")  # fmt: skip
    print(f"{'':10} {'tokens/s':>10} {'padding':>8} {'peak MiB':>9} {'wall s':>7}")
    for name, r in results.items():
        r["tps"] = r["real"] / r["wall"]
        r["pad"] = 1 - r["real"] / r["tokens"]
        mib = r["peak_bytes"] / 2**20
        print(f"{name:10} {r['tps']:10.0f} {r['pad']:8.1%} {mib:9.0f} {r['wall']:7.1f}")
    a, b = results["mhgen"], results["plain TRL"]
    print(
        f"{'ratio':10} {a['tps'] / b['tps']:9.2f}x {'':8} {a['peak_bytes'] / b['peak_bytes']:8.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--four-bit", action="store_true")
    parser.add_argument("--set", action="append", metavar="KEY=JSON", help="override a setting")
    parser.add_argument("--prepare", metavar="DIR", help="only compile into DIR")
    parser.add_argument("--run", metavar="DIR", help="only measure what --prepare put in DIR")
    args = parser.parse_args()
    if args.run:
        return run(Path(args.run).resolve())
    root = Path(args.prepare or tempfile.mkdtemp(prefix="mhgen-bench-")).resolve()
    prepare(args, root)
    if not args.prepare:
        run(root)


if __name__ == "__main__":
    main()
