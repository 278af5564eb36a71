"""Data at scale: the emitted script reads and tokenizes its data through datasets, into Arrow on
disk, in parallel processes, once. The examples are exactly what tokenizing each row on its own
gives (cut to MAX_SEQ_LENGTH, rows with no assistant token left dropped), in every chat format
and with any number of processes; a cache keyed by what decides the tokens is reused by a later
run and rebuilt when any of it changes; malformed rows are all reported, in order, also when
several processes check them."""

from __future__ import annotations

import functools
import json
import subprocess
import sys

import pytest

from conftest import FORMATS, as_lists, emitted, require, write_config, write_rows
from mhgen.pipeline import compile_config
from runs import ENV, run, script_for, tiny_model_and_data

require("transformers", "datasets")

MAX = 320  # max_seq_length: the long rows below are cut, one of them to no assistant token


def rows() -> list:
    talk = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a color."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green.\nFresh grass.", "thinking": "pick one"},
    ]
    return [
        {"messages": talk},
        {"prompt": "Add 2 and 2.", "completion": "4"},
        "",  # a blank line: skipped, and the line numbers after it still count it
        {"instruction": "Translate.", "input": "chat", "output": "cat"},
        {"messages": [{"role": "user", "content": "word " * 600}, talk[2]]},  # cut to nothing
        {"messages": [talk[1], {"role": "assistant", "content": "long " * 600}]},  # cut
        *(
            {"prompt": f"Count to {i}.", "completion": " ".join(map(str, range(i)))}
            for i in range(1, 10)
        ),
    ]


def emitted_module(tmp_path, model, **settings):
    return emitted(tmp_path, model, system_prompt="Be kind.", max_seq_length=MAX, **settings)


def source(script, path):
    """The DataSource main() makes of ``path`` (as --data)."""
    return script["DataSource"](
        path, script["DATASET_SPLIT"], script["DATASET_SUBSET"], script["to_conversation"]
    )


def tokenized(script, tokenizer, data, cache):
    """The script's tokenized(), called as main() calls it: (examples, length profile)."""
    tokens = functools.partial(script["tokenize"], tokenizer)
    return script["tokenized"](source(script, data), tokens, cache, script["MAX_SEQ_LENGTH"])


@pytest.fixture(scope="module")
def tokenizers():
    from mhgen.tiny import build_tokenizer

    return {fmt: build_tokenizer(fmt) for fmt in set(FORMATS.values())}


def expected(script, tokenizer, items) -> tuple[list[dict], int, int]:
    """Each row tokenized on its own (the script's tokenize) and cut, those with no assistant
    token left dropped; and how many were cut, and dropped."""
    out, cut, dropped = [], 0, 0
    for item in items:
        if isinstance(item, str):
            continue
        example = script["tokenize"](
            tokenizer, **script["to_conversation"](json.loads(json.dumps(item)))
        )
        cut += len(example["input_ids"]) > MAX
        example = {k: v[:MAX] for k, v in example.items()}
        if any(label != -100 for label in example["labels"]):
            out.append(example)
        else:
            dropped += 1
    return out, cut, dropped


@pytest.mark.parametrize("model", FORMATS)
def test_the_examples_are_each_row_tokenized_on_its_own(tmp_path, tokenizers, model):
    script = emitted_module(tmp_path, model)
    tokenizer = tokenizers[FORMATS[model]]
    data = tmp_path / "train.jsonl"
    write_rows(data, rows())
    script["check_rows"](source(script, data), tmp_path / "cache")
    examples, profile = tokenized(script, tokenizer, data, tmp_path / "cache")
    want, cut, dropped = expected(script, tokenizer, rows())
    assert as_lists(examples) == want
    assert profile["examples"] == 14 and profile["kept"] == len(want) == len(examples)
    assert (profile["truncated"], profile["dropped_no_target"]) == (cut, dropped)
    assert cut >= 2 and dropped >= 1  # the rows meant to be cut are, one to nothing
    # the length column is the length before the cut (the sampler cuts it itself)
    assert all(n <= MAX for n in (min(r["length"], MAX) for r in examples))
    assert max(r["length"] for r in examples) > MAX


def test_several_processes_give_the_same_examples(tmp_path, tokenizers):
    model = "Qwen/Qwen3-8B"
    one, two = emitted_module(tmp_path, model), emitted_module(tmp_path, model)
    two["processes"] = lambda count: 2  # as for 40,000 rows or more
    data = tmp_path / "train.jsonl"
    write_rows(data, rows() * 3)
    results = []
    for script, cache in ((one, tmp_path / "c1"), (two, tmp_path / "c2")):
        script["check_rows"](source(script, data), cache)
        results.append(tokenized(script, tokenizers["chatml"], data, cache))
    assert as_lists(results[0][0]) == as_lists(results[1][0])
    assert results[0][1] == results[1][1]


def test_the_cache_is_reused_and_rebuilt_when_what_decides_the_tokens_changes(
    tmp_path, tokenizers, capsys
):
    from mhgen.tiny import build_tokenizer

    script = emitted_module(tmp_path, "Qwen/Qwen3-8B")
    data, cache = tmp_path / "train.jsonl", tmp_path / "cache"
    write_rows(data, rows())
    tokenizer = tokenizers["chatml"]
    said = []
    folders = set()

    def tokenize_again() -> bool:
        """Whether tokenized() made the tokens anew (rather than taking them from the cache)."""
        capsys.readouterr()
        script["check_rows"](source(script, data), cache)
        tokenized(script, tokenizer, data, cache)
        said[:] = [line for line in capsys.readouterr().out.splitlines() if "tokenized" in line]
        folders.add(said[-1].split()[2])
        return "a later run on the same data reuses it" in said[-1]

    assert tokenize_again()
    assert not tokenize_again()  # the same data, tokenizer and settings
    assert "made by an earlier run on the same data; safe to delete" in said[-1]
    write_rows(data, rows()[:-1])  # the data
    assert tokenize_again()
    script["MAX_SEQ_LENGTH"] = MAX + 1  # the cut (main passes it to tokenized as max_length)
    assert tokenize_again()
    script["SYSTEM_PROMPT"] = "Be blunt."  # a setting that to_conversation reads
    assert tokenize_again()
    tokenizer = build_tokenizer("chatml")
    tokenizer.add_tokens(["<|new|>"])  # the tokenizer
    assert tokenize_again()
    assert not tokenize_again()
    assert len(folders) == 5  # one cache entry each, side by side


def test_a_second_run_trains_without_tokenizing_again(tmp_path):
    model, data = tiny_model_and_data(tmp_path)
    script = script_for(tmp_path / "run", model, data, max_steps=1)
    first = run(script)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "(a later run on the same data reuses it; safe to delete)" in first.stdout
    again = run(script, "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "(made by an earlier run on the same data; safe to delete)" in again.stdout
    cache = tmp_path / "run" / "mhgen-data-cache"  # beside the output folder
    assert sorted(p.name for p in cache.iterdir()) == ["checked", "tokens"]


def test_malformed_rows_checked_in_parallel_are_all_reported_in_order(tmp_path):
    good = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    broken = {20_000 + 997 * k: "{not json" for k in range(25)}  # across both processes' halves
    data = tmp_path / "train.jsonl"
    data.write_text("".join(broken.get(i, json.dumps(good)) + "\n" for i in range(1, 45_001)))
    config = {"base_model": "Qwen/Qwen3-8B", "chat_template": "auto", "system_prompt": "",
              "dataset_path": str(data)}  # fmt: skip
    compiled = compile_config(write_config(tmp_path, config))
    script = tmp_path / compiled.plan.script_name
    script.write_text(compiled.text)
    proc = subprocess.run(
        [sys.executable, str(script), "--dry-run"], cwd=tmp_path, capture_output=True, text=True,
        env=ENV, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    message = "invalid JSON: Expecting property name enclosed in double quotes (column 2)"
    assert proc.stderr.splitlines() == [
        *(f"{data}:{line}: {message}" for line in sorted(broken)[:20]),
        "... and 5 more",
    ]


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_a_file_with_no_examples_says_so(tmp_path, content):
    script = emitted_module(tmp_path, "Qwen/Qwen3-8B")
    data = tmp_path / "train.jsonl"
    data.write_text(content)
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, data), tmp_path / "cache")
    assert str(stopped.value) == f"error: {data}: no examples"
