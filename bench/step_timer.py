#!/usr/bin/env python3
"""Run a training script and record every optimizer step: its wall time and the real (non-pad)
tokens it trained on, then peak GPU memory and peak host RSS.

    BENCH_OUT=result.json python bench/step_timer.py SCRIPT ARGS...

Works for any script built on trl's SFTTrainer (the emitted ones and a plain TRL baseline): it
wraps SFTTrainer.__init__ to add a timing callback and counts the tokens trl's collator batches.
Step times are taken after a CUDA synchronize, so a step's time is the GPU's, not the launch's.
Benchmarks summarise the steps after a warm-up (steady_state below): never from the first batch.
"""

from __future__ import annotations

import atexit
import json
import os
import resource
import runpy
import statistics
import sys
import time


def steady_state(result: dict, warmup: int) -> dict:
    """Median step time and tokens/s over the steps after ``warmup`` (the first steps compile
    kernels, fill caches and allocate; they are not the training's speed)."""
    steps = list(zip(result["seconds"], result["tokens"], strict=True))[warmup:]
    if not steps:
        raise ValueError(f"{len(result['seconds'])} steps recorded, {warmup} are warm-up")
    seconds = statistics.median(s for s, _ in steps)
    rates = [tokens / s for s, tokens in steps]
    tps = statistics.median(rates)
    return {"steps": len(steps), "step_seconds": seconds, "tokens_per_second": tps}


def peak_rss_bytes() -> int:
    """This process's own peak resident memory: VmHWM of /proc/self/status, which a new program
    starts afresh (ru_maxrss survives fork and exec: a child of a large parent reads the
    parent's peak, as bench_moe.py's did, ~40 GiB for a run of 2.6). ru_maxrss off Linux."""
    try:
        with open("/proc/self/status") as f:
            line = next(x for x in f if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024  # kB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main() -> None:
    import torch
    import transformers
    import trl
    from trl.trainer import sft_trainer

    record = {"seconds": [], "tokens": [], "padded_tokens": 0, "real_tokens": 0, "losses": []}
    seen = {"tokens": 0, "at_step": 0}
    collate = sft_trainer.DataCollatorForLanguageModeling.torch_call

    def counted(self, examples):
        batch = collate(self, examples)
        real = sum(len(e["input_ids"]) for e in examples)
        seen["tokens"] += real
        record["real_tokens"] += real
        record["padded_tokens"] += batch["input_ids"].numel()
        return batch

    sft_trainer.DataCollatorForLanguageModeling.torch_call = counted

    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    class StepTimer(transformers.TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.last = now()

        def on_step_end(self, args, state, control, **kwargs):
            t = now()
            record["seconds"].append(t - self.last)
            record["tokens"].append(seen["tokens"] - seen["at_step"])
            seen["at_step"] = seen["tokens"]
            self.last = t

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                record["losses"].append([state.global_step, logs["loss"]])

    init = trl.SFTTrainer.__init__

    def with_timer(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(StepTimer())

    trl.SFTTrainer.__init__ = with_timer

    def report() -> None:
        gpu = torch.cuda.is_available()
        record["peak_gpu_bytes"] = torch.cuda.max_memory_allocated() if gpu else 0
        record["peak_rss_bytes"] = peak_rss_bytes()
        with open(os.environ["BENCH_OUT"], "w") as f:
            json.dump(record, f)

    atexit.register(report)
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
