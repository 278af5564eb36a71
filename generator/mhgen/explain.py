"""``mhgen formats`` and ``mhgen explain``: what each chat format renders, and why a config got
the family, format and defaults it did. Examples are rendered by the emitted code itself."""

from __future__ import annotations

import json

from . import families
from .compare import FORMATS, applies
from .load import load_bytes
from .pipeline import Compiled, compile_source
from .resolve import ORIGIN_WORDS, Plan
from .validate import validate

EXAMPLE = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris."},
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL = {
    "type": "function",
    "id": "call00001",
    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
}
TOOL_EXAMPLE = [  # one tool round: the call, its result, the reply
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "call00001", "content": "sunny"},
    {"role": "assistant", "content": "Sunny."},
]
# One model per rendering: the formats, and ChatML's two templates (Qwen3 and Qwen3-Coder).
SHOWCASE = (
    ("harmony", "openai/gpt-oss-20b"),
    ("chatml", "Qwen/Qwen3-8B"),
    ("chatml", "Qwen/Qwen3-Coder-30B-A3B-Instruct"),
    ("llama", "meta-llama/Llama-2-7b-chat-hf"),
    ("llama3", "meta-llama/Llama-3.1-8B-Instruct"),
    ("mistral", "mistralai/Mistral-7B-Instruct-v0.3"),
)


def _compile(settings: dict) -> Compiled:
    source = load_bytes(json.dumps(settings).encode(), "<example>")
    return compile_source(source, validate(source))


def _render(compiled: Compiled, messages: list[dict], tools: list[dict] = ()) -> tuple[str, str]:
    """(text, trained parts) of ``messages``, by the compiled script's own functions; a format
    that cannot write them gives its error instead of the text."""
    namespace = {"__name__": "mhgen_example"}
    exec(compile(compiled.text, compiled.plan.script_name, "exec"), namespace)
    try:
        segments = namespace["format_segments"](json.loads(json.dumps(messages)), tools)
    except namespace["DataError"] as exc:
        return f"(error: {exc})", "nothing"
    text = "".join(t for t, _ in segments)
    return text, " + ".join(repr(t) for t, trained in segments if trained)


def formats_text() -> str:
    out = []
    for fmt, model in SHOWCASE:
        compiled = _compile({"base_model": model, "chat_template": fmt, "system_prompt": ""})
        text, trained = _render(compiled, EXAMPLE)
        out.append(f"== {fmt} ({model})\n{text}\n-- trained: {trained}\n")
        text, trained = _render(compiled, TOOL_EXAMPLE, [WEATHER])
        out.append(f"-- one tool round:\n{text}\n-- trained: {trained}\n")
    return "\n".join(out)


def experts_line(plan) -> list[str]:
    """For a mixture-of-experts model: whether LoRA adapts its experts, and what adapting them
    (or not) changes: LoRA weights, the plan's peak GPU memory, the merged model's size."""
    from . import vram

    values = plan.values
    shape = vram.shape_for(values["base_model"])
    if not plan.family.moe or shape is None:
        return []
    if not values["load_in_4bit"]:
        return ["experts: not adapted (LoRA on the experts is written for the 4-bit experts)"]
    targets = values["lora_target_modules"]
    if plan.experts_lora:
        every = list(vram._linears(shape)) if targets == "all-linear" else targets
        linear = [t for t in every if t not in families.EXPERT_LAYERS]
        other, adapted = {**values, "lora_target_modules": linear}, values
    else:
        other, adapted = values, {**values, "lora_target_modules": [*targets, "gate_up", "down"]}
    weights = vram.lora_weight_count(adapted, shape) - vram.lora_weight_count(other, shape)
    memory = vram.estimate(adapted, shape)["total"] - vram.estimate(other, shape)["total"]
    cost = f"{weights / 1e6:.0f}M more LoRA weights, {memory / 2**30:.1f} GiB more in mhgen plan"
    merged = merged_sizes(plan, adapted, shape)
    if plan.experts_lora:
        projections = ", ".join(plan.expert_lora_projections) or "gate_up, down"
        return [f"experts: adapted ({projections}): {cost}; --merge writes {merged}"]
    return [
        f'experts: not adapted; adding "gate_up" and "down" to lora_target_modules adapts them: '
        f"{cost}, and --merge then writes {merged}"
    ]


def merged_sizes(plan: Plan, values: dict, shape) -> str:
    """The merged model's size in words, per --merge-format the script offers."""
    from . import vram

    dtype = values["dtype"]
    size = f"{vram.merged_bytes(values, shape) / 2**30:.1f} GiB (the experts in {dtype})"
    if plan.family.model_type == "gpt_oss":
        mxfp4 = vram.merged_bytes(values, shape, "mxfp4") / 2**30
        size += f", {mxfp4:.1f} GiB with --merge-format mxfp4"
    return size


def method_line(plan: Plan) -> str:
    """What the run trains, and against which reference."""
    values = plan.values
    how = ORIGIN_WORDS.get(plan.origins["method"], "set in the config")
    if not plan.preference:
        return f"method: sft ({how}): supervised fine-tuning on conversations (TRL's SFTTrainer)"
    reference = "the base model (the adapter disabled: no second copy of it)"
    if values["init_adapter"] is not None:
        reference = f"the adapter of {values['init_adapter']}, frozen (the run trains a copy)"
    return (
        f"method: dpo ({how}): preference pairs, chosen over rejected (TRL's DPOTrainer, loss "
        f"{values['dpo_loss_type']}, beta {values['dpo_beta']}); reference: {reference}"
    )


def explain_text(compiled: Compiled) -> str:
    plan, values = compiled.plan, compiled.plan.values
    identity = plan.identity
    family = identity.family
    if identity.by == "config.json":
        matched = (
            f"is family {family.name}: its config.json in {identity.where} says model_type "
            f"{identity.model_type!r}"
            + (" and its chat template tells which" if identity.chat_template_sha256 else "")
        )
        if identity.name_says is not None:
            matched += f" (its name alone would suggest {identity.name_says.name})"
    elif family is not families.UNKNOWN:
        matched = f"matches /{family.pattern}/ -> family {family.name} (by its name)"
    else:
        matched = "matches no family pattern -> family unknown (by its name)"
    how = "auto-detected" if plan.origins["chat_template"] == "auto" else "set in the config"
    defaults = [k for k, o in plan.origins.items() if o == "default" and applies(k, compiled)]
    chosen = {k: ORIGIN_WORDS[o] for k, o in plan.origins.items()}
    lines = [
        f"base_model: {values['base_model']!r} {matched}",
        f"  why: {family.rule}",
        f"chat format: {FORMATS.get(plan.format_template, plan.chat_format)} ({how}), rendered "
        f"by {plan.format_template}",
        method_line(plan),
        f"LoRA targets: {values['lora_target_modules']} ({chosen['lora_target_modules']})",
        *experts_line(plan),
        f"attention: {values['attn_implementation']} ({chosen['attn_implementation']})",
        f"script: {plan.script_name}",
        "left at their defaults: " + ", ".join(defaults),
        "",
        "how a model's name picks its family and chat format (the first match wins):",
    ]
    for f in families.FAMILIES:
        lines.append(f"  /{f.pattern}/ -> {f.chat_format} ({f.name})")
    lines.append(f"  anything else -> {families.UNKNOWN.chat_format}")
    example = EXAMPLE[1:]
    if values["system_prompt"]:  # as the script adds it to a conversation without one
        example = [{"role": "system", "content": values["system_prompt"]}, *example]
    text, trained = _render(compiled, example)
    lines += ["", "example, with this config's system prompt:", text, f"-- trained: {trained}"]
    return "\n".join(lines) + "\n"
