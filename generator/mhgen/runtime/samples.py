# ---- --sample N: the trained adapter's replies to held-out prompts

import json
import os
import sys
from pathlib import Path

from .data import conversations_at, first_conversations, split_eval, tokenized
from .fingerprints import fingerprint
from .model_files import print_main
from .output_folder import promote, run_record
from .sources import ChatFormat, DataSource, data_name

SAMPLE_MAX_NEW_TOKENS = 256  # a sampled reply is cut after this many tokens


def held_out_conversations(
    data: DataSource, evaluation: DataSource | None, held_out, count: int
) -> tuple[str, list[dict]]:
    """The first ``count`` held-out conversations, and what they are: the evaluation data's, else
    those of the ``held_out`` examples (the evaluation split's, found by their rows), else
    the first conversations of the training data."""
    if evaluation is not None:
        return f"the first rows of {data_name(evaluation)}", first_conversations(evaluation, count)
    if held_out is None:
        return (
            f"the first rows of {data.path} (no evaluation split: trained on)",
            first_conversations(data, count),
        )
    return f"held-out rows of {data.path} (the evaluation split)", conversations_at(
        data, held_out[:count]["row"]
    )


def held_out_split(
    data: DataSource,
    tokenize,
    cache: Path,
    output_dir: Path,
    eval_split: float,
    seed: int,
    max_length: int,
):
    """The evaluation split a finished run held out (None without one), from its data: stops
    where --data is not the data it trained on (the split would be other rows)."""
    if not eval_split:
        return None
    if run_record(output_dir)["inputs"]["data_fingerprint"] != fingerprint(data):
        sys.exit(
            f"error: {data.path} is not the data the run in {output_dir} trained on, so its "
            "evaluation split is not the rows it held out: pass that data with --data"
        )
    return split_eval(tokenized(data, tokenize, cache, max_length)[0], eval_split, seed)[1]


def reply(model, tokenizer, prompt: str, end_tokens: tuple[str, ...]) -> str:
    """The model's greedy continuation of ``prompt``: up to an end token (not included) or
    SAMPLE_MAX_NEW_TOKENS tokens."""
    import torch

    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(
        model.device
    )
    ends = tokenizer.convert_tokens_to_ids(list(end_tokens))
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=SAMPLE_MAX_NEW_TOKENS,
            eos_token_id=ends,
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,  # off for training (load_model)
        )
    new = out[0, ids.shape[1] :].tolist()
    return tokenizer.decode(new[:-1] if new and new[-1] in ends else new)


def as_text(message: dict) -> str:
    """An assistant message as one text: its content, then its tool calls as JSON."""
    calls = json.dumps(message["tool_calls"], ensure_ascii=False) if "tool_calls" in message else ""
    return f"{message['content']}\n{calls}".strip()


def sample(
    model, tokenizer, conversations: list[dict], what: str, output_dir: Path, chat: ChatFormat
) -> None:
    """Print the model's greedy replies to the conversations (``what`` they are) beside their
    reference replies, and write them to output_dir/samples.jsonl (whole, then renamed)."""
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun the main process samples
        return
    model.eval()  # no dropout
    print_main(f"sampling {len(conversations)} replies to {what}")
    staged = output_dir / ".samples.jsonl.tmp"
    with staged.open("w", encoding="utf-8") as f:
        for number, conversation in enumerate(conversations, start=1):
            *prompt, reference = conversation["messages"]
            text = reply(model, tokenizer, chat.reply_prompt(conversation), chat.end_tokens)
            asked = next(m["content"] for m in reversed(prompt) if m["role"] == "user")
            print_main(f"--- sample {number}\nprompt: {asked}\nreference: {as_text(reference)}")
            print_main(f"reply: {text}")
            sampled = {"messages": prompt, "tools": conversation["tools"], "reference": reference}
            f.write(json.dumps({**sampled, "reply": text}, ensure_ascii=False) + "\n")
    promote(staged, output_dir / "samples.jsonl")
    print_main(f"samples written to {output_dir / 'samples.jsonl'}")
