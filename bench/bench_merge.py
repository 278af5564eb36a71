#!/usr/bin/env python3
"""--merge of an adapter on gpt-oss-20b's experts, at the real shapes, on the CPU: host memory,
time, size, and what MXFP4 does to the adapter's change.

    python bench/bench_merge.py [--layers 1 2] [--rank 8]

For each layer count: a random gpt-oss-20b-shaped checkpoint with its experts in MXFP4, as
openai/gpt-oss-20b ships them (the real vocabulary, hidden size, 32 experts), and a random adapter
as the emitted 4-bit script saves one with "gate_up" and "down" in lora_target_modules (LoRA on
q_proj, v_proj and every expert's gate_up and down, rank RANK, alpha 2 * RANK). lora_B is drawn so
that the change is about 1% of the weight (RMS): trained adapters are of that order. Each merge
runs in a fresh process (so its peak RSS, VmHWM, is its own) with the emitted script's own
merge_adapter, once per --merge-format (bfloat16 experts, and MXFP4). Peak host memory should
not grow with the layer count: the merge holds one layer at a time.

The last table is MXFP4's rounding, on layer 0's gate_up: its error relative to the merged
weight (the format's own), and relative to the adapter's change (how much of what was learned
the rounding covers).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_moe import FOLDER, build_model, script_for  # noqa: E402

MERGE = """
import importlib.util, json, sys, time
sys.path.insert(0, {bench!r})
from step_timer import peak_rss_bytes
spec = importlib.util.spec_from_file_location("emitted", {script!r})
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
start = time.perf_counter()
script.merge_adapter(script.Path({out!r}), {model!r}, "bfloat16", {fmt!r})
print(json.dumps({{"seconds": time.perf_counter() - start, "peak": peak_rss_bytes()}}))
"""


def to_mxfp4(folder: Path) -> None:
    """The checkpoint's experts in MXFP4 and its quantization_config, as gpt-oss-20b ships."""
    from safetensors.torch import load_file, save_file

    from mhgen.runtime.merge import GPT_OSS_MXFP4
    from mhgen.runtime.mxfp4 import quantize_mxfp4

    for file in sorted(folder.glob("*.safetensors")):
        tensors = load_file(file)
        for name in [
            n for n in tensors if n.endswith(("experts.gate_up_proj", "experts.down_proj"))
        ]:
            tensors[name + "_blocks"], tensors[name + "_scales"] = quantize_mxfp4(tensors.pop(name))
        save_file(tensors, file, metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = GPT_OSS_MXFP4
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def random_adapter(folder: Path, model: Path, rank: int, layers: int) -> None:
    """An adapter as the 4-bit script saves one with LoRA on attention and the experts."""
    import torch
    from safetensors.torch import save_file

    config = json.loads((model / "config.json").read_text())
    h, i, e = config["hidden_size"], config["intermediate_size"], config["num_local_experts"]
    q, kv = config["num_attention_heads"] * config["head_dim"], config["num_key_value_heads"] * 64
    torch.manual_seed(0)
    tensors = {}

    def pair(prefix: str, d_in: int, d_out: int, rows: int, weight_rms: float) -> None:
        a = torch.randn(rows, d_in) / d_in**0.5  # rows: rank (x experts)
        # the change (alpha / r) B A, alpha / r = 2, has RMS 2 std(B) sqrt(r / d_in): 1% of the
        # weight's RMS
        b = torch.randn(d_out, rows) * 0.01 * weight_rms / (2 * (rank / d_in) ** 0.5)
        tensors[f"base_model.model.{prefix}lora_A.weight"] = a
        tensors[f"base_model.model.{prefix}lora_B.weight"] = b

    for layer in range(layers):
        base = f"model.layers.{layer}."
        pair(base + "self_attn.q_proj.", h, q, rank, 0.02)
        pair(base + "self_attn.v_proj.", h, kv, rank, 0.02)
        pair(base + "mlp.experts.base_layer.", h, 2 * i, rank * e, 0.02)  # gate_up, wrapped first
        pair(base + "mlp.experts.", i, h, rank * e, 0.02)  # down
    folder.mkdir(parents=True)
    save_file(tensors, folder / "adapter_model.safetensors", metadata={"format": "pt"})
    adapter = {
        "r": rank, "lora_alpha": 2 * rank, "target_modules": ["q_proj", "v_proj"],
        "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
        "peft_type": "LORA", "base_model_name_or_path": str(model),
    }  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(adapter))
    for file in model.glob("*token*"):
        shutil.copy(file, folder / file.name)


def rounding(model: Path, merged: dict) -> dict:
    """MXFP4's error on layer 0's merged gate_up: relative to the weight and to the change."""
    import torch
    from safetensors import safe_open

    from mhgen.runtime.mxfp4 import dequantize_mxfp4

    name = "model.layers.0.mlp.experts.gate_up_proj"

    def read(folder: Path, *names: str):
        index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
        out = []
        for n in names:
            with safe_open(folder / index[n], "pt") as f:
                out.append(f.get_tensor(n))
        return out

    base = dequantize_mxfp4(
        *read(model_index(model), name + "_blocks", name + "_scales"), torch.float32
    )
    exact = read(merged["bfloat16"], name)[0].float()
    quantized = dequantize_mxfp4(
        *read(merged["mxfp4"], name + "_blocks", name + "_scales"), torch.float32
    )
    change, error = exact - base, quantized - exact
    rms = lambda t: t.pow(2).mean().sqrt().item()  # noqa: E731
    return {
        "change / weight": rms(change) / rms(exact),
        "MXFP4 error / weight": rms(error) / rms(exact),
        "MXFP4 error / change": rms(error) / rms(change),
        "cosine(quantized - base, change)": torch.nn.functional.cosine_similarity(
            (quantized - base).flatten(), change.flatten(), dim=0
        ).item(),
    }


def model_index(model: Path) -> Path:
    """The model folder with an index file (save_pretrained writes one only when sharded)."""
    if not (model / "model.safetensors.index.json").exists():
        from safetensors import safe_open

        with safe_open(model / "model.safetensors", "pt") as f:
            weight_map = dict.fromkeys(f.keys(), "model.safetensors")
        index = {"metadata": {}, "weight_map": weight_map}
        (model / "model.safetensors.index.json").write_text(json.dumps(index))
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args()
    gib = 2**30
    print("| layers | --merge-format | checkpoint GiB | written GiB | seconds | peak host GiB |")
    print("|---|---|---|---|---|---|")
    errors = None
    for layers in args.layers:
        root = Path(tempfile.mkdtemp(prefix="mhgen-bench-merge-"))
        model = root / FOLDER["gpt-oss-20b"]
        build_model("gpt-oss-20b", layers, model, "cpu")
        to_mxfp4(model)
        size = sum(p.stat().st_size for p in model.glob("*.safetensors")) / gib
        settings = {"lora_rank": args.rank, "lora_alpha": 2 * args.rank, "lora_dropout": 0.0}
        settings["lora_target_modules"] = ["q_proj", "v_proj", "gate_up", "down"]
        script = script_for(root, "gpt-oss-20b", True, 1, settings)
        merged = {}
        for fmt, dtype in (("dtype", "bfloat16"), ("mxfp4", "mxfp4")):
            out = root / f"out-{fmt}"
            random_adapter(out, model, args.rank, layers)
            line = MERGE.format(
                bench=str(BENCH), script=str(script), out=str(out), model=str(model), fmt=fmt
            )
            start = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-c", line], cwd=root, capture_output=True, text=True
            )
            if proc.returncode != 0:
                sys.exit(proc.stderr[-3000:])
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            written = sum(p.stat().st_size for p in (out / "merged").glob("*.safetensors")) / gib
            print(
                f"| {layers} | {fmt} | {size:.2f} | {written:.2f} | {result['seconds']:.0f} "
                f"(process {time.perf_counter() - start:.0f}) | {result['peak'] / gib:.2f} |",
                flush=True,
            )
            merged[dtype] = out / "merged"
        errors = errors or rounding(model, merged)
        shutil.rmtree(root)
    print("\nMXFP4 rounding of layer 0's merged gate_up (RMS ratios):\n")
    print("| measure | value |\n|---|---|")
    for what, value in errors.items():
        print(f"| {what} | {value:.4f} |")


if __name__ == "__main__":
    main()
