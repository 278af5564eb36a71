"""--sample N: the trained adapter's greedy replies to held-out prompts, beside the references.

Each format's GENERATION_PROMPT is checked against its training text (the prompt, then what the
model is trained to write, is the training text up to the end of the reply) and, for Qwen3,
against the official template's own generation prompt. End to end on a tiny Qwen3: after a run
with --sample 2, samples.jsonl holds the held-out rows (found independently of the script) and
the replies peft's base + adapter generates greedily for them; --sample alone on the finished
folder samples the same replies and trains nothing; an unfinished folder is one line of error.
"""

from __future__ import annotations

import copy
import json
import random
import re
import shutil
import signal
from pathlib import Path

import pytest

from conftest import FORMATS, emitted, require
from runs import run, script_for, steps_of

require("trl")

SEED, EVAL_SPLIT = 42, 0.25
# what the model writes after GENERATION_PROMPT that the training text holds as context: harmony's
# prompt leaves the channel of a reply to the model (as the official template's generation prompt)
CHANNEL = {"openai/gpt-oss-20b": "<|channel|>final<|message|>"}
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
}
ROWS = {
    "one_turn": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "4."},
        ]
    },
    "multi_turn": {
        "messages": [
            {"role": "user", "content": "Name a color."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "content": "Green."},
        ]
    },
    "ends_with_a_call": {
        "tools": [TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
        ],
    },
    "after_a_tool_result": {
        "tools": [TOOL],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "tool_call_id": "call12345", "content": '"sunny"'},
            {"role": "assistant", "content": "Sunny."},
        ],
    },
}


def cases():
    for model in FORMATS:
        for name in ROWS:
            if "tools" in ROWS[name] and model == "meta-llama/Llama-2-7b-chat-hf":
                continue  # Llama 2 has no tool syntax
            yield pytest.param(model, name, id=f"{model.split('/')[1]}-{name}")


@pytest.mark.parametrize(("model", "name"), list(cases()))
def test_the_generation_prompt_is_where_the_training_text_has_the_reply(tmp_path, model, name):
    script = emitted(tmp_path, model)
    conversation = script["to_conversation"](copy.deepcopy(ROWS[name]))
    messages, tools = conversation["messages"], conversation["tools"]
    segments = script["format_segments"](messages, tools)
    last = max(i for i, (_, trained) in enumerate(segments) if trained)
    text = "".join(t for t, _ in segments[: last + 1])  # the training text, to the reply's end
    reply = segments[last][0]  # what the model is trained to write: the reply and its end token
    prompt = script["format_conversation"](messages[:-1], tools) + script["GENERATION_PROMPT"]
    channel = "" if "tool_calls" in messages[-1] else CHANNEL.get(model, "")  # a call names its own
    assert prompt + channel + reply == text
    assert reply.endswith(script["END_TOKENS"])


@pytest.mark.parametrize("name", list(ROWS))
def test_qwen3_prompts_as_its_official_template_does(tmp_path, name):
    from official_templates import QWEN3_8B_CHAT_TEMPLATE

    from mhgen import tiny

    tokenizer = tiny.build_tokenizer("chatml")
    tokenizer.chat_template = QWEN3_8B_CHAT_TEMPLATE
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    conversation = script["to_conversation"](copy.deepcopy(ROWS[name]))
    prompt = conversation["messages"][:-1]
    # Qwen3's template reads an assistant's reasoning from "reasoning_content"
    prompt_as_qwen3_reads_it = [
        {**m, "reasoning_content": m["thinking"]} if "thinking" in m else m for m in prompt
    ]
    official = tokenizer.apply_chat_template(
        prompt_as_qwen3_reads_it,
        tools=conversation["tools"] or None,
        tokenize=False,
        add_generation_prompt=True,
    )
    assert (
        script["format_conversation"](prompt, conversation["tools"]) + script["GENERATION_PROMPT"]
        == official
    )


@pytest.mark.parametrize("model", FORMATS)
def test_each_end_token_is_one_token_of_the_formats_tokenizer(tmp_path, model):
    """generate stops on token ids: each of END_TOKENS must be one token, as in the training text."""
    from mhgen import tiny

    tokenizer = tiny.build_tokenizer(FORMATS[model])
    for end in emitted(tmp_path, model)["END_TOKENS"]:
        assert tokenizer(end, add_special_tokens=False).input_ids == [
            tokenizer.convert_tokens_to_ids(end)
        ]


def test_which_rows_without_an_evaluation_split(tmp_path):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    data, held = tmp_path / "train.jsonl", tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in counting(range(2, 8))))
    held.write_text("\n" + "".join(json.dumps(r) + "\n" for r in counting(range(20, 24))))
    source = script["DataSource"](data, "train", None, script["to_conversation"])
    # eval_split 0: no split to find (nothing is tokenized, the output folder is not read)
    assert script["held_out_split"](source, None, tmp_path, tmp_path, 0, SEED, 128) is None
    what, found = script["held_out_conversations"](source, None, None, 2)
    assert [c["messages"][-1]["content"] for c in found] == ["0 1", "0 1 2"]
    assert "no evaluation split" in what
    evaluation = source.other(str(held), "train")
    what, found = script["held_out_conversations"](source, evaluation, None, 3)
    assert [c["messages"][0]["content"] for c in found] == [
        "Count to 20.",
        "Count to 21.",
        "Count to 22.",
    ]
    assert str(held) in what


# --- end to end


def counting(numbers) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"Count to {i}."},
                {"role": "assistant", "content": " ".join(map(str, range(i)))},
            ]
        }
        for i in numbers
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Qwen3 trained with --sample 2, on 16 rows after a blank first line (so that a row's
    line is not its example's index), 4 of them held out."""
    from mhgen import tiny

    root = tmp_path_factory.mktemp("sample")
    model = tiny.build("qwen3", "chatml", root / "Qwen3-8B")
    rows = counting(range(2, 18))
    data = root / "train.jsonl"
    data.write_text("\n" + "".join(json.dumps(r) + "\n" for r in rows))
    settings = {"eval_split": EVAL_SPLIT, "eval_steps": 1000, "max_steps": 4, "seed": SEED}
    script = script_for(root / "run", model, data, **settings)
    proc = run(script, "--sample", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return model, rows, script, script.parent / "out", proc


def held_out(rows: list[dict]) -> list[dict]:
    """The evaluation split as the config defines it: EVAL_SPLIT of the examples, in the order
    random.Random(SEED) shuffles them into."""
    order = list(range(len(rows)))
    random.Random(SEED).shuffle(order)
    return [rows[i] for i in order[: round(len(rows) * EVAL_SPLIT)]]


def samples(out: Path) -> list[dict]:
    lines = (out / "samples.jsonl").read_bytes().decode("utf-8").split("\n")  # (JSON escapes \n)
    assert lines.pop() == ""
    return [json.loads(line) for line in lines]


def greedy(model: Path, out: Path, user: str, adapter: bool = True) -> str:
    """What peft's base model + adapter (or the base model) generates, greedily, after Qwen3's
    generation prompt."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    tuned = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    tuned = PeftModel.from_pretrained(tuned, out) if adapter else tuned
    prompt = f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    with torch.no_grad():
        tokens = tuned.eval().generate(ids, do_sample=False, max_new_tokens=256, eos_token_id=end)
    new = tokens[0, ids.shape[1] :].tolist()
    assert len(new) <= 256
    return tokenizer.decode(new[:-1] if new[-1] == end else new)


def test_after_training_it_samples_held_out_rows_with_the_adapter(trained):
    model, rows, _, out, proc = trained
    found = samples(out)
    expected = held_out(rows)[:2]
    assert expected != rows[:2]  # the test tells held-out rows from the first ones
    assert [s["messages"] for s in found] == [r["messages"][:-1] for r in expected]
    assert [s["reference"] for s in found] == [r["messages"][-1] for r in expected]
    for s in found:
        assert s["reply"] == greedy(model, out, s["messages"][-1]["content"])
        assert s["reply"] != greedy(model, out, s["messages"][-1]["content"], adapter=False)
        assert f"reply: {s['reply']}" in proc.stdout
    assert "held-out rows" in proc.stdout and "adapter saved" in proc.stdout
    assert not list(out.glob(".samples*"))  # written whole, then renamed


def test_sample_alone_on_the_finished_folder_trains_nothing(trained):
    _, _, script, out, _ = trained
    before, record = samples(out), (out / "mhgen_run.json").read_bytes()
    (out / "samples.jsonl").unlink()
    proc = run(script, "--sample", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert samples(out) == before
    bars = re.compile(r"^(Loading weights: +)?\d+%\|.*\| \d+/\d+ \[.*\]$")
    lines = [line.strip() for line in proc.stderr.replace("\r", "\n").splitlines()]
    assert [line for line in lines if line and not bars.match(line)] == []  # no warning
    assert "adapter saved" not in proc.stdout and (out / "mhgen_run.json").read_bytes() == record
    assert "note: no CUDA GPU found: generating on the CPU" in proc.stdout  # not "training"
    assert "training on the CPU" not in proc.stdout


def test_sample_on_an_unfinished_run_is_one_line_of_error(trained, tmp_path):
    _, _, script, out, _ = trained
    stopped = script.parent / "stopped"
    shutil.copytree(out, stopped)
    (stopped / "samples.jsonl").unlink()
    record = json.loads((stopped / "mhgen_run.json").read_text())
    (stopped / "mhgen_run.json").write_text(json.dumps({**record, "finished": False}))
    newest = steps_of(stopped)[-1]  # the trainer's checkpoint of the last step
    proc = run(script, "--sample", "2", "--output-dir", str(stopped))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {stopped} holds an unfinished run (newest: checkpoint-{newest}); pass --resume to "
        "continue it or --overwrite to start over"
    ]
    assert not (stopped / "samples.jsonl").exists()


def test_a_reply_stops_at_an_end_token_and_leaves_it_out(trained, tmp_path):
    """With one of the tokens the model writes greedily taken for the end token, the reply is the
    text before it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, rows, *_ = trained
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    tokenizer = AutoTokenizer.from_pretrained(model)
    base = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    conversation = script["to_conversation"](copy.deepcopy(rows[0]))
    prompt = "<|im_start|>user\nCount to 2.<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        tokens = base.generate(ids, do_sample=False, max_new_tokens=20)[0, ids.shape[1] :].tolist()
    stop = next(k for k in range(1, len(tokens)) if tokens[k] not in tokens[:k])
    end_tokens = (tokenizer.convert_ids_to_tokens(tokens[stop]),)
    chat = script["ChatFormat"](
        script["format_conversation"],
        script["official_render"],
        script["GENERATION_PROMPT"],
        end_tokens,
    )
    assert chat.reply_prompt(conversation) == prompt
    text = script["reply"](base, tokenizer, chat.reply_prompt(conversation), chat.end_tokens)
    assert text == tokenizer.decode(tokens[:stop])


def test_sample_alone_on_other_data_than_the_run_trained_on_is_refused(trained, tmp_path):
    _, rows, script, out, _ = trained
    other = tmp_path / "other.jsonl"  # one row more: the evaluation split would be other rows
    other.write_text("\n" + "".join(json.dumps(r) + "\n" for r in [*rows, rows[0]]))
    proc = run(script, "--sample", "2", "--data", str(other))
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {other} is not the data the run in out trained on, so its evaluation split is "
        "not the rows it held out: pass that data with --data"
    ]


def test_a_negative_count_is_a_usage_error(trained):
    _, _, script, _, _ = trained
    proc = run(script, "--sample", "-1")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].endswith(
        "error: --sample -1: N must be 0 (no samples) or more"
    )


def test_a_signal_while_sampling_ends_the_script_and_writes_no_samples(trained):
    """After training the stop handler is gone: SIGTERM during --sample ends the script with
    143 at once, and no samples.jsonl is written, whole or half (issue 33, 4)."""
    _, _, script, out, _ = trained
    before = samples(out)
    (out / "samples.jsonl").unlink()
    proc = run(script, "--sample", "2", inject="generate:2:1")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert "--- sample 1" in proc.stdout and "--- sample 2" not in proc.stdout
    assert not (out / "samples.jsonl").exists() and "Traceback" not in proc.stderr
    assert run(script, "--sample", "2").returncode == 0  # the next run writes them whole
    assert samples(out) == before
