#!/usr/bin/env python3
"""4-bit experts at the real shapes of the shipped MoE configs: speed, GPU memory, host memory.

    python bench/bench_moe.py --load [--model gpt-oss-20b] [--layers 1 2 4]  # CPU: host memory
    python bench/bench_moe.py --prepare DIR [--model gpt-oss-20b] [--layers 24] [--steps 30]
    PYTHONPATH=generator:bench python bench/bench_moe.py --run DIR      # on a GPU box
    python bench/bench_moe.py --model tiny --prepare DIR && ... --run DIR  # the same, on a CPU

--load writes random bf16 checkpoints of the model's real shapes with 1, 2 and 4 decoder layers
and loads each with the emitted 4-bit script's own load_model (the layer-by-layer reader) on the
CPU, printing the peak RSS: each layer may add its NF4 weights (on the CPU the model stays in
host memory) but not its 16-bit size, since the reader holds one layer of the checkpoint at a
time.

--prepare / --run train the shipped config (its batch, sequence length and LoRA) on a random
model of the real shapes with LAYERS layers, built on the GPU box (nothing is downloaded), with
the experts in NF4 (the emitted 4-bit script) and in bf16 (the same config with load_in_4bit
off, every weight bf16: the baseline), each twice in the order NF4, bf16, bf16, NF4. Every
example is max_seq_length tokens long. Tokens/s is the median over the steps after WARMUP of
each run, then over the runs; peak GPU memory is torch.cuda.max_memory_allocated, peak host
memory the process's own peak RSS (VmHWM, loading included; see step_timer.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from step_timer import steady_state  # noqa: E402

# config.json fields of the real models; "tiny" is a scaled-down gpt-oss for a CPU run
MODELS = {
    "gpt-oss-20b": {
        "config": "GptOssConfig", "format": "harmony", "etc": "training-gpt-oss-20b.json",
        "shape": {
            "hidden_size": 2880, "intermediate_size": 2880, "num_local_experts": 32,
            "num_experts_per_tok": 4, "num_attention_heads": 64, "num_key_value_heads": 8,
            "head_dim": 64, "vocab_size": 201088, "sliding_window": 128,
        },
    },
    "qwen3-coder-30b": {
        "config": "Qwen3MoeConfig", "format": "chatml", "etc": "training-qwen3-coder-30b.json",
        "shape": {
            "hidden_size": 2048, "intermediate_size": 6144, "moe_intermediate_size": 768,
            "num_experts": 128, "num_experts_per_tok": 8, "num_attention_heads": 32,
            "num_key_value_heads": 4, "head_dim": 128, "vocab_size": 151936, "norm_topk_prob": True,
        },
    },
    "tiny": {
        "config": "GptOssConfig", "format": "harmony", "etc": "training-gpt-oss-20b.json",
        "shape": {
            "hidden_size": 256, "intermediate_size": 256, "num_local_experts": 8,
            "num_experts_per_tok": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 64, "vocab_size": 4096, "sliding_window": 128,
        },
        "settings": {"max_seq_length": 256, "gradient_accumulation_steps": 2, "dtype": "float32"},
    },
}  # fmt: skip
FOLDER = {"gpt-oss-20b": "gpt-oss-20b", "qwen3-coder-30b": "Qwen3-Coder-30B-A3B"}
FOLDER["tiny"] = "gpt-oss-tiny"


def build_model(name: str, layers: int, folder: Path, device: str) -> None:
    """A random model of ``name``'s shapes with ``layers`` layers, and a tokenizer, in folder."""
    import torch
    import transformers

    from mhgen.tiny import build_tokenizer

    spec = MODELS[name]
    tokenizer = build_tokenizer(spec["format"])
    tokenizer.save_pretrained(folder)
    extra = {"layer_types": (["sliding_attention", "full_attention"] * layers)[:layers]}
    if spec["config"] != "GptOssConfig":
        extra = {}
    config = getattr(transformers, spec["config"])(
        **spec["shape"], **extra, num_hidden_layers=layers, max_position_embeddings=8192,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    config.architectures = [spec["config"].replace("Config", "ForCausalLM")]
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    for p in model.parameters():  # checkpoint-like magnitudes (init leaves some at zero)
        torch.nn.init.normal_(p, std=0.02)
    model.save_pretrained(folder)


def script_for(root: Path, name: str, four_bit: bool, steps: int, settings=None) -> Path:
    """The emitted script of the shipped config on the model in root, 4-bit or all bf16."""
    from mhgen.pipeline import compile_config
    from mhgen.write import write

    spec = MODELS[name]
    config = json.loads((BENCH.parent / "etc" / spec["etc"]).read_text())
    config |= {
        "base_model": FOLDER[name], "load_in_4bit": four_bit, "dataset_path": "train.jsonl",
        "max_steps": steps, "logging_steps": 1, "save_steps": 100000, "num_train_epochs": 100,
        **spec.get("settings", {}), **(settings or {}),
    }  # fmt: skip
    kind = "nf4" if four_bit else "bf16"
    path = root / f"training-{kind}.json"
    path.write_text(json.dumps(config))
    compiled = compile_config(path)
    write(root / compiled.plan.script_name, compiled.text, force=True)
    return root / compiled.plan.script_name


def long_rows(path: Path, rows: int, words: int) -> None:
    """Conversations longer than max_seq_length: every example is cut to exactly that length."""
    vocab = ["the", "model", "trains", "on", "tokens", "of", "text", "and", "learns", "a"]
    with path.open("w") as f:
        for i in range(rows):
            reply = " ".join(vocab[(i + j) % len(vocab)] for j in range(words))
            messages = [
                {"role": "user", "content": f"Row {i}."},
                {"role": "assistant", "content": reply},
            ]
            f.write(json.dumps({"messages": messages}) + "\n")


def timed(root: Path, script: Path, out: Path) -> dict:
    env = {**os.environ, "BENCH_OUT": str(out), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCH / "step_timer.py"), str(script), "--overwrite",
         "--output-dir", f"out-{script.stem}"],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        sys.exit(f"{script.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def prepare(root: Path, name: str, layers: int, steps: int, settings: dict) -> None:
    root.mkdir(parents=True, exist_ok=True)
    seq = json.loads((BENCH.parent / "etc" / MODELS[name]["etc"]).read_text())["max_seq_length"]
    seq = {**MODELS[name].get("settings", {}), **settings}.get("max_seq_length", seq)
    long_rows(root / "train.jsonl", 2000, 2 * seq)
    for four_bit in (True, False):
        script_for(root, name, four_bit, steps, settings)
    (root / "bench.json").write_text(json.dumps({"model": name, "layers": layers, "steps": steps}))


def run(root: Path, warmup: int) -> None:
    import torch

    args = json.loads((root / "bench.json").read_text())
    name, layers = args["model"], args["layers"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    build_model(name, layers, root / FOLDER[name], device)
    torch.cuda.empty_cache() if device == "cuda" else None
    scripts = {"NF4 experts": "train_nf4.py", "unquantized experts": "train_bf16.py"}
    runs: dict[str, list[dict]] = {k: [] for k in scripts}
    order = ["NF4 experts", "unquantized experts", "unquantized experts", "NF4 experts"]
    for i, kind in enumerate(order):
        result = timed(root, root / scripts[kind], root / f"run{i}.json")
        runs[kind].append(result | steady_state(result, warmup))
        tps = runs[kind][-1]["tokens_per_second"]
        print(f"run {i + 1}/4 {kind}: {tps:.0f} tokens/s", flush=True)
    print(f"\n{name} shapes, {layers} layers, random weights, shipped config, {device}; "
          f"median over steps {warmup + 1}-{args['steps']} of two runs each")  # fmt: skip
    print("| experts | tokens/s | step s | peak GPU GiB | peak host GiB | final loss |")
    print("|---|---|---|---|---|---|")
    summary = {}
    for kind, results in runs.items():
        tps = statistics.median(r["tokens_per_second"] for r in results)
        step = statistics.median(r["step_seconds"] for r in results)
        gpu = max(r["peak_gpu_bytes"] for r in results) / 2**30
        host = max(r["peak_rss_bytes"] for r in results) / 2**30
        loss = statistics.mean(r["losses"][-1][1] for r in results)
        summary[kind] = tps
        print(f"| {kind} | {tps:.0f} | {step:.3f} | {gpu:.2f} | {host:.2f} | {loss:.3f} |")
    ratio = summary["NF4 experts"] / summary["unquantized experts"]
    print(f"NF4 / unquantized tokens/s: {ratio:.2f}x")


LOAD = """
import importlib.util, json, sys
sys.path.insert(0, {bench!r})
from step_timer import peak_rss_bytes
spec = importlib.util.spec_from_file_location("script", {script!r})
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
model = script.load_model(on_gpu=False)
print(json.dumps({{"peak": peak_rss_bytes()}}))
"""


def load(name: str, counts: list[int]) -> None:
    """CPU: peak RSS of the emitted script's layer-by-layer load of real-shape checkpoints with
    more and more layers. Each layer adds its NF4 weights to what the (CPU) model holds; were the
    checkpoint held whole, each would add its 16-bit size too. (bitsandbytes' CPU quantizer's
    own temporaries, several times the tensor it quantizes, are the same for every count; on a
    GPU it runs on the device.)"""
    from mhgen.vram import NF4_BYTES

    spec = MODELS[name]["shape"]
    h, experts = spec["hidden_size"], spec.get("num_local_experts") or spec["num_experts"]
    width = spec.get("moe_intermediate_size") or spec["intermediate_size"]
    heads, kv, d = spec["num_attention_heads"], spec["num_key_value_heads"], spec["head_dim"]
    per_layer = experts * 3 * h * width + 2 * h * d * (heads + kv)  # weights of one layer
    gib = 2**30
    print(f"{name} shapes: one decoder layer is {per_layer * 2 / gib:.2f} GiB in bf16, "
          f"{per_layer * NF4_BYTES / gib:.2f} GiB in NF4\n")  # fmt: skip
    print("| layers | checkpoint GiB | peak RSS GiB | peak RSS added per layer GiB |")
    print("|---|---|---|---|")
    first = None
    for layers in counts:
        root = Path(tempfile.mkdtemp(prefix="mhgen-bench-moe-"))
        build_model(name, layers, root / FOLDER[name], "cpu")
        script = script_for(root, name, True, 1)
        checkpoint = sum(p.stat().st_size for p in (root / FOLDER[name]).glob("*.safetensors"))
        command = [sys.executable, "-c", LOAD.format(bench=str(BENCH), script=str(script))]
        proc = subprocess.run(command, cwd=root, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(proc.stderr[-3000:])
        peak = json.loads(proc.stdout.strip().splitlines()[-1])["peak"]
        first = first or (layers, peak)
        added = (peak - first[1]) / (layers - first[0]) / gib if layers > first[0] else None
        slope = f"{added:.2f}" if added is not None else "-"
        print(f"| {layers} | {checkpoint / gib:.2f} | {peak / gib:.2f} | {slope} |", flush=True)
        shutil.rmtree(root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="gpt-oss-20b")
    parser.add_argument("--layers", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--load", action="store_true", help="CPU: host memory of loading")
    parser.add_argument("--prepare", type=Path, metavar="DIR")
    parser.add_argument("--run", type=Path, metavar="DIR")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=JSON",
        help='a config setting for --prepare, e.g. --set attn_implementation=\'"flex_attention"\'',
    )  # fmt: skip
    args = parser.parse_args()
    settings = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    if args.load:
        load(args.model, args.layers or [1, 2, 4])
    elif args.prepare:
        prepare(args.prepare.resolve(), args.model, (args.layers or [24])[0], args.steps, settings)
    elif args.run:
        run(args.run.resolve(), args.warmup)
    else:
        parser.error("give --load, --prepare DIR or --run DIR")


if __name__ == "__main__":
    main()
