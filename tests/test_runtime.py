"""The runtime modules (generator/mhgen/runtime/), tested by importing them: no compile, no
subprocess. The end-to-end tests run the same code inside emitted scripts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require
from mhgen import appendix
from mhgen.runtime import (
    data,
    messages,
    model_files,
    output_folder,
    samples,
    sources,
    stages,
    training,
)
from mhgen.runtime.messages import DataError

TOOLS = [{"type": "function", "function": {"name": "get_time", "parameters": {}}}]


def plain(row: dict) -> dict:
    """A to_conversation as a recipe writes one: any shape, tools checked, system roles "system"."""
    tools = messages.row_tools(row)
    return {
        "messages": messages.check_messages(messages.row_messages(row, "auto"), tools, ("system",)),
        "tools": tools,
    }


def source(path: Path, split: str = "train") -> sources.DataSource:
    return sources.DataSource(path, split, None, plain)


# --- messages: each shape, each mistake named


@pytest.mark.parametrize(
    ("row", "dataset_format", "expected"),
    [
        ({"prompt": "p", "completion": "c"}, "auto", ["user:p", "assistant:c"]),
        ({"instruction": "i", "input": "x", "output": "o"}, "auto", ["user:i\n\nx", "assistant:o"]),
        ({"instruction": "i", "output": "o"}, "instruction", ["user:i", "assistant:o"]),
        (
            {"conversations": [{"from": "human", "value": "h"}, {"from": "gpt", "value": "g"}]},
            "sharegpt",
            ["user:h", "assistant:g"],
        ),
        ({"messages": [{"role": "user", "content": "u"}]}, "messages", ["user:u"]),
    ],
)
def test_row_messages_reads_each_shape(row, dataset_format, expected):
    got = messages.row_messages(row, dataset_format)
    assert [f"{m['role']}:{m['content']}" for m in got] == expected


def test_a_fixed_format_names_the_key_it_misses():
    with pytest.raises(
        DataError, match="missing key 'messages' \\(dataset_format is 'messages'\\)"
    ):
        messages.row_messages({"prompt": "p", "completion": "c"}, "messages")
    with pytest.raises(KeyError, match="conversations"):
        messages.row_messages({"prompt": "p"}, "sharegpt")
    with pytest.raises(DataError, match="keys a, b: expected messages"):
        messages.row_messages({"b": 1, "a": 2}, "auto")
    with pytest.raises(DataError, match="expected a JSON object, found list"):
        messages.row_messages([], "auto")


@pytest.mark.parametrize(
    ("conversation", "problem"),
    [
        ([{"role": "assistant", "content": "a"}], "message 0: role 'assistant', expected 'user'"),
        ([{"role": "user", "content": "u"}], "must end with an assistant reply"),
        (
            [{"role": "user", "content": "u"}, {"role": "assistant", "content": " "}],
            "message 1: empty",
        ),
        ([{"role": "user", "content": 3}], "message 0: expected a string 'content'"),
        (
            [
                {"role": "user", "content": "u"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"function": {"name": "nope", "arguments": {}}}],
                },
            ],
            "message 1, tool call 0: calls 'nope', which the row's 'tools' do not define (defined: get_time)",
        ),
        (
            [
                {"role": "user", "content": "u"},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "get_time", "arguments": {}}}],
                },
                {"role": "user", "content": "u"},
            ],
            "message 2: role 'user', expected a 'tool' message answering the call to 'get_time'",
        ),
    ],
)
def test_check_messages_names_the_message_and_the_problem(conversation, problem):
    with pytest.raises(DataError, match=problem.replace("(", "\\(").replace(")", "\\)")):
        messages.check_messages(conversation, TOOLS, ("system",))


def test_a_call_only_reply_gets_empty_content_and_null_reasoning_goes():
    checked = messages.check_messages(
        [
            {"role": "user", "content": "u"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"name": "get_time", "arguments": "{}"}}],
            },
            {"role": "tool", "content": "12:00"},
            {"role": "assistant", "content": "noon", "reasoning_content": "r", "tool_calls": []},
        ],
        TOOLS,
        ("system",),
    )
    assert checked[1]["content"] == "" and "tool_calls" not in checked[3]
    assert messages.with_thinking(checked)[3]["thinking"] == "r"
    assert "reasoning_content" not in checked[3]
    assert "thinking" not in messages.with_thinking([{"role": "assistant", "thinking": None}])[0]


def test_tools_kept_as_a_json_string_are_read_and_checked():
    assert messages.row_tools({"tools": json.dumps(TOOLS)}) == TOOLS
    with pytest.raises(DataError, match="'tools' is a string but not JSON"):
        messages.row_tools({"tools": "[{"})
    with pytest.raises(DataError, match="tools\\[1\\]: a second function named 'get_time'"):
        messages.row_tools({"tools": TOOLS * 2})


# --- sources and rows


def test_what_is_read_as_jsonl_and_what_datasets_reads(tmp_path):
    (tmp_path / "rows.txt").write_text("{}\n")
    assert sources.is_lines_file(tmp_path / "rows.txt")  # an existing file
    assert sources.is_lines_file(tmp_path / "missing.jsonl")
    assert not sources.is_lines_file(tmp_path / "missing.parquet")
    assert not sources.is_lines_file(tmp_path)  # a folder
    assert not sources.is_lines_file(Path("owner/dataset"))  # a Hub id
    evaluation = source(tmp_path / "a.jsonl").other("b.jsonl", "test")
    assert evaluation == sources.DataSource(Path("b.jsonl"), "test", None, plain)
    assert source(tmp_path / "a.jsonl").other(None, "test") is None


def test_parse_row_names_lines_and_table_rows():
    good = json.dumps({"prompt": "p", "completion": "c"}).encode()
    conversation, problem = data.parse_row(0, good + b"\n", "d.jsonl", plain)
    assert problem == "" and conversation["messages"][1] == {"role": "assistant", "content": "c"}
    assert data.parse_row(4, b'{"prompt": 1', "d.jsonl", plain)[1].startswith(
        "d.jsonl:5: invalid JSON"
    )
    assert data.parse_row(4, b'{"prompt": "p"}', "t", plain, True)[1] == (
        "t row 4: keys prompt: expected messages, prompt + completion, instruction + output, or "
        "conversations (ShareGPT)"
    )
    assert (
        data.parse_row(0, b"{}", "t", lambda row: row["x"], True)[1] == "t row 0: missing key 'x'"
    )
    assert data.parse_row(2, b"  \n", "d.jsonl", plain) == (None, "")
    assert "not UTF-8 text (byte 0xff at column 2)" in data.parse_row(1, b"{\xff}", "d", plain)[1]


def test_conversations_by_row_number_in_the_order_asked(tmp_path):
    rows = [{"prompt": f"p{i}", "completion": "c"} for i in range(5)]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = data.conversations_at(source(path), [3, 0, 3])
    assert [c["messages"][0]["content"] for c in got] == ["p3", "p0", "p3"]
    assert [c["messages"][0]["content"] for c in data.first_conversations(source(path), 2)] == [
        "p0",
        "p1",
    ]


# --- what decides the caches


def recipe_a(row):
    return {"messages": [row], "tools": [], "limit": LIMIT}


def recipe_b(row):
    return {"messages": [row, row], "tools": []}


LIMIT = 3


def test_code_of_follows_the_code_and_the_constants_it_reads(monkeypatch):
    assert data.code_of(recipe_a) == data.code_of(recipe_a)
    assert data.code_of(recipe_a) != data.code_of(recipe_b)
    before = data.code_of(recipe_a)
    monkeypatch.setattr(sys.modules[__name__], "LIMIT", 4)
    assert data.code_of(recipe_a) != before
    import functools

    assert data.code_of(functools.partial(recipe_a, 1)) != data.code_of(
        functools.partial(recipe_a, 2)
    )


def test_the_check_marker_depends_on_the_recipe(tmp_path, monkeypatch):
    """A row one chat format refuses is checked again by a script with that format, never
    skipped because another format's script found the data whole (issue 33, 1)."""
    pytest.importorskip("datasets")
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n")
    cache = tmp_path / "cache"

    def strict(row):
        raise DataError("2 tool calls in one message")

    data.check_rows(source(path), cache)
    with pytest.raises(SystemExit, match="d.jsonl:1: 2 tool calls in one message"):
        data.check_rows(sources.DataSource(path, "train", None, strict), cache)
    data.check_rows(source(path), cache)  # checked already: says so, reads nothing
    assert len(list((cache / "checked").iterdir())) == 1


# --- lengths, splits


def test_length_profile_and_its_description():
    import numpy as np

    lengths, kept = np.array([0, 5, 10, 20]), np.array([False, True, True, False])
    profile = data.length_profile(lengths, kept, 12)
    assert profile == {
        "examples": 3,
        "min": 5,
        "median": 10,
        "p95": 20,
        "max": 20,
        "max_length": 12,
        "truncated": 1,
        "dropped_no_target": 1,
        "kept": 2,
    }
    assert "1 longer than MAX_SEQ_LENGTH=12 are truncated, 1 left" in data.describe(profile)


def test_split_eval_is_seeded_and_disjoint():
    datasets = pytest.importorskip("datasets")
    rows = datasets.Dataset.from_dict({"row": list(range(20))})
    train, held = data.split_eval(rows, 0.25, seed=1)
    assert len(held) == 5 and sorted(list(train["row"]) + list(held["row"])) == list(range(20))
    assert list(held["row"]) == list(data.split_eval(rows, 0.25, seed=1)[1]["row"])
    assert list(held["row"]) != list(data.split_eval(rows, 0.25, seed=2)[1]["row"])
    assert data.split_eval(rows, 0.0, seed=1) == (rows, None)


def test_tokens_and_labels_train_exactly_the_trained_segments():
    from mhgen.tiny import build_tokenizer

    tokenizer = build_tokenizer("chatml")
    segments = [("<|im_start|>user\nhi<|im_end|>\n", False), ("<|im_start|>assistant\n", False)]
    segments += [("hello<|im_end|>", True), ("\n", False)]
    out = data.tokens_and_labels(tokenizer, segments)
    trained = [t for t in out["labels"] if t != data.IGNORE_INDEX]
    assert tokenizer.decode(trained) == "hello<|im_end|>"
    assert tokenizer.decode(out["input_ids"]) == "".join(text for text, _ in segments)


# --- the output folder


def test_checkpoint_problems_are_named(tmp_path):
    checkpoint = tmp_path / "checkpoint-2"
    checkpoint.mkdir()
    assert "trainer_state.json is missing" in output_folder.checkpoint_problem(checkpoint)
    (checkpoint / "trainer_state.json").write_text("{}")
    assert "adapter_model.safetensors is missing" in output_folder.checkpoint_problem(checkpoint)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    adapter = len(header).to_bytes(8, "little") + header
    (checkpoint / "adapter_model.safetensors").write_bytes(adapter + b"1234")
    assert "adapter_model.safetensors is cut short" in output_folder.checkpoint_problem(checkpoint)
    (checkpoint / "adapter_model.safetensors").write_bytes(adapter + b"12345678")
    assert output_folder.checkpoint_problem(checkpoint) == ""
    (checkpoint / "optimizer.pt").write_bytes(b"PK")
    assert output_folder.checkpoint_problem(checkpoint) == "its optimizer.pt is cut short"


def test_check_output_dir_refuses_what_would_lose_a_run(tmp_path):
    inputs = {"data_fingerprint": "sha256:a"}
    with pytest.raises(SystemExit, match="--resume continues the run"):
        output_folder.check_output_dir(tmp_path, "c", inputs, resume=True, overwrite=True)
    output_folder.write_record(tmp_path, "c", inputs, finished=False)
    record = output_folder.run_record(tmp_path)
    assert record["finished"] is False and record["inputs"] == inputs
    with pytest.raises(SystemExit, match="holds a run of another config"):
        output_folder.check_output_dir(tmp_path, "other", inputs, resume=False, overwrite=False)
    with pytest.raises(SystemExit, match="the content of the training data changed"):
        output_folder.check_output_dir(tmp_path, "c", {"data_fingerprint": "sha256:b"}, True, False)
    assert (
        output_folder.check_output_dir(tmp_path, "c", inputs, resume=True, overwrite=False) is None
    )
    output_folder.write_record(tmp_path, "c", inputs, finished=True)
    assert output_folder.finished_run(tmp_path, "c") and not output_folder.finished_run(
        tmp_path, "d"
    )
    with pytest.raises(SystemExit, match="holds a finished run; pass --overwrite"):
        output_folder.check_output_dir(tmp_path, "c", inputs, resume=False, overwrite=False)


def test_overwrite_sets_the_replaced_run_aside_whole_and_keeps_the_user_s_files(tmp_path):
    """The old run leaves in one rename (issue 30, 4): checkpoints, adapter, record, merged model,
    samples and curves; a file of the user's stays. The next --overwrite replaces what is aside;
    the new run's first checkpoint deletes it."""
    out = tmp_path / "out"
    for name in ("checkpoint-1", "checkpoint-12", "merged", "runs/old", output_folder.STAGING):
        (out / name).mkdir(parents=True)
    for name in ("adapter_model.safetensors", "tokenizer.json", "samples.jsonl", "notes.txt"):
        (out / name).write_text(name)
    output_folder.write_record(out, "c", {}, finished=True)
    output_folder.set_aside_replaced_run(out)
    aside = tmp_path / "out.replaced"
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert output_folder.run_record(aside)["finished"] is True
    assert (aside / "adapter_model.safetensors").read_text() == "adapter_model.safetensors"
    assert {"checkpoint-1", "checkpoint-12", "merged", "runs"} <= {p.name for p in aside.iterdir()}
    # the new run stopped before its first checkpoint; --overwrite again: it is what goes aside
    output_folder.write_record(out, "c", {}, finished=False)
    output_folder.set_aside_replaced_run(out)
    assert sorted(p.name for p in aside.iterdir()) == ["mhgen_run.json"]
    assert output_folder.run_record(aside)["finished"] is False
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    output_folder.remove_replaced_run(out)
    assert not aside.exists() and (out / "notes.txt").read_text() == "notes.txt"


def test_overwrite_of_a_symlinked_output_folder_sets_its_target_aside(tmp_path):
    """outputs/run -> /big/disk/run, as on rented boxes: the link stays, its target is renewed."""
    target = tmp_path / "disk" / "run"
    (target / "checkpoint-3").mkdir(parents=True)
    (tmp_path / "outputs").mkdir()
    link = tmp_path / "outputs" / "run"
    link.symlink_to(target)
    output_folder.set_aside_replaced_run(link)
    assert link.is_symlink() and link.is_dir() and not any(link.iterdir())
    assert (tmp_path / "disk" / "run.replaced" / "checkpoint-3").is_dir()
    output_folder.remove_replaced_run(link)
    assert not (tmp_path / "disk" / "run.replaced").exists() and link.is_dir()


def test_overwrite_never_renames_the_folder_it_runs_in(tmp_path, monkeypatch):
    (tmp_path / "mhgen_run.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="holds this folder"):
        output_folder.set_aside_replaced_run(Path("."))
    assert (tmp_path / "mhgen_run.json").is_file()


def test_promote_replaces_in_one_step(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "a").write_text("new")
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "a").write_text("old")
    output_folder.promote(tmp_path / "new", tmp_path / "target")
    assert (tmp_path / "target" / "a").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]


def test_check_disk_counts_what_the_run_writes(tmp_path, monkeypatch):
    import shutil

    sizes = {"checkpoint": 2 << 30, "adapter": 1 << 30, "merged": 10 << 30}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(0, 0, 7 << 30))
    output_folder.check_disk(tmp_path / "new", sizes, 2, train=True, merge=False)  # 7 GiB: fits
    with pytest.raises(
        SystemExit, match=r"writes up to 17.00 GiB \(2 \+ 1 checkpoints of 2.00 GiB"
    ):
        output_folder.check_disk(tmp_path, sizes, 2, train=True, merge=True)
    output_folder.check_disk(tmp_path, None, 2, train=True, merge=True)  # sizes unknown: no check


# --- training


def test_length_grouped_order_is_a_seeded_permutation():
    lengths = [(7 * i) % 23 for i in range(42)]
    order = list(training.LengthGroupedSampler(lengths, 4, seed=3))
    assert sorted(order) == list(range(len(lengths)))
    assert order == list(training.LengthGroupedSampler(lengths, 4, seed=3))
    again = training.LengthGroupedSampler(lengths, 4, seed=3)
    again.set_epoch(1)
    assert list(again) != order


def test_messages_for_a_failed_step_say_what_to_change(tmp_path):
    advice = training.out_of_memory(9.5, False, False, ("a micro-batch", (2, 1024)))
    assert "ran out of memory on a micro-batch of 2 x 1024 tokens" in advice
    assert "mhgen plan estimated 9.5 GiB" in advice
    assert "turn on use_gradient_checkpointing" in advice and "turn on load_in_4bit" in advice
    assert "load_in_4bit" not in training.out_of_memory(None, True, True, None)
    assert "no checkpoint is saved yet" in training.not_finite("the loss is not finite", tmp_path)


@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_outside_training_a_signal_ends_the_script_with_its_code(number, code):
    """SIGTERM or Ctrl-C during --sample or --merge ends the run at once (issue 33, 4)."""
    program = (
        "import os, signal, time\n"
        "from mhgen.runtime.training import exit_on_signals\n"
        "exit_on_signals()\n"
        f"os.kill(os.getpid(), {int(number)})\n"
        "time.sleep(5)\n"
        "print('not reached')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == code and "not reached" not in run.stdout and run.stderr == ""


# --- samples and the command line


def test_a_reference_reply_with_tool_calls_reads_as_text():
    calls = [{"function": {"name": "get_time", "arguments": {}}}]
    assert samples.as_text({"content": "", "tool_calls": calls}) == json.dumps(calls)
    assert samples.as_text({"content": "hi"}) == "hi"


def test_chat_format_reply_prompt_is_the_text_before_the_last_reply():
    chat = sources.ChatFormat(
        lambda m, t: "|".join(x["content"] for x in m), None, "<a>", ("</a>",)
    )
    conversation = {"messages": [{"content": "q"}, {"content": "r"}], "tools": []}
    assert chat.reply_prompt(conversation) == "q<a>"


def test_the_command_line(monkeypatch, capsys):
    doc = "Fine-tune a LoRA adapter of\nsome/model on chatml conversations.\n\nMore text."
    monkeypatch.setattr(sys, "argv", ["train.py", "--sample", "2", "--max-steps", "5"])
    args = stages.start(doc, "data.jsonl", "out", -1)
    assert (args.data, args.output_dir, args.max_steps, args.sample) == ("data.jsonl", "out", 5, 2)
    monkeypatch.setattr(sys, "argv", ["train.py", "--help"])
    with pytest.raises(SystemExit):
        stages.start(doc, "data.jsonl", "out", -1)
    assert (
        "Fine-tune a LoRA adapter of\nsome/model on chatml conversations."
        in capsys.readouterr().out
    )
    monkeypatch.setattr(sys, "argv", ["train.py", "--sample", "-1"])
    with pytest.raises(SystemExit):
        stages.start(doc, "data.jsonl", "out", -1)
    assert "N must be 0 (no samples) or more" in capsys.readouterr().err
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(
            number, signal.SIG_DFL if number == signal.SIGTERM else signal.default_int_handler
        )


# --- the appendix: how the modules become the script's runtime


def test_imports_are_hoisted_merged_and_sorted():
    lines = appendix.import_lines(
        {
            ("os", None, None),
            ("pathlib", "Path", None),
            ("json", None, None),
            ("pathlib", "PurePath", None),
        }
    )
    assert lines == ["import json", "import os", "from pathlib import Path, PurePath"]


def test_a_runtime_block_has_no_import_of_its_own_and_every_module_once():
    core = appendix.core()
    top_level = [line for line in core.text.splitlines() if line.startswith(("import ", "from "))]
    assert top_level == []
    for name in ("messages", "sources", "data", "stages"):
        header = Path(messages.__file__).with_name(f"{name}.py").read_text().splitlines()[0]
        assert core.text.count(header + "\n") == 1
    assert "class ExpertsNF4" in appendix.experts().text and "class ExpertsNF4" not in core.text


def test_the_runtime_modules_import_only_the_standard_library_at_the_top():
    for block in (appendix.core(), appendix.experts()):
        for module, _, _ in block.imports:
            assert module.split(".")[0] in sys.stdlib_module_names, module


def test_two_runs_making_the_same_tokens_both_finish(tmp_path, monkeypatch):
    """Each writer stages into a folder of its own and renames it into place; the one that
    finds the entry made by the other uses that (issue 33, 3: a shared staging folder crashed)."""
    pytest.importorskip("datasets")
    import functools
    import shutil as shutil_module

    from mhgen.tiny import build_tokenizer

    path = tmp_path / "d.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"p{i}", "completion": "c"}) + "\n" for i in range(6))
    )
    tokenizer = build_tokenizer("chatml")

    def tokenize(messages, tools=()):
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages)
        return data.tokens_and_labels(tokenizer, [(text, True)])

    rename, staged = data.os.rename, []

    def the_other_run_first(src, dst, *args, **kwargs):  # another run's tokens got there first
        if str(src).endswith(".in-progress"):
            staged.append(Path(src))
            shutil_module.copytree(src, dst)
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(data.os, "rename", the_other_run_first)
    cache = tmp_path / "cache"
    examples, profile = data.tokenized(source(path), functools.partial(tokenize), cache, 64)
    assert len(examples) == 6 and profile["kept"] == 6
    assert staged and not staged[0].exists()  # the loser's staging folder is gone
    assert [p.name for p in (cache / "tokens").iterdir()] == [staged[0].name.split(".")[0]]
    monkeypatch.setattr(data.os, "rename", rename)
    again, _ = data.tokenized(source(path), functools.partial(tokenize), cache, 64)
    assert list(again["input_ids"]) == list(examples["input_ids"])  # the entry is whole


def test_an_edit_anywhere_in_a_data_file_changes_its_fingerprint(tmp_path):
    """Every byte counts, whatever the size: a 5-byte edit in the middle of a large file once
    reused stale tokens (issue 33, 5)."""
    from mhgen.runtime import fingerprints

    path = tmp_path / "big.jsonl"
    line = json.dumps({"prompt": "p" * 200, "completion": "c"}) + "\n"
    path.write_text(line * 20_000)  # about 4 MiB
    before = fingerprints.fingerprint(source(path))
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 5] = b"ppppq"[: len(raw[middle : middle + 5])]
    path.write_bytes(bytes(raw))
    assert path.stat().st_size == len(line) * 20_000
    after = fingerprints.fingerprint(source(path))
    assert before.startswith("sha256:") and after.startswith("sha256:") and before != after


@pytest.mark.parametrize(
    ("raised", "said"),
    [
        (
            ConnectionError("Couldn't reach 'nobody/nothing' on the Hub (LocalEntryNotFoundError)"),
            "no such file or folder here, and the Hugging Face Hub could not be reached to look "
            "for it (offline?): Couldn't reach 'nobody/nothing' on the Hub",
        ),
        (
            FileNotFoundError("Dataset 'nobody/nothing' doesn't exist on the Hub"),
            "no such file or folder here, and none on the Hugging Face Hub: Dataset "
            "'nobody/nothing' doesn't exist on the Hub",
        ),
    ],
)
def test_a_hub_id_that_is_absent_is_told_from_a_hub_that_is_unreachable(monkeypatch, raised, said):
    """An unreachable Hub is not an absent dataset (issue 30, 2)."""
    datasets = pytest.importorskip("datasets")

    def load_dataset(**kwargs):
        raise raised

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    sources.load_table.cache_clear()
    with pytest.raises(SystemExit) as stopped:
        sources.load_table(sources.DataSource(Path("nobody/nothing"), "train", None, plain))
    assert str(stopped.value).startswith(
        f"error: cannot read the data nobody/nothing (train split): {said}"
    )


def test_the_script_names_versions_it_was_not_tested_with(monkeypatch, capsys):
    """One line at the start where an installed library is not the version the suite ran
    (issue 30, 5); the runtime's list is mhgen's pins."""
    import importlib.metadata

    from mhgen.pins import TESTED
    from mhgen.runtime import model_files

    assert {k: v for k, v in TESTED.items() if k != "tensorboard"} == model_files.TESTED_VERSIONS
    real = importlib.metadata.version
    newer = {"transformers": "5.25.0", "torch": "2.14.1+cpu"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: newer.get(name) or real(name))
    model_files.note_untested_versions()
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "torch 2.14.1+cpu (tested: 2.13.0)" in out
    assert "transformers 5.25.0 (tested: 5.24.0)" in out and "peft" not in out
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: model_files.TESTED_VERSIONS[name]
    )
    model_files.note_untested_versions()
    assert capsys.readouterr().out == ""


def test_a_trainer_without_a_method_the_script_extends_stops_in_one_line():
    """The script extends three private Trainer methods that no public hook replaces; a
    transformers that renamed or reshaped one is named, with the version tested (issue 30, 5)."""
    require("transformers")

    class Extended:
        def _get_train_sampler(self, train_dataset=None): ...
        def _get_output_dir(self, trial): ...
        def _save_checkpoint(self, model, trial): ...

    training.check_extended(Extended)  # as the tested transformers has them

    class Reshaped(Extended):
        def _save_checkpoint(self, model, trial, metrics): ...

    with pytest.raises(SystemExit) as stopped:
        training.check_extended(Reshaped)
    assert str(stopped.value).startswith("error: transformers ")
    assert "has no Trainer._save_checkpoint(self, model, trial), which this script extends" in str(
        stopped.value
    )


def test_peak_host_memory_is_the_process_s_own_not_its_parent_s():
    """A parent holding 600 MB starts a child that holds little: the child's peak is its own
    (ru_maxrss, which survives fork and exec, read the parent's: issue 28, 4)."""
    child = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "from mhgen.runtime.model_files import peak_host_gib; "
        "held = bytearray(int(sys.argv[2]) << 20); print(peak_host_gib())"
    )
    parent = (
        "import subprocess, sys; held = bytearray(600 << 20); held[::4096] = b'x' * len(held[::4096]); "
        "run = lambda mb: subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2], mb], "
        "capture_output=True, text=True, check=True).stdout; print(run('0'), run('300'))"
    )
    generator = str(Path(appendix.__file__).parents[1])
    done = subprocess.run(
        [sys.executable, "-c", parent, child, generator], capture_output=True, text=True, check=True
    )
    small, large = map(float, done.stdout.split())
    assert small < 0.2, small  # a fresh Python, not the parent's 600 MB
    assert 0.25 < large - small < 0.4, (small, large)


def test_flex_attention_trains_with_eager_on_the_cpu(capsys):
    """torch has no flex-attention backward on the CPU, transformers no sinks there: eager,
    which computes the same values (tests/test_flex_attention.py), said in one line."""
    assert model_files.attention_kernel("flex_attention", on_gpu=True) == "flex_attention"
    assert capsys.readouterr().out == ""
    assert model_files.attention_kernel("flex_attention", on_gpu=False) == "eager"
    assert (
        capsys.readouterr().out
        == "attention: eager on the CPU (flex_attention trains on a GPU only)\n"
    )
    assert model_files.attention_kernel("sdpa", on_gpu=False) == "sdpa"
    assert model_files.attention_kernel(None, on_gpu=False) is None


# --- the cache's locks: one maker per cache entry, whoever shares the cache


def test_one_process_makes_an_entry_and_its_lock_goes_when_it_is_made(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "0")
    entry = tmp_path / "tokens" / "abc"
    assert data.first_process_makes(entry)
    lock = tmp_path / "tokens" / "abc.lock"
    assert lock.exists()
    entry.mkdir()
    data.made_entry(entry)
    assert not lock.exists() and entry not in data.making
    assert not data.first_process_makes(entry)  # it is there: nobody makes it again


def test_another_process_waits_for_the_holder_then_uses_its_entry(tmp_path):
    entry = tmp_path / "abc"
    holder = (
        "import sys, time\nfrom pathlib import Path\nfrom mhgen.runtime import data\n"
        "entry = Path(sys.argv[1])\nassert data.first_process_makes(entry)\n"
        "print('holding', flush=True)\ntime.sleep(2)\nentry.mkdir()\ndata.made_entry(entry)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", holder, str(entry)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "holding\n"
    assert not data.first_process_makes(entry)  # it waited: the entry is there
    assert entry.is_dir() and process.wait(timeout=30) == 0
    assert not (tmp_path / "abc.lock").exists()


def test_a_maker_that_stops_lets_a_waiting_process_take_over(tmp_path, capsys):
    entry = tmp_path / "abc"
    for holder in (
        # it exits before making the entry (its error said): its lock goes with it
        "import sys\nfrom pathlib import Path\nfrom mhgen.runtime import data\n"
        "data.first_process_makes(Path(sys.argv[1]))\nsys.exit('bad rows')\n",
        # killed: its lock stays, naming a process gone from this machine
        "import os, sys\nfrom pathlib import Path\nfrom mhgen.runtime import data\n"
        "data.first_process_makes(Path(sys.argv[1]))\nimport time; time.sleep(0.2)\n"
        "os.kill(os.getpid(), 9)\n",
    ):
        subprocess.run([sys.executable, "-c", holder, str(entry)], capture_output=True)
        assert data.first_process_makes(entry)
        data.made_entry(entry)
    assert "was left by a process that stopped" in capsys.readouterr().out


def test_a_lock_that_stops_changing_is_taken_over(tmp_path, monkeypatch, capsys):
    """Another machine's maker, killed: its process cannot be looked up from here, so its lock
    is stale once its content has not changed for LOCK_STALE seconds."""
    monkeypatch.setattr(data, "LOCK_STALE", 1)
    entry = tmp_path / "abc"
    (tmp_path / "abc.lock").write_text("another-machine 4242 7\n")
    assert data.first_process_makes(entry)
    data.made_entry(entry)
    said = capsys.readouterr().out
    assert "waiting for another-machine 4242 7 to make" in said
    assert "was left by a process that stopped (another-machine 4242 7); taking it" in said
