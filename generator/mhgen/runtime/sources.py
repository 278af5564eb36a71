# ---- where the data comes from (a JSONL file, a table datasets reads, a Hub dataset), and
# the chat format it is written in

import csv
import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

# files datasets.load_dataset reads, by suffix, with its loader; any other file is JSONL
LOADERS = {".json": "json", ".parquet": "parquet", ".csv": "csv"}
HUB_ID = r"[\w.-]+/[\w.-]+"  # a Hub dataset's owner/name


class DataSource(NamedTuple):
    """Where a run's rows come from and how one becomes a conversation: a file, folder or Hub
    dataset id, its split and subset (for what datasets reads), and the recipe's to_conversation
    (a row as {"messages", "tools"}, raising DataError or KeyError for a malformed one). With
    ``pairs`` (method dpo) a row is a preference pair: {"messages": the chosen conversation,
    "tools", "rejected": the rejected one}."""

    path: Path
    split: str
    subset: str | None
    to_conversation: Callable[[dict], dict]
    pairs: bool = False

    @property
    def sides(self) -> tuple[str, ...]:
        """The prefixes of an example's token columns: "" (input_ids, labels), and "rejected_"
        for a pair's rejected conversation."""
        return ("", "rejected_") if self.pairs else ("",)

    def other(self, path: str | None, split: str):
        """The same kind of source at ``path`` (its ``split``), None where path is None."""
        return None if path is None else self._replace(path=Path(path), split=split)


class ChatFormat(NamedTuple):
    """The recipe's chat format, as the runtime uses it: the exact text of a conversation, the
    tokenizer's own chat template's text of it (to compare), and where a reply starts and the
    tokens that end one (to sample replies)."""

    format_conversation: Callable[..., str]
    official_render: Callable[..., str]
    generation_prompt: str
    end_tokens: tuple[str, ...]

    def texts(self, conversation: dict, tokenizer=None) -> list[str]:
        """The training text of a conversation (of each of a pair's two), or with ``tokenizer``
        its text by the tokenizer's own chat template."""
        tools = conversation["tools"]
        return [
            self.format_conversation(messages, tools)
            if tokenizer is None
            else self.official_render(tokenizer, messages, tools)
            for messages in sides_of(conversation)
        ]

    def reply_prompt(self, conversation: dict) -> str:
        """The text the model continues to write the conversation's last reply."""
        text = self.format_conversation(conversation["messages"][:-1], conversation["tools"])
        return text + self.generation_prompt


def sides_of(conversation: dict) -> list[list[dict]]:
    """The messages of a conversation, or of each of a preference pair's two (chosen first)."""
    rejected = conversation.get("rejected")
    return [conversation["messages"]] + ([rejected] if rejected is not None else [])


@functools.cache
def is_lines_file(path: Path) -> bool:
    """Whether ``path`` is read line by line as JSONL (a bad row is named by its line number).
    Otherwise datasets.load_dataset reads it: a .json, .parquet or .csv file, a dataset folder,
    or, where no such file or folder is here, a Hugging Face Hub dataset id."""
    if path.suffix.lower() in LOADERS or path.is_dir():
        return False
    return path.is_file() or path.suffix.lower() == ".jsonl" or not re.fullmatch(HUB_ID, str(path))


def data_name(source: DataSource) -> str:
    """The data as messages name it: the file, or the folder or Hub id and its split."""
    path = source.path
    return str(path) if path.is_file() or is_lines_file(path) else f"{path} ({source.split} split)"


@functools.cache
def load_table(source: DataSource):
    """What datasets.load_dataset reads at the source's path (see is_lines_file): a file whole,
    a folder's or a Hub dataset's split (of its subset), kept in datasets' own cache."""

    from datasets import DatasetDict, Features, Value, load_dataset, load_from_disk
    from datasets.exceptions import DatasetsError

    path, split = source.path, source.split
    if (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file():
        saved = load_from_disk(str(path))  # a folder Dataset.save_to_disk wrote
        if isinstance(saved, DatasetDict) and split not in saved:
            sys.exit(f"error: {path} has no split {split!r} (it has {', '.join(saved)})")
        return saved[split] if isinstance(saved, DatasetDict) else saved
    if path.is_file():
        where = {"path": LOADERS[path.suffix.lower()], "data_files": str(path), "split": "train"}
        if path.suffix.lower() == ".csv":  # every column text, as written (not a guessed number)
            with path.open(encoding="utf-8-sig", newline="") as f:
                header = next(csv.reader(f), [])
            where["features"] = Features(dict.fromkeys(header, Value("string")))
    else:
        where = {"path": str(path), "name": source.subset, "split": split}
    try:
        return load_dataset(**where)
    except (OSError, ValueError, DatasetsError) as exc:
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        if exc.__cause__ is not None:  # datasets' "An error occurred while generating the dataset"
            reason += (
                ": " + (str(exc.__cause__).strip() or type(exc.__cause__).__name__).splitlines()[0]
            )
        if not path.exists() and path.suffix.lower() not in LOADERS and "Couldn't reach" in reason:
            reason = (
                "no such file or folder here, and the Hugging Face Hub could not be reached to "
                f"look for it (offline?): {reason}"
            )
        elif not path.exists() and path.suffix.lower() not in LOADERS:
            reason = f"no such file or folder here, and none on the Hugging Face Hub: {reason}"
        sys.exit(f"error: cannot read the data {data_name(source)}: {reason}")
