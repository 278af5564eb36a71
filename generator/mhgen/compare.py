"""``mhgen diff``: two configs compared by what changes in training first (family, chat format,
loader, memory, script), then setting by setting, then their scripts line by line."""

from __future__ import annotations

import difflib
import json
import re

from . import validate, vram
from .pipeline import Compiled
from .resolve import origin_mark

HASH = re.compile(r"[0-9a-f]{64}")  # the config's and the body's sha256: they always differ
# settings that only the harmony format reads
HARMONY_ONLY = ("reasoning_effort", "chat_template_date")
FORMATS = {  # each template's format, in words
    "formats/harmony.py.j2": "harmony (gpt-oss: analysis and final channels)",
    "formats/chatml-qwen3.py.j2": "chatml with Qwen3's <think> block",
    "formats/chatml.py.j2": "chatml",
    "formats/llama.py.j2": "llama (Llama 2: [INST], <<SYS>>)",
    "formats/llama3.py.j2": "llama3 (Llama 3: header tokens)",
    "formats/mistral.py.j2": "mistral ([INST], no <<SYS>>)",
}


METHODS = {
    "sft": "sft: supervised fine-tuning on conversations (TRL's SFTTrainer)",
    "dpo": "dpo: preference pairs, chosen over rejected (TRL's DPOTrainer)",
}


def applies(key: str, compiled: Compiled) -> bool:
    """Whether the setting ``key`` changes anything in this config's script."""
    if key in validate.DPO_SETTINGS:
        return compiled.plan.preference
    return key not in HARMONY_ONLY or compiled.plan.chat_format == "harmony"


def facets(compiled: Compiled) -> dict[str, str]:
    """What a reader of two scripts wants to know first, in words."""
    plan, values = compiled.plan, compiled.plan.values
    model = compiled.source.model
    shape = vram.shape_for(values["base_model"], model.config if model else None)
    if plan.experts_4bit:
        loader = "the script's own, layer by layer: linear layers and experts in NF4"
    elif values["load_in_4bit"]:
        loader = "transformers + bitsandbytes: linear layers in NF4"
    else:
        loader = f"transformers, weights in {values['dtype']}"
    memory = "unknown (no shapes for this model)"
    if plan.peak_gib is not None:
        memory = f"{plan.peak_gib} GiB peak (mhgen plan)"
        if plan.experts_4bit and shape is not None:
            memory += f", {vram.host_memory(shape)['peak'] / vram.GIB:.1f} GiB of host RAM to load"
    return {
        "method": METHODS[values["method"]],
        "family": plan.family.name + (" (mixture of experts)" if plan.family.moe else ""),
        "chat format": FORMATS.get(plan.format_template, plan.chat_format),
        "loader": loader,
        "GPU memory": memory,
        "script": plan.script_name,
    }


def settings(compiled: Compiled) -> dict[str, str]:
    """Every setting that applies, as JSON, with how it was chosen; notes field by field."""
    plan, out = compiled.plan, {}
    for key, value in plan.values.items():
        if key == "notes" or not applies(key, compiled):
            continue
        mark = origin_mark(plan.origins.get(key, "config"))
        out[key] = json.dumps(value, ensure_ascii=False) + mark
    notes = plan.values.get("notes")
    if isinstance(notes, dict):
        out |= {f"notes.{k}": json.dumps(v, ensure_ascii=False) for k, v in notes.items()}
    elif notes:
        out["notes"] = json.dumps(notes, ensure_ascii=False)
    return out


def changes(before: dict[str, str], after: dict[str, str], ordered: bool = False) -> list[str]:
    """One line per key whose value differs: in ``before``'s order, or sorted (notes last)."""
    keys = list(before) + [k for k in after if k not in before]
    if not ordered:
        keys.sort(key=lambda k: (k.startswith("notes."), k))
    missing = "(not set)"
    return [
        f"  {key}: {before.get(key, missing)} -> {after.get(key, missing)}"
        for key in keys
        if before.get(key) != after.get(key)
    ]


BOUNDARY = "\n# ==== mhgen runtime "


def split_script(text: str) -> tuple[str, dict[str, tuple[str, str]]]:
    """A script's recipe, and its runtime blocks, {name: (mhgen version, sha256)}, as their
    boundary comments name them."""
    recipe, *blocks = text.split(BOUNDARY)
    named = {}
    for block in blocks:
        head, sha_line = block.split("\n")[:2]  # "0.5.0, what: ... ====", "# runtime sha256: X"
        version, _, what = head.partition(", ")
        name = "4-bit experts block" if what.startswith("4-bit experts") else "runtime"
        named[name] = (version, sha_line.rpartition(" ")[2])
    return recipe, named


def runtime_text(a: dict, b: dict) -> str:
    """Whether the two scripts' runtime blocks are the same bytes, block by block."""
    out = []
    for name in sorted(a.keys() | b.keys(), key=["runtime", "4-bit experts block"].index):
        if name not in a or name not in b:
            _, sha = a.get(name) or b[name]
            out.append(f"{name}: only in {'a' if name in a else 'b'} (sha256 {sha[:16]})")
        elif a[name] == b[name]:
            out.append(f"{name}: identical (mhgen {a[name][0]}, sha256 {a[name][1][:16]})")
        else:
            versions = f"mhgen {a[name][0]} and {b[name][0]}"
            out.append(
                f"{name}: differs: the scripts come from different mhgen versions ({versions})"
            )
    return "\n".join(out) + "\n"


def diff_text(a: Compiled, b: Compiled) -> tuple[str, bool]:
    """The comparison's text, and whether the two differ at all: what changes in training, the
    settings that differ, the diff of the two recipes, and whether the runtimes are the same."""
    what = changes(facets(a), facets(b), ordered=True)
    how = changes(settings(a), settings(b))
    (recipe_a, runtime_a), (recipe_b, runtime_b) = split_script(a.text), split_script(b.text)
    script_a, script_b = (
        [line for line in recipe.splitlines(keepends=True) if not HASH.search(line)]
        for recipe in (recipe_a, recipe_b)
    )
    lines = list(
        difflib.unified_diff(
            script_a,
            script_b,
            f"{a.plan.script_name} ({a.source.file})",
            f"{b.plan.script_name} ({b.source.file})",
        )
    )
    runtime = runtime_text(runtime_a, runtime_b)
    if not (what or how or lines) and runtime_a == runtime_b:
        return "the configs compile to the same script\n", False
    out = ["what changes:", *(what or ["  nothing of the above"]), ""]
    out += ["settings:", *(how or ["  the same"]), ""]
    if lines:
        out.append("recipes (lines holding a sha256 left out):")
        return "\n".join(out) + "\n" + "".join(lines) + runtime, True
    return "\n".join(out) + "the recipes are the same\n" + runtime, True
