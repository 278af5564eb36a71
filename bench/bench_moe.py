#!/usr/bin/env python3
"""4-bit experts at gpt-oss-20b's real shapes: what the emitted script's NF4 weights hold.

    python bench/bench_moe.py --weights [--layers 1]     # CPU: quantize real-shape layers
    python bench/bench_moe.py --prepare DIR [--layers 24]    # compile here (needs mhgen) ...
    PYTHONPATH=generator python bench/bench_moe.py --run DIR  # ... train there, on a GPU

--weights builds decoder layers with gpt-oss-20b's shapes (hidden 2880, 32 experts of width 2880,
64 query / 8 key-value heads of 64), random bf16 weights, quantizes them with the emitted script's
own quantize_to_nf4, and prints the bytes held next to `mhgen plan`'s count and the time taken.

--prepare / --run train the shipped gpt-oss-20b config (batch 1 x 1024 tokens, rank-8 LoRA on
attention) for 20 steps on a locally built model of those shapes (random weights, nothing is
downloaded), once with 4-bit experts (the emitted script) and once with load_in_4bit off (every
weight in bf16: the baseline), and print tokens/s and peak CUDA memory of each. Not yet run: this
task had no GPU (see the closing note of the MoE issue).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import data, measure  # noqa: E402

# openai/gpt-oss-20b config.json
GPT_OSS_20B = {
    "hidden_size": 2880, "intermediate_size": 2880, "num_local_experts": 32,
    "num_experts_per_tok": 4, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
    "vocab_size": 201088, "sliding_window": 128, "max_position_embeddings": 131072,
}  # fmt: skip


def gpt_oss_config(layers: int, tokenizer=None):
    import transformers

    ids = {}
    if tokenizer is not None:
        ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    kinds = ["sliding_attention", "full_attention"] * ((layers + 1) // 2)
    return transformers.GptOssConfig(
        **GPT_OSS_20B, **ids, num_hidden_layers=layers, layer_types=kinds[:layers]
    )


def compiled_module(root: Path, load_in_4bit: bool):
    """The emitted script for the shipped gpt-oss-20b config, on the model in root/gpt-oss-20b,
    imported as a module."""
    import importlib.util

    from mhgen.pipeline import compile_config
    from mhgen.write import write

    config = json.loads(
        (Path(__file__).resolve().parents[1] / "etc/training-gpt-oss-20b.json").read_text()
    )
    config |= {"load_in_4bit": load_in_4bit, "base_model": "gpt-oss-20b"}  # a local folder
    (root / "config.json").write_text(json.dumps(config))
    script = root / ("train_nf4.py" if load_in_4bit else "train_bf16.py")
    write(script, compile_config(root / "config.json").text)
    spec = importlib.util.spec_from_file_location(script.stem, script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def weights(layers: int) -> None:
    """Quantize real-shape layers on the CPU and compare the bytes with `mhgen plan`'s count."""
    import tempfile

    import bitsandbytes as bnb
    import torch
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssDecoderLayer

    from mhgen.vram import NF4_BYTES

    config = gpt_oss_config(layers)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        script = compiled_module(Path(tmp), load_in_4bit=True)
        model = torch.nn.Module()  # quantize_to_nf4 walks model.model.layers
        model.model = torch.nn.Module()
        model.model.layers = torch.nn.ModuleList()
        for i in range(layers):
            layer = GptOssDecoderLayer(config, i).to(torch.bfloat16)
            for p in layer.parameters():
                torch.nn.init.normal_(p, std=0.02)
            model.model.layers.append(layer)
        sixteen = sum(
            p.numel() for n, p in model.named_parameters() if p.dim() >= 2 and "router" not in n
        )
        start = time.perf_counter()
        script.quantize_to_nf4(model, "cpu", torch.bfloat16)
        seconds = time.perf_counter() - start
    held = 0
    for m in model.modules():
        if isinstance(m, bnb.nn.Linear4bit):
            state = m.weight.quant_state
            held += m.weight.numel() + state.absmax.numel() * state.absmax.element_size()
            held += state.state2.absmax.numel() * state.state2.absmax.element_size()
            held += state.state2.code.numel() * 4 + state.code.numel() * 4  # 16-entry tables
    plan = sixteen * NF4_BYTES
    print(f"gpt-oss-20b shapes, {layers} layer(s), {sixteen / 1e9:.3f}B weights in NF4")
    print(f"{'':22} {'GiB':>8}")
    print(f"{'16-bit':22} {sixteen * 2 / 2**30:8.3f}")
    print(f"{'NF4 held (measured)':22} {held / 2**30:8.3f}")
    print(f"{'NF4 in mhgen plan':22} {plan / 2**30:8.3f}  ({plan / held - 1:+.2%})")
    print(f"quantize_to_nf4 on this CPU: {seconds:.1f} s ({seconds / layers:.1f} s per layer)")


def prepare(root: Path, layers: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    data(root / "train.jsonl", 400)
    for four_bit in (True, False):
        compiled_module(root, four_bit)
    (root / "bench.json").write_text(json.dumps({"layers": layers}))


def run(root: Path) -> None:
    """Build the model in root/gpt-oss-20b, train both scripts 20 steps, print the table."""
    import os

    import torch
    from transformers import AutoModelForCausalLM

    from mhgen.tiny import build_tokenizer

    layers = json.loads((root / "bench.json").read_text())["layers"]
    model_dir = root / "gpt-oss-20b"  # the folder name makes the family gpt-oss
    tokenizer = build_tokenizer("harmony")
    tokenizer.save_pretrained(model_dir)
    with torch.device("cuda"):  # random init on the GPU in bf16 (about 42 GB), then saved
        model = AutoModelForCausalLM.from_config(
            gpt_oss_config(layers, tokenizer), dtype=torch.bfloat16
        )
    model.save_pretrained(model_dir)
    del model
    torch.cuda.empty_cache()
    os.chdir(root)
    args = ["--data", "train.jsonl", "--max-steps", "20", "--overwrite"]
    results = {}
    for name, script in (("4-bit experts", "train_nf4.py"), ("bf16 experts", "train_bf16.py")):
        results[name] = measure(
            [script, "--output-dir", f"out-{script}", *args], root / f"{script}.json"
        )
    print(f"gpt-oss-20b shapes ({layers} layers), random weights, 20 steps, batch 1 x 1024")
    print(f"{'':14} {'tokens/s':>9} {'peak GiB':>9}")
    for name, r in results.items():
        print(f"{name:14} {r['real'] / r['wall']:9.0f} {r['peak_bytes'] / 2**30:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="store_true", help="CPU: NF4 bytes of real shapes")
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--prepare", type=Path, metavar="DIR")
    parser.add_argument("--run", type=Path, metavar="DIR")
    args = parser.parse_args()
    if args.weights:
        weights(args.layers or 1)
    elif args.prepare:
        prepare(args.prepare, args.layers or 24)
    elif args.run:
        run(args.run)
    else:
        parser.error("give --weights, --prepare DIR or --run DIR")


if __name__ == "__main__":
    main()
