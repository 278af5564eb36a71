"""The emitted script's data handling, checked with real tokenizers of each chat format:
labels mark exactly the text the model generates, there is exactly one BOS where the template
writes one, and malformed data is reported line by line before anything heavy loads."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FORMATS, require, write_config
from mhgen.pipeline import compile_config

require("transformers")

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a color."},
    {"role": "assistant", "content": "Blue, like <b>the sky</b>."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "Green.\nFresh grass.", "thinking": "pick one"},
]
BOS = {"llama": "<s>", "mistral": "<s>", "llama3": "<|begin_of_text|>"}


def emitted_module(tmp_path, base_model, **settings):
    data = {"base_model": base_model, "chat_template": "auto", "system_prompt": "", **settings}
    namespace = {"__name__": "emitted"}
    exec(compile(compile_config(write_config(tmp_path, data)).text, "emitted", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def tokenizers():
    from mhgen.tiny import build_tokenizer

    return {fmt: build_tokenizer(fmt) for fmt in set(FORMATS.values())}


@pytest.mark.parametrize("model", FORMATS)
def test_labels_cover_exactly_the_generated_text(tmp_path, tokenizers, model):
    script = emitted_module(tmp_path, model)
    tokenizer = tokenizers[FORMATS[model]]
    messages = [dict(m) for m in CONVERSATION]
    example = script["tokenize"](tokenizer, messages)
    segments = script["format_segments"](messages)
    assert tokenizer.decode(example["input_ids"]) == script["format_conversation"](messages)
    # token by token: each token is trained iff its text lies in a trained segment
    trained_text = "".join(tokenizer.decode([t]) for t in example["labels"] if t != -100)
    assert trained_text == "".join(text for text, trained in segments if trained)
    untrained_text = "".join(
        tokenizer.decode([t])
        for t, label in zip(example["input_ids"], example["labels"], strict=True)
        if label == -100
    )
    assert untrained_text == "".join(text for text, trained in segments if not trained)
    # every trained segment holds a reply; system and user text are never trained
    assert all(
        "Be brief." not in t and "Name a color." not in t for t, trained in segments if trained
    )
    assert any("Green.\nFresh grass." in t for t, trained in segments if trained)


TRAINED_SPANS = {  # the text the loss covers for CONVERSATION, per model (see test_chat_formats)
    "Qwen/Qwen3-8B": [
        "Blue, like <b>the sky</b>.<|im_end|>",
        "<think>\npick one\n</think>\n\nGreen.\nFresh grass.<|im_end|>",
    ],
    "Qwen/Qwen3-Coder-30B-A3B-Instruct": [
        "Blue, like <b>the sky</b>.<|im_end|>",
        "Green.\nFresh grass.<|im_end|>",
    ],
    "openai/gpt-oss-20b": [
        "Blue, like <b>the sky</b>.<|end|>",
        "pick one<|end|>",
        "Green.\nFresh grass.<|return|>",
    ],
    "meta-llama/Llama-2-7b-chat-hf": [
        " Blue, like <b>the sky</b>. </s>",
        " Green.\nFresh grass. </s>",
    ],
    "meta-llama/Llama-3.1-8B-Instruct": [
        "Blue, like <b>the sky</b>.<|eot_id|>",
        "Green.\nFresh grass.<|eot_id|>",
    ],
    "mistralai/Mistral-7B-Instruct-v0.3": [
        " Blue, like <b>the sky</b>.</s>",
        " Green.\nFresh grass.</s>",
    ],
}


@pytest.mark.parametrize("model", FORMATS)
def test_trained_spans_are_the_replies_and_their_end_tokens(tmp_path, model):
    script = emitted_module(tmp_path, model)
    segments = script["format_segments"]([dict(m) for m in CONVERSATION])
    assert [text for text, trained in segments if trained] == TRAINED_SPANS[model]


@pytest.mark.parametrize("model", FORMATS)
def test_without_assistant_only_loss_every_token_is_a_label(tmp_path, tokenizers, model):
    script = emitted_module(tmp_path, model, assistant_only_loss=False)
    messages = [dict(m) for m in CONVERSATION]
    example = script["tokenize"](tokenizers[FORMATS[model]], messages)
    assert example["labels"] == example["input_ids"] and len(example["labels"]) > 20
    # the same conversation still renders the same text: only the mask changed
    masked = emitted_module(tmp_path, model)["tokenize"](tokenizers[FORMATS[model]], messages)
    assert masked["input_ids"] == example["input_ids"] and masked["labels"] != example["labels"]


@pytest.mark.parametrize("model", [m for m, f in FORMATS.items() if f in BOS])
def test_exactly_one_bos_where_the_template_writes_one(tmp_path, tokenizers, model):
    fmt = FORMATS[model]
    tokenizer = tokenizers[fmt]
    bos_id = tokenizer.convert_tokens_to_ids(BOS[fmt])
    script = emitted_module(tmp_path, model)
    messages = [dict(m) for m in CONVERSATION]
    text = script["format_conversation"](messages)
    ids = script["tokenize"](tokenizer, messages)["input_ids"]
    assert ids[0] == bos_id and ids.count(bos_id) == text.count(BOS[fmt])
    # the classic bug this avoids: the tokenizer's own BOS on top of the template's
    doubled = tokenizer(text).input_ids
    assert doubled[:2] == [bos_id, bos_id]


def run_script(tmp_path, rows, *args, **settings):
    """The script of a Qwen3 config run on ``rows`` (None: train.jsonl is already written)."""
    data = tmp_path / "train.jsonl"
    if rows is not None:
        data.write_text("".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows))
    config = {
        "base_model": "Qwen/Qwen3-8B",
        "chat_template": "auto",
        "system_prompt": "Be kind.",
        "dataset_path": str(data),
        **settings,
    }
    compiled = compile_config(write_config(tmp_path, config))
    script = tmp_path / compiled.plan.script_name
    script.write_text(compiled.text)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_malformed_line_is_reported_before_anything_loads(tmp_path):
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    rows = [
        good,
        "{not json\n",
        {"messages": [{"role": "user", "content": "a"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}]},
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]},
        {"text": "plain"},
        [1, 2],
        "\n",
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "b"}]},
        {"prompt": "p", "completion": "c"},
        {"instruction": "i", "input": "x", "output": "o"},
    ]
    proc = run_script(tmp_path, rows, "--dry-run")
    assert proc.returncode == 1
    data = tmp_path / "train.jsonl"
    assert proc.stderr.splitlines() == [
        f"{data}:2: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{data}:3: the conversation must end with an assistant reply",
        f"{data}:4: message 1: empty assistant reply",
        f"{data}:5: message 0: role 'assistant', expected 'user' (after an optional system message, user and assistant alternate)",
        f"{data}:6: keys text: expected messages, prompt + completion, instruction + output, or conversations (ShareGPT)",
        f"{data}:7: expected a JSON object, found list",
        f"{data}:9: message 0: expected a string 'content'",
    ]
    assert "Traceback" not in proc.stderr


def test_data_problems_name_the_right_line_message_and_column(tmp_path):
    user, reply = {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}
    unclosed = (
        '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}'
    )
    rows = [
        {"messages": [user, dict(user), reply]},  # two equal user messages: the second is wrong
        {"messages": [{"content": "a"}, reply]},
        unclosed + "\n",
        {"prompt": "p"},
        b'{"prompt": "caf\xe9", "completion": "c"}\n',
    ]
    data = tmp_path / "train.jsonl"
    data.write_bytes(
        b"".join(
            r
            if isinstance(r, bytes)
            else (r if isinstance(r, str) else json.dumps(r) + "\n").encode()
            for r in rows
        )
    )
    proc = run_script(tmp_path, None, "--dry-run")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"{data}:1: message 1: role 'user', expected 'assistant' (after an optional system message, user and assistant alternate)",
        f"{data}:2: message 0: no 'role' (system, user, assistant or tool)",
        f"{data}:3: invalid JSON: Expecting ',' delimiter (column {len(unclosed) + 1})",
        f"{data}:4: keys prompt: expected messages, prompt + completion, instruction + output, or conversations (ShareGPT)",
        f"{data}:5: not UTF-8 text (byte 0xe9 at column 16); save the file as UTF-8",
    ]


def test_a_utf8_bom_and_null_reasoning_are_accepted(tmp_path):
    with_null = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b", "reasoning_content": None},
        ]
    }
    data = tmp_path / "train.jsonl"
    data.write_bytes(
        b"\xef\xbb\xbf" + (json.dumps(ROW) + "\n" + json.dumps(with_null) + "\n").encode()
    )
    proc = run_script(
        tmp_path,
        None,
        "--dry-run",
        base_model=str(tokenizer_with_template(tmp_path / "Qwen3-Coder-30B-A3B-Instruct")),
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 examples: 0 longer than MAX_SEQ_LENGTH" in proc.stdout


def test_dry_run_shows_text_mask_and_lengths(tmp_path):
    require("tokenizers")
    from mhgen import tiny

    model = tiny.build("qwen3", "chatml", tmp_path / "Qwen3-8B")
    rows = [
        {
            "messages": [
                {"role": "system", "content": "Own system."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
            ]
        },
        {"prompt": "Add 2 and 2.", "completion": "4"},
        {"instruction": "Translate.", "input": "chat", "output": "cat"},
        {
            "messages": [
                {"role": "user", "content": "word " * 200},
                {"role": "assistant", "content": "long"},
            ]
        },
    ]
    proc = run_script(tmp_path, rows, "--dry-run", base_model=str(model), max_seq_length=64)
    assert proc.returncode == 0, proc.stderr
    first = "<|im_start|>system\nOwn system.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n"
    assert first in proc.stdout  # the row's own system message wins over system_prompt
    # the shapes the check found, named before the example
    shapes = "4 rows (2 messages, 1 prompt + completion, 1 instruction + output)"
    assert proc.stdout.startswith(f"data: {tmp_path / 'train.jsonl'}: {shapes}, checked in ")
    assert repr("<think>\n\n</think>\n\nHello!<|im_end|>") in proc.stdout
    assert (
        "4 examples: 1 longer than MAX_SEQ_LENGTH=64 are truncated, 1 left with no assistant token are dropped, 3 train"
        in proc.stdout
    )
    assert not (tmp_path / "outputs").exists()
    # its cache is deleted when it ends: no line names it as one a later run reuses (issue 30)
    assert "tokenized data:" not in proc.stdout and "reuses it" not in proc.stdout


PLAIN_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
)
ROW = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}


def tokenizer_with_template(directory):
    from mhgen.tiny import build_tokenizer

    tokenizer = build_tokenizer("chatml")
    tokenizer.chat_template = PLAIN_CHATML
    tokenizer.save_pretrained(directory)
    return directory


def test_runtime_check_passes_when_the_templates_agree(tmp_path):
    model = tokenizer_with_template(tmp_path / "Qwen3-Coder-30B-A3B-Instruct")
    proc = run_script(tmp_path, [ROW, ROW], "--dry-run", base_model=str(model))
    assert proc.returncode == 0, proc.stderr
    assert "chat template check: 2 examples match the tokenizer's own" in proc.stdout


def test_runtime_check_stops_at_the_first_differing_character(tmp_path):
    # a Qwen3 (thinking) script against a tokenizer whose template has no thinking block
    model = tokenizer_with_template(tmp_path / "Qwen3-8B")
    proc = run_script(tmp_path, [ROW], "--dry-run", base_model=str(model))
    assert proc.returncode == 1
    # the dry run shows the example before it stops at the difference
    data_line, shown = proc.stdout.split("\n", 1)
    assert data_line.startswith(
        f"data: {tmp_path / 'train.jsonl'}: 1 rows (1 messages), checked in "
    )
    assert shown.startswith("--- first example, as the model sees it:\n<|im_start|>system")
    prefix = "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert proc.stderr.splitlines() == [
        f"error: example 1: the training text differs from the tokenizer's chat template at character {len(prefix)}:",
        "  this script: " + repr(prefix[-40:] + "<think>\n\n</think>\n\nHello!<|im_end|>\n"),
        "  template:    " + repr(prefix[-40:] + "Hello!<|im_end|>\n"),
        'Set "template_check": "warn" in the config to train anyway.',
    ]
    proc = run_script(tmp_path, [ROW], "--dry-run", base_model=str(model), template_check="warn")
    assert proc.returncode == 0
    assert (
        f"warning: example 1: the training text differs from the tokenizer's chat template at character {len(prefix)}:"
        in proc.stdout
    )


SHAREGPT = {
    "conversations": [
        {"from": "system", "value": "Be terse."},
        {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "Bye"},
        {"from": "gpt", "value": "Bye."},
    ]
}


@pytest.mark.parametrize("dataset_format", ["auto", "sharegpt"])
def test_sharegpt_rows_become_chat_messages(tmp_path, dataset_format):
    script = emitted_module(
        tmp_path, "Qwen/Qwen3-Coder-30B-A3B-Instruct", dataset_format=dataset_format
    )
    conversation = script["to_conversation"](json.loads(json.dumps(SHAREGPT)))
    assert conversation["messages"] == [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Bye."},
    ]
    assert script["format_conversation"](**conversation) == (
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\nBye.<|im_end|>\n"
    )


@pytest.mark.parametrize(
    ("turns", "problem"),
    [
        ("hello", '\'conversations\' must be a list of {"from", "value"} turns'),
        ([{"from": "human"}], "conversations[0]: expected an object with 'from' and 'value'"),
        (
            [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}],
            "conversations[1]: from 'bot', expected system, human or gpt",
        ),
        (
            [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}],
            "message 1: role 'user', expected 'assistant' (after an optional system message, user and assistant alternate)",
        ),
    ],
)
def test_malformed_sharegpt_rows_say_which_turn(tmp_path, turns, problem):
    script = emitted_module(tmp_path, "Qwen/Qwen3-8B")
    with pytest.raises(script["DataError"]) as caught:
        script["to_conversation"]({"conversations": turns})
    assert str(caught.value) == problem


def test_sharegpt_is_read_only_by_scripts_whose_dataset_format_allows_it(tmp_path):
    """Every script carries the runtime's ShareGPT reader; the recipe decides whether it is used:
    its to_conversation reads rows as the config's dataset_format says."""

    def recipe(**settings):
        data = {"base_model": "Qwen/Qwen3-8B", "chat_template": "auto", "system_prompt": ""}
        text = compile_config(write_config(tmp_path, data | settings)).text
        return text.split("\n# ==== mhgen runtime")[0]

    assert 'row_messages(row, "auto")' in recipe()
    assert 'row_messages(row, "sharegpt")' in recipe(dataset_format="sharegpt")
    messages_only = recipe(dataset_format="messages")
    assert 'row_messages(row, "messages")' in messages_only
    assert "sharegpt" not in messages_only.lower()
    script = emitted_module(tmp_path, "Qwen/Qwen3-8B", dataset_format="messages")
    with pytest.raises(script["DataError"], match=r"missing key 'messages' \(dataset_format"):
        script["to_conversation"](json.loads(json.dumps(SHAREGPT)))
