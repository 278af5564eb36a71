"""Model families: one table from base_model names to chat format, architecture and LoRA targets.

``auto`` chat-format detection reads this table, first match wins. The seed README's rules are the
floor (gpt-oss/openai -> harmony, qwen -> chatml, llama/mistral -> llama, anything else -> chatml);
the rows above them refine it where a model's own template is known to differ: Llama-3.x names use
the llama3 header format and Mistral names Mistral's own [INST] format (see etc/README.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ATTENTION_AND_MLP = (*ATTENTION, "gate_proj", "up_proj", "down_proj")
# The emitted script's per-expert NF4 layers of a 4-bit MoE model (templates/experts_nf4.py.j2).
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
    attn_implementation: str = "sdpa"
    moe: bool = False
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
        rule="gpt-oss or openai -> harmony (seed rule); attention sinks need eager attention",
    ),
    Family(
        "qwen3-coder",
        r"qwen3-coder",
        "chatml",
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        ATTENTION,
        moe=True,
        rule="qwen -> chatml (seed rule); Qwen3-Coder's template has no thinking block",
    ),
    Family(
        "qwen3-moe",
        r"qwen3.*-a\d+(\.\d+)?b|qwen3.*moe",
        "chatml",
        "qwen3_moe",
        "Qwen3MoeForCausalLM",
        ATTENTION,
        moe=True,
        rule="qwen -> chatml (seed rule); a Qwen3 name with an active-parameter tag (-A3B) is MoE",
        variant="qwen3",
    ),
    Family(
        "qwen3",
        r"qwen3",
        "chatml",
        "qwen3",
        "Qwen3ForCausalLM",
        ATTENTION_AND_MLP,
        rule="qwen -> chatml (seed rule); Qwen3's template adds a thinking block",
        variant="qwen3",
    ),
    Family(
        "qwen2",
        r"qwen",
        "chatml",
        "qwen2",
        "Qwen2ForCausalLM",
        ATTENTION_AND_MLP,
        rule="qwen -> chatml (seed rule)",
    ),
    Family(
        "llama3",
        r"llama-?3",
        "llama3",
        "llama",
        "LlamaForCausalLM",
        ATTENTION_AND_MLP,
        rule="Llama-3.x names -> llama3 (refines the seed's llama rule: Llama 3 has header tokens)",
    ),
    Family(
        "llama2",
        r"llama",
        "llama",
        "llama",
        "LlamaForCausalLM",
        ATTENTION_AND_MLP,
        rule="llama -> llama (seed rule)",
    ),
    Family(
        "mistral",
        r"mistral",
        "mistral",
        "mistral",
        "MistralForCausalLM",
        ATTENTION_AND_MLP,
        rule="Mistral names -> mistral (refines the seed's llama rule: no <<SYS>> block)",
    ),
)

UNKNOWN = Family(
    "unknown",
    r"",
    "chatml",
    "",
    "",
    ("all-linear",),
    rule="no family matched -> chatml (seed rule), LoRA on all linear layers",
)


def detect(base_model: str) -> Family:
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
