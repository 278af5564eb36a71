"""``mhgen smoke CONFIG``: prove on a laptop CPU, in under a minute, that a config's script trains.

Builds a tiny randomly initialised model of the config's family (tiny.py) with a tokenizer for
its chat format, compiles the config with base_model pointing there, and runs the script for a
few steps on a few conversations: the config's own data when its file exists, else a built-in
sample. Every other setting (4-bit, dtype, LoRA, batch, sequence length) is the config's own.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from . import families
from .diagnostics import MhgenError
from .pipeline import check_config, compile_config
from .resolve import resolve
from .run import run_script
from .write import write

# data files the script reads with datasets.load_dataset; smoke copies lines of JSONL files only
TABLE_SUFFIXES = (".json", ".parquet", ".csv")

SAMPLE = [
    [
        {"role": "user", "content": f"What is {a} plus {b}?"},
        {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
    ]
    for a, b in ((1, 2), (2, 3), (3, 5), (4, 4), (5, 8), (6, 1), (7, 7), (9, 3))
]


# What the emitted script and the tiny model need (the train extra); bitsandbytes under 4-bit.
NEEDED = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers")


def missing_packages(four_bit: bool) -> list[str]:
    import importlib

    missing = []
    for name in (*NEEDED, "bitsandbytes") if four_bit else NEEDED:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def smoke(config: Path, steps: int = 4, rows: int = 32, keep: Path | None = None) -> int:
    source, _ = check_config(config)
    plan = resolve(source)
    missing = missing_packages(plan.values["load_in_4bit"])
    if missing:
        raise MhgenError(
            f"mhgen smoke trains for real and needs {', '.join(missing)}: "
            "pip install -e '.[train]' (with the torch build for your machine)"
        )
    family = plan.family
    if family is families.UNKNOWN or family.chat_format != plan.chat_format:
        family = families.by_format(plan.chat_format)
    work = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mhgen-smoke-"))
    code = None
    try:
        from . import tiny

        # The folder carries the real model's name, so family detection and the script's name
        # are those of the config itself.
        name = re.sub(
            r"[^A-Za-z0-9._-]+",
            "-",
            re.split(r"[/\\]", source.data["base_model"].rstrip("/\\"))[-1],
        )
        model_dir = tiny.build(
            family.name, plan.chat_format, work / "models" / name.strip(".-") or "model"
        )
        data = work / "data.jsonl"
        user_data = Path(plan.values["dataset_path"])
        if user_data.is_file() and user_data.suffix.lower() not in TABLE_SUFFIXES:
            with user_data.open(encoding="utf-8") as f:
                lines = [line for _, line in zip(range(rows), f, strict=False)]
            data.write_text("".join(lines), encoding="utf-8")
            origin = f"the first {len(lines)} lines of {user_data}"
        else:
            data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in SAMPLE))
            why = "not a JSONL file" if user_data.exists() else "not found here"
            origin = f"a built-in sample ({user_data}: {why})"
        settings = {k: v for k, v in source.data.items() if k != "$schema"}
        settings.update(
            base_model=str(model_dir),
            dataset_path=str(data),
            eval_dataset_path=None,
            output_dir=str(work / "out"),
            max_steps=steps,
            logging_steps=1,
            save_steps=steps,
        )
        derived = work / f"training-{plan.slug}.json"  # the script gets the config's own name
        derived.write_text(json.dumps(settings, indent=2), encoding="utf-8")
        compiled = compile_config(derived)
        script = work / compiled.plan.script_name
        write(script, compiled.text, force=True)
        print(f"smoke: tiny {family.name} model ({plan.chat_format}), data: {origin}", flush=True)
        code = run_script(script, ["--max-steps", str(steps), "--overwrite"])
        if code != 0:
            print(f"smoke: FAILED: the script exited with {code}; files kept in {work}")
            return code
        record = json.loads((work / "out" / "mhgen_run.json").read_text())
        losses = [e["loss"] for e in record["log_history"] if "loss" in e]
        print(
            f"smoke: ok: {len(losses)} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}; "
            + (
                f"the adapter is in {work / 'out'}"
                if keep
                else "its files, adapter included, are deleted (--keep DIR keeps them)"
            )
        )
        return 0
    finally:
        if not keep and code in (0, None):  # a failed script's files stay, to be looked at
            shutil.rmtree(work, ignore_errors=True)
        sys.stdout.flush()
