"""Validate a loaded config: the JSON Schema first, then the rules a schema cannot state.

Returns every diagnostic in one list (errors and warnings, sorted by position). Schema errors use
jsonschema; unknown keys get a did-you-mean; the seed README's advice becomes warnings.
"""

from __future__ import annotations

import difflib
import json
from functools import cache

import jsonschema
from jsonschema import Draft202012Validator

from . import families, resolve
from .diagnostics import Diagnostic
from .load import Source
from .schema import defaults, load_schema, properties


def _is_integer(_checker, value) -> bool:
    # JSON Schema counts 16.0 as an integer; a LoRA rank of 16.0 would reach peft as a float.
    return isinstance(value, int) and not isinstance(value, bool)


_Validator = jsonschema.validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_integer),
)


@cache
def _validator():
    return _Validator(load_schema())


def validate(source: Source) -> list[Diagnostic]:
    data = source.data
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        mapping = source.diagnostic((), f"expected a mapping of settings, found {kind}")
        found = [*source.problems, mapping]
        return sorted(found, key=lambda d: (d.line, d.col, d.message))
    # what the schema says at, above or below a value the loader flagged would say no more
    flagged = [d.path for d in source.problems]
    found = list(source.problems) + [
        d
        for d in _schema_errors(source)
        if not any(d.path[: len(p)] == p or p[: len(d.path)] == d.path for p in flagged)
    ]
    found += _unknown_keys(source)
    if not any(d.is_error for d in found):
        found += semantic(source)
    return sorted(found, key=lambda d: (d.line, d.col, d.message))


def _schema_errors(source: Source) -> list[Diagnostic]:
    out = []
    for error in _validator().iter_errors(source.data):
        if error.validator == "additionalProperties" and not error.absolute_path:
            continue  # reported key by key, with suggestions, by _unknown_keys
        if error.validator == "anyOf":
            error = _deepest(error)
        out.append(source.diagnostic(tuple(error.absolute_path), _message(error)))
    return out


def _deepest(error):
    """For a value that matches no branch of an anyOf: the error of a branch of the value's own
    type (the deepest one), or, when no branch has that type, one error naming the types."""
    checker = _validator()
    same_type = [
        e
        for e in error.context
        if checker.is_type(error.instance, error.validator_value[e.schema_path[0]].get("type", ""))
    ]
    if same_type:
        return max(same_type, key=lambda e: len(e.absolute_path))
    types = [branch.get("type") for branch in error.validator_value if "type" in branch]
    return jsonschema.exceptions.ValidationError(
        "", validator="type", validator_value=types, instance=error.instance, path=error.path
    )


def show(value) -> str:
    """A value as the user wrote it (JSON), cut short when long."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(error) -> str:
    if error.validator == "enum":
        allowed = ", ".join(show(v) for v in error.validator_value)
        return f"{show(error.instance)} is not one of {allowed}"
    if error.validator == "type":
        wanted = error.validator_value
        wanted = " or ".join(wanted) if isinstance(wanted, list) else wanted
        return f"{show(error.instance)} is not of type {wanted}"
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return f"missing required key {show(missing)} (`mhgen schema` describes it)"
    limit, value = error.validator_value, error.instance
    if error.validator == "pattern":
        return f"{show(value)} does not match the pattern {limit}"
    if error.validator == "minLength":
        return "must not be empty" if limit == 1 else f"{show(value)} is shorter than {limit}"
    if error.validator == "maxLength":
        return f"{len(value):,} characters is more than the maximum of {limit:,}"
    if error.validator in ("minItems", "maxItems", "maxProperties"):
        bound = "at least" if error.validator == "minItems" else "at most"
        return f"{len(value)} entries; {bound} {limit} are allowed"
    if error.validator == "uniqueItems":
        return f"{show(value)} lists an entry twice"
    return error.message


# Names other fine-tuning tools (TRL, transformers, axolotl, LLaMA-Factory) give mhgen's fields:
# an unknown key among them gets the field it means, with the value to write where that differs.
ALIASES = {
    "bf16": '"dtype": "bfloat16"',
    "fp16": '"dtype": "float16"',
    "torch_dtype": "dtype",
    "model": "base_model",
    "model_name": "base_model",
    "model_name_or_path": "base_model",
    "template": "chat_template",
    "system": "system_prompt",
    "system_message": "system_prompt",
    "max_length": "max_seq_length",
    "cutoff_len": "max_seq_length",
    "sequence_len": "max_seq_length",
    "r": "lora_rank",
    "lora_r": "lora_rank",
    "target_modules": "lora_target_modules",
    "lr": "learning_rate",
    "epochs": "num_train_epochs",
    "num_epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "micro_batch_size": "per_device_train_batch_size",
    "gradient_accumulation": "gradient_accumulation_steps",
    "gradient_checkpointing": "use_gradient_checkpointing",
    "load_in_8bit": "load_in_4bit (mhgen quantizes to 4 bits only)",
    "dataset": "dataset_path",
    "train_file": "dataset_path",
    "data_path": "dataset_path",
    "output": "output_dir",
    "warmup_steps": "warmup_ratio",
    "lr_scheduler": "lr_scheduler_type",
    "optimizer": "optim",
    "packing": "batching",
    "sample_packing": "batching",
}


def _unknown_keys(source: Source) -> list[Diagnostic]:
    known = list(properties())
    lowered = {k.lower(): k for k in known}
    out = []
    for key in source.data:
        if key in properties():
            continue
        guess = (
            lowered.get(str(key).lower())
            or ALIASES.get(str(key).lower())
            or next(iter(difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)), None)
        )
        hint = f"; did you mean `{guess}`?" if guess else "; `mhgen schema` lists the fields"
        out.append(source.diagnostic((key,), f"unknown key {show(key)}{hint}"))
    return out


def semantic(source: Source) -> list[Diagnostic]:
    """Rules from the seed README's advice and the families table; warnings unless noted."""
    data = source.data
    get = {**defaults(), **data}.get
    out: list[Diagnostic] = []

    def warn(key: str, message: str) -> None:
        out.append(source.diagnostic((key,), message, "warning"))

    rank, alpha = get("lora_rank"), get("lora_alpha")
    if not rank <= alpha <= 4 * rank:
        warn(
            "lora_alpha", f"{alpha} with lora_rank {rank}: alpha is typically 2x rank ({2 * rank})"
        )
    if not 8 <= rank <= 16:
        warn(
            "lora_rank", f"{rank} is outside the recommended 8-16 (higher = more capacity, slower)"
        )
    lr, low, high = get("learning_rate"), 1e-4, 2e-4
    if get("method") == "dpo":
        low, high = 1e-6, 1e-4  # preference tuning moves less
    if not low <= lr <= high:
        what = "DPO with LoRA" if get("method") == "dpo" else "LoRA"
        warn("learning_rate", f"{lr:g} is outside the usual {low:g}-{high:g} for {what}")
    epochs = get("num_train_epochs")
    if get("max_steps") == -1 and not 2 <= epochs <= 3:
        warn("num_train_epochs", f"{epochs:g} epochs; 2-3 are recommended")

    if not resolve.script_slug(source):
        out.append(
            source.diagnostic(
                ("base_model",),
                f"{show(get('base_model'))} has no letters or digits in its last path component "
                "to name the script after, and neither has the config's file name",
            )
        )
    if source.model_problem:
        out.append(source.diagnostic(("base_model",), source.model_problem))
    identity = families.identify(get("base_model"), source.model)
    family = identity.family
    if identity.name_says is not None:
        warn(
            "base_model",
            f"the name suggests {identity.name_says.name}, but the model's config.json (in "
            f"{identity.where}) says model_type {show(identity.model_type)}: it is trained as "
            f"{family.name}",
        )
    chosen = get("chat_template")
    named = resolve.script_slug(source) and not source.model_problem  # else said above
    if family is families.UNKNOWN and chosen == "auto" and named:
        warn(
            "base_model",
            f"no model family known for {show(get('base_model'))} (by its name, or a "
            "config.json in a local folder or the Hugging Face cache): the chat format is guessed "
            '(chatml) and LoRA goes on all linear layers; set "chat_template" to the model\'s '
            "own (mhgen formats lists them), or point base_model at a folder with its files",
        )
    chosen = get("chat_template")
    if chosen != "auto" and family is not families.UNKNOWN and chosen != family.chat_format:
        warn(
            "chat_template",
            f"{chosen!r} for a {family.name} model, whose own template is "
            f"{family.chat_format!r}: the model would learn a format it is not served in",
        )
    if get("dtype") == "float16" and family.name == "gpt-oss":
        warn("dtype", "gpt-oss was trained in bfloat16; float16 overflows in its activations")
    if get("batching") == "padding_free" and family.name == "gpt-oss":  # (families.padding_free)
        why = (
            "padding_free is not safe for gpt-oss: its attention mask ignores the position ids, so "
            'concatenated examples would attend to each other; use "group_by_length"'
        )
        out.append(source.diagnostic(("batching",), why))
    elif get("batching") == "padding_free" and family is families.UNKNOWN:
        warn(
            "batching",
            "padding_free is proven exact for the Qwen3, Qwen2, Llama, Mistral and Qwen3-MoE "
            "families (their attention keeps concatenated examples apart by position ids), not "
            "for this model: check that it does, or use group_by_length",
        )
    if get("lr_scheduler_type") == "constant" and get("warmup_ratio") > 0:
        warn(
            "warmup_ratio" if "warmup_ratio" in data else "lr_scheduler_type",
            f"warmup_ratio {get('warmup_ratio'):g} has no effect with lr_scheduler_type "
            '"constant" (its learning rate is constant from the first step): use '
            '"constant_with_warmup" to warm up, or set warmup_ratio to 0',
        )
    if get("selective_checkpointing") and not get("use_gradient_checkpointing"):
        warn("selective_checkpointing", "has no effect without use_gradient_checkpointing")
    elif get("selective_checkpointing") and family.attn_implementation == "eager":
        warn("selective_checkpointing", f"has no effect with {family.name}'s eager attention")
    if family.moe and get("load_in_4bit"):
        _moe_4bit(source, get, family, out)
    if get("num_processes") > 1 and get("distributed_strategy") == "none":
        out.append(
            source.diagnostic(
                ("num_processes",),
                f"{get('num_processes')} processes need a distributed_strategy: set "
                '"distributed_strategy": "ddp" (or fsdp, deepspeed-zero2, deepspeed-zero3)',
            )
        )
    _preference(source, get, out)
    if get("eval_dataset_path") is not None and data.get("eval_split", 0) > 0:
        out.append(
            source.diagnostic(
                ("eval_split",), "set either eval_split or eval_dataset_path, not both"
            )
        )
    return out


def _moe_4bit(source: Source, get, family: families.Family, out: list[Diagnostic]) -> None:
    """An MoE model in 4-bit: the script quantizes every expert itself
    (templates/script/experts_nf4.py.j2)."""
    strategy = get("distributed_strategy")
    if strategy in ("fsdp", "deepspeed-zero2", "deepspeed-zero3"):
        out.append(
            source.diagnostic(
                ("distributed_strategy",),
                f"{strategy} with a 4-bit {family.name} model: its experts are quantized by the "
                'script, one copy per process; use "ddp" (or "none")',
            )
        )
    targets = get("lora_target_modules")
    if isinstance(targets, list) and targets and set(targets) <= set(families.EXPERT_LAYERS):
        out.append(
            source.diagnostic(
                ("lora_target_modules",),
                "LoRA on the 4-bit experts alone: add at least one linear layer to it as well "
                '(for example "q_proj", "v_proj")',
            )
        )
    if families.adapts_experts(targets) and get("lora_dropout") > 0:
        out.append(
            source.diagnostic(
                ("lora_dropout",),
                f"{get('lora_dropout')} with LoRA on the experts: PEFT's LoRA on fused experts has "
                'no dropout, so the adapter would not load onto the model; set "lora_dropout": 0',
            )
        )


DPO_SETTINGS = (
    "dpo_beta",
    "dpo_loss_type",
    "dpo_loss_weights",
    "dpo_label_smoothing",
    "precompute_ref_log_probs",
    "init_adapter",
)
INIT_ADAPTER_SETS = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target_modules")


def _preference(source: Source, get, out: list[Diagnostic]) -> None:
    """method dpo, and the settings that go with it (errors unless noted)."""
    data = source.data

    def error(key: str, message: str) -> None:
        out.append(source.diagnostic((key,), message))

    if get("method") != "dpo":
        for key in DPO_SETTINGS:
            if key in data:
                error(key, 'a DPO setting, and the method is sft: set "method": "dpo" or remove it')
        return
    if "dataset_format" in data and get("dataset_format") != "auto":
        error("dataset_format", "method dpo reads each preference pair by its keys: remove it")
    if not get("assistant_only_loss"):
        error("assistant_only_loss", "DPO compares the replies' log-probabilities only: remove it")
    if get("batching") == "padding_free":
        error("batching", 'TRL\'s DPO pads its batches: use "group_by_length" or "padded"')
    losses = get("dpo_loss_type")
    losses = [losses] if isinstance(losses, str) else losses
    weights = get("dpo_loss_weights")
    if weights is not None and len(weights) != len(losses):
        error(
            "dpo_loss_weights",
            f"{len(weights)} weights for {len(losses)} loss types: one weight per dpo_loss_type",
        )
    smoothing = get("dpo_label_smoothing")
    if "exo_pair" in losses and smoothing == 0:
        key = "dpo_label_smoothing" if "dpo_label_smoothing" in data else "dpo_loss_type"
        error(key, "exo_pair needs dpo_label_smoothing above 0 (its paper uses 0.001)")
    elif "robust" in losses and smoothing == 0:
        out.append(
            source.diagnostic(
                ("dpo_loss_type",),
                "robust with dpo_label_smoothing 0 is the sigmoid loss: set dpo_label_smoothing "
                "(the probability that a preference is flipped, 0.1 is typical)",
                "warning",
            )
        )
    if get("init_adapter") is not None:
        for key in INIT_ADAPTER_SETS:
            if key in data:
                error(key, "init_adapter's adapter_config.json decides it: remove it")
    elif get("lora_dropout") > 0:
        out.append(
            source.diagnostic(
                ("lora_dropout",),
                "has no effect: DPO turns dropout off (TRL's disable_dropout), so that the "
                "policy's log-probabilities compare with the reference's",
                "warning",
            )
        )
