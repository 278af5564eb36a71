"""The sample data the shipped configs point at (etc/sample-chat.jsonl), so that the README's
quick start runs on a fresh clone: conversations written for the project, tool calls and
reasoning among them, that every shipped chat format reads and writes exactly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import EMITTED, ETC, emitted, require, write_config
from mhgen.pipeline import compile_config
from mhgen.write import write

SAMPLE = ETC / "sample-chat.jsonl"
PAIRS = ETC / "sample-preference.jsonl"  # the DPO config's
SHIPPED_MODELS = ("openai/gpt-oss-20b", "Qwen/Qwen3-8B", "Qwen/Qwen3-Coder-30B-A3B-Instruct")


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_every_shipped_config_and_script_reads_the_sample():
    configs = sorted(ETC.glob("training*.json"))
    assert len(configs) == 5
    for config in configs:
        settings = json.loads(config.read_text())
        sample = PAIRS if settings.get("method") == "dpo" else SAMPLE
        assert (ETC.parent / settings["dataset_path"]).resolve() == sample.resolve(), config.name
    for script in sorted(EMITTED.glob("train_*.py")):
        sample = PAIRS if script.name.endswith("_dpo.py") else SAMPLE
        assert f'DATASET_PATH = "etc/{sample.name}"' in script.read_text(), script.name
    readme = (ETC.parent / "README.md").read_text()
    assert f"`etc/sample-chat.jsonl`: {len(sample_rows())} conversations" in readme
    pairs = len(PAIRS.read_text(encoding="utf-8").splitlines())
    assert (
        f"`sample-preference.jsonl`,\n{pairs} preference pairs" in (ETC / "README.md").read_text()
    )


def test_the_sample_holds_the_conversations_users_train_on():
    rows = sample_rows()
    assert len(rows) >= 30
    messages = [row["messages"] for row in rows]
    with_tools = [row for row in rows if row.get("tools")]
    calls = [
        m
        for row in with_tools
        for m in row["messages"]
        if m["role"] == "assistant" and "tool_calls" in m
    ]
    answered = [m for row in with_tools for m in row["messages"] if m["role"] == "tool"]
    assert len(with_tools) >= 8 and len(calls) >= 8 and len(answered) == len(calls)
    assert sum(any("thinking" in m for m in ms) for ms in messages) >= 5
    assert sum(ms[0]["role"] == "system" for ms in messages) >= 5
    assert sum(sum(m["role"] == "user" for m in ms) >= 2 for ms in messages) >= 3


@pytest.mark.parametrize("model", SHIPPED_MODELS)
def test_each_shipped_format_reads_and_writes_every_row(tmp_path, model):
    """Every row passes the script's checks, and its training text holds each call and reply."""
    script = emitted(tmp_path, model)
    for number, row in enumerate(sample_rows(), start=1):
        conversation = script["to_conversation"](row)
        text = script["format_conversation"](**conversation)
        for message in row["messages"]:
            for call in message.get("tool_calls", []):
                assert call["function"]["name"] in text, number
        assert row["messages"][-1]["content"] in text, number


def test_qwen3_writes_the_sample_as_its_official_template(tmp_path):
    """Byte for byte, every row, tools and reasoning included (the template is Qwen3-8B's own)."""
    require("transformers", "tokenizers", "jinja2")
    from official_templates import QWEN3_8B_CHAT_TEMPLATE

    from mhgen import tiny

    tokenizer = tiny.build_tokenizer("chatml")
    tokenizer.chat_template = QWEN3_8B_CHAT_TEMPLATE
    script = emitted(tmp_path, "Qwen/Qwen3-8B", system_prompt="You are a helpful assistant.")
    for number, row in enumerate(sample_rows(), start=1):
        conversation = script["to_conversation"](row)
        ours = script["format_conversation"](**conversation)
        assert ours == script["official_render"](tokenizer, **conversation), number


def test_the_quick_start_dry_run_reads_the_sample(tmp_path):
    """The shipped gpt-oss config's script, its model swapped for a tiny local one (nothing is
    downloaded), checks and tokenizes the sample without an error."""
    require("torch", "transformers", "datasets")
    from mhgen import tiny

    model = tiny.build("gpt-oss", "harmony", tmp_path / "gpt-oss-20b")
    config = json.loads((ETC / "training.json").read_text())
    config.update(base_model=str(model), dataset_path=str(SAMPLE))
    compiled = compile_config(write_config(tmp_path, config))
    script = tmp_path / compiled.plan.script_name
    write(script, compiled.text)
    done = subprocess.run(
        [sys.executable, str(script), "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{len(sample_rows())} rows" in done.stdout + done.stderr


def test_qwen3_writes_the_preference_sample_as_its_official_template(tmp_path):
    """Both conversations of every pair, byte for byte (the template is Qwen3-8B's own); the
    sample has the shapes a user's pairs have: a row's own system prompt, a several-turn prompt,
    reasoning and tool calls."""
    require("transformers", "tokenizers", "jinja2")
    from official_templates import QWEN3_8B_CHAT_TEMPLATE

    from mhgen import tiny

    tokenizer = tiny.build_tokenizer("chatml")
    tokenizer.chat_template = QWEN3_8B_CHAT_TEMPLATE
    config = json.loads((ETC / "training-qwen3-8b-dpo.json").read_text())
    script = emitted(tmp_path, "Qwen/Qwen3-8B", method="dpo", system_prompt=config["system_prompt"])
    chat = script["ChatFormat"](script["format_conversation"], script["official_render"], "", ())
    rows = [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines()]
    for number, row in enumerate(rows, start=1):
        pair = script["to_conversation"](row)
        assert chat.texts(pair) == chat.texts(pair, tokenizer), number
        example = script["tokenize"](tokenizer, **pair)
        assert example["labels"] != example["rejected_labels"], number
    prompts = [row["prompt"] for row in rows]
    assert sum(p[0]["role"] == "system" for p in prompts) >= 1
    assert sum(sum(m["role"] == "user" for m in p) >= 2 for p in prompts) >= 1
    assert sum("tools" in row for row in rows) >= 2
    assert sum("thinking" in row["chosen"][0] for row in rows) >= 1
