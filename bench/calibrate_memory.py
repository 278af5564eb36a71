#!/usr/bin/env python3
"""Measure real peak GPU memory of emitted scripts and compare with `mhgen plan`'s estimate.

    python bench/calibrate_memory.py --prepare .calib        # here: compile the cases (needs mhgen)
    PYTHONPATH=generator python bench/calibrate_memory.py --run .calib   # on the GPU box
    python bench/calibrate_memory.py --compare .calib results.json       # here: the table

Every example is longer than max_seq_length, so every batch is exactly batch x max_seq_length
tokens and the estimate and the measurement see the same shapes. Models are built from configs
with random weights: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# name: (shape name, layers kept, 4-bit, checkpointing, batch, seq)
CASES = {
    "dense-bf16-ckpt": ("qwen3-0.6b", None, False, True, 4, 1024),
    "dense-nf4-ckpt": ("qwen3-0.6b", None, True, True, 4, 1024),
    "dense-bf16-full": ("qwen3-0.6b", None, False, False, 2, 1024),
    "dense-nf4-long": ("qwen3-0.6b", None, True, True, 8, 2048),
    "moe-nf4-ckpt": ("qwen3-coder-30b-a3b-instruct", 4, True, True, 2, 1024),
}


def prepare(root: Path) -> None:
    from mhgen.pipeline import compile_config
    from mhgen.vram import SHAPES
    from mhgen.write import write

    for name, (shape_name, layers, four_bit, ckpt, batch, seq) in CASES.items():
        case = root / name
        case.mkdir(parents=True, exist_ok=True)
        shape = SHAPES[shape_name]
        if layers:
            shape = replace(shape, layers=layers)
        words = " ".join(["lorem ipsum dolor"] * 700)  # ~5k tokens: longer than any seq here
        rows = [
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {"role": "assistant", "content": words},
                ]
            }
        ]
        (case / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 32))
        model = (
            "Qwen3-Coder-calib" if shape.experts else "Qwen2.5-calib"
        )  # plain ChatML family names
        config = {
            "base_model": model, "chat_template": "chatml", "system_prompt": "",
            "dataset_path": "train.jsonl", "output_dir": "out", "max_seq_length": seq,
            "per_device_train_batch_size": batch, "gradient_accumulation_steps": 1,
            "load_in_4bit": four_bit, "dtype": "bfloat16", "use_gradient_checkpointing": ckpt,
            "lora_rank": 16, "lora_alpha": 32, "save_steps": 100000, "logging_steps": 1,
        }  # fmt: skip
        (case / "config.json").write_text(json.dumps(config))
        write(case / "train.py", compile_config(case / "config.json").text)
        (case / "shape.json").write_text(json.dumps(asdict(shape)))


def build(case: Path, shape: dict) -> None:
    import torch
    import transformers
    from bench_train import CHATML

    from mhgen.tiny import build_tokenizer

    config = json.loads((case / "config.json").read_text())
    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = CHATML.replace("\\n", "\n")
    tokenizer.save_pretrained(case / config["base_model"])
    common = {
        "hidden_size": shape["hidden"],
        "num_hidden_layers": shape["layers"],
        "num_attention_heads": shape["heads"],
        "num_key_value_heads": shape["kv_heads"],
        "head_dim": shape["head_dim"],
        "vocab_size": shape["vocab"],
        "tie_word_embeddings": shape["tied"],
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "max_position_embeddings": 8192,
    }
    if shape["experts"]:
        cfg = transformers.Qwen3MoeConfig(
            **common,
            num_experts=shape["experts"],
            num_experts_per_tok=shape["experts_per_token"],
            moe_intermediate_size=shape["expert_intermediate"],
        )
        model_class = transformers.Qwen3MoeForCausalLM
    else:
        cfg = transformers.Qwen3Config(**common, intermediate_size=shape["intermediate"])
        model_class = transformers.Qwen3ForCausalLM
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = model_class(cfg).to(torch.bfloat16)
    model.save_pretrained(case / config["base_model"])
    del model
    torch.cuda.empty_cache()


def run(root: Path) -> None:
    import os

    from bench_train import measure

    root, results = root.resolve(), {}  # resolved first: each case runs in its own folder
    for name in CASES:
        case = root / name
        build(case, json.loads((case / "shape.json").read_text()))
        os.chdir(case)
        r = measure(["train.py", "--max-steps", "3", "--overwrite"], case / "m.json")
        results[name] = r["peak_bytes"]
        print(name, r["peak_bytes"], r["tokens"], flush=True)
    print("RESULTS " + json.dumps(results))


def compare(root: Path, results: dict) -> None:
    from mhgen.vram import Shape, estimate

    print(f"{'case':18} {'estimate GiB':>12} {'measured GiB':>12} {'error':>7}")
    for name, measured in results.items():
        values = json.loads((root / name / "config.json").read_text())
        values["optim"] = "paged_adamw_8bit" if values["load_in_4bit"] else "adamw_torch_fused"
        values["attn_implementation"] = "sdpa"
        values["lora_target_modules"] = [
            "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
        ]  # fmt: skip
        shape = Shape(**json.loads((root / name / "shape.json").read_text()))
        guess = estimate(values, shape)["allocated peak"]  # what max_memory_allocated measures
        print(
            f"{name:18} {guess / 2**30:12.2f} {measured / 2**30:12.2f} {guess / measured - 1:+7.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", metavar="DIR")
    parser.add_argument("--run", metavar="DIR")
    parser.add_argument("--compare", nargs=2, metavar=("DIR", "RESULTS_JSON"))
    args = parser.parse_args()
    if args.prepare:
        prepare(Path(args.prepare))
    elif args.run:
        run(Path(args.run))
    elif args.compare:
        compare(Path(args.compare[0]), json.loads(Path(args.compare[1]).read_text()))


if __name__ == "__main__":
    main()
