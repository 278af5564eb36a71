#!/usr/bin/env python3
"""The emitted script, with each batching, against a plain TRL SFT script: same model, data, LoRA,
batch, dtype and optimizer steps.

    python bench/bench_train.py                                  # CPU: a tiny Qwen3, chat data
    python bench/bench_train.py --data uniform                   # every example the same length
    python bench/bench_train.py --data long --seq 2048           # long examples
    python bench/bench_train.py --size 0.6b --prepare DIR        # compile here (needs mhgen) ...
    PYTHONPATH=generator:bench python bench/bench_train.py --run DIR   # ... measure on a GPU box

Every side runs twice, in the order A B C ... C B A, so that neither always runs on a cold
machine. Each run is timed per optimizer step (bench/step_timer.py); tokens/s is the median over
the steps after --warmup of real (non-pad) tokens per second, then the median of the two runs.
Both sides train in bfloat16 (autocast on the CPU as on a GPU). Also printed: the padding
fraction (pad tokens / all tokens the model processed), peak memory (CUDA max allocated on a GPU,
peak RSS on the CPU), and the loss of each side every few steps, side by side. Nothing is
downloaded: the model is built from a config with random weights.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from step_timer import steady_state  # noqa: E402

SHAPE = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
         "num_key_value_heads", "head_dim", "vocab_size")  # fmt: skip
SIZES = {  # Qwen3 shapes: config.json of Qwen/Qwen3-0.6B and Qwen/Qwen3-8B; a tiny one for the CPU
    "tiny": dict(zip(SHAPE, (64, 128, 2, 4, 2, 16, 4096), strict=True)),
    "small": dict(zip(SHAPE, (512, 1536, 4, 8, 4, 64, 32000), strict=True)),
    "0.6b": dict(zip(SHAPE, (1024, 3072, 28, 16, 8, 128, 151936), strict=True)),
    "8b": dict(zip(SHAPE, (4096, 12288, 36, 32, 8, 128, 151936), strict=True)),
}
BATCHINGS = ("padded", "group_by_length", "padding_free")

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
    args=SFTConfig(output_dir=cfg["output_dir"] + "-baseline", max_steps=cfg["max_steps"],
                   per_device_train_batch_size=cfg["per_device_train_batch_size"],
                   gradient_accumulation_steps=cfg["gradient_accumulation_steps"],
                   learning_rate=cfg["learning_rate"], max_length=cfg["max_seq_length"],
                   gradient_checkpointing=cfg["use_gradient_checkpointing"], bf16=True,
                   use_cpu=not gpu, report_to="none", save_strategy="no", logging_steps=1,
                   seed=cfg["seed"]),
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
    model_dir = root / "Qwen2.5-bench"  # a plain-ChatML family name: the template has no <think>
    tokenizer.save_pretrained(model_dir)
    ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config = transformers.Qwen3Config(**SIZES[size], **ids, max_position_embeddings=32768)
    config.architectures = ["Qwen3ForCausalLM"]
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = transformers.Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(model_dir)
    return model_dir


WORDS = ["the", "a", "model", "trains", "on", "tokens", "of", "text", "and", "learns"]


def data(path: Path, rows: int, kind: str, seq: int, seed: int = 0) -> None:
    """chat: lengths spread like real chat data (mostly short, some long); uniform: every example
    about half of seq; long: every example about seq tokens (a word is about 2 tokens here)."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(rows):
            if kind == "chat":
                n_user, n_reply = (
                    int(rng.lognormvariate(3.5, 0.8)),
                    int(rng.lognormvariate(4.0, 0.9)),
                )
            elif kind == "uniform":
                n_user, n_reply = 8, seq // 4 - 8
            else:
                n_user, n_reply = 8, seq // 2 - 16
            messages = [
                {"role": "user", "content": " ".join(rng.choices(WORDS, k=max(1, n_user)))},
                {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=max(1, n_reply)))},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")


def timed(root: Path, command: list[str], out: Path) -> dict:
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "step_timer.py"), *command],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"{command[0]} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def prepare(args, root: Path) -> None:
    """Data, configs, the compiled scripts and the baseline in ``root`` (the model comes at run)."""
    from mhgen.pipeline import compile_config
    from mhgen.write import write

    root.mkdir(parents=True, exist_ok=True)
    data(root / "train.jsonl", args.rows, args.data, args.seq)
    config = {
        "base_model": "Qwen2.5-bench", "chat_template": "chatml", "system_prompt": "",
        "dataset_path": "train.jsonl", "output_dir": "out",
        "max_seq_length": args.seq, "per_device_train_batch_size": args.batch,
        "gradient_accumulation_steps": 1, "learning_rate": 0.0002,
        "lora_rank": 16, "lora_alpha": 32, "lora_target_modules": "all-linear",
        "load_in_4bit": args.four_bit, "dtype": "bfloat16", "use_gradient_checkpointing": True,
        "logging_steps": 1, "save_steps": 100000, "max_steps": args.steps, "seed": 0,
    }  # fmt: skip
    for item in args.set or []:  # --set key=JSON-value, for experiments
        key, value = item.split("=", 1)
        config[key] = json.loads(value)
    (root / "config.json").write_text(json.dumps(config))
    for side in args.batching:  # a batching, "+selective" for selective checkpointing
        batching, _, selective = side.partition("+")
        settings = {**config, "batching": batching, "output_dir": f"out-{side}"}
        settings["selective_checkpointing"] = bool(selective)
        path = root / f"training-{side.replace('+', '-')}.json"
        path.write_text(json.dumps(settings))
        compiled = compile_config(path)
        write(root / f"{side}.py", compiled.text, force=True)
    (root / "baseline.py").write_text(BASELINE)
    (root / "bench.json").write_text(json.dumps(vars(args), default=str))


def run(root: Path) -> None:
    """Build the model in ``root``, train every side twice (A B C ... C B A), print the table."""
    args = json.loads((root / "bench.json").read_text())
    build(args["size"], root)
    sides = {} if args.get("no_baseline") else {"plain TRL": ["baseline.py", "config.json"]}
    sides |= {f"mhgen {b}": [f"{b}.py", "--overwrite"] for b in args["batching"]}
    order = list(sides) + list(reversed(sides))
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for i, name in enumerate(order):
        result = timed(root, sides[name], root / f"run{i}.json")
        runs[name].append(result | steady_state(result, args["warmup"]))
        tps = runs[name][-1]["tokens_per_second"]
        print(f"run {i + 1}/{len(order)} {name}: {tps:.0f} tokens/s", flush=True)
    print(f"\n{args['size']} Qwen3, {args['data']} data, batch {args['batch']}, max {args['seq']} "
          f"tokens, 4-bit {args['four_bit']}, bf16, {args['steps']} steps (median of steps after "
          f"{args['warmup']}, two runs each)")  # fmt: skip
    first = next(iter(runs))  # the baseline, unless left out
    print(f"| side | tokens/s | vs {first} | padding | peak MiB |")
    print("|---|---|---|---|---|")
    base = statistics.median(r["tokens_per_second"] for r in runs[first])
    for name, results in runs.items():
        tps = statistics.median(r["tokens_per_second"] for r in results)
        pad = 1 - results[0]["real_tokens"] / results[0]["padded_tokens"]
        peak = max(r["peak_gpu_bytes"] or r["peak_rss_bytes"] for r in results) / 2**20
        print(f"| {name} | {tps:.0f} | {tps / base:.2f}x | {pad:.1%} | {peak:.0f} |")
    every = max(1, args["steps"] // 8)
    print("\nloss by step (first run of each side):")
    print("| step | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    curves = {name: dict(results[0]["losses"]) for name, results in runs.items()}
    for step in range(every, args["steps"] + 1, every):
        cells = " | ".join(f"{curves[n].get(step, float('nan')):.3f}" for n in runs)
        print(f"| {step} | {cells} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--data", choices=["chat", "uniform", "long"], default="chat")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument(
        "--batching",
        nargs="+",
        choices=[*BATCHINGS, *(b + "+selective" for b in BATCHINGS)],
        default=list(BATCHINGS),
        help="the emitted script's sides; +selective: with selective checkpointing",
    )
    parser.add_argument("--no-baseline", action="store_true", help="leave out plain TRL")
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
