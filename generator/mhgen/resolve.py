"""Resolve a valid config into a Plan: every default filled, the family and chat format chosen,
derived values computed. The Plan is frozen and is all a template ever sees.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import __version__, families
from .load import Source
from .schema import defaults, properties

# Dependencies of the emitted script (PEP 723 block); lower bounds are the APIs it uses.
DEPENDENCIES = (
    "torch>=2.6",
    "transformers>=5.0",
    "trl>=1.0",
    "peft>=0.17",
    "accelerate>=1.0",
    "datasets>=3.0",
)
BITSANDBYTES = "bitsandbytes>=0.46"
DEEPSPEED = "deepspeed>=0.16"
LIGER = "liger-kernel>=0.6"


@dataclass(frozen=True)
class Plan:
    """Everything the templates need, settled: no template makes a decision."""

    mhgen_version: str
    config_sha256: str
    slug: str
    values: MappingProxyType  # every schema field, resolved
    origins: MappingProxyType  # field -> "config" | "default" | "auto" | "derived"
    family: families.Family
    notes: tuple[str, ...]  # one string per note; "label: text" for a notes object
    dependencies: tuple[str, ...]

    @property
    def script_name(self) -> str:
        return f"train_{self.slug}.py"

    @property
    def chat_format(self) -> str:
        return self.values["chat_template"]

    @property
    def experts_4bit(self) -> bool:
        """An MoE model in 4-bit: the script quantizes the experts itself (the loader cannot)."""
        return self.family.moe and self.values["load_in_4bit"]

    @property
    def experts_lora(self) -> bool:
        """LoRA on those 4-bit experts: an expert no token chose in a step gets no gradient."""
        return self.experts_4bit and families.adapts_experts(self.values["lora_target_modules"])

    @property
    def format_template(self) -> str:
        """The template that renders the chat format, with the family's variant where it has one."""
        variant = self.family.variant if self.chat_format == self.family.chat_format else ""
        return f"formats/{self.chat_format}{'-' + variant if variant else ''}.py.j2"


def slug(base_model: str) -> str:
    """``unsloth/Qwen3-Coder-30B-A3B-Instruct`` -> ``qwen3_coder_30b_a3b_instruct``.

    The last path component of base_model, lower-cased, with every run of characters other than
    ASCII letters and digits turned into one ``_``, trimmed, at most 56 characters (so that every
    run command in the script's docstring fits a line). It can hold no path separator or dot, so
    the script's name never leaves its output folder.
    """
    last = re.split(r"[/\\]", base_model.strip().rstrip("/\\"))[-1]
    return re.sub(r"[^a-z0-9]+", "_", last.lower()).strip("_")[:56].strip("_")


def canonical_sha256(data: dict[str, Any]) -> str:
    """Hash of the config's content. The order of the top-level keys, the layout, JSON vs YAML
    and $schema do not count; the order inside a value does (a notes object is shown in order)."""
    content = {k: data[k] for k in sorted(data) if k != "$schema"}
    text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def resolve(source: Source) -> Plan:
    data = {k: v for k, v in source.data.items() if k != "$schema"}
    name = slug(data["base_model"])  # validate() has made sure it is not empty
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key in properties():
        if key == "$schema":
            continue
        if key in data:
            values[key], origins[key] = data[key], "config"
        elif key in defaults():
            values[key], origins[key] = defaults()[key], "default"

    family = families.detect(data["base_model"])
    if values["chat_template"] == "auto":
        values["chat_template"], origins["chat_template"] = family.chat_format, "auto"

    derived = {
        "output_dir": f"outputs/{name}",
        "lora_target_modules": list(family.lora_target_modules),
        "attn_implementation": family.attn_implementation,
    }
    for key, value in derived.items():
        if key not in values or values[key] == "auto":
            values[key], origins[key] = value, "auto" if key != "output_dir" else "derived"
    if values["optim"] == "auto":
        values["optim"] = "paged_adamw_8bit" if values["load_in_4bit"] else "adamw_torch_fused"
        origins["optim"] = "auto"
    if values["lora_target_modules"] == ["all-linear"]:
        values["lora_target_modules"] = "all-linear"

    deps = DEPENDENCIES + ((BITSANDBYTES,) if values["load_in_4bit"] else ())
    if values["distributed_strategy"].startswith("deepspeed"):
        deps += (DEEPSPEED,)
    if values["use_liger_kernel"]:
        deps += (LIGER,)
    return Plan(
        mhgen_version=__version__,
        config_sha256=canonical_sha256(data),
        slug=name,
        values=MappingProxyType(values),
        origins=MappingProxyType(origins),
        family=family,
        notes=_notes(values.get("notes")),
        dependencies=tuple(sorted(deps)),
    )


def _notes(notes: Any) -> tuple[str, ...]:
    if notes is None:
        return ()
    if isinstance(notes, str):
        return (notes,)
    if isinstance(notes, list):
        return tuple(notes)
    return tuple(f"{label}: {text}" for label, text in notes.items())
