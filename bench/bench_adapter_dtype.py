#!/usr/bin/env python3
"""4-bit runs: LoRA adapters kept in bfloat16 (what TRL does to them) against float32 master copies.

    python bench/bench_adapter_dtype.py [--steps 600] [--lr 2e-4] [--seeds 0 1 2]

TRL 1.16 casts every trainable parameter to bfloat16 when the model is loaded in 4 bits
(sft_trainer.py, "When using QLoRA, the PEFT adapter weights are converted to bf16"). An optimizer
update smaller than bfloat16's resolution at a weight's magnitude (8 bits of mantissa) is lost, and
late in a cosine schedule the updates are small. This trains the emitted script of a tiny Qwen3 in
4-bit (bitsandbytes NF4 on the CPU) with a cosine schedule, once as TRL leaves the adapters and once
with them cast back to float32 after the trainer is built, same seed and data, and prints the
losses side by side: the mean of the last tenth of the steps, and how many adapter updates of the
last step were rounded away (weights that did not change although their gradient was not zero).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

DRIVER = r"""
import os, runpy, sys
import torch
import trl

init = trl.SFTTrainer.__init__
def patched(self, *args, **kwargs):
    init(self, *args, **kwargs)
    if os.environ["ADAPTER_DTYPE"] == "float32":
        for p in self.model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    trainable = [p for p in self.model.parameters() if p.requires_grad]
    print("adapter dtype:", sorted({str(p.dtype) for p in trainable}), flush=True)
    before = {}
    class Count(trl.trainer.sft_trainer.TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, **kw):
            before.clear()
            before.update({i: p.detach().clone() for i, p in enumerate(trainable)})
        def on_optimizer_step(self, args, state, control, **kw):
            moved = total = 0
            for i, p in enumerate(trainable):
                has_grad = p.grad is not None and bool((p.grad != 0).any())
                if has_grad:
                    total += p.numel()
                    moved += int((p.detach() != before[i]).sum())
            self.last = (moved, total)
        def on_train_end(self, args, state, control, **kw):
            moved, total = self.last
            print(f"last step: {total - moved} of {total} adapter weights unchanged", flush=True)
    self.add_callback(Count())
trl.SFTTrainer.__init__ = patched
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from mhgen import tiny
    from mhgen.pipeline import compile_config
    from mhgen.write import write

    work = Path(tempfile.mkdtemp(prefix="bench-adapter-"))
    model = tiny.build("qwen3", "chatml", work / "Qwen3-8B")
    words = "red green blue cyan pink gold gray teal lime navy plum rose sand snow wine jade"
    rows = [
        {"messages": [{"role": "user", "content": f"Say {w} {i}."},
                      {"role": "assistant", "content": f"{w} {i} {w} {i} {w}."}]}
        for i in range(4) for w in words.split()
    ]  # fmt: skip
    data = work / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    driver = work / "driver.py"
    driver.write_text(DRIVER)
    runs = []  # compiled first, then run: the runs take minutes
    for seed in args.seeds:
        for dtype in ("bfloat16", "float32") if seed % 2 == 0 else ("float32", "bfloat16"):
            out = work / f"out-{dtype}-{seed}"
            config = {
                "base_model": str(model), "chat_template": "auto", "system_prompt": "",
                "dataset_path": str(data), "output_dir": str(out), "max_seq_length": 256,
                "lora_rank": 8, "lora_alpha": 16, "learning_rate": args.lr,
                "lr_scheduler_type": "cosine", "warmup_ratio": 0.03, "seed": seed,
                "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                "logging_steps": 1, "save_steps": 100000, "load_in_4bit": True,
                "dtype": "bfloat16",
            }  # fmt: skip
            path = work / f"{dtype}-{seed}.json"
            path.write_text(json.dumps(config))
            compiled = compile_config(path)
            script = work / f"{dtype}-{seed}-{compiled.plan.script_name}"
            write(script, compiled.text, force=True)
            runs.append((seed, dtype, script, out))
    results: dict[str, list[tuple[float, str]]] = {"bfloat16": [], "float32": []}
    for seed, dtype, script, out in runs:
        proc = subprocess.run(
            [sys.executable, str(driver), str(script), "--max-steps", str(args.steps)],
            capture_output=True, text=True, env={**os.environ, "ADAPTER_DTYPE": dtype},
        )  # fmt: skip
        if proc.returncode:
            sys.exit(proc.stderr[-3000:])
        record = json.loads((out / "mhgen_run.json").read_text())
        losses = [e["loss"] for e in record["log_history"] if "loss" in e]
        tail = statistics.mean(losses[-max(1, len(losses) // 10) :])
        unchanged = next(line for line in proc.stdout.splitlines() if line.startswith("last step:"))
        results[dtype].append((tail, unchanged.removeprefix("last step: ")))
        print(f"seed {seed} {dtype}: final-tenth loss {tail:.4f}; {unchanged}", flush=True)
    print(f"\n{args.steps} steps, lr {args.lr:g}, cosine, tiny Qwen3 in 4-bit, bf16 compute")
    print("| adapters | mean loss, last 10% of steps (per seed) | median |")
    print("|---|---|---|")
    for dtype, rows_ in results.items():
        tails = [t for t, _ in rows_]
        per_seed = ", ".join(f"{t:.4f}" for t in tails)
        print(f"| {dtype} | {per_seed} | {statistics.median(tails):.4f} |")


if __name__ == "__main__":
    main()
