#!/usr/bin/env python3
"""Reading and tokenizing training data: the emitted script's path (datasets, Arrow on disk,
parallel processes, a cache) against the path of mhgen 0.3.0's scripts (every row into Python
lists on one core, then datasets.Dataset.from_list), on generated chat rows of about 220 tokens.

    python bench/bench_data.py [--rows 20000 100000] [--large] [--paths old new cached]

--large adds 1,000,000 rows (the new path only: the old one needs about 40 bytes of RAM per
token). Each measurement runs in its own process; peak RSS is that process's and its workers'
together, sampled every 50 ms. "cached" is a second run on the same data: the time until the
tokenized examples are ready. The tokenizer is mhgen's tiny ChatML one (a fast BPE tokenizer with
Qwen's special tokens), so the numbers are about the pipeline, not a large vocabulary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "generator"))

DRIVER = r"""
import json, sys, time
from pathlib import Path

mode, script, data, cache = sys.argv[1:5]
namespace = {"__name__": "bench_emitted"}
exec(compile(Path(script).read_text(), script, "exec"), namespace)
data, cache = Path(data), Path(cache)
began = time.perf_counter()
tokenizer = namespace["load_tokenizer"]()
if mode == "old":  # mhgen 0.3.0: read_conversations + build_examples + Dataset.from_list
    from datasets import Dataset

    conversations = []
    with data.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            messages, problem = namespace["parse_row"](number, raw, str(data))
            conversations += [messages] if messages else []
    examples, tokens = [], 0
    for messages in conversations:
        example = namespace["tokenize"](tokenizer, messages)
        example = {k: v[: namespace["MAX_SEQ_LENGTH"]] for k, v in example.items()}
        tokens += len(example["input_ids"])
        examples.append(example)
    dataset = Dataset.from_list(examples)
else:
    namespace["check_rows"](data, cache)
    dataset, profile = namespace["tokenized"](tokenizer, data, cache)
    lengths = dataset.select_columns(["length"]).with_format("numpy")[:]["length"]
    tokens = int(lengths.clip(max=namespace["MAX_SEQ_LENGTH"]).sum())
print(json.dumps({"rows": len(dataset), "tokens": tokens, "seconds": time.perf_counter() - began}))
"""

WORDS = ["the", "a", "model", "learns", "to", "answer", "questions", "about", "code", "data"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with path.open("w") as f:
        for i in range(rows):
            question = " ".join(rng.choices(WORDS, k=15))  # with the tiny tokenizer: ~220 tokens
            answer = " ".join(rng.choices(WORDS, k=50))
            row = {"messages": [{"role": "user", "content": f"{i}: {question}"},
                                {"role": "assistant", "content": answer}]}  # fmt: skip
            f.write(json.dumps(row) + "\n")


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total


def measure(mode: str, script: Path, data: Path, cache: Path) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log = cache.with_name(cache.name + f"_{mode}.log")  # a file: a full pipe would stall it
    with log.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", DRIVER, mode, str(script), str(data), str(cache)],
            stdout=sink, stderr=sink, text=True, env=env,
        )  # fmt: skip
        peak = 0
        while child.poll() is None:
            peak = max(peak, tree_rss(child.pid))
            time.sleep(0.05)
    out = log.read_text()
    if child.returncode:
        sys.exit(f"{mode} failed:\n{out[-3000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--large", action="store_true", help="also 1,000,000 rows (new path)")
    parser.add_argument("--paths", nargs="+", default=["old", "new", "cached"])
    args = parser.parse_args()
    from mhgen.pipeline import compile_config
    from mhgen.tiny import build_tokenizer

    root = Path(tempfile.mkdtemp(prefix="bench_data_"))
    model = root / "Qwen3-8B"
    build_tokenizer("chatml").save_pretrained(model)
    config = {"base_model": str(model), "chat_template": "chatml", "system_prompt": "Be brief.",
              "max_seq_length": 2048}  # fmt: skip
    (root / "training-bench.json").write_text(json.dumps(config))
    script = root / "train_bench.py"
    script.write_text(compile_config(root / "training-bench.json").text)
    sizes = [(n, args.paths) for n in args.rows]
    if args.large:
        sizes.append((1_000_000, [p for p in args.paths if p != "old"]))
    print(f"{len(os.sched_getaffinity(0))} cores; rows of ~220 tokens (tiny ChatML tokenizer)")
    print("| rows (JSONL size) | path | wall s | rows/s | tokens/s | peak RSS |")
    print("|---|---|---|---|---|---|")
    for rows, paths in sizes:
        data = root / f"rows_{rows}.jsonl"
        generate(data, rows)
        cache = root / f"cache_{rows}"
        size = f"{rows:,} ({data.stat().st_size / 1e6:.0f} MB)"
        for path in paths:  # "cached" follows "new", which filled the cache
            r = measure("old" if path == "old" else "new", script, data, cache)
            rate, tokens = r["rows"] / r["seconds"], r["tokens"] / r["seconds"]
            print(
                f"| {size} | {path} | {r['seconds']:.1f} | {rate:,.0f} | {tokens:,.0f} "
                f"| {r['peak'] / 2**30:.2f} GiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
