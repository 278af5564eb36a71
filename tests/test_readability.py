"""The emitted script reads as if written for its one run: every constant is read by the code it
names (a choice made at compile time is named as one), only what the format and family need is
there, no line reads as machine-wrapped, and two configs' scripts differ by about as much as the
configs do."""

from __future__ import annotations

import ast
import difflib
import re

import pytest

from conftest import ETC, MINIMAL, write_config
from mhgen.pipeline import compile_config

# configs that between them take every branch of the templates
VARIANTS = {
    "llama2": {"base_model": "meta-llama/Llama-2-7b-chat-hf"},
    "llama3": {"base_model": "meta-llama/Llama-3.1-8B-Instruct", "load_in_4bit": False},
    "mistral": {"base_model": "mistralai/Mistral-7B-Instruct-v0.3", "dataset_format": "messages"},
    "unknown": {"base_model": "tiiuae/falcon-7b", "assistant_only_loss": False},
    "qwen3-fa2": {"attn_implementation": "flash_attention_2", "use_liger_kernel": True},
    "qwen3-fsdp": {"load_in_4bit": False, "distributed_strategy": "fsdp", "num_processes": 2},
    "qwen3-zero3": {"distributed_strategy": "deepspeed-zero3", "num_processes": 2},
    "qwen3-prompts": {"dataset_format": "prompt_completion", "eval_split": 0.1},
    "qwen3-padded": {"batching": "padded", "selective_checkpointing": True},
    "coder-experts": {
        "base_model": "Qwen/Qwen3-Coder-30B-A3B-Instruct",
        "lora_target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up", "down"],
    },
    "gpt-oss-experts": {
        "base_model": "openai/gpt-oss-20b",
        "lora_target_modules": ["q_proj", "down"],
    },
    "gpt-oss-16bit": {"base_model": "openai/gpt-oss-20b", "load_in_4bit": False},
}
SHIPPED = sorted(ETC.glob("training-*.json"))


def texts(tmp_path):
    for config in SHIPPED:
        yield config.stem, compile_config(config).text
    for name, settings in VARIANTS.items():
        path = write_config(tmp_path, {**MINIMAL, **settings}, f"{name}.json")
        yield name, compile_config(path).text


def unread_constants(text: str) -> list[str]:
    tree = ast.parse(text)
    defined = [
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name) and target.id.isupper()
    ]
    read = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return [name for name in defined if name not in read]


def warts(text: str, width: int = 100) -> list[str]:
    """Lines that read as machine-wrapped, and words written twice."""
    found = [
        f"loop head wrapped: {m.group()!r}" for m in re.finditer(r"for \(\n\s+.+\n\s+\) in", text)
    ]
    found += [
        f"word twice: {m.group()!r}" for m in re.finditer(r"\b([A-Za-z]{3,}) \1(?![A-Za-z])", text)
    ]
    lines = text.splitlines()
    for a, b in zip(lines, lines[1:], strict=False):
        pa, pb = (re.match(r"^(\s*(?:# )?)(\S.*)$", line) for line in (a, b))
        if not (pa and pb) or pa.group(1) != pb.group(1):
            continue
        end = pb.group(2).removesuffix('"""')
        # the short last line of a sentence whose first word fitted on the line before
        if (
            end.strip()
            and len(end) < 30
            and end.endswith(".")
            and not re.match(r"[\w-]+: ", end)
            and len(a) + 1 + len(end.split()[0]) <= width
            and not a.rstrip().endswith(".")  # a sentence ended: a new one may start a line
            and (a.lstrip().startswith("#") or not a.rstrip().endswith((")", ",", ":", "(", "[")))
        ):
            found.append(f"wrapped early: {a.strip()!r} / {b.strip()!r}")
    return found


def test_every_constant_is_read_by_the_code(tmp_path):
    unread = {name: unread_constants(text) for name, text in texts(tmp_path)}
    assert {name: found for name, found in unread.items() if found} == {}


def test_a_choice_made_at_compile_time_is_named_as_one(tmp_path):
    for name, text in texts(tmp_path):
        block = text.split("# --- compiled in:")[1].split("\n\n")[0]
        keys = [line.split(":")[0] for line in block.splitlines()[2:]]
        assert keys == [
            "# chat_template",
            "# dataset_format",
            "# load_in_4bit",
            "# batching",
            "# distributed_strategy",
            "# num_processes",
        ], name
        for key in ("CHAT_FORMAT", "DATASET_FORMAT", "LOAD_IN_4BIT", "BATCHING", "NUM_PROCESSES"):
            assert f"\n{key} = " not in text, (name, key)


def test_no_line_reads_as_machine_wrapped(tmp_path):
    found = {name: warts(text) for name, text in texts(tmp_path)}
    assert {name: w for name, w in found.items() if w} == {}


def test_the_wart_finder_finds_warts():
    assert warts("    for (\n        message\n    ) in messages:  # a comment\n")
    assert warts('"""Qwen\'s name the reasoning reasoning_content."""\n')
    assert warts(
        "    # Read into CPU memory first: the\n    # model.\n"  # fits "model." on the line above
    )
    assert not warts("    # a sentence that ends here.\n    # Another one.\n")


def test_only_what_the_format_needs(tmp_path):
    by_name = dict(texts(tmp_path))
    coder = by_name["training-qwen3-coder-30b"]
    qwen3 = by_name["training-qwen3-8b"]
    oss = by_name["training-gpt-oss-20b"]
    normalise = 'message.pop("reasoning_content")'  # data's reasoning, for a format that has it
    assert normalise in qwen3 and normalise in oss and normalise not in coder
    assert "def template_messages" in qwen3  # Qwen3's template reads reasoning_content
    # a tool call's arguments as an object, for the templates that read them so (not Qwen3's)
    assert "def call_arguments" in coder and "call_arguments(c)" in oss
    assert "call_arguments(c)" not in qwen3
    assert "def typescript_type" in oss and "typescript_type" not in coder + qwen3
    assert "def xml_tools" in coder and "xml_tools" not in oss + qwen3
    assert "def split_thinking" in qwen3 and "split_thinking" not in coder
    # a Qwen3-MoE projection without a bias or LoRA is one call, not a helper around it
    assert "def project(" not in coder and "def project(" in by_name["coder-experts"]


def changed_lines(a: str, b: str) -> int:
    diff = difflib.unified_diff(a.splitlines(), b.splitlines(), n=0, lineterm="")
    return sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---"))


# changed lines of the shipped scripts, pairwise; most of them are real differences (the MoE
# scripts' own 4-bit loader is some 250 lines; each format's tool syntax, 100 to 200 more). Lower
# these when a change shrinks them.
DIFF_SIZES = {
    ("qwen3-8b", "qwen3-coder-30b"): 524,
    ("qwen3-8b", "gpt-oss-20b"): 655,
    ("qwen3-coder-30b", "gpt-oss-20b"): 437,
}


@pytest.mark.parametrize(("a", "b"), sorted(DIFF_SIZES))
def test_the_shipped_scripts_differ_by_no_more_than_they_did(a, b):
    text = {name: compile_config(ETC / f"training-{name}.json").text for name in (a, b)}
    assert changed_lines(text[a], text[b]) <= DIFF_SIZES[a, b]
