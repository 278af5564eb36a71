# ---- preference pairs (method dpo): a row as a chosen and a rejected conversation that share
# their prompt, their tokens with the loss on each completion, and TRL's DPOTrainer training on
# the examples as the script tokenized them

import json
import sys
import warnings
from pathlib import Path

from .data import IGNORE_INDEX, tokens_and_labels
from .messages import PAIR_SHAPES, DataError, row_shape
from .training import check_extended


def as_messages(value, role: str, key: str) -> list[dict]:
    """A row's ``key`` as messages: its list of messages, or its text as one ``role`` message."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        raise DataError(f"{key!r} must be a text or a non-empty list of messages")
    return [dict(message) if isinstance(message, dict) else message for message in value]


def row_pair(row: dict) -> tuple[list[dict], list[dict]]:
    """A preference row as (chosen, rejected): two whole conversations that share their prompt
    (PAIR_SHAPES; a "system" text, where a row has one, opens the prompt)."""
    if not isinstance(row, dict):
        raise DataError(f"expected a JSON object, found {type(row).__name__}")
    shape = row_shape(row) if {"chosen", "chosen_response"} & set(row) else ""
    if shape not in PAIR_SHAPES:
        keys = ", ".join(sorted(row)) or "none"
        raise DataError(
            f"keys {keys}: expected a preference pair: prompt + chosen + rejected, chosen + "
            "rejected (whole conversations), question + chosen + rejected, or instruction + "
            "chosen_response + rejected_response"
        )
    system = row.get("system")
    prompt = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
    if shape == "chosen + rejected":  # the prompt is what the two conversations share
        for key in ("chosen", "rejected"):
            if not isinstance(row[key], list):
                raise DataError(
                    f"{key!r} is not a list of messages: without a 'prompt', chosen and rejected "
                    "are whole conversations"
                )
        chosen = as_messages(row["chosen"], "assistant", "chosen")
        return chosen, as_messages(row["rejected"], "assistant", "rejected")
    if shape == "prompt + chosen + rejected":
        prompt += as_messages(row["prompt"], "user", "prompt")
    elif shape == "question + chosen + rejected":
        prompt += as_messages(row["question"], "user", "question")
    else:
        text = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        prompt += as_messages(text, "user", "instruction")
    key = "chosen" if "chosen" in row else "chosen_response"
    chosen = prompt + as_messages(row[key], "assistant", key)
    key = "rejected" if "rejected" in row else "rejected_response"
    rejected = [dict(m) for m in prompt] + as_messages(row[key], "assistant", key)
    return chosen, rejected


def shared_prompt(chosen: list[dict], rejected: list[dict]) -> int:
    """How many messages the two conversations of a pair share (their prompt): they must then
    differ in an assistant's reply."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) or n == len(rejected):
        what = "the same conversation" if len(chosen) == len(rejected) else "one the other's start"
        raise DataError(f"chosen and rejected are {what}: a pair differs in a reply")
    for key, messages in (("chosen", chosen), ("rejected", rejected)):
        if messages[n]["role"] != "assistant":
            raise DataError(
                f"chosen and rejected first differ at message {n}, {key}'s is a "
                f"{messages[n]['role']!r} message: a pair shares its prompt and differs in the "
                "assistant's reply"
            )
    return n


def checked_pair(chosen: list[dict], rejected: list[dict], read) -> tuple[list, list]:
    """Both conversations of a pair as ``read`` (the recipe's checks of a conversation) returns
    them, a problem named by its side; then checked to share a prompt (shared_prompt)."""
    pair = []
    for key, messages in (("chosen", chosen), ("rejected", rejected)):
        try:
            pair.append(read(messages))
        except DataError as exc:
            raise DataError(f"{key}: {exc}") from None
    shared_prompt(*pair)
    return pair[0], pair[1]


def pair_tokens(tokenizer, format_segments, chosen: list[dict], rejected: list, tools) -> dict:
    """Token ids and labels of a pair's two conversations, as format_segments writes them: the
    labels are the tokens each completion generates (its trained segments after the shared
    prompt; tool results inside it are context), IGNORE_INDEX elsewhere. Keys: input_ids and
    labels of the chosen one, rejected_input_ids and rejected_labels of the other."""
    shared = shared_prompt(chosen, rejected)
    prompt = "".join(text for text, _ in format_segments(chosen[:shared], tools))
    out = {}
    for side, messages in (("", chosen), ("rejected_", rejected)):
        segments, at = [], 0
        for text, trained in format_segments(messages, tools):
            segments.append((text, trained and at >= len(prompt)))
            at += len(text)
        if not "".join(text for text, _ in segments).startswith(prompt):
            raise DataError(  # no format mhgen writes does this; a check, not a guess
                f"the {side or 'chosen'} conversation does not begin with its prompt's text"
            )
        tokens = tokens_and_labels(tokenizer, segments)
        out[side + "input_ids"], out[side + "labels"] = tokens["input_ids"], tokens["labels"]
    return out


class PairCollator:
    """Batches of pairs as TRL's DPOTrainer takes them: the chosen sequences, then the rejected
    ones, padded on the right; completion_mask marks the tokens whose log-probabilities count
    (the labels that are not IGNORE_INDEX). TRL's own collator counts every completion token,
    tool results and the template's text after a reply included."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        sequences = [e["input_ids"] for e in examples] + [e["rejected_input_ids"] for e in examples]
        labels = [e["labels"] for e in examples] + [e["rejected_labels"] for e in examples]
        shape = (len(sequences), max(len(ids) for ids in sequences))
        batch = {
            "input_ids": torch.full(shape, self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros(shape, dtype=torch.long),
            "completion_mask": torch.zeros(shape, dtype=torch.long),
        }
        for i, (ids, targets) in enumerate(zip(sequences, labels, strict=True)):
            batch["input_ids"][i, : len(ids)] = torch.tensor(ids)
            batch["attention_mask"][i, : len(ids)] = 1
            batch["completion_mask"][i, : len(ids)] = torch.tensor(targets) != IGNORE_INDEX
        for key in ("ref_chosen_logps", "ref_rejected_logps"):  # precompute_ref_log_probs
            if key in examples[0]:
                batch[key] = torch.tensor([e[key] for e in examples])
        return batch


def load_init_adapter(model, folder: str):
    """The LoRA adapter in ``folder`` (an SFT run's output_dir) on ``model``, trainable: DPO
    trains it further, with its own rank, alpha and layers."""
    from peft import PeftModel

    config = Path(folder) / "adapter_config.json"
    if not config.is_file():
        sys.exit(
            f"error: init_adapter {folder}: no adapter_config.json there (point it at the "
            "output_dir of a finished SFT run)"
        )
    if json.loads(config.read_text(encoding="utf-8")).get("target_parameters"):
        sys.exit(
            f"error: init_adapter {folder} adapts the experts (target_parameters): DPO from "
            "such an adapter is not supported yet; train a new adapter (no init_adapter)"
        )
    return PeftModel.from_pretrained(model, folder, is_trainable=True)


# DPOTrainer's own method the script's DPO trainer replaces: the examples are tokenized already
PREPARED = {"_prepare_dataset": ["dataset", "processing_class", "args", "dataset_name"]}


def preference_trainer(reference_adapter: bool):
    """TRL's DPOTrainer for the examples pair_tokens made (cut to max_length), with LoRA's
    reference: the base model, the adapter disabled (``reference_adapter`` False: a new adapter,
    which starts as the base), or a frozen copy of the adapter the run started from (True:
    init_adapter, an SFT run's). No second copy of the model either way; LoRA on 4-bit experts
    follows PEFT's switch (ExpertsNF4)."""
    from trl import DPOTrainer

    check_extended(DPOTrainer, PREPARED)

    class PreferenceTrainer(DPOTrainer):
        def __init__(self, *args, **kwargs):
            with warnings.catch_warnings():  # the copy cannot match the experts: ExpertsNF4's
                warnings.filterwarnings("ignore", "target_parameters=.* no parameter was matched")
                super().__init__(*args, **kwargs)  # TRL copies a PeftModel's adapter as "ref"
            if not reference_adapter and "ref" in getattr(self.model, "peft_config", {}):
                self.model.delete_adapter("ref")  # the adapter disabled is the same model

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return dataset

    return PreferenceTrainer
