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
SHIPPED_MODELS = ("openai/gpt-oss-20b", "Qwen/Qwen3-8B", "Qwen/Qwen3-Coder-30B-A3B-Instruct")


def sample_rows() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()]


def test_every_shipped_config_and_script_reads_the_sample():
    configs = sorted(ETC.glob("training*.json"))
    assert len(configs) == 4
    for config in configs:
        dataset = json.loads(config.read_text())["dataset_path"]
        assert (ETC.parent / dataset).resolve() == SAMPLE.resolve(), config.name
    for script in sorted(EMITTED.glob("train_*.py")):
        assert 'DATASET_PATH = "etc/sample-chat.jsonl"' in script.read_text(), script.name
    readme = (ETC.parent / "README.md").read_text()
    assert f"`etc/sample-chat.jsonl`: {len(sample_rows())} conversations" in readme


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
