"""Model families: one table from models to chat format, architecture and LoRA targets.

A model is known by its own files first: the ``model_type`` of its config.json (read by
model_files.py from a local folder or the Hugging Face cache), with its chat template telling
apart families that share a model_type (Qwen3's thinking block, Llama 3's header tokens). When no
config.json is at hand, its name decides: ``auto`` chat-format detection reads the name patterns
of this table, first match wins. The seed README's rules are the floor (gpt-oss/openai ->
harmony, qwen -> chatml, llama/mistral -> llama, anything else -> chatml); the rows above them
refine it where a model's own template is known to differ: Llama-3.x names use the llama3 header
format and Mistral names Mistral's own [INST] format (see etc/README.md).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from .model_files import ModelFiles

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION_AND_MLP = (*ATTENTION, "gate_proj", "up_proj", "down_proj")
# The emitted script's NF4 expert projections of a 4-bit MoE model (templates/script/experts_nf4*).
EXPERT_LAYERS = ("gate_up", "down")


def adapts_experts(lora_target_modules) -> bool:
    """Whether LoRA targets reach the per-expert layers of a 4-bit MoE model."""
    targets = lora_target_modules or ()
    return targets == "all-linear" or bool(set(EXPERT_LAYERS) & set(targets))


@dataclass(frozen=True)
class Family:
    name: str
    pattern: str  # regular expression searched in the lower-cased base_model
    chat_format: str
    model_type: str  # transformers' config.model_type, for the tiny smoke model
    architecture: str  # transformers' *ForCausalLM class
    lora_target_modules: tuple[str, ...]
    attn_implementation: str | None = "sdpa"  # None: transformers chooses
    moe: bool = False
    model_types: tuple[str, ...] = ()  # config.json model_type values of this family
    # Whether concatenated examples stay apart by their position ids alone (padding_free): proven
    # per family in tests/test_batching.py; gpt-oss's attention mask ignores them.
    padding_free: bool = True
    rule: str = ""  # why a name lands here, shown by `mhgen explain`
    # A family whose own template adds to its chat format (Qwen3's thinking block to ChatML)
    # names the variant; formats/<format>-<variant>.py.j2 renders it.
    variant: str = ""


FAMILIES: tuple[Family, ...] = (
    Family(
        "gpt-oss",
        r"gpt-oss|openai",
        "harmony",
        "gpt_oss",
        "GptOssForCausalLM",
        ATTENTION,
        attn_implementation="eager",
        moe=True,
        model_types=("gpt_oss",),
        padding_free=False,
        rule="a gpt-oss or openai name means the harmony format; its attention sinks need eager "
        "attention",
    ),
    Family(
        "qwen3-coder",
        r"qwen3-coder",
        "chatml",
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        ATTENTION,
        moe=True,
        model_types=("qwen3_moe",),
        rule="Qwen models use ChatML; Qwen3-Coder's own template has no thinking block",
    ),
    Family(
        "qwen3-moe",
        r"qwen3.*-a\d+(\.\d+)?b|qwen3.*moe",
        "chatml",
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        ATTENTION,
        moe=True,
        model_types=("qwen3_moe",),
        rule="Qwen models use ChatML; a Qwen3 name with an active-parameter tag (-A3B) is a "
        "mixture of experts",
        variant="qwen3",
    ),
    Family(
        "qwen3",
        r"qwen3",
        "chatml",
        "qwen3",
        "Qwen3ForCausalLM",
        ATTENTION_AND_MLP,
        model_types=("qwen3",),
        rule="Qwen models use ChatML; Qwen3's own template adds a thinking block",
        variant="qwen3",
    ),
    Family(
        "qwen2",
        r"qwen",
        "chatml",
        "qwen2",
        "Qwen2ForCausalLM",
        ATTENTION_AND_MLP,
        model_types=("qwen2",),
        rule="Qwen models use ChatML",
    ),
    Family(
        "llama3",
        r"llama-?3",
        "llama3",
        "llama",
        "LlamaForCausalLM",
        ATTENTION_AND_MLP,
        model_types=("llama",),
        rule="Llama 3.x models use the llama3 format (header tokens), not Llama 2's [INST] format",
    ),
    Family(
        "llama2",
        r"llama",
        "llama",
        "llama",
        "LlamaForCausalLM",
        ATTENTION_AND_MLP,
        model_types=("llama",),
        rule="Llama models use the llama format ([INST] ... [/INST], <<SYS>>)",
    ),
    Family(
        "mistral",
        r"mistral",
        "mistral",
        "mistral",
        "MistralForCausalLM",
        ATTENTION_AND_MLP,
        model_types=("mistral",),
        rule="Mistral models use the mistral format ([INST] like Llama 2, without a <<SYS>> block)",
    ),
)

UNKNOWN = Family(
    "unknown",
    r"",
    "chatml",
    "",
    "",
    ("all-linear",),
    attn_implementation=None,
    padding_free=False,  # not proven
    rule="a model of no family mhgen knows: ChatML, LoRA on all linear layers, attention chosen "
    "by transformers",
)


def detect(base_model: str) -> Family:
    """The family a model's name suggests (first matching pattern), or UNKNOWN."""
    name = base_model.lower()
    for family in FAMILIES:
        if re.search(family.pattern, name):
            return family
    return UNKNOWN


def by_format(chat_format: str) -> Family:
    """A representative family for a format (used to pick the tiny model when a name is unknown)."""
    for family in FAMILIES:
        if family.chat_format == chat_format:
            return family
    return UNKNOWN


@dataclass(frozen=True)
class Identity:
    """Which family a model is, and what said so."""

    family: Family
    by: str  # "config.json" or "name"
    model_type: str = ""  # config.json's, when it decided
    config_sha256: str = ""  # of the config.json that decided
    chat_template_sha256: str = ""  # of the chat template, when it told two families apart
    where: str = ""  # "a local folder" or "the Hugging Face cache"
    name_says: Family | None = None  # the name's family, when config.json decided another


# Families that share a model_type are told apart by the model's chat template (a thinking block,
# header tokens), and without one by the name or, for Llama, the vocabulary (Llama 3: 128256).
TEMPLATE_SIGNS = {
    "qwen3-moe": lambda template: "<think>" in template,
    "qwen3-coder": lambda template: "<think>" not in template,
    "llama3": lambda template: "<|start_header_id|>" in template,
    "llama2": lambda template: "<|start_header_id|>" not in template,
}


def identify(base_model: str, files: ModelFiles | None) -> Identity:
    """The model's family: from its config.json when one was read, else from its name.

    A Hub id whose name already matches the family its cached config.json gives is identified by
    the name, so that the script does not depend on what this machine has downloaded; a local
    folder is always identified by its files."""
    named = detect(base_model)
    if files is None or not files.model_type:
        return Identity(named, "name")
    family, template_decided = _by_files(files, named)
    if not files.local and family == named:
        return Identity(named, "name")
    return Identity(
        family,
        "config.json",
        model_type=files.model_type,
        config_sha256=files.config_sha256,
        chat_template_sha256=(files.chat_template_sha256 or "") if template_decided else "",
        where=files.where,
        name_says=named if named is not UNKNOWN and named.name != family.name else None,
    )


def _by_files(files: ModelFiles, named: Family) -> tuple[Family, bool]:
    """(family, whether the chat template decided it) for a config.json's model_type."""
    candidates = [f for f in FAMILIES if files.model_type in f.model_types]
    template = files.chat_template
    if len(candidates) > 1 and template is not None:
        fitting = [f for f in candidates if TEMPLATE_SIGNS[f.name](template)]
        if len(fitting) == 1:
            return fitting[0], True
    if len(candidates) > 1:
        if named in candidates:
            return named, False
        if files.model_type == "llama":
            vocab = files.config.get("vocab_size")
            big = isinstance(vocab, int) and vocab >= 128000
            return next(f for f in candidates if (f.name == "llama3") is big), False
        return candidates[-1], False
    if not candidates:
        return UNKNOWN, False
    (family,) = candidates
    if family.variant == "qwen3" and template is not None and "<think>" not in template:
        # a Qwen3 whose own template has no thinking block (the -2507 Instruct models)
        return dataclasses.replace(family, variant="", rule=family.rule.split(";")[0]), True
    return family, family.variant == "qwen3" and template is not None
