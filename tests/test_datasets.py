"""Data from any source datasets reads: a .json, .parquet or .csv file, a dataset folder in the
Hub's layout (which is what a Hub id downloads to; nothing is downloaded here), with its split.
Each row becomes the same example a JSONL line of it gives, a bad row is named by its source,
split and row number before anything loads, and --resume follows the content."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest

from conftest import as_lists, emitted, require, write_config, write_rows
from mhgen.bundle import bundle
from mhgen.pipeline import compile_config
from runs import ENV, record, run, script_for, tiny_model_and_data

require("transformers", "datasets", "pyarrow")

GOOD = [
    {"messages": [{"role": "user", "content": f"Count to {i}."},
                  {"role": "assistant", "content": " ".join(map(str, range(i)))}]}
    for i in range(2, 8)
]  # fmt: skip
PROMPTS = [{"prompt": f"Add {i} and 1.", "completion": str(i + 1)} for i in range(3)]


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """datasets' own cache (where load_dataset keeps what it read) in the test's folder; offline."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def tokenizer():
    from mhgen.tiny import build_tokenizer

    return build_tokenizer("chatml")


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys = list(dict.fromkeys(k for row in rows for k in row))  # a table has every row's columns
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows]), path)


def hub_folder(root: Path, train: list[dict], test: list[dict]) -> Path:
    """A dataset folder as the Hub lays one out (and a Hub id's download holds)."""
    write_parquet(root / "data" / "train-00000-of-00001.parquet", train)
    write_parquet(root / "data" / "test-00000-of-00001.parquet", test)
    return root


def source(script, path: Path, split: str = "train"):
    """The DataSource main() makes of ``path`` (as --data) and ``split``."""
    return script["DataSource"](path, split, script["DATASET_SUBSET"], script["to_conversation"])


def tokens_of(script, tokenizer, data: Path, cache: Path, split: str = "train") -> list[dict]:
    data = source(script, data, split)
    script["check_rows"](data, cache)
    tokens = functools.partial(script["tokenize"], tokenizer)
    return as_lists(script["tokenized"](data, tokens, cache, script["MAX_SEQ_LENGTH"])[0])


def test_every_source_gives_the_examples_its_rows_give_as_jsonl(tmp_path, tokenizer):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    rows = GOOD + PROMPTS
    jsonl = tmp_path / "train.jsonl"
    write_rows(jsonl, rows)
    want = tokens_of(script, tokenizer, jsonl, tmp_path / "c0")
    assert len(want) == len(rows)

    parquet = tmp_path / "train.parquet"  # a table: each row gets every column, null if absent
    write_parquet(parquet, rows)
    as_json = tmp_path / "train.json"  # one JSON array
    as_json.write_text(json.dumps(rows))
    folder = hub_folder(tmp_path / "folder", rows, PROMPTS)
    for i, source in enumerate([parquet, as_json, folder]):
        assert tokens_of(script, tokenizer, source, tmp_path / f"c{i + 1}") == want, source
    # the folder's other split
    assert tokens_of(script, tokenizer, folder, tmp_path / "c9", "test") == want[len(GOOD) :]


def test_a_csv_of_instructions(tmp_path, tokenizer):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    rows = [
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Say hello.", "input": "", "output": "Hello!"},  # empty: null in a CSV
    ]
    data = tmp_path / "train.csv"
    with data.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["instruction", "input", "output"])
        writer.writeheader()
        writer.writerows(rows)
    jsonl = tmp_path / "train.jsonl"
    write_rows(jsonl, rows)
    got = tokens_of(script, tokenizer, data, tmp_path / "c1")
    assert got == tokens_of(script, tokenizer, jsonl, tmp_path / "c2")
    assert script["first_conversations"](source(script, data), 2)[1]["messages"][-2:] == [
        {"role": "user", "content": "Say hello."},
        {"role": "assistant", "content": "Hello!"},
    ]


def test_tools_kept_as_a_json_string_in_a_table(tmp_path, tokenizer):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    tools = [{"type": "function", "function": {"name": "now", "description": "The time.",
                                               "parameters": {"type": "object", "properties": {}}}}]  # fmt: skip
    row = {
        "messages": [
            {"role": "user", "content": "Time?"},
            {"role": "assistant", "content": "",
             "tool_calls": [{"type": "function", "function": {"name": "now", "arguments": "{}"}}]},
            {"role": "tool", "content": "noon"},
            {"role": "assistant", "content": "It is noon."},
        ],
    }  # fmt: skip
    data = tmp_path / "train.parquet"
    write_parquet(data, [{**row, "tools": json.dumps(tools)}])
    jsonl = tmp_path / "train.jsonl"
    write_rows(jsonl, [{**row, "tools": tools}])
    assert tokens_of(script, tokenizer, data, tmp_path / "c1") == tokens_of(
        script, tokenizer, jsonl, tmp_path / "c2"
    )
    assert "<tools>" in script["format_conversation"](
        **script["first_conversations"](source(script, data), 1)[0]
    )


def test_bad_rows_are_named_by_source_split_and_row(tmp_path, capsys):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    unanswered = {"messages": [{"role": "user", "content": "hi"}]}
    folder = hub_folder(tmp_path / "folder", GOOD, [*GOOD[:2], unanswered, GOOD[0], unanswered])
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, folder, "test"), tmp_path / "cache")
    problem = "the conversation must end with an assistant reply"
    assert str(stopped.value).splitlines() == [
        f"{folder} (test split) row 2: {problem}",
        f"{folder} (test split) row 4: {problem}",
    ]
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, folder, "validation"), tmp_path / "cache")
    assert str(stopped.value) == (
        f"error: cannot read the data {folder} (validation split): Unknown split "
        "\"validation\". Should be one of ['train', 'test']."
    )
    data = tmp_path / "train.parquet"
    write_parquet(data, [{"text": "hello"}])
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, data), tmp_path / "cache")
    assert str(stopped.value) == (
        f"{data} row 0: keys text: expected messages, prompt + completion, instruction + "
        "output, or conversations (ShareGPT)"
    )
    capsys.readouterr()


def test_a_hub_id_found_neither_here_nor_in_the_cache(tmp_path, monkeypatch):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, Path("nobody/nothing")), tmp_path / "cache")
    # which of the two depends on this machine's network (test_runtime pins each)
    assert str(stopped.value).startswith(
        (
            "error: cannot read the data nobody/nothing (train split): no such file or folder "
            "here, and none on the Hugging Face Hub: ",
            "error: cannot read the data nobody/nothing (train split): no such file or folder "
            "here, and the Hugging Face Hub could not be reached to look for it (offline?): ",
        )
    )
    assert "\n" not in str(stopped.value)
    # a missing JSONL file is still named as one, whatever its path looks like
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, Path("data/train.jsonl")), tmp_path / "cache")
    assert str(stopped.value) == (
        "error: data/train.jsonl: no such data file (set dataset_path in the config, or --data)"
    )


def test_the_check_names_the_shapes_it_found(tmp_path, capsys):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    data = tmp_path / "train.parquet"
    write_parquet(data, [*GOOD, *GOOD[:3]])
    script["check_rows"](source(script, data), tmp_path / "cache")
    jsonl = tmp_path / "train.jsonl"
    write_rows(jsonl, [PROMPTS[0], "", *GOOD[:2], PROMPTS[1]])
    script["check_rows"](source(script, jsonl), tmp_path / "cache")
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("data: ")]
    assert [line.rsplit(", checked in ", 1)[0] for line in said] == [
        f"data: {data}: 9 rows (9 messages)",
        f"data: {jsonl}: 4 rows (2 prompt + completion, 2 messages)",
    ]


def test_the_fingerprint_follows_the_content_and_the_split(tmp_path):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    folder = hub_folder(tmp_path / "folder", GOOD, GOOD[:2])
    train, test = (script["fingerprint"](source(script, folder, s)) for s in ("train", "test"))
    assert train.startswith("datasets:") and train != test
    script["load_table"].cache_clear()  # a new run
    assert script["fingerprint"](source(script, folder)) == train
    write_parquet(folder / "data" / "train-00000-of-00001.parquet", GOOD[:-1])
    script["load_table"].cache_clear()
    assert script["fingerprint"](source(script, folder)) not in (train, test)


def test_training_on_a_dataset_folder_with_its_test_split_for_evaluation(tmp_path):
    model, jsonl = tiny_model_and_data(tmp_path)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    folder = hub_folder(tmp_path / "folder", rows[:12], rows[12:])
    settings = {"eval_dataset_path": str(folder), "eval_steps": 2, "report_to": "none"}
    script = script_for(tmp_path / "run", model, folder, max_steps=2, **settings)
    ENV["HF_DATASETS_CACHE"] = str(tmp_path / "hf-datasets")
    try:
        done = run(script, "--sample", "2")
    finally:
        del ENV["HF_DATASETS_CACHE"]
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"data: {folder} (train split): 12 rows (12 messages)" in done.stdout
    assert f"data: {folder} (test split): 4 rows (4 messages)" in done.stdout
    inputs = record(tmp_path / "run" / "out")["inputs"]
    assert inputs["data_fingerprint"].startswith("datasets:")
    assert inputs["eval_data_fingerprint"].startswith("datasets:")
    assert inputs["data_fingerprint"] != inputs["eval_data_fingerprint"]
    evaluated = [e for e in record(tmp_path / "run" / "out")["log_history"] if "eval_loss" in e]
    assert evaluated and evaluated[-1]["step"] == 2
    # --sample takes its prompts from the evaluation split, the first rows of it
    lines = (tmp_path / "run" / "out" / "samples.jsonl").read_text().split("\n")[:-1]
    samples = [json.loads(line) for line in lines]
    assert [s["reference"] for s in samples] == [r["messages"][-1] for r in rows[12:14]]
    assert f"sampling 2 replies to the first rows of {folder} (test split)" in done.stdout


@pytest.mark.parametrize(
    ("dataset_path", "said"),
    [
        ("data/train.jsonl", "Put the training data at `data/train.jsonl` (JSONL, one conversation per line), then:"),
        ("data/train.parquet", "Put the training data at `data/train.parquet` (one conversation per row), then:"),
        ("HuggingFaceH4/ultrachat_200k", "The training data is `HuggingFaceH4/ultrachat_200k`: a dataset folder of that name, or else the Hugging Face Hub dataset of that id (downloaded into the datasets cache on the first run), then:"),
    ],
)  # fmt: skip
def test_a_bundle_says_where_its_data_comes_from(tmp_path, dataset_path, said):
    config = {"base_model": "Qwen/Qwen3-8B", "chat_template": "auto", "system_prompt": "",
              "dataset_path": dataset_path}  # fmt: skip
    files = bundle(compile_config(write_config(tmp_path, config)), tmp_path / "box")
    readme = next(f for f in files if f.name == "README.md").read_text()
    assert said in readme.splitlines()


def test_tables_read_as_their_json_numbers_and_differing_arguments_too(tmp_path, tokenizer):
    """In a table every row gets every column and key: a call's arguments gain the other calls'
    keys as null, and a CSV column of numbers would be numbers; both read as the JSON would."""
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    tools = [
        {"type": "function", "function": {"name": name, "description": "d", "parameters": {
            "type": "object", "properties": {key: {"type": "string"}}}}}
        for name, key in (("weather", "city"), ("search", "query"))
    ]  # fmt: skip

    def called(name, arguments):
        return {"messages": [
            {"role": "user", "content": "?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"type": "function", "function": {"name": name, "arguments": arguments}}]},
            {"role": "tool", "content": "ok"},
            {"role": "assistant", "content": "Done."},
        ], "tools": tools}  # fmt: skip

    rows = [called("weather", {"city": "Oslo"}), called("search", {"query": "cats"})]
    table, jsonl = tmp_path / "train.parquet", tmp_path / "train.jsonl"
    write_parquet(table, rows)
    write_rows(jsonl, rows)
    assert tokens_of(script, tokenizer, table, tmp_path / "c1") == tokens_of(
        script, tokenizer, jsonl, tmp_path / "c2"
    )
    numbers = tmp_path / "sums.csv"
    numbers.write_text("prompt,completion\n2 + 2?,4\n5 + 7?,12\n")
    write_rows(
        jsonl, [{"prompt": "2 + 2?", "completion": "4"}, {"prompt": "5 + 7?", "completion": "12"}]
    )
    assert tokens_of(script, tokenizer, numbers, tmp_path / "c3") == tokens_of(
        script, tokenizer, jsonl, tmp_path / "c4"
    )


def test_a_folder_written_by_save_to_disk(tmp_path, tokenizer):
    from datasets import Dataset, DatasetDict

    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    jsonl = tmp_path / "train.jsonl"
    write_rows(jsonl, GOOD)
    want = tokens_of(script, tokenizer, jsonl, tmp_path / "c0")
    Dataset.from_list(GOOD).save_to_disk(str(tmp_path / "one"))
    DatasetDict({"train": Dataset.from_list(GOOD)}).save_to_disk(str(tmp_path / "splits"))
    assert tokens_of(script, tokenizer, tmp_path / "one", tmp_path / "c1") == want
    assert tokens_of(script, tokenizer, tmp_path / "splits", tmp_path / "c2") == want
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, tmp_path / "splits", "test"), tmp_path / "c3")
    assert str(stopped.value) == f"error: {tmp_path / 'splits'} has no split 'test' (it has train)"


def test_a_missing_table_file_is_named_as_missing(tmp_path, monkeypatch):
    script = emitted(tmp_path, "Qwen/Qwen3-8B")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        script["check_rows"](source(script, Path("data/train.parquet")), tmp_path / "cache")
    assert str(stopped.value) == (
        "error: data/train.parquet: no such data file (set dataset_path in the config, or --data)"
    )
